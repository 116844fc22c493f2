//! Prometheus metrics of the profile consumer, all prefixed `vero_profiles_`, in one
//! registry served on `/metrics`.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// `vero_consumer_offsets_skipped_total`: records the broker deleted before this
    /// consumer read them. Alert `VeroConsumerSkippedRecords`.
    pub offset_gaps: std::sync::Arc<vero_service::offset_gaps::OffsetGaps>,
    /// Records taken from Kafka (events and handoff topics), by outcome: `applied`,
    /// `duplicate` (at or below the profile's last applied offset), `repeat` (a
    /// client's retry within the dedup window), `replayed_for_other` (put back from
    /// the DLQ for another consumer), `blocked` (an unknown writer schema), `dead_lettered`.
    pub records: IntCounterVec,
    /// Profile rows written (ClickHouse and the profiles topic), deletions included.
    pub profiles_written: IntCounter,
    pub write_seconds: Histogram,
    pub write_retries: IntCounter,
    /// Profile values (not tombstones) read from the profiles topic into the local
    /// store by restores; one profile counts once per value the topic still holds.
    pub profiles_restored: IntCounter,
    /// Profiles topic records read while restoring, counted as they are read (the
    /// progress of a long restore).
    pub restore_records_read: IntCounter,
    /// One partition's restore, by where it started: `checkpoint` (the local store's,
    /// reading only the topic's tail) or `beginning` (the whole partition).
    pub restore_seconds: HistogramVec,
    /// Profiles held decoded in memory: the batch's and the cache's.
    pub profiles_in_memory: IntGauge,
    /// Profile lookups by `result`: `hit` (decoded in memory) or `miss` (read from
    /// the local store).
    pub state_lookups: IntCounterVec,
    /// Bytes of decoded profiles in the cache (its budget is a quarter of
    /// `state.memory_mb`).
    pub state_cache_bytes: IntGauge,
    /// Bytes the local store takes on disk.
    pub state_disk_bytes: IntGauge,
    /// Commits to the local store that failed (their partitions restore from the
    /// last checkpoint).
    pub state_errors: IntCounter,
    pub assigned_partitions: IntGauge,
    /// Events-topic records not yet applied, per partition (librdkafka statistics).
    pub consumer_lag: IntGaugeVec,
    /// Failed batch writes by failure class: `retryable`, `operator`, `invalid`.
    pub write_failures: IntCounterVec,
    /// 1 while writes are refused for a reason only an operator can fix (credentials,
    /// grants, missing table or topic). Alert `VeroProfilesNeedsOperator`.
    pub needs_operator: IntGauge,
    /// Partitions (events and handoff topics) taken away by a rebalance or lost with
    /// the group session. Stays flat while a write retries: the loop keeps polling.
    pub partitions_revoked: IntCounter,
    /// Partitions whose profiles topic another member wrote since this one last knew
    /// its end (this member was dropped from the group while not polling): left out
    /// of the write, rewound and restored again ([`crate::consume::changelog`]).
    pub partitions_fenced: IntCounter,
    /// 1 while the assigned partitions are paused because a write or restore runs long.
    pub consumption_paused: IntGauge,
    /// Request keys that fell out of a profile's dedup state (its 1000-key cap) while
    /// still within the window: a repeat of one of them would count.
    pub request_keys_evicted: IntCounter,
    /// Partitions (events or handoff topic) stopped at a record with a writer schema
    /// this build does not know. Alert `VeroProfilesNeedsOperator`.
    pub blocked_partitions: IntGauge,
    /// Partition numbers parked because their ClickHouse shard kept failing
    /// (`retry.shard_park_after_ms`). Alert `VeroProfilesShardDown`.
    pub parked_partitions: IntGauge,
    /// Cluster mode: 1 while writes to this shard (`shard_num`) fail as unavailable or
    /// operator-fixable.
    pub shard_failing: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let records = IntCounterVec::new(
            Opts::new("vero_profiles_records_total", "Records consumed from the events and handoff topics"),
            &["outcome"],
        )
        .unwrap();
        let profiles_written =
            IntCounter::new("vero_profiles_written_total", "Profile writes (upserts and deletions)").unwrap();
        let buckets = vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
        let write_seconds = Histogram::with_opts(
            HistogramOpts::new("vero_profiles_write_duration_seconds", "Writing one batch of profiles")
                .buckets(buckets.clone()),
        )
        .unwrap();
        let write_retries =
            IntCounter::new("vero_profiles_write_retries_total", "Batch writes that failed and were retried").unwrap();
        let profiles_restored = IntCounter::new(
            "vero_profiles_restored_total",
            "Profile values read from the profiles topic into the local store by restores",
        )
        .unwrap();
        let restore_records_read =
            IntCounter::new("vero_profiles_restore_records_read_total", "Profiles topic records read to restore")
                .unwrap();
        let mut restore_buckets = buckets;
        restore_buckets.extend([60.0, 120.0, 300.0, 600.0]);
        let restore_seconds = HistogramVec::new(
            HistogramOpts::new(
                "vero_profiles_restore_duration_seconds",
                "Restoring one partition, by where it started",
            )
            .buckets(restore_buckets),
            &["from"],
        )
        .unwrap();
        let profiles_in_memory =
            IntGauge::new("vero_profiles_in_memory", "Profiles held decoded in memory (the batch's and the cache's)")
                .unwrap();
        let state_lookups = IntCounterVec::new(
            Opts::new("vero_profiles_state_lookups_total", "Profile lookups: hit (in memory) or miss (local store)"),
            &["result"],
        )
        .unwrap();
        let state_cache_bytes =
            IntGauge::new("vero_profiles_state_cache_bytes", "Bytes of decoded profiles in the cache").unwrap();
        let state_disk_bytes =
            IntGauge::new("vero_profiles_state_disk_bytes", "Bytes the local profile store takes on disk").unwrap();
        let state_errors =
            IntCounter::new("vero_profiles_state_errors_total", "Failed commits to the local profile store").unwrap();
        let assigned_partitions =
            IntGauge::new("vero_profiles_assigned_partitions", "Events partitions assigned to this instance").unwrap();
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "vero_profiles_consumer_lag",
                "Events records behind the end of the partition, after the last write",
            ),
            &["partition"],
        )
        .unwrap();
        let write_failures = IntCounterVec::new(
            Opts::new("vero_profiles_write_failures_total", "Failed batch writes by failure class"),
            &["class"],
        )
        .unwrap();
        let needs_operator = IntGauge::new(
            "vero_profiles_needs_operator",
            "1 while profile writes are refused for a reason only an operator can fix",
        )
        .unwrap();
        let partitions_fenced = IntCounter::new(
            "vero_profiles_partitions_fenced_total",
            "Partitions left out of a write because another member wrote their profiles topic",
        )
        .expect("valid metric");
        let partitions_revoked = IntCounter::new(
            "vero_profiles_partitions_revoked_total",
            "Partitions revoked from this instance (rebalances, lost group session)",
        )
        .unwrap();
        let consumption_paused = IntGauge::new(
            "vero_profiles_consumption_paused",
            "1 while consumption is paused because a write or restore runs long",
        )
        .unwrap();
        let request_keys_evicted = IntCounter::new(
            "vero_profiles_request_keys_evicted_total",
            "Request keys dropped from a profile's dedup state to its cap while still within the window",
        )
        .unwrap();
        let blocked_partitions = IntGauge::new(
            "vero_profiles_blocked_partitions",
            "Partitions stopped at a record with an unknown writer schema",
        )
        .unwrap();
        let parked_partitions = IntGauge::new(
            "vero_profiles_parked_partitions",
            "Partitions parked because their ClickHouse shard kept failing (rewound, paused until it answers)",
        )
        .unwrap();
        let shard_failing = IntGaugeVec::new(
            Opts::new("vero_profiles_shard_failing", "1 while writes to this ClickHouse shard fail (cluster mode)"),
            &["shard"],
        )
        .unwrap();
        for collector in [
            Box::new(records.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(profiles_written.clone()),
            Box::new(write_seconds.clone()),
            Box::new(write_retries.clone()),
            Box::new(profiles_restored.clone()),
            Box::new(restore_records_read.clone()),
            Box::new(restore_seconds.clone()),
            Box::new(profiles_in_memory.clone()),
            Box::new(state_lookups.clone()),
            Box::new(state_cache_bytes.clone()),
            Box::new(state_disk_bytes.clone()),
            Box::new(state_errors.clone()),
            Box::new(assigned_partitions.clone()),
            Box::new(consumer_lag.clone()),
            Box::new(write_failures.clone()),
            Box::new(needs_operator.clone()),
            Box::new(partitions_revoked.clone()),
            Box::new(partitions_fenced.clone()),
            Box::new(consumption_paused.clone()),
            Box::new(request_keys_evicted.clone()),
            Box::new(blocked_partitions.clone()),
            Box::new(parked_partitions.clone()),
            Box::new(shard_failing.clone()),
        ] {
            registry.register(collector).expect("metric names are unique");
        }
        let offset_gaps = std::sync::Arc::new(
            vero_service::offset_gaps::OffsetGaps::new(&registry).expect("metric names are unique"),
        );
        Self {
            registry,
            offset_gaps,
            records,
            profiles_written,
            write_seconds,
            write_retries,
            profiles_restored,
            restore_records_read,
            restore_seconds,
            profiles_in_memory,
            state_lookups,
            state_cache_bytes,
            state_disk_bytes,
            state_errors,
            assigned_partitions,
            consumer_lag,
            write_failures,
            needs_operator,
            partitions_revoked,
            partitions_fenced,
            consumption_paused,
            request_keys_evicted,
            blocked_partitions,
            parked_partitions,
            shard_failing,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
