//! Where the shards and replicas of a cluster are, read from `system.clusters` of
//! the configured node (`clickhouse.url`).
//!
//! `system.clusters` names each replica by `host_name` and its *native* (TCP) port;
//! ClickHouse 18.16 has no SQL that tells another node's HTTP port. So the HTTP URL of
//! a replica is either
//! * listed: `nodes` holds the HTTP URL of every node, and each listed node is asked
//!   which shard it belongs to (on 18.16 `is_local` marks every row of the shard that
//!   holds the asking node, not the node's own row); a shard's replicas are then its
//!   listed URLs in the order listed, or
//! * derived: `host_name` with the scheme and port of `clickhouse.url` (every node
//!   serving HTTP on the same port, the usual deployment).
//!
//! Shards are ordered by `shard_num` as ClickHouse numbers them. A topology that does not name a URL for every replica is an operator error:
//! the consumers would otherwise write some shard nowhere.

use clickhouse::Client;
use serde::Deserialize;
use vero_clickhouse::Failure;

/// One replica of a shard: its shard's `shard_num` and its HTTP URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    pub shard_num: u32,
    pub url: String,
}

/// The cluster's shards (in `shard_num` order), each with its replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub cluster: String,
    pub shards: Vec<Vec<Replica>>,
}

#[derive(clickhouse::Row, Deserialize)]
struct Entry {
    shard_num: u32,
    host_name: String,
    port: u16,
}

const ENTRIES: &str = "SELECT toUInt32(shard_num) AS shard_num, host_name, toUInt16(port) AS port \
     FROM system.clusters WHERE cluster = ? ORDER BY shard_num, replica_num";
const PLACE: &str = "SELECT DISTINCT toUInt32(shard_num) FROM system.clusters WHERE cluster = ? AND is_local = 1";

impl Topology {
    /// Read `cluster` from `entry` (the node at `entry_url`); `nodes` are the HTTP URLs
    /// of every node, or empty to derive them (module docs). `connect` builds a
    /// client for a node's URL (same login as `entry`).
    pub async fn discover(
        entry: &Client,
        entry_url: &str,
        cluster: &str,
        nodes: &[String],
        connect: impl Fn(&str) -> Client,
    ) -> Result<Self, Failure> {
        let entries: Vec<Entry> = entry.query(ENTRIES).bind(cluster).fetch_all().await?;
        if entries.is_empty() {
            return Err(Failure::Operator(format!(
                "cluster `{cluster}` is not in system.clusters of {entry_url} (clickhouse.cluster or <remote_servers>)"
            )));
        }
        let mut places = Vec::new();
        for url in nodes {
            let found: Vec<u32> = connect(url).query(PLACE).bind(cluster).fetch_all().await?;
            match found.as_slice() {
                [shard_num] => places.push((*shard_num, url.clone())),
                _ => {
                    return Err(Failure::Operator(format!(
                        "clickhouse.cluster_nodes: {url} is in {} shards of cluster `{cluster}` (expected one)",
                        found.len()
                    )))
                }
            }
        }
        Self::assemble(cluster, entries, &places, entry_url)
    }

    fn assemble(
        cluster: &str,
        entries: Vec<Entry>,
        places: &[(u32, String)],
        entry_url: &str,
    ) -> Result<Self, Failure> {
        let mut shards: Vec<Vec<Replica>> = Vec::new();
        for e in &entries {
            if shards.last().is_some_and(|shard| shard[0].shard_num == e.shard_num) {
                continue;
            }
            let listed: Vec<&String> = places.iter().filter(|(num, _)| *num == e.shard_num).map(|(_, u)| u).collect();
            let expected = entries.iter().filter(|other| other.shard_num == e.shard_num);
            let replicas: Vec<Replica> = if places.is_empty() {
                expected
                    .map(|r| Replica { shard_num: e.shard_num, url: derived_url(entry_url, &r.host_name) })
                    .collect()
            } else if listed.len() == expected.clone().count() {
                listed.into_iter().map(|url| Replica { shard_num: e.shard_num, url: url.clone() }).collect()
            } else {
                let natives: Vec<String> = expected.map(|r| format!("{}:{}", r.host_name, r.port)).collect();
                return Err(Failure::Operator(format!(
                    "clickhouse.cluster_nodes lists {} nodes of shard {} of cluster `{cluster}`, which has {} \
                     replicas ({})",
                    listed.len(),
                    e.shard_num,
                    natives.len(),
                    natives.join(", ")
                )));
            };
            shards.push(replicas);
        }
        Ok(Self { cluster: cluster.to_owned(), shards })
    }
}

/// `host` with the scheme and port of `entry_url` (`http://a:8123/` + `b` = `http://b:8123`).
fn derived_url(entry_url: &str, host: &str) -> String {
    let (scheme, rest) = entry_url.split_once("://").unwrap_or(("http", entry_url));
    let authority = rest.split('/').next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    // `[::1]:8123`: the port follows the closing bracket.
    let port = match authority.rsplit_once(':') {
        Some((host_part, port)) if !host_part.ends_with(']') || authority.contains("]:") => Some(port),
        _ => None,
    }
    .filter(|p| p.chars().all(|c| c.is_ascii_digit()));
    let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_owned() };
    match port {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(shard_num: u32, host: &str, port: u16) -> Entry {
        Entry { shard_num, host_name: host.into(), port }
    }

    #[test]
    fn urls_are_derived_from_the_entry_url() {
        assert_eq!(derived_url("http://ch-0:8123", "ch-1"), "http://ch-1:8123");
        assert_eq!(derived_url("https://user@ch-0:8443/path", "ch-1"), "https://ch-1:8443");
        assert_eq!(derived_url("http://ch-0", "ch-1"), "http://ch-1");
        assert_eq!(derived_url("http://[::1]:8123", "::2"), "http://[::2]:8123");
    }

    #[test]
    fn shards_group_replicas_in_order_and_listed_nodes_must_cover_every_replica() {
        let entries = || vec![entry(1, "ch-a", 9000), entry(1, "ch-b", 9000), entry(2, "ch-c", 9000)];
        let derived = Topology::assemble("c", entries(), &[], "http://127.0.0.1:8123").unwrap();
        assert_eq!(derived.shards.len(), 2);
        assert_eq!(derived.shards[0][1].url, "http://ch-b:8123");
        assert_eq!(derived.shards[1][0].url, "http://ch-c:8123");
        let places = [(1, "http://a".to_owned()), (1, "http://b".to_owned())];
        let missing = Topology::assemble("c", entries(), &places, "http://x").unwrap_err();
        assert_eq!(missing.class(), "operator");
        assert!(missing.message().contains("0 nodes of shard 2"), "{missing}");
        let places = [places[0].clone(), (2, "http://c".to_owned()), places[1].clone()];
        let listed = Topology::assemble("c", entries(), &places, "http://x").unwrap();
        assert_eq!(listed.shards[0].iter().map(|r| r.url.as_str()).collect::<Vec<_>>(), ["http://a", "http://b"]);
        assert_eq!(listed.shards[1][0].url, "http://c");
    }
}
