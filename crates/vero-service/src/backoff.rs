//! Exponential backoff between retries of a failing side effect: doubles from the
//! initial delay up to the maximum, and a shutdown cuts the wait short.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { next: initial, max }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn doubles_up_to_the_cap_and_stops_on_cancel() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(300));
        let cancel = CancellationToken::new();
        let start = tokio::time::Instant::now();
        for _ in 0..4 {
            assert!(backoff.wait(&cancel).await);
        }
        assert_eq!(start.elapsed(), Duration::from_millis(100 + 200 + 300 + 300));
        cancel.cancel();
        assert!(!backoff.wait(&cancel).await);
    }
}
