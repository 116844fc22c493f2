//! Kafka connections only an operator can fix: a wrong SASL password, a broker
//! certificate the configured CA does not verify (another CA, expired, wrong host
//! name), a client certificate the broker refuses (another CA, expired). librdkafka
//! keeps reconnecting on its own, so nothing is lost by waiting; what matters is that
//! the service says so, once, and recovers by itself once the operator fixed it.
//!
//! [`classify`] is the one mapping of librdkafka's errors to a [`Refusal`] and the
//! setting that fixes it. A [`Watch`] is shared by every Kafka client of a service
//! (their contexts call [`Watch::error`], [`Watch::stats`] and [`Watch::log`]):
//!
//! * on the first refusal it logs one error line naming the setting, sets the
//!   service's `needs_operator` gauge to 1 and holds `/readyz` at 503 with the reason
//!   (consumers); the gateway asks [`Watch::refused`] in `/readyz` and before producing;
//! * while refused, librdkafka's repeats of it (its own log lines and error events,
//!   several a second) are logged at debug level only;
//! * once librdkafka reports a broker connection `UP` in its statistics (only an
//!   authenticated connection is), it logs that Kafka accepts the connection again,
//!   sets the gauge to 0 and releases `/readyz`.
//!
//! Consumers need nothing else to stay safe: a consumer that cannot connect reads no
//! record, so nothing is written, dead-lettered or committed, and a producer that
//! cannot connect fails its records as timed out, which every service retries.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use prometheus::IntGauge;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use crate::health::Health;

/// The `/readyz` hold of a refused Kafka connection.
const HOLD: &str = "kafka-connection-refused";

/// Why the broker and the client do not accept each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// SASL authentication failed (user, password or mechanism).
    Credentials,
    /// The client does not trust the broker's certificate.
    BrokerCertificate,
    /// The broker refused the client's certificate (or the TLS handshake).
    ClientCertificate,
}

impl Refusal {
    /// The settings that fix it, as an operator writes them.
    pub fn setting(self) -> &'static str {
        match self {
            Self::Credentials => {
                "kafka.properties sasl.username / sasl.password (and sasl.mechanism): the broker refuses the login"
            }
            Self::BrokerCertificate => {
                "kafka.properties ssl.ca.location: the broker's certificate is not verified by it (another CA, \
                 expired, or not issued for the broker's host name)"
            }
            Self::ClientCertificate => {
                "kafka.properties ssl.certificate.location / ssl.key.location: the broker refuses the client \
                 certificate (another CA than the broker trusts, or expired)"
            }
        }
    }
}

/// The one classification: a librdkafka error (with its reason text, as error events
/// and log lines carry it) that only an operator can fix, or `None`.
pub fn classify(error: &KafkaError, reason: &str) -> Option<Refusal> {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed) => {
            Some(Refusal::Credentials)
        }
        Some(RDKafkaErrorCode::SSL | RDKafkaErrorCode::BrokerTransportFailure) => classify_text(reason),
        _ => None,
    }
}

/// [`classify`] of a reason or log text alone.
fn classify_text(text: &str) -> Option<Refusal> {
    if text.contains("SASL authentication error") {
        Some(Refusal::Credentials)
    } else if text.contains("certificate verify failed") {
        Some(Refusal::BrokerCertificate)
    } else if text.contains("SSL alert") || text.contains("SSL handshake failed") {
        // A TLS alert from the broker during or right after the handshake: it refused
        // the client certificate (bad certificate, unknown CA, certificate expired).
        Some(Refusal::ClientCertificate)
    } else {
        None
    }
}

struct State {
    refused: Option<Refusal>,
}

/// Shared by every Kafka client of one service; cheap to clone.
#[derive(Clone)]
pub struct Watch(Arc<Inner>);

struct Inner {
    service: &'static str,
    health: Option<Health>,
    needs_operator: Option<IntGauge>,
    state: Mutex<State>,
    /// Set with the first refusal: [`Watch::accepted`] on every delivery costs nothing
    /// until then.
    any: AtomicBool,
}

impl Watch {
    /// A watch for `service` that holds `health` (not ready) and sets `needs_operator`
    /// while a connection is refused; `None`s for a service that asks [`Watch::refused`].
    pub fn new(service: &'static str, health: Option<Health>, needs_operator: Option<IntGauge>) -> Self {
        Self(Arc::new(Inner {
            service,
            health,
            needs_operator,
            state: Mutex::new(State { refused: None }),
            any: AtomicBool::new(false),
        }))
    }

