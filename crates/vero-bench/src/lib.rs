//! Baselines the pipeline's figures are divided by, and the `make bench` suite.
//!
//! * [`trivial_server`]: the least an HTTP server can do for a track request: parse
//!   the same JSON with the same checks and answer 200. The gateway's requests/s and
//!   latency are reported as ratios against it.
//! * [`consume`]: a bare rdkafka consumer reading the sink's topic: the broker's
//!   ceiling for the sink.
//! * [`analyst`]: the docs/analytics.md questions over 10 M synthetic events on
//!   ClickHouse 18.16, plain and with `FINAL` (binary `analyst-bench`).

pub mod analyst;
pub mod consume;
pub mod procs;
pub mod produce;
pub mod records;
pub mod suite;
pub mod topic_scan;
pub mod trivial_server;
