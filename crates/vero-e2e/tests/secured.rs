//! The whole pipeline on secured connections, against Apache Kafka with a `SASL_SSL`
//! listener (SCRAM-SHA-512 users made at format time, PLAIN) and an `SSL` listener
//! requiring client certificates, ClickHouse 18.16 on HTTPS, and the gateway's HTTPS
//! listener, all on a CA made at test time (`vero_testkit::tls`):
//!
//! * Python's `requests` (what PyPI's `vero` client sends with; no official Vero SDK
//!   is packaged) and curl post over `https://` to the gateway, which produces with
//!   SASL/PLAIN; both consumers read with SCRAM-SHA-512 and write ClickHouse over
//!   HTTPS; every event lands once in `vero.events` and in the profiles. The
//!   gateway's certificate is replaced (file change, then SIGHUP) without dropping a
//!   connection.
//! * A wrong password (a user the broker does not know yet) and a certificate from
//!   another CA (the broker's not trusted; the client's refused) pause the consumers:
//!   `/readyz` 503 naming the setting, `needs_operator` 1, nothing written,
//!   dead-lettered or committed; the gateway answers 503 and says why in `/readyz`.
//!   Once the operator fixes it (the user created on the broker, or the right file
//!   configured) every event lands once.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::json;
use vero_e2e::secured::Secured;
use vero_e2e::TOKEN;
use vero_testkit::kafka::Listener;
use vero_testkit::secured_kafka::SCRAM_PASSWORD;
use vero_testkit::tls::{TestCa, Validity};
use vero_testkit::{kafka_probe, unique_name};

const DEADLINE: Duration = Duration::from_secs(120);

fn event(user: &str, i: usize) -> serde_json::Value {
    json!({"auth_token": TOKEN, "identity": {"id": user}, "event_name": "secured", "data": {"i": i}})
}

/// Every event once in `vero.events` (rows and distinct ids) and in the profiles.
async fn assert_all_landed(s: &Secured, events: usize, users: usize) {
    let expected = format!("{events}\t{events}");
    let landed = s.wait_for("SELECT count(), uniqExact(event_id) FROM vero.events", &expected, DEADLINE).await;
    assert_eq!(landed, expected, "every event once in vero.events");
    let expected = format!("{events}\t{users}");
    let profiles = "SELECT sum(event_count), count() FROM vero.profiles FINAL WHERE deleted = 0 AND project = 'e2e'";
    assert_eq!(s.wait_for(profiles, &expected, DEADLINE).await, expected, "every event counted once in the profiles");
}

