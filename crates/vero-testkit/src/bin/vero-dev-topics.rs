//! `vero-dev-topics BOOTSTRAP`: create the topics `make run` needs on a real broker
//! when they are missing: `vero.events` and `vero.events.dlq`, with
//! `VERO_DEV_PARTITIONS` partitions (default 4). The profile consumer creates its own
//! compacted `vero.profiles` and `vero.profiles.handoff`, co-partitioned with
//! `vero.events`. Existing topics are left as they are; it retries until the broker
//! answers (up to a minute).

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use vero_model::topics;

/// Create the topics `make run` needs on a real broker when they are missing.
#[derive(Parser)]
struct Args {
    /// The broker's bootstrap address.
    bootstrap: String,
    /// Partitions of each topic created.
    #[arg(long, env = "VERO_DEV_PARTITIONS", default_value_t = 4)]
    partitions: i32,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let Args { bootstrap, partitions } = Args::parse();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", &bootstrap).create()?;
    let wanted = [topics::EVENTS, topics::EVENTS_DLQ];
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let new: Vec<NewTopic<'_>> =
            wanted.iter().map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1))).collect();
        let outcome = admin.create_topics(&new, &options).await;
        let results = match outcome {
            Ok(results) => results,
            Err(e) if Instant::now() < deadline => {
                eprintln!("vero-dev-topics: broker not answering yet ({e}); retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => return Err(e).context("creating topics"),
        };
        for result in results {
            match result {
                Ok(topic) => eprintln!("vero-dev-topics: created {topic} ({partitions} partitions)"),
                Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => eprintln!("vero-dev-topics: {topic} exists"),
                Err((topic, code)) => anyhow::bail!("creating {topic}: {code}"),
            }
        }
        return Ok(());
    }
}
