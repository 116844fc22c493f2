//! The profile consumer: consumes `vero.events` in its own consumer group and keeps one
//! merged profile per (project, user id), stored in ClickHouse `vero.profiles` for
//! analysts and on the compacted `vero.profiles` topic for other services.
//!
//! * [`profile`]: the profile and its merge rules (deterministic: a replay yields the
//!   same profile; an already-applied record changes nothing).
//! * [`kafka`]: topics, the at-least-once group consumer, state restore from the
//!   profiles topic, the producer.
//! * [`state`]: the profiles of the assigned partitions, in a local store with a
//!   bounded cache, checkpointed against the profiles topic.
//! * [`store`]: the ClickHouse tables.
//! * [`start::run`]: the whole service, started by `main.rs` and by the tests.
//!
//! Merge rules, storage, queries and limits: `docs/profiles.md`.

pub mod config;
pub mod consume;
pub mod destination;
pub mod error;
pub mod kafka;
pub mod metrics;
pub mod profile;
pub mod start;
pub mod state;

pub use config::Settings;
pub use start::run;
