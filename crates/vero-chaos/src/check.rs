//! The invariant check: what ClickHouse (and the dead-letter topic) hold, against
//! the ledger.
//!
//! * missing: a sequence number that got a 200 but has no row in `vero.events`;
//! * duplicated: a sequence number with more than one row in plain `vero.events`
//!   (no `FINAL`: what `count()` shows an analyst). Reported apart: `dup_final`,
//!   duplicates that remain even under `FINAL` (two different `event_id`s, i.e. one
//!   request became two events);
//! * unexpected: a row of this run whose sequence number was never sent;
//! * profile mismatches: a user whose `vero.profiles FINAL` row differs from a replay
//!   of the distinct events of this run in ClickHouse (count, last event name, first/last seen);
//! * DLQ: every dead letter must be one of the poison records the harness produced,
//!   and every poison record must be dead-lettered.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;

use crate::ledger::LedgerSnapshot;

/// One row of `vero.events` belonging to the run.
#[derive(Debug, Clone)]
struct EventRow {
    seq: u64,
    event_id: String,
    user: String,
    event_name: String,
    event_time: i64,
    received_at: i64,
    offset: i64,
}

#[derive(Debug, Clone, Default)]
pub struct Verdict {
    pub acked: usize,
    pub sent: usize,
    pub rows: usize,
    pub missing: Vec<u64>,
    pub duplicated: Vec<u64>,
    pub dup_final: Vec<u64>,
    pub unexpected: Vec<u64>,
    pub profile_mismatches: Vec<String>,
    pub dlq_problems: Vec<String>,
}

impl Verdict {
    pub fn holds(&self) -> bool {
        self.missing.is_empty()
            && self.duplicated.is_empty()
            && self.unexpected.is_empty()
            && self.profile_mismatches.is_empty()
            && self.dlq_problems.is_empty()
    }

    /// Every acknowledged event is queryable (rows may still be duplicated).
    pub fn complete(&self) -> bool {
        self.missing.is_empty()
    }

    pub fn summary(&self) -> String {
        fn few<T: std::fmt::Debug>(items: &[T]) -> String {
            let shown: Vec<_> = items.iter().take(5).collect();
            if items.len() > 5 {
                format!("{shown:?} (+{} more)", items.len() - 5)
            } else {
                format!("{shown:?}")
            }
        }
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!("missing {}", few(&self.missing)));
        }
        if !self.duplicated.is_empty() {
            parts.push(format!("duplicated {}", few(&self.duplicated)));
        }
        if !self.unexpected.is_empty() {
            parts.push(format!("unexpected {}", few(&self.unexpected)));
        }
        if !self.profile_mismatches.is_empty() {
            parts.push(format!("profiles {}", few(&self.profile_mismatches)));
        }
        if !self.dlq_problems.is_empty() {
            parts.push(format!("dlq {}", few(&self.dlq_problems)));
        }
        if parts.is_empty() {
            "holds".into()
        } else {
            parts.join("; ")
        }
    }
}

/// Runs SQL against the ClickHouse under test (text in, TabSeparated text out).
pub trait Sql {
    fn sql(&self, query: &str) -> anyhow::Result<String>;
}

/// Which sequence numbers of `run_id` are queryable now (cheap; polled while waiting).
pub fn present(db: &dyn Sql, run_id: &str) -> anyhow::Result<BTreeSet<u64>> {
    let text = db.sql(&format!(
        "SELECT DISTINCT visitParamExtractUInt(data, 'chaos_seq') FROM vero.events \
         WHERE visitParamExtractString(data, 'chaos_run') = '{run_id}' FORMAT TabSeparated"
    ))?;
    text.lines().filter(|l| !l.is_empty()).map(|l| l.parse().context("seq")).collect()
}

