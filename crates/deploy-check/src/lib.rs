//! Checks of the deployment files that can run without Docker or a cluster.
//!
//! The tests under `tests/` use these pieces to check, on every `cargo test`:
//! * the compose file and the assembled Kubernetes manifests against their schemas
//!   (through `scripts/validate-deploy.py`, see [`repo`]);
//! * that every environment variable and config file a deployment hands a service is
//!   one the service's own loader accepts ([`deployment`], [`services`]);
//! * that the Dockerfile builds and ships exactly the workspace's service binaries
//!   ([`dockerfile`]);
//! * that every metric the Grafana dashboard and the Prometheus alert rules query is
//!   exported by a running service ([`promql`], [`exposition`], [`grafana`]);
//! * that every metric, config key and subcommand the docs name exists ([`docs`]).
//!
//! Nothing here is used by the services; the crate exists for its tests.

pub mod deployment;
pub mod dockerfile;
pub mod docs;
pub mod exposition;
pub mod grafana;
pub mod promql;
pub mod repo;
pub mod services;
