//! `event-sink`: a Kafka consumer group that writes `vero.events` into ClickHouse.
//!
//! Guarantees: every event of the topic ends up either as a row of `vero.events` or
//! as a record of the dead-letter topic (with the reason and source position in
//! headers); a user `Delete` command erases that user's earlier events (a mutation,
//! see [`erase`]) and spares later ones; other user commands are skipped. Offsets are
//! stored only after that (at-least-once delivery), and a row is never inserted twice:
//! a redelivered record at or below its partition's written offset is skipped, and so
//! is a client's repeated request within the dedup window ([`once`]), so a plain
//! `SELECT count() FROM vero.events` is exact (see docs/analytics.md). While ClickHouse fails, consumption pauses with at most two batches
//! in memory (the one being retried and the next) and resumes when it is back.
//!
//! Modules: [`config`] (settings), [`start`] (start: schema, consumer; [`run`] and
//! [`migrate`]), [`pipeline`] (the consume/flush loop), [`batch`], [`row`],
//! [`insert`] (INSERT with retry and bisection), [`route`] (the server, or the shards of a cluster), [`once`] (what not to insert; fencing), [`erase`] (GDPR delete mutations), [`dlq`], [`replay`]
//! (`event-sink replay-dlq`: DLQ records back into the pipeline), [`context`] (rebalance and
//! statistics callbacks), [`metrics`]; the partition lifecycle, retry policy, dead-letter writer,
//! end-of-topic reader and readiness come from `vero_service`.

pub mod batch;
pub mod config;
pub mod context;
pub mod dlq;
pub mod erase;
pub mod insert;
pub mod metrics;
pub mod once;
pub mod pipeline;
pub mod replay;
pub mod route;
pub mod row;
pub mod start;

pub use config::Settings;
pub use replay::replay_dlq;
pub use start::{migrate, run, Migrated};
