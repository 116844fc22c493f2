//! `vero_profiles_consumer_lag{partition}` follows the assignment: when a second
//! instance joins the group and takes partitions, the first removes the series of the
//! partitions it lost, so `sum(vero_profiles_consumer_lag)` across instances (the
//! alert and the dashboard) counts every partition once. Against the mock cluster and
//! a real ClickHouse.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{event, Pipeline, Running, DEADLINE, PARTITIONS};

/// The partitions `running` exports a lag series for.
async fn lag_partitions(running: &Running) -> BTreeSet<i32> {
    let body = vero_testkit::http::get(running.ops, "/metrics", DEADLINE).await.unwrap();
    body.lines()
        .filter_map(|line| line.strip_prefix("vero_profiles_consumer_lag{partition=\""))
        .map(|rest| rest.split('"').next().unwrap().parse().unwrap())
        .collect()
}

/// One event per user `round-i` for `count` users: every partition gets some.
async fn send_round(pipeline: &Pipeline, round: &str, count: i64) {
    for i in 0..count {
        pipeline.send_event(&event(&format!("{round}-{i}"), round, Some(i), i, "{}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_partition_loses_its_lag_series() {
    let pipeline = Pipeline::start();
    let (group, outputs) = (vero_testkit::unique_name("lag"), vero_testkit::unique_name("lag_out"));
    let all: BTreeSet<i32> = (0..PARTITIONS).collect();

    let first = pipeline.start_consumer(pipeline.settings(&group, &outputs)).await;
    send_round(&pipeline, "before", 40).await;
    // Statistics come every 5 s; a series appears once the partition's offset is stored.
    let started = Instant::now();
    while lag_partitions(&first).await != all {
        assert!(started.elapsed() < DEADLINE, "first: series {:?}, wanted {all:?}", lag_partitions(&first).await);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let second = pipeline.start_consumer(pipeline.settings(&group, &outputs)).await;
    let started = Instant::now();
    let (mine, theirs) = loop {
        // Keep records coming so both instances store offsets after the rebalance.
        send_round(&pipeline, &format!("after{}", started.elapsed().as_millis()), 8).await;
        let (mine, theirs) = (lag_partitions(&first).await, lag_partitions(&second).await);
        let assigned = first.metric("vero_profiles_assigned_partitions").await as usize;
        if !theirs.is_empty() && mine.len() == assigned && mine.union(&theirs).count() == all.len() {
            break (mine, theirs);
        }
        assert!(
            started.elapsed() < DEADLINE,
            "first {mine:?} (assigned {assigned}), second {theirs:?}: wanted disjoint series covering {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(mine.is_disjoint(&theirs), "a partition reported by both: {mine:?} / {theirs:?}");
    assert!(!mine.is_empty() && mine.len() < all.len(), "the first kept {mine:?}");
    assert_eq!(second.metric("vero_profiles_assigned_partitions").await as usize, theirs.len());

    // Stopping revokes the rest: an instance that left the group exports no lag.
    second.stop().await;
    first.stop().await;
}
