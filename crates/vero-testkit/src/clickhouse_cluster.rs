//! A real sharded, replicated ClickHouse cluster for tests: one ZooKeeper
//! ([`crate::zookeeper`]) and `shards × replicas` `clickhouse-server` processes
//! ([`crate::clickhouse`], same binary discovery), each in its own temp dir on free
//! loopback ports (HTTP, native TCP, interserver HTTP for replica fetches).
//!
//! Every node's config has the same `<remote_servers>` entry [`CLUSTER_NAME`] (shards
//! in order, `internal_replication` on: a Distributed table writes one replica and
//! replication copies it), its own `<macros>` (`shard` = shard number from 1, as
//! `shard_num` in `system.clusters`; `replica` = `s<shard>r<replica>`, unique in the
//! cluster like a host name), the `<zookeeper>` and a `<distributed_ddl>` queue, so
//! `ON CLUSTER` DDL and `Replicated*MergeTree('/clickhouse/tables/{shard}/…',
//! '{replica}')` work as on a production cluster.
//!
//! Shards and replicas are addressed from 0 here (`shard` 0 is `shard_num` 1): shard
//! `i` is the one a row with `kafka_partition % shards == i` belongs to.
//!
//! [`ClickHouseCluster::start`] returns once every node answers and reads ZooKeeper
//! (bounded; errors name the node and show its last log lines). Nodes keep ports and
//! data across [`ClickHouseCluster::kill_node`] / [`ClickHouseCluster::restart_node`]
//! and the whole-shard variants. Dropping the cluster kills every process and removes
//! every directory.
//!
//! Processes are not tied to the test process with `PR_SET_PDEATHSIG`: that signal
//! fires when the spawning *thread* ends, and nodes are restarted from short-lived
//! threads (tokio's blocking pool), which would kill a healthy node later. Dropping
//! the handle (also on a panicking test's unwind) is what cleans up.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::clickhouse::ClickHouseServer;
use crate::ports::free_ports;
use crate::zookeeper::ZooKeeper;

/// The `<remote_servers>` name every node knows the cluster by.
pub const CLUSTER_NAME: &str = "vero_cluster";
/// How long a node may take, after answering `/ping`, to read ZooKeeper.
const ZOOKEEPER_TIMEOUT: Duration = Duration::from_secs(60);

/// Ports of one node, chosen before any node starts (every config lists them all).
#[derive(Debug, Clone, Copy)]
struct Ports {
    http: u16,
    tcp: u16,
    interserver: u16,
}

pub struct ClickHouseCluster {
    shards: usize,
    replicas: usize,
    /// Shard-major: node `shard * replicas + replica`. Declared before `zookeeper` so
    /// the servers are killed before their coordinator.
    nodes: Vec<ClickHouseServer>,
    zookeeper: ZooKeeper,
}

impl ClickHouseCluster {
    /// Start ZooKeeper and `shards × replicas` servers (in parallel) and wait until
    /// every server answers and sees ZooKeeper. A failed start is tried once more on
    /// new ports (a free port can be taken by another process before its server
    /// binds it); the first failure is printed.
    pub fn start(shards: usize, replicas: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(shards > 0 && replicas > 0, "a cluster needs at least one shard and one replica");
        Self::start_once(shards, replicas).or_else(|first| {
            eprintln!("ClickHouse cluster start failed, trying once more on new ports: {first:#}");
            Self::start_once(shards, replicas)
        })
    }

    fn start_once(shards: usize, replicas: usize) -> anyhow::Result<Self> {
        let zookeeper = ZooKeeper::start().context("starting ZooKeeper for the ClickHouse cluster")?;
        let ports = free_ports(shards * replicas * 3)?
            .chunks(3)
            .map(|p| Ports { http: p[0], tcp: p[1], interserver: p[2] })
            .collect::<Vec<_>>();
        let remote_servers = remote_servers(&ports, replicas);
        let started: Vec<anyhow::Result<ClickHouseServer>> = std::thread::scope(|scope| {
            let handles: Vec<_> = ports
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let config = node_config(&remote_servers, i / replicas, i % replicas, p, zookeeper.port());
                    scope.spawn(move || {
                        ClickHouseServer::start_with(p.http, p.tcp, &config)
                            .with_context(|| format!("starting node {} of the cluster", node_label(i, replicas)))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("node start thread panicked")).collect()
        });
        let nodes = started.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
        let cluster = Self { shards, replicas, nodes, zookeeper };
        for i in 0..cluster.nodes.len() {
            cluster.wait_for_zookeeper(i)?;
        }
        Ok(cluster)
    }

    /// The `<remote_servers>` name to configure (`clickhouse.cluster`) and use in
    /// `ON CLUSTER` / `Distributed(...)`.
    pub fn name(&self) -> &'static str {
        CLUSTER_NAME
    }

