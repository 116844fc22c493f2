//! Paths of the repository and the offline validators of `scripts/validate-deploy.py`.
//!
//! The validators come from PyPI (installed by `scripts/install-deps.sh`); a missing
//! tool is an error that says so, never a silently skipped check.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// The workspace root (two levels above this crate).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root exists")
}

/// What a validator run printed, and whether it accepted the input.
#[derive(Debug)]
pub struct Validation {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Run `scripts/validate-deploy.py <command> <target>`.
pub fn validate(command: &str, target: &Path) -> anyhow::Result<Validation> {
    let script = root().join("scripts/validate-deploy.py");
    let output = Command::new("python3")
        .arg(&script)
        .arg(command)
        .arg(target)
        .output()
        .with_context(|| format!("running {} (python3 on PATH?)", script.display()))?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if stderr.contains("run scripts/install-deps.sh") || stderr.contains("ModuleNotFoundError") {
        bail!("the deployment validators are not installed: run scripts/install-deps.sh\n{stderr}");
    }
    Ok(Validation { ok: output.status.success(), stdout: String::from_utf8_lossy(&output.stdout).into_owned(), stderr })
}

/// Like [`validate`], but the run must succeed; returns its standard output.
pub fn validate_ok(command: &str, target: &Path) -> anyhow::Result<String> {
    let run = validate(command, target)?;
    if !run.ok {
        bail!("validate-deploy.py {command} {} failed:\n{}{}", target.display(), run.stdout, run.stderr);
    }
    Ok(run.stdout)
}

/// Copy a directory tree (for tests that break a copy of the real files).
pub fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
