//! What changes for migrations in cluster mode (docs/design.md, "Cluster schema").
//!
//! * The files are `schemas/clickhouse/cluster/NNNN_name[.vMAJOR].sql`, one for each
//!   single-node migration (same id and name; [`super::embedded_for`] refuses a schema where one
//!   is missing), with `{cluster}` replaced by the configured cluster name. `{shard}` and
//!   `{replica}` stay: they are each server's own `<macros>`, expanded by the server.
//! * Every statement is `ON CLUSTER`: the node the service talks to puts it on the
//!   distributed DDL queue in ZooKeeper and every node of the cluster executes it,
//!   including nodes that are down now, when they come back. So one connection
//!   migrates the whole cluster, and a service needs no list of nodes. A statement
//!   returns once every node ran it, or fails after [`DDL_TIMEOUT_S`] (`TIMEOUT_EXCEEDED`,
//!   retryable: the migration is not recorded and the next start runs it again,
//!   idempotently).
//! * The record, `vero.schema_migrations`, is one replicated table with every node of
//!   the cluster as a replica (ZooKeeper path without `{shard}`), so a migration is
//!   recorded once for the whole cluster and every node reads the record locally.
//! * Repair is per node: the node the service talks to is checked against
//!   `system.tables`, and what it lacks is re-created `ON CLUSTER` (every other node
//!   already has it: `IF NOT EXISTS`). To repair another node, run `event-sink migrate`
//!   with `clickhouse.url` pointing at it.
//! * When the connected node already has the record table, nothing runs `ON CLUSTER`
//!   unless a migration is missing: a service starts while a node is down as long as
//!   the schema is complete.

use std::borrow::Cow;
use std::collections::BTreeSet;

use clickhouse::query::Query;
use clickhouse::Client;

use super::{parse_files, Migration};
use crate::error::Failure;

/// Seconds an `ON CLUSTER` statement waits for every node before it fails; below the
/// default HTTP request timeout (30 s), so the server's clear error arrives first.
pub const DDL_TIMEOUT_S: u32 = 20;

const CREATE_DATABASE: &str = "CREATE DATABASE IF NOT EXISTS vero ON CLUSTER {cluster}";
// Every node a replica of one table: `{shard}-{replica}` is unique in the cluster even
// where replica macros repeat across shards (`r1`, `r2` on every shard).
const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS vero.schema_migrations ON CLUSTER {cluster} \
     (id UInt32, name String, file String, applied_at DateTime('UTC') DEFAULT now()) \
     ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/vero/schema_migrations', '{shard}-{replica}') \
     ORDER BY id";

/// The cluster migrations of `files` for cluster `name`, checked against the
/// single-node `single` (same ids and names).
pub(super) fn migrations(
    name: &str,
    files: &[(&'static str, &'static str)],
    single: &[Migration],
) -> Result<Vec<Migration>, String> {
    check_name(name)?;
    let mut migrations = parse_files(files).map_err(|e| format!("schemas/clickhouse/cluster/{e}"))?;
    for expected in single {
        if !migrations.iter().any(|m| m.id == expected.id && m.name == expected.name) {
            return Err(format!(
                "migration {:04}_{} has no cluster variant: add schemas/clickhouse/cluster/{:04}_{}.sql",
                expected.id, expected.name, expected.id, expected.name
            ));
        }
    }
    if let Some(extra) = migrations.iter().find(|m| !single.iter().any(|s| s.id == m.id)) {
        return Err(format!("cluster migration {:04}_{} has no single-node file", extra.id, extra.name));
    }
    for migration in &mut migrations {
        for (_, _, sql) in &mut migration.variants {
            *sql = Cow::Owned(substitute(sql, name));
        }
        migration.cluster = Some(name.to_owned());
    }
    Ok(migrations)
}

/// `sql` with the cluster name in place of every `{cluster}`.
pub fn substitute(sql: &str, cluster: &str) -> String {
    sql.replace("{cluster}", cluster)
}

