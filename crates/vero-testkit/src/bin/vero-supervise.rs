//! `vero-supervise --name NAME -- COMMAND [ARGS...]`: keep one component of `make run`
//! running, the way systemd or Kubernetes would.
//!
//! * The command's output is passed through line by line, prefixed with `[NAME]`.
//! * When it exits on its own (a crash, `kill -9`, an error exit), that is logged with
//!   its status and it is started again after a backoff: 1 s, doubling to 30 s, back
//!   to 1 s once a run lasted a minute. The other components keep serving.
//! * SIGINT/SIGTERM stop the supervisor: the command gets SIGTERM (a frozen one is
//!   continued first), has `--grace` seconds to exit, then is killed; the supervisor
//!   exits with the command's status. Nothing is restarted while stopping.
//! * Losing its own output (`make run 2>&1 | tee log`, and Ctrl-C also ends `tee`)
//!   changes nothing: writes that fail are dropped, the command's output is still
//!   drained so it never blocks on a full pipe, and the stop proceeds.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};

#[derive(Debug, Parser)]
#[command(version, about = "Run a command, restart it with backoff when it exits, stop it on SIGINT/SIGTERM.")]
struct Args {
    /// Shown in front of every output line and in the supervisor's own messages.
    #[arg(long)]
    name: String,
    /// Seconds the command gets to exit after SIGTERM before it is killed.
    #[arg(long, default_value_t = 30)]
    grace: u64,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A run this long resets the backoff: the component was healthy.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// One line to stderr. Not `eprintln!`, which panics when stderr is a closed pipe.
fn print_line(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

fn say(name: &str, message: &str) {
    print_line(format_args!("\x1b[1m[supervise]\x1b[0m {name}: {message}"));
}

/// The running command and the tasks passing its output on.
struct Running {
    child: Child,
    output: Vec<tokio::task::JoinHandle<()>>,
}

fn spawn(args: &Args) -> anyhow::Result<Running> {
    let mut child = Command::new(&args.command[0])
        .args(&args.command[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {:?}", args.command))?;
    let output = [forward(args.name.clone(), child.stdout.take()), forward(args.name.clone(), child.stderr.take())]
        .into_iter()
        .flatten()
        .collect();
    Ok(Running { child, output })
}

fn forward(
    name: String,
    stream: Option<impl AsyncRead + Unpin + Send + 'static>,
) -> Option<tokio::task::JoinHandle<()>> {
    let stream = stream?;
    Some(tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            print_line(format_args!("[{name}] {line}"));
        }
    }))
}

/// Pass on what the command wrote before it exited (its last lines, a drain's
/// report), waiting at most 2 s: a process it started may hold the pipes open.
async fn drain(output: Vec<tokio::task::JoinHandle<()>>) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        for task in output {
            let _ = task.await;
        }
    })
    .await;
}

async fn stop(args: &Args, running: Running) -> anyhow::Result<i32> {
    let Running { mut child, output } = running;
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let status = match tokio::time::timeout(Duration::from_secs(args.grace), child.wait()).await {
        Ok(status) => status?,
        Err(_) => {
            say(&args.name, &format!("did not stop within {} s; killing it", args.grace));
            child.kill().await?;
            child.wait().await?
        }
    };
    drain(output).await;
    Ok(status.code().unwrap_or(1))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut backoff = FIRST_BACKOFF;
    let mut restarts = 0u32;
    loop {
        let started = Instant::now();
        let mut running = spawn(&args)?;
        let status = tokio::select! {
            status = running.child.wait() => status?,
            _ = interrupt.recv() => std::process::exit(stop(&args, running).await?),
            _ = terminate.recv() => std::process::exit(stop(&args, running).await?),
        };
        drain(running.output).await;
        if started.elapsed() >= HEALTHY_RUN {
            backoff = FIRST_BACKOFF;
        }
        restarts += 1;
        say(&args.name, &format!("exited ({status}); restart #{restarts} in {} s", backoff.as_secs()));
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = interrupt.recv() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
