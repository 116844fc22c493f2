//! The service: [`run`] wires config, ClickHouse schema, topics, the consumer loop and
//! the ops endpoints, and returns when the shutdown token is cancelled (after the
//! batch in hand was written and offsets committed) or on a non-retryable failure.
//!
//! The loop: collect a batch (at most `batch.max_records`, at most `batch.linger_ms`
//! after its first record), drop records of partitions revoked meanwhile, restore the
//! profiles of newly seen partitions from the profiles topic, apply the batch, write
//! its effects ([`write`]), then store the offsets. Nothing is polled while a batch is
//! written, so a rebalance always finds every handed-out record written or dropped.

pub mod apply;
pub mod write;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::kafka::consumer::{Changes, GroupConsumer};
use crate::kafka::producer::Producer;
use crate::kafka::{consumer, restore, topics};
use crate::metrics::Metrics;
use apply::{Applier, Effects, Profiles, Topics};
use vero_service::health::Health;
use write::{NotWritten, Writer};

/// Run until `shutdown` is cancelled. `ops` serves `/metrics`, `/healthz`, `/readyz`.
pub async fn run(settings: Settings, ops: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    settings.validate()?;
    vero_model::schemas::check().map_err(anyhow::Error::msg)?;
    let metrics = Metrics::new();
    let health = Health::starting("starting: ClickHouse schema not checked yet");
    let ops_task =
        tokio::spawn(vero_service::ops::serve(ops, metrics.registry.clone(), health.check(), shutdown.clone()));
    let result = serve(settings, metrics, health, shutdown.clone()).await;
    shutdown.cancel();
    let _ = ops_task.await;
    result
}

async fn serve(
    settings: Settings,
    metrics: Metrics,
    health: Health,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let clickhouse = vero_clickhouse::client::build(&settings.clickhouse);
    if !migrate(&clickhouse, &settings, &health, &shutdown).await? {
        return Ok(());
    }
    let partitions = topics::ensure(&settings.kafka).await?;
    let topics = Topics {
        events: settings.kafka.events_topic.clone(),
        handoff: settings.kafka.handoff_topic.clone(),
        profiles: settings.kafka.profiles_topic.clone(),
        dlq: settings.kafka.dlq_topic.clone(),
        partitions,
    };
    let producer = Producer::new(&settings.kafka)?;
    let (consumer, changes) = consumer::subscribe(&settings.kafka, metrics.consumer_lag.clone())?;
    health.ready();
    tracing::info!(partitions, group = %settings.kafka.group_id, "consuming");
    let writer = Writer {
        clickhouse,
        producer,
        topics: topics.clone(),
        retry: settings.retry.clone(),
        metrics: metrics.clone(),
        health: health.clone(),
    };
    let mut state = LoopState {
        settings: &settings,
        topics,
        consumer: &consumer,
        changes,
        metrics: &metrics,
        profiles: Profiles::default(),
        restored: BTreeSet::new(),
        assigned: BTreeSet::new(),
    };
    let outcome = state.consume(&writer, &shutdown).await;
    // Commit what was stored. Async: a synchronous commit has no timeout and blocks
    // forever when the broker is gone; closing the consumer (on drop) waits for it and
    // commits the stored offsets itself, bounded by session.timeout.ms.
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Async) {
        tracing::debug!(error = %e, "final commit failed");
    }
    outcome
}

/// Apply the ClickHouse migrations, retrying while the server is unavailable.
/// `Ok(false)` when shutdown came first.
async fn migrate(
    client: &clickhouse::Client,
    settings: &Settings,
    health: &Health,
    shutdown: &CancellationToken,
) -> anyhow::Result<bool> {
    let migrations = vero_clickhouse::migrations::embedded().map_err(anyhow::Error::msg)?;
    let mut backoff = settings.retry.backoff();
    loop {
        let attempt = async {
            let version = vero_clickhouse::ServerVersion::detect(client).await?;
            vero_clickhouse::migrations::apply(client, version, &migrations).await
        };
        match attempt.await {
            Ok(applied) => {
                for migration in applied {
                    tracing::info!(file = migration.file, "ClickHouse migration applied");
                }
                return Ok(true);
            }
            // Operator-fixable (login refused, ...) is retried like an outage, visibly.
            Err(e) if !matches!(e, vero_clickhouse::Failure::Invalid(_)) => {
                health.not_ready(format!("ClickHouse schema: {e}"));
                tracing::warn!(error = %e, "ClickHouse not reachable for migrations, retrying");
                if !backoff.wait(shutdown).await {
                    return Ok(false);
                }
            }
            Err(e) => return Err(anyhow::anyhow!("ClickHouse migrations failed: {e}")),
        }
    }
}

