# The two commands the README promises, plus lint and bench.
#   make run   - the whole pipeline locally, in the foreground (Ctrl-C stops it)
#   make test  - install and start what tests need, then run every test
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: run test deps lint fmt bench

deps:
	scripts/install-deps.sh

run:
	scripts/run-local.sh

test: deps
	cargo test --workspace --all-targets --no-fail-fast

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

# Release build, criterion microbenchmarks and the benchmark suite; writes docs/benchmarks.md.
# Not part of `make test`. VERO_BENCH_OVERLOAD_SECS shortens the 5-minute overload run.
bench:
	scripts/bench.sh
