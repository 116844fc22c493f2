//! `analyst-bench [--events N] [--runs N] [--out docs/benchmarks.md]`: the analyst
//! benchmark (see `vero_bench::analyst`). Starts its own ClickHouse server
//! (`vero_testkit::clickhouse`, the Debian 18.16 package; data in a temp dir, removed
//! at exit), applies the migrations with `vero_clickhouse`, generates the events and
//! profiles, times the ten docs/analytics.md questions plain and with `FINAL`, and
//! writes its section of docs/benchmarks.md (raw figures in
//! `target/bench/analyst.json`). Run from the workspace root:
//! `cargo run --release -p vero-bench --bin analyst-bench`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use vero_bench::analyst::{self, Report, Timing};
use vero_clickhouse::{migrations, ClickHouseSettings, ServerVersion};
use vero_testkit::clickhouse::ClickHouseServer;

#[derive(Parser)]
#[command(version, about = "Time the docs/analytics.md analyst questions on ClickHouse 18.16, plain and with FINAL")]
struct Args {
    /// Synthetic events to generate.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Timed runs per query and mode (after one warm-up); the report shows the median.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Markdown file whose analyst section is replaced (appended when missing).
    #[arg(long, default_value = "docs/benchmarks.md")]
    out: PathBuf,
    /// The analytics docs the questions are read from.
    #[arg(long, default_value = "docs/analytics.md")]
    docs: PathBuf,
}

/// Rows per generating INSERT (about one sink batch's worth of parts per million).
const CHUNK: u64 = 1_000_000;

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

async fn fetch(client: &clickhouse::Client, sql: &str) -> anyhow::Result<String> {
    let bytes = client.query(sql).fetch_bytes("TabSeparated")?.collect().await?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Run `sql` once untimed, then `runs` times; (seconds per run, result rows).
async fn time(client: &clickhouse::Client, sql: &str, runs: usize) -> anyhow::Result<(Vec<f64>, usize)> {
    let rows = fetch(client, sql).await?.lines().count();
    let mut secs = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        fetch(client, sql).await?;
        secs.push(start.elapsed().as_secs_f64());
    }
    Ok((secs, rows))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    let docs = std::fs::read_to_string(&args.docs).with_context(|| format!("reading {}", args.docs.display()))?;
    let questions = analyst::questions(&docs)?;
    let load_before = load_average();

    let server = tokio::task::spawn_blocking(ClickHouseServer::start).await??;
    let client = vero_clickhouse::client::build(&ClickHouseSettings::local(server.http_url()));
    let version = ServerVersion::detect(&client).await?;
    let server_version = fetch(&client, "SELECT version()").await?.trim().to_owned();
    eprintln!("analyst-bench: ClickHouse {server_version} at {}", server.http_url());
    migrations::apply(&client, version, &migrations::embedded().map_err(anyhow::Error::msg)?).await?;

    let start = Instant::now();
    let mut offset = 0;
    while offset < args.events {
        let count = CHUNK.min(args.events - offset);
        client.query(&analyst::generate_events_sql(offset, count)).execute().await.context("generating events")?;
        offset += count;
        eprintln!("analyst-bench: {offset} events generated ({:.0} s)", start.elapsed().as_secs_f64());
    }
    client.query(&analyst::generate_profiles_sql()).execute().await.context("generating profiles")?;
    let generate_secs = start.elapsed().as_secs_f64();
    let start = Instant::now();
    client.query("OPTIMIZE TABLE vero.events FINAL").execute().await?;
    client.query("OPTIMIZE TABLE vero.profiles FINAL").execute().await?;
    let optimize_secs = start.elapsed().as_secs_f64();

    let stats = fetch(
        &client,
        "SELECT count(), uniqExact(user_id), uniqExact(event_name), uniqExact(toDate(event_time, 'UTC')), \
         uniqExact(project), countIf(project = 'demo'), countIf(user_id = '1') FROM vero.events",
    )
    .await?;
    let f: Vec<&str> = stats.split_whitespace().collect();
    anyhow::ensure!(f.len() == 7 && f[0] == args.events.to_string(), "generated data: {stats}");
    let disk = fetch(
        &client,
        "SELECT count(), sum(bytes) FROM system.parts WHERE database = 'vero' AND table = 'events' AND active",
    )
    .await?;
    let d: Vec<&str> = disk.split_whitespace().collect();
    let mib = d.get(1).and_then(|b| b.parse::<f64>().ok()).unwrap_or(0.0) / 1_048_576.0;
    let data = format!(
        "{} events, {} users, {} event names, {} distinct days (June 2024, plus client times that spill into 2024-05-31), {} projects \
         ({} events in `demo`, the project the questions ask about; user `1` has {}), {} active part(s), {mib:.0} MiB \
         compressed; {} profiles",
        f[0],
        f[1],
        f[2],
        f[3],
        f[4],
        f[5],
        f[6],
        d.first().unwrap_or(&"?"),
        analyst::USERS
    );
    eprintln!("analyst-bench: {data}");

    let mut timings = Vec::new();
    for (name, question, sql) in &questions {
        let (plain, rows) = time(&client, sql, args.runs).await.with_context(|| format!("{name}:\n{sql}"))?;
        let fin = analyst::with_final(sql);
        let (final_, rows_final) =
            time(&client, &fin, args.runs).await.with_context(|| format!("{name} FINAL:\n{fin}"))?;
        eprintln!(
            "analyst-bench: {name}: plain {:.3} s, FINAL {:.3} s, {rows} rows",
            analyst::median(&plain),
            analyst::median(&final_)
        );
        timings.push(Timing {
            name: name.to_string(),
            question: question.to_string(),
            plain,
            final_,
            rows,
            rows_final,
        });
    }

    // The figures are the server's; the client's build profile does not change them,
    // but the command shown is the one that ran.
    let profile = if cfg!(debug_assertions) { "" } else { " --release" };
    let mut command = format!("cargo run{profile} -p vero-bench --bin analyst-bench");
    if args.events != 10_000_000 || args.runs != 3 {
        command.push_str(&format!(" -- --events {} --runs {}", args.events, args.runs));
    }
    let report = Report {
        command,
        machine: vero_bench::suite::machine(),
        server_version,
        load_before,
        load_after: load_average(),
        data,
        generate_secs,
        optimize_secs,
        runs: args.runs,
        timings,
    };
    drop(server);
    std::fs::create_dir_all("target/bench")?;
    std::fs::write("target/bench/analyst.json", serde_json::to_vec_pretty(&report)?)?;
    let old = std::fs::read_to_string(&args.out).unwrap_or_default();
    std::fs::write(&args.out, analyst::splice_section(&old, &analyst::render(&report)))?;
    println!("wrote the analyst section of {} (raw figures in target/bench/analyst.json)", args.out.display());
    Ok(())
}
