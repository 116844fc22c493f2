//! An in-memory [`EventSink`] for tests of the HTTP layer: keeps every record and can
//! be told to fail the next produces with a given [`SinkError`].

use std::sync::Mutex;
use std::time::Duration;

use super::{CheckFuture, EventSink, ProduceFuture, SinkError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

#[derive(Default)]
pub struct MemorySink {
    records: Mutex<Vec<StoredRecord>>,
    failure: Mutex<Option<SinkError>>,
}

impl MemorySink {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every stored record, oldest first.
    pub fn records(&self) -> Vec<StoredRecord> {
        self.records.lock().unwrap().clone()
    }

    /// Fail every produce with `error` until [`MemorySink::recover`].
    pub fn fail_with(&self, error: SinkError) {
        *self.failure.lock().unwrap() = Some(error);
    }

    pub fn recover(&self) {
        *self.failure.lock().unwrap() = None;
    }
}

impl EventSink for MemorySink {
    fn produce(&self, key: &[u8], payload: &[u8]) -> ProduceFuture {
        let result = match self.failure.lock().unwrap().clone() {
            Some(error) => Err(error),
            None => {
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
