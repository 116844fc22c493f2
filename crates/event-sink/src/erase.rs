//! GDPR deletes (`users/delete`): erasing a user's events from `vero.events` with a
//! ClickHouse mutation (`ALTER TABLE vero.events DELETE WHERE ...`, 18.16 and current).
//!
//! What a delete at partition `p`, offset `o` erases: every row of that project and
//! user id **except** the rows that come after it on its own partition:
//! `project = ? AND user_id = ? AND (kafka_partition != p OR kafka_offset < o)`.
//! Events after the delete belong to a new user with the same id and survive, however
//! often the mutation runs and whenever it runs relative to their INSERT:
//!
//! * the rows before the delete are inserted before the mutation is submitted (the
//!   pipeline writes a batch's rows first), and a mutation covers every part that
//!   exists when it is submitted;
//! * a redelivery re-inserts the earlier rows and re-submits the same mutation, which
//!   erases them again and still spares the later rows (they keep their offsets), even
//!   if those were inserted before the crash; so the end state is the same;
//! * a late mutation from an instance that lost the partition in a rebalance cannot
//!   touch the new owner's later rows either.
//!
//! Rows of the user on *other* partitions (only possible after the partition count
//! changed, when keys move) have no order relative to the delete and are erased too:
//! for a GDPR erasure, erasing more is the safe side.
//!
//! Submission is retried with backoff while ClickHouse is unavailable or refuses it for
//! a reason an operator must fix (credentials, grants, missing table: see
//! `vero_clickhouse::Failure`); a mutation ClickHouse refuses as invalid is retried per
//! delete, and the refused deletes are returned (the caller sends them to the DLQ, so
//! an operator sees the erasure did not happen).
//! Values are bound with the client's `?` binding (escaped), never formatted in.
//!
//! **Identities from before a reidentify.** A delete of user `u` also erases what the
//! user was known as before: every id `a` with a `vero.user_aliases` row `a → u`
//! (written by the profile consumer on `users/reidentify`), followed through chains
//! (`a → b → u`) up to [`MAX_ALIAS_DEPTH`] steps. All events under those ids are
//! erased (`project = ? AND has(?, user_id)`), and so is every alias row linking any
//! of the ids (`has(?, old_id) OR has(?, new_id)`). The alias rows are read when the
//! delete is processed: a reidentify the profile consumer records *after* that (it
//! lags, or the reidentify sits on another partition behind the delete) is not
//! covered; sending the delete again covers it.
//!
//! **On a cluster** (`clickhouse.cluster`) every mutation is submitted once per shard,
//! to the shard's `_local` table on its current replica (failing over like INSERTs,
//! [`crate::route`]); ZooKeeper replicates it to the shard's other replicas, and it
//! covers every part committed in the shard when it is submitted, also parts the
//! replica it was sent to has not fetched yet (block numbers are allocated in
//! ZooKeeper). A shard that is down holds the delete (retried with backoff) and with
//! it the batch. Alias rows are read through the Distributed `vero.user_aliases` on the
//! first shard's current replica (failing over like writes).
//!
//! **Completion.** A mutation runs in the background after ClickHouse accepted it.
//! [`watch_pending`] polls `system.mutations` and exports the number not finished
//! (`is_done = 0`) in the `vero` database as `vero_sink_erasures_pending`: an erasure
//! is complete once that count no longer includes it (0 when nothing is pending).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use clickhouse::query::Query;
use clickhouse::Client;
use tokio_util::sync::CancellationToken;
use vero_clickhouse::Failure;
use vero_model::UserCommand;

use crate::config::RetrySettings;
use crate::insert::Abandoned;
use crate::metrics::Metrics;
use crate::route::{Destination, Place};
use vero_service::retry::{Class, Retry, Visibility};

/// A `Delete` command and its position in the topic.
#[derive(Debug, Clone)]
pub struct UserDelete {
    pub command: UserCommand,
    pub partition: i32,
    pub offset: i64,
}

/// One delete's condition; `?`s bound in order: project, user id, partition, offset.
const CONDITION: &str = "(project = ? AND user_id = ? AND (kafka_partition != ? OR kafka_offset < ?))";
/// Bound on one statement's size, well under ClickHouse's default `max_query_size`
/// (256 KiB), which also limits ALTER statements.
const MAX_STATEMENT_BYTES: usize = 64 * 1024;

/// How many reidentify steps back a delete follows `vero.user_aliases`.
pub const MAX_ALIAS_DEPTH: usize = 16;
/// The alias table the profile consumer records reidentifies in (read here; on a
/// cluster the Distributed table over every shard).
pub const ALIASES: &str = crate::route::SINGLE.aliases;
/// How often [`watch_pending`] reads `system.mutations`.
pub const PENDING_POLL: Duration = Duration::from_secs(5);
/// Not-finished mutations in the `vero` database.
pub const PENDING_QUERY: &str = "SELECT count() FROM system.mutations WHERE database = 'vero' AND is_done = 0";

