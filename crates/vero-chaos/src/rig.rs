//! The system under test, as an operator would run it: Apache Kafka (one KRaft node,
//! or three with replication factor 3 and `min.insync.replicas=2`), a ClickHouse
//! server, two gateways, two event sinks and two profile consumers, each a separate
//! OS process started from the workspace's own binaries and config files
//! (`config/<service>/`, `VERO_ENV=local`, `VERO__*` for ports and addresses).
//!
//! The consumers are members of real consumer groups with dynamic membership (no
//! `group.instance.id`): a killed member's partitions move after its session times
//! out, a new member triggers a rebalance — what scaling a Deployment does.
//!
//! The event sinks reach ClickHouse through a [`Proxy`], so a fault can cut them off
//! from ClickHouse while the broker stays reachable. Everything listens on loopback
//! ports chosen free at start; everything is stopped when the rig drops.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use vero_testkit::clickhouse::ClickHouseServer;
use vero_testkit::kafka::{KafkaCluster, KafkaSettings, Placement};
use vero_testkit::netns;

use crate::check::Sql;
use crate::process::ServiceProcess;
use crate::proxy::Proxy;

pub const EVENTS_TOPIC: &str = "vero.events";
pub const DLQ_TOPIC: &str = "vero.events.dlq";
pub const PARTITIONS: i32 = 4;
/// The project and token of `config/gateway/local.toml`.
pub const PROJECT: &str = "local";
pub const TOKEN: &str = "your_auth_token";

/// Consumer timing (the SIGSTOP fault outlasts both).
pub const SESSION_TIMEOUT_MS: u64 = 10_000;
pub const MAX_POLL_INTERVAL_MS: u64 = 12_000;

/// How big a rig is.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Instances of each service.
    pub replicas: usize,
    /// Kafka nodes.
    pub brokers: usize,
    /// Run the last Kafka node on a network namespace of its own, so it can be cut off.
    pub isolate_last_broker: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Gateway,
    Sink,
    Profiles,
}

impl Role {
    pub fn binary(self) -> &'static str {
        match self {
            Role::Gateway => "ingest-gateway",
            Role::Sink => "event-sink",
            Role::Profiles => "profile-consumer",
        }
    }

    fn config_dir(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Sink => "event-sink",
            Role::Profiles => "profile-consumer",
        }
    }
}

pub struct Rig {
    /// Service logs; kept after the run (under `target/chaos/` by default).
    pub dir: PathBuf,
    pub broker: KafkaCluster,
    /// The test host the last broker runs on, when the scenario cuts it off (dropped
    /// after the broker).
    pub isolated: Option<netns::Host>,
    pub clickhouse: ClickHouseServer,
    /// Between the event sinks and ClickHouse.
    pub sink_link: Proxy,
    pub services: BTreeMap<(Role, usize), ServiceProcess>,
    /// Ops (`/readyz`, `/metrics`) port of each service.
    pub ops_ports: BTreeMap<(Role, usize), u16>,
    pub gateway_urls: Vec<String>,
    /// `VERO__*` settings every consumer gets on top of the rig's own (the group
    /// protocol under test, say).
    consumer_env: Vec<(String, String)>,
}

/// Where the workspace's service binaries are: `$VERO_CHAOS_BIN_DIR`, else the
/// directory of this executable (or its parent, for a test binary in `deps/`).
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("VERO_CHAOS_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().context("executable has no directory")?.to_owned();
    if dir.ends_with("deps") {
        dir.pop();
    }
    Ok(dir)
}

/// The services' config files: `$VERO_CHAOS_CONFIG_DIR`, else the workspace's `config/`.
fn config_root() -> PathBuf {
    std::env::var_os("VERO_CHAOS_CONFIG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config"))
}

