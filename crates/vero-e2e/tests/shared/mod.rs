//! What the cluster e2e tests share: the pipeline on a real 2 × 2 ClickHouse cluster,
//! load through the gateway, the checks that every acknowledged event is once in
//! ClickHouse and counted once in its user's profile, and faults the test kit has no
//! handle for (SIGSTOP of one server process).

#![allow(dead_code)] // each test binary uses its own share of these

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use vero_e2e::{Pipeline, TOKEN};
use vero_model::partition::partition_for_key;
use vero_testkit::clickhouse_cluster::ClickHouseCluster;

pub const PARTITIONS: i32 = 4;
pub const SHARDS: usize = 2;
/// For "eventually" checks: generous, the whole suite shares 2 cores.
pub const DEADLINE: Duration = Duration::from_secs(120);

pub type Cluster = Pipeline<ClickHouseCluster>;

/// The pipeline on a `SHARDS` × 2 cluster.
pub async fn start() -> Cluster {
    vero_e2e::cluster::start(SHARDS, 2, PARTITIONS, &[]).await.unwrap()
}

/// POST one event of `user` (number `i` of its stream `prefix`) to the gateway at `gateway`.
pub async fn send_one(
    http: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    gateway: SocketAddr,
    prefix: &str,
    user: &str,
    i: usize,
) {
    let body = json!({"auth_token": TOKEN, "identity": {"id": user},
                      "event_name": "clustered", "data": {"i": i, "prefix": prefix}});
    let request = hyper::Request::post(format!("http://{gateway}/api/v2/events/track"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let status = http.request(request).await.unwrap().status();
    assert_eq!(status, 200, "{prefix} event {i}");
}

/// POST `count` events to the gateway at `gateway` for users `<prefix>-0 ..
/// <prefix>-<users - 1>`, round robin (its own HTTP client: runs beside the faults).
pub async fn send(gateway: SocketAddr, prefix: &'static str, count: usize, users: usize) {
    let http = Client::builder(TokioExecutor::new()).build_http();
    for i in 0..count {
        send_one(&http, gateway, prefix, &format!("{prefix}-{}", i % users), i).await;
    }
}

/// The shard (from 0) a user's rows belong to.
pub fn shard_of(user: &str) -> usize {
    partition_for_key(user.as_bytes(), PARTITIONS) as usize % SHARDS
}

pub fn node_query(p: &Cluster, shard: usize, replica: usize, sql: &str) -> String {
    let node = p.clickhouse.node(shard, replica);
    tokio::task::block_in_place(|| node.query(sql)).map(|s| s.trim().to_owned()).unwrap_or_else(|e| format!("{e}"))
}

/// Poll `sql` on one node until it answers `expected` (bounded); the last answer.
pub async fn wait_node(p: &Cluster, shard: usize, replica: usize, sql: &str, expected: &str) -> String {
    let until = Instant::now() + DEADLINE;
    loop {
        let got = node_query(p, shard, replica, sql);
        if got == expected || Instant::now() > until {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Every event once, no row twice on any replica, and each replica of a shard holding
/// the same rows (waits for replication, bounded).
pub async fn check_once(p: &Cluster, expected: usize) {
    // One query for both figures: the Distributed table may read another replica on
    // the next query, one that has not fetched the latest parts yet.
    let want = format!("{expected}\t{expected}");
    let got = p.wait_for("SELECT count(), uniqExact(event_id) FROM vero.events", &want, DEADLINE).await;
    let (total, distinct) = got.split_once('\t').unwrap_or((got.as_str(), ""));
    assert_eq!(total, expected.to_string(), "plain count() through the Distributed table");
    assert_eq!(distinct.trim(), expected.to_string(), "no event twice");
    let until = Instant::now() + DEADLINE;
    for shard in 0..SHARDS {
        loop {
            let counts: Vec<String> = (0..2)
                .map(|r| node_query(p, shard, r, "SELECT count(), uniqExact(event_id) FROM vero.events_local"))
                .collect();
            let caught_up = counts[0] == counts[1] && counts[0].split('\t').collect::<BTreeSet<_>>().len() == 1;
            if caught_up {
                break;
            }
            assert!(Instant::now() < until, "shard {shard}: replicas differ or hold a row twice: {counts:?}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let stray = node_query(
            p,
            shard,
            0,
            &format!("SELECT count() FROM vero.events_local WHERE kafka_partition % {SHARDS} != {shard}"),
        );
        assert_eq!(stray, "0", "shard {shard} holds only rows of its partitions");
    }
}

/// Every user's events on the partition of its key, and its profile counting them
/// once, on the same shard as the events.
pub async fn check_users(p: &Cluster, events_per_user: &BTreeMap<String, u64>) {
    let by_user = p
        .query("SELECT user_id, groupUniqArray(kafka_partition), count() FROM vero.events GROUP BY user_id FORMAT TSV")
        .await
        .unwrap();
    let mut seen = 0;
    for line in by_user.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        let user = fields[0];
        let Some(expected) = events_per_user.get(user) else { continue };
        seen += 1;
        let partition = partition_for_key(user.as_bytes(), PARTITIONS);
        assert_eq!(fields[1], format!("[{partition}]"), "{user}: all events on the key's partition");
        assert_eq!(fields[2], expected.to_string(), "{user}: events");
    }
    assert_eq!(seen, events_per_user.len(), "every user has events: {by_user}");
    let users: Vec<String> = events_per_user.keys().map(|u| format!("'{u}'")).collect();
    let expected: String =
        events_per_user.iter().map(|(user, count)| format!("{user}\t{count}\n")).collect::<String>().trim().to_owned();
    let profiles = format!(
        "SELECT user_id, event_count FROM vero.profiles FINAL WHERE deleted = 0 AND project = 'e2e' \
         AND user_id IN ({}) ORDER BY user_id FORMAT TSV",
        users.join(",")
    );
    assert_eq!(p.wait_for(&profiles, &expected, DEADLINE).await, expected, "profiles count every event once");
    for shard in 0..SHARDS {
        let local = node_query(p, shard, 0, "SELECT DISTINCT user_id FROM vero.profiles_local WHERE project = 'e2e'");
        for user in local.lines().filter(|u| events_per_user.contains_key(*u)) {
            assert_eq!(shard_of(user), shard, "{user}'s profile is on its events' shard");
        }
    }
}

pub fn tally(counts: &mut BTreeMap<String, u64>, prefix: &str, count: usize, users: usize) {
    for i in 0..count {
        *counts.entry(format!("{prefix}-{}", i % users)).or_default() += 1;
    }
}

/// Nothing in the dead-letter topic, and neither consumer counted a dead letter.
pub async fn assert_no_dead_letters(p: &Cluster) {
    assert_eq!(p.sink_metric("vero_sink_dlq_records_total").await.unwrap(), 0.0, "the sink dead-lettered events");
    let profiles = p.profiles_metric("vero_profiles_records_total{outcome=\"dead_lettered\"}").await.unwrap();
    assert_eq!(profiles, 0.0, "the profile consumer dead-lettered records");
    let (bootstrap, dlq) = (p.kafka.bootstrap_servers().to_owned(), p.dlq.clone());
    let letters = tokio::task::spawn_blocking(move || {
        vero_testkit::kafka_probe::read_topic(&bootstrap, &dlq, 1, Duration::from_secs(5))
    })
    .await
    .unwrap()
    .unwrap();
    assert!(letters.is_empty(), "{} record(s) in the dead-letter topic", letters.len());
}

/// `/readyz` of the service whose ops listener is `ops`: `Ok` or the reason it is not ready.
pub async fn readiness(ops: SocketAddr) -> Result<(), String> {
    let http: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let response = http.get(format!("http://{ops}/readyz").parse().unwrap()).await.map_err(|e| e.to_string())?;
    let ok = response.status() == 200;
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    if ok {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&body).into_owned())
    }
}

/// SIGSTOP (`stop`) or SIGCONT the server process of one node: it keeps its sockets
/// open and answers nothing, a gray failure (the test kit only kills and restarts).
pub fn freeze(p: &Cluster, shard: usize, replica: usize, stop: bool) {
    let config = format!("--config-file={}", p.clickhouse.node(shard, replica).data_dir().join("config.xml").display());
    let pid = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            cmdline.split(|&b| b == 0).any(|arg| arg == config.as_bytes())
        })
        .unwrap_or_else(|| panic!("no process of shard {shard} replica {replica} ({config})"));
    let signal = if stop { "-STOP" } else { "-CONT" };
    let status = std::process::Command::new("kill").args([signal, &pid.to_string()]).status().unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

/// When each acknowledged event of a paced stream was acknowledged, by shard.
pub type Acked = std::sync::Arc<std::sync::Mutex<Vec<(usize, Instant)>>>;

/// POST `count` events for users `<prefix>-0 .. <prefix>-<users - 1>`, round robin,
/// `per_tick` every `tick` (load spread over a fault), noting each acknowledgement in
/// `acked`.
pub async fn send_paced(gateway: SocketAddr, prefix: &'static str, count: usize, users: usize, acked: Acked) {
    const PER_TICK: usize = 10;
    let http = Client::builder(TokioExecutor::new()).build_http();
    let mut ticks = tokio::time::interval(Duration::from_millis(250));
    for i in 0..count {
        if i % PER_TICK == 0 {
            ticks.tick().await;
        }
        let user = format!("{prefix}-{}", i % users);
        send_one(&http, gateway, prefix, &user, i).await;
        acked.lock().unwrap().push((shard_of(&user), Instant::now()));
    }
}

/// The longest an acknowledged event of `prefix` on `shard` waited to land, as rows
/// (`vero.events_local`) and as counted in profiles (`vero.profiles_local`), both read
/// on `replica` of the shard; sampled every 250 ms until `until`. Counts are compared
/// with acknowledgements in order: with `n` rows landed, the `n+1`-th acknowledged
/// event is the one still waiting.
#[derive(Debug, Default, Clone, Copy)]
pub struct Lag {
    pub events: Duration,
    pub profiles: Duration,
}

pub async fn watch_lag(
    p: &Cluster,
    prefix: &str,
    (shard, replica): (usize, usize),
    acked: &Acked,
    until: Instant,
) -> Lag {
    let events = format!("SELECT count() FROM vero.events_local WHERE user_id LIKE '{prefix}-%'");
    let profiles = format!(
        "SELECT sum(event_count) FROM vero.profiles_local FINAL WHERE deleted = 0 AND user_id LIKE '{prefix}-%'"
    );
    let mut lag = Lag::default();
    while Instant::now() < until {
        let landed_events: usize = node_query(p, shard, replica, &events).parse().unwrap_or(0);
        let landed_profiles: usize = node_query(p, shard, replica, &profiles).parse().unwrap_or(0);
        let now = Instant::now();
        let waiting = |landed: usize| {
            let acked = acked.lock().unwrap();
            acked.iter().filter(|(s, _)| *s == shard).nth(landed).map_or(Duration::ZERO, |(_, at)| now - *at)
        };
        lag.events = lag.events.max(waiting(landed_events));
        lag.profiles = lag.profiles.max(waiting(landed_profiles));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    lag
}
