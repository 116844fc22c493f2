//! `vero-dev-clickhouse DATA_DIR READY_FILE`: a ClickHouse server for `make run`, on
//! the standard ports (HTTP 8123, native 9000, loopback only) with its data in
//! DATA_DIR, so `clickhouse-client` and `curl 127.0.0.1:8123` work as usual and the
//! data survives restarts. Touches READY_FILE once the server answers; stops the
//! server gracefully on SIGINT/SIGTERM. When the server process dies (a crash, a
//! `kill -9`), this exits with an error too, so `vero-supervise` starts both again.

use std::path::PathBuf;

use clap::Parser;
use vero_testkit::clickhouse::ClickHouseServer;

/// A ClickHouse server for `make run`.
#[derive(Parser)]
struct Args {
    /// The server's data directory (kept across restarts).
    #[arg(default_value = ".local/clickhouse")]
    dir: PathBuf,
    /// Touched with the server's URL once it answers.
    #[arg(default_value = ".local/run/clickhouse.ready")]
    ready: PathBuf,
    #[arg(long, env = "VERO_DEV_CLICKHOUSE_HTTP_PORT", default_value_t = 8123)]
    http_port: u16,
    #[arg(long, env = "VERO_DEV_CLICKHOUSE_TCP_PORT", default_value_t = 9000)]
    tcp_port: u16,
}

fn main() -> anyhow::Result<()> {
    let Args { dir, ready, http_port, tcp_port } = Args::parse();
    let mut server = ClickHouseServer::start_in(&dir, http_port, tcp_port)?;
    eprintln!("vero-dev-clickhouse: {} (native port {tcp_port}), data in {}", server.http_url(), dir.display());
    std::fs::write(&ready, server.http_url())?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let stopped = runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut check = tokio::time::interval(std::time::Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return anyhow::Ok(true),
                _ = term.recv() => return Ok(true),
                _ = check.tick() => if !server.is_running() { return Ok(false) },
            }
        }
    })?;
    if !stopped {
        let _ = std::fs::remove_file(&ready);
        anyhow::bail!("clickhouse-server exited on its own; logs:\n{}", server.logs_tail());
    }
    eprintln!("vero-dev-clickhouse: stopping");
    server.stop()
}
