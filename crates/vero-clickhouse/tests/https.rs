//! ClickHouse 18.16 over HTTPS with a CA made at test time: the client built from
//! `[clickhouse]` settings as an operator writes them (url `https://`, `tls.ca_file`,
//! `tls.cert_file`/`key_file`, `password_file`) runs the migrations and queries; a
//! server certificate from another CA is refused, and a server that requires a client
//! certificate refuses a client without one.

use std::path::Path;

use serde::Deserialize;
use vero_clickhouse::{migrations, ClickHouseSettings, ServerVersion};
use vero_testkit::clickhouse::ClickHouseServer;
use vero_testkit::ports::free_ports;
use vero_testkit::tls::{clickhouse_https_config, TestCa, Validity};

#[derive(Deserialize)]
struct Wrapper {
    clickhouse: ClickHouseSettings,
}

/// `[clickhouse]` parsed from TOML, as a service's settings loader would give it.
fn settings(toml_text: &str) -> Result<ClickHouseSettings, String> {
    let config = config::Config::builder()
        .add_source(config::File::from_str(toml_text, config::FileFormat::Toml))
        .build()
        .map_err(|e| e.to_string())?;
    config.try_deserialize::<Wrapper>().map(|w| w.clickhouse).map_err(|e| e.to_string())
}

/// A server on the certificate `clickhouse.crt`/`.key` in `dir`.
fn start(dir: &Path, client_ca: Option<&Path>) -> (ClickHouseServer, u16) {
    let (cert, key) = (dir.join("clickhouse.crt"), dir.join("clickhouse.key"));
    let ports = free_ports(3).unwrap();
    let extra = clickhouse_https_config(ports[2], &cert, &key, client_ca);
    (ClickHouseServer::start_with(ports[0], ports[1], &extra).unwrap(), ports[2])
}

/// How the consumers classify the failure of a query with `settings`.
async fn failure_of(settings: &ClickHouseSettings) -> vero_clickhouse::Failure {
    let client = vero_clickhouse::client::build(settings);
    let error = client.query("SELECT toUInt8(1)").fetch_one::<u8>().await.unwrap_err();
    vero_clickhouse::Failure::from(error)
}

async fn select_one(settings: &ClickHouseSettings) -> Result<u8, String> {
    let client = vero_clickhouse::client::build(settings);
    client.query("SELECT toUInt8(1)").fetch_one::<u8>().await.map_err(|e| {
        // The TLS reason is in the error's sources.
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(inner) = source {
            text.push_str(&format!(": {inner}"));
            source = inner.source();
        }
        text
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_the_test_ca_client_certificates_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ca, other) = (TestCa::new("vero test CA").unwrap(), TestCa::new("another CA").unwrap());
    ca.write_cert(&d.join("ca.crt")).unwrap();
    other.write_cert(&d.join("other-ca.crt")).unwrap();
    ca.client("vero-sink", Validity::Days(30)).unwrap().write(d, "client").unwrap();
    ca.server("clickhouse", Validity::Days(30)).unwrap().write(d, "clickhouse").unwrap();
    std::fs::write(d.join("password"), "\n").unwrap();

    let (server, https) = tokio::task::spawn_blocking({
        let d = d.to_owned();
        move || start(&d, None)
    })
    .await
    .unwrap();
    let operator = |ca_file: &str| {
        format!(
            "[clickhouse]\nurl = \"https://127.0.0.1:{https}\"\nuser = \"default\"\npassword_file = \"{}\"\n\
             request_timeout_ms = 30000\n[clickhouse.tls]\nca_file = \"{}\"\n",
            d.join("password").display(),
            d.join(ca_file).display()
        )
    };
    let trusted = settings(&operator("ca.crt")).unwrap();
    assert!(format!("{trusted:?}").contains("https: true"), "{trusted:?}");
    assert_eq!(select_one(&trusted).await, Ok(1));
    let client = vero_clickhouse::client::build(&trusted);
    let version = ServerVersion::detect(&client).await.unwrap();
    let applied = migrations::apply(&client, version, &migrations::embedded_for(None).unwrap()).await.unwrap();
    assert!(!applied.is_empty(), "the schema is created over HTTPS");

    let untrusted = settings(&operator("other-ca.crt")).unwrap();
    let refused = select_one(&untrusted).await.unwrap_err();
    assert!(refused.contains("certificate verify failed"), "{refused}");
    // Operator-fixable, not an outage to wait out: the consumers pause and say so.
    let failure = failure_of(&untrusted).await;
    assert_eq!(failure.class(), "operator", "{}", failure.message());
    assert!(failure.message().contains("clickhouse.tls"), "{}", failure.message());
    drop(server);

    // A server that requires a client certificate from the test CA.
    let (strict, https) = tokio::task::spawn_blocking({
        let d = d.to_owned();
        move || start(&d, Some(&d.join("ca.crt")))
    })
    .await
    .unwrap();
    let base = format!(
        "[clickhouse]\nurl = \"https://127.0.0.1:{https}\"\nuser = \"default\"\nrequest_timeout_ms = 30000\n\
         [clickhouse.tls]\nca_file = \"{}\"\n",
        d.join("ca.crt").display()
    );
    let without = settings(&base).unwrap();
    assert!(select_one(&without).await.is_err(), "no client certificate: refused");
    let failure = failure_of(&without).await;
    assert_eq!(failure.class(), "operator", "{}", failure.message());
    let with = settings(&format!(
        "{base}cert_file = \"{}\"\nkey_file = \"{}\"\n",
        d.join("client.crt").display(),
        d.join("client.key").display()
    ))
    .unwrap();
    assert_eq!(select_one(&with).await, Ok(1));
    drop(strict);

    // Files are read at load: a missing one names its key.
    let missing = settings(&base.replace("ca.crt", "nope.crt")).unwrap_err();
    assert!(missing.contains("clickhouse.tls.ca_file: cannot read"), "{missing}");
    let local = ClickHouseSettings::https(format!("https://127.0.0.1:{https}"), &d.join("ca.crt")).unwrap();
    assert!(local.tls.connector().is_some());
}