/// Keep `vero_sink_erasures_pending` current until `cancel`: read `system.mutations`
/// every [`PENDING_POLL`] (on a cluster: on one replica of every shard, summed); a
/// failed read leaves the last value (and is logged).
pub async fn watch_pending(destination: Destination, metrics: Metrics, cancel: CancellationToken) {
    loop {
        let mut pending = Some(0u64);
        for place in destination.everywhere() {
            let read = place.attempt(|client| {
                let query = client.query(PENDING_QUERY);
                async move { query.fetch_one::<u64>().await.map_err(Failure::from) }
            });
            match read.await {
                Ok(count) => pending = pending.map(|sum| sum + count),
                Err(error) => {
                    let shard = place.label();
                    tracing::warn!(error = %error, %shard, "cannot read system.mutations for vero_sink_erasures_pending");
                    pending = None;
                }
            }
        }
        if let Some(pending) = pending {
            metrics.erasures_pending.set(pending as i64);
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(PENDING_POLL) => {}
        }
    }
}

/// The mutation of `table` erasing what every delete of `deletes` covers (`deletes`
/// non-empty).
pub fn mutation(client: &Client, table: &str, deletes: &[&UserDelete]) -> Query {
    let condition = vec![CONDITION; deletes.len()].join(" OR ");
    let mut query = client.query(&format!("ALTER TABLE {table} DELETE WHERE {condition}"));
    for delete in deletes {
        query = query
            .bind(&delete.command.project)
            .bind(&delete.command.user_id)
            .bind(delete.partition)
            .bind(delete.offset);
    }
    query
}

/// Deletes that need a mutation, grouped into statements of bounded size. A later
/// delete of the same user on the same partition covers an earlier one (its offset
/// bound is higher), so only the latest of those is kept. Items are indexes into
/// `deletes`.
pub fn statements(deletes: &[UserDelete]) -> Vec<Vec<usize>> {
    let mut latest: BTreeMap<(&str, &str, i32), usize> = BTreeMap::new();
    for (index, d) in deletes.iter().enumerate() {
        let slot = latest.entry((&d.command.project, &d.command.user_id, d.partition)).or_insert(index);
        if deletes[*slot].offset < d.offset {
            *slot = index;
        }
    }
    let mut kept: Vec<usize> = latest.into_values().collect();
    kept.sort_unstable();
    let mut statements: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0;
    for index in kept {
        let command = &deletes[index].command;
        // Escaping can at most double a value; the rest is the condition text.
        let size = CONDITION.len() + 2 * (command.project.len() + command.user_id.len()) + 48;
        match statements.last_mut() {
            Some(current) if bytes + size <= MAX_STATEMENT_BYTES => {
                current.push(index);
                bytes += size;
            }
            _ => {
                statements.push(vec![index]);
                bytes = size;
            }
        }
    }
    statements
}

pub struct Eraser {
    /// Where mutations go (the server, or every shard) and alias lookups are read.
    destination: Destination,
    retry: RetrySettings,
    timeout: Duration,
    metrics: Metrics,
    /// Where failures show (`/readyz`, `needs_operator`, failures by class).
    visibility: Visibility,
}

impl Eraser {
    pub fn new(
        destination: Destination,
        retry: RetrySettings,
        timeout: Duration,
        metrics: Metrics,
        visibility: Visibility,
    ) -> Self {
        Self { destination, retry, timeout, metrics, visibility }
    }

    /// Submit the mutations for `deletes`; returns `(index, reason)` of every delete
    /// ClickHouse refused. Once this returns, every other delete's mutation was
    /// accepted by the server (it then runs in the background).
    pub async fn erase(
        &self,
        deletes: &[UserDelete],
        cancel: &CancellationToken,
    ) -> Result<Vec<(usize, String)>, Abandoned> {
        let mut refused = Vec::new();
        for statement in statements(deletes) {
            let group: Vec<&UserDelete> = statement.iter().map(|&i| &deletes[i]).collect();
            let Err(reason) = self.submit_with_retry(&group, cancel).await? else { continue };
            if statement.len() == 1 {
                refused.push((statement[0], reason));
                continue;
            }
            tracing::warn!(deletes = statement.len(), %reason, "ClickHouse refused a delete mutation; retrying each delete alone");
            for index in statement {
                if let Err(reason) = self.submit_with_retry(&[&deletes[index]], cancel).await? {
                    refused.push((index, reason));
                }
            }
        }
        // What the users were known as before a reidentify, once per user.
        let mut users = BTreeSet::new();
        for (index, delete) in deletes.iter().enumerate() {
            let user = (delete.command.project.as_str(), delete.command.user_id.as_str());
            if refused.iter().any(|(i, _)| *i == index) || !users.insert(user) {
                continue;
            }
            if let Err(reason) = self.erase_aliases(user.0, user.1, cancel).await? {
                refused.push((index, reason));
            }
        }
        // Subsumed deletes (see [`statements`]) are applied by their successor's mutation.
        self.metrics.users_deleted.inc_by((deletes.len() - refused.len()) as u64);
        Ok(refused)
    }

