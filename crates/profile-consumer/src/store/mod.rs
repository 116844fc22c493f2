//! ClickHouse storage of profiles for analysts: `vero.profiles` and
//! `vero.user_aliases` (schema in `schemas/clickhouse/0100_profiles.sql`). Table names
//! are passed unescaped (`insert_unescaped`): `insert` would quote `vero.profiles` as
//! one identifier. With `clickhouse.cluster` the rows go to the shards' `_local`
//! tables instead ([`route::Store`]).

pub mod clickhouse;
pub mod route;

pub use route::Store;
