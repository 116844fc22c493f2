//! The compose deployment's load balancer config is one HAProxy accepts: checked by
//! HAProxy itself (`haproxy -c`, Debian's package, installed by
//! `scripts/install-deps.sh`), and the check is shown to reject a broken copy.

use std::path::Path;
use std::process::Command;

use deploy_check::repo::root;

fn haproxy() -> &'static str {
    ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("haproxy is not installed: scripts/install-deps.sh installs it (Debian package haproxy)")
}

fn check(config: &Path) -> (bool, String) {
    let output = Command::new(haproxy()).arg("-c").arg("-f").arg(config).output().expect("haproxy runs");
    (
        output.status.success(),
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
    )
}

#[test]
fn haproxy_accepts_the_compose_load_balancer_config_and_rejects_a_broken_one() {
    let config = root().join("deploy/compose/haproxy.cfg");
    let (ok, report) = check(&config);
    assert!(ok, "haproxy -c rejects {}:\n{report}", config.display());

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("haproxy.cfg");
    let text = std::fs::read_to_string(&config).unwrap().replace("balance leastconn", "balance fewestconn");
    std::fs::write(&broken, text).unwrap();
    let (ok, report) = check(&broken);
    assert!(!ok && report.contains("balance only supports"), "a wrong balance algorithm must be refused:\n{report}");
}