impl Rig {
    /// Start every component with `replicas` instances of each service on `brokers`
    /// Kafka nodes and wait until the gateways and consumers are ready.
    pub async fn start(shape: Shape, consumer_env: &[(String, String)], dir: &Path) -> anyhow::Result<Self> {
        let Shape { replicas, brokers, isolate_last_broker } = shape;
        let bins = bin_dir()?;
        for role in [Role::Gateway, Role::Sink, Role::Profiles] {
            let path = bins.join(role.binary());
            anyhow::ensure!(
                path.is_file(),
                "{} not found (build the services first: `cargo build --bins`, or set VERO_CHAOS_BIN_DIR)",
                path.display()
            );
        }
        std::fs::create_dir_all(dir)?;
        let dir = dir.to_owned();
        // A broker to cut off runs on a test host of its own; then every broker listens
        // on an address that host can reach (this side of its link).
        let isolated = if isolate_last_broker { Some(tokio::task::block_in_place(netns::Host::create)?) } else { None };
        let placement = isolated.as_ref().map(|host| {
            let mut nodes = vec![Placement { address: host.host_address(), prefix: Vec::new() }; brokers - 1];
            nodes.push(Placement { address: host.address(), prefix: host.exec_prefix() });
            nodes
        });
        let kafka = KafkaSettings { nodes: brokers, placement, ..KafkaSettings::default() };
        let broker = tokio::task::block_in_place(|| KafkaCluster::start(kafka))?;
        let clickhouse = tokio::task::block_in_place(ClickHouseServer::start)?;
        let upstream: SocketAddr = ([127, 0, 0, 1], clickhouse.http_port()).into();
        let sink_link = Proxy::start(upstream).await?;
        broker.create_topic(EVENTS_TOPIC, PARTITIONS).await?;
        broker.create_topic(DLQ_TOPIC, PARTITIONS).await?;

        let mut rig = Self {
            dir,
            broker,
            isolated,
            clickhouse,
            sink_link,
            services: BTreeMap::new(),
            ops_ports: BTreeMap::new(),
            gateway_urls: Vec::new(),
            consumer_env: consumer_env.to_vec(),
        };
        for index in 0..replicas {
            for role in [Role::Gateway, Role::Sink, Role::Profiles] {
                rig.add_service(role, index)?;
            }
        }
        // One at a time, each ready before the next: the first consumer of each kind
        // applies the ClickHouse migrations and creates the profile topics alone, and
        // the groups form in few rebalance rounds.
        for key in rig.services.keys().copied().collect::<Vec<_>>() {
            rig.services.get_mut(&key).expect("service").start()?;
            rig.wait_ready_one(key, Duration::from_secs(90)).await?;
        }
        Ok(rig)
    }

    /// Configure (not start) instance `index` of `role`; a consumer joins its group
    /// when started, so this is also how the harness scales out.
    pub fn add_service(&mut self, role: Role, index: usize) -> anyhow::Result<()> {
        let bins = bin_dir()?;
        let config = config_root();
        let ops_port = vero_testkit::ports::free_port()?;
        let mut env = BTreeMap::from([
            ("VERO_ENV".to_owned(), "local".to_owned()),
            ("VERO_CONFIG_DIR".to_owned(), config.join(role.config_dir()).display().to_string()),
            ("VERO__KAFKA__BROKERS".to_owned(), self.broker.bootstrap_servers().to_owned()),
            ("RUST_LOG".to_owned(), "info,rdkafka=warn".to_owned()),
        ]);
        let ch_direct = self.clickhouse.http_url();
        match role {
            Role::Gateway => {
                env.insert("VERO__HTTP__LISTEN".into(), format!("127.0.0.1:{ops_port}"));
                self.gateway_urls.push(format!("http://127.0.0.1:{ops_port}"));
            }
            Role::Sink => {
                env.insert("VERO__OPS__LISTEN".into(), format!("127.0.0.1:{ops_port}"));
                env.insert("VERO__CLICKHOUSE__URL".into(), format!("http://{}", self.sink_link.addr()));
                env.insert("VERO__CLICKHOUSE__REQUEST_TIMEOUT_MS".into(), "5000".into());
                env.insert("VERO__KAFKA__SESSION_TIMEOUT_MS".into(), SESSION_TIMEOUT_MS.to_string());
                env.insert("VERO__KAFKA__MAX_POLL_INTERVAL_MS".into(), MAX_POLL_INTERVAL_MS.to_string());
                // Dynamic membership (config/*/local.toml gives `make run`'s single
                // member a static id).
                env.insert("VERO__KAFKA__GROUP_INSTANCE_ID".into(), String::new());
                env.insert("VERO__RETRY__MAX_BACKOFF_MS".into(), "1000".into());
            }
            Role::Profiles => {
                env.insert("VERO__OPS__LISTEN".into(), format!("127.0.0.1:{ops_port}"));
                env.insert("VERO__CLICKHOUSE__URL".into(), ch_direct);
                env.insert("VERO__CLICKHOUSE__REQUEST_TIMEOUT_MS".into(), "5000".into());
                env.insert("VERO__KAFKA__CREATE_TOPICS".into(), "true".into());
                let replication = self.broker.node_ids().len().min(3);
                env.insert("VERO__KAFKA__REPLICATION_FACTOR".into(), replication.to_string());
                env.insert("VERO__KAFKA__SESSION_TIMEOUT_MS".into(), SESSION_TIMEOUT_MS.to_string());
                env.insert("VERO__KAFKA__MAX_POLL_INTERVAL_MS".into(), MAX_POLL_INTERVAL_MS.to_string());
                // Dynamic membership (config/*/local.toml gives `make run`'s single
                // member a static id).
                env.insert("VERO__KAFKA__GROUP_INSTANCE_ID".into(), String::new());
                env.insert("VERO__RETRY__MAX_BACKOFF_MS".into(), "1000".into());
                // Each instance keeps its local store across its restarts (a kill -9
                // resumes from the checkpoint), in the smallest memory budget, so the
                // ledger's users do not all fit in the cache and are read from disk.
                let state = self.dir.join(format!("profile-state-{index}"));
                env.insert("VERO__STATE__DIR".into(), state.display().to_string());
                env.insert("VERO__STATE__MEMORY_MB".into(), "16".into());
            }
        }
        if role != Role::Gateway {
            env.extend(self.consumer_env.iter().cloned());
        }
        let name = format!("{}-{index}", role.binary());
        let process = ServiceProcess::new(&name, bins.join(role.binary()), env, &self.dir);
        self.services.insert((role, index), process);
        self.ops_ports.insert((role, index), ops_port);
        Ok(())
    }

