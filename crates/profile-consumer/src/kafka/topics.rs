//! Topic setup at start: the profiles topic (`cleanup.policy=compact`) and the handoff
//! topic are created when missing with the events topic's partition count, and every
//! topic is checked to be co-partitioned with it (same count), because a profile's
//! state for events partition `p` lives in profiles partition `p` and its moves
//! arrive on handoff partition `p`.

use std::time::Duration;

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use vero_service::kafka_security::{Watch, Watched};

use crate::config::KafkaSettings;

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Partition count of `topic`, `None` when it does not exist.
pub fn partition_count(kafka: &KafkaSettings, topic: &str) -> anyhow::Result<Option<i32>> {
    partition_count_watched(kafka, topic, Watch::new("profile-consumer", None, None))
}

/// [`partition_count`] reporting a refused connection to `watch` (and clearing one
/// once the metadata came).
fn partition_count_watched(kafka: &KafkaSettings, topic: &str, watch: Watch) -> anyhow::Result<Option<i32>> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &kafka.brokers);
    let consumer: BaseConsumer<Watched> = kafka
        .apply_properties(&mut config)
        .create_with_context(Watched(watch.clone()))
        .context("creating a metadata client")?;
    let metadata = match consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT) {
        Ok(metadata) => metadata,
        Err(e) => {
            vero_service::kafka_security::drain(&consumer);
            return Err(e).context("fetching topic metadata");
        }
    };
    watch.accepted();
    Ok(metadata.topics().iter().find(|t| t.name() == topic).and_then(|t| match t.error() {
        None if !t.partitions().is_empty() => Some(t.partitions().len() as i32),
        _ => None,
    }))
}

/// Make sure the profiles and handoff topics exist and are co-partitioned with the
/// events topic; returns the shared partition count.
pub async fn ensure(settings: &KafkaSettings, watch: &Watch) -> anyhow::Result<i32> {
    let (kafka, events, w) = (settings.clone(), settings.events_topic.clone(), watch.clone());
    let partitions = tokio::task::spawn_blocking(move || partition_count_watched(&kafka, &events, w))
        .await??
        .with_context(|| format!("events topic `{}` does not exist", settings.events_topic))?;
    let wanted = [(&settings.profiles_topic, true), (&settings.handoff_topic, false)];
    if settings.create_topics {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &settings.brokers);
        let admin: AdminClient<Watched> = settings
            .apply_properties(&mut config)
            .create_with_context(Watched(watch.clone()))
            .context("creating admin client")?;
        for (topic, compacted) in wanted {
            let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(settings.replication_factor));
            if compacted {
                new_topic = new_topic.set("cleanup.policy", "compact");
            }
            let options = AdminOptions::new().request_timeout(Some(METADATA_TIMEOUT));
            tracing::debug!(topic, partitions, "creating topic if missing");
            // librdkafka's mock cluster never answers CreateTopics: bound the wait.
            let results = tokio::time::timeout(METADATA_TIMEOUT * 2, admin.create_topics([&new_topic], &options))
                .await
                .with_context(|| format!("creating topic `{topic}`: no answer (create it beforehand and set kafka.create_topics = false)"))?
                .context("CreateTopics request")?;
            for result in results {
                match result {
                    Ok(_) => tracing::info!(topic, partitions, compacted, "created topic"),
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((_, code)) => bail!("creating topic `{topic}`: {code}"),
                }
            }
        }
    }
    for (topic, _) in wanted {
        // A topic created a moment ago may take a little while to show in metadata.
        let deadline = tokio::time::Instant::now() + METADATA_TIMEOUT;
        let count = loop {
            let (kafka, name, w) = (settings.clone(), topic.clone(), watch.clone());
            let count = tokio::task::spawn_blocking(move || partition_count_watched(&kafka, &name, w)).await??;
            if count.is_some() || tokio::time::Instant::now() > deadline {
                break count;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        match count {
            Some(count) if count == partitions => {}
            Some(count) => bail!(
                "topic `{topic}` has {count} partitions but `{}` has {partitions}: they must be co-partitioned",
                settings.events_topic
            ),
            None => bail!("topic `{topic}` does not exist (create it or set kafka.create_topics = true)"),
        }
    }
    Ok(partitions)
}
