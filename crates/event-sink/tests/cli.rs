//! The `event-sink` command line: `--help` and `--version` answer and exit 0 without
//! reading any config, `--help` lists the subcommands, unknown arguments and
//! subcommands are refused by clap with exit status 2 and a message naming them.

use std::process::{Command, Output};

const SUBCOMMANDS: &[&str] = &["run", "migrate", "replay-dlq"];

/// The binary with a config dir that does not exist: anything that reads config fails.
fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_event-sink"))
        .args(args)
        .env("VERO_CONFIG_DIR", "/nonexistent/vero-config")
        .env_remove("VERO_ENV")
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_lists_the_subcommands_and_exits_zero() {
    for flag in ["--help", "-h", "help"] {
        let output = run(&[flag]);
        let stdout = text(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{flag}: {stdout}{}", text(&output.stderr));
        assert!(stdout.contains("Usage: event-sink"), "{flag}: {stdout}");
        for subcommand in SUBCOMMANDS {
            assert!(
                stdout.lines().any(|line| line.trim_start().starts_with(subcommand)),
                "{flag}: {subcommand} not listed in {stdout}"
            );
        }
        assert!(stdout.contains("--version") && stdout.contains("VERO_CONFIG_DIR"), "{flag}: {stdout}");
    }
}

#[test]
fn version_prints_the_crate_version_and_exits_zero() {
    for flag in ["--version", "-V"] {
        let output = run(&[flag]);
        assert_eq!(output.status.code(), Some(0), "{flag}: {}", text(&output.stderr));
        assert_eq!(text(&output.stdout).trim(), concat!("event-sink ", env!("CARGO_PKG_VERSION")));
    }
}

#[test]
fn subcommand_help_exits_zero() {
    for subcommand in SUBCOMMANDS {
        let output = run(&[subcommand, "--help"]);
        assert_eq!(output.status.code(), Some(0), "{subcommand}: {}", text(&output.stderr));
        assert!(text(&output.stdout).contains(&format!("Usage: event-sink {subcommand}")), "{}", text(&output.stdout));
    }
}

#[test]
fn unknown_flag_is_refused_with_clap_usage_error() {
    let output = run(&["--no-such-flag"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unexpected argument '--no-such-flag'") && stderr.contains("Usage:"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn unknown_subcommand_is_refused_with_clap_usage_error() {
    let output = run(&["frobnicate"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unrecognized subcommand 'frobnicate'") && stderr.contains("Usage:"), "{stderr}");
}

#[test]
fn without_arguments_it_starts_the_service_and_reads_config() {
    // No argument means "run": config is read, and the missing config dir stops the start.
    for args in [&[][..], &["run"][..]] {
        let output = run(args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("/nonexistent/vero-config"), "{args:?}: {stderr}");
    }
}
