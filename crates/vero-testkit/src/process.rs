//! Child processes of tests, the test kit's servers, the fault harness and the bench:
//! [`ChildGuard`], the one guard that signals a child (its whole process group when it
//! leads one) and kills it on drop; the bounded start-up wait every server of the test
//! kit shares; and the spawn that ties a server's life to this process.

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use nix::errno::Errno;
pub use nix::sys::signal::Signal;
use nix::sys::signal::{kill, killpg};
use nix::unistd::{getpgid, Pid};

/// A child process that is killed (`SIGKILL`, to its process group as well when it
/// leads one, as `Command::process_group(0)` makes it) and reaped when the guard
/// drops. Once the child is reaped no signal goes out any more: its pid may belong to
/// another process by then.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    /// The exit status, once the child is reaped.
    exited: Option<ExitStatus>,
}

impl ChildGuard {
    pub fn new(child: Child) -> Self {
        Self { child, exited: None }
    }

    /// Spawn `command` (configured by the caller: stdio, environment, process group).
    pub fn spawn(command: &mut Command) -> std::io::Result<Self> {
        command.spawn().map(Self::new)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send `signal` to the child, or to its whole process group when it leads one.
    /// `ESRCH` once the child is reaped.
    pub fn signal(&self, signal: Signal) -> nix::Result<()> {
        if self.exited.is_some() {
            return Err(Errno::ESRCH);
        }
        // Not reaped yet, so the pid (and a group it leads) is still the child's.
        let pid = Pid::from_raw(i32::try_from(self.child.id()).map_err(|_| Errno::ESRCH)?);
        if getpgid(Some(pid)) == Ok(pid) {
            killpg(pid, signal)
        } else {
            kill(pid, signal)
        }
    }

    /// Freeze the child (`SIGSTOP`): it keeps its sockets but answers nothing.
    pub fn freeze(&self) -> nix::Result<()> {
        self.signal(Signal::SIGSTOP)
    }

    /// Let a frozen child run again (`SIGCONT`).
    pub fn thaw(&self) -> nix::Result<()> {
        self.signal(Signal::SIGCONT)
    }

    /// The exit status if the child has exited (reaping it), `None` while it runs.
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait()?;
        }
        Ok(self.exited)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    /// Wait up to `timeout` for the child to exit: its status, or `None` if it still runs.
    pub fn wait_timeout(&mut self, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9` (the group too), then reap: a crash, as everyone else sees it.
    pub fn kill9(&mut self) -> std::io::Result<ExitStatus> {
        if let Some(status) = self.exited {
            return Ok(status);
        }
        if self.signal(Signal::SIGKILL).is_err() {
            self.child.kill()?;
        }
        let status = self.child.wait()?;
        self.exited = Some(status);
        Ok(status)
    }

    /// A clean stop: `SIGCONT` (a frozen child cannot handle what follows), `SIGTERM`,
    /// up to `grace` for the child to exit, then [`Self::kill9`].
    pub fn terminate(&mut self, grace: Duration) -> std::io::Result<ExitStatus> {
        if self.try_wait()?.is_none() {
            let _ = self.signal(Signal::SIGCONT);
            let _ = self.signal(Signal::SIGTERM);
        }
        match self.wait_timeout(grace)? {
            Some(status) => Ok(status),
            None => self.kill9(),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}

/// Poll `ready` every 100 ms until it returns true. Errors (without logs: the caller
/// knows where they are) when `child` exits first or `timeout` passes; `what` names
/// the program and `probe` what it failed to do, e.g. `"answer /ping"`.
pub(crate) fn wait_started(
    child: &mut ChildGuard,
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
        if !child.is_running() {
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
pub(crate) fn spawn_tied(program: &str, configure: impl FnOnce(&mut Command)) -> std::io::Result<ChildGuard> {
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
    answer.recv().expect("the spawner thread answers").map(ChildGuard::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    fn alive(pid: u32) -> bool {
        // A zombie (exited, not reaped) counts as gone.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
    }

    #[test]
    fn freezes_thaws_terminates_and_kills_on_drop() {
        let mut child = ChildGuard::spawn(Command::new("sleep").arg("60")).unwrap();
        child.freeze().unwrap();
        child.thaw().unwrap();
        assert_eq!(child.wait_timeout(Duration::from_millis(100)).unwrap(), None);
        let status = child.terminate(Duration::from_secs(5)).unwrap();
        assert!(!status.success());
        assert_eq!(child.signal(Signal::SIGCONT), Err(Errno::ESRCH), "no signal after reaping");

        let child = ChildGuard::spawn(Command::new("sleep").arg("60")).unwrap();
        let pid = child.pid();
        drop(child);
        assert!(!alive(pid));
    }

    #[test]
    fn kills_the_process_group_it_leads() {
        let mut command = Command::new("sh");
        command.args(["-c", "sleep 60 & echo $!; wait"]).stdout(std::process::Stdio::piped()).process_group(0);
        let mut child = ChildGuard::spawn(&mut command).unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.child.stdout.as_mut().unwrap()), &mut line)
            .unwrap();
        let grandchild: u32 = line.trim().parse().unwrap();
        assert!(alive(grandchild));
        child.kill9().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(grandchild) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(grandchild), "the group's other member survived");
    }
}