    /// Erase the events under every id `user_id` had before a reidentify and the alias
    /// rows linking them (module docs). `Ok(Err(reason))`: ClickHouse refused it.
    async fn erase_aliases(
        &self,
        project: &str,
        user_id: &str,
        cancel: &CancellationToken,
    ) -> Result<Result<(), String>, Abandoned> {
        let mut ids: BTreeSet<String> = BTreeSet::from([user_id.to_owned()]);
        let mut frontier = vec![user_id.to_owned()];
        let mut linked = false;
        for _ in 0..MAX_ALIAS_DEPTH {
            let sql = format!("SELECT DISTINCT old_id FROM {ALIASES} WHERE project = ? AND has(?, new_id)");
            let read = self
                .with_retry(
                    self.destination.reader(),
                    "alias lookup",
                    |client| client.query(&sql).bind(project).bind(&frontier).fetch_all::<String>(),
                    cancel,
                )
                .await?;
            let older = match read {
                Ok(older) => older,
                Err(reason) => return Ok(Err(reason)),
            };
            linked |= !older.is_empty();
            frontier = older.into_iter().filter(|id| ids.insert(id.clone())).collect();
            if frontier.is_empty() {
                break;
            }
        }
        let all: Vec<String> = ids.iter().cloned().collect();
        if !linked {
            // `user_id` may still be the *old* side of an alias (reidentified away).
            let sql = format!("SELECT count() FROM {ALIASES} WHERE project = ? AND old_id = ?");
            let read = self
                .with_retry(
                    self.destination.reader(),
                    "alias lookup",
                    |client| client.query(&sql).bind(project).bind(user_id).fetch_one::<u64>(),
                    cancel,
                )
                .await?;
            match read {
                Ok(0) => return Ok(Ok(())),
                Ok(_) => {}
                Err(reason) => return Ok(Err(reason)),
            }
        }
        let previous: Vec<&String> = ids.iter().filter(|id| id.as_str() != user_id).collect();
        if !previous.is_empty() {
            let sql = format!(
                "ALTER TABLE {} DELETE WHERE project = ? AND has(?, user_id)",
                self.destination.tables().events
            );
            let erased = self
                .everywhere(
                    "delete mutation",
                    |client| client.query(&sql).bind(project).bind(&previous).execute(),
                    cancel,
                )
                .await?;
            if let Err(reason) = erased {
                return Ok(Err(reason));
            }
            self.metrics.delete_mutations.inc();
        }
        let sql = format!(
            "ALTER TABLE {} DELETE WHERE project = ? AND (has(?, old_id) OR has(?, new_id))",
            self.destination.tables().aliases
        );
        let erased = self
            .everywhere(
                "alias delete mutation",
                |client| client.query(&sql).bind(project).bind(&all).bind(&all).execute(),
                cancel,
            )
            .await?;
        if let Err(reason) = erased {
            return Ok(Err(reason));
        }
        self.metrics.delete_mutations.inc();
        tracing::info!(
            project = %project,
            previous_ids = previous.len(),
            "user delete submitted for the ids the user had before a reidentify, and their alias rows"
        );
        Ok(Ok(()))
    }

    /// One mutation, retried while the failure is retryable. `Ok(Err(reason))` is a
    /// refusal. Re-submitting after a lost response is harmless: the same mutation
    /// erases the same rows.
    async fn submit_with_retry(
        &self,
        deletes: &[&UserDelete],
        cancel: &CancellationToken,
    ) -> Result<Result<(), String>, Abandoned> {
        let table = self.destination.tables().events;
        let submitted =
            self.everywhere("delete mutation", |client| mutation(client, table, deletes).execute(), cancel).await?;
        if submitted.is_ok() {
            self.metrics.delete_mutations.inc();
            for d in deletes {
                tracing::info!(
                    project = %d.command.project,
                    partition = d.partition,
                    offset = d.offset,
                    "user delete submitted: the user's earlier events are being erased"
                );
            }
        }
        Ok(submitted)
    }