struct LoopState<'a> {
    settings: &'a Settings,
    topics: Topics,
    consumer: &'a GroupConsumer,
    changes: Arc<Mutex<Changes>>,
    metrics: &'a Metrics,
    profiles: Profiles,
    /// Events partitions whose profiles were read back from the profiles topic.
    restored: BTreeSet<i32>,
    assigned: BTreeSet<(String, i32)>,
}

impl LoopState<'_> {
    async fn consume(&mut self, writer: &Writer, shutdown: &CancellationToken) -> anyhow::Result<()> {
        loop {
            let Some(mut batch) = self.collect(shutdown).await else { return Ok(()) };
            self.apply_rebalances(&mut batch);
            if batch.is_empty() {
                continue;
            }
            for partition in batch.iter().map(Message::partition).collect::<BTreeSet<_>>() {
                if !self.restored.contains(&partition) {
                    self.restore(partition).await?;
                }
            }
            let mut effects = Effects::default();
            let mut applier = Applier {
                topics: &self.topics,
                profiles: &mut self.profiles,
                effects: &mut effects,
                now_micros: now_micros(),
            };
            for message in &batch {
                let outcome = applier.apply(message);
                self.metrics.records.with_label_values(&[outcome.label()]).inc();
            }
            self.metrics.profiles_in_memory.set(self.profiles.len() as i64);
            match writer.write(&effects, &self.profiles, shutdown).await {
                Ok(()) => self.store_offsets(&effects),
                Err(NotWritten::Shutdown) => return Ok(()),
                Err(NotWritten::Rejected(e)) => return Err(anyhow::Error::new(e).context("writing profiles")),
            }
        }
    }

    /// The next batch; `None` on shutdown before a first record arrived.
    async fn collect(&self, shutdown: &CancellationToken) -> Option<Vec<OwnedMessage>> {
        let mut batch = Vec::new();
        let linger = Duration::from_millis(self.settings.batch.linger_ms);
        let mut deadline = None;
        while batch.len() < self.settings.batch.max_records {
            let wait_until = deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = shutdown.cancelled(), if batch.is_empty() => return None,
                _ = tokio::time::sleep_until(wait_until) => break,
                received = self.consumer.recv() => match received {
                    Ok(message) => {
                        batch.push(message.detach());
                        deadline.get_or_insert_with(|| tokio::time::Instant::now() + linger);
                    }
                    Err(e) => tracing::warn!(error = %e, "Kafka consumer error"),
                },
            }
            if shutdown.is_cancelled() && !batch.is_empty() {
                break;
            }
        }
        Some(batch)
    }

    /// Forget revoked partitions (their state and any of their records in `batch`).
    fn apply_rebalances(&mut self, batch: &mut Vec<OwnedMessage>) {
        let changes = std::mem::take(&mut *self.changes.lock().expect("changes lock"));
        for (topic, partition) in &changes.revoked {
            self.assigned.remove(&(topic.clone(), *partition));
            self.profiles.partitions.remove(partition);
            self.restored.remove(partition);
        }
        self.assigned.extend(changes.assigned);
        if !changes.revoked.is_empty() {
            batch.retain(|m| self.assigned.contains(&(m.topic().to_owned(), m.partition())));
        }
        let events_partitions = self.assigned.iter().filter(|(t, _)| *t == self.topics.events).count();
        self.metrics.assigned_partitions.set(events_partitions as i64);
        self.metrics.profiles_in_memory.set(self.profiles.len() as i64);
    }

    async fn restore(&mut self, partition: i32) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        let kafka = &self.settings.kafka;
        let (kafka, topic, timeout) = (kafka.clone(), kafka.profiles_topic.clone(), kafka.restore_timeout());
        let restored =
            tokio::task::spawn_blocking(move || restore::read_partition(&kafka, &topic, partition, timeout))
                .await?
                .with_context(|| format!("restoring profiles of partition {partition}"))?;
        tracing::info!(
            partition,
            profiles = restored.profiles.len(),
            records = restored.records_read,
            "restored profiles from the profiles topic"
        );
        self.metrics.profiles_restored.inc_by(restored.profiles.len() as u64);
        self.metrics.restore_records_read.inc_by(restored.records_read);
        self.metrics.restore_seconds.observe(started.elapsed().as_secs_f64());
        self.profiles.partitions.insert(partition, restored.profiles);
        self.restored.insert(partition);
        Ok(())
    }

    fn store_offsets(&self, effects: &Effects) {
        let mut list = TopicPartitionList::new();
        for ((topic, partition), next) in &effects.positions {
            if self.assigned.contains(&(topic.clone(), *partition)) {
                if let Err(e) = list.add_partition_offset(topic, *partition, Offset::Offset(*next)) {
                    tracing::warn!(topic = %topic, partition, offset = next, error = %e, "cannot store offset");
                }
            }
        }
        if list.count() > 0 {
            if let Err(e) = self.consumer.store_offsets(&list) {
                tracing::warn!(error = %e, "storing offsets failed (partition moved?)");
            }
        }
    }
}

fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}