    /// Why Kafka refuses the connection now (the setting to fix), or `None`.
    pub fn refused(&self) -> Option<String> {
        let refused = self.0.state.lock().expect("watch lock").refused;
        refused.map(|refusal| format!("Kafka refuses the connection, operator action needed: {}", refusal.setting()))
    }

    /// An error event of a client. Returns whether it was a refusal (handled here).
    pub fn error(&self, error: &KafkaError, reason: &str) -> bool {
        if let Some(refusal) = classify(error, reason) {
            self.refuse(refusal, reason);
            return true;
        }
        let refused = self.0.state.lock().expect("watch lock").refused.is_some();
        if refused && error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            // What the refusal looks like from the client's side, several times a second.
            tracing::debug!(target: "librdkafka", %error, reason, "librdkafka error");
        } else {
            tracing::error!(target: "librdkafka", %error, reason, "librdkafka error");
        }
        false
    }

    /// A consumer's poll error (the code only; the reason came as an error event):
    /// whether it is a refusal or its consequence, already reported by [`Watch::error`].
    pub fn is_refusal(&self, error: &KafkaError) -> bool {
        let refused = self.0.state.lock().expect("watch lock").refused.is_some();
        matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed | RDKafkaErrorCode::SSL)
        ) || (refused
            && matches!(
                error.rdkafka_error_code(),
                Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure)
            ))
    }

    /// A client's statistics: a broker connection `UP` means Kafka accepted it.
    pub fn stats(&self, statistics: &Statistics) {
        if statistics.brokers.values().any(|broker| broker.state == "UP") {
            self.accepted();
        }
    }

    /// Kafka accepted a connection (or answered a request): clear a refusal.
    pub fn accepted(&self) {
        if !self.0.any.load(Ordering::Relaxed) {
            return;
        }
        let was = self.0.state.lock().expect("watch lock").refused.take();
        if let Some(refusal) = was {
            tracing::info!(service = self.0.service, ?refusal, "Kafka accepts the connection again");
            if let Some(gauge) = &self.0.needs_operator {
                gauge.set(0);
            }
            if let Some(health) = &self.0.health {
                health.release(HOLD);
            }
        }
    }

    fn refuse(&self, refusal: Refusal, reason: &str) {
        self.0.any.store(true, Ordering::Relaxed);
        let first = self.0.state.lock().expect("watch lock").refused.replace(refusal) != Some(refusal);
        if first {
            // The reason names the broker and the TLS/SASL error, never a secret.
            tracing::error!(
                service = self.0.service,
                setting = refusal.setting(),
                reason,
                "Kafka refuses the connection until an operator fixes the setting; retrying"
            );
            if let Some(gauge) = &self.0.needs_operator {
                gauge.set(1);
            }
            if let Some(health) = &self.0.health {
                health.hold(HOLD, self.refused().unwrap_or_default());
            }
        } else {
            tracing::debug!(target: "librdkafka", reason, "Kafka still refuses the connection");
            // Other conditions share the gauge and may have cleared it meanwhile.
            if let Some(gauge) = &self.0.needs_operator {
                gauge.set(1);
            }
        }
    }

    /// librdkafka's log line, as rust-rdkafka's default context logs it, except a
    /// refusal: reported once (librdkafka logs it from its broker threads even when no
    /// one polls the client for error events, e.g. during a metadata request).
    pub fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        if let Some(refusal) = classify_text(message).filter(|_| facility == "FAIL") {
            self.refuse(refusal, message);
            return;
        }
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility, message, "librdkafka")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, message, "librdkafka"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility, message, "librdkafka")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, message, "librdkafka"),
        }
    }
}

/// Serve the log lines and error events a consumer client holds (rust-rdkafka queues
/// librdkafka's logs, so a client nobody polls, such as one that only asks for
/// metadata, reports nothing): call after one of its requests failed, so a refusal
/// behind the failure reaches the watch.
pub fn drain<C: ConsumerContext>(consumer: &rdkafka::consumer::BaseConsumer<C>) {
    for _ in 0..1000 {
        if consumer.poll(std::time::Duration::ZERO).is_none() {
            return;
        }
    }
}

/// The context of a Kafka client that has no other: its errors, statistics and logs
/// go to the service's [`Watch`].
#[derive(Clone)]
pub struct Watched(pub Watch);

impl ClientContext for Watched {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.0.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.0.error(&error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        self.0.stats(&statistics);
    }
}

impl ConsumerContext for Watched {}

#[cfg(test)]
mod tests {
    use super::*;

