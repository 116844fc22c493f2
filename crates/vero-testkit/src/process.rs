//! The bounded start-up wait every server process of the test kit shares: poll a
//! readiness probe until it passes, the process exits, or the time is up.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Poll `ready` every 100 ms until it returns true. Errors (without logs: the caller
/// knows where they are) when `child` exits first or `timeout` passes; `what` names
/// the program and `probe` what it failed to do, e.g. `"answer /ping"`.
pub(crate) fn wait_started(
    child: &mut Child,
    what: &str,
    probe: &str,
    timeout: Duration,
    ready: impl Fn() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return Ok(());
        }
        if !matches!(child.try_wait(), Ok(None)) {
            return Err(format!("{what} exited during start"));
        }
        if Instant::now() > deadline {
            return Err(format!("{what} did not {probe} within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Spawn `program args...` so that it dies with this process: util-linux's `setpriv
/// --pdeathsig KILL` sets `PR_SET_PDEATHSIG` and execs the program (the workspace
/// forbids `unsafe`, which a `pre_exec` hook needs). The signal fires when the
/// *thread* that forked the child ends, so every spawn happens on one thread that
/// lives as long as the process. A server in a `static` (never dropped) or a test
/// process killed by a signal then leaves nothing running. `configure` sets the
/// arguments, directory, environment and stdio of the `setpriv` command.
pub(crate) fn spawn_tied(program: &str, configure: impl FnOnce(&mut Command)) -> std::io::Result<Child> {
    use std::sync::mpsc;
    use std::sync::{Mutex, OnceLock};

    type Request = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (send, receive) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("vero-testkit-spawner".into())
            .spawn(move || {
                for (mut command, reply) in receive {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("spawning the test kit's spawner thread");
        Mutex::new(send)
    });
    let mut command = Command::new("setpriv");
    command.args(["--pdeathsig", "KILL", "--", program]);
    configure(&mut command);
    let (reply, answer) = mpsc::channel();
    spawner.lock().unwrap_or_else(|e| e.into_inner()).send((command, reply)).expect("the spawner thread lives");
    answer.recv().expect("the spawner thread answers")
}

/// Send `signal` to `child` (ignoring a child that is already gone).
pub(crate) fn signal(child: &Child, signal: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, signal);
}