    pub fn shards(&self) -> usize {
        self.shards
    }

    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// Replica `replica` of shard `shard` (both from 0).
    ///
    /// Use [`Self::kill_node`] and friends rather than the server's own `kill` /
    /// `restart`: they also wait for ZooKeeper.
    pub fn node(&self, shard: usize, replica: usize) -> &ClickHouseServer {
        &self.nodes[self.index(shard, replica)]
    }

    /// Every node, shard-major (shard 0's replicas first).
    pub fn nodes(&self) -> &[ClickHouseServer] {
        &self.nodes
    }

    /// HTTP URLs of every replica of each shard: `[shard][replica]`.
    pub fn http_urls(&self) -> Vec<Vec<String>> {
        (0..self.shards).map(|s| (0..self.replicas).map(|r| self.node(s, r).http_url()).collect()).collect()
    }

    /// SIGKILL one node; it keeps its ports and data for [`Self::restart_node`].
    pub fn kill_node(&mut self, shard: usize, replica: usize) -> anyhow::Result<()> {
        let i = self.index(shard, replica);
        self.nodes[i].kill()
    }

    /// Graceful stop (SIGTERM) of one node.
    pub fn stop_node(&mut self, shard: usize, replica: usize) -> anyhow::Result<()> {
        let i = self.index(shard, replica);
        self.nodes[i].stop()
    }

    /// Start a stopped or killed node again (same ports and data), or restart a
    /// running one, and wait until it sees ZooKeeper.
    pub fn restart_node(&mut self, shard: usize, replica: usize) -> anyhow::Result<()> {
        let i = self.index(shard, replica);
        self.nodes[i].restart().with_context(|| format!("restarting node {}", node_label(i, self.replicas)))?;
        self.wait_for_zookeeper(i)
    }

    /// SIGKILL every replica of `shard`: the shard is down.
    pub fn kill_shard(&mut self, shard: usize) -> anyhow::Result<()> {
        (0..self.replicas).try_for_each(|r| self.kill_node(shard, r))
    }

    /// Bring every replica of `shard` back.
    pub fn restart_shard(&mut self, shard: usize) -> anyhow::Result<()> {
        (0..self.replicas).try_for_each(|r| self.restart_node(shard, r))
    }

    /// The coordinator (its log: `logs_tail`).
    pub fn zookeeper(&self) -> &ZooKeeper {
        &self.zookeeper
    }

    /// SIGKILL the coordinator: Replicated tables turn read-only (inserts fail with
    /// `TABLE_IS_READ_ONLY` or a ZooKeeper error), reads go on.
    pub fn kill_zookeeper(&mut self) {
        self.zookeeper.kill();
    }

