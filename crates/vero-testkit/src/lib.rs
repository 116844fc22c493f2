//! Real components for tests and for `make run`.
//!
//! * [`mock_kafka::MockKafka`]: librdkafka's in-process mock cluster (real Kafka
//!   protocol on loopback ports) owned by a thread of its own, because the cluster
//!   handle is neither `Send` nor `Sync`; tests drive faults through a channel.
//! * [`kafka_probe`]: a tiny rdkafka reader that returns every record of a topic, the
//!   reliable way to see what landed.
//! * [`metrics::sum`]: a metric's value on a service's `/metrics` page.
//! * [`clickhouse::ClickHouseServer`], [`clickhouse_cluster::ClickHouseCluster`]
//!   (shards × replicas over a [`zookeeper::ZooKeeper`]), [`tansu::Tansu`]: server
//!   processes on free ports in temp dirs, killed when the handle drops.
//! * [`tls::TestCa`] and [`secured_kafka::SecuredKafka`]: a CA made at test time and a
//!   Kafka node with `SASL_SSL` (SCRAM-SHA-512 and -256, PLAIN) and `SSL` (client certificate)
//!   listeners on its certificates.
//! * [`cli::Cli`]: the command-line contract of every service binary, checked on the
//!   real binary.
//! * [`process::ChildGuard`]: the one child-process guard (signals, `kill -9`, a
//!   bounded wait, the kill on drop) under every server here, the fault harness and
//!   the bench.
//! * [`http::get`] and [`http::post`]: one plain HTTP/1.1 exchange with a local service.
//! * [`unique_name`]: per-test topic/group/database names so tests never share state.

pub mod cli;
pub mod clickhouse;
pub mod clickhouse_cluster;
pub mod http;
pub mod kafka;
pub mod kafka_probe;
pub mod metrics;
pub mod mock_kafka;
pub mod netns;
pub mod ports;
pub mod process;
pub mod secured_kafka;
pub mod tls;
pub mod zookeeper;

use std::sync::atomic::{AtomicU64, Ordering};

/// A name unique within this process and across concurrent test processes.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}_{}_{n}", std::process::id())
}

/// Block until SIGINT or SIGTERM (the local-run binaries serve until then).
pub fn wait_for_stop_signal() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        anyhow::Ok(())
    })
}
