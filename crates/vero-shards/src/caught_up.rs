//! Whether a replica has every part its shard committed: the condition under which
//! what it answers about a Replicated table (the sink's written offsets) may be
//! trusted after writes went to another replica.
//!
//! A replica is caught up on a table when, in `system.replicas`, it is writable (not
//! read-only, ZooKeeper session alive), it has pulled the whole replication log
//! (`log_pointer > log_max_index`; an empty log counts as pulled) and its queue is
//! empty (every GET_PART and MERGE done). Every INSERT acknowledged by any replica is
//! in that log before the acknowledgement, so a caught-up replica holds it.
//!
//! Why not `SYSTEM SYNC REPLICA`: on 18.16 it waits with no bound while a part can
//! only be fetched from a replica that is down (tried: `receive_timeout` does not end
//! it), and an HTTP client giving up does not cancel it, so every retry would leave a
//! query hanging on the server. Reading `system.replicas` is instant; [`wait`] polls
//! it up to a deadline and reports a retryable failure naming what is behind.

use std::time::{Duration, Instant};

use clickhouse::Client;
use serde::Deserialize;
use vero_clickhouse::Failure;

/// How often [`wait`] reads `system.replicas` again.
const POLL: Duration = Duration::from_millis(100);

#[derive(clickhouse::Row, Deserialize)]
struct Status {
    database: String,
    table: String,
    writable: u8,
    queue_size: u64,
    log_pointer: u64,
    log_max_index: u64,
    zookeeper_path: String,
}

const STATUS: &str = "SELECT database, table, toUInt8(NOT is_readonly AND NOT is_session_expired) AS writable, \
     toUInt64(queue_size) AS queue_size, toUInt64(log_pointer) AS log_pointer, \
     toUInt64(log_max_index) AS log_max_index, zookeeper_path \
     FROM system.replicas WHERE has(?, concat(database, '.', table))";

/// Wait until the replica at `client` is caught up on every table of `tables`
/// (`db.table`), at most `timeout`.
pub async fn wait(client: &Client, tables: &[&str], timeout: Duration) -> Result<(), Failure> {
    let deadline = Instant::now() + timeout;
    loop {
        let behind = behind(client, tables).await?;
        if behind.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Failure::Retryable(format!(
                "replica not caught up within {timeout:?} ({}): a part it needs may be only on a replica that is down",
                behind.join("; ")
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// What is not caught up yet, one description per table; empty when everything is.
async fn behind(client: &Client, tables: &[&str]) -> Result<Vec<String>, Failure> {
    let statuses: Vec<Status> = client.query(STATUS).bind(tables).fetch_all().await?;
    let mut behind = Vec::new();
    for table in tables {
        let Some(s) = statuses.iter().find(|s| format!("{}.{}", s.database, s.table) == *table) else {
            return Err(Failure::Operator(format!("{table} is not a Replicated table on this replica")));
        };
        let pulled = s.log_pointer > s.log_max_index || empty_log(client, s).await?;
        if s.writable == 0 {
            behind.push(format!("{table}: read-only"));
        } else if !pulled || s.queue_size > 0 {
            behind.push(format!(
                "{table}: queue {}, log pointer {} of max index {}",
                s.queue_size, s.log_pointer, s.log_max_index
            ));
        }
    }
    Ok(behind)
}

/// `log_pointer` and `log_max_index` are both 0 for an empty log and for a first
/// entry not pulled yet: only ZooKeeper tells them apart.
async fn empty_log(client: &Client, s: &Status) -> Result<bool, Failure> {
    if s.log_pointer != 0 || s.log_max_index != 0 {
        return Ok(false);
    }
    let path = format!("{}/log", s.zookeeper_path);
    let entries: u64 =
        client.query("SELECT count() FROM system.zookeeper WHERE path = ?").bind(path).fetch_one().await?;
    Ok(entries == 0)
}
