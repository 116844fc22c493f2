//! `ingest-gateway [run]`: parse the command line, load config, set up logs, build the
//! runtime (`http.worker_threads`), bind, run until SIGINT/SIGTERM.
//! `--help` and `--version` answer without reading any config.

use anyhow::Context;
use clap::{Parser, Subcommand};
use ingest_gateway::config::{Settings, SERVICE};
use vero_service::{settings::config_dir, shutdown, telemetry};

/// mimalloc instead of glibc malloc: every request allocates its parsed fields and
/// record, often freed on another thread; glibc's arenas spent ~12% of the gateway's
/// CPU under load (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Vero Track API v2 gateway: answers 200 only once Kafka acknowledged the record.
#[derive(Parser)]
#[command(
    name = "ingest-gateway",
    version,
    after_help = "Configuration: config/gateway/default.toml (or $VERO_CONFIG_DIR), then \
                  $VERO_ENV.toml, then VERO__SECTION__KEY variables.\n\
                  Logs: RUST_LOG filters (default info), VERO_LOG_FORMAT=json|text."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API until SIGTERM/SIGINT (the default without a command).
    Run,
}

fn main() -> anyhow::Result<()> {
    let Cli { command: None | Some(Command::Run) } = Cli::parse();
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
        ingest_gateway::run(settings, listener, shutdown::signal_bounded(shutdown::STOP_DEADLINE)).await
    })
}
