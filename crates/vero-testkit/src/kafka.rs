//! Apache Kafka itself (KRaft, combined broker + controller nodes) as processes on
//! free loopback ports: one node for most tests and `make run`, three for the
//! replication and failover tests (replication factor 3, `min.insync.replicas=2`).
//!
//! The broker is the Maven Central artifact pinned in `deploy/kafka-local/pom.xml`;
//! `make deps` copies it and its runtime dependencies into [`libs_dir`] and the JDK
//! comes from Debian. Each node gets a `server.properties` written here, is formatted
//! with `kafka.tools.StorageTool` and runs as `java -cp 'libs/*' kafka.Kafka`, its
//! output in `<node dir>/kafka.log`, never on the test's own output.
//!
//! With [`KafkaSettings::security`] every node also listens with `SASL_SSL` (SCRAM-SHA-512
//! and -256 users created at format time with StorageTool's `--add-scram`, PLAIN users in the
//! listener's JAAS line) and with `SSL` requiring a client certificate, both on the
//! certificate the caller gives ([`crate::tls`] makes them). `PLAINTEXT` stays the
//! inter-broker listener and what [`KafkaCluster::bootstrap_servers`] names, so the
//! kit's own clients (topic creation, metadata) need no credentials.
//!
//! Processes are tied to the test process: they are spawned with `PR_SET_PDEATHSIG`
//! from a thread that lives as long as the process ([`crate::process::spawn_tied`]),
//! so a shared cluster in a `static` (never dropped) or a test killed by a signal
//! leaves no JVM behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use crate::ports::free_ports;
use crate::process::{spawn_tied, wait_started, ChildGuard, Signal};

/// The broker version `deploy/kafka-local/pom.xml` pins (a unit test keeps them equal).
pub const KAFKA_VERSION: &str = "4.1.1";
/// The logging configuration every node runs with (INFO to the node's log file).
const LOG4J2: &str = include_str!("../../../deploy/kafka-local/log4j2.properties");
/// A JVM start, the format and the first metadata answer take ~6 s on an idle 2-core
/// machine; several at once under the test suite's load take much longer.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the broker's jars are: `$VERO_KAFKA_LIBS`, else
/// `~/.cache/vero/kafka-<version>/libs` (what `make deps` fills).
pub fn libs_dir() -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("VERO_KAFKA_LIBS") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME").context("HOME is not set")?;
            PathBuf::from(home).join(format!(".cache/vero/kafka-{KAFKA_VERSION}/libs"))
        }
    };
    let broker_jar = dir.join(format!("kafka_2.13-{KAFKA_VERSION}.jar"));
    anyhow::ensure!(
        broker_jar.is_file(),
        "Apache Kafka {KAFKA_VERSION} is not installed: {} is missing (run `make deps`, which copies it from \
         Maven Central with deploy/kafka-local/pom.xml, or set VERO_KAFKA_LIBS)",
        broker_jar.display()
    );
    Ok(dir)
}

/// One single-node cluster for the whole test process, started on first use: tests of
/// one binary share it (each with its own topics and groups, [`crate::unique_name`])
/// rather than paying a JVM start each. Never dropped; its process dies with the test
/// process (see the module docs). Tests that stop or kill a broker start their own.
pub fn shared() -> anyhow::Result<&'static KafkaCluster> {
    static SHARED: std::sync::OnceLock<Result<KafkaCluster, String>> = std::sync::OnceLock::new();
    // Blocking while it starts is fine: every caller needs it before anything else.
    match SHARED.get_or_init(|| KafkaCluster::single().map_err(|e| format!("{e:#}"))) {
        Ok(kafka) => Ok(kafka),
        Err(e) => bail!("the shared Kafka broker did not start: {e}"),
    }
}

