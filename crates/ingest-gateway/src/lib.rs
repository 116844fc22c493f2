//! The ingest gateway: Vero's Track API v2 over HTTP, into Kafka.
//!
//! A request is answered 200 only after Kafka acknowledged its record (`acks=all`);
//! every other outcome is one of the spec's error answers (see [`error::ApiError`]).
//!
//! * [`run`]: the service as `main` starts it (Kafka producer from the settings).
//! * [`serve`]: the same with any [`sink::EventSink`] (tests use [`sink::MemorySink`]).
//!
//! Modules: [`config`] (settings), [`http`] (connections, routing, CORS, bodies),
//! [`fields`] (body → fields, token), [`auth`] (tokens, rate limit), [`track`]
//! (validation → `TrackEvent`), [`users`] (validation → `UserCommand`), [`user_id`],
//! [`stamp`], [`sink`] (Kafka / memory), [`service`] (the handler), [`metrics`],
//! [`error`].

pub mod auth;
pub mod config;
pub mod error;
pub mod fields;
pub mod http;
pub mod metrics;
pub mod service;
pub mod sink;
pub mod stamp;
pub mod track;
pub mod user_id;
pub mod users;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Settings;
use service::Gateway;
use sink::{EventSink, KafkaSink};

/// Serve the gateway on `listener`, producing to Kafka, until `shutdown` is
/// cancelled; then finish in-flight requests and flush the producer.
pub async fn run(settings: Settings, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let sink: Arc<dyn EventSink> = Arc::new(KafkaSink::new(&settings.kafka)?);
    serve(settings, listener, sink, shutdown).await
}

/// [`run`] with a given sink.
pub async fn serve(
    settings: Settings,
    listener: TcpListener,
    sink: Arc<dyn EventSink>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let gateway = Arc::new(Gateway::new(&settings, sink.clone()));
    tracing::info!(
        address = %listener.local_addr()?,
        topic = %settings.kafka.topic,
        projects = settings.projects.len(),
        "ingest gateway listening"
    );
    http::server::serve(listener, gateway, &settings.http, shutdown).await;
    let flush_timeout = Duration::from_millis(settings.kafka.flush_timeout_ms);
    match sink.flush(flush_timeout).await {
        Ok(()) => tracing::info!("producer flushed; stopped"),
        // Every request answered 200 was acknowledged already; unflushed records
        // belong to requests that were not answered 200, whose clients retry.
        Err(e) => tracing::warn!(error = %e, "producer flush incomplete"),
    }
    Ok(())
}
