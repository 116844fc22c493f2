//! ZooKeeper killed for 15 s under load (issue 24), on a real 2 × 2 ClickHouse 18.16
//! cluster with Debian's ZooKeeper, the gateway and both consumers: while ZooKeeper is
//! gone every INSERT into a Replicated table fails (18.16 answers 999
//! `Coordination::Exception` or 225 `NO_ZOOKEEPER`, later 242 read-only), and the
//! consumers must wait and retry, never dead-letter. After the restart every
//! acknowledged event is in `vero.events` once, nothing is in the DLQ and every
//! profile counts its user's events once.

mod shared;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use shared::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zookeeper_killed_under_load_dead_letters_nothing_and_loses_nothing() {
    const EVENTS: usize = 1200;
    const USERS: usize = 40;
    let mut p = start().await;
    let acked = Acked::default();
    // 40 events a second for 30 s: the outage falls in the middle of the stream.
    let sender = tokio::spawn(send_paced(p.gateway_addr, "zk", EVENTS, USERS, acked.clone()));
    let flowing = p.wait_for("SELECT count() > 100 FROM vero.events", "1", DEADLINE).await;
    assert_eq!(flowing, "1", "the stream is flowing before ZooKeeper goes");

    tokio::task::block_in_place(|| p.clickhouse.kill_zookeeper());
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_secs(15)).await;
    let during = acked.lock().unwrap().iter().filter(|(_, at)| *at >= killed).count();
    tokio::task::block_in_place(|| p.clickhouse.restart_zookeeper()).unwrap();
    eprintln!("ZooKeeper back after {:?}; {during} events acknowledged while it was gone", killed.elapsed());
    sender.await.unwrap();

    assert_no_dead_letters(&p).await;
    check_once(&p, EVENTS).await;
    let mut counts = BTreeMap::new();
    tally(&mut counts, "zk", EVENTS, USERS);
    check_users(&p, &counts).await;
    assert_no_dead_letters(&p).await;
    eprintln!("every event once after {:?}", killed.elapsed());
    p.stop().await.unwrap();
}
