//! `vero-dev-clickhouse DATA_DIR READY_FILE`: a ClickHouse server for `make run`, on
//! the standard ports (HTTP 8123, native 9000, loopback only) with its data in
//! DATA_DIR, so `clickhouse-client` and `curl 127.0.0.1:8123` work as usual and the
//! data survives restarts. Touches READY_FILE once the server answers; stops the
//! server gracefully on SIGINT/SIGTERM. When the server process dies (a crash, a
//! `kill -9`), this exits with an error too, so `vero-supervise` starts both again.

use std::path::PathBuf;

use vero_testkit::clickhouse::ClickHouseServer;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| ".local/clickhouse".into()));
    let ready = PathBuf::from(args.next().unwrap_or_else(|| ".local/run/clickhouse.ready".into()));
    let http_port = std::env::var("VERO_DEV_CLICKHOUSE_HTTP_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(8123);
    let tcp_port = std::env::var("VERO_DEV_CLICKHOUSE_TCP_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(9000);
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