    /// Run the mutation `operation` on every place of the destination (the server, or
    /// every shard), each with [`Eraser::with_retry`]; the first refusal is returned.
    async fn everywhere<F, Fut>(
        &self,
        what: &str,
        operation: F,
        cancel: &CancellationToken,
    ) -> Result<Result<(), String>, Abandoned>
    where
        F: Fn(&Client) -> Fut,
        Fut: std::future::Future<Output = clickhouse::error::Result<()>>,
    {
        for place in self.destination.everywhere() {
            if let Err(reason) = self.with_retry(place, what, &operation, cancel).await? {
                return Ok(Err(reason));
            }
        }
        Ok(Ok(()))
    }

    /// Run `operation` at `place` (bounded by the request timeout) until it succeeds or
    /// ClickHouse refuses it as invalid (`Ok(Err(reason))`); retryable and
    /// operator-fixable failures are retried with backoff (health and metrics say so)
    /// until `cancel`, on a cluster failing over to the shard's next replica.
    async fn with_retry<T, F, Fut>(
        &self,
        place: Place<'_>,
        what: &str,
        operation: F,
        cancel: &CancellationToken,
    ) -> Result<Result<T, String>, Abandoned>
    where
        F: Fn(&Client) -> Fut,
        Fut: std::future::Future<Output = clickhouse::error::Result<T>>,
    {
        let shard = place.label();
        let what =
            if shard.is_empty() { format!("ClickHouse {what}") } else { format!("ClickHouse {what} on {shard}") };
        let mut retry = Retry::new(&what, self.retry.backoff(), &self.visibility);
        loop {
            let timeout = self.timeout;
            let outcome = place
                .attempt(|client| {
                    let running = operation(client);
                    async move {
                        match tokio::time::timeout(timeout, running).await {
                            Ok(result) => result.map_err(Failure::from),
                            Err(_) => Err(Failure::Retryable(format!("no answer within {timeout:?}"))),
                        }
                    }
                })
                .await;
            match outcome {
                Ok(value) => {
                    retry.succeeded();
                    return Ok(Ok(value));
                }
                Err(failure) => {
                    retry.failed(Class::from(&failure), &failure.message());
                    if let Failure::Invalid(reason) = failure {
                        return Ok(Err(reason));
                    }
                    self.metrics.delete_mutation_retries.inc();
                    if !retry.wait(cancel).await {
                        return Err(Abandoned);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use uuid::Uuid;
    use vero_model::UserAction;

    pub(crate) fn delete(project: &str, user_id: &str, partition: i32, offset: i64) -> UserDelete {
        UserDelete {
            command: UserCommand {
                command_id: Uuid::now_v7(),
                received_at: 1_700_000_000_000,
                project: project.into(),
                action: UserAction::Delete,
                user_id: user_id.into(),
                email: None,
                attributes: "{}".into(),
                tags_add: vec![],
                tags_remove: vec![],
                new_id: None,
                user_agent: None,
            },
            partition,
            offset,
        }
    }

    #[test]
    fn values_are_bound_and_escaped() {
        let client = Client::default();
        let d = delete("demo", "o'neil?\\", 3, 42);
        let sql = mutation(&client, "vero.events", &[&d]).sql_display().to_string();
        assert_eq!(
            sql,
            "ALTER TABLE vero.events DELETE WHERE (project = 'demo' AND user_id = 'o\\'neil?\\\\' \
             AND (kafka_partition != 3 OR kafka_offset < 42))"
        );
        let two = mutation(&client, "vero.events", &[&d, &delete("p", "u", 0, 1)]).sql_display().to_string();
        assert!(two.ends_with(" OR (project = 'p' AND user_id = 'u' AND (kafka_partition != 0 OR kafka_offset < 1))"));
    }

    #[test]
    fn a_later_delete_of_the_same_user_covers_the_earlier_one() {
        let deletes = [delete("p", "a", 0, 5), delete("p", "b", 0, 6), delete("p", "a", 0, 9), delete("p", "a", 1, 2)];
        assert_eq!(statements(&deletes), vec![vec![1, 2, 3]]);
    }

    #[test]
    fn statements_stay_under_the_query_size_limit() {
        let long_id = "x".repeat(1000);
        let deletes: Vec<UserDelete> = (0..200).map(|i| delete("p", &format!("{long_id}{i}"), 0, i)).collect();
        let groups = statements(&deletes);
        assert!(groups.len() > 1);
        assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), 200);
        let client = Client::default();
        for group in groups {
            let refs: Vec<&UserDelete> = group.iter().map(|&i| &deletes[i]).collect();
            assert!(mutation(&client, "vero.events", &refs).sql_display().to_string().len() <= MAX_STATEMENT_BYTES);
        }
    }
}
