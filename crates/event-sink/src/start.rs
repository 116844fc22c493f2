//! Starting the sink: schema first, then the consumer group.
//!
//! [`run`] serves the ops endpoints for its whole life, waits (with backoff, not
//! ready meanwhile) until ClickHouse answers and accepts the login, applies pending
//! migrations for the server's version (re-creating objects of recorded migrations
//! that went missing, see `vero_clickhouse::migrations`), then consumes until
//! `shutdown`. [`migrate`] is the manual path
//! (`event-sink migrate`).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use vero_clickhouse::migrations::{self, Applied};
use vero_clickhouse::retention;
use vero_clickhouse::{Failure, ServerVersion};

use crate::config::Settings;
use crate::context::{FenceHook, SinkConsumer};
use crate::dlq::DeadLetterQueue;
use crate::erase::Eraser;
use crate::insert::Inserter;
use crate::metrics::Metrics;
use crate::once::Fence;
use crate::pipeline::{Outputs, Pipeline};
use crate::route::Destination;
use vero_service::group_consumer::GroupConsumerConfig;
use vero_service::group_context::{GroupContext, GroupGauges};
use vero_service::group_protocol::Assignors;
use vero_service::health::Health;
use vero_service::kafka_security::Watch;
use vero_service::partitions::{Gauges, Lifecycle, Rebalances};
use vero_service::read_errors::ReadErrors;
use vero_service::retry::{Class, Retry, Visibility};
use vero_shards::Router;

/// Run the sink until `shutdown` is cancelled; the ops endpoints are served on
/// `ops_listener` meanwhile.
pub async fn run(settings: Settings, ops_listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    vero_model::schemas::check().map_err(anyhow::Error::msg)?;
    let metrics = Metrics::new();
    let health = Health::starting("starting: ClickHouse schema not checked yet");
    let ops_stop = CancellationToken::new();
    let ops = tokio::spawn(vero_service::ops::serve(
        ops_listener,
        metrics.registry.clone(),
        health.check(),
        ops_stop.clone(),
    ));
    let result = start_and_consume(settings, metrics, health, shutdown).await;
    ops_stop.cancel();
    let _ = ops.await;
    result
}

async fn start_and_consume(
    settings: Settings,
    metrics: Metrics,
    health: Health,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let client = vero_clickhouse::client::build(&settings.clickhouse);
    let starting = Visibility::starting(&health, &metrics.needs_operator);
    let mut retry = Retry::new("ClickHouse schema check", settings.retry.backoff(), &starting);
    let (version, router) = loop {
        match prepare(&settings, &client).await {
            Ok(ready) => break ready,
            Err(invalid @ Failure::Invalid(_)) => return Err(invalid.into()),
            Err(failure) => {
                if !retry.again(Class::from(&failure), failure.message(), &shutdown).await {
                    return Ok(());
                }
            }
        }
    };
    // A revoke waits at most one request timeout for an INSERT in flight.
    let fence = Arc::new(Fence::new(settings.clickhouse.request_timeout()));
    // ClickHouse accepted the schema check; from here the Kafka clients' watch may set
    // the gauge (it holds /readyz itself).
    metrics.needs_operator.set(0);
    let kafka = Watch::new("event-sink", Some(health.clone()), Some(metrics.needs_operator.clone()));
    let rebalances = Arc::new(Rebalances::default());
    let consumer = create_consumer(&settings, metrics.clone(), fence.clone(), kafka.clone(), rebalances.clone())?;
    let destination = match router {
        Some(router) => {
            let patience = vero_shards::Patience::new(
                Duration::from_millis(settings.retry.shard_park_after_ms),
                settings.clickhouse.request_timeout(),
            );
            let stalls = vero_shards::Stalls { shard_failing: metrics.shard_failing.clone(), health: health.clone() };
            Destination::Cluster(Arc::new(router.with_patience(patience, Some(stalls))))
        }
        None => Destination::Single(Box::new(for_inserts(&settings, client.clone()))),
    };
    // Where the writes' failures show: /readyz, needs_operator, failures by class.
    let visibility = Visibility {
        health: health.clone(),
        needs_operator: metrics.needs_operator.clone(),
        kafka: Some(kafka.clone()),
        failures: Some(metrics.write_failures.clone()),
    };
    let eraser = Eraser::new(
        destination.clone(),
        settings.retry.clone(),
        settings.clickhouse.request_timeout(),
        metrics.clone(),
        visibility.clone(),
    );
    // vero_sink_erasures_pending, for as long as the pipeline runs.
    let watching = CancellationToken::new();
    let pending = tokio::spawn(crate::erase::watch_pending(destination.clone(), metrics.clone(), watching.clone()));
    let inserter = Inserter::new(destination, version, &settings, metrics.clone(), visibility.clone(), fence);
    // Dead-letter failures are not write failures: not counted with them.
    let letters = Visibility { failures: None, ..visibility.clone() };
    let dlq = DeadLetterQueue::new(&settings.kafka, settings.retry.clone(), metrics.clone(), letters)?;
    health.ready();
    tracing::info!(server = %version, topic = %settings.kafka.events_topic, group = %settings.kafka.group_id, "consuming");
    let gauges = Gauges {
        blocked: metrics.blocked_partitions.clone(),
        parked: metrics.parked_partitions.clone(),
        paused: metrics.paused.clone(),
    };
    let lifecycle = Lifecycle::new(rebalances, health, gauges, "event sinks");
    let read_errors = ReadErrors::new(visibility.clone());
    let outputs = Outputs::new(inserter, eraser, dlq, settings.kafka.events_topic.clone());
    let result = Pipeline::new(consumer, outputs, settings, metrics, lifecycle, read_errors).run(shutdown).await;
    watching.cancel();
    let _ = pending.await;
    result
}

