//! Ordered, idempotent schema migrations.
//!
//! Files in `schemas/clickhouse/` (embedded at build time, see `build.rs`) are named
//! `NNNN_name.sql`, the variant for current ClickHouse, optionally with
//! `NNNN_name.vMAJOR.sql` variants for servers whose major version is at most
//! `MAJOR` (the smallest fitting variant wins). A file holds one or more statements
//! separated by `;`; every statement must be idempotent (`IF NOT EXISTS`) because a
//! crash between applying and recording a migration re-applies it, and two services
//! starting at once may both apply it.
//!
//! ClickHouse up to 18.x has no `ADD COLUMN IF NOT EXISTS`: there a variant writes
//! `ALTER TABLE db.t ADD COLUMN c ...` and [`apply`] skips that statement when
//! `system.columns` already has the column ([`added_column`]), or when it fails
//! because the column appeared meanwhile (two services migrating at once), which makes
//! it idempotent too.
//!
//! Applied migrations are recorded in `vero.schema_migrations` (id, name, variant file,
//! time); [`apply`] runs the ones not recorded yet, in id order, and returns what it
//! did. Any service (or `event-sink migrate`) calls the same [`apply`].
//!
//! Repair: a record only says a migration ran once, not that its objects still exist
//! (`DROP TABLE vero.events` leaves the record behind). So [`apply`] also checks every
//! object a recorded migration creates (`CREATE ... IF NOT EXISTS <name>`) against
//! `system.tables`; from the first recorded migration with a missing object on, every
//! migration is run again in order (its statements are idempotent, and later
//! migrations may alter what the earlier one re-created). Those come back in the
//! result with [`Applied::repaired`] set. A service starting, or `event-sink migrate`,
//! therefore re-creates whatever is missing.
//!
//! Cluster mode ([`embedded_for`] with a cluster name, i.e. `clickhouse.cluster` set):
//! the migrations are those of `schemas/clickhouse/cluster/`, which carry the same ids
//! and names, and [`apply`] (the same function) runs them `ON CLUSTER`; see
//! [`cluster`] for what changes.

pub mod cluster;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use clickhouse::Client;

use crate::error::Failure;
use crate::version::ServerVersion;
use crate::DATABASE;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_migrations.rs"));
}

/// One migration with its variants.
#[derive(Debug, Clone)]
pub struct Migration {
    pub id: u32,
    pub name: String,
    /// `(max major version, file, sql)`, `None` = current ClickHouse (the default file).
    variants: Vec<(Option<u32>, &'static str, Cow<'static, str>)>,
    /// The cluster this migration runs `ON CLUSTER` of; `None` for the single-node schema.
    cluster: Option<String>,
}

impl Migration {
    /// The file and SQL to run on `version` (in cluster mode with the cluster's name in
    /// place of `{cluster}`).
    pub fn variant_for(&self, version: ServerVersion) -> (&'static str, &str) {
        let fitting = self
            .variants
            .iter()
            .filter_map(|(max, file, sql)| max.filter(|max| version.major <= *max).map(|max| (max, file, sql)))
            .min_by_key(|(max, _, _)| *max);
        match fitting {
            Some((_, file, sql)) => (file, sql),
            None => {
                let (_, file, sql) =
                    self.variants.iter().find(|(max, _, _)| max.is_none()).expect("checked in parse_files");
                (file, sql)
            }
        }
    }
}

/// All single-node migrations embedded in this build, in id order.
pub fn embedded() -> Result<Vec<Migration>, String> {
    parse_files(embedded::EMBEDDED)
}

/// The migrations for the `clickhouse.cluster` setting: [`embedded`] for `None`, else
/// the cluster schema of `schemas/clickhouse/cluster/` for that cluster. An error when
/// the name is not a plain identifier, or when a single-node migration has no cluster
/// counterpart (a cluster would silently lack its tables).
pub fn embedded_for(cluster: Option<&str>) -> Result<Vec<Migration>, String> {
    match cluster {
        None => embedded(),
        Some(name) => cluster::migrations(name, embedded::EMBEDDED_CLUSTER, &embedded()?),
    }
}

