//! The `ingest-gateway` command line: `--help` and `--version` answer and exit 0 without
//! reading any config, `--help` lists the subcommands, unknown arguments and
//! subcommands are refused by clap with exit status 2 (checks in `vero_testkit::cli`).

use vero_testkit::cli::Cli;

const CLI: Cli<'static> = Cli {
    binary: env!("CARGO_BIN_EXE_ingest-gateway"),
    name: "ingest-gateway",
    version: env!("CARGO_PKG_VERSION"),
    subcommands: &["run"],
};

#[test]
fn help_lists_the_subcommands_and_exits_zero() {
    CLI.help_lists_the_subcommands_and_exits_zero();
}

#[test]
fn version_prints_the_crate_version_and_exits_zero() {
    CLI.version_prints_the_crate_version_and_exits_zero();
}

#[test]
fn subcommand_help_exits_zero() {
    CLI.subcommand_help_exits_zero();
}

#[test]
fn unknown_flag_is_refused_with_clap_usage_error() {
    CLI.unknown_flag_is_refused_with_clap_usage_error();
}

#[test]
fn unknown_subcommand_is_refused_with_clap_usage_error() {
    CLI.unknown_subcommand_is_refused_with_clap_usage_error();
}

#[test]
fn without_arguments_it_starts_the_service_and_reads_config() {
    CLI.without_arguments_it_starts_the_service_and_reads_config();
}
