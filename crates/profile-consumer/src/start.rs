//! Starting the profile consumer: [`run`] wires config, the ClickHouse schema, the
//! topics, the local state store, the consumer loop ([`crate::consume`]) and the ops
//! endpoints, and returns when the shutdown token is cancelled (after the batch in
//! hand was written and offsets committed) or on a non-retryable failure.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::consume::apply::{self, Topics};
use crate::consume::changelog;
use crate::consume::write::{Ownership, Writer};
use crate::consume::LoopState;
use crate::destination::Destination;
use crate::kafka::producer::Producer;
use crate::kafka::{consumer, topics};
use crate::metrics::Metrics;
use crate::state::{Budget, Disk, ProfileStates};
use vero_service::group_context::GroupGauges;
use vero_service::health::Health;
use vero_service::kafka_security::Watch;
use vero_service::partitions::{Gauges, Lifecycle};
use vero_service::read_errors::ReadErrors;
use vero_service::retry::{Class, Retry, Visibility};

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
    let Some(destination) = migrate(&clickhouse, &settings, &metrics, &health, &shutdown).await? else {
        return Ok(());
    };
    let kafka = Watch::new("profile-consumer", Some(health.clone()), Some(metrics.needs_operator.clone()));
    let Some(partitions) = ensure_topics(&settings, &kafka, &shutdown).await? else {
        return Ok(());
    };
    let topics = Topics {
        events: settings.kafka.events_topic.clone(),
        handoff: settings.kafka.handoff_topic.clone(),
        profiles: settings.kafka.profiles_topic.clone(),
        dlq: settings.kafka.dlq_topic.clone(),
        partitions,
    };
    let producer = Producer::new(&settings.kafka, kafka.clone())?;
    let changelog = Arc::new(changelog::Changelog::new(settings.kafka.profiles_topic.clone(), producer.clone()));
    let (consumer, rebalances) =
        consumer::subscribe(&settings.kafka, gauges(&metrics), metrics.offset_gaps.clone(), kafka)?;
    health.ready();
    // The window must be the event sink's: logged so a mismatch can be seen.
    tracing::info!(
        partitions,
        group = %settings.kafka.group_id,
        dedup_window_ms = settings.dedup.window_ms,
        "consuming"
    );
    let park_after = destination.may_park().then(|| Duration::from_millis(settings.retry.shard_park_after_ms));
    let writer = Writer {
        park_after,
        destination,
        letters: producer.dead_letters(settings.kafka.dlq_topic.clone(), apply::CONSUMER_NAME),
        producer,
        topics: topics.clone(),
        retry: settings.retry.clone(),
        metrics: metrics.clone(),
        visibility: Visibility {
            health: health.clone(),
            needs_operator: metrics.needs_operator.clone(),
            kafka: Some(consumer.context().kafka().clone()),
            failures: Some(metrics.write_failures.clone()),
        },
        max_profile_bytes: settings.kafka.max_profile_bytes,
        changelog: changelog.clone(),
    };
    let ownership = Ownership { rebalances: rebalances.clone(), revoked: Arc::default() };
    let gauges = Gauges {
        blocked: metrics.blocked_partitions.clone(),
        parked: metrics.parked_partitions.clone(),
        paused: metrics.consumption_paused.clone(),
    };
    let budget = Budget::of(settings.state.memory_mb * 1024 * 1024);
    let (disk, temporary) = open_state(&settings, budget)?;
    let mut state = LoopState {
        settings: &settings,
        topics,
        consumer: &consumer,
        metrics: &metrics,
        states: ProfileStates::new(disk.clone(), budget.cache),
        pending: Vec::new(),
        lifecycle: Lifecycle::new(rebalances, health.clone(), gauges, "profile consumers"),
        read_errors: ReadErrors::new(Visibility { failures: None, ..writer.visibility.clone() }),
        ownership,
        changelog,
    };
    let outcome = state.consume(&writer, &shutdown).await;
    // Commit what was stored. Async: a synchronous commit has no timeout and blocks
    // forever when the broker is gone; closing the consumer (on drop) waits for it and
    // commits the stored offsets itself, bounded by session.timeout.ms.
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Async) {
        tracing::debug!(error = %e, "final commit failed");
    }
    drop(state);
    if let Err(e) = disk.sync() {
        tracing::warn!(error = %e, "syncing the profile state at stop failed (the next start reads more of the topic)");
    }
    // The store closes before its temporary directory (if any) is removed.
    drop(disk);
    drop(temporary);
    outcome
}