/// Group `(file name, sql)` pairs into migrations; names that do not follow the
/// convention, and migrations without a default variant, are errors.
pub fn parse_files(files: &[(&'static str, &'static str)]) -> Result<Vec<Migration>, String> {
    let mut by_id: BTreeMap<u32, Migration> = BTreeMap::new();
    for (file, sql) in files {
        let stem = file.strip_suffix(".sql").ok_or_else(|| format!("{file}: not a .sql file"))?;
        let (stem, max_major) = match stem.rsplit_once(".v") {
            Some((base, major)) => {
                (base, Some(major.parse::<u32>().map_err(|_| format!("{file}: variant suffix must be .vMAJOR.sql"))?))
            }
            None => (stem, None),
        };
        let (id, name) = stem.split_once('_').ok_or_else(|| format!("{file}: expected NNNN_name.sql"))?;
        let id: u32 = id.parse().map_err(|_| format!("{file}: expected a numeric prefix"))?;
        let migration = by_id.entry(id).or_insert_with(|| Migration {
            id,
            name: name.to_owned(),
            variants: Vec::new(),
            cluster: None,
        });
        if migration.name != name {
            return Err(format!("{file}: migration {id} is already named {}", migration.name));
        }
        migration.variants.push((max_major, file, Cow::Borrowed(*sql)));
    }
    for migration in by_id.values() {
        if !migration.variants.iter().any(|(max, _, _)| max.is_none()) {
            return Err(format!(
                "migration {:04}_{} has no default (current ClickHouse) file",
                migration.id, migration.name
            ));
        }
    }
    Ok(by_id.into_values().collect())
}

/// Split a file into statements at `;`, ignoring `;` inside quotes and `--` comments;
/// comment-only pieces are dropped.
pub fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = sql.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                current.push(c);
                if c == '\\' {
                    if let Some(next) = chars.next() {
                        current.push(next);
                    }
                } else if c == q {
                    quote = None;
                }
            }
            None if c == '-' && chars.peek() == Some(&'-') => {
                // Skip the comment up to the end of the line.
                for c in chars.by_ref() {
                    if c == '\n' {
                        current.push('\n');
                        break;
                    }
                }
            }
            None if c == ';' => out.push(std::mem::take(&mut current)),
            None => {
                if matches!(c, '\'' | '"' | '`') {
                    quote = Some(c);
                }
                current.push(c);
            }
        }
    }
    out.push(current);
    out.into_iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub id: u32,
    pub name: String,
    pub file: &'static str,
    /// The migration was recorded already and ran again because an object it creates
    /// was missing (or an earlier migration was re-run).
    pub repaired: bool,
}

/// `db.name` of every table, view or database a statement creates with
/// `CREATE [MATERIALIZED] TABLE|VIEW|DATABASE IF NOT EXISTS <name>`; databases as `db`.
pub fn created_objects(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    for statement in statements(sql) {
        let words: Vec<&str> = statement.split_whitespace().take(8).collect();
        let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
        let mut i = 0;
        if upper.get(i).map(String::as_str) != Some("CREATE") {
            continue;
        }
        i += 1;
        if upper.get(i).map(String::as_str) == Some("MATERIALIZED") {
            i += 1;
        }
        if !matches!(upper.get(i).map(String::as_str), Some("TABLE" | "VIEW" | "DATABASE")) {
            continue;
        }
        i += 1;
        if upper.get(i..i + 3).is_some_and(|w| w == ["IF", "NOT", "EXISTS"]) {
            i += 3;
        }
        if let Some(name) = words.get(i) {
            let name = name.split('(').next().unwrap_or_default().trim_matches('`');
            if !name.is_empty() {
                out.push(name.to_owned());
            }
        }
    }
    out
}

/// `(db, table, column)` of a statement `ALTER TABLE db.table ADD COLUMN column ...`
/// without `IF NOT EXISTS` (the 18.x spelling); `None` for any other statement.
pub fn added_column(statement: &str) -> Option<(String, String, String)> {
    let words: Vec<&str> = statement.split_whitespace().take(6).collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    if upper.len() < 6 || upper[..2] != ["ALTER", "TABLE"] || upper[3..5] != ["ADD", "COLUMN"] || upper[5] == "IF" {
        return None;
    }
    let name = words[2].replace('`', "");
    let (db, table) = name.split_once('.')?;
    Some((db.to_owned(), table.to_owned(), words[5].replace('`', "")))
}

