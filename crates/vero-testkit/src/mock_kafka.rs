//! librdkafka's mock cluster on a dedicated thread.
//!
//! `rdkafka::mocking::MockCluster` borrows a client handle and is `!Send`, so it cannot
//! live in a tokio task or be shared between test threads. [`MockKafka`] spawns a thread
//! that creates and owns the cluster and serves [`Command`]s sent over a channel until
//! the handle is dropped, at which point the cluster (and all its data) is destroyed.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Context};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

type Reply = mpsc::Sender<Result<(), String>>;

enum Command {
    CreateTopic { name: String, partitions: i32, reply: Reply },
    BrokerDown { broker: i32, reply: Reply },
    BrokerUp { broker: i32, reply: Reply },
    RequestErrors { api: RDKafkaApiKey, errors: Vec<RDKafkaRespErr>, reply: Reply },
    RoundTripTime { broker: i32, delay: Duration, reply: Reply },
}

/// A running mock cluster. Dropping it stops the cluster.
pub struct MockKafka {
    bootstrap: String,
    brokers: i32,
    commands: Option<mpsc::Sender<Command>>,
    thread: Option<JoinHandle<()>>,
}

impl MockKafka {
    /// Start a cluster of `brokers` brokers.
    pub fn start(brokers: i32) -> anyhow::Result<Self> {
        let (commands, inbox) = mpsc::channel::<Command>();
        let (ready, started) = mpsc::channel::<Result<String, String>>();
        let thread = std::thread::Builder::new()
            .name("mock-kafka".into())
            .spawn(move || {
                let cluster = match MockCluster::new(brokers) {
                    Ok(cluster) => cluster,
                    Err(e) => {
                        let _ = ready.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = ready.send(Ok(cluster.bootstrap_servers()));
                // Serve until every sender is gone (the handle was dropped).
                for command in inbox {
                    serve(&cluster, command);
                }
            })
            .context("spawning the mock-kafka thread")?;
        let bootstrap = started
            .recv()
            .context("mock-kafka thread exited before starting")?
            .map_err(|e| anyhow!("creating the librdkafka mock cluster: {e}"))?;
        Ok(Self { bootstrap, brokers, commands: Some(commands), thread: Some(thread) })
    }

    /// `host:port,...` to give clients as `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    pub fn broker_count(&self) -> i32 {
        self.brokers
    }

    pub fn create_topic(&self, name: &str, partitions: i32) -> anyhow::Result<()> {
        self.call(|reply| Command::CreateTopic { name: name.to_owned(), partitions, reply })
    }

    /// Take one broker down (ids start at 1); clients see connection failures.
    pub fn broker_down(&self, broker: i32) -> anyhow::Result<()> {
        self.call(|reply| Command::BrokerDown { broker, reply })
    }

    pub fn broker_up(&self, broker: i32) -> anyhow::Result<()> {
        self.call(|reply| Command::BrokerUp { broker, reply })
    }

    /// Take every broker down: the whole cluster is unreachable.
    pub fn all_brokers_down(&self) -> anyhow::Result<()> {
        (1..=self.brokers).try_for_each(|b| self.broker_down(b))
    }

    pub fn all_brokers_up(&self) -> anyhow::Result<()> {
        (1..=self.brokers).try_for_each(|b| self.broker_up(b))
    }

    /// The next requests of `api` fail with `errors`, one per request, in order.
    pub fn request_errors(&self, api: RDKafkaApiKey, errors: &[RDKafkaRespErr]) -> anyhow::Result<()> {
        let errors = errors.to_vec();
        self.call(|reply| Command::RequestErrors { api, errors, reply })
    }

    /// Delay every response of `broker` by `delay`.
    pub fn round_trip_time(&self, broker: i32, delay: Duration) -> anyhow::Result<()> {
        self.call(|reply| Command::RoundTripTime { broker, delay, reply })
    }

    fn call(&self, make: impl FnOnce(Reply) -> Command) -> anyhow::Result<()> {
        let (reply, answer) = mpsc::channel();
        self.commands
            .as_ref()
            .expect("commands sender lives until drop")
            .send(make(reply))
            .map_err(|_| anyhow!("mock-kafka thread is gone"))?;
        answer.recv().map_err(|_| anyhow!("mock-kafka thread is gone"))?.map_err(|e| anyhow!("mock cluster: {e}"))
    }
}

fn serve<C: rdkafka::ClientContext>(cluster: &MockCluster<'_, C>, command: Command) {
    let (result, reply) = match command {
        Command::CreateTopic { name, partitions, reply } => (cluster.create_topic(&name, partitions, 1), reply),
        Command::BrokerDown { broker, reply } => (cluster.broker_down(broker), reply),
        Command::BrokerUp { broker, reply } => (cluster.broker_up(broker), reply),
        Command::RequestErrors { api, errors, reply } => {
            cluster.request_errors(api, &errors);
            (Ok(()), reply)
        }
        Command::RoundTripTime { broker, delay, reply } => (cluster.broker_round_trip_time(broker, delay), reply),
    };
    let _ = reply.send(result.map_err(|e| e.to_string()));
}

impl Drop for MockKafka {
    fn drop(&mut self) {
        drop(self.commands.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
