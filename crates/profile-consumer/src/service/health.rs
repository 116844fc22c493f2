//! Readiness: ready once the ClickHouse schema is applied and while the last write of
//! profiles did not fail. `/readyz` reports the reason otherwise.

use std::sync::{Arc, Mutex};

use vero_service::ops::ReadinessCheck;

#[derive(Clone)]
pub struct Health(Arc<Mutex<Result<(), String>>>);

impl Health {
    pub fn new() -> Self {
        Self(Arc::new(Mutex::new(Err("starting: ClickHouse schema not checked yet".into()))))
    }

    pub fn ready(&self) {
        *self.0.lock().expect("health lock") = Ok(());
    }

    pub fn not_ready(&self, reason: impl Into<String>) {
        *self.0.lock().expect("health lock") = Err(reason.into());
    }

    pub fn check(&self) -> ReadinessCheck {
        let state = self.0.clone();
        Arc::new(move || {
            let now = state.lock().expect("health lock").clone();
            Box::pin(async move { now })
        })
    }
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}