async fn column_exists(client: &Client, (db, table, column): &(String, String, String)) -> Result<bool, Failure> {
    let found: u64 = client
        .query("SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = ?")
        .bind(db.as_str())
        .bind(table.as_str())
        .bind(column.as_str())
        .fetch_one()
        .await
        .map_err(Failure::from)?;
    Ok(found > 0)
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct ExistingTable {
    database: String,
    name: String,
}

/// `db.name` of every table and view that exists, plus every database name.
async fn existing_objects(client: &Client) -> Result<BTreeSet<String>, Failure> {
    let tables: Vec<ExistingTable> =
        client.query("SELECT database, name FROM system.tables").fetch_all().await.map_err(Failure::from)?;
    let databases: Vec<String> =
        client.query("SELECT name FROM system.databases").fetch_all().await.map_err(Failure::from)?;
    Ok(tables.into_iter().map(|t| format!("{}.{}", t.database, t.name)).chain(databases).collect())
}

const CREATE_DATABASE: &str = "CREATE DATABASE IF NOT EXISTS vero";
// ReplacingMergeTree: two services recording the same migration at once leave one row.
const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS vero.schema_migrations \
     (id UInt32, name String, file String, applied_at DateTime('UTC') DEFAULT now()) \
     ENGINE = ReplacingMergeTree ORDER BY id";

#[derive(clickhouse::Row, serde::Serialize)]
struct MigrationRecord<'a> {
    id: u32,
    name: &'a str,
    file: &'a str,
}

/// Ids recorded in `vero.schema_migrations`.
pub async fn applied_ids(client: &Client) -> Result<BTreeSet<u32>, Failure> {
    let ids: Vec<u32> = client
        .query("SELECT DISTINCT id FROM vero.schema_migrations ORDER BY id")
        .fetch_all()
        .await
        .map_err(Failure::from)?;
    Ok(ids.into_iter().collect())
}

