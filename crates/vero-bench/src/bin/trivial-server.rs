//! `trivial-server ADDR [TOKEN]`: the HTTP baseline (see `vero_bench::trivial_server`).
//! The token comes from `VERO_BENCH_TOKEN` when not given (default `your_auth_token`).

use std::sync::Arc;

use clap::Parser;

/// The HTTP baseline of the gateway benchmarks.
#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(default_value = "127.0.0.1:8090")]
    addr: String,
    /// The auth token requests must carry.
    #[arg(long, env = "VERO_BENCH_TOKEN", default_value = "your_auth_token")]
    token: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Args { addr, token } = Args::parse();
    vero_service::telemetry::init("trivial-server");
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(address = %listener.local_addr()?, "trivial baseline listening");
    let counters = Arc::new(vero_bench::trivial_server::Counters::default());
    vero_bench::trivial_server::run(listener, token, counters, vero_service::shutdown::signal()).await;
    Ok(())
}
