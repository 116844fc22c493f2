//! A test host of our own: a network namespace joined to this one by a veth pair, so a
//! process started inside it can be cut off from everything (both directions, every
//! port) and joined again — what a network partition does to one broker.
//!
//! Addresses: the host end of the pair is `10.213.<n>.1`, the namespace end
//! `10.213.<n>.2`, with `<n>` chosen free. A blackhole route for `10.213.0.0/16` is
//! added once so that, whatever state a link is in, no packet for these addresses
//! ever leaves through the default route. [`Host::cut`] takes the namespace's end
//! down: the host end loses its carrier and drops what is sent to it, the namespace
//! has no route out. Needs root and iproute2 (`ip`), as CI and developers have here.
//! The namespace and the pair are removed when the handle drops.

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{bail, Context};

/// One namespace with its veth pair.
#[derive(Debug)]
pub struct Host {
    name: String,
    host_link: String,
    subnet: u8,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("ip").args(args).output().context("running ip (iproute2)")?;
    if !output.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

impl Host {
    /// Create a namespace and its link, up.
    pub fn create() -> anyhow::Result<Self> {
        remove_stale();
        // Never routed anywhere, even while a link is down (a more specific route wins
        // while it is up). "File exists" when a run before added it.
        if let Err(e) = ip(&["route", "add", "blackhole", "10.213.0.0/16"]) {
            anyhow::ensure!(e.to_string().contains("File exists"), "{e:#}");
        }
        let pid = std::process::id();
        for attempt in 0..20u32 {
            let subnet = ((pid + attempt) % 200 + 20) as u8;
            let name = format!("vero-{pid}-{subnet}");
            // At most 15 bytes (IFNAMSIZ): "vh" + 7-digit pid + "x" + 3 digits.
            let host_link = format!("vh{pid}x{subnet}");
            if ip(&["netns", "add", &name]).is_err() {
                continue;
            }
            let mut host = Self { name, host_link, subnet };
            match host.wire() {
                Ok(()) => return Ok(host),
                Err(e) if attempt == 19 => return Err(e),
                Err(_) => {
                    host.remove();
                    host.subnet = 0;
                }
            }
        }
        bail!("no free 10.213.x.0/24 subnet for a test namespace")
    }

    fn wire(&self) -> anyhow::Result<()> {
        let peer = self.peer_link();
        ip(&["link", "add", &self.host_link, "type", "veth", "peer", "name", &peer])?;
        ip(&["link", "set", &peer, "netns", &self.name])?;
        ip(&["addr", "add", &format!("{}/24", self.host_address()), "dev", &self.host_link])?;
        ip(&["link", "set", &self.host_link, "up"])?;
        self.inside(&["addr", "add", &format!("{}/24", self.address()), "dev", &peer])?;
        self.inside(&["link", "set", &peer, "up"])?;
        self.inside(&["link", "set", "lo", "up"])
    }

    fn peer_link(&self) -> String {
        format!("vn{}", &self.host_link[2..])
    }

    fn inside(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut all = vec!["netns", "exec", &self.name, "ip"];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// The namespace's address (where a process inside listens).
    pub fn address(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.subnet, 2)
    }

    /// This side's address on the link (where processes outside listen so that the
    /// namespace can reach them).
    pub fn host_address(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.subnet, 1)
    }

    /// The command prefix that runs a program inside: `ip netns exec NAME`.
    pub fn exec_prefix(&self) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), self.name.clone()]
    }

    /// Cut the namespace off (`true`) or join it again (`false`).
    pub fn cut(&self, cut: bool) -> anyhow::Result<()> {
        self.inside(&["link", "set", &self.peer_link(), if cut { "down" } else { "up" }])
    }

    fn remove(&self) {
        let _ = ip(&["link", "del", &self.host_link]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if self.subnet != 0 {
            self.remove();
        }
    }
}

/// Namespaces of test processes that no longer run (killed before their drop).
fn remove_stale() {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name.strip_prefix("vero-").and_then(|rest| rest.split('-').next()) else { continue };
        if pid.parse::<u32>().is_ok_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = ip(&["netns", "del", name]);
        }
    }
}
