//! `ingest-gateway`: load config, set up logs, bind, run until SIGINT/SIGTERM.

use anyhow::Context;
use ingest_gateway::config::{Settings, SERVICE};
use vero_service::{settings::config_dir, shutdown, telemetry};

/// mimalloc instead of glibc malloc: every request allocates its parsed fields and
/// record, freed on other threads; glibc's arenas spent ~12% of the gateway's CPU
/// under load (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init("ingest-gateway");
    let settings = Settings::load(&config_dir(SERVICE))?;
    let listener = tokio::net::TcpListener::bind(&settings.http.listen)
        .await
        .with_context(|| format!("binding http.listen = {}", settings.http.listen))?;
    ingest_gateway::run(settings, listener, shutdown::signal()).await
}
