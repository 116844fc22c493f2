//! An in-memory [`Publisher`] for tests of the HTTP layer: keeps every record and can
//! be told to fail the next produces with a given [`PublishError`].

use std::sync::Mutex;
use std::time::Duration;

use super::{CheckFuture, ProduceFuture, PublishError, Publisher};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

#[derive(Default)]
pub struct MemoryPublisher {
    records: Mutex<Vec<StoredRecord>>,
    failure: Mutex<Option<PublishError>>,
    /// With a failure set: how many produces still succeed before it applies.
    successes_left: Mutex<usize>,
}

impl MemoryPublisher {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every stored record, oldest first.
    pub fn records(&self) -> Vec<StoredRecord> {
        self.records.lock().unwrap().clone()
    }

    /// Fail every produce with `error` until [`MemoryPublisher::recover`].
    pub fn fail_with(&self, error: PublishError) {
        self.fail_after(0, error);
    }

    /// Store the next `successes` records, then fail every produce with `error` until
    /// [`MemoryPublisher::recover`] (a batch stored in part).
    pub fn fail_after(&self, successes: usize, error: PublishError) {
        *self.successes_left.lock().unwrap() = successes;
        *self.failure.lock().unwrap() = Some(error);
    }

    pub fn recover(&self) {
        *self.failure.lock().unwrap() = None;
    }
}

impl Publisher for MemoryPublisher {
    fn produce(&self, key: &[u8], payload: &[u8]) -> ProduceFuture {
        let failure = self.failure.lock().unwrap().clone();
        let mut successes_left = self.successes_left.lock().unwrap();
        let result = match failure {
            Some(error) if *successes_left == 0 => Err(error),
            _ => {
                *successes_left = successes_left.saturating_sub(1);
                self.records.lock().unwrap().push(StoredRecord { key: key.to_vec(), payload: payload.to_vec() });
                Ok(())
            }
        };
        Box::pin(std::future::ready(result))
    }

    fn readiness(&self) -> CheckFuture<'_> {
        let failing = self.failure.lock().unwrap().clone();
        Box::pin(async move {
            match failing {
                Some(error) => Err(error.to_string()),
                None => Ok(()),
            }
        })
    }

    fn queue_depth(&self) -> i64 {
        0
    }

    fn flush(&self, _timeout: Duration) -> CheckFuture<'_> {
        Box::pin(std::future::ready(Ok(())))
    }
}
