//! The `profiles` step: the profile consumer with its profiles in a local store
//! (issue 20) against the previous, all-in-memory release, and what the store buys at
//! a scale the old one could not hold.
//!
//! Everything runs against Apache Kafka (one node, `vero_testkit::kafka`) and one
//! ClickHouse server, not the suite's mock broker: librdkafka's mock cluster drops a
//! partition's old data past 5 MiB, so a compacted topic of millions of profiles could
//! not be read back from it. Events are produced straight to an events topic of
//! [`PARTITIONS`] partitions (one event per user `u{i}`, placed like the gateway by
//! `partition_for_key`), before the consumer starts; one consumer process at a time.
//! 1. Throughput: the same `VERO_BENCH_PROFILE_RATIO_USERS` events (default 1 000 000)
//!    consumed by the baseline binary (`VERO_BENCH_BASELINE_PROFILE_CONSUMER`, commit
//!    5a7e9c2 built by `scripts/bench.sh`; skipped when unset) and by today's with
//!    `state.memory_mb` = [`MEMORY_MB`], [`ROUNDS`] rounds interleaved, each run its own
//!    group and output topics; records/s from the first applied record to the last
//!    (`vero_profiles_records_total` polled every 250 ms), peak RSS, ratio of medians.
//! 2. Scale: `VERO_BENCH_PROFILE_USERS` (default 10 000 000) users into today's, RSS
//!    sampled every 5 s, store bytes on disk at the end.
//! 3. Restart: that consumer killed with SIGKILL and started again on the same store;
//!    seconds from spawn to a new user's event (produced right after the spawn) being
//!    applied and written, and the restore from the checkpoint.
//! 4. Moved partitions: one instance on an empty store, same group, one event per
//!    partition: every partition restored from the beginning of the profiles topic.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use serde::{Deserialize, Serialize};
use vero_model::partition::partition_for_key;
use vero_model::TrackEvent;
use vero_testkit::clickhouse::ClickHouseServer;
use vero_testkit::kafka::{KafkaCluster, KafkaSettings};
use vero_testkit::metrics::sum;

use super::{Bench, Results};
use crate::procs::{free_port, memory_kib, wait_for_port, Guard};

/// Partitions of every events topic (the consumer creates its other topics alike).
pub const PARTITIONS: i32 = 4;
/// `state.memory_mb` of today's consumer in every run.
pub const MEMORY_MB: u64 = 256;
/// Rounds of the throughput comparison (baseline then today's, interleaved).
pub const ROUNDS: usize = 2;
const POLL: Duration = Duration::from_millis(250);
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// A wait fails when its figure has not moved for this long.
const STALL: Duration = Duration::from_secs(180);

const RECORDS: &str = "vero_profiles_records_total";
const APPLIED: &str = "vero_profiles_records_total{outcome=\"applied\"}";
const WRITTEN: &str = "vero_profiles_written_total";
const RESTORE_READ: &str = "vero_profiles_restore_records_read_total";
const RESTORED: &str = "vero_profiles_restored_total";

fn restore_metric(part: &str, from: &str) -> String {
    format!("vero_profiles_restore_duration_seconds_{part}{{from=\"{from}\"}}")
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// RSS of the consumer at one moment of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RssSample {
    pub secs: f64,
    pub applied: u64,
    pub rss_mib: f64,
}

/// One consumer reading a backlog of `users` events.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Consumed {
    pub users: u64,
    /// From the first applied record to the last (the first poll's records scaled in).
    pub secs: f64,
    /// From the spawn to the last record applied.
    pub wall_secs: f64,
    /// `VmHWM` at the end.
    pub peak_rss_mib: f64,
    /// The largest `VmRSS` of the samples (every 250 ms).
    pub max_rss_mib: f64,
    /// `VmRSS` when 25, 50, 75 and 100 % of the records were applied.
    pub rss_at_quarters_mib: Vec<f64>,
    /// Every [`SAMPLE_EVERY`].
    pub samples: Vec<RssSample>,
}

