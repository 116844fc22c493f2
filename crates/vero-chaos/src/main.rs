//! `vero-chaos`: run the fault schedule against the workspace's binaries and print
//! the table. `make chaos` runs the full schedule on release binaries.

use clap::Parser;
use vero_chaos::{report, Schedule};

#[derive(Debug, Parser)]
#[command(version, about = "Fault harness: every acknowledged event lands exactly once, under faults.")]
struct Args {
    /// Which scenarios to run.
    #[arg(long, value_enum, default_value = "full")]
    schedule: Schedule,
    /// Run only these faults (by slug: kill-sink, freeze, broker-down, ...).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The consumers' group protocol (`kafka.group_protocol`: classic or consumer);
    /// unset keeps the services' default.
    #[arg(long)]
    group_protocol: Option<String>,
    /// Also write the table (Markdown) to this file.
    #[arg(long)]
    table: Option<std::path::PathBuf>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let mut faults = args.schedule.faults();
    if !args.only.is_empty() {
        faults.retain(|f| args.only.iter().any(|o| o == f.slug()));
        anyhow::ensure!(
            !faults.is_empty(),
            "--only {:?} matches no fault of the {:?} schedule",
            args.only,
            args.schedule
        );
    }
    let mut settings = args.schedule.settings();
    if let Some(protocol) = args.group_protocol {
        settings.consumer_env.push(("VERO__KAFKA__GROUP_PROTOCOL".into(), protocol));
    }
    let outcomes = vero_chaos::run(&faults, &settings).await;
    let table = report::table(&outcomes);
    println!("{table}");
    if let Some(path) = args.table {
        std::fs::write(&path, &table)?;
    }
    println!("{}", report::closing_line(&outcomes));
    anyhow::ensure!(outcomes.iter().all(|o| o.holds()), "a guarantee did not hold under a fault (table above)");
    Ok(())
}
