//! `event-sink [run]`: consume `vero.events` into ClickHouse until SIGTERM/SIGINT.
//! `event-sink migrate`: apply pending ClickHouse migrations and exit.
//! Configuration: `config/event-sink/` (or `$VERO_CONFIG_DIR`), `VERO_ENV`, `VERO__*`.
//! `--help` and `--version` answer without reading any config.

use anyhow::Context;
use clap::{Parser, Subcommand};
use event_sink::Settings;

/// Kafka consumer group that writes the vero.events topic into ClickHouse vero.events.
#[derive(Parser)]
#[command(
    name = "event-sink",
    version,
    after_help = "Configuration: config/event-sink/default.toml (or $VERO_CONFIG_DIR), then \
                  $VERO_ENV.toml, then VERO__SECTION__KEY variables.\n\
                  Logs: RUST_LOG filters (default info), VERO_LOG_FORMAT=json|text."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Consume into ClickHouse until SIGTERM/SIGINT (the default without a command).
    Run,
    /// Apply pending ClickHouse migrations, print them and exit.
    Migrate,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = Cli::parse().command.unwrap_or(Command::Run);
    let settings = Settings::load(&vero_service::settings::config_dir("event-sink"))?;
    vero_service::telemetry::init("event-sink");
    match command {
        Command::Run => {
            let listener = tokio::net::TcpListener::bind(&settings.ops.listen)
                .await
                .with_context(|| format!("binding the ops listener on {}", settings.ops.listen))?;
            tracing::info!(ops = %listener.local_addr()?, "ops endpoints listening");
            event_sink::run(settings, listener, vero_service::shutdown::signal()).await
        }
        Command::Migrate => {
            let (version, applied) = event_sink::migrate(&settings.clickhouse).await?;
            println!("ClickHouse {version}: {} migration(s) applied", applied.len());
            for a in applied {
                println!("  {:04} {} ({})", a.id, a.name, a.file);
            }
            Ok(())
        }
    }
}
