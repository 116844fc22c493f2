//! ClickHouse pieces every Vero consumer shares:
//!
//! * [`config::ClickHouseSettings`]: where the server is and how to log in (the
//!   password never appears in `Debug` output or logs).
//! * [`client::build`]: a `clickhouse::Client` with LZ4 compression and schema
//!   validation off (validation needs server features newer than the 18.16 we test
//!   on; our row types are checked by tests against the real server instead).
//! * [`version::ServerVersion`]: the server's version, to pick SQL variants.
//! * [`error::Failure`]: every ClickHouse error classified once as retryable or not.
//! * [`queries::with_final`]: an analyst query with `FINAL` on every read of `vero.events`.
//! * [`migrations`]: the ordered, idempotent schema migrations of
//!   `schemas/clickhouse/`, embedded at build time, recorded in
//!   `vero.schema_migrations`; with `clickhouse.cluster` set
//!   ([`migrations::embedded_for`]) the cluster schema of `schemas/clickhouse/cluster/`,
//!   run `ON CLUSTER` by the same [`migrations::apply`].
//! * [`retention`]: the TTL of `vero.events` (the event sink's `retention.events_days`).

pub mod client;
pub mod config;
pub mod error;
pub mod migrations;
pub mod queries;
pub mod retention;
pub mod version;

pub use config::ClickHouseSettings;
pub use error::Failure;
pub use version::ServerVersion;

/// The database every Vero table lives in.
pub const DATABASE: &str = "vero";
