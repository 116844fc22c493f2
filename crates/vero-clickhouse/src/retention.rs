//! Data retention: how long `vero.events` keeps an event, as a ClickHouse TTL on the
//! gateway's receive time (`received_at`).
//!
//! The setting (the event sink's `retention.events_days`, 0 = keep forever) owns the
//! table's TTL: [`apply`] reads the TTL the table has now (`system.tables`,
//! `engine_full`), and when it differs from the setting changes it with one
//! `ALTER TABLE … MODIFY TTL` (or `REMOVE TTL` for 0). It runs after the migrations,
//! at every sink start and in `event-sink migrate`, so changing the setting and
//! restarting the sink changes the retention of rows already stored too.
//!
//! Why the receive time: it is the gateway's clock, so a client's `extras.created_at`
//! (any date the client likes) can neither delete an event at once nor keep it
//! forever. ClickHouse deletes expired rows in background merges, not at the second
//! they expire; `MODIFY TTL` also starts a mutation that applies the new TTL to the
//! parts already stored (`materialize_ttl_after_modify`, on by default).
//!
//! TTL exists from ClickHouse 19.6 on; an older server (the 18.16 the tests run)
//! cannot honour a retention, so a non-zero setting there is an operator error naming
//! the setting, never silently ignored. On a cluster the TTL is on `vero.events_local`
//! of every node (`ON CLUSTER`); each replica deletes the same expired rows in its
//! replicated merges. Profiles have no TTL: a profile is a user's current state,
//! rewritten from the compacted topic whenever the user is active again, so it is
//! removed by `users/delete`, not by age (docs/operations.md, "Data retention").

use clickhouse::Client;

use crate::error::Failure;
use crate::migrations::cluster;
use crate::version::ServerVersion;

/// The setting's name in messages (the event sink's `[retention] events_days`).
pub const SETTING: &str = "retention.events_days";

/// The first ClickHouse release with table TTLs.
pub const TTL_SINCE: ServerVersion = ServerVersion { major: 19, minor: 6 };

/// Upper bound of the setting: 100 years.
pub const MAX_DAYS: u32 = 36_500;

/// A table's TTL as [`apply`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ttl {
    /// No TTL.
    None,
    /// Ours: rows expire this many days after `received_at`.
    Days(u32),
    /// A TTL not written by [`apply`] (set by hand); the setting replaces it.
    Other(String),
}

/// What [`apply`] does to bring the table's TTL to the setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Set(u32),
    Remove,
}

/// The TTL in a `system.tables.engine_full` text (`… TTL <expr> SETTINGS …`).
pub fn parse_ttl(engine_full: &str) -> Ttl {
    let Some(start) = engine_full.find(" TTL ") else {
        return Ttl::None;
    };
    let rest = &engine_full[start + " TTL ".len()..];
    let expr = rest.split(" SETTINGS ").next().unwrap_or(rest).trim();
    let days = expr
        .strip_prefix("toDateTime(received_at) + toIntervalDay(")
        .and_then(|n| n.strip_suffix(')'))
        .and_then(|n| n.parse().ok());
    match days {
        Some(days) => Ttl::Days(days),
        None => Ttl::Other(expr.to_owned()),
    }
}

/// The change that makes `current` what `days` asks for (`None`: nothing to do).
pub fn plan(current: &Ttl, days: u32) -> Option<Change> {
    match (current, days) {
        (Ttl::None, 0) => None,
        (_, 0) => Some(Change::Remove),
        (Ttl::Days(now), wanted) if *now == wanted => None,
        (_, wanted) => Some(Change::Set(wanted)),
    }
}

/// The events table the TTL is on: `vero.events`, or on a cluster every node's
/// `vero.events_local`.
pub fn table(cluster: Option<&str>) -> &'static str {
    if cluster.is_some() {
        "vero.events_local"
    } else {
        "vero.events"
    }
}

/// The `ALTER TABLE` statement of `change`.
pub fn statement(change: Change, cluster: Option<&str>) -> String {
    let on_cluster = cluster.map(|name| format!(" ON CLUSTER {name}")).unwrap_or_default();
    let action = match change {
        Change::Set(days) => format!("MODIFY TTL toDateTime(received_at) + INTERVAL {days} DAY"),
        Change::Remove => "REMOVE TTL".to_owned(),
    };
    format!("ALTER TABLE {}{on_cluster} {action}", table(cluster))
}