/// The name goes into SQL unquoted: only letters, digits and `_`, not starting with a
/// digit (what a `<remote_servers>` element name can be without quoting).
fn check_name(name: &str) -> Result<(), String> {
    let plain = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if name.is_empty() || !plain || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("clickhouse.cluster {name:?}: expected a plain identifier (letters, digits, _)"));
    }
    Ok(())
}

/// Create the database and the record table on every node, unless the connected node
/// (whose objects are `existing`) has the record table already.
pub(super) async fn bootstrap(client: &Client, cluster: &str, existing: &BTreeSet<String>) -> Result<(), Failure> {
    if existing.contains("vero.schema_migrations") {
        return Ok(());
    }
    for statement in [CREATE_DATABASE, CREATE_MIGRATIONS_TABLE] {
        ddl_settings(client.query_raw(&substitute(statement, cluster))).execute().await.map_err(Failure::from)?;
    }
    Ok(())
}

/// Refuse to migrate a node whose `vero.schema_migrations` belongs to the other
/// schema: a single-node server configured as a cluster node would otherwise keep its
/// plain `vero.events` under the Distributed name (`IF NOT EXISTS`), and a cluster
/// node migrated without `clickhouse.cluster` would look complete. Both are
/// deployment mistakes ([`Failure::Operator`]).
pub(super) async fn check_record_kind(client: &Client, cluster: Option<&str>) -> Result<(), Failure> {
    let engines: Vec<String> = client
        .query("SELECT engine FROM system.tables WHERE database = 'vero' AND name = 'schema_migrations'")
        .fetch_all()
        .await
        .map_err(Failure::from)?;
    let replicated = match engines.first() {
        None => return Ok(()),
        Some(engine) => engine.starts_with("Replicated"),
    };
    match cluster {
        Some(name) if !replicated => Err(Failure::Operator(format!(
            "clickhouse.cluster is {name:?} but this server has the single-node schema (a plain \
             vero.schema_migrations); moving to a cluster: docs/operations.md, \"ClickHouse cluster\""
        ))),
        None if replicated => Err(Failure::Operator(
            "this server has the cluster schema (a replicated vero.schema_migrations): set clickhouse.cluster".into(),
        )),
        _ => Ok(()),
    }
}

/// Settings of every `ON CLUSTER` statement: a bounded wait for the nodes, and the
/// answer only at the end, so a node's error is an HTTP error, never text after a
/// `200` whose body the client discards.
pub(crate) fn ddl_settings(query: Query) -> Query {
    query.with_setting("distributed_ddl_task_timeout", DDL_TIMEOUT_S.to_string()).with_setting("wait_end_of_query", "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names_are_plain_identifiers() {
        assert!(check_name("vero_cluster").is_ok() && check_name("c2").is_ok());
        for bad in ["", "2c", "a b", "x'; DROP", "a-b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_single_node_migration_needs_a_cluster_file_and_back() {
        let single = parse_files(&[("0001_a.sql", "x"), ("0002_b.sql", "y")]).unwrap();
        let err = migrations("c", &[("0001_a.sql", "ON CLUSTER {cluster}")], &single).unwrap_err();
        assert!(err.contains("0002_b") && err.contains("cluster/0002_b.sql"), "{err}");
        let err = migrations("c", &[("0001_a.sql", ""), ("0002_b.sql", ""), ("0003_c.sql", "")], &single);
        assert!(err.unwrap_err().contains("0003_c"));
        let ok = migrations("c", &[("0001_a.sql", "ON CLUSTER {cluster} {shard}"), ("0002_b.sql", "")], &single);
        let ok = ok.unwrap();
        let current = crate::ServerVersion { major: 25, minor: 1 };
        assert_eq!(ok[0].variant_for(current).1, "ON CLUSTER c {shard}");
        assert_eq!(ok[0].cluster.as_deref(), Some("c"));
    }
}
