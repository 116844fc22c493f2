//! `ingest-gateway`: load config, set up logs, bind, run until SIGINT/SIGTERM.

use anyhow::Context;
use ingest_gateway::config::{Settings, SERVICE};
use vero_service::{settings::config_dir, shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init("ingest-gateway");
    let settings = Settings::load(&config_dir(SERVICE))?;
    let listener = tokio::net::TcpListener::bind(&settings.http.listen)
        .await
        .with_context(|| format!("binding http.listen = {}", settings.http.listen))?;
    ingest_gateway::run(settings, listener, shutdown::signal()).await
}
