//! gateway → Kafka → both consumers → a real 2×2 ClickHouse cluster (ZooKeeper and four
//! `clickhouse-server` 18.16 processes): every event once through the Distributed
//! `vero.events` (plain `count()`, no `FINAL`), each user's events and profile on the
//! shard of its partition, and the same after a replica is killed mid-stream and after
//! a whole shard is down for 20 s, and `users/delete` erasing on every replica of the
//! user's shard. One cluster and one pipeline for the whole binary;
//! the phases run in order and their counts add up.

mod shared;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;
use shared::*;
use vero_e2e::TOKEN;
use vero_model::partition::partition_for_key;

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