    pub fn service(&mut self, role: Role, index: usize) -> &mut ServiceProcess {
        self.services.get_mut(&(role, index)).expect("no such service")
    }

    /// The service answers `/readyz` with 200.
    pub async fn wait_ready_one(&mut self, key: (Role, usize), timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let port = self.ops_ports[&key];
        loop {
            if ready(port).await {
                return Ok(());
            }
            if let Some(status) = self.services.get_mut(&key).and_then(ServiceProcess::exited) {
                bail!("{:?} exited while starting ({status}); see {}", key, self.log_of(key).display());
            }
            if Instant::now() > deadline {
                bail!("{key:?} not ready within {timeout:?}; see {}", self.log_of(key).display());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn log_of(&self, key: (Role, usize)) -> PathBuf {
        self.services[&key].log_path().to_owned()
    }

    /// Produce records that no consumer can decode, straight to the events topic (the
    /// gateway would refuse them): they must end up in the DLQ, and only they.
    pub async fn produce_poison(&self, keys: &[String]) -> anyhow::Result<()> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", self.broker.bootstrap_servers())
            .set("acks", "all")
            .create()?;
        for key in keys {
            let record = FutureRecord::to(EVENTS_TOPIC).key(key.as_str()).payload("this is not an Avro record");
            producer
                .send(record, Duration::from_secs(30))
                .await
                .map_err(|(e, _)| anyhow::anyhow!("producing poison: {e}"))?;
        }
        Ok(())
    }

    /// Keys of every record in the DLQ topic.
    pub fn dead_letter_keys(&self) -> anyhow::Result<Vec<String>> {
        let records = vero_testkit::kafka_probe::read_topic(
            self.broker.bootstrap_servers(),
            DLQ_TOPIC,
            usize::MAX,
            Duration::from_secs(8),
        )?;
        Ok(records.iter().map(|r| r.key_str().to_owned()).collect())
    }

    /// The ends of every service log, for a failure report.
    pub fn logs_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for service in self.services.values() {
            let text = std::fs::read_to_string(service.log_path()).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(lines).collect();
            out.push_str(&format!("--- {}\n", service.name));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// Stop the services cleanly (SIGTERM), consumers first.
    pub fn stop(&mut self) {
        for service in self.services.values_mut().rev() {
            let _ = service.terminate(Duration::from_secs(15));
        }
    }
}

impl Sql for Rig {
    fn sql(&self, query: &str) -> anyhow::Result<String> {
        tokio::task::block_in_place(|| self.clickhouse.query(query))
    }
}

async fn ready(port: u16) -> bool {
    let answer = vero_testkit::http::get(([127, 0, 0, 1], port).into(), "/readyz", Duration::from_secs(2)).await;
    answer.is_ok_and(|answer| answer.starts_with("HTTP/1.1 200"))
}
