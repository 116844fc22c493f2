//! Exponential backoff between retries, capped, cancellable by shutdown.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::RetrySettings;

pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(settings: &RetrySettings) -> Self {
        Self {
            next: Duration::from_millis(settings.initial_backoff_ms),
            max: Duration::from_millis(settings.max_backoff_ms),
        }
    }

    /// Sleep for the current delay and double it; `false` when `cancel` fired first.
    pub async fn wait(&mut self, cancel: &CancellationToken) -> bool {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        tokio::select! {
            _ = cancel.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}
