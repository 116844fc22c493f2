//! What a load run does, as command-line flags (the loadgen is an operator's tool run
//! by hand or by `make bench`, so it takes flags rather than the services' layered
//! config files). Every run is bounded: by `--requests`, by `--duration`, or both.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// One load run.
#[derive(Debug, Clone, Args)]
pub struct LoadConfig {
    /// Track endpoint to load (http only; loopback or a host you own).
    #[arg(long, default_value = "http://127.0.0.1:8080/api/v2/events/track")]
    pub url: String,
    /// Auth token sent as `auth_token` in every body (never printed).
    #[arg(long, env = "VERO_LOADGEN_TOKEN", default_value = "your_auth_token", hide_env_values = true)]
    pub token: String,
    /// Concurrent keep-alive connections (one request in flight on each).
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Measured duration in seconds (after the warmup). Default 10 s when
    /// `--requests` is not given either.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Stop after this many requests (warmup requests included).
    #[arg(long)]
    pub requests: Option<u64>,
    /// Open loop: target requests/s over all connections. Latency is then measured
    /// from each request's scheduled start, so a stalled server cannot hide its
    /// queueing (no coordinated omission). Without it the run is closed loop: every
    /// connection sends its next request as soon as the previous one is answered.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds of load before measuring starts (their results are not reported).
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,
    /// Distinct users (`identity.id` values), picked uniformly.
    #[arg(long, default_value_t = 10_000)]
    pub users: u64,
    /// Event names, picked uniformly.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "page_viewed,product_viewed,added_to_cart,checkout_started,order_completed,user_signed_up"
    )]
    pub event_names: Vec<String>,
    /// Request body sizes in bytes, picked uniformly (bodies are padded to the size).
    #[arg(long, value_delimiter = ',', default_value = "300,600,2000")]
    pub payload_bytes: Vec<usize>,
    /// Send an explicit request id (`extras.message_id`, unique per request) in every
    /// body, as Segment/RudderStack clients do; without it the gateway's requests carry
    /// none and the consumers' content rule identifies repeats.
    #[arg(long)]
    pub message_ids: bool,
    /// Events per request. Above 1 every request is an `events/batch` body
    /// (`{"auth_token": ..., "events": [...]}`, point `--url` at
    /// `/api/v2/events/batch`) of this many events, each of the sizes above.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Per-request timeout in milliseconds; a timed-out request counts as an error.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Marker put into every event (`data.loadgen_run`); random when not given.
    #[arg(long)]
    pub run_id: Option<String>,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub e2e: E2eConfig,
}

/// End-to-end mode: after (and while) sending, wait until ClickHouse holds every
/// acknowledged event.
#[derive(Debug, Clone, Args)]
pub struct E2eConfig {
    /// ClickHouse HTTP interface, e.g. `http://127.0.0.1:8123`; enables end-to-end mode.
    #[arg(long)]
    pub clickhouse_url: Option<String>,
    /// Table (`database.table`) the sink writes track events to.
    #[arg(long, default_value = "vero.events")]
    pub clickhouse_table: String,
    #[arg(long, env = "VERO_LOADGEN_CLICKHOUSE_USER", default_value = "default")]
    pub clickhouse_user: String,
    #[arg(long, env = "VERO_LOADGEN_CLICKHOUSE_PASSWORD", default_value = "", hide_env_values = true)]
    pub clickhouse_password: String,
    /// Seconds to wait after the load for the last events to become queryable.
    #[arg(long, default_value_t = 120.0)]
    pub e2e_timeout: f64,
    /// How often to query ClickHouse, in ms: the resolution of the ingest-to-queryable latency.
    #[arg(long, default_value_t = 100)]
    pub poll_interval_ms: u64,
}

impl LoadConfig {
    /// A config with the defaults above, for `url`: what tests and the bench suite start from.
    pub fn for_url(url: &str) -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            config: LoadConfig,
        }
        let mut config = Cli::parse_from(["vero-loadgen"]).config;
        config.url = url.to_owned();
        config.quiet = true;
        config
    }

    pub fn measured_duration(&self) -> Option<Duration> {
        match (self.duration, self.requests) {
            (Some(secs), _) => Some(Duration::from_secs_f64(secs.max(0.0))),
            (None, Some(_)) => None,
            (None, None) => Some(Duration::from_secs(10)),
        }
    }

    pub fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup.max(0.0))
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }

    /// Check what clap cannot: a run must have work to do and a way to stop.
    pub fn validate(&self) -> Result<(), String> {
        if self.connections == 0 {
            return Err("--connections must be at least 1".into());
        }
        if self.users == 0 {
            return Err("--users must be at least 1".into());
        }
        if self.event_names.is_empty() || self.event_names.iter().any(String::is_empty) {
            return Err("--event-names needs at least one non-empty name".into());
        }
        if self.batch == 0 {
            return Err("--batch must be at least 1 event per request".into());
        }
        if self.batch > 1 && self.e2e.clickhouse_url.is_some() {
            return Err("--batch counts requests, not events: it cannot be combined with --clickhouse-url".into());
        }
        if self.payload_bytes.is_empty() {
            return Err("--payload-bytes needs at least one size".into());
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err("--rate must be a positive number of requests/s".into());
            }
        }
        if self.duration.is_some_and(|d| !(d.is_finite() && d > 0.0)) {
            return Err("--duration must be a positive number of seconds".into());
        }
        if !self.warmup.is_finite() || self.warmup < 0.0 {
            return Err("--warmup must be zero or more seconds".into());
        }
        Ok(())
    }
}
