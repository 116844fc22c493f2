//! `trivial-server ADDR [TOKEN]`: the HTTP baseline (see `vero_bench::trivial_server`).
//! The token comes from `VERO_BENCH_TOKEN` when not given (default `your_auth_token`).

use std::sync::Arc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    vero_service::telemetry::init("trivial-server");
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8090".into());
    let token = std::env::var("VERO_BENCH_TOKEN").unwrap_or_else(|_| "your_auth_token".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(address = %listener.local_addr()?, "trivial baseline listening");
    let counters = Arc::new(vero_bench::trivial_server::Counters::default());
    vero_bench::trivial_server::run(listener, token, counters, vero_service::shutdown::signal()).await;
    Ok(())
}
