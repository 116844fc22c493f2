//! Hung replicas (issue 24), on a real 2 × 2 ClickHouse 18.16 cluster with the gateway
//! and both consumers: a server process stopped with SIGSTOP keeps its sockets open and
//! answers nothing, a gray failure that no refused connection reveals.
//!
//! 1. The replica both consumers write for shard 0 frozen for 15 s under load: shard
//!    1's events and profiles keep landing, shard 0's fail over to its other replica,
//!    both within the park deadline (nothing parked), and `/readyz` of both consumers
//!    reports the stall while it lasts.
//! 2. Both replicas of shard 0 frozen for 15 s: shard 1 keeps landing within the park
//!    deadline (shard 0 is parked); after SIGCONT everything lands once.
//!
//! "Within the park deadline" is asserted with headroom for a loaded 2-core machine:
//! the longest any acknowledged event waited to land stays under [`BOUND`] (5 s park
//! deadline + 4 s); without the time bounds it is the whole freeze (15 s and more).

mod shared;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use shared::*;

const FROZEN: Duration = Duration::from_secs(15);
const BOUND: Duration = Duration::from_secs(9);
const EVENTS: usize = 600;
const USERS: usize = 40;

/// What the consumers said while a fault lasted.
#[derive(Debug, Default)]
struct Seen {
    sink_stall: Option<String>,
    profiles_stall: Option<String>,
    sink_parked: f64,
    profiles_parked: f64,
}

/// Sample `/readyz` and the parked gauges of both consumers until `until`.
async fn watch_consumers(p: &Cluster, until: Instant) -> Seen {
    let mut seen = Seen::default();
    let stall = |readiness: Result<(), String>| readiness.err().filter(|reason| reason.contains("has not answered"));
    while Instant::now() < until {
        seen.sink_stall = seen.sink_stall.or(stall(readiness(p.sink_ops).await));
        seen.profiles_stall = seen.profiles_stall.or(stall(readiness(p.profiles_ops).await));
        seen.sink_parked = seen.sink_parked.max(p.sink_metric("vero_sink_parked_partitions").await.unwrap());
        seen.profiles_parked =
            seen.profiles_parked.max(p.profiles_metric("vero_profiles_parked_partitions").await.unwrap());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_replica_fails_over_and_a_hung_shard_never_stalls_the_other() {
    let p = start().await;
    let mut counts = BTreeMap::new();
    send(p.gateway_addr, "warm", 40, USERS).await;
    tally(&mut counts, "warm", 40, USERS);
    // Both replicas of each shard hold every part before the freeze: the replica failed
    // over to needs nothing from the frozen one (docs/design.md, "Cluster writes").
    check_once(&p, 40).await;

    // 1. The replica written for shard 0 frozen, events coming for both shards.
    freeze(&p, 0, 0, true);
    let frozen_at = Instant::now();
    let acked = Acked::default();
    let sender = tokio::spawn(send_paced(p.gateway_addr, "one", EVENTS, USERS, acked.clone()));
    let until = frozen_at + FROZEN;
    let (other, failed_over, seen) = tokio::join!(
        watch_lag(&p, "one", (1, 0), &acked, until),
        watch_lag(&p, "one", (0, 1), &acked, until),
        watch_consumers(&p, until),
    );
    freeze(&p, 0, 0, false);
    eprintln!("one replica frozen: shard 1 waited at most {other:?}, shard 0 (failed over) {failed_over:?}; {seen:?}");
    sender.await.unwrap();
    tally(&mut counts, "one", EVENTS, USERS);
    assert!(other.events < BOUND && other.profiles < BOUND, "shard 1 kept landing: {other:?}");
    assert!(failed_over.events < BOUND && failed_over.profiles < BOUND, "shard 0 failed over: {failed_over:?}");
    assert_eq!((seen.sink_parked, seen.profiles_parked), (0.0, 0.0), "a shard with a replica answering is not parked");
    assert!(seen.sink_stall.is_some(), "the sink's /readyz reported the stall: {seen:?}");
    assert!(seen.profiles_stall.is_some(), "the profile consumer's /readyz reported the stall: {seen:?}");
    check_once(&p, 40 + EVENTS).await;

    // 2. Both replicas of shard 0 frozen: shard 1 goes on, shard 0 waits in Kafka.
    freeze(&p, 0, 0, true);
    freeze(&p, 0, 1, true);
    let frozen_at = Instant::now();
    let acked = Acked::default();
    let sender = tokio::spawn(send_paced(p.gateway_addr, "both", EVENTS, USERS, acked.clone()));
    let until = frozen_at + FROZEN;
    let (other, seen) = tokio::join!(watch_lag(&p, "both", (1, 0), &acked, until), watch_consumers(&p, until));
    freeze(&p, 0, 0, false);
    freeze(&p, 0, 1, false);
    eprintln!("shard 0 frozen: shard 1 waited at most {other:?}; {seen:?}");
    sender.await.unwrap();
    tally(&mut counts, "both", EVENTS, USERS);
    assert!(other.events < BOUND && other.profiles < BOUND, "shard 1 kept landing: {other:?}");
    assert!(seen.sink_parked > 0.0 && seen.profiles_parked > 0.0, "shard 0 was parked: {seen:?}");
    check_once(&p, 40 + 2 * EVENTS).await;
    check_users(&p, &counts).await;
    assert_no_dead_letters(&p).await;
    eprintln!("everything once {:?} after the thaw", frozen_at.elapsed().saturating_sub(FROZEN));
    p.stop().await.unwrap();
}