    // Reason texts as librdkafka 2.12 with OpenSSL 3 gives them against Apache Kafka
    // 4.1 (seen in crates/vero-testkit/tests/kafka_security.rs's failures).
    const WRONG_PASSWORD: &str = "sasl_ssl://127.0.0.1:40597/bootstrap: SASL authentication error: Authentication \
                                  failed during authentication due to invalid credentials with SASL mechanism \
                                  SCRAM-SHA-512 (after 320ms in state AUTH_REQ)";
    const OTHER_CA: &str = "sasl_ssl://127.0.0.1:40597/bootstrap: SSL handshake failed: error:0A000086:SSL \
                            routines::certificate verify failed: broker certificate could not be verified";
    const CLIENT_CERT: &str = "ssl://127.0.0.1:35587/bootstrap: Receive failed: error:0A000412:SSL \
                               routines::sslv3 alert bad certificate: SSL alert number 42";

    fn global(code: RDKafkaErrorCode) -> KafkaError {
        KafkaError::Global(code)
    }

    #[test]
    fn refusals_name_the_setting_that_fixes_them() {
        let cases = [
            (global(RDKafkaErrorCode::Authentication), WRONG_PASSWORD, Some(Refusal::Credentials)),
            (global(RDKafkaErrorCode::SSL), OTHER_CA, Some(Refusal::BrokerCertificate)),
            (global(RDKafkaErrorCode::BrokerTransportFailure), OTHER_CA, Some(Refusal::BrokerCertificate)),
            (global(RDKafkaErrorCode::BrokerTransportFailure), CLIENT_CERT, Some(Refusal::ClientCertificate)),
            (global(RDKafkaErrorCode::BrokerTransportFailure), "Connection refused", None),
            (global(RDKafkaErrorCode::AllBrokersDown), "1/1 brokers are down", None),
        ];
        for (error, reason, expected) in cases {
            assert_eq!(classify(&error, reason), expected, "{reason}");
        }
        assert!(Refusal::Credentials.setting().contains("sasl.password"));
        assert!(Refusal::BrokerCertificate.setting().contains("ssl.ca.location"));
        assert!(Refusal::ClientCertificate.setting().contains("ssl.certificate.location"));
    }

    /// Log lines written while `f` runs, at INFO and above.
    fn logged(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = buffer.0.lock().unwrap().clone();
        String::from_utf8(text).unwrap()
    }

    #[test]
    fn a_refusal_is_logged_once_naming_the_setting_and_its_repeats_are_not() {
        let watch = Watch::new("test", None, None);
        let text = logged(|| {
            for _ in 0..10 {
                watch.log(RDKafkaLogLevel::Error, "FAIL", WRONG_PASSWORD);
                watch.error(&global(RDKafkaErrorCode::Authentication), WRONG_PASSWORD);
                watch.error(&global(RDKafkaErrorCode::AllBrokersDown), "1/1 brokers are down");
            }
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        assert!(lines[0].contains("ERROR") && lines[0].contains("sasl.password"), "{text}");
        assert!(watch.refused().unwrap().contains("sasl.password"));
        // Recovery is logged once too, and an unrelated error is still logged.
        let text = logged(|| {
            watch.accepted();
            watch.accepted();
            watch.error(&global(RDKafkaErrorCode::AllBrokersDown), "1/1 brokers are down");
        });
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("accepts the connection again") && text.contains("AllBrokersDown"), "{text}");
    }

    #[test]
    fn a_refusal_holds_readiness_and_the_gauge_until_a_connection_is_up() {
        let health = Health::starting("starting");
        health.ready();
        let gauge = IntGauge::new("needs_operator", "test").unwrap();
        let watch = Watch::new("test", Some(health.clone()), Some(gauge.clone()));
        assert!(!watch.error(&global(RDKafkaErrorCode::BrokerTransportFailure), "Connection refused"));
        assert_eq!((health.readiness(), gauge.get()), (Ok(()), 0), "an outage is not a refusal");
        assert!(watch.error(&global(RDKafkaErrorCode::Authentication), WRONG_PASSWORD));
        assert!(watch.error(&global(RDKafkaErrorCode::Authentication), WRONG_PASSWORD));
        let reason = health.readiness().unwrap_err();
        assert!(reason.contains("sasl.password") && gauge.get() == 1, "{reason}");
        assert!(watch.is_refusal(&KafkaError::MessageConsumption(RDKafkaErrorCode::AllBrokersDown)));
        watch.accepted();
        assert_eq!((health.readiness(), gauge.get(), watch.refused()), (Ok(()), 0, None));
    }
}
