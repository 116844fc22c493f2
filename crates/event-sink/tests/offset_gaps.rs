//! Loss is never silent: records the broker deleted before the sink read them are
//! counted in `vero_consumer_offsets_skipped_total`.
//!
//! librdkafka's mock cluster keeps at most 5 MiB per partition and deletes the oldest
//! records silently: the exact trap of a sink that was down while events kept
//! arriving. The sink writes a few events and commits, stops; 7 MB more arrive; the
//! restarted sink finds its committed offset gone. Every record is then either in
//! ClickHouse or counted as skipped — none vanishes without a number.

mod common;

use common::*;
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use std::time::{Duration, Instant};

const FIRST: usize = 10;
const FLOOD: usize = 7_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_trimmed_by_the_broker_are_counted_as_skipped() {
    let setup = setup(1).await;
    let (_ops, stop, handle) = setup.start_sink().await;
    produce_events(&setup, 0..FIRST).await;
    setup.wait_for("SELECT count() FROM vero.events", &FIRST.to_string()).await;
    stop.cancel();
    handle.await.unwrap();

    // 7 000 records of ~1 KB while no sink runs: more than the broker keeps.
    let producer = producer(&setup);
    let padding = "x".repeat(1000);
    let mut sends = Vec::new();
    for n in FIRST..FIRST + FLOOD {
        let mut event = event(n);
        event.data = format!(r#"{{"n":{n},"pad":"{padding}"}}"#);
        let payload = vero_model::encode_event(&event);
        let topic = setup.topic.clone();
        let producer = producer.clone();
        sends.push(tokio::spawn(async move {
            producer
                .send(
                    FutureRecord::to(&topic).key("one-user").payload(&payload),
                    Timeout::After(Duration::from_secs(60)),
                )
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
        }));
    }
    for send in sends {
        send.await.unwrap().unwrap();
    }

    let (ops, stop, handle) = setup.start_sink().await;
    let total = (FIRST + FLOOD) as f64;
    // Settled when every record is accounted for: written, or counted as skipped.
    let deadline = Instant::now() + DEADLINE;
    let (mut rows, mut skipped) = (0.0, 0.0);
    while Instant::now() < deadline {
        rows = setup.query("SELECT count() FROM vero.events").await.trim().parse().unwrap_or(0.0);
        skipped = metric(ops, "vero_consumer_offsets_skipped_total").await;
        if rows + skipped >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(skipped > 0.0, "the broker trimmed records but nothing was counted as skipped (rows {rows})");
    assert_eq!(rows + skipped, total, "rows {rows} + skipped {skipped} must account for all {total} records");
    stop.cancel();
    handle.await.unwrap();
}
