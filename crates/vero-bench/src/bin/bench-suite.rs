//! `bench-suite OUT.md [CRITERION_DIR]`: run every benchmark step (see
//! `vero_bench::suite`) and write the report. Started by `scripts/bench.sh`, from the
//! workspace root, after `cargo build --release` and `cargo bench`.

use std::path::PathBuf;

use clap::Parser;
use vero_bench::suite::{self, markdown, Bench, Results, SuiteConfig};

/// Run every benchmark step and write the report.
#[derive(Parser)]
struct Args {
    /// The report to write (its analyst section and unmeasured steps are kept).
    #[arg(default_value = "docs/benchmarks.md")]
    out: PathBuf,
    /// Where `cargo bench` left criterion's results.
    #[arg(default_value = "target/criterion")]
    criterion_dir: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Args { out, criterion_dir } = Args::parse();
    vero_service::telemetry::init("bench-suite");
    let work = PathBuf::from("target/bench");
    let mut results = Results {
        machine: suite::machine(),
        command: std::env::var("VERO_BENCH_COMMAND").unwrap_or_else(|_| "make bench".into()),
        criterion: suite::read_criterion(&criterion_dir),
        ..Results::default()
    };
    let bench = Bench::start(SuiteConfig::from_env(), work.clone())?;
    suite::run_all(&bench, &mut results).await;
    drop(bench);
    std::fs::write(work.join("results.json"), serde_json::to_vec_pretty(&results)?)?;
    let notes = std::fs::read_to_string("crates/vero-bench/benchmarks-notes.md").unwrap_or_default();
    let mut md = markdown::render(&results, &notes);
    let old = std::fs::read_to_string(&out).unwrap_or_default();
    // A partial run (VERO_BENCH_STEPS) keeps the sections of the steps it skipped.
    md = suite::sections::keep_unmeasured(&md, &old, suite::step_wanted);
    // Keep the analyst section (written by `analyst-bench`, not part of this suite).
    if let Some(section) = vero_bench::analyst::section_of(&old) {
        md = vero_bench::analyst::splice_section(&md, section);
    }
    std::fs::write(&out, md)?;
    println!("wrote {} (raw figures in {})", out.display(), work.join("results.json").display());
    if results.failures.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{} bench step(s) failed: {:?}", results.failures.len(), results.failures)
    }
}
