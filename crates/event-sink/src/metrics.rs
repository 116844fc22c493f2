//! Prometheus metrics of the sink, all prefixed `vero_sink_`, in one registry served on
//! `/metrics`.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// `vero_consumer_offsets_skipped_total`: records the broker deleted before the
    /// sink read them. Alert `VeroConsumerSkippedRecords`.
    pub offset_gaps: std::sync::Arc<vero_service::offset_gaps::OffsetGaps>,
    pub rows_inserted: IntCounter,
    /// Rows not inserted, by reason: `written` (at or below the partition's written
    /// offset: a redelivery), `repeat` (a client's retry within the dedup window),
    /// `not_owned` (partition revoked meanwhile). See `crate::once`.
    pub rows_skipped: IntCounterVec,
    pub batches_inserted: IntCounter,
    pub insert_seconds: Histogram,
    pub insert_retries: IntCounter,
    /// Records sent to the DLQ, by reason kind (`decode`, `invalid_row`, `rejected`,
    /// `rejected_delete`).
    pub dlq_records: IntCounterVec,
    /// Messages between the stored (inserted) offset and the partition's end.
    pub consumer_lag: IntGaugeVec,
    pub assigned_partitions: IntGauge,
    /// 1 while consumption is paused because a flush is in progress or retrying.
    pub paused: IntGauge,
    /// User commands the sink does not act on, by action (`track`, `edit`, ...).
    pub commands_skipped: IntCounterVec,
    /// `Delete` commands whose mutation ClickHouse accepted.
    pub users_deleted: IntCounter,
    /// Delete mutations ClickHouse accepted (one may cover several deletes).
    pub delete_mutations: IntCounter,
    /// `vero_sink_erasures_pending`: erasing mutations (GDPR deletes) in the `vero`
    /// database ClickHouse has accepted but not finished (`system.mutations`,
    /// `is_done = 0`), polled by `crate::erase::watch_pending`. An erasure is complete
    /// once it is no longer counted here.
    pub erasures_pending: IntGauge,
    pub delete_mutation_retries: IntCounter,
    /// Failed ClickHouse writes (INSERTs and delete mutations) by failure class:
    /// `retryable`, `operator`, `invalid` (see `vero_clickhouse::Failure`).
    pub write_failures: IntCounterVec,
    /// 1 while ClickHouse refuses writes for a reason only the deployment can fix
    /// (credentials, grants, missing table). Alert `VeroSinkNeedsOperator`.
    pub needs_operator: IntGauge,
    /// Partitions stopped at a record with an unknown writer schema fingerprint.
    /// Alert `VeroSinkNeedsOperator`.
    pub blocked_partitions: IntGauge,
    /// On a cluster: 1 while the last INSERT attempt on that shard (`shard_num`)
    /// failed, 0 after it succeeded.
    pub shard_failing: IntGaugeVec,
    /// On a cluster: partitions parked because their shard kept failing (rewound,
    /// paused until the shard answers; `crate::insert`). Alert `VeroSinkShardDown`.
    pub parked_partitions: IntGauge,
    /// On a cluster: `SYSTEM SYNC REPLICA` runs before trusting a replica's written
    /// offsets (after a failover, at start and after an assignment).
    pub replica_syncs: IntCounter,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let rows_inserted = IntCounter::new("vero_sink_rows_inserted_total", "Rows inserted into vero.events").unwrap();
        let rows_skipped = IntCounterVec::new(
            Opts::new(
                "vero_sink_rows_skipped_total",
                "Rows not inserted (already written, a repeat, not owned, a DLQ replay meant for another consumer)",
            ),
            &["reason"],
        )
        .unwrap();
        let batches_inserted =
            IntCounter::new("vero_sink_batches_inserted_total", "Successful INSERT statements").unwrap();
        let insert_seconds = Histogram::with_opts(
            HistogramOpts::new("vero_sink_insert_duration_seconds", "Duration of one successful INSERT")
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
        )
        .unwrap();
        let insert_retries =
            IntCounter::new("vero_sink_insert_retries_total", "INSERT attempts that failed and were retried").unwrap();
        let dlq_records = IntCounterVec::new(
            Opts::new("vero_sink_dlq_records_total", "Records sent to the dead-letter topic"),
            &["reason"],
        )
        .unwrap();
        let consumer_lag = IntGaugeVec::new(
            Opts::new("vero_sink_consumer_lag", "Messages not yet written, per partition (from librdkafka stats)"),
            &["partition"],
        )
        .unwrap();
        let assigned_partitions =
            IntGauge::new("vero_sink_assigned_partitions", "Partitions assigned to this instance").unwrap();
        let paused = IntGauge::new("vero_sink_consumption_paused", "1 while consumption is paused").unwrap();
        let commands_skipped = IntCounterVec::new(
            Opts::new("vero_sink_commands_skipped_total", "User commands skipped (not the sink's business)"),
            &["action"],
        )
        .unwrap();
        let users_deleted = IntCounter::new(
            "vero_sink_user_deletes_total",
            "Delete commands whose erasing mutation ClickHouse accepted",
        )
        .unwrap();
        let delete_mutations =
            IntCounter::new("vero_sink_delete_mutations_total", "Delete mutations ClickHouse accepted").unwrap();
        let erasures_pending = IntGauge::new(
            "vero_sink_erasures_pending",
            "Erasing mutations in the vero database accepted by ClickHouse and not finished yet",
        )
        .unwrap();
        let delete_mutation_retries = IntCounter::new(
            "vero_sink_delete_mutation_retries_total",
            "Delete mutation attempts that failed and were retried",
        )
        .unwrap();
        let write_failures = IntCounterVec::new(
            Opts::new("vero_sink_write_failures_total", "Failed ClickHouse writes by failure class"),
            &["class"],
        )
        .unwrap();
        let needs_operator = IntGauge::new(
            "vero_sink_needs_operator",
            "1 while ClickHouse refuses writes for a reason only an operator can fix",
        )
        .unwrap();
        let blocked_partitions = IntGauge::new(
            "vero_sink_blocked_partitions",
            "Partitions stopped at a record whose writer schema this build does not know",
        )
        .unwrap();
        let parked_partitions = IntGauge::new(
            "vero_sink_parked_partitions",
            "Partitions parked because their ClickHouse shard keeps failing (cluster mode)",
        )
        .unwrap();
        let shard_failing = IntGaugeVec::new(
            Opts::new("vero_sink_shard_failing", "1 while INSERTs into this ClickHouse shard fail (cluster mode)"),
            &["shard"],
        )
        .unwrap();
        let replica_syncs = IntCounter::new(
            "vero_sink_replica_syncs_total",
            "SYSTEM SYNC REPLICA runs before a replica's written offsets were trusted (cluster mode)",
        )
        .unwrap();
        for collector in [
            Box::new(rows_inserted.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(rows_skipped.clone()),
            Box::new(batches_inserted.clone()),
            Box::new(insert_seconds.clone()),
            Box::new(insert_retries.clone()),
            Box::new(dlq_records.clone()),
            Box::new(consumer_lag.clone()),
            Box::new(assigned_partitions.clone()),
            Box::new(paused.clone()),
            Box::new(commands_skipped.clone()),
            Box::new(users_deleted.clone()),
            Box::new(delete_mutations.clone()),
            Box::new(erasures_pending.clone()),
            Box::new(delete_mutation_retries.clone()),
            Box::new(write_failures.clone()),
            Box::new(needs_operator.clone()),
            Box::new(blocked_partitions.clone()),
            Box::new(shard_failing.clone()),
            Box::new(parked_partitions.clone()),
            Box::new(replica_syncs.clone()),
        ] {
            registry.register(collector).expect("metric names are unique");
        }
        let offset_gaps = std::sync::Arc::new(
            vero_service::offset_gaps::OffsetGaps::new(&registry).expect("metric names are unique"),
        );
        Self {
            registry,
            offset_gaps,
            rows_inserted,
            rows_skipped,
            batches_inserted,
            insert_seconds,
            insert_retries,
            dlq_records,
            consumer_lag,
            assigned_partitions,
            paused,
            commands_skipped,
            users_deleted,
            delete_mutations,
            erasures_pending,
            delete_mutation_retries,
            write_failures,
            needs_operator,
            blocked_partitions,
            shard_failing,
            parked_partitions,
            replica_syncs,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