    /// Start the coordinator again (same port and data) and wait until every running
    /// node reads it again.
    pub fn restart_zookeeper(&mut self) -> anyhow::Result<()> {
        self.zookeeper.restart()?;
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_running() {
                self.wait_for_zookeeper(i)?;
            }
        }
        Ok(())
    }

    /// Run `sql` on every node in order; the answers, or the first error naming the node.
    pub fn query_each(&self, sql: &str) -> anyhow::Result<Vec<String>> {
        let label = |i| node_label(i, self.replicas);
        self.nodes.iter().enumerate().map(|(i, n)| n.query(sql).with_context(|| format!("on {}", label(i)))).collect()
    }

    fn index(&self, shard: usize, replica: usize) -> usize {
        assert!(shard < self.shards && replica < self.replicas, "no node shard {shard} replica {replica}");
        shard * self.replicas + replica
    }

    fn wait_for_zookeeper(&self, i: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + ZOOKEEPER_TIMEOUT;
        loop {
            let answer = self.nodes[i].query("SELECT count() FROM system.zookeeper WHERE path = '/'");
            match answer {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => bail!(
                    "node {} did not read ZooKeeper within {ZOOKEEPER_TIMEOUT:?} (last: {e:#}); node logs:\n{}\n\
                     ZooKeeper log:\n{}",
                    node_label(i, self.replicas),
                    self.nodes[i].logs_tail(),
                    self.zookeeper.logs_tail()
                ),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
}

/// `shard S replica R` (from 0) of node `i`, for messages.
fn node_label(i: usize, replicas: usize) -> String {
    format!("shard {} replica {}", i / replicas, i % replicas)
}

fn remote_servers(ports: &[Ports], replicas: usize) -> String {
    let shards: String = ports
        .chunks(replicas)
        .map(|shard| {
            let replicas: String = shard
                .iter()
                .map(|p| format!("<replica><host>127.0.0.1</host><port>{}</port></replica>", p.tcp))
                .collect();
            format!("<shard><internal_replication>true</internal_replication>{replicas}</shard>")
        })
        .collect();
    format!("<remote_servers><{CLUSTER_NAME}>{shards}</{CLUSTER_NAME}></remote_servers>")
}

/// The cluster part of one node's config.xml.
fn node_config(remote_servers: &str, shard: usize, replica: usize, ports: &Ports, zookeeper_port: u16) -> String {
    let (shard_num, replica_num) = (shard + 1, replica + 1);
    format!(
        r#"    {remote_servers}
    <macros><shard>{shard_num}</shard><replica>s{shard_num}r{replica_num}</replica></macros>
    <interserver_http_host>127.0.0.1</interserver_http_host>
    <interserver_http_port>{interserver}</interserver_http_port>
    <zookeeper>
        <node><host>127.0.0.1</host><port>{zookeeper_port}</port></node>
        <session_timeout_ms>10000</session_timeout_ms>
        <operation_timeout_ms>5000</operation_timeout_ms>
    </zookeeper>
    <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>"#,
        interserver = ports.interserver
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_by_two_cluster_knows_its_shards_and_survives_a_node_and_a_shard_down() {
        let mut cluster = ClickHouseCluster::start(2, 2).unwrap();
        let layout = "SELECT shard_num, replica_num, port FROM system.clusters WHERE cluster = 'vero_cluster' \
                      ORDER BY shard_num, replica_num";
        let expected: String = (0..2)
            .flat_map(|s| (0..2).map(move |r| (s, r)))
            .map(|(s, r)| format!("{}\t{}\t{}\n", s + 1, r + 1, cluster.node(s, r).tcp_port()))
            .collect();
        for answer in cluster.query_each(layout).unwrap() {
            assert_eq!(answer, expected);
        }
        // Each node has its own macros (the `{shard}`/`{replica}` of Replicated tables).
        let macros: Vec<String> = cluster.query_each("SELECT substitution FROM system.macros ORDER BY macro").unwrap();
        assert_eq!(macros, ["s1r1\n1\n", "s1r2\n1\n", "s2r1\n2\n", "s2r2\n2\n"].map(String::from));

        cluster.kill_node(1, 0).unwrap();
        assert!(cluster.node(1, 0).query("SELECT 1").is_err(), "a killed node must not answer");
        cluster.restart_node(1, 0).unwrap();
        cluster.kill_shard(0).unwrap();
        assert!(cluster.node(0, 0).query("SELECT 1").is_err() && cluster.node(0, 1).query("SELECT 1").is_err());
        assert_eq!(cluster.node(1, 1).query("SELECT 1").unwrap(), "1\n", "the other shard keeps serving");
        cluster.restart_shard(0).unwrap();
        assert_eq!(cluster.query_each("SELECT 1").unwrap().len(), 4);

        // Without ZooKeeper a Replicated table refuses inserts; with it back, it takes them.
        let table =
            "CREATE TABLE default.r (x UInt32) ENGINE = ReplicatedMergeTree('/t/{shard}/r', '{replica}') ORDER BY x";
        cluster.query_each(table).unwrap();
        cluster.kill_zookeeper();
        assert!(cluster.node(0, 0).query("INSERT INTO default.r VALUES (1)").is_err(), "no insert without ZooKeeper");
        cluster.restart_zookeeper().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Err(e) = cluster.node(0, 0).query("INSERT INTO default.r VALUES (1)") {
            assert!(Instant::now() < deadline, "inserts did not come back after ZooKeeper: {e:#}");
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(cluster.node(0, 1).query("SYSTEM SYNC REPLICA default.r").unwrap(), "");
        assert_eq!(cluster.node(0, 1).query("SELECT count() FROM default.r").unwrap(), "1\n");
        assert_eq!(cluster.query_each("SELECT 1").unwrap().len(), 4, "every node survived the coordinator's restart");
        assert_eq!(cluster.http_urls()[1][0], cluster.node(1, 0).http_url());
    }
}