/// The gauges of the group consumer's callbacks.
fn gauges(metrics: &Metrics) -> GroupGauges {
    GroupGauges { lag: metrics.consumer_lag.clone(), assigned: metrics.assigned_partitions.clone() }
}

/// The local store of `state.dir`; with an empty `dir`, of a temporary directory
/// (returned too: removed when dropped).
fn open_state(settings: &Settings, budget: Budget) -> anyhow::Result<(Arc<Disk>, Option<tempfile::TempDir>)> {
    let (dir, temporary) = if settings.state.dir.as_os_str().is_empty() {
        let temporary = tempfile::Builder::new().prefix("vero-profile-state-").tempdir()?;
        (temporary.path().to_owned(), Some(temporary))
    } else {
        (settings.state.dir.clone(), None)
    };
    let disk = Disk::open(&dir, budget.disk)?;
    tracing::info!(dir = %dir.display(), memory_mb = settings.state.memory_mb, "profile state opened");
    Ok((Arc::new(disk), temporary))
}

/// Apply the ClickHouse migrations (on a cluster: the cluster schema, then read its
/// topology), retrying while the server is unavailable. Returns where profiles are
/// written; `Ok(None)` when shutdown came first.
async fn migrate(
    client: &clickhouse::Client,
    settings: &Settings,
    metrics: &Metrics,
    health: &Health,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Destination>> {
    let cluster = settings.clickhouse.cluster.as_deref();
    let migrations = vero_clickhouse::migrations::embedded_for(cluster).map_err(anyhow::Error::msg)?;
    let starting = Visibility::starting(health, &metrics.needs_operator);
    let mut retry = Retry::new("ClickHouse migrations", settings.retry.backoff(), &starting);
    loop {
        let attempt = async {
            let version = vero_clickhouse::ServerVersion::detect(client).await?;
            let applied = vero_clickhouse::migrations::apply(client, version, &migrations).await?;
            let router = vero_shards::connect(&settings.clickhouse, &settings.cluster, |c| c).await?;
            Ok::<_, vero_clickhouse::Failure>((applied, router))
        };
        match attempt.await {
            Ok((applied, router)) => {
                metrics.needs_operator.set(0);
                for migration in applied {
                    tracing::info!(file = migration.file, "ClickHouse migration applied");
                }
                return Ok(Some(match router {
                    Some(router) => {
                        let patience = vero_shards::Patience::new(
                            Duration::from_millis(settings.retry.shard_park_after_ms),
                            settings.clickhouse.request_timeout(),
                        );
                        let stalls = vero_shards::Stalls {
                            shard_failing: metrics.shard_failing.clone(),
                            health: health.clone(),
                        };
                        let router = router.with_patience(patience, Some(stalls));
                        Destination::Cluster(Arc::new(router), metrics.shard_failing.clone())
                    }
                    None => Destination::Single(Box::new(client.clone())),
                }));
            }
            Err(e @ vero_clickhouse::Failure::Invalid(_)) => {
                return Err(anyhow::anyhow!("ClickHouse migrations failed: {e}"))
            }
            // Operator-fixable (login refused, ...) is retried like an outage, visibly.
            Err(e) => {
                if !retry.again(Class::from(&e), e.message(), shutdown).await {
                    return Ok(None);
                }
            }
        }
    }
}

/// [`topics::ensure`], retried with backoff while Kafka refuses the login or a
/// certificate (the watch holds `/readyz` and `needs_operator` meanwhile); any other
/// failure stops the start. `Ok(None)` when shutdown came first.
async fn ensure_topics(
    settings: &Settings,
    kafka: &Watch,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<i32>> {
    let mut backoff = settings.retry.backoff();
    loop {
        match topics::ensure(&settings.kafka, kafka).await {
            Ok(partitions) => return Ok(Some(partitions)),
            Err(e) if kafka.refused().is_some() => {
                tracing::debug!(error = %e, "topic check waits for Kafka to accept the connection");
                if !backoff.wait(shutdown).await {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e),
        }
    }
}
