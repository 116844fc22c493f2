# The two commands the README promises, plus lint and bench.
#   make run   - the whole pipeline locally, in the foreground (Ctrl-C stops it)
#   make test  - install and start what tests need, then run every test
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: run run-clean test deps lint fmt bench chaos

deps:
	scripts/install-deps.sh

run:
	scripts/run-local.sh

# The same, from empty Kafka and ClickHouse data.
run-clean:
	VERO_RUN_CLEAN=1 scripts/run-local.sh

# The service and dev binaries first: the make-run and fault-harness tests start them
# as processes, and `cargo test` alone builds only those of crates with integration tests.
test: deps
	cargo build --workspace --bins
	cargo test --workspace --all-targets --no-fail-fast

# A lint tool missing from the toolchain is named and its check skipped, rather than
# failing with cargo's "no such command" (install: rustup component add rustfmt clippy).
lint:
	@if cargo fmt --version >/dev/null 2>&1; then cargo fmt --all -- --check; \
	else echo "make lint: SKIPPED cargo fmt --check: rustfmt is not installed (rustup component add rustfmt)"; fi
	@if cargo clippy -V >/dev/null 2>&1; then cargo clippy --workspace --all-targets -- -D warnings; \
	else echo "make lint: SKIPPED cargo clippy: clippy is not installed (rustup component add clippy)"; fi

fmt:
	cargo fmt --all

# Release build, criterion microbenchmarks and the benchmark suite; writes docs/benchmarks.md.
# Not part of `make test`. VERO_BENCH_OVERLOAD_SECS shortens the 5-minute overload run.
bench:
	scripts/bench.sh

# The full fault schedule (docs/reliability.md) on release binaries; prints the table.
# A short schedule runs inside `make test` (crates/vero-chaos/tests/short_schedule.rs).
chaos: deps
	cargo build --release --bins
	target/release/vero-chaos --schedule full --table target/chaos-table.md
