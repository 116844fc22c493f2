//! The one retry policy of a side effect that fails (a ClickHouse write or mutation,
//! a produce, a restore, the start-up schema check), as a type the way Vector's sinks
//! have one: what a failure does depends only on its [`Class`], the classification
//! shared by every boundary (`vero_clickhouse::Failure`, [`crate::kafka_failure`]).
//!
//! * [`Class::Retryable`]: a warning, `/readyz` 503 with the reason, back off, again.
//! * [`Class::Operator`]: an error, `needs_operator` 1, `/readyz` 503 saying
//!   "operator action needed", back off, again: never dead-lettered, never committed
//!   past.
//! * [`Class::Invalid`]: the request itself; the caller decides (a dead letter, or
//!   stop). Counted like the others, and nothing else.
//!
//! The backoff doubles up to `retry.max_backoff_ms` and a shutdown cuts it short. A
//! success makes the service ready again and clears `needs_operator`, unless the
//! service's Kafka watch holds it for a refused connection.

use std::fmt::Display;

use prometheus::{IntCounterVec, IntGauge};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::health::Health;
use crate::kafka_security::Watch;

/// What fixes a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The same request succeeds later (an outage, a timeout, a full queue).
    Retryable,
    /// Refused until someone changes the deployment (credentials, grants, a missing
    /// table or topic).
    Operator,
    /// What the request carries; repeating it cannot help.
    Invalid,
}

impl Class {
    /// `retryable`, `operator` or `invalid`: the label of failure metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Retryable => "retryable",
            Self::Operator => "operator",
            Self::Invalid => "invalid",
        }
    }
}

impl From<&vero_clickhouse::Failure> for Class {
    fn from(failure: &vero_clickhouse::Failure) -> Self {
        match failure {
            vero_clickhouse::Failure::Retryable(_) => Self::Retryable,
            vero_clickhouse::Failure::Operator(_) => Self::Operator,
            vero_clickhouse::Failure::Invalid(_) => Self::Invalid,
        }
    }
}

/// Where a service shows its failures.
#[derive(Clone)]
pub struct Visibility {
    pub health: Health,
    /// `<service>_needs_operator`.
    pub needs_operator: IntGauge,
    /// The service's watch of refused Kafka connections, which holds `needs_operator`
    /// itself while it sees one.
    pub kafka: Option<Watch>,
    /// `<service>_write_failures_total{class}`, if failures of this kind are counted.
    pub failures: Option<IntCounterVec>,
}

impl Visibility {
    /// Readiness and `needs_operator` only: no Kafka watch yet, failures not counted
    /// (a service's start-up checks).
    pub fn starting(health: &Health, needs_operator: &IntGauge) -> Self {
        Self { health: health.clone(), needs_operator: needs_operator.clone(), kafka: None, failures: None }
    }
}

/// The retries of one operation (see the module doc).
pub struct Retry<'a> {
    /// Names the operation in logs and in `/readyz` ("dead-letter topic
    /// vero.dlq", "ClickHouse INSERT on shard 2").
    what: &'a str,
    backoff: Backoff,
    visibility: &'a Visibility,
}

impl<'a> Retry<'a> {
    pub fn new(what: &'a str, backoff: Backoff, visibility: &'a Visibility) -> Self {
        Self { what, backoff, visibility }
    }

    /// Show a failure of class `class` (see the module doc) without waiting.
    pub fn failed(&mut self, class: Class, reason: &dyn Display) {
        let (what, visibility) = (self.what, self.visibility);
        if let Some(failures) = &visibility.failures {
            failures.with_label_values(&[class.label()]).inc();
        }
        match class {
            Class::Operator => {
                tracing::error!(what, error = %reason, "refused until an operator acts; retrying");
                visibility.needs_operator.set(1);
                visibility.health.not_ready(format!("operator action needed: {what}: {reason}"));
            }
            Class::Retryable => {
                tracing::warn!(what, error = %reason, "failed; retrying");
                visibility.health.not_ready(format!("{what}: {reason}"));
            }
            // The caller's to handle (a dead letter, or a stop that says why).
            Class::Invalid => {}
        }
    }

    /// Wait out the backoff; `false` when `cancel` fired first.
    pub async fn wait(&mut self, cancel: &CancellationToken) -> bool {
        self.backoff.wait(cancel).await
    }

    /// [`Self::failed`], then [`Self::wait`].
    pub async fn again(&mut self, class: Class, reason: &str, cancel: &CancellationToken) -> bool {
        self.failed(class, &reason);
        self.wait(cancel).await
    }

    /// Start the backoff over (the operation changed, e.g. a shard was parked).
    pub fn reset(&mut self, backoff: Backoff) {
        self.backoff = backoff;
    }

    /// The operation succeeded: ready again, `needs_operator` cleared unless the Kafka
    /// watch holds it.
    pub fn succeeded(&self) {
        let visibility = self.visibility;
        if visibility.kafka.as_ref().is_none_or(|kafka| kafka.refused().is_none()) {
            visibility.needs_operator.set(0);
        }
        visibility.health.ready();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn visibility() -> Visibility {
        let failures =
            IntCounterVec::new(prometheus::Opts::new("test_write_failures_total", "failures"), &["class"]).unwrap();
        Visibility {
            health: Health::starting("starting"),
            needs_operator: IntGauge::new("test_needs_operator", "needs an operator").unwrap(),
            kafka: None,
            failures: Some(failures),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn each_class_is_shown_its_way_and_a_success_clears_it() {
        let visibility = visibility();
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
        let mut retry = Retry::new("ClickHouse INSERT", backoff, &visibility);
        let cancel = CancellationToken::new();

        assert!(retry.again(Class::Retryable, "connection refused", &cancel).await);
        assert_eq!(visibility.health.readiness(), Err("ClickHouse INSERT: connection refused".to_owned()));
        assert_eq!(visibility.needs_operator.get(), 0);

        assert!(retry.again(Class::Operator, "Code: 60", &cancel).await);
        assert_eq!(
            visibility.health.readiness(),
            Err("operator action needed: ClickHouse INSERT: Code: 60".to_owned())
        );
        assert_eq!(visibility.needs_operator.get(), 1);

        retry.succeeded();
        assert_eq!(visibility.health.readiness(), Ok(()));
        assert_eq!(visibility.needs_operator.get(), 0);

        retry.failed(Class::Invalid, &"Code: 27");
        assert_eq!(visibility.health.readiness(), Ok(()), "a refused request is its caller's to handle");
        let failures = visibility.failures.as_ref().unwrap();
        let counted: Vec<u64> =
            ["retryable", "operator", "invalid"].iter().map(|c| failures.with_label_values(&[c]).get()).collect();
        assert_eq!(counted, vec![1, 1, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_cuts_the_wait_short() {
        let visibility = visibility();
        let mut retry = Retry::new("x", Backoff::new(Duration::from_secs(60), Duration::from_secs(60)), &visibility);
        let cancel = CancellationToken::new();
        cancel.cancel();
        assert!(!retry.again(Class::Retryable, "down", &cancel).await);
    }
}
