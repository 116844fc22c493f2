//! ClickHouse storage of profiles for analysts: `vero.profiles` and
//! `vero.user_aliases` (schema in `schemas/clickhouse/0100_profiles.sql`). Table names
//! are passed unescaped (`insert_unescaped`): `insert` would quote `vero.profiles` as
//! one identifier. With `clickhouse.cluster` the rows go to the shards' `_local`
//! tables instead ([`route::Destination`]).

pub mod route;
pub mod rows;

pub use route::Destination;
