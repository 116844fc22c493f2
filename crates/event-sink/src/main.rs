//! `event-sink [run]`: consume `vero.events` into ClickHouse until SIGTERM/SIGINT.
//! `event-sink migrate`: apply pending ClickHouse migrations and exit.
//! `event-sink replay-dlq`: dead letters back into the pipeline (`event_sink::replay`).
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
    /// Apply pending ClickHouse migrations (re-creating missing objects), print them and exit.
    Migrate,
    /// Copy the dead-letter topic's records not replayed yet back to their source topic
    /// (original key and value), commit, print the counts and exit.
    ReplayDlq,
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
            event_sink::run(
                settings,
                listener,
                vero_service::shutdown::signal_bounded(vero_service::shutdown::STOP_DEADLINE),
            )
            .await
        }
        Command::Migrate => {
            let migrated = event_sink::migrate(&settings).await?;
            println!("ClickHouse {}: {} migration(s) applied", migrated.version, migrated.applied.len());
            for a in migrated.applied {
                let how = if a.repaired { ", re-run: objects were missing" } else { "" };
                println!("  {:04} {} ({}{how})", a.id, a.name, a.file);
            }
            match migrated.retention {
                Some(change) => println!("  retention of events changed: {change:?}"),
                None => {
                    println!("  retention of events: as set ({} days, 0 = forever)", settings.retention.events_days)
                }
            }
            Ok(())
        }
        Command::ReplayDlq => {
            let replayed = event_sink::replay_dlq(&settings.kafka, std::time::Duration::from_secs(3600)).await?;
            println!("{}: {} record(s) replayed", settings.kafka.dlq_topic, replayed.total());
            for (topic, count) in &replayed.records {
                println!("  {count} to {topic}");
            }
            Ok(())
        }
    }
}