/// How to lay out a cluster. `Default` is one node in a temp dir on free ports.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// Combined broker + controller nodes (1 or 3 in practice).
    pub nodes: usize,
    /// Keep the data here (`make run`); `None` is a temp dir removed on drop.
    pub dir: Option<PathBuf>,
    /// The client listener's port per node; `None` draws free ports.
    pub broker_ports: Option<Vec<u16>>,
    /// The controller listener's port per node; `None` draws free ports.
    pub controller_ports: Option<Vec<u16>>,
    /// Maximum JVM heap per node.
    pub heap: String,
    /// Where each node listens and how it is started; `None`: 127.0.0.1, directly.
    pub placement: Option<Vec<Placement>>,
    /// Extra `server.properties` lines, later ones win.
    pub properties: Vec<(String, String)>,
    /// `SASL_SSL` and `SSL` listeners next to `PLAINTEXT` (see the module docs).
    pub security: Option<KafkaSecurity>,
}

/// The secured listeners of every node.
#[derive(Debug, Clone)]
pub struct KafkaSecurity {
    /// The broker's private key (unencrypted PKCS#8 PEM) followed by its certificate
    /// chain, in one file (Kafka's PEM key store).
    pub key_store: PathBuf,
    /// PEM certificates of the CAs the `SSL` listener takes client certificates from.
    pub trust_store: PathBuf,
    /// SCRAM users `(name, password)` of the `SASL_SSL` listener, for SCRAM-SHA-512 and
    /// SCRAM-SHA-256 alike.
    pub scram_users: Vec<(String, String)>,
    /// PLAIN users `(name, password)` of the `SASL_SSL` listener.
    pub plain_users: Vec<(String, String)>,
}

/// A client listener of the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Plaintext,
    /// SASL (SCRAM-SHA-512 or PLAIN) over TLS.
    SaslSsl,
    /// TLS with a required client certificate.
    Ssl,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            nodes: 1,
            dir: None,
            broker_ports: None,
            controller_ports: None,
            heap: "384m".to_owned(),
            placement: None,
            properties: Vec::new(),
            security: None,
        }
    }
}

/// Where a node runs: the address its plaintext and controller listeners bind and
/// advertise, and a command prefix to start it with (`ip netns exec NAME` for a node
/// on a [`crate::netns::Host`]).
#[derive(Debug, Clone)]
pub struct Placement {
    pub address: std::net::Ipv4Addr,
    pub prefix: Vec<String>,
}

/// One node: its id (1-based), address, ports, directory and process.
struct Node {
    id: i32,
    placement: Placement,
    broker_port: u16,
    controller_port: u16,
    /// The `SASL_SSL` and `SSL` listeners' ports, with [`KafkaSettings::security`].
    secure_ports: Option<(u16, u16)>,
    dir: PathBuf,
    child: Option<ChildGuard>,
}

/// A running KRaft cluster; every node is killed when the handle drops.
pub struct KafkaCluster {
    nodes: Vec<Node>,
    libs: PathBuf,
    heap: String,
    bootstrap: String,
    /// Owns (and on drop removes) the nodes' directories when they are temporary.
    _temp: Option<tempfile::TempDir>,
}

impl KafkaCluster {
    /// One node in a temp dir.
    pub fn single() -> anyhow::Result<Self> {
        Self::start(KafkaSettings::default())
    }

    /// Three nodes, replication factor 3 and `min.insync.replicas=2` by default.
    pub fn three() -> anyhow::Result<Self> {
        Self::start(KafkaSettings { nodes: 3, ..KafkaSettings::default() })
    }

