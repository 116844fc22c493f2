//! The gateway's Prometheus metrics, served on `GET /metrics`.
//!
//! Labels are bounded: `route` and `status` come from fixed sets, `reason` from
//! `ApiError::reason`, `action` from the seven users endpoints, `project` from the
//! configured projects. Tokens never appear.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use vero_model::UserAction;

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub events_accepted: IntCounterVec,
    pub events_rejected: IntCounterVec,
    pub user_commands_accepted: IntCounterVec,
    pub user_commands_rejected: IntCounterVec,
    pub produce_latency: Histogram,
    pub producer_queue_depth: IntGauge,
    pub connections_open: IntGauge,
    pub connections_total: IntCounter,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("vero_gateway".into()), None).expect("static prefix is valid");
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests answered, by route and status code."),
            &["route", "status"],
        )
        .expect("valid metric");
        let events_accepted = IntCounterVec::new(
            Opts::new("events_accepted_total", "Events acknowledged by Kafka and answered 200, by project."),
            &["project"],
        )
        .expect("valid metric");
        let events_rejected = IntCounterVec::new(
            Opts::new("events_rejected_total", "Track requests not accepted, by reason."),
            &["reason"],
        )
        .expect("valid metric");
        let user_commands_accepted = IntCounterVec::new(
            Opts::new(
                "user_commands_accepted_total",
                "Users endpoint requests acknowledged by Kafka and answered 200, by project and action.",
            ),
            &["project", "action"],
        )
        .expect("valid metric");
        let user_commands_rejected = IntCounterVec::new(
            Opts::new("user_commands_rejected_total", "Users endpoint requests not accepted, by action and reason."),
            &["action", "reason"],
        )
        .expect("valid metric");
        let produce_latency = Histogram::with_opts(
            HistogramOpts::new(
                "produce_latency_seconds",
                "Time from handing a record to the producer to its delivery report.",
            )
            .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )
        .expect("valid metric");
        let producer_queue_depth =
            IntGauge::new("producer_queue_depth", "Records handed to the producer and not yet acknowledged.")
                .expect("valid metric");
        let connections_open =
            IntGauge::new("http_connections_open", "HTTP connections being served.").expect("valid metric");
        let connections_total =
            IntCounter::new("http_connections_total", "HTTP connections accepted.").expect("valid metric");
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(events_accepted.clone()),
            Box::new(events_rejected.clone()),
            Box::new(user_commands_accepted.clone()),
            Box::new(user_commands_rejected.clone()),
            Box::new(produce_latency.clone()),
            Box::new(producer_queue_depth.clone()),
            Box::new(connections_open.clone()),
            Box::new(connections_total.clone()),
        ] {
            registry.register(collector).expect("metric names are unique");
        }
        Self {
            registry,
            requests,
            events_accepted,
            events_rejected,
            user_commands_accepted,
            user_commands_rejected,
            produce_latency,
            producer_queue_depth,
            connections_open,
            connections_total,
        }
    }

    pub fn render(&self) -> String {
        vero_service::ops::render_metrics(&self.registry)
    }
}

/// The `action` label of the user command metrics.
pub fn action_label(action: UserAction) -> &'static str {
    match action {
        UserAction::Track => "track",
        UserAction::Edit => "edit",
        UserAction::Tags => "tags",
        UserAction::Unsubscribe => "unsubscribe",
        UserAction::Resubscribe => "resubscribe",
        UserAction::Reidentify => "reidentify",
        UserAction::Delete => "delete",
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
