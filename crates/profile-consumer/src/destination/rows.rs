//! Writing profiles to ClickHouse.
//!
//! `vero.profiles` is a `ReplacingMergeTree(version)` ordered by (project, user_id):
//! every write is a full row with a higher version, so `FINAL` (or `argMax(.., version)`)
//! shows the latest profile, and re-writing the same profile after a redelivery only
//! adds a row that collapses. A deletion writes a `deleted = 1` row (so `FINAL ... WHERE
//! deleted = 0` hides the profile at once) and submits a mutation that erases the
//! older rows of that profile for good. Reidentifies add a row to `vero.user_aliases`.

use crate::profile::{ProfileKey, ProfileState};
use clickhouse::{Client, Row};
use serde::Serialize;
use vero_clickhouse::Failure;

#[derive(Row, Serialize)]
pub struct ProfileRow {
    pub project: String,
    pub user_id: String,
    pub email: Option<String>,
    pub attributes: String,
    pub tags: Vec<String>,
    pub subscribed: u8,
    pub subscription_changed_at_ms: Option<i64>,
    pub first_seen_ms: Option<i64>,
    pub last_seen_ms: Option<i64>,
    pub event_count: u64,
    pub last_event_name: Option<String>,
    pub previous_ids: Vec<String>,
    pub deleted: u8,
    pub version: u64,
}

impl ProfileRow {
    pub fn live(profile: &ProfileState) -> Self {
        Self {
            project: profile.key.project.clone(),
            user_id: profile.key.user_id.clone(),
            email: profile.email().map(str::to_owned),
            attributes: profile.attributes_json(),
            tags: profile.tags.iter().cloned().collect(),
            subscribed: u8::from(profile.subscribed),
            subscription_changed_at_ms: profile.subscription_changed_at,
            first_seen_ms: profile.first_seen,
            last_seen_ms: profile.last_seen,
            event_count: u64::try_from(profile.event_count).unwrap_or(0),
            last_event_name: profile.last_event.as_ref().map(|(name, _)| name.clone()),
            previous_ids: profile.previous_ids.clone(),
            deleted: 0,
            version: u64::try_from(profile.version).unwrap_or(0),
        }
    }

    /// The marker row of a deleted profile: no personal data, only the key.
    pub fn deleted(key: &ProfileKey, version: i64) -> Self {
        let mut row = Self::live(&ProfileState::new(key.clone()));
        row.deleted = 1;
        row.version = u64::try_from(version).unwrap_or(0);
        row
    }
}

#[derive(Debug, Clone, Row, Serialize)]
pub struct AliasRow {
    pub project: String,
    pub old_id: String,
    pub new_id: String,
    pub at_ms: i64,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
}

/// A profile whose rows up to `version` must be erased.
#[derive(Debug, Clone)]
pub struct Erasure {
    pub key: ProfileKey,
    pub version: i64,
}

/// Quote a string literal for ClickHouse SQL (backslash and quote escaped).
fn literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Insert `rows` into `table` (`vero.profiles`, or a shard's `vero.profiles_local`).
pub async fn insert_profiles(client: &Client, table: &str, rows: &[&ProfileRow]) -> Result<(), Failure> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut insert = client.insert_unescaped::<ProfileRow>(table).await?;
    for row in rows {
        insert.write(row).await?;
    }
    insert.end().await?;
    Ok(())
}

/// Insert `rows` into `table` (`vero.user_aliases`, or a shard's `_local` table).
pub async fn insert_aliases(client: &Client, table: &str, rows: &[&AliasRow]) -> Result<(), Failure> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut insert = client.insert_unescaped::<AliasRow>(table).await?;
    for row in rows {
        insert.write(row).await?;
    }
    insert.end().await?;
    Ok(())
}

impl Erasure {
    /// This erasure's part of the mutation's condition.
    pub fn condition(&self) -> String {
        format!(
            "(project = {} AND user_id = {} AND version < {})",
            literal(&self.key.project),
            literal(&self.key.user_id),
            self.version
        )
    }
}

/// The mutation's text without its conditions: what a chunk of them is added to (with
/// the longer of the two table names, `vero.profiles_local` of the cluster schema).
pub const ERASE_STATEMENT_BYTES: usize = "ALTER TABLE vero.profiles_local DELETE WHERE deleted = 0 AND ()".len();

/// One mutation erasing every live row older than each deletion (the `deleted = 1`
/// marker rows stay so `FINAL` keeps hiding the profile until a newer row comes).
/// The statement grows with the ids: callers keep it below the server's
/// `max_query_size` (a statement above it is refused as a syntax error, code 62).
pub async fn erase(client: &Client, table: &str, erasures: &[&Erasure]) -> Result<(), Failure> {
    if erasures.is_empty() {
        return Ok(());
    }
    let condition = erasures.iter().map(|e| e.condition()).collect::<Vec<_>>().join(" OR ");
    // query_raw: user ids may contain `?`, which `query` would treat as a bind marker.
    client.query_raw(&format!("ALTER TABLE {table} DELETE WHERE deleted = 0 AND ({condition})")).execute().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_escaped() {
        assert_eq!(literal(r"a'b\c"), r"'a\'b\\c'");
    }
}