    /// Format (when not formatted yet) and start every node, then wait until every
    /// broker is in the cluster's metadata.
    pub fn start(settings: KafkaSettings) -> anyhow::Result<Self> {
        let libs = libs_dir()?;
        let (root, temp) = match &settings.dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let temp = tempfile::Builder::new().prefix("vero-kafka-").tempdir()?;
                (temp.path().to_owned(), Some(temp))
            }
        };
        let n = settings.nodes;
        anyhow::ensure!(n >= 1, "a Kafka cluster needs at least one node");
        // Ports drawn all at once so they are distinct.
        let secured = settings.security.is_some();
        let drawn = free_ports(if secured { 4 * n } else { 2 * n })?;
        let chosen = |ports: &Option<Vec<u16>>, drawn: &[u16]| match ports {
            Some(ports) if ports.len() != n => Err(anyhow::anyhow!("{} ports given for {n} nodes", ports.len())),
            Some(ports) => Ok(ports.clone()),
            None => Ok(drawn.to_vec()),
        };
        let broker_ports = chosen(&settings.broker_ports, &drawn[..n])?;
        let controller_ports = chosen(&settings.controller_ports, &drawn[n..])?;
        let nodes: Vec<Node> = (0..n)
            .map(|i| Node {
                id: i as i32 + 1,
                placement: settings
                    .placement
                    .as_ref()
                    .and_then(|p| p.get(i).cloned())
                    .unwrap_or(Placement { address: std::net::Ipv4Addr::LOCALHOST, prefix: Vec::new() }),
                broker_port: broker_ports[i],
                controller_port: controller_ports[i],
                secure_ports: secured.then(|| (drawn[2 * n + i], drawn[3 * n + i])),
                dir: root.join(format!("node-{}", i + 1)),
                child: None,
            })
            .collect();
        let voters = nodes
            .iter()
            .map(|node| format!("{}@{}:{}", node.id, node.placement.address, node.controller_port))
            .collect::<Vec<_>>()
            .join(",");
        let cluster_id = cluster_id(&root)?;
        for node in &nodes {
            std::fs::create_dir_all(&node.dir).with_context(|| format!("creating {}", node.dir.display()))?;
            let mut properties = server_properties(node, &voters, n, &settings.properties);
            if let Some(security) = &settings.security {
                properties = secured_properties(properties, node, security);
            }
            std::fs::write(node.dir.join("server.properties"), properties)?;
            std::fs::write(node.dir.join("log4j2.properties"), LOG4J2)?;
        }
        // The formats are independent JVMs: run them side by side.
        let formats = nodes
            .iter()
            .filter(|node| !node.dir.join("data/meta.properties").exists())
            .map(|node| {
                let mut command = format_command(&libs, &node.dir, &cluster_id);
                for (name, password) in settings.security.iter().flat_map(|s| &s.scram_users) {
                    for mechanism in ["SCRAM-SHA-512", "SCRAM-SHA-256"] {
                        command.arg("--add-scram").arg(format!("{mechanism}=[name={name},password={password}]"));
                    }
                }
                command.spawn().context("starting the Kafka storage tool")
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        for format in formats {
            let output = format.wait_with_output()?;
            if !output.status.success() {
                bail!("formatting Kafka storage failed: {}", String::from_utf8_lossy(&output.stderr));
            }
        }
        let bootstrap = nodes
            .iter()
            .map(|node| format!("{}:{}", node.placement.address, node.broker_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Self { nodes, libs, heap: settings.heap, bootstrap, _temp: temp };
        for i in 0..n {
            cluster.spawn(i)?;
        }
        cluster.wait_ready()?;
        Ok(cluster)
    }

    fn spawn(&mut self, index: usize) -> anyhow::Result<()> {
        let node = &self.nodes[index];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(node.dir.join("kafka.log"))?;
        let stdout = log.try_clone()?;
        let (program, prefix): (&str, Vec<&str>) = match node.placement.prefix.split_first() {
            Some((program, rest)) => (program, rest.iter().map(String::as_str).chain(["java"]).collect()),
            None => ("java", Vec::new()),
        };
        let child = spawn_tied(program, |command| {
            command.args(prefix);
            java_args(command, &self.libs, &node.dir, &self.heap);
            command.arg("kafka.Kafka").arg(node.dir.join("server.properties"));
            command.stdin(Stdio::null()).stdout(stdout).stderr(log);
        })
        .context("starting java for Kafka (setpriv from util-linux, the JDK from `make deps`)")?;
        self.nodes[index].child = Some(child);
        Ok(())
    }

    /// Wait until every running node accepts connections and every one of them is
    /// a registered, unfenced broker in the metadata.
    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let running: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.nodes[i].child.is_some()).collect();
        let expected: Vec<i32> = running.iter().map(|&i| self.nodes[i].id).collect();
        let bootstrap = self.bootstrap.clone();
        for &i in &running {
            let node = &mut self.nodes[i];
            let address = std::net::SocketAddr::from((node.placement.address, node.broker_port));
            let child = node.child.as_mut().expect("running");
            wait_started(child, "Kafka", &format!("accept connections on {address}"), START_TIMEOUT, || {
                std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok()
            })
            .map_err(|e| anyhow::anyhow!("{e}; log:\n{}", tail(&node.dir.join("kafka.log"))))?;
        }
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match broker_ids(&bootstrap) {
                Ok(ids) if expected.iter().all(|id| ids.contains(id)) => return Ok(()),
                Ok(_) | Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
                Ok(ids) => bail!("Kafka brokers {ids:?} registered, {expected:?} expected, after {START_TIMEOUT:?}"),
                Err(e) => return Err(e.context("Kafka metadata")),
            }
        }
    }

    /// `host:port,...` of every node, to give clients as `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// `host:port,...` of every node's `listener` (`None` for a secured listener of a
    /// cluster started without [`KafkaSettings::security`]).
    pub fn listener_servers(&self, listener: Listener) -> Option<String> {
        let port = |node: &Node| match listener {
            Listener::Plaintext => Some(node.broker_port),
            Listener::SaslSsl => node.secure_ports.map(|(sasl, _)| sasl),
            Listener::Ssl => node.secure_ports.map(|(_, ssl)| ssl),
        };
        let ports = self.nodes.iter().map(port).collect::<Option<Vec<u16>>>()?;
        Some(ports.iter().map(|port| format!("127.0.0.1:{port}")).collect::<Vec<_>>().join(","))
    }

    /// Set `user`'s SCRAM-SHA-512 password, as an operator does with
    /// `kafka-configs.sh --alter --add-config 'SCRAM-SHA-512=[password=…]' --entity-type
    /// users --entity-name <user>` (Kafka's own ConfigCommand, over `PLAINTEXT`).
    pub fn set_scram_password(&self, user: &str, password: &str) -> anyhow::Result<()> {
        let mut command = Command::new("java");
        java_args(&mut command, &self.libs, &self.nodes[0].dir, "256m");
        command
            .args(["kafka.admin.ConfigCommand", "--bootstrap-server", &self.bootstrap, "--alter", "--add-config"])
            .arg(format!("SCRAM-SHA-512=[password={password}]"))
            .args(["--entity-type", "users", "--entity-name", user])
            .env("VERO_KAFKA_LOG_LEVEL", "WARN")
            .stdin(Stdio::null());
        let output = command.output().context("running Kafka's ConfigCommand")?;
        anyhow::ensure!(
            output.status.success(),
            "setting the SCRAM password of {user} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    }

    /// The node ids, 1-based.
    pub fn node_ids(&self) -> Vec<i32> {
        self.nodes.iter().map(|node| node.id).collect()
    }

    /// The client port of node `id`.
    pub fn broker_port(&self, id: i32) -> u16 {
        self.node(id).broker_port
    }

    fn node(&self, id: i32) -> &Node {
        self.nodes.iter().find(|node| node.id == id).unwrap_or_else(|| panic!("no Kafka node {id}"))
    }

    fn index(&self, id: i32) -> usize {
        self.nodes.iter().position(|node| node.id == id).unwrap_or_else(|| panic!("no Kafka node {id}"))
    }

    /// `kill -9` node `id`: a crash, as clients and the other nodes see it.
    pub fn kill(&mut self, id: i32) {
        let index = self.index(id);
        if let Some(mut child) = self.nodes[index].child.take() {
            let _ = child.kill9();
        }
    }

    /// SIGTERM node `id` (a controlled shutdown) and wait up to 60 s, then kill it.
    pub fn stop(&mut self, id: i32) {
        let index = self.index(id);
        if let Some(mut child) = self.nodes[index].child.take() {
            let _ = child.terminate(Duration::from_secs(60));
        }
    }

    /// Whether node `id`'s process is alive (false after it died on its own).
    pub fn is_running(&mut self, id: i32) -> bool {
        let index = self.index(id);
        self.nodes[index].child.as_mut().is_some_and(ChildGuard::is_running)
    }

    /// Controlled shutdown of every node, all at once (a lone node waits for no peer).
    pub fn stop_all(&mut self) {
        for node in &self.nodes {
            if let Some(child) = &node.child {
                let _ = child.signal(Signal::SIGTERM);
            }
        }
        for id in self.node_ids() {
            self.stop(id);
        }
    }

    /// SIGSTOP (`frozen = true`) or SIGCONT node `id`: a hung process.
    pub fn freeze(&self, id: i32, frozen: bool) {
        if let Some(child) = &self.node(id).child {
            let _ = if frozen { child.freeze() } else { child.thaw() };
        }
    }

    /// Start node `id` again on its ports and data (after [`Self::kill`] or
    /// [`Self::stop`]) and wait until it is a broker in the metadata again.
    pub fn restart(&mut self, id: i32) -> anyhow::Result<()> {
        self.kill(id);
        let index = self.index(id);
        self.spawn(index)?;
        self.wait_ready()
    }

    /// What node `id` logged so far.
    pub fn log(&self, id: i32) -> String {
        std::fs::read_to_string(self.node(id).dir.join("kafka.log")).unwrap_or_default()
    }

    /// The node that leads the KRaft quorum now, read from the nodes' logs (the
    /// metadata a client gets names any broker as "controller" under KRaft). The
    /// highest epoch any running node reports as won is the current one.
    pub fn active_controller(&self) -> Option<i32> {
        let mut best: Option<(u64, i32)> = None;
        for node in self.nodes.iter().filter(|node| node.child.is_some()) {
            for line in self.log(node.id).lines() {
                // "... Completed transition to Leader(localReplicaKey=..., epoch=7, ..."
                let Some(rest) = line.split("Completed transition to Leader(").nth(1) else { continue };
                let epoch = rest.split("epoch=").nth(1).and_then(|e| e.split([',', ')']).next()?.trim().parse().ok());
                if let Some(epoch) = epoch {
                    if best.is_none_or(|(e, _)| epoch > e) {
                        best = Some((epoch, node.id));
                    }
                }
            }
        }
        best.map(|(_, id)| id)
    }

    /// The broker that leads `topic`'s `partition` now, from the metadata.
    pub fn leader_of(&self, topic: &str, partition: i32) -> anyhow::Result<i32> {
        let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &self.bootstrap).create()?;
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let leader = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .and_then(|t| t.partitions().iter().find(|p| p.id() == partition).map(|p| p.leader()));
        leader.with_context(|| format!("{topic}/{partition} is not in the metadata"))
    }

    /// Delete `topic`'s `partition` records before `offset` (the DeleteRecords admin
    /// call an operator makes; what retention does to records nobody read in time).
    pub async fn delete_records(&self, topic: &str, partition: i32, offset: i64) -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .context("creating an admin client")?;
        let mut list = rdkafka::TopicPartitionList::new();
        list.add_partition_offset(topic, partition, rdkafka::Offset::Offset(offset))?;
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let result = admin.delete_records(&list, &options).await.context("DeleteRecords request")?;
        for element in result.elements() {
            element.error().with_context(|| format!("deleting records of {topic}/{partition}"))?;
        }
        Ok(())
    }

    /// Create `name` with `partitions` partitions, replicated on up to 3 nodes
    /// (`min.insync.replicas` is the cluster's). An existing topic is left alone.
    pub async fn create_topic(&self, name: &str, partitions: i32) -> anyhow::Result<()> {
        self.create_topic_with(name, partitions, &[]).await
    }

    /// [`Self::create_topic`] from synchronous code (also inside a runtime: it runs on
    /// a thread of its own).
    pub fn create_topic_blocking(&self, name: &str, partitions: i32) -> anyhow::Result<()> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                    runtime.block_on(self.create_topic(name, partitions))
                })
                .join()
                .map_err(|_| anyhow::anyhow!("creating {name} panicked"))?
        })
    }

    /// [`Self::create_topic`] with topic configs (`cleanup.policy=compact`, say).
    pub async fn create_topic_with(&self, name: &str, partitions: i32, config: &[(&str, &str)]) -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .context("creating an admin client")?;
        let replication = self.nodes.len().min(3) as i32;
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replication));
        for (key, value) in config {
            topic = topic.set(key, value);
        }
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        for result in admin.create_topics([&topic], &options).await.context("CreateTopics request")? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => bail!("creating topic {topic}: {code}"),
            }
        }
        Ok(())
    }
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill9();
            }
        }
    }
}