/// Run `python3 -c script` (the test's HTTPS client); its stdout.
fn python(script: &str, args: &[&str]) -> String {
    let output = std::process::Command::new("python3").arg("-c").arg(script).args(args).output().expect("python3");
    assert!(output.status.success(), "python failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The subject CN of the certificate the gateway presents to a new connection.
fn served_cn(port: u16, ca: &std::path::Path) -> String {
    let mut connector = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client()).unwrap();
    connector.set_ca_file(ca).unwrap();
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let tls = connector.build().connect("localhost", stream).unwrap();
    let cert = tls.ssl().peer_certificate().unwrap();
    let cn = cert.subject_name().entries().next().unwrap().data().as_slice().to_vec();
    String::from_utf8_lossy(&cn).into_owned()
}

/// `GET /healthz` on an open TLS connection (keep-alive): the status line.
fn healthz_on<S: Read + Write>(stream: &mut S) -> String {
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut buffer = [0u8; 512];
    let n = stream.read(&mut buffer).unwrap();
    String::from_utf8_lossy(&buffer[..n]).lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_event_lands_once_over_sasl_ssl_and_https() {
    let s = Secured::new(3).await.unwrap();
    let kafka = s.kafka;
    // The gateway's certificate files are this test's own: it replaces them below.
    let dir = tempfile::tempdir().unwrap();
    let ca = kafka.file("ca.crt");
    let issuer = TestCa::new("gateway CA").unwrap();
    std::fs::write(dir.path().join("ca.crt"), [std::fs::read(&ca).unwrap(), issuer.cert_pem()].concat()).unwrap();
    let both_cas = dir.path().join("ca.crt");
    std::fs::copy(kafka.file("server.crt"), dir.path().join("tls.crt")).unwrap();
    std::fs::copy(kafka.file("server.key"), dir.path().join("tls.key")).unwrap();

    let mut gateway_properties = kafka.plain();
    gateway_properties.push(("client.id".into(), "secured-gateway".into()));
    let (url, gateway) = {
        let mut vars = vero_e2e::secured::kafka_vars(&kafka.servers(Listener::SaslSsl), &gateway_properties);
        vars.push(("VERO__KAFKA__EVENTS_TOPIC".into(), s.topic.clone()));
        vars.push(("VERO__HTTP__TLS__CERT_FILE".into(), dir.path().join("tls.crt").display().to_string()));
        vars.push(("VERO__HTTP__TLS__KEY_FILE".into(), dir.path().join("tls.key").display().to_string()));
        let (address, running) = vero_e2e::start_gateway(vars).await.unwrap();
        (format!("https://localhost:{}", address.port()), running)
    };
    let scram = kafka.scram(SCRAM_PASSWORD, "ca.crt");
    let (sink_ops, sink) = s.sink(Listener::SaslSsl, &scram, &unique_name("tls_sink")).await.unwrap();
    let (profiles_ops, profiles) = s.profiles(Listener::SaslSsl, &scram, &unique_name("tls_profiles")).await.unwrap();

    let ready = s.wait_until(&format!("{url}/readyz"), DEADLINE, |status, _| status == 200).await;
    assert_eq!(ready.0, 200, "gateway over HTTPS and SASL/PLAIN: {ready:?}");

    // Python's requests, verifying the test CA: 20 events of 5 users.
    let script = "import json, sys, requests\n\
                  url, ca, token = sys.argv[1], sys.argv[2], sys.argv[3]\n\
                  for i in range(20):\n\
                  \x20   body = {'auth_token': token, 'identity': {'id': 'py-%d' % (i % 5)}, 'event_name': 'secured', 'data': {'i': i}}\n\
                  \x20   r = requests.post(url + '/api/v2/events/track', json=body, verify=ca, timeout=60)\n\
                  \x20   print(r.status_code, r.text)\n";
    let url_for_python = url.clone();
    let ca_text = both_cas.display().to_string();
    let answers =
        tokio::task::spawn_blocking(move || python(script, &[&url_for_python, &ca_text, TOKEN])).await.unwrap();
    assert_eq!(answers.lines().filter(|l| *l == r#"200 {"status":200,"message":"Success."}"#).count(), 20, "{answers}");
    // And the documented curl example, over https.
    let body = json!({"auth_token": TOKEN, "identity": {"id": "1", "email": "janedoe@getvero.com"},
                      "event_name": "user_signed_up", "data": {"item": "Blue shoes", "price": 40.00}});
    let curl = std::process::Command::new("curl")
        .args(["-sS", "--cacert", &both_cas.display().to_string(), &format!("{url}/api/v2/events/track")])
        .args(["-H", "Content-Type: application/json", "-d", &body.to_string()])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&curl.stdout), r#"{"status":200,"message":"Success."}"#, "{curl:?}");

    assert_all_landed(&s, 21, 6).await;
    assert_eq!(s.metric(sink_ops, "vero_sink_needs_operator").await.unwrap(), 0.0);
    assert_eq!(s.metric(profiles_ops, "vero_profiles_needs_operator").await.unwrap(), 0.0);

    // The certificate is replaced without dropping a connection: one opened before
    // stays usable, new connections get the new certificate.
    let port = url.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    assert_eq!(tokio::task::block_in_place(|| served_cn(port, &both_cas)), "localhost");
    let mut connector = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client()).unwrap();
    connector.set_ca_file(&both_cas).unwrap();
    let mut open = connector.build().connect("localhost", TcpStream::connect(("127.0.0.1", port)).unwrap()).unwrap();
    assert_eq!(healthz_on(&mut open), "HTTP/1.1 200 OK");
    // New files padded to a fixed size (PEM readers skip what follows the END line),
    // so a replacement written with the old modification time is noticed by SIGHUP only.
    // `keep_time`: the new files get the old ones' modification times before they are
    // renamed into place (atomically), so only SIGHUP can notice them.
    let replace = |cn: &str, keep_time: bool| {
        let issued = issuer.server(cn, Validity::Days(1)).unwrap();
        for (name, mut pem) in [("tls.crt", issued.cert_pem), ("tls.key", issued.key_pem)] {
            let (path, staged) = (dir.path().join(name), dir.path().join(format!("{name}.new")));
            let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
            pem.resize(4096, b'\n');
            std::fs::write(&staged, pem).unwrap();
            if keep_time {
                std::fs::File::options().write(true).open(&staged).unwrap().set_modified(modified).unwrap();
            }
            std::fs::rename(&staged, &path).unwrap();
        }
    };
    // 1. Changed files (new modification time): reloaded within RELOAD_CHECK.
    replace("gateway-one", false);
    let reloaded = wait_cn(port, &both_cas, "gateway-one").await;
    assert_eq!(reloaded, "gateway-one", "a changed file is reloaded");
    assert_eq!(healthz_on(&mut open), "HTTP/1.1 200 OK", "the connection opened before survives");
    // 2. Same size and modification time: SIGHUP.
    replace("gateway-two", true);
    tokio::time::sleep(reload_check() * 2).await;
    let unchanged = tokio::task::block_in_place(|| served_cn(port, &both_cas));
    assert_eq!(unchanged, "gateway-one", "same size and time: not noticed without SIGHUP");
    let pid = std::process::id().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    assert_eq!(wait_cn(port, &both_cas, "gateway-two").await, "gateway-two", "SIGHUP reloads");
    assert_eq!(healthz_on(&mut open), "HTTP/1.1 200 OK", "the connection opened before survives");

    gateway.stop().await.unwrap();
    sink.stop().await.unwrap();
    profiles.stop().await.unwrap();
}

fn reload_check() -> Duration {
    ingest_gateway::http::tls::RELOAD_CHECK
}

/// Poll the CN served to new connections until it is `expected` (or 30 s passed).
async fn wait_cn(port: u16, ca: &std::path::Path, expected: &str) -> String {
    let until = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let cn = tokio::task::block_in_place(|| served_cn(port, ca));
        if cn == expected || std::time::Instant::now() > until {
            return cn;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `/readyz` of a consumer until it is 503 naming `setting` (asserted); the answer.
async fn wait_refused(s: &Secured, ops: SocketAddr, setting: &str) -> (u16, String) {
    let check = |status: u16, body: &str| status == 503 && body.contains(setting);
    let answer = s.wait_until(&format!("http://{ops}/readyz"), DEADLINE, check).await;
    assert!(check(answer.0, &answer.1), "/readyz must be 503 naming {setting}: {answer:?}");
    answer
}

/// Nothing written, dead-lettered or committed while refused.
async fn assert_nothing_moved(s: &Secured, groups: &[&str]) {
    let written = s.clickhouse.query("SELECT count() FROM vero.events").unwrap_or_default();
    assert!(written.trim() == "0" || written.contains("doesn't exist"), "nothing written: {written}");
    let servers = s.kafka.kafka.bootstrap_servers().to_owned();
    let dlq = s.dlq.clone();
    let letters =
        tokio::task::spawn_blocking(move || kafka_probe::read_topic(&servers, &dlq, 1, Duration::from_secs(3)))
            .await
            .unwrap()
            .unwrap();
    assert!(letters.is_empty(), "nothing dead-lettered: {letters:?}");
    for group in groups {
        let committed = committed_offsets(s, group).await;
        assert_eq!(committed, 0, "group {group} committed nothing");
    }
}

/// The sum of `group`'s committed offsets on the events topic (plaintext listener).
async fn committed_offsets(s: &Secured, group: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let (servers, topic, group) = (s.kafka.kafka.bootstrap_servers().to_owned(), s.topic.clone(), group.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer =
            rdkafka::ClientConfig::new().set("bootstrap.servers", &servers).set("group.id", &group).create().unwrap();
        let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10)).unwrap();
        let mut list = rdkafka::TopicPartitionList::new();
        for partition in metadata.topics()[0].partitions() {
            list.add_partition(&topic, partition.id());
        }
        let committed = consumer.committed_offsets(list, Duration::from_secs(10)).unwrap();
        committed.elements().iter().filter_map(|e| e.offset().to_raw()).filter(|o| *o > 0).sum()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_password_pauses_everything_until_the_broker_knows_it() {
    let s = Secured::new(2).await.unwrap();
    let kafka = s.kafka;
    // A good gateway (PLAIN) takes events before the consumers start.
    let (good_url, good) = s.gateway(Listener::SaslSsl, &kafka.plain(), false).await.unwrap();
    for i in 0..12 {
        let body = event(&format!("w-{}", i % 3), i);
        let answer = s.post_json(&format!("{good_url}/api/v2/events/track"), &body).await;
        assert_eq!(answer.unwrap().0, 200, "event {i}");
    }
    // Consumers and a second gateway log in as a user the broker does not know yet.
    let user = unique_name("rotated");
    let password = "0012-new-secret";
    let wrong: Vec<(String, String)> = kafka
        .scram(password, "ca.crt")
        .into_iter()
        .map(|(k, v)| if k == "sasl.username" { (k, user.clone()) } else { (k, v) })
        .collect();
    let (sink_group, profiles_group) = (unique_name("pw_sink"), unique_name("pw_profiles"));
    let (sink_ops, sink) = s.sink(Listener::SaslSsl, &wrong, &sink_group).await.unwrap();
    let (profiles_ops, profiles) = s.profiles(Listener::SaslSsl, &wrong, &profiles_group).await.unwrap();
    let (bad_url, bad) = s.gateway(Listener::SaslSsl, &wrong, false).await.unwrap();

    let sink_ready = wait_refused(&s, sink_ops, "sasl.password").await;
    assert_eq!(sink_ready.0, 503, "{sink_ready:?}");
    let profiles_ready = wait_refused(&s, profiles_ops, "sasl.password").await;
    assert_eq!(profiles_ready.0, 503, "{profiles_ready:?}");
    assert_eq!(s.metric(sink_ops, "vero_sink_needs_operator").await.unwrap(), 1.0);
    let dump = s.get(&format!("http://{profiles_ops}/metrics")).await.unwrap().1;
    let dump: Vec<&str> = dump.lines().filter(|l| l.contains("needs_operator")).collect();
    let again = s.get(&format!("http://{profiles_ops}/readyz")).await.unwrap();
    assert_eq!(s.metric(profiles_ops, "vero_profiles_needs_operator").await.unwrap(), 1.0, "{dump:?} {again:?}");
    let bad_ready = format!("{bad_url}/readyz");
    let gateway_ready =
        s.wait_until(&bad_ready, DEADLINE, |status, body| status == 503 && body.contains("sasl.password")).await;
    assert!(gateway_ready.0 == 503 && gateway_ready.1.contains("sasl.password"), "{gateway_ready:?}");
    let refused = s.post_json(&format!("{bad_url}/api/v2/events/track"), &event("w-x", 99)).await.unwrap();
    assert_eq!(refused.0, 503, "{refused:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_nothing_moved(&s, &[&sink_group, &profiles_group]).await;

    // The operator creates the user with that password on the broker.
    tokio::task::spawn_blocking(move || kafka.kafka.set_scram_password(&user, password)).await.unwrap().unwrap();
    let sink_ready = s.wait_until(&format!("http://{sink_ops}/readyz"), DEADLINE, |status, _| status == 200).await;
    assert_eq!(sink_ready.0, 200, "{sink_ready:?}");
    let profiles_ready = format!("http://{profiles_ops}/readyz");
    assert_eq!(s.wait_until(&profiles_ready, DEADLINE, |status, _| status == 200).await.0, 200);
    let gateway_ready = s.wait_until(&format!("{bad_url}/readyz"), DEADLINE, |status, _| status == 200).await;
    assert_eq!(gateway_ready.0, 200, "{gateway_ready:?}");
    let accepted = s.post_json(&format!("{bad_url}/api/v2/events/track"), &event("w-0", 12)).await.unwrap();
    assert_eq!(accepted.0, 200, "{accepted:?}");
    assert_all_landed(&s, 13, 3).await;
    assert_eq!(s.metric(sink_ops, "vero_sink_needs_operator").await.unwrap(), 0.0);
    assert_eq!(s.metric(profiles_ops, "vero_profiles_needs_operator").await.unwrap(), 0.0);
    for running in [good, bad, sink, profiles] {
        running.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn certificates_from_another_ca_pause_the_consumers_until_fixed() {
    let s = Secured::new(2).await.unwrap();
    let kafka = s.kafka;
    let (url, gateway) = s.gateway(Listener::SaslSsl, &kafka.scram(SCRAM_PASSWORD, "ca.crt"), false).await.unwrap();
    for i in 0..10 {
        let body = event(&format!("c-{}", i % 2), i);
        let answer = s.post_json(&format!("{url}/api/v2/events/track"), &body).await;
        assert_eq!(answer.unwrap().0, 200, "event {i}");
    }
    // The sink trusts another CA than the broker's; the profile consumer presents a
    // client certificate from another CA (Aiven-style client certificates).
    let (sink_group, profiles_group) = (unique_name("ca_sink"), unique_name("ca_profiles"));
    let untrusting = kafka.scram(SCRAM_PASSWORD, "other-ca.crt");
    let (sink_ops, sink) = s.sink(Listener::SaslSsl, &untrusting, &sink_group).await.unwrap();
    let foreign = kafka.mtls("other-client");
    let (profiles_ops, profiles) = s.profiles(Listener::Ssl, &foreign, &profiles_group).await.unwrap();
    let sink_ready = wait_refused(&s, sink_ops, "ssl.ca.location").await;
    assert_eq!(sink_ready.0, 503, "{sink_ready:?}");
    let profiles_ready = wait_refused(&s, profiles_ops, "ssl.certificate.location").await;
    assert_eq!(profiles_ready.0, 503, "{profiles_ready:?}");
    assert_eq!(s.metric(sink_ops, "vero_sink_needs_operator").await.unwrap(), 1.0);
    assert_eq!(s.metric(profiles_ops, "vero_profiles_needs_operator").await.unwrap(), 1.0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_nothing_moved(&s, &[&sink_group, &profiles_group]).await;

    // The operator configures the right files and restarts them.
    sink.stop().await.unwrap();
    profiles.stop().await.unwrap();
    let (sink_ops, sink) =
        s.sink(Listener::SaslSsl, &kafka.scram(SCRAM_PASSWORD, "ca.crt"), &sink_group).await.unwrap();
    let (profiles_ops, profiles) = s.profiles(Listener::Ssl, &kafka.mtls("client"), &profiles_group).await.unwrap();
    assert_all_landed(&s, 10, 2).await;
    assert_eq!(s.metric(sink_ops, "vero_sink_needs_operator").await.unwrap(), 0.0);
    assert_eq!(s.metric(profiles_ops, "vero_profiles_needs_operator").await.unwrap(), 0.0);
    for running in [gateway, sink, profiles] {
        running.stop().await.unwrap();
    }
}
