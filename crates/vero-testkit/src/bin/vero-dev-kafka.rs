//! `vero-dev-kafka`: the Apache Kafka broker of `make run`, one KRaft node (broker and
//! controller) on 127.0.0.1:9092 (controller 9093) with its data in `.local/kafka`, so the data
//! survives restarts. Writes the bootstrap address to `--ready` once the broker is in
//! its own metadata; a controlled shutdown on SIGINT/SIGTERM. When the broker dies on
//! its own (a crash, `kill -9` of the JVM), this exits with an error too, so
//! `vero-supervise` starts it again; when this process is killed, the JVM dies with
//! it (the test kit ties its processes to their parent).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use vero_testkit::kafka::{KafkaCluster, KafkaSettings};

#[derive(Debug, Parser)]
#[command(version, about = "Run the local Apache Kafka broker (one KRaft node) until SIGINT/SIGTERM.")]
struct Args {
    /// Where the broker keeps its data (formatted on first use).
    #[arg(long, default_value = ".local/kafka")]
    dir: PathBuf,
    /// The client port on 127.0.0.1.
    #[arg(long, default_value_t = 9092)]
    port: u16,
    /// The KRaft controller's port on 127.0.0.1.
    #[arg(long, default_value_t = 9093)]
    controller_port: u16,
    /// A file written with the bootstrap address once the broker serves.
    #[arg(long)]
    ready: Option<PathBuf>,
    /// Maximum JVM heap.
    #[arg(long, default_value = "1g")]
    heap: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = std::path::absolute(&args.dir)?;
    let settings = KafkaSettings {
        dir: Some(dir.clone()),
        broker_ports: Some(vec![args.port]),
        controller_ports: Some(vec![args.controller_port]),
        heap: args.heap,
        ..Default::default()
    };
    let mut kafka = KafkaCluster::start(settings)?;
    eprintln!("vero-dev-kafka: Apache Kafka on {}, data in {}", kafka.bootstrap_servers(), dir.display());
    if let Some(ready) = &args.ready {
        std::fs::write(ready, kafka.bootstrap_servers())?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let stopped = runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut check = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return anyhow::Ok(true),
                _ = term.recv() => return Ok(true),
                _ = check.tick() => if !kafka.is_running(1) { return Ok(false) },
            }
        }
    })?;
    if let Some(ready) = &args.ready {
        let _ = std::fs::remove_file(ready);
    }
    if !stopped {
        anyhow::bail!("the Kafka broker exited on its own; its log is {}", dir.join("node-1/kafka.log").display());
    }
    eprintln!("vero-dev-kafka: stopping");
    kafka.stop_all();
    Ok(())
}
