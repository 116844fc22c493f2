//! The command-line contract every service binary keeps, checked against the real
//! binary: `--help` (`-h`, `help`) lists the subcommands and exits 0, `--version`
//! (`-V`) prints `NAME VERSION` and exits 0, neither reads config; each subcommand
//! has `--help`; an unknown flag or subcommand is refused by clap with exit status 2;
//! no argument (or `run`) starts the service, which reads config.

use std::path::Path;
use std::process::{Command, Output};

/// One service binary under test.
#[derive(Debug, Clone, Copy)]
pub struct Cli<'a> {
    pub binary: &'a str,
    /// The binary's name as clap prints it.
    pub name: &'a str,
    pub version: &'a str,
    pub subcommands: &'a [&'a str],
}

const MISSING_CONFIG: &str = "/nonexistent/vero-config";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Cli<'_> {
    /// The binary with a config dir that does not exist: anything that reads config fails.
    fn run(&self, args: &[&str]) -> Output {
        Command::new(Path::new(self.binary))
            .args(args)
            .env("VERO_CONFIG_DIR", MISSING_CONFIG)
            .env_remove("VERO_ENV")
            .env("NO_COLOR", "1")
            .output()
            .expect("running the binary")
    }

    pub fn help_lists_the_subcommands_and_exits_zero(&self) {
        for flag in ["--help", "-h", "help"] {
            let output = self.run(&[flag]);
            let stdout = text(&output.stdout);
            assert_eq!(output.status.code(), Some(0), "{flag}: {stdout}{}", text(&output.stderr));
            assert!(stdout.contains(&format!("Usage: {}", self.name)), "{flag}: {stdout}");
            for subcommand in self.subcommands {
                assert!(
                    stdout.lines().any(|line| line.trim_start().starts_with(subcommand)),
                    "{flag}: {subcommand} not listed in {stdout}"
                );
            }
            assert!(stdout.contains("--version") && stdout.contains("VERO_CONFIG_DIR"), "{flag}: {stdout}");
        }
    }

    pub fn version_prints_the_crate_version_and_exits_zero(&self) {
        for flag in ["--version", "-V"] {
            let output = self.run(&[flag]);
            assert_eq!(output.status.code(), Some(0), "{flag}: {}", text(&output.stderr));
            assert_eq!(text(&output.stdout).trim(), format!("{} {}", self.name, self.version));
        }
    }

    pub fn subcommand_help_exits_zero(&self) {
        for subcommand in self.subcommands {
            let output = self.run(&[subcommand, "--help"]);
            let stdout = text(&output.stdout);
            assert_eq!(output.status.code(), Some(0), "{subcommand}: {}", text(&output.stderr));
            assert!(stdout.contains(&format!("Usage: {} {subcommand}", self.name)), "{stdout}");
        }
    }

    pub fn unknown_flag_is_refused_with_clap_usage_error(&self) {
        let output = self.run(&["--no-such-flag"]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("unexpected argument '--no-such-flag'") && stderr.contains("Usage:"), "{stderr}");
        assert!(output.stdout.is_empty());
    }

    pub fn unknown_subcommand_is_refused_with_clap_usage_error(&self) {
        let output = self.run(&["frobnicate"]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("unrecognized subcommand 'frobnicate'") && stderr.contains("Usage:"), "{stderr}");
    }

    /// No argument means "run": config is read, and the missing config dir stops the start.
    pub fn without_arguments_it_starts_the_service_and_reads_config(&self) {
        for args in [&[][..], &["run"][..]] {
            let output = self.run(args);
            let stderr = text(&output.stderr);
            assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
            assert!(stderr.contains(MISSING_CONFIG), "{args:?}: {stderr}");
        }
    }
}
