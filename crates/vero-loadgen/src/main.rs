//! `vero-loadgen`: run a load, print the report (and write it as JSON with `--json`).

use clap::Parser;

#[derive(Parser)]
#[command(name = "vero-loadgen", about = "Load generator for the Vero Track API")]
struct Cli {
    #[command(flatten)]
    config: vero_loadgen::LoadConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Cli::parse().config;
    vero_service::telemetry::init("vero-loadgen");
    let json = config.json.clone();
    let report = vero_loadgen::run(config, vero_service::shutdown::signal()).await?;
    print!("{report}");
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}