/// The server's version after migrating, and on a cluster the router to its shards
/// (its topology read once the schema is there).
async fn prepare(settings: &Settings, client: &clickhouse::Client) -> Result<(ServerVersion, Option<Router>), Failure> {
    let version = ServerVersion::detect(client).await?;
    let all = migrations::embedded_for(settings.clickhouse.cluster.as_deref()).map_err(Failure::Invalid)?;
    for applied in migrations::apply(client, version, &all).await? {
        tracing::info!(id = applied.id, file = applied.file, "migration applied");
    }
    retention::apply(client, version, settings.clickhouse.cluster.as_deref(), settings.retention.events_days).await?;
    let router = vero_shards::connect(&settings.clickhouse, &settings.cluster, |c| for_inserts(settings, c)).await?;
    Ok((version, router))
}

/// INSERT bodies uncompressed unless configured (see `batch.compress_inserts`).
fn for_inserts(settings: &Settings, client: clickhouse::Client) -> clickhouse::Client {
    if settings.batch.compress_inserts {
        client
    } else {
        client.with_compression(clickhouse::Compression::None)
    }
}

fn create_consumer(
    settings: &Settings,
    metrics: Metrics,
    fence: Arc<Fence>,
    watch: Watch,
    rebalances: Arc<Rebalances>,
) -> anyhow::Result<SinkConsumer> {
    let kafka = &settings.kafka;
    let gauges = GroupGauges { lag: metrics.consumer_lag.clone(), assigned: metrics.assigned_partitions.clone() };
    let gaps = metrics.offset_gaps.clone();
    let context =
        GroupContext::new(kafka.events_topic.clone(), gauges, gaps, rebalances, watch).with_hook(FenceHook(fence));
    // Any partition on any member: cooperative-sticky moves only what changes hands.
    let group = GroupConsumerConfig {
        brokers: &kafka.brokers,
        group_id: &kafka.group_id,
        protocol: kafka.group_protocol,
        assignors: Assignors { classic: "cooperative-sticky", consumer: "uniform" },
        session_timeout_ms: kafka.session_timeout_ms,
        max_poll_interval_ms: kafka.max_poll_interval_ms,
        group_instance_id: &kafka.group_instance_id,
        auto_offset_reset: &kafka.auto_offset_reset,
        auto_commit_interval_ms: kafka.auto_commit_interval_ms,
    };
    let mut config = group.client_config();
    // Bound what librdkafka prefetches (memory stays bounded), and fetch again soon
    // after the sink took messages from a full prefetch queue.
    config
        .set("queued.max.messages.kbytes", kafka.queued_max_messages_kbytes.to_string())
        .set("fetch.queue.backoff.ms", kafka.fetch_queue_backoff_ms.to_string())
        .set("fetch.wait.max.ms", kafka.fetch_wait_max_ms.to_string());
    kafka.apply_properties(&mut config);
    let consumer: SinkConsumer = config.create_with_context(context)?;
    consumer.subscribe(&[&kafka.events_topic])?;
    Ok(consumer)
}

/// Apply pending migrations and the retention setting once (no retry) and report
/// what was applied.
pub async fn migrate(settings: &Settings) -> anyhow::Result<Migrated> {
    let clickhouse = &settings.clickhouse;
    let client = vero_clickhouse::client::build(clickhouse);
    let version = ServerVersion::detect(&client).await?;
    let all = migrations::embedded_for(clickhouse.cluster.as_deref()).map_err(anyhow::Error::msg)?;
    let work = async {
        let applied = migrations::apply(&client, version, &all).await?;
        let retention =
            retention::apply(&client, version, clickhouse.cluster.as_deref(), settings.retention.events_days).await?;
        Ok::<_, Failure>(Migrated { version, applied, retention })
    };
    Ok(tokio::time::timeout(Duration::from_secs(300), work).await??)
}

/// What [`migrate`] did.
#[derive(Debug)]
pub struct Migrated {
    pub version: ServerVersion,
    pub applied: Vec<Applied>,
    /// The change to `vero.events`' TTL, if it differed from `retention.events_days`.
    pub retention: Option<retention::Change>,
}
