//! `vero-loadgen`: load for the Vero Track API, measured honestly.
//!
//! * [`config::LoadConfig`]: users, event names, body sizes, connections, closed loop
//!   or open loop at a target rate, bounded by requests and/or duration.
//! * [`workload::Workload`]: realistic `events/track` bodies carrying a run id and a
//!   sequence number, so every event can be found again downstream.
//! * [`client`]: one keep-alive HTTP/1.1 connection per `--connections`.
//! * [`run::run`]: the load itself; latencies go into HDR histograms (µs resolution,
//!   coordinated-omission-free in open loop) and come out as a [`report::Report`].
//! * [`e2e`]: end-to-end mode: wait until ClickHouse holds every acknowledged event;
//!   report missing and duplicated events and ingest-to-queryable latency.

pub mod client;
pub mod config;
pub mod e2e;
pub mod report;
pub mod run;
pub mod workload;

pub use config::LoadConfig;
pub use report::{E2eReport, Percentiles, Report};
pub use run::run;
