//! `vero-dev-broker`: librdkafka's mock cluster as a standalone local broker for
//! `make run`. Creates the pipeline's topics, writes the bootstrap address to the file
//! given as the first argument, and serves until SIGINT/SIGTERM. `VERO_DEV_PARTITIONS`
//! sets the partition count (6), `VERO_DEV_TOPICS` adds topics. Data lives in memory
//! only; this is a development stand-in, not a broker to keep data in.

use std::time::Duration;

use clap::Parser;
use vero_model::topics;
use vero_testkit::mock_kafka::MockKafka;

/// librdkafka's mock cluster as a standalone local broker.
#[derive(Parser)]
struct Args {
    /// Where to write the bootstrap address.
    #[arg(default_value = ".local/run/kafka.bootstrap")]
    bootstrap_file: String,
    /// Partitions of every topic.
    #[arg(long, env = "VERO_DEV_PARTITIONS", default_value_t = 6)]
    partitions: i32,
    /// Extra comma-separated topics (the bench suite's per-run topics).
    #[arg(long, env = "VERO_DEV_TOPICS", default_value = "")]
    topics: String,
}

fn main() -> anyhow::Result<()> {
    let Args { bootstrap_file, partitions, topics: extra } = Args::parse();
    let kafka = MockKafka::start(1)?;
    // Every topic with the same partition count: the profiles topics must be
    // co-partitioned with the events topic.
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