/// Apply every migration in `migrations` not yet recorded, in order, choosing each
/// one's variant for `version`, and re-run recorded ones from the first whose objects
/// are missing (see the module docs). Stops at the first failing statement.
///
/// Migrations of [`embedded_for`] with a cluster run `ON CLUSTER` ([`cluster`]).
pub async fn apply(client: &Client, version: ServerVersion, migrations: &[Migration]) -> Result<Vec<Applied>, Failure> {
    debug_assert_eq!(DATABASE, "vero", "the statements above name the database");
    let on_cluster = migrations.first().and_then(|m| m.cluster.as_deref());
    if migrations.iter().any(|m| m.cluster.as_deref() != on_cluster) {
        return Err(Failure::Invalid("migrations of the single-node and the cluster schema mixed".into()));
    }
    cluster::check_record_kind(client, on_cluster).await?;
    match on_cluster {
        None => {
            client.query(CREATE_DATABASE).execute().await.map_err(Failure::from)?;
            client.query(CREATE_MIGRATIONS_TABLE).execute().await.map_err(Failure::from)?;
        }
        Some(name) => cluster::bootstrap(client, name, &existing_objects(client).await?).await?,
    }
    let done = applied_ids(client).await?;
    let existing = existing_objects(client).await?;
    // Index of the first recorded migration whose objects are not all there.
    let repair_from = migrations.iter().position(|m| {
        done.contains(&m.id) && created_objects(m.variant_for(version).1).iter().any(|o| !existing.contains(o))
    });
    let mut applied = Vec::new();
    for (index, migration) in migrations.iter().enumerate() {
        let recorded = done.contains(&migration.id);
        let repaired = recorded && repair_from.is_some_and(|from| index >= from);
        if recorded && !repaired {
            continue;
        }
        let (file, sql) = migration.variant_for(version);
        if repaired {
            tracing::warn!(id = migration.id, file, server = %version, "re-running a ClickHouse migration whose objects are missing");
        } else {
            tracing::info!(id = migration.id, file, server = %version, "applying ClickHouse migration");
        }
        for statement in statements(sql) {
            let added = added_column(&statement);
            if let Some(column) = &added {
                if column_exists(client, column).await? {
                    continue;
                }
            }
            // `query_raw`: the SQL is ours and may contain `?`, which `query` would bind.
            let mut query = client.query_raw(&statement);
            if on_cluster.is_some() {
                query = cluster::ddl_settings(query);
            }
            if let Err(e) = query.execute().await {
                // Another service starting at the same time added the column meanwhile.
                if let Some(column) = &added {
                    if column_exists(client, column).await? {
                        continue;
                    }
                }
                return Err(match Failure::from(e) {
                    Failure::Invalid(m) => Failure::Invalid(format!("{file}: {m}")),
                    other => other,
                });
            }
        }
        if !recorded {
            let mut insert = client
                .insert_unescaped::<MigrationRecord<'_>>("vero.schema_migrations")
                .await
                .map_err(Failure::from)?;
            insert
                .write(&MigrationRecord { id: migration.id, name: &migration.name, file })
                .await
                .map_err(Failure::from)?;
            insert.end().await.map_err(Failure::from)?;
        }
        applied.push(Applied { id: migration.id, name: migration.name.clone(), file, repaired });
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_are_chosen_by_server_major_version() {
        let files = [("0001_a.sql", "new"), ("0001_a.v18.sql", "v18"), ("0001_a.v21.sql", "v21"), ("0002_b.sql", "b")];
        let migrations = parse_files(&files).unwrap();
        assert_eq!(migrations.len(), 2);
        let pick = |major| migrations[0].variant_for(ServerVersion { major, minor: 0 }).1;
        assert_eq!((pick(18), pick(19), pick(21), pick(22), pick(25)), ("v18", "v21", "v21", "new", "new"));
        assert_eq!(migrations[1].variant_for(ServerVersion { major: 18, minor: 16 }).1, "b");
    }

    #[test]
    fn bad_names_are_rejected() {
        assert!(parse_files(&[("a.sql", "")]).unwrap_err().contains("NNNN_name"));
        assert!(parse_files(&[("0001_a.v18.sql", "")]).unwrap_err().contains("no default"));
        assert!(parse_files(&[("0001_a.vx.sql", "")]).unwrap_err().contains("vMAJOR"));
    }

    #[test]
    fn statements_split_on_semicolons_outside_quotes_and_comments() {
        let sql = "-- a comment; with a semicolon\nCREATE TABLE t (s String DEFAULT 'a;b');\n\nSELECT 1;\n-- end\n";
        assert_eq!(statements(sql), vec!["CREATE TABLE t (s String DEFAULT 'a;b')", "SELECT 1"]);
    }

    #[test]
    fn created_objects_are_found_in_create_statements() {
        let sql = "CREATE TABLE IF NOT EXISTS vero.events\n(a UInt8) ENGINE = Log;\n\
                   create materialized view if not exists vero.mv TO vero.t AS SELECT 1;\n\
                   CREATE VIEW vero.v AS SELECT 1; CREATE DATABASE IF NOT EXISTS vero;\n\
                   ALTER TABLE vero.events ADD COLUMN b UInt8; CREATE TABLE IF NOT EXISTS vero.x(a UInt8) ENGINE = Log";
        assert_eq!(created_objects(sql), ["vero.events", "vero.mv", "vero.v", "vero", "vero.x"]);
        let events = embedded().unwrap().into_iter().find(|m| m.id == 1).unwrap();
        let objects = created_objects(events.variant_for(ServerVersion { major: 18, minor: 16 }).1);
        assert!(objects.contains(&"vero.events".to_owned()), "{objects:?}");
    }

    #[test]
    fn add_column_without_if_not_exists_is_recognised() {
        assert_eq!(
            added_column("ALTER TABLE vero.events ADD COLUMN request_key UUID"),
            Some(("vero".into(), "events".into(), "request_key".into()))
        );
        assert_eq!(
            added_column("alter table `vero`.`events`\n add column `k` UInt8 DEFAULT 1"),
            Some(("vero".into(), "events".into(), "k".into()))
        );
        assert_eq!(
            added_column("alter table vero.t add column `k` UInt8"),
            Some(("vero".into(), "t".into(), "k".into()))
        );
        assert_eq!(added_column("ALTER TABLE vero.events ADD COLUMN IF NOT EXISTS k UUID"), None);
        assert_eq!(added_column("ALTER TABLE vero.events DROP COLUMN k"), None);
        assert_eq!(added_column("CREATE TABLE IF NOT EXISTS vero.x (a UInt8) ENGINE = Log"), None);
    }

    #[test]
    fn embedded_schema_parses_and_every_migration_has_statements() {
        let migrations = embedded().unwrap();
        assert!(!migrations.is_empty());
        for migration in &migrations {
            for version in [ServerVersion { major: 18, minor: 16 }, ServerVersion { major: 25, minor: 1 }] {
                assert!(!statements(migration.variant_for(version).1).is_empty(), "{migration:?}");
            }
        }
    }
}
