//! Readiness state shared by a service's workers and its `/readyz` endpoint: workers
//! mark the service ready or not ready (with the reason), `/readyz` reports it.

use std::sync::{Arc, Mutex};

use crate::ops::ReadinessCheck;

#[derive(Clone)]
pub struct Health(Arc<Mutex<Result<(), String>>>);

impl Health {
    /// Not ready yet, for `reason` (e.g. "starting: ClickHouse schema not checked yet").
    pub fn starting(reason: impl Into<String>) -> Self {
        Self(Arc::new(Mutex::new(Err(reason.into()))))
    }

    pub fn ready(&self) {
        *self.0.lock().expect("health lock") = Ok(());
    }

    pub fn not_ready(&self, reason: impl Into<String>) {
        *self.0.lock().expect("health lock") = Err(reason.into());
    }

    /// The check to give [`crate::ops::serve`].
    pub fn check(&self) -> ReadinessCheck {
        let state = self.0.clone();
        Arc::new(move || {
            let now = state.lock().expect("health lock").clone();
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
}
