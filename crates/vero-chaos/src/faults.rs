//! The faults, and one scenario run: a fresh rig, the ledger load, the fault injected
//! while the load runs, then the wait for the pipeline to settle and the check.
//!
//! Every fault is healed by the harness the way an operator or a supervisor would:
//! a killed process is started again after [`RESTART_DELAY`], a frozen one is
//! continued, ClickHouse and the broker are restarted, a cut link is restored.
//! Recovery time: from the moment the fault was healed until every event
//! acknowledged before that moment is queryable. Longest stall: the longest stretch,
//! sampled every 250 ms from the load's start to the settle, in which no new event
//! landed in ClickHouse although acknowledged ones were missing (a rebalance pause,
//! a failover, a consumer waiting out a dead member's session).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::check::{self, Verdict};
use crate::ledger::{self, Ledger, LoadSettings};
use crate::proxy::LinkState;
use crate::rig::{Rig, Role, Shape, EVENTS_TOPIC, MAX_POLL_INTERVAL_MS, PROJECT, SESSION_TIMEOUT_MS, TOKEN};

/// How long a supervisor waits before starting a crashed process again.
pub const RESTART_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// No fault: the baseline every other row is compared with.
    None,
    /// `kill -9` of the first event sink, `times` times, restarted each time.
    KillSink {
        times: u32,
    },
    KillProfiles {
        times: u32,
    },
    KillGateway {
        times: u32,
    },
    /// SIGSTOP of the first sink and the first profile consumer for longer than the
    /// session timeout and `max.poll.interval.ms`, then SIGCONT.
    FreezeConsumers,
    /// ClickHouse killed, down for `secs`, restarted with its data.
    ClickHouseDown {
        secs: u64,
    },
    /// The broker stopped (SIGTERM), down for `secs`, restarted with its data.
    BrokerDown {
        secs: u64,
    },
    /// The broker killed (-9), down for `secs`, restarted with its data.
    BrokerCrash {
        secs: u64,
    },
    /// ClickHouse refuses writes: the `default` user becomes read-only for `secs`.
    ClickHouseReadOnly {
        secs: u64,
    },
    /// The sinks cannot reach ClickHouse (packets black-holed) for `secs`; the broker
    /// stays reachable.
    SinkCutOff {
        secs: u64,
    },
    /// Clients give up after 5 ms and retry: many requests are sent twice or more.
    ClientRetries,
    /// A sink and a profile consumer killed while ClickHouse is down.
    KillDuringClickHouseDown,
    /// The consumer groups rescaled under load: a third sink and profile consumer
    /// join, then the second of each leaves (SIGTERM), then the first is killed (-9);
    /// none comes back, the third carries on alone.
    ScaleOutIn,
    /// Three brokers: `kill -9` of the leader of the busiest events partition, down
    /// for `secs`, restarted.
    LeaderCrash {
        secs: u64,
    },
    /// Three brokers: `kill -9` of the active KRaft controller, down for `secs`.
    ControllerCrash {
        secs: u64,
    },
    /// Three brokers, the third on a network namespace of its own: its link is cut
    /// (nothing in or out, every port) for `secs`, then joined again.
    BrokerCutOff {
        secs: u64,
    },
}

