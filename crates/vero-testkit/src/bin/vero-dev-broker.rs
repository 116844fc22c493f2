//! `vero-dev-broker`: librdkafka's mock cluster as a standalone local broker for
//! `make run`. Creates the pipeline's topics, writes the bootstrap address to the file
//! given as the first argument, and serves until SIGINT/SIGTERM. `VERO_DEV_PARTITIONS`
//! sets the partition count (6), `VERO_DEV_TOPICS` adds topics. Data lives in memory
//! only; this is a development stand-in, not a broker to keep data in.

use std::time::Duration;

use vero_model::topics;
use vero_testkit::mock_kafka::MockKafka;

fn main() -> anyhow::Result<()> {
    let bootstrap_file = std::env::args().nth(1).unwrap_or_else(|| ".local/run/kafka.bootstrap".into());
    let partitions: i32 = std::env::var("VERO_DEV_PARTITIONS").ok().and_then(|p| p.parse().ok()).unwrap_or(6);
    let kafka = MockKafka::start(1)?;
    // Every topic with the same partition count: the profiles topics must be
    // co-partitioned with the events topic.
    // VERO_DEV_TOPICS: extra comma-separated topics (the bench suite's per-run topics).
    let extra = std::env::var("VERO_DEV_TOPICS").unwrap_or_default();
    for topic in topics::ALL.into_iter().chain(extra.split(',').map(str::trim).filter(|t| !t.is_empty())) {
        kafka.create_topic(topic, partitions)?;
    }
    if let Some(dir) = std::path::Path::new(&bootstrap_file).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&bootstrap_file, kafka.bootstrap_servers())?;
    eprintln!(
        "vero-dev-broker: librdkafka mock cluster at {} ({partitions} partitions per topic), address written to {bootstrap_file}",
        kafka.bootstrap_servers()
    );
    vero_testkit::wait_for_stop_signal()?;
    eprintln!("vero-dev-broker: stopping");
    drop(kafka);
    std::thread::sleep(Duration::from_millis(50));
    Ok(())
}