/// A cluster id kept beside the nodes, so a kept directory (`make run`) restarts as
/// the same cluster: Kafka refuses storage formatted for another id.
fn cluster_id(root: &Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(root)?;
    let file = root.join("cluster.id");
    // An id starting with '-' was never usable (see below), so nothing was formatted
    // with it: draw a new one.
    if let Ok(id) = std::fs::read_to_string(&file) {
        if !id.trim().starts_with('-') {
            return Ok(id.trim().to_owned());
        }
    }
    // 16 random bytes, base64url without padding: the shape StorageTool expects. Not
    // starting with '-', which StorageTool's argument parser takes for an option (one
    // id in 64 did, and the start failed); Kafka's own `Uuid.randomUuid` redraws too.
    let id = loop {
        let mut bytes = [0u8; 16];
        getrandom(&mut bytes)?;
        let id = base64url(&bytes);
        if !id.starts_with('-') {
            break id;
        }
    };
    std::fs::write(&file, &id)?;
    Ok(id)
}

fn getrandom(bytes: &mut [u8]) -> anyhow::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(bytes)?;
    Ok(())
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn server_properties(node: &Node, voters: &str, nodes: usize, extra: &[(String, String)]) -> String {
    let replication = nodes.min(3);
    let min_isr = if nodes >= 3 { 2 } else { 1 };
    let mut lines = vec![
        "process.roles=broker,controller".to_owned(),
        format!("node.id={}", node.id),
        format!("controller.quorum.voters={voters}"),
        format!(
            "listeners=PLAINTEXT://{a}:{},CONTROLLER://{a}:{}",
            node.broker_port,
            node.controller_port,
            a = node.placement.address
        ),
        format!("advertised.listeners=PLAINTEXT://{}:{}", node.placement.address, node.broker_port),
        "controller.listener.names=CONTROLLER".to_owned(),
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT".to_owned(),
        "inter.broker.listener.name=PLAINTEXT".to_owned(),
        format!("log.dirs={}", node.dir.join("data").display()),
        format!("default.replication.factor={replication}"),
        format!("min.insync.replicas={min_isr}"),
        format!("offsets.topic.replication.factor={replication}"),
        // Fewer group-coordinator partitions than the default 50: the first group's
        // join creates them all, which takes seconds on a loaded machine.
        "offsets.topic.num.partitions=6".to_owned(),
        format!("transaction.state.log.replication.factor={replication}"),
        format!("transaction.state.log.min.isr={min_isr}"),
        format!("share.coordinator.state.topic.replication.factor={replication}"),
        format!("share.coordinator.state.topic.min.isr={min_isr}"),
        // Tests and `make run` start consumers right away: no 3 s wait for more members.
        "group.initial.rebalance.delay.ms=0".to_owned(),
        // KIP-848 groups time a member out on the broker's setting (45 s by default):
        // the 10 s the consumers ask for under the classic protocol
        // (`kafka.session_timeout_ms`), so both protocols are measured alike.
        "group.consumer.min.session.timeout.ms=6000".to_owned(),
        "group.consumer.session.timeout.ms=10000".to_owned(),
        "num.partitions=4".to_owned(),
    ];
    lines.extend(extra.iter().map(|(key, value)| format!("{key}={value}")));
    lines.join("\n") + "\n"
}

