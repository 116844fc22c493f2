//! `vero-chaos`: the fault harness that proves the pipeline's guarantees on real
//! processes (Jepsen-style: a ledger of what was acknowledged, faults injected, an
//! invariant checker).
//!
//! * [`rig`]: the system under test — Apache Kafka (one KRaft node, or three),
//!   ClickHouse, two of each service as separate processes in real consumer groups,
//!   a cuttable link between sinks and ClickHouse.
//! * [`ledger`]: numbered requests with client retries; every 200 recorded.
//! * [`faults`]: kill -9, SIGSTOP, ClickHouse/broker restarts, a read-only ClickHouse,
//!   a black-holed link, client retries, consumer groups rescaled, a partition leader
//!   or the KRaft controller killed; each scenario on a fresh rig.
//! * [`check`]: every 200 in `vero.events` exactly once (plain `count()`), nothing
//!   unsent, profiles equal a replay, the DLQ holds only the poison.
//! * [`report`]: the table of `docs/reliability.md`.
//!
//! Bounded: every wait has a deadline, the load has a fixed duration and rate, and
//! every address is on loopback.

pub mod check;
pub mod faults;
pub mod ledger;
pub mod process;
pub mod proxy;
pub mod report;
pub mod rig;

use std::time::Duration;

use faults::{Fault, Outcome, ScenarioSettings};

/// Which scenarios to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Schedule {
    /// A few minutes: the faults `make test` guards.
    Short,
    /// Every fault, longer load: `make chaos`.
    Full,
}

impl Schedule {
    pub fn faults(self) -> Vec<Fault> {
        match self {
            Schedule::Short => vec![
                Fault::KillSink { times: 2 },
                Fault::KillProfiles { times: 2 },
                Fault::KillGateway { times: 2 },
                Fault::ClientRetries,
                Fault::FreezeConsumers,
                Fault::ClickHouseDown { secs: 8 },
                Fault::SinkCutOff { secs: 8 },
                Fault::BrokerDown { secs: 8 },
                Fault::BrokerCrash { secs: 8 },
                Fault::ScaleOutIn,
                Fault::LeaderCrash { secs: 8 },
            ],
            Schedule::Full => vec![
                Fault::None,
                Fault::KillSink { times: 3 },
                Fault::KillProfiles { times: 3 },
                Fault::KillGateway { times: 3 },
                Fault::FreezeConsumers,
                Fault::ClickHouseDown { secs: 15 },
                Fault::BrokerDown { secs: 10 },
                Fault::BrokerCrash { secs: 10 },
                Fault::ClickHouseReadOnly { secs: 10 },
                Fault::SinkCutOff { secs: 15 },
                Fault::ClientRetries,
                Fault::KillDuringClickHouseDown,
                Fault::ScaleOutIn,
                Fault::LeaderCrash { secs: 10 },
                Fault::ControllerCrash { secs: 10 },
                Fault::BrokerCutOff { secs: 15 },
            ],
        }
    }

    pub fn settings(self) -> ScenarioSettings {
        match self {
            Schedule::Short => ScenarioSettings {
                load_secs: 20,
                fault_at_secs: 4,
                rate: 150,
                users: 40,
                settle_timeout: Duration::from_secs(90),
                consumer_env: Vec::new(),
            },
            Schedule::Full => ScenarioSettings {
                load_secs: 40,
                fault_at_secs: 8,
                rate: 300,
                users: 100,
                settle_timeout: Duration::from_secs(120),
                consumer_env: Vec::new(),
            },
        }
    }
}

/// Run `faults` one after another (each on a fresh rig) and return their outcomes.
/// Service logs go to `$VERO_CHAOS_LOGS` (default `target/chaos/<unix time>`), one
/// folder per scenario, and are kept.
pub async fn run(faults: &[Fault], settings: &ScenarioSettings) -> Vec<Outcome> {
    let base = std::env::var_os("VERO_CHAOS_LOGS").map(std::path::PathBuf::from).unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/chaos").join(now.as_secs().to_string())
    });
    let mut outcomes = Vec::new();
    for (i, fault) in faults.iter().enumerate() {
        eprintln!("[chaos] {}/{}: {}", i + 1, faults.len(), fault.name());
        let logs = base.join(format!("{:02}-{}", i + 1, fault.slug()));
        let outcome = faults::run_scenario(*fault, settings, &logs).await;
        let verdict = match (&outcome.error, outcome.holds()) {
            (Some(e), _) => format!("ERROR {e}"),
            (None, true) => "holds".to_owned(),
            (None, false) => format!("{} {:?}", outcome.verdict.summary(), outcome.crashes),
        };
        eprintln!("[chaos]   -> {verdict}");
        outcomes.push(outcome);
    }
    outcomes
}