/// Bring the events table's TTL to `days` (0 = none) and return what changed. A
/// non-zero `days` on a server without TTLs, or above [`MAX_DAYS`], is
/// [`Failure::Operator`] naming [`SETTING`].
pub async fn apply(
    client: &Client,
    version: ServerVersion,
    cluster: Option<&str>,
    days: u32,
) -> Result<Option<Change>, Failure> {
    if days > MAX_DAYS {
        return Err(Failure::Operator(format!(
            "{SETTING} = {days} is above the maximum of {MAX_DAYS} (0 keeps events forever)"
        )));
    }
    if version < TTL_SINCE {
        return if days == 0 {
            Ok(None)
        } else {
            Err(Failure::Operator(format!(
                "{SETTING} = {days} needs ClickHouse {TTL_SINCE} or later (table TTL); this server is {version}: \
                 upgrade it or set {SETTING} = 0"
            )))
        };
    }
    let name = table(cluster).trim_start_matches("vero.");
    let engine_full: String = client
        .query("SELECT engine_full FROM system.tables WHERE database = 'vero' AND name = ?")
        .bind(name)
        .fetch_one()
        .await
        .map_err(Failure::from)?;
    let current = parse_ttl(&engine_full);
    let Some(change) = plan(&current, days) else {
        return Ok(None);
    };
    tracing::info!(table = table(cluster), ?current, ?change, "changing the retention of events");
    let mut query = client.query_raw(&statement(change, cluster));
    if cluster.is_some() {
        query = cluster::ddl_settings(query);
    }
    query.execute().await.map_err(Failure::from)?;
    Ok(Some(change))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `engine_full` of `vero.events` on current ClickHouse (chdb 26.x) after
    /// `MODIFY TTL toDateTime(received_at) + INTERVAL 30 DAY`.
    const CURRENT: &str = "ReplacingMergeTree PARTITION BY toYYYYMM(received_at) ORDER BY (project, event_name, \
        toDate(event_time), cityHash64(user_id), event_id) TTL toDateTime(received_at) + toIntervalDay(30) \
        SETTINGS non_replicated_deduplication_window = 1000, index_granularity = 8192";

    #[test]
    fn the_ttl_is_read_from_engine_full() {
        assert_eq!(parse_ttl(CURRENT), Ttl::Days(30));
        assert_eq!(parse_ttl("ReplacingMergeTree ORDER BY (a) SETTINGS index_granularity = 8192"), Ttl::None);
        assert_eq!(parse_ttl("MergeTree ORDER BY a TTL toDateTime(received_at) + toIntervalDay(7)"), Ttl::Days(7));
        assert_eq!(
            parse_ttl("MergeTree ORDER BY a TTL toDateTime(event_time) + toIntervalMonth(1) SETTINGS x = 1"),
            Ttl::Other("toDateTime(event_time) + toIntervalMonth(1)".into())
        );
    }

    #[test]
    fn the_plan_changes_only_what_differs() {
        assert_eq!(plan(&Ttl::None, 0), None);
        assert_eq!(plan(&Ttl::None, 30), Some(Change::Set(30)));
        assert_eq!(plan(&Ttl::Days(30), 30), None);
        assert_eq!(plan(&Ttl::Days(30), 60), Some(Change::Set(60)));
        assert_eq!(plan(&Ttl::Days(30), 0), Some(Change::Remove));
        assert_eq!(plan(&Ttl::Other("x".into()), 30), Some(Change::Set(30)));
        assert_eq!(plan(&Ttl::Other("x".into()), 0), Some(Change::Remove));
    }

    #[test]
    fn statements_name_the_local_table_on_a_cluster() {
        assert_eq!(
            statement(Change::Set(30), None),
            "ALTER TABLE vero.events MODIFY TTL toDateTime(received_at) + INTERVAL 30 DAY"
        );
        assert_eq!(statement(Change::Remove, Some("vero")), "ALTER TABLE vero.events_local ON CLUSTER vero REMOVE TTL");
    }
}