impl Consumed {
    pub fn records_per_sec(&self) -> f64 {
        self.users as f64 / self.secs.max(1e-9)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RatioRun {
    /// `baseline` or `current`.
    pub consumer: String,
    pub round: usize,
    pub consumed: Consumed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScaleRun {
    pub consumed: Consumed,
    /// Bytes of the files under `state.dir` once every profile was written.
    pub disk_bytes: u64,
    /// `vero_profiles_state_disk_bytes` at the same moment.
    pub disk_metric_bytes: u64,
    pub cache_bytes: u64,
    pub in_memory: u64,
    /// Users per events partition.
    pub users_per_partition: Vec<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestartRun {
    /// From the spawn to the new user's record applied.
    pub applied_secs: f64,
    /// From the spawn to its profile written (`vero_profiles_written_total` >= 1).
    pub written_secs: f64,
    pub checkpoint_restores: u64,
    pub checkpoint_restore_secs: f64,
    pub beginning_restores: u64,
    pub records_read: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MovedRun {
    /// From the spawn to the record of every partition applied and written.
    pub all_applied_secs: f64,
    pub restores: u64,
    pub restore_secs: f64,
    pub profiles_restored: u64,
    pub records_read: u64,
    pub peak_rss_mib: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProfileStateBench {
    #[serde(default)]
    pub command: String,
    pub ratio_users: u64,
    pub users: u64,
    /// Why the baseline was not run, when it was not.
    pub baseline_skipped: Option<String>,
    pub ratio: Vec<RatioRun>,
    pub scale: Option<ScaleRun>,
    pub restart: Option<RestartRun>,
    pub moved: Option<MovedRun>,
}

/// Mean of the middle one or two values.
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

impl ProfileStateBench {
    fn median(&self, consumer: &str, figure: impl Fn(&Consumed) -> f64) -> Option<f64> {
        median(self.ratio.iter().filter(|r| r.consumer == consumer).map(|r| figure(&r.consumed)).collect())
    }
}

/// The topics and group of one run (the consumer creates the profiles and handoff
/// topics).
#[derive(Clone)]
struct Topics {
    events: String,
    profiles: String,
    handoff: String,
    dlq: String,
    group: String,
}

impl Topics {
    fn fresh(events: &str, name: &str) -> Self {
        let base = vero_testkit::unique_name(&format!("bench.profiles.{name}"));
        Self {
            events: events.to_owned(),
            profiles: format!("{base}.profiles"),
            handoff: format!("{base}.handoff"),
            dlq: format!("{base}.dlq"),
            group: format!("{base}.group"),
        }
    }
}

/// A consumer binary and its config dir; `stateful` = knows the `[state]` section.
struct Binary {
    path: PathBuf,
    config: PathBuf,
    stateful: bool,
}

struct Env<'a> {
    bench: &'a Bench,
    kafka: KafkaCluster,
    clickhouse: ClickHouseServer,
}

/// A running consumer: its process, ops port and spawn time.
struct Consumer {
    guard: Guard,
    port: u16,
    spawned: Instant,
}

impl Consumer {
    fn start(
        env: &Env<'_>,
        name: &str,
        binary: &Binary,
        topics: &Topics,
        state: Option<&Path>,
        static_id: Option<&str>,
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let mut command = Command::new(&binary.path);
        command
            .env("VERO_ENV", "local")
            .env("VERO_CONFIG_DIR", &binary.config)
            .env("RUST_LOG", std::env::var("VERO_BENCH_PROFILE_LOG").unwrap_or_else(|_| "info,rdkafka=warn".into()))
            .env("VERO__KAFKA__BROKERS", env.kafka.bootstrap_servers())
            .env("VERO__CLICKHOUSE__URL", env.clickhouse.http_url())
            .env("VERO__OPS__LISTEN", format!("127.0.0.1:{port}"))
            // Static membership where a restart is measured (as deployed: a restarted
            // member takes its partitions back without waiting out its old session).
            .env("VERO__KAFKA__GROUP_INSTANCE_ID", static_id.unwrap_or(""))
            .env("VERO__KAFKA__GROUP_ID", &topics.group)
            .env("VERO__KAFKA__EVENTS_TOPIC", &topics.events)
            .env("VERO__KAFKA__PROFILES_TOPIC", &topics.profiles)
            .env("VERO__KAFKA__HANDOFF_TOPIC", &topics.handoff)
            .env("VERO__KAFKA__DLQ_TOPIC", &topics.dlq)
            .env("VERO__KAFKA__CREATE_TOPICS", "true")
            .env("VERO__KAFKA__REPLICATION_FACTOR", "1");
        if binary.stateful {
            let state = state.context("a state dir for today's consumer")?;
            command
                .env("VERO__STATE__DIR", state)
                .env("VERO__STATE__MEMORY_MB", MEMORY_MB.to_string())
                // A partition of millions of profiles: measure its restore, do not cut it off.
                .env("VERO__KAFKA__RESTORE_TIMEOUT_MS", "1800000");
        }
        let mut guard = Guard::spawn(name, command, &env.bench.work)?;
        let spawned = Instant::now();
        wait_for_port(port, &mut guard, Duration::from_secs(60))?;
        Ok(Self { guard, port, spawned })
    }

    async fn scrape(&self) -> anyhow::Result<String> {
        vero_testkit::http::get(([127, 0, 0, 1], self.port).into(), "/metrics", Duration::from_secs(10)).await
    }

    /// The consumer's metrics, failing (with its log) when it has exited.
    async fn metrics(&mut self) -> anyhow::Result<String> {
        anyhow::ensure!(self.guard.is_running(), "{} exited:\n{}", self.guard.name, self.guard.log_tail());
        self.scrape().await.with_context(|| format!("{}:\n{}", self.guard.name, self.guard.log_tail()))
    }

    fn memory(&self) -> (u64, u64) {
        memory_kib(self.guard.pid()).unwrap_or_default()
    }

    fn fail(&self, what: &str) -> anyhow::Error {
        anyhow::anyhow!("{}: {what}; log tail:\n{}", self.guard.name, self.guard.log_tail())
    }

    /// Poll until `done(metrics)`; fails when `progress(metrics)` has not changed for
    /// [`STALL`] or `cap` has passed. Returns the metrics that satisfied it.
    async fn wait(
        &mut self,
        what: &str,
        cap: Duration,
        progress: impl Fn(&str) -> f64,
        done: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let started = Instant::now();
        let (mut last, mut moved) = (f64::NAN, Instant::now());
        loop {
            let text = self.metrics().await?;
            if done(&text) {
                return Ok(text);
            }
            let now = progress(&text);
            if now != last {
                (last, moved) = (now, Instant::now());
            }
            if moved.elapsed() > STALL || started.elapsed() > cap {
                return Err(self.fail(&format!(
                    "{what}: still waiting after {:.0} s (at {now})",
                    started.elapsed().as_secs_f64()
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Until `users` records are applied: throughput and memory.
    async fn consume(&mut self, users: u64) -> anyhow::Result<Consumed> {
        let cap = Duration::from_secs(600 + users / 1000);
        let (mut first, mut max_rss, mut quarters, mut samples) = (None, 0u64, Vec::new(), Vec::new());
        let (mut last, mut moved, mut sampled) = (0u64, Instant::now(), None::<Instant>);
        let text = loop {
            let text = self.metrics().await?;
            let now = Instant::now();
            let n = sum(&text, RECORDS) as u64;
            let (rss, _) = self.memory();
            max_rss = max_rss.max(rss);
            if n > 0 && first.is_none() {
                first = Some((now, n));
            }
            while quarters.len() < 4 && n >= users * (quarters.len() as u64 + 1) / 4 {
                quarters.push(mib(rss));
            }
            if sampled.is_none_or(|at| at.elapsed() >= SAMPLE_EVERY) {
                samples.push(RssSample { secs: self.spawned.elapsed().as_secs_f64(), applied: n, rss_mib: mib(rss) });
                sampled = Some(now);
            }
            if n >= users {
                break text;
            }
            if n != last {
                (last, moved) = (n, now);
            }
            if moved.elapsed() > STALL || self.spawned.elapsed() > cap {
                return Err(self.fail(&format!(
                    "{n} of {users} records consumed after {:.0} s",
                    self.spawned.elapsed().as_secs_f64()
                )));
            }
            tokio::time::sleep(POLL).await;
        };
        let wall_secs = self.spawned.elapsed().as_secs_f64();
        let applied = sum(&text, APPLIED) as u64;
        if applied < users {
            let outcomes: Vec<&str> = text.lines().filter(|l| l.starts_with(RECORDS)).collect();
            return Err(self.fail(&format!("{applied} of {users} records applied: {}", outcomes.join(", "))));
        }
        let (first_at, first_n) = first.expect("records were seen");
        let span = first_at.elapsed().as_secs_f64();
        let secs = if users > first_n { span * users as f64 / (users - first_n) as f64 } else { wall_secs };
        let (_, hwm) = self.memory();
        Ok(Consumed {
            users,
            secs,
            wall_secs,
            peak_rss_mib: mib(hwm),
            max_rss_mib: mib(max_rss),
            rss_at_quarters_mib: quarters,
            samples,
        })
    }

    fn kill9(&mut self) {
        self.guard.kill9();
    }
}

/// Counts deliveries of the bulk producer.
#[derive(Default)]
struct Counting {
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let counter = if result.is_ok() { &self.delivered } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

fn event(user: &str, received_at: i64) -> TrackEvent {
    TrackEvent {
        event_id: uuid::Uuid::now_v7(),
        received_at,
        project: "bench".into(),
        event_name: "signup".into(),
        user_id: user.into(),
        email: None,
        identity_attributes: "{}".into(),
        data: "{}".into(),
        development_mode: false,
        created_at: None,
        source: None,
        extras: "{}".into(),
        user_agent: None,
    }
}

/// Produce one event for each of `users` to `topic` (large lz4 batches, idempotent),
/// each to its key's partition; returns the events per partition.
fn produce(brokers: &str, topic: &str, users: impl Iterator<Item = String>) -> anyhow::Result<Vec<u64>> {
    let producer: BaseProducer<Counting> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("batch.num.messages", "100000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create_with_context(Counting::default())
        .context("creating the bulk producer")?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let mut per_partition = vec![0u64; PARTITIONS as usize];
    let mut sent = 0u64;
    for user in users {
        let payload = vero_model::encode(&event(&user, now));
        let partition = partition_for_key(user.as_bytes(), PARTITIONS);
        per_partition[partition as usize] += 1;
        let mut record = BaseRecord::to(topic).key(user.as_str()).payload(&payload).partition(partition);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    r,
                )) if Instant::now() < deadline => {
                    record = r;
                    producer.poll(Duration::from_millis(20));
                }
                Err((e, _)) => anyhow::bail!("producing to {topic}: {e}"),
            }
        }
        sent += 1;
        if sent.is_multiple_of(10_000) {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(300)).with_context(|| format!("flushing {sent} records to {topic}"))?;
    let context = producer.context();
    let (delivered, failed) = (context.delivered.load(Ordering::Relaxed), context.failed.load(Ordering::Relaxed));
    anyhow::ensure!(delivered == sent && failed == 0, "{topic}: {delivered} of {sent} delivered, {failed} failed");
    Ok(per_partition)
}

async fn produce_users(env: &Env<'_>, topic: &str, users: Vec<String>) -> anyhow::Result<Vec<u64>> {
    let (brokers, topic) = (env.kafka.bootstrap_servers().to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || produce(&brokers, &topic, users.into_iter())).await?
}

/// A fresh events topic holding one event for each of `u0` .. `u{users - 1}`.
async fn events_topic(env: &Env<'_>, name: &str, users: u64) -> anyhow::Result<(String, Vec<u64>)> {
    let topic = vero_testkit::unique_name(&format!("bench.profiles.{name}.events"));
    env.kafka.create_topic(&topic, PARTITIONS).await?;
    let started = Instant::now();
    let (brokers, t) = (env.kafka.bootstrap_servers().to_owned(), topic.clone());
    let per_partition =
        tokio::task::spawn_blocking(move || produce(&brokers, &t, (0..users).map(|i| format!("u{i}")))).await??;
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(topic, users, secs, rate = users as f64 / secs.max(1e-9), "events produced");
    Ok((topic, per_partition))
}

/// Bytes of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn fresh_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    Ok(std::fs::canonicalize(dir)?)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(default)
}

pub async fn run(bench: &Bench, results: &mut Results) -> anyhow::Result<()> {
    let mut measured = ProfileStateBench {
        command: results.command.clone(),
        ratio_users: env_u64("VERO_BENCH_PROFILE_RATIO_USERS", 1_000_000),
        users: env_u64("VERO_BENCH_PROFILE_USERS", 10_000_000),
        ..ProfileStateBench::default()
    };
    let outcome = measure(bench, &mut measured).await;
    // What was measured before a failure is kept (the failure is listed too).
    results.profile_state = Some(measured);
    let _ = std::fs::remove_dir_all(bench.work.join("profile-state"));
    outcome
}

async fn measure(bench: &Bench, measured: &mut ProfileStateBench) -> anyhow::Result<()> {
    let settings = KafkaSettings { heap: "1g".into(), ..KafkaSettings::default() };
    let kafka = tokio::task::spawn_blocking(move || KafkaCluster::start(settings)).await??;
    let clickhouse = tokio::task::spawn_blocking(ClickHouseServer::start).await??;
    let env = Env { bench, kafka, clickhouse };
    let states = bench.work.join("profile-state");
    let current = Binary {
        path: bench.bins.join("profile-consumer"),
        config: std::env::current_dir()?.join("config/profile-consumer"),
        stateful: true,
    };
    let baseline = match std::env::var_os("VERO_BENCH_BASELINE_PROFILE_CONSUMER") {
        None => {
            measured.baseline_skipped = Some(
                "VERO_BENCH_BASELINE_PROFILE_CONSUMER is not set (scripts/bench.sh builds it from 5a7e9c2)".into(),
            );
            None
        }
        Some(path) => {
            let path = PathBuf::from(path);
            anyhow::ensure!(path.exists(), "baseline profile consumer {} does not exist", path.display());
            let config = std::env::var_os("VERO_BENCH_BASELINE_PROFILE_CONFIG")
                .map(PathBuf::from)
                .context("VERO_BENCH_BASELINE_PROFILE_CONFIG is not set (the baseline's config/profile-consumer)")?;
            Some(Binary { path, config, stateful: false })
        }
    };

    // 1. Throughput, baseline vs today's, on the same events.
    let users = measured.ratio_users;
    let (events, _) = events_topic(&env, "ratio", users).await?;
    for round in 1..=ROUNDS {
        for (name, binary) in [("baseline", baseline.as_ref()), ("current", Some(&current))] {
            let Some(binary) = binary else { continue };
            let topics = Topics::fresh(&events, &format!("ratio-{name}-{round}"));
            let state = fresh_dir(&states.join(format!("ratio-{round}")))?;
            let mut consumer = Consumer::start(
                &env,
                &format!("profile-consumer-{name}-{round}"),
                binary,
                &topics,
                Some(&state),
                None,
            )?;
            let consumed = consumer.consume(users).await?;
            println!(
                "profiles round {round}: {name}: {:.0} records/s, {:.1} s from spawn, peak RSS {:.0} MiB",
                consumed.records_per_sec(),
                consumed.wall_secs,
                consumed.peak_rss_mib
            );
            consumer.guard.stop(Duration::from_secs(30));
            measured.ratio.push(RatioRun { consumer: name.into(), round, consumed });
        }
    }

    // 2. Scale.
    let users = measured.users;
    let (events, per_partition) = events_topic(&env, "scale", users).await?;
    let topics = Topics::fresh(&events, "scale");
    let state = fresh_dir(&states.join("scale"))?;
    let mut consumer =
        Consumer::start(&env, "profile-consumer-scale", &current, &topics, Some(&state), Some("bench-scale"))?;
    let consumed = consumer.consume(users).await?;
    let cap = Duration::from_secs(600);
    let text =
        consumer.wait("every profile written", cap, |t| sum(t, WRITTEN), |t| sum(t, WRITTEN) as u64 >= users).await?;
    let scale = ScaleRun {
        disk_bytes: dir_bytes(&state),
        disk_metric_bytes: sum(&text, "vero_profiles_state_disk_bytes") as u64,
        cache_bytes: sum(&text, "vero_profiles_state_cache_bytes") as u64,
        in_memory: sum(&text, "vero_profiles_in_memory") as u64,
        users_per_partition: per_partition,
        consumed,
    };
    println!(
        "profiles scale: {users} users, {:.0} records/s, max RSS {:.0} MiB, {:.0} MiB on disk",
        scale.consumed.records_per_sec(),
        scale.consumed.max_rss_mib,
        scale.disk_bytes as f64 / 1048576.0
    );
    measured.scale = Some(scale);

    // 3. kill -9, restart on the same store, one new user.
    consumer.kill9();
    let mut consumer =
        Consumer::start(&env, "profile-consumer-restart", &current, &topics, Some(&state), Some("bench-scale"))?;
    produce_users(&env, &events, vec!["restart-u0".into()]).await?;
    let applied = |t: &str| sum(t, APPLIED) >= 1.0;
    consumer.wait("the new user's record applied", cap, |t| sum(t, RESTORE_READ), applied).await?;
    let applied_secs = consumer.spawned.elapsed().as_secs_f64();
    let text =
        consumer.wait("the new user's profile written", cap, |t| sum(t, WRITTEN), |t| sum(t, WRITTEN) >= 1.0).await?;
    let restart = RestartRun {
        applied_secs,
        written_secs: consumer.spawned.elapsed().as_secs_f64(),
        checkpoint_restores: sum(&text, &restore_metric("count", "checkpoint")) as u64,
        checkpoint_restore_secs: sum(&text, &restore_metric("sum", "checkpoint")),
        beginning_restores: sum(&text, &restore_metric("count", "beginning")) as u64,
        records_read: sum(&text, RESTORE_READ) as u64,
    };
    println!("profiles restart after kill -9: {restart:?}");
    measured.restart = Some(restart);
    consumer.guard.stop(Duration::from_secs(60));

    // 4. Every partition moved to an instance with an empty store.
    let state = fresh_dir(&states.join("moved"))?;
    let mut consumer = Consumer::start(&env, "profile-consumer-moved", &current, &topics, Some(&state), None)?;
    let mut one_per_partition: Vec<Option<String>> = vec![None; PARTITIONS as usize];
    for i in 0.. {
        let user = format!("moved-u{i}");
        let slot = &mut one_per_partition[partition_for_key(user.as_bytes(), PARTITIONS) as usize];
        slot.get_or_insert(user);
        if one_per_partition.iter().all(Option::is_some) {
            break;
        }
    }
    produce_users(&env, &events, one_per_partition.into_iter().flatten().collect()).await?;
    let partitions = f64::from(PARTITIONS);
    let cap = Duration::from_secs(600 + users / 1000);
    let all_done = |t: &str| {
        sum(t, &restore_metric("count", "beginning")) >= partitions
            && sum(t, APPLIED) >= partitions
            && sum(t, WRITTEN) >= partitions
    };
    let text = consumer
        .wait("every partition restored and its record applied", cap, |t| sum(t, RESTORE_READ), all_done)
        .await?;
    let moved = MovedRun {
        all_applied_secs: consumer.spawned.elapsed().as_secs_f64(),
        restores: sum(&text, &restore_metric("count", "beginning")) as u64,
        restore_secs: sum(&text, &restore_metric("sum", "beginning")),
        profiles_restored: sum(&text, RESTORED) as u64,
        records_read: sum(&text, RESTORE_READ) as u64,
        peak_rss_mib: mib(consumer.memory().1),
    };
    println!("profiles moved partitions: {moved:?}");
    measured.moved = Some(moved);
    consumer.guard.stop(Duration::from_secs(60));
    Ok(())
}

/// The section of `docs/benchmarks.md`.
pub fn render(md: &mut String, run: Option<&ProfileStateBench>) {
    let _ = writeln!(md, "\n## Profile state: local store vs all in memory (issue 20)\n");
    let Some(run) = run else {
        let _ = writeln!(md, "Not measured in this run (see failures above).");
        return;
    };
    let _ = writeln!(
        md,
        "The profile consumer against Apache Kafka (one node, not the mock broker, whose partitions drop old data \
         past 5 MiB) and one ClickHouse server, one consumer process at a time. One event per user (`u{{i}}`), \
         produced before the consumer starts to an events topic of {PARTITIONS} partitions; each run has its own group \
         and profiles topics. Today's consumer runs with `state.memory_mb={MEMORY_MB}`. Records/s: from the first \
         applied record to the last (`vero_profiles_records_total` polled every 250 ms). Measured by `{}`.\n",
        run.command
    );
    let _ = writeln!(
        md,
        "**Throughput**: the same {} events, the previous all-in-memory release (`baseline`, commit 5a7e9c2 built by \
         `scripts/bench.sh`) then today's, {ROUNDS} rounds interleaved; medians (of two: their mean).\n",
        run.ratio_users
    );
    if let Some(reason) = &run.baseline_skipped {
        let _ = writeln!(md, "Baseline not run: {reason}.\n");
    }
    let _ = writeln!(md, "| consumer | round | records/s | s from spawn to last record | peak RSS MiB |");
    let _ = writeln!(md, "|---|---:|---:|---:|---:|");
    for r in &run.ratio {
        let c = &r.consumed;
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {:.1} | {:.0} |",
            r.consumer,
            r.round,
            c.records_per_sec(),
            c.wall_secs,
            c.peak_rss_mib
        );
    }
    let base = run.median("baseline", Consumed::records_per_sec);
    let current = run.median("current", Consumed::records_per_sec);
    match (base, current) {
        (Some(base), Some(current)) => {
            let rss = |c| run.median(c, |x| x.peak_rss_mib).unwrap_or_default();
            let _ = writeln!(
                md,
                "\nMedian records/s: today's {current:.0} vs baseline {base:.0} = **{:.2}×**; peak RSS {:.0} vs {:.0} MiB.",
                current / base.max(1e-9),
                rss("current"),
                rss("baseline")
            );
        }
        (None, Some(current)) => {
            let _ = writeln!(md, "\nMedian records/s of today's: {current:.0} (no baseline, no ratio).");
        }
        _ => {}
    }
    if let Some(s) = &run.scale {
        let c = &s.consumed;
        let quarters: Vec<String> = c.rss_at_quarters_mib.iter().map(|m| format!("{m:.0}")).collect();
        let _ = writeln!(
            md,
            "\n**Scale**: {} users ({} per partition) into today's consumer; RSS read every 250 ms (kept every 5 s in \
             `target/bench/results.json`).\n",
            c.users,
            s.users_per_partition.iter().map(u64::to_string).collect::<Vec<_>>().join(" / ")
        );
        let _ = writeln!(
            md,
            "| records/s | s from spawn | max RSS MiB | RSS MiB at 25/50/75/100 % applied | peak RSS (VmHWM) MiB | store on disk MiB | decoded cache MiB |"
        );
        let _ = writeln!(md, "|---:|---:|---:|---|---:|---:|---:|");
        let _ = writeln!(
            md,
            "| {:.0} | {:.1} | {:.0} | {} | {:.0} | {:.0} | {:.1} |",
            c.records_per_sec(),
            c.wall_secs,
            c.max_rss_mib,
            quarters.join(" / "),
            c.peak_rss_mib,
            s.disk_bytes as f64 / 1048576.0,
            s.cache_bytes as f64 / 1048576.0
        );
    }
    if let Some(r) = &run.restart {
        let per = r.checkpoint_restore_secs / (r.checkpoint_restores.max(1) as f64);
        let _ = writeln!(
            md,
            "\n**Restart after kill -9** on the same store, same group, static membership (`group_instance_id`, as \
             deployed: the restarted member takes its partitions back without waiting out its old session); one event \
             of a new user produced right after the spawn.\n"
        );
        let _ = writeln!(
            md,
            "| s from spawn to the new user applied | to its profile written | restores from checkpoint | s per restore | profiles-topic records read | restores from the beginning |"
        );
        let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|");
        let _ = writeln!(
            md,
            "| {:.1} | {:.1} | {} | {per:.2} | {} | {} |",
            r.applied_secs, r.written_secs, r.checkpoint_restores, r.records_read, r.beginning_restores
        );
    }
    if let Some(m) = &run.moved {
        let restores = m.restores.max(1) as f64;
        let _ = writeln!(
            md,
            "\n**Moved partitions**: one instance on an empty store, same group, one event per partition: every \
             partition restored from the beginning of the profiles topic.\n"
        );
        let _ = writeln!(
            md,
            "| partitions restored | s per partition | profiles per partition | s from spawn to every partition's record written | peak RSS MiB |"
        );
        let _ = writeln!(md, "|---:|---:|---:|---:|---:|");
        let _ = writeln!(
            md,
            "| {} | {:.1} | {:.0} | {:.1} | {:.0} |",
            m.restores,
            m.restore_secs / restores,
            m.profiles_restored as f64 / restores,
            m.all_applied_secs,
            m.peak_rss_mib
        );
    }
}
