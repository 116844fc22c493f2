//! Where accepted records go: a [`Publisher`] takes one keyed payload and resolves
//! only once the record is durably stored (for Kafka: the delivery report says the
//! broker acknowledged it with `acks=all`).
//!
//! The API is deliberately "produce(key, payload bytes)": track events and the users
//! endpoints' commands alike, all keyed by user id on the same topic.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub mod kafka;
pub mod memory;

pub use kafka::KafkaPublisher;
pub use memory::MemoryPublisher;

/// Why a record was not stored. The gateway maps each to a status in
/// `crate::error::ApiError::from_sink`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The bounded producer queue is full: back-pressure, retry later.
    #[error("producer queue is full")]
    QueueFull,
    /// No acknowledgement within the delivery timeout (broker down, slow, partitioned).
    #[error("not acknowledged within the delivery timeout")]
    Timeout,
    /// A transient broker/network failure; retrying later may succeed.
    #[error("Kafka is unavailable")]
    Unavailable,
    /// The record exceeds the broker's (or producer's) maximum message size. Retrying
    /// the same request cannot succeed.
    #[error("record too large")]
    TooLarge,
    /// A permanent failure (authorization, unknown topic, fatal producer state):
    /// operator action is needed; the client retrying does not help.
    #[error("rejected permanently: {0}")]
    Rejected(&'static str),
}

pub type ProduceFuture = Pin<Box<dyn Future<Output = Result<(), PublishError>> + Send + 'static>>;
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

pub trait Publisher: Send + Sync + 'static {
    /// Hand over one record. The key and payload are copied before this returns; the
    /// future resolves `Ok` only when the record is durably stored.
    fn produce(&self, key: &[u8], payload: &[u8]) -> ProduceFuture;

    /// `Ok` when records can currently be stored (for `/readyz`).
    fn readiness(&self) -> CheckFuture<'_>;

    /// Records handed over but not yet acknowledged (for the queue-depth gauge).
    fn queue_depth(&self) -> i64;

    /// Wait up to `timeout` for every outstanding record (graceful shutdown).
    fn flush(&self, timeout: Duration) -> CheckFuture<'_>;
}
