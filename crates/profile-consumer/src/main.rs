//! `profile-consumer [run]`: parse the command line, load config, set up logs, bind the
//! ops port, run until SIGTERM/SIGINT. `--help` and `--version` answer without reading
//! any config.

use anyhow::Context;
use clap::{Parser, Subcommand};
use profile_consumer::Settings;

/// mimalloc instead of glibc's malloc: the local profile store (fjall) allocates and
/// frees many small buffers per record, and glibc's malloc took about a third of the
/// consumer's CPU under load (`perf`, docs/benchmarks.md "Profile state").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keeps one merged profile per user in ClickHouse vero.profiles and on the compacted
/// vero.profiles topic.
#[derive(Parser)]
#[command(
    name = "profile-consumer",
    version,
    after_help = "Configuration: config/profile-consumer/default.toml (or $VERO_CONFIG_DIR), \
                  then $VERO_ENV.toml, then VERO__SECTION__KEY variables.\n\
                  Logs: RUST_LOG filters (default info), VERO_LOG_FORMAT=json|text."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Apply migrations, then consume until SIGTERM/SIGINT (the default without a command).
    Run,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli { command: None | Some(Command::Run) } = Cli::parse();
    vero_service::telemetry::init("profile-consumer");
    let settings: Settings = vero_service::settings::load(&vero_service::settings::config_dir("profile-consumer"))?;
    let ops = tokio::net::TcpListener::bind(&settings.ops.listen)
        .await
        .with_context(|| format!("binding the ops listener on {}", settings.ops.listen))?;
    profile_consumer::run(settings, ops, vero_service::shutdown::signal_bounded(vero_service::shutdown::STOP_DEADLINE))
        .await
}