fn rows(db: &dyn Sql, run_id: &str) -> anyhow::Result<Vec<EventRow>> {
    let text = db.sql(&format!(
        "SELECT visitParamExtractUInt(data, 'chaos_seq'), toString(event_id), user_id, event_name, \
         ifNull(created_at_ms, received_at_ms), received_at_ms, kafka_offset FROM vero.events \
         WHERE visitParamExtractString(data, 'chaos_run') = '{run_id}' FORMAT TabSeparated"
    ))?;
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            anyhow::ensure!(f.len() == 7, "unexpected row {line:?}");
            Ok(EventRow {
                seq: f[0].parse()?,
                event_id: f[1].into(),
                user: f[2].into(),
                event_name: f[3].into(),
                event_time: f[4].parse()?,
                received_at: f[5].parse()?,
                offset: f[6].parse()?,
            })
        })
        .collect()
}

/// What a profile of the run's project says, by user id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProfileFacts {
    event_count: u64,
    last_event_name: String,
    first_seen: i64,
    last_seen: i64,
}

fn profiles(db: &dyn Sql, project: &str) -> anyhow::Result<BTreeMap<String, ProfileFacts>> {
    let text = db.sql(&format!(
        "SELECT user_id, event_count, ifNull(last_event_name, ''), ifNull(first_seen_ms, 0), ifNull(last_seen_ms, 0) \
         FROM vero.profiles FINAL WHERE project = '{project}' AND deleted = 0 FORMAT TabSeparated"
    ))?;
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            anyhow::ensure!(f.len() == 5, "unexpected profile row {line:?}");
            let facts = ProfileFacts {
                event_count: f[1].parse()?,
                last_event_name: f[2].into(),
                first_seen: f[3].parse()?,
                last_seen: f[4].parse()?,
            };
            Ok((f[0].to_owned(), facts))
        })
        .collect()
}

/// Replay: what each user's profile must say, from the distinct events (by
/// `event_id`: one Kafka record each) ClickHouse holds for the run. The merge rule is
/// the profile consumer's: the last event is the greatest (event time, received at,
/// offset).
fn expected_profiles(rows: &[EventRow]) -> BTreeMap<String, ProfileFacts> {
    let mut unique: BTreeMap<&str, &EventRow> = BTreeMap::new();
    for row in rows {
        unique.entry(&row.event_id).or_insert(row);
    }
    let mut by_user: BTreeMap<String, (ProfileFacts, (i64, i64, i64))> = BTreeMap::new();
    for row in unique.values() {
        let version = (row.event_time, row.received_at, row.offset);
        let entry = by_user.entry(row.user.clone()).or_insert_with(|| {
            let facts = ProfileFacts {
                event_count: 0,
                last_event_name: row.event_name.clone(),
                first_seen: row.event_time,
                last_seen: row.event_time,
            };
            (facts, version)
        });
        entry.0.event_count += 1;
        entry.0.first_seen = entry.0.first_seen.min(row.event_time);
        entry.0.last_seen = entry.0.last_seen.max(row.event_time);
        if version > entry.1 {
            entry.1 = version;
            entry.0.last_event_name = row.event_name.clone();
        }
    }
    by_user.into_iter().map(|(user, (facts, _))| (user, facts)).collect()
}

/// Evidence for the profile mismatches of `verdict` (at most five users), for the
/// scenario's log folder: each user's events in ClickHouse in offset order, and every
/// row ever written for its profile (no `FINAL`), so a double count or a stale write
/// can be told apart from the outside.
pub fn explain_mismatches(db: &dyn Sql, run_id: &str, project: &str, verdict: &Verdict) -> anyhow::Result<String> {
    let mut out = String::new();
    for mismatch in verdict.profile_mismatches.iter().take(5) {
        let user = mismatch.split(':').next().unwrap_or_default().replace('\'', "");
        out.push_str(&format!("## {mismatch}\nevents (offset, seq, event_id, received_at_ms, event time):\n"));
        out.push_str(&db.sql(&format!(
            "SELECT kafka_partition, kafka_offset, visitParamExtractUInt(data, 'chaos_seq'), toString(event_id), \
             received_at_ms, ifNull(created_at_ms, received_at_ms) FROM vero.events \
             WHERE visitParamExtractString(data, 'chaos_run') = '{run_id}' AND user_id = '{user}' \
             ORDER BY kafka_offset FORMAT TabSeparated"
        ))?);
        out.push_str("profile rows (event_count, last_event_name, version, updated_at, deleted):\n");
        out.push_str(&db.sql(&format!(
            "SELECT event_count, ifNull(last_event_name, ''), version, updated_at, deleted FROM vero.profiles \
             WHERE project = '{project}' AND user_id = '{user}' ORDER BY version FORMAT TabSeparated"
        ))?);
    }
    Ok(out)
}

