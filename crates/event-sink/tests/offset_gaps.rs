//! Loss is never silent: records the broker deleted before the sink read them are
//! counted in `vero_consumer_offsets_skipped_total`.
//!
//! Retention deletes records whether anyone read them or not: the exact trap of a
//! sink that was down longer than `retention.ms` while events kept arriving. The sink
//! writes a few events and commits, stops; more arrive and the oldest unread ones are
//! deleted (DeleteRecords, what retention does, but at a known offset); the
//! restarted sink finds its committed offset gone. Every record is then either in
//! ClickHouse or counted as skipped — none vanishes without a number.

mod common;

use common::*;
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use std::time::{Duration, Instant};

const FIRST: usize = 10;
const FLOOD: usize = 300;
/// Of the flood, deleted before the sink comes back.
const DELETED: usize = 120;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_trimmed_by_the_broker_are_counted_as_skipped() {
    let setup = setup(1).await;
    let (_ops, stop, handle) = setup.start_sink().await;
    produce_events(&setup, 0..FIRST).await;
    setup.wait_for("SELECT count() FROM vero.events", &FIRST.to_string()).await;
    stop.cancel();
    handle.await.unwrap();

    // More records while no sink runs, and the oldest unread ones deleted.
    let producer = producer(&setup);
    let mut sends = Vec::new();
    for n in FIRST..FIRST + FLOOD {
        let event = event(n);
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
    setup.kafka.delete_records(&setup.topic, 0, (FIRST + DELETED) as i64).await.unwrap();

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
    assert_eq!(skipped, DELETED as f64, "every deleted record counted as skipped (rows {rows})");
    assert_eq!(rows + skipped, total, "rows {rows} + skipped {skipped} must account for all {total} records");
    stop.cancel();
    handle.await.unwrap();
}
