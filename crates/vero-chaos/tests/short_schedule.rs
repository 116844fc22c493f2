//! The short fault schedule, inside `make test`: kill -9 of each service, client
//! retries, frozen consumers, ClickHouse down or cut off, the broker stopped and
//! killed, under load, on the real broker and ClickHouse, each checked by
//! the ledger (every 200 exactly once, profiles = replay, DLQ = poison only).
//! The service binaries come from the same `cargo test --workspace` build.

use vero_chaos::{report, Schedule};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_schedule_holds() {
    let _ = tracing_subscriber::fmt().with_env_filter("info,rdkafka=warn").with_test_writer().try_init();
    let schedule = Schedule::Short;
    let outcomes = vero_chaos::run(&schedule.faults(), &schedule.settings()).await;
    let table = report::table(&outcomes);
    println!("{table}");
    assert!(outcomes.iter().all(|o| o.holds()), "a guarantee did not hold:\n{table}");
}
