//! One Apache Kafka node with secured listeners ([`crate::kafka::KafkaSecurity`]) and
//! the files a client needs, made at start in a temp dir: a test CA and the broker's
//! certificate from it, a client certificate from it, "another CA" with a client
//! certificate of its own, an expired client certificate, and a server certificate for
//! `127.0.0.1`/`localhost` (ClickHouse's and the gateway's HTTPS). The properties helpers
//! give the librdkafka settings an operator would write in `kafka.properties`.

use std::path::PathBuf;

use anyhow::Context;

use crate::kafka::{KafkaCluster, KafkaSecurity, KafkaSettings, Listener};
use crate::tls::{TestCa, Validity};

/// The SCRAM user (SCRAM-SHA-512 and SCRAM-SHA-256) created at format time.
pub const SCRAM_USER: &str = "vero-svc";
pub const SCRAM_PASSWORD: &str = "scram-Secret-0012";
/// The PLAIN user of the `SASL_SSL` listener.
pub const PLAIN_USER: &str = "vero-plain";
pub const PLAIN_PASSWORD: &str = "plain-Secret-0012";

pub struct SecuredKafka {
    pub kafka: KafkaCluster,
    dir: tempfile::TempDir,
}

/// librdkafka properties, `(name, value)`.
pub type Properties = Vec<(String, String)>;

fn props(pairs: &[(&str, &str)]) -> Properties {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

impl SecuredKafka {
    /// Make the certificates, then start one node with `SASL_SSL` and `SSL` listeners.
    pub fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("vero-kafka-tls-").tempdir()?;
        let path = dir.path();
        let ca = TestCa::new("vero test CA")?;
        ca.write_cert(&path.join("ca.crt"))?;
        ca.server("kafka", Validity::Days(30))?.write_key_and_chain(&path.join("broker.pem"))?;
        ca.client("vero-client", Validity::Days(30))?.write(path, "client")?;
        ca.client("vero-expired", Validity::Expired)?.write(path, "expired")?;
        ca.server("localhost", Validity::Days(30))?.write(path, "server")?;
        let other = TestCa::new("another CA")?;
        other.write_cert(&path.join("other-ca.crt"))?;
        other.client("vero-client", Validity::Days(30))?.write(path, "other-client")?;
        let security = KafkaSecurity {
            key_store: path.join("broker.pem"),
            trust_store: path.join("ca.crt"),
            scram_users: vec![(SCRAM_USER.into(), SCRAM_PASSWORD.into())],
            plain_users: vec![(PLAIN_USER.into(), PLAIN_PASSWORD.into())],
        };
        let kafka = KafkaCluster::start(KafkaSettings { security: Some(security), ..KafkaSettings::default() })
            .context("starting Kafka with SASL_SSL and SSL listeners")?;
        Ok(Self { kafka, dir })
    }

    /// A file made at start: `ca.crt`, `other-ca.crt`, `client.crt`/`.key`,
    /// `other-client.crt`/`.key` (another CA's), `expired.crt`/`.key`, `server.crt`/`.key`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Where a secured client connects.
    pub fn servers(&self, listener: Listener) -> String {
        self.kafka.listener_servers(listener).expect("secured listeners")
    }

    /// `SASL_SSL` with SCRAM-SHA-512 as [`SCRAM_USER`] with `password`, trusting `ca`.
    pub fn scram(&self, password: &str, ca: &str) -> Properties {
        let ca = self.file(ca);
        props(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", SCRAM_USER),
            ("sasl.password", password),
            ("ssl.ca.location", &ca.to_string_lossy()),
        ])
    }

    /// `SASL_SSL` with PLAIN as [`PLAIN_USER`], trusting the test CA.
    pub fn plain(&self) -> Properties {
        let ca = self.file("ca.crt");
        props(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", PLAIN_USER),
            ("sasl.password", PLAIN_PASSWORD),
            ("ssl.ca.location", &ca.to_string_lossy()),
        ])
    }

    /// `SSL` with the client certificate `<name>.crt`/`<name>.key`, trusting the test CA.
    pub fn mtls(&self, name: &str) -> Properties {
        let (ca, cert, key) =
            (self.file("ca.crt"), self.file(&format!("{name}.crt")), self.file(&format!("{name}.key")));
        props(&[
            ("security.protocol", "SSL"),
            ("ssl.ca.location", &ca.to_string_lossy()),
            ("ssl.certificate.location", &cert.to_string_lossy()),
            ("ssl.key.location", &key.to_string_lossy()),
        ])
    }
}
