//! Where the shards and replicas of a cluster are, read from `system.clusters` of
//! the configured node (`clickhouse.url`).
//!
//! `system.clusters` names each replica by `host_name` and its *native* (TCP) port;
//! ClickHouse 18.16 has no SQL that tells another node's HTTP port. So the HTTP URL of
//! a replica is either
//! * listed: `nodes` holds the HTTP URL of every node, and each listed node is asked
//!   which entry of the cluster it is (`is_local = 1`), or
//! * derived: `host_name` with the scheme and port of `clickhouse.url` (every node
//!   serving HTTP on the same port, the usual deployment).
//!
//! Shards are ordered by `shard_num`, replicas by `replica_num`, as ClickHouse numbers
//! them. A topology that does not name a URL for every replica is an operator error:
//! the consumers would otherwise write some shard nowhere.

use clickhouse::Client;
use serde::Deserialize;
use vero_clickhouse::Failure;

/// One replica of a shard: its place in `system.clusters` and its HTTP URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    pub shard_num: u32,
    pub replica_num: u32,
    /// `host_name:port` as `system.clusters` lists it (native port), for logs.
    pub native: String,
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
    replica_num: u32,
    host_name: String,
    port: u16,
}

#[derive(clickhouse::Row, Deserialize)]
struct Place {
    shard_num: u32,
    replica_num: u32,
}

const ENTRIES: &str = "SELECT toUInt32(shard_num) AS shard_num, toUInt32(replica_num) AS replica_num, host_name, \
     toUInt16(port) AS port FROM system.clusters WHERE cluster = ? ORDER BY shard_num, replica_num";
const PLACE: &str = "SELECT toUInt32(shard_num) AS shard_num, toUInt32(replica_num) AS replica_num \
     FROM system.clusters WHERE cluster = ? AND is_local = 1";

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
            let found: Vec<Place> = connect(url).query(PLACE).bind(cluster).fetch_all().await?;
            match found.as_slice() {
                [place] => places.push(((place.shard_num, place.replica_num), url.clone())),
                _ => {
                    return Err(Failure::Operator(format!(
                        "clickhouse.cluster_nodes: {url} is {} entries of cluster `{cluster}` (expected exactly one)",
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
        places: &[((u32, u32), String)],
        entry_url: &str,
    ) -> Result<Self, Failure> {
        let mut shards: Vec<Vec<Replica>> = Vec::new();
        for e in entries {
            let native = format!("{}:{}", e.host_name, e.port);
            let url = if places.is_empty() {
                derived_url(entry_url, &e.host_name)
            } else {
                let listed = places.iter().find(|(place, _)| *place == (e.shard_num, e.replica_num));
                listed.map(|(_, url)| url.clone()).ok_or_else(|| {
                    Failure::Operator(format!(
                        "clickhouse.cluster_nodes lists no node for shard {} replica {} ({native}) of cluster `{cluster}`",
                        e.shard_num, e.replica_num
                    ))
                })?
            };
            let replica = Replica { shard_num: e.shard_num, replica_num: e.replica_num, native, url };
            match shards.last_mut() {
                Some(shard) if shard[0].shard_num == replica.shard_num => shard.push(replica),
                _ => shards.push(vec![replica]),
            }
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

    fn entry(shard_num: u32, replica_num: u32, host: &str, port: u16) -> Entry {
        Entry { shard_num, replica_num, host_name: host.into(), port }
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
        let entries =
            || vec![entry(1, 1, "127.0.0.1", 9001), entry(1, 2, "127.0.0.1", 9002), entry(2, 1, "127.0.0.1", 9003)];
        let derived = Topology::assemble("c", entries(), &[], "http://127.0.0.1:8123").unwrap();
        assert_eq!(derived.shards.len(), 2);
        assert_eq!(derived.shards[0].len(), 2);
        assert_eq!(derived.shards[1][0].url, "http://127.0.0.1:8123");
        assert_eq!(derived.shards[1][0].native, "127.0.0.1:9003");
        let places = [((1, 1), "http://a".to_owned()), ((1, 2), "http://b".to_owned())];
        let missing = Topology::assemble("c", entries(), &places, "http://x").unwrap_err();
        assert_eq!(missing.class(), "operator");
        assert!(missing.message().contains("shard 2 replica 1"), "{missing}");
        let places = [places[0].clone(), places[1].clone(), ((2, 1), "http://c".to_owned())];
        let listed = Topology::assemble("c", entries(), &places, "http://x").unwrap();
        assert_eq!(listed.shards[0][1].url, "http://b");
        assert_eq!(listed.shards[1][0].url, "http://c");
    }
}