impl Fault {
    pub fn name(self) -> String {
        match self {
            Fault::None => "none (baseline)".into(),
            Fault::KillSink { times } => format!("kill -9 event-sink x{times}"),
            Fault::KillProfiles { times } => format!("kill -9 profile-consumer x{times}"),
            Fault::KillGateway { times } => format!("kill -9 gateway x{times}"),
            Fault::FreezeConsumers => {
                format!("SIGSTOP consumers {}s > session/poll timeout", MAX_POLL_INTERVAL_MS / 1000 + 4)
            }
            Fault::ClickHouseDown { secs } => format!("ClickHouse killed, {secs}s down"),
            Fault::BrokerDown { secs } => format!("broker stopped (SIGTERM), {secs}s down"),
            Fault::BrokerCrash { secs } => format!("broker killed (-9), {secs}s down"),
            Fault::ClickHouseReadOnly { secs } => format!("ClickHouse read-only user {secs}s"),
            Fault::SinkCutOff { secs } => format!("sink cut off from ClickHouse {secs}s"),
            Fault::ClientRetries => "clients retry after 5 ms timeouts".into(),
            Fault::KillDuringClickHouseDown => "kill -9 sink+profiles while ClickHouse down".into(),
            Fault::ScaleOutIn => "consumers 2 → 3 → 2 (SIGTERM) → 1 (kill -9)".into(),
            Fault::LeaderCrash { secs } => format!("3 brokers: busiest partition's leader killed (-9), {secs}s down"),
            Fault::ControllerCrash { secs } => format!("3 brokers: active controller killed (-9), {secs}s down"),
            Fault::BrokerCutOff { secs } => format!("3 brokers: one cut off from the network {secs}s"),
        }
    }

    /// A short name for `--only`.
    pub fn slug(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::KillSink { .. } => "kill-sink",
            Fault::KillProfiles { .. } => "kill-profiles",
            Fault::KillGateway { .. } => "kill-gateway",
            Fault::FreezeConsumers => "freeze",
            Fault::ClickHouseDown { .. } => "clickhouse-down",
            Fault::BrokerDown { .. } => "broker-down",
            Fault::BrokerCrash { .. } => "broker-crash",
            Fault::ClickHouseReadOnly { .. } => "clickhouse-readonly",
            Fault::SinkCutOff { .. } => "sink-cutoff",
            Fault::ClientRetries => "client-retries",
            Fault::KillDuringClickHouseDown => "kill-during-clickhouse-down",
            Fault::ScaleOutIn => "scale-out-in",
            Fault::LeaderCrash { .. } => "leader-crash",
            Fault::ControllerCrash { .. } => "controller-crash",
            Fault::BrokerCutOff { .. } => "broker-cut-off",
        }
    }

    /// Kafka nodes the scenario runs on.
    pub fn brokers(self) -> usize {
        match self {
            Fault::LeaderCrash { .. } | Fault::ControllerCrash { .. } | Fault::BrokerCutOff { .. } => 3,
            _ => 1,
        }
    }
}

/// The outcome of one scenario: a row of the report.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub fault: Fault,
    pub verdict: Verdict,
    pub attempts: u64,
    pub recovery: Option<Duration>,
    /// The longest stretch with acknowledged events missing and none landing.
    pub longest_stall: Duration,
    /// Processes that exited on their own (not killed by the harness).
    pub crashes: Vec<String>,
    pub error: Option<String>,
    /// The ledger's run id (its events' `chaos_run`); empty until the load started.
    pub run_id: String,
}

impl Outcome {
    pub fn holds(&self) -> bool {
        self.error.is_none() && self.crashes.is_empty() && self.verdict.holds()
    }
}

#[derive(Debug, Clone)]
pub struct ScenarioSettings {
    pub load_secs: u64,
    /// When the fault starts, after the load started.
    pub fault_at_secs: u64,
    pub rate: u32,
    pub users: u32,
    pub settle_timeout: Duration,
    /// `VERO__*` settings for every consumer (`vero-chaos --group-protocol`).
    pub consumer_env: Vec<(String, String)>,
}

