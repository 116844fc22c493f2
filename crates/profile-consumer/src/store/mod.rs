//! ClickHouse storage of profiles for analysts: `vero.profiles` and
//! `vero.user_aliases` (schema in `schemas/clickhouse/0100_profiles.sql`). Table names
//! are passed unescaped (`insert_unescaped`): `insert` would quote `vero.profiles` as
//! one identifier.

pub mod clickhouse;
