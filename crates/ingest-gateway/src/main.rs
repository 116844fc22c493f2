//! `ingest-gateway`: load config, set up logs, build the runtime (`http.worker_threads`),
//! bind, run until SIGINT/SIGTERM.

use anyhow::Context;
use ingest_gateway::config::{Settings, SERVICE};
use vero_service::{settings::config_dir, shutdown, telemetry};

/// mimalloc instead of glibc malloc: every request allocates its parsed fields and
/// record, often freed on another thread; glibc's arenas spent ~12% of the gateway's
/// CPU under load (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    telemetry::init("ingest-gateway");
    let settings = Settings::load(&config_dir(SERVICE))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.http.worker_threads())
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&settings.http.listen)
            .await
            .with_context(|| format!("binding http.listen = {}", settings.http.listen))?;
        ingest_gateway::run(settings, listener, shutdown::signal()).await
    })
}