/// Run one scenario on a fresh rig.
pub async fn run_scenario(fault: Fault, settings: &ScenarioSettings, logs: &std::path::Path) -> Outcome {
    let started = Instant::now();
    let mut outcome = Outcome {
        fault,
        verdict: Verdict::default(),
        attempts: 0,
        recovery: None,
        longest_stall: Duration::ZERO,
        crashes: Vec::new(),
        error: None,
        run_id: String::new(),
    };
    let mut rig = match Rig::start(
        Shape {
            replicas: 2,
            brokers: fault.brokers(),
            isolate_last_broker: matches!(fault, Fault::BrokerCutOff { .. }),
        },
        &settings.consumer_env,
        logs,
    )
    .await
    {
        Ok(rig) => rig,
        Err(e) => {
            outcome.error = Some(format!("rig did not start: {e:#} (logs in {})", logs.display()));
            return outcome;
        }
    };
    tracing::info!(fault = %fault.name(), logs = %rig.dir.display(), "scenario started");
    if let Err(e) = drive(&mut rig, fault, settings, &mut outcome).await {
        outcome.error = Some(format!("{e:#}"));
    }
    if !outcome.verdict.profile_mismatches.is_empty() {
        let evidence = rig.dir.join("profile-mismatches.txt");
        match check::explain_mismatches(&rig, &outcome.run_id, PROJECT, &outcome.verdict) {
            Ok(text) => {
                if let Err(e) = std::fs::write(&evidence, text) {
                    tracing::warn!(error = %e, "cannot write the profile mismatch evidence");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot collect the profile mismatch evidence"),
        }
    }
    if !outcome.holds() {
        tracing::warn!(
            fault = %fault.name(),
            verdict = %outcome.verdict.summary(),
            logs = %rig.dir.display(),
            "scenario failed; service logs:\n{}",
            rig.logs_tail(15)
        );
    }
    rig.stop();
    tracing::info!(fault = %fault.name(), secs = started.elapsed().as_secs(), "scenario done");
    outcome
}

async fn drive(rig: &mut Rig, fault: Fault, settings: &ScenarioSettings, outcome: &mut Outcome) -> anyhow::Result<()> {
    let run_id = format!("chaos{}", std::process::id() as u64 * 1000 + u64::from(rand::random::<u16>() % 1000));
    outcome.run_id = run_id.clone();
    let load = LoadSettings {
        run_id: run_id.clone(),
        token: TOKEN.into(),
        users: settings.users,
        rate: settings.rate,
        // Half the connections send events/batch requests of 5 events: batches and
        // their retries must hold the same guarantees as single requests.
        batch_size: 5,
        connections: 8,
        client_timeout: if fault == Fault::ClientRetries { Duration::from_millis(5) } else { Duration::from_secs(10) },
        max_attempts: 60,
        retry_backoff: Duration::from_millis(250),
    };
    let poison: BTreeSet<String> = (0..3).map(|i| format!("poison-{run_id}-{i}")).collect();
    rig.produce_poison(&poison.iter().cloned().collect::<Vec<_>>()).await?;

    let ledger = Arc::new(Ledger::default());
    let stop = CancellationToken::new();
    let stall = tokio::spawn(watch_stalls(rig.clickhouse.http_port(), run_id.clone(), ledger.clone(), stop.clone()));
    let load_task = tokio::spawn(ledger::run(
        load,
        rig.gateway_urls.clone(),
        ledger.clone(),
        Duration::from_secs(settings.load_secs),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(settings.fault_at_secs)).await;
    tracing::info!(fault = %fault.name(), acked = ledger.acked_count(), "injecting");
    inject(rig, fault).await?;
    let healed_at = Instant::now();
    let acked_at_heal = ledger.snapshot().acked;
    tracing::info!(fault = %fault.name(), "healed");

    // Recovery: until every event acknowledged before the heal is queryable.
    let recovery_deadline = healed_at + settings.settle_timeout;
    while Instant::now() < recovery_deadline {
        supervise(rig, outcome);
        let present = check::present(rig, &run_id).unwrap_or_default();
        if acked_at_heal.iter().all(|seq| present.contains(seq)) {
            outcome.recovery = Some(healed_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    load_task.await?;

    // Settle: wait until everything acknowledged is queryable and the profiles agree.
    let snapshot = ledger.snapshot();
    outcome.attempts = snapshot.attempts;
    let deadline = Instant::now() + settings.settle_timeout;
    loop {
        supervise(rig, outcome);
        let dead = rig.dead_letter_keys()?;
        let verdict = check::verify(rig, &run_id, PROJECT, &snapshot, &dead, &poison)?;
        let done = verdict.holds() || Instant::now() > deadline;
        outcome.verdict = verdict;
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    stop.cancel();
    outcome.longest_stall = stall.await?;
    tracing::info!(
        fault = %fault.name(),
        acked = snapshot.acked.len(),
        failures = ?snapshot.failures,
        verdict = %outcome.verdict.summary(),
        "checked"
    );
    Ok(())
}

/// Sample how many of the run's events landed every 250 ms until `stop`, and return
/// the longest stretch in which that number did not grow while fewer had landed than
/// the ledger had acknowledged.
async fn watch_stalls(clickhouse: u16, run_id: String, ledger: Arc<Ledger>, stop: CancellationToken) -> Duration {
    let query =
        format!("SELECT count() FROM vero.events WHERE visitParamExtractString(data, 'chaos_run') = '{run_id}'");
    let (mut longest, mut last_growth, mut last_count) = (Duration::ZERO, Instant::now(), 0u64);
    while !stop.is_cancelled() {
        let acked = ledger.acked_count() as u64;
        let landed = tokio::task::spawn_blocking({
            let query = query.clone();
            move || vero_testkit::clickhouse::query_port(clickhouse, &query)
        })
        .await
        .ok()
        .and_then(|r| r.ok())
        .and_then(|text| text.trim().parse::<u64>().ok());
        match landed {
            Some(count) if count > last_count || count >= acked => {
                last_count = count;
                last_growth = Instant::now();
            }
            // Missing events and no progress (or ClickHouse not answering).
            _ => longest = longest.max(last_growth.elapsed()),
        }
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
    longest
}

/// A process that exited on its own is a finding; start it again like a supervisor.
fn supervise(rig: &mut Rig, outcome: &mut Outcome) {
    for service in rig.services.values_mut() {
        if let Some(status) = service.exited() {
            tracing::warn!(service = %service.name, %status, "exited on its own; restarting");
            outcome.crashes.push(format!("{} exited ({status})", service.name));
            let _ = service.start();
        }
    }
}

async fn kill_and_restart(rig: &mut Rig, role: Role, times: u32) -> anyhow::Result<()> {
    for _ in 0..times {
        rig.service(role, 0).kill9()?;
        tokio::time::sleep(RESTART_DELAY).await;
        rig.service(role, 0).start()?;
        // Let it rejoin and work a little before the next kill.
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    Ok(())
}

/// The same users file with the `default` profile made read-only: every INSERT and
/// ALTER is refused (`Code: 164, READONLY`), SELECTs still work. ClickHouse reloads
/// users.xml by itself within seconds.
fn read_only(users_xml: &str) -> anyhow::Result<String> {
    anyhow::ensure!(users_xml.contains("<profiles><default>"), "unexpected users.xml layout");
    Ok(users_xml.replacen("<profiles><default>", "<profiles><default><readonly>1</readonly>", 1))
}

async fn inject(rig: &mut Rig, fault: Fault) -> anyhow::Result<()> {
    match fault {
        Fault::None => {}
        Fault::KillSink { times } => kill_and_restart(rig, Role::Sink, times).await?,
        Fault::KillProfiles { times } => kill_and_restart(rig, Role::Profiles, times).await?,
        Fault::KillGateway { times } => kill_and_restart(rig, Role::Gateway, times).await?,
        Fault::FreezeConsumers => {
            rig.service(Role::Sink, 0).freeze()?;
            rig.service(Role::Profiles, 0).freeze()?;
            let frozen = Duration::from_millis(MAX_POLL_INTERVAL_MS.max(SESSION_TIMEOUT_MS) + 4_000);
            tokio::time::sleep(frozen).await;
            rig.service(Role::Sink, 0).thaw()?;
            rig.service(Role::Profiles, 0).thaw()?;
        }
        Fault::ClickHouseDown { secs } => {
            tokio::task::block_in_place(|| rig.clickhouse.kill())?;
            tokio::time::sleep(Duration::from_secs(secs)).await;
            tokio::task::block_in_place(|| rig.clickhouse.restart())?;
        }
        Fault::BrokerDown { secs } => {
            tokio::task::block_in_place(|| rig.broker.stop(1));
            tokio::time::sleep(Duration::from_secs(secs)).await;
            tokio::task::block_in_place(|| rig.broker.restart(1))?;
        }
        Fault::BrokerCrash { secs } => {
            tokio::task::block_in_place(|| rig.broker.kill(1));
            tokio::time::sleep(Duration::from_secs(secs)).await;
            tokio::task::block_in_place(|| rig.broker.restart(1))?;
        }
        Fault::ClickHouseReadOnly { secs } => {
            let users = rig.clickhouse.data_dir().join("users.xml");
            let normal = std::fs::read_to_string(&users)?;
            std::fs::write(&users, read_only(&normal)?)?;
            tokio::time::sleep(Duration::from_secs(secs)).await;
            std::fs::write(&users, normal)?;
        }
        Fault::SinkCutOff { secs } => {
            rig.sink_link.set(LinkState::Blackhole);
            tokio::time::sleep(Duration::from_secs(secs)).await;
            rig.sink_link.set(LinkState::Open);
        }
        Fault::ClientRetries => {}
        Fault::KillDuringClickHouseDown => {
            tokio::task::block_in_place(|| rig.clickhouse.kill())?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            rig.service(Role::Sink, 0).kill9()?;
            rig.service(Role::Profiles, 1).kill9()?;
            tokio::time::sleep(RESTART_DELAY).await;
            rig.service(Role::Sink, 0).start()?;
            rig.service(Role::Profiles, 1).start()?;
            tokio::time::sleep(Duration::from_secs(6)).await;
            tokio::task::block_in_place(|| rig.clickhouse.restart())?;
        }
        Fault::ScaleOutIn => {
            for role in [Role::Sink, Role::Profiles] {
                rig.add_service(role, 2)?;
                rig.service(role, 2).start()?;
            }
            tokio::time::sleep(Duration::from_secs(6)).await;
            for role in [Role::Sink, Role::Profiles] {
                let service = rig.service(role, 1);
                tokio::task::block_in_place(|| service.terminate(Duration::from_secs(30)))?;
            }
            tokio::time::sleep(Duration::from_secs(6)).await;
            for role in [Role::Sink, Role::Profiles] {
                rig.service(role, 0).kill9()?;
            }
        }
        Fault::LeaderCrash { secs } => {
            let leader = busiest_partition_leader(rig).await?;
            tracing::info!(leader, "killing the busiest partition's leader");
            tokio::task::block_in_place(|| rig.broker.kill(leader));
            tokio::time::sleep(Duration::from_secs(secs)).await;
            tokio::task::block_in_place(|| rig.broker.restart(leader))?;
        }
        Fault::BrokerCutOff { secs } => {
            let host = rig.isolated.as_ref().context("the rig has no isolated broker")?;
            tracing::info!(address = %host.address(), "cutting the third broker off");
            host.cut(true)?;
            tokio::time::sleep(Duration::from_secs(secs)).await;
            host.cut(false)?;
        }
        Fault::ControllerCrash { secs } => {
            let controller = rig.broker.active_controller().context("no active KRaft controller found")?;
            tracing::info!(controller, "killing the active controller");
            tokio::task::block_in_place(|| rig.broker.kill(controller));
            tokio::time::sleep(Duration::from_secs(secs)).await;
            tokio::task::block_in_place(|| rig.broker.restart(controller))?;
        }
    }
    Ok(())
}

/// The broker leading the events partition with the most records.
async fn busiest_partition_leader(rig: &Rig) -> anyhow::Result<i32> {
    let bootstrap = rig.broker.bootstrap_servers().to_owned();
    let busiest = tokio::task::spawn_blocking(move || -> anyhow::Result<i32> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = rdkafka::ClientConfig::new().set("bootstrap.servers", &bootstrap).create()?;
        let mut busiest = (0, -1);
        for partition in 0..crate::rig::PARTITIONS {
            let (low, high) = consumer.fetch_watermarks(EVENTS_TOPIC, partition, Duration::from_secs(10))?;
            if high - low > busiest.1 {
                busiest = (partition, high - low);
            }
        }
        Ok(busiest.0)
    })
    .await??;
    rig.broker.leader_of(EVENTS_TOPIC, busiest)
}
