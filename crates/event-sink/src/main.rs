//! `event-sink [run]`: consume `vero.events` into ClickHouse until SIGTERM/SIGINT.
//! `event-sink migrate`: apply pending ClickHouse migrations and exit.
//! Configuration: `config/event-sink/` (or `$VERO_CONFIG_DIR`), `VERO_ENV`, `VERO__*`.

use anyhow::Context;
use event_sink::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = std::env::args().nth(1);
    let settings = Settings::load(&vero_service::settings::config_dir("event-sink"))?;
    vero_service::telemetry::init("event-sink");
    match command.as_deref() {
        None | Some("run") => {
            let listener = tokio::net::TcpListener::bind(&settings.ops.listen)
                .await
                .with_context(|| format!("binding the ops listener on {}", settings.ops.listen))?;
            tracing::info!(ops = %listener.local_addr()?, "ops endpoints listening");
            event_sink::run(settings, listener, vero_service::shutdown::signal()).await
        }
        Some("migrate") => {
            let (version, applied) = event_sink::migrate(&settings.clickhouse).await?;
            println!("ClickHouse {version}: {} migration(s) applied", applied.len());
            for a in applied {
                println!("  {:04} {} ({})", a.id, a.name, a.file);
            }
            Ok(())
        }
        Some(other) => anyhow::bail!("unknown command `{other}`; usage: event-sink [run|migrate]"),
    }
}
