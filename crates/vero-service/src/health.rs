//! Readiness state shared by a service's workers and its `/readyz` endpoint: workers
//! mark the service ready or not ready (with the reason), `/readyz` reports it.
//!
//! Two kinds of state: the latest outcome ([`Health::ready`] / [`Health::not_ready`],
//! overwritten by the next write attempt) and *held* conditions ([`Health::hold`] /
//! [`Health::release`]) that keep the service not ready whatever the latest outcome
//! says, until released (e.g. a partition stopped at a record only an operator can
//! unblock, while writes of the other partitions succeed).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::ops::ReadinessCheck;

struct State {
    latest: Result<(), String>,
    held: BTreeMap<String, String>,
}

impl State {
    fn readiness(&self) -> Result<(), String> {
        if self.held.is_empty() {
            return self.latest.clone();
        }
        let held: Vec<&str> = self.held.values().map(String::as_str).collect();
        Err(held.join("; "))
    }
}

#[derive(Clone)]
pub struct Health(Arc<Mutex<State>>);

impl Health {
    /// Not ready yet, for `reason` (e.g. "starting: ClickHouse schema not checked yet").
    pub fn starting(reason: impl Into<String>) -> Self {
        Self(Arc::new(Mutex::new(State { latest: Err(reason.into()), held: BTreeMap::new() })))
    }

    pub fn ready(&self) {
        self.0.lock().expect("health lock").latest = Ok(());
    }

    pub fn not_ready(&self, reason: impl Into<String>) {
        self.0.lock().expect("health lock").latest = Err(reason.into());
    }

    /// Not ready for `reason` until [`Health::release`] of the same `key`.
    pub fn hold(&self, key: impl Into<String>, reason: impl Into<String>) {
        self.0.lock().expect("health lock").held.insert(key.into(), reason.into());
    }

    pub fn release(&self, key: &str) {
        self.0.lock().expect("health lock").held.remove(key);
    }

    /// The current readiness, as `/readyz` reports it.
    pub fn readiness(&self) -> Result<(), String> {
        self.0.lock().expect("health lock").readiness()
    }

    /// The check to give [`crate::ops::serve`].
    pub fn check(&self) -> ReadinessCheck {
        let health = self.clone();
        Arc::new(move || {
            let now = health.readiness();
            Box::pin(async move { now })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_the_latest_state_with_its_reason() {
        let health = Health::starting("starting");
        let check = health.check();
        assert_eq!(check().await, Err("starting".to_owned()));
        health.ready();
        assert_eq!(check().await, Ok(()));
        health.not_ready("ClickHouse down");
        assert_eq!(check().await, Err("ClickHouse down".to_owned()));
    }

    #[tokio::test]
    async fn held_conditions_win_over_the_latest_outcome_until_released() {
        let health = Health::starting("starting");
        health.ready();
        health.hold("partition 3", "partition 3 stopped");
        health.ready();
        assert_eq!(health.readiness(), Err("partition 3 stopped".to_owned()));
        health.hold("partition 1", "partition 1 stopped");
        assert_eq!(health.readiness(), Err("partition 1 stopped; partition 3 stopped".to_owned()));
        health.release("partition 1");
        health.release("partition 3");
        assert_eq!(health.check()().await, Ok(()));
    }
}
