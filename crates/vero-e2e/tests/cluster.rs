//! gateway → Kafka → both consumers → a real 2×2 ClickHouse cluster (ZooKeeper and four
//! `clickhouse-server` 18.16 processes): every event once through the Distributed
//! `vero.events` (plain `count()`, no `FINAL`), each user's events and profile on the
//! shard of its partition, and the same after a replica is killed mid-stream and after
//! a whole shard is down for 20 s, and `users/delete` erasing on every replica of the
//! user's shard. One cluster and one pipeline for the whole binary;
//! the phases run in order and their counts add up.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use vero_e2e::{Pipeline, TOKEN};
use vero_model::partition::partition_for_key;
use vero_testkit::clickhouse_cluster::ClickHouseCluster;

const PARTITIONS: i32 = 4;
const SHARDS: usize = 2;
const DEADLINE: Duration = Duration::from_secs(120);

type Cluster = Pipeline<ClickHouseCluster>;

/// POST `count` events to the gateway at `gateway` for users `<prefix>-0 ..
/// <prefix>-<users - 1>`, round robin (its own HTTP client: runs beside the faults).
async fn send(gateway: SocketAddr, prefix: &'static str, count: usize, users: usize) {
    let http = Client::builder(TokioExecutor::new()).build_http();
    for i in 0..count {
        let body = json!({"auth_token": TOKEN, "identity": {"id": format!("{prefix}-{}", i % users)},
                          "event_name": "clustered", "data": {"i": i, "prefix": prefix}});
        let request = hyper::Request::post(format!("http://{gateway}/api/v2/events/track"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let status = http.request(request).await.unwrap().status();
        assert_eq!(status, 200, "{prefix} event {i}");
    }
}

/// The shard (from 0) a user's rows belong to.
fn shard_of(user: &str) -> usize {
    partition_for_key(user.as_bytes(), PARTITIONS) as usize % SHARDS
}

fn node_query(p: &Cluster, shard: usize, replica: usize, sql: &str) -> String {
    let node = p.clickhouse.node(shard, replica);
    tokio::task::block_in_place(|| node.query(sql)).map(|s| s.trim().to_owned()).unwrap_or_else(|e| format!("{e}"))
}

/// Poll `sql` on one node until it answers `expected` (bounded); the last answer.
async fn wait_node(p: &Cluster, shard: usize, replica: usize, sql: &str, expected: &str) -> String {
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
async fn check_once(p: &Cluster, expected: usize) {
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
async fn check_users(p: &Cluster, events_per_user: &BTreeMap<String, u64>) {
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

fn tally(counts: &mut BTreeMap<String, u64>, prefix: &str, count: usize, users: usize) {
    for i in 0..count {
        *counts.entry(format!("{prefix}-{}", i % users)).or_default() += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pipeline_on_a_2x2_cluster_survives_a_replica_and_a_shard_down() {
    let started = Instant::now();
    let mut p = vero_e2e::cluster::start(SHARDS, 2, PARTITIONS, &[]).await.unwrap();
    let mut counts = BTreeMap::new();

    // 1. End to end: Vero's documented example and a stream over many users.
    let documented = json!({"auth_token": TOKEN, "identity": {"id": "1", "email": "janedoe@getvero.com"},
                            "event_name": "user_signed_up", "data": {"item": "Blue shoes", "price": 40.00}});
    assert_eq!(p.post_json("/api/v2/events/track", &documented).await.unwrap().0, 200);
    counts.insert("1".to_owned(), 1);
    send(p.gateway_addr, "e2e", 200, 40).await;
    tally(&mut counts, "e2e", 200, 40);
    check_once(&p, 201).await;
    let select = "SELECT project, event_name, user_id, email, identity, data, extras, source, development_mode, \
                  created_at_ms, kafka_partition FROM vero.events WHERE user_id = '1' FORMAT TSV";
    let row = p.query(select).await.unwrap();
    let partition = partition_for_key(b"1", PARTITIONS);
    assert_eq!(
        row.trim(),
        format!(
            "e2e\tuser_signed_up\t1\tjanedoe@getvero.com\t{{}}\t{{\"item\":\"Blue shoes\",\"price\":40.0}}\t{{}}\t\\N\t0\t\\N\t{partition}"
        )
    );
    assert_eq!(node_query(&p, shard_of("1"), 1, "SELECT count() FROM vero.events_local WHERE user_id = '1'"), "1");
    check_users(&p, &counts).await;
    eprintln!("phase 1 (end to end) done after {:?}", started.elapsed());

    // 2. The replica the writers use for shard 0 killed mid-stream, restarted 5 s later.
    let sender = tokio::spawn(send(p.gateway_addr, "kill", 300, 30));
    tally(&mut counts, "kill", 300, 30);
    let before = p.wait_for("SELECT count() > 260 FROM vero.events", "1", DEADLINE).await;
    assert_eq!(before, "1", "the stream is flowing before the kill");
    tokio::task::block_in_place(|| p.clickhouse.kill_node(0, 0)).unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    tokio::task::block_in_place(|| p.clickhouse.restart_node(0, 0)).unwrap();
    sender.await.unwrap();
    check_once(&p, 501).await;
    eprintln!("phase 2 (replica killed) done after {:?}", started.elapsed());

    // 3. Shard 1 down (both replicas) for 20 s while events keep coming: shard 0's
    //    users' events and profiles must all land meanwhile (both consumers park
    //    shard 1's partitions instead of holding everyone's), shard 1's once it is back.
    let down_at = Instant::now();
    tokio::task::block_in_place(|| p.clickhouse.kill_shard(1)).unwrap();
    send(p.gateway_addr, "down", 200, 20).await;
    tally(&mut counts, "down", 200, 20);
    let expected0: u64 =
        counts.iter().filter(|(u, _)| u.starts_with("down-") && shard_of(u) == 0).map(|(_, c)| c).sum();
    let landed = "SELECT count() FROM vero.events_local WHERE user_id LIKE 'down-%'";
    let mut shard0 = node_query(&p, 0, 0, landed);
    while shard0 != expected0.to_string() && down_at.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        shard0 = node_query(&p, 0, 0, landed);
    }
    eprintln!("shard 1 down: {shard0} of shard 0's {expected0} new rows landed after {:?}", down_at.elapsed());
    assert_eq!(shard0, expected0.to_string(), "shard 0's events land while shard 1 is down");
    assert!(p.sink_metric("vero_sink_parked_partitions").await.unwrap() > 0.0, "shard 1's partitions are parked");
    let counted = "SELECT sum(event_count) FROM vero.profiles_local FINAL WHERE deleted = 0 AND user_id LIKE 'down-%'";
    let mut profiles0 = node_query(&p, 0, 0, counted);
    while profiles0 != expected0.to_string() && down_at.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        profiles0 = node_query(&p, 0, 0, counted);
    }
    eprintln!(
        "shard 1 down: shard 0's profiles count {profiles0} of {expected0} new events after {:?}",
        down_at.elapsed()
    );
    assert_eq!(profiles0, expected0.to_string(), "shard 0's profiles are written while shard 1 is down");
    let parked = p.profiles_metric("vero_profiles_parked_partitions").await.unwrap();
    assert!(parked > 0.0, "the profile consumer parked shard 1's partitions");
    let failing = p.profiles_metric("vero_profiles_shard_failing").await.unwrap();
    assert_eq!(failing, 1.0, "the profile consumer shows one shard failing");
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(down_at.elapsed())).await;
    tokio::task::block_in_place(|| p.clickhouse.restart_shard(1)).unwrap();
    check_once(&p, 701).await;
    check_users(&p, &counts).await;
    assert_eq!(p.profiles_metric("vero_profiles_shard_failing").await.unwrap(), 0.0, "no shard failing any more");
    assert_eq!(p.profiles_metric("vero_profiles_parked_partitions").await.unwrap(), 0.0, "nothing parked any more");
    eprintln!("phase 3 (shard down) done after {:?}", started.elapsed());

    // 4. users/delete of one user on each shard: erased on both replicas of its shard.
    let gone: Vec<String> =
        (0..SHARDS).map(|s| (0..40).map(|i| format!("e2e-{i}")).find(|u| shard_of(u) == s).unwrap()).collect();
    for user in &gone {
        let delete = json!({"auth_token": TOKEN, "id": user});
        p.call(hyper::Method::DELETE, "/api/v2/users/delete", delete).await;
    }
    let erased: u64 = gone.iter().map(|u| counts[u]).sum();
    check_once(&p, 701 - erased as usize).await;
    for user in &gone {
        for replica in 0..2 {
            let sql = format!("SELECT count() FROM vero.events_local WHERE user_id = '{user}'");
            assert_eq!(
                wait_node(&p, shard_of(user), replica, &sql, "0").await,
                "0",
                "{user} erased on replica {replica}"
            );
        }
        let live = format!("SELECT count() FROM vero.profiles_live WHERE user_id = '{user}'");
        assert_eq!(p.wait_for(&live, "0", DEADLINE).await, "0", "{user}'s profile erased");
    }
    eprintln!("phase 4 (deletes) done after {:?}", started.elapsed());
    p.stop().await.unwrap();
}