/// The full check. `dead_letter_keys` are the keys of every record in the DLQ topic;
/// `poison_keys` the keys of the poison records the harness produced.
pub fn verify(
    db: &dyn Sql,
    run_id: &str,
    project: &str,
    ledger: &LedgerSnapshot,
    dead_letter_keys: &[String],
    poison_keys: &BTreeSet<String>,
) -> anyhow::Result<Verdict> {
    let rows = rows(db, run_id)?;
    let mut per_seq: BTreeMap<u64, (usize, BTreeSet<&str>)> = BTreeMap::new();
    for row in &rows {
        let entry = per_seq.entry(row.seq).or_default();
        entry.0 += 1;
        entry.1.insert(&row.event_id);
    }
    let mut verdict =
        Verdict { acked: ledger.acked.len(), sent: ledger.sent.len(), rows: rows.len(), ..Verdict::default() };
    verdict.missing = ledger.acked.iter().copied().filter(|seq| !per_seq.contains_key(seq)).collect();
    verdict.duplicated = per_seq.iter().filter(|(_, (n, _))| *n > 1).map(|(seq, _)| *seq).collect();
    verdict.dup_final = per_seq.iter().filter(|(_, (_, ids))| ids.len() > 1).map(|(seq, _)| *seq).collect();
    verdict.unexpected = per_seq.keys().copied().filter(|seq| !ledger.sent.contains_key(seq)).collect();

    let expected = expected_profiles(&rows);
    let actual = profiles(db, project)?;
    for (user, want) in &expected {
        match actual.get(user) {
            None => verdict.profile_mismatches.push(format!("{user}: no profile")),
            Some(got) if got != want => {
                verdict.profile_mismatches.push(format!("{user}: got {got:?}, replay {want:?}"))
            }
            Some(_) => {}
        }
    }
    for user in actual.keys().filter(|u| !expected.contains_key(*u)) {
        verdict.profile_mismatches.push(format!("{user}: profile without events"));
    }

    let dead: BTreeSet<&String> = dead_letter_keys.iter().collect();
    for key in &dead {
        if !poison_keys.contains(*key) {
            verdict.dlq_problems.push(format!("dead letter {key:?} was not poison"));
        }
    }
    for key in poison_keys {
        if !dead.contains(key) {
            verdict.dlq_problems.push(format!("poison {key:?} not dead-lettered"));
        }
    }
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: u64, id: &str, user: &str, name: &str, t: i64, offset: i64) -> EventRow {
        EventRow {
            seq,
            event_id: id.into(),
            user: user.into(),
            event_name: name.into(),
            event_time: t,
            received_at: t,
            offset,
        }
    }

    #[test]
    fn replay_counts_each_event_once_and_takes_the_latest_name() {
        let rows = vec![
            row(1, "a", "u", "first", 10, 1),
            row(1, "a", "u", "first", 10, 1), // a redelivered copy
            row(2, "b", "u", "second", 20, 2),
            row(3, "c", "u", "same_time_later_offset", 20, 3),
        ];
        let facts = &expected_profiles(&rows)["u"];
        assert_eq!(facts.event_count, 3);
        assert_eq!(facts.last_event_name, "same_time_later_offset");
        assert_eq!((facts.first_seen, facts.last_seen), (10, 20));
    }
}
