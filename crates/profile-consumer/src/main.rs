//! `profile-consumer`: load config, set up logs, bind the ops port, run until SIGTERM.

use anyhow::Context;
use profile_consumer::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    vero_service::telemetry::init("profile-consumer");
    let settings: Settings = vero_service::settings::load(&vero_service::settings::config_dir("profile-consumer"))?;
    let ops = tokio::net::TcpListener::bind(&settings.ops.listen)
        .await
        .with_context(|| format!("binding the ops listener on {}", settings.ops.listen))?;
    profile_consumer::run(settings, ops, vero_service::shutdown::signal()).await
}