/// `lines` (from [`server_properties`]) with the `SASL_SSL` and `SSL` listeners added.
fn secured_properties(lines: String, node: &Node, security: &KafkaSecurity) -> String {
    let (sasl, ssl) = node.secure_ports.expect("secured node");
    let plain_users: String =
        security.plain_users.iter().map(|(name, password)| format!(" user_{name}=\"{password}\"")).collect();
    let mut out = String::new();
    for line in lines.lines() {
        let line = match line.split_once('=') {
            Some(("listeners", value)) => {
                format!("listeners={value},SASL_SSL://127.0.0.1:{sasl},SSL://127.0.0.1:{ssl}")
            }
            Some(("advertised.listeners", value)) => {
                format!("advertised.listeners={value},SASL_SSL://127.0.0.1:{sasl},SSL://127.0.0.1:{ssl}")
            }
            Some(("listener.security.protocol.map", value)) => {
                format!("listener.security.protocol.map={value},SASL_SSL:SASL_SSL,SSL:SSL")
            }
            _ => line.to_owned(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    for line in [
        "sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN".to_owned(),
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=\
         org.apache.kafka.common.security.scram.ScramLoginModule required;"
            .to_owned(),
        "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=\
         org.apache.kafka.common.security.scram.ScramLoginModule required;"
            .to_owned(),
        format!(
            "listener.name.sasl_ssl.plain.sasl.jaas.config=\
             org.apache.kafka.common.security.plain.PlainLoginModule required{plain_users};"
        ),
        "ssl.keystore.type=PEM".to_owned(),
        format!("ssl.keystore.location={}", security.key_store.display()),
        "ssl.truststore.type=PEM".to_owned(),
        format!("ssl.truststore.location={}", security.trust_store.display()),
        "listener.name.ssl.ssl.client.auth=required".to_owned(),
    ] {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Arguments for `java` with the broker's classpath and logging, run in `dir`.
fn java_args(command: &mut Command, libs: &Path, dir: &Path, heap: &str) {
    command
        .arg(format!("-Xmx{heap}"))
        .arg("-Xms64m")
        .arg("-Djava.awt.headless=true")
        .arg(format!("-Dlog4j2.configurationFile={}", dir.join("log4j2.properties").display()))
        .arg("-cp")
        .arg(format!("{}/*", libs.display()))
        .current_dir(dir);
}

fn format_command(libs: &Path, dir: &Path, cluster_id: &str) -> Command {
    let mut command = Command::new("java");
    java_args(&mut command, libs, dir, "256m");
    command
        .args(["kafka.tools.StorageTool", "format", "--ignore-formatted", "-t", cluster_id, "-c"])
        .arg(dir.join("server.properties"))
        .env("VERO_KAFKA_LOG_LEVEL", "WARN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// The ids of the brokers in the metadata, asked of any node.
fn broker_ids(bootstrap: &str) -> anyhow::Result<Vec<i32>> {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(5))?;
    Ok(metadata.brokers().iter().map(|broker| broker.id()).collect())
}

/// The last 40 lines of a log, for start-up errors.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pom_pins_the_version_the_kit_looks_for() {
        let pom = include_str!("../../../deploy/kafka-local/pom.xml");
        assert!(pom.contains(&format!("<kafka.version>{KAFKA_VERSION}</kafka.version>")));
    }

    #[test]
    fn cluster_ids_have_the_shape_the_storage_tool_takes() {
        assert_eq!(base64url(&[0xff; 16]).len(), 22);
        assert_eq!(base64url(b"Man"), "TWFu");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..500 {
            let _ = std::fs::remove_file(dir.path().join("cluster.id"));
            let id = cluster_id(dir.path()).unwrap();
            assert!(!id.starts_with('-') && id.len() == 22, "{id}");
        }
        std::fs::write(dir.path().join("cluster.id"), "-startsWithADash123456").unwrap();
        assert!(!cluster_id(dir.path()).unwrap().starts_with('-'), "an unusable stored id is replaced");
    }
}
