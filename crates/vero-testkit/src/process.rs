//! The bounded start-up wait every server process of the test kit shares: poll a
//! readiness probe until it passes, the process exits, or the time is up.

use std::process::Child;
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
