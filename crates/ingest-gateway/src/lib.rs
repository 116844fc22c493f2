//! The ingest gateway: Vero's Track API v2 over HTTP, into Kafka.
//!
//! A request is answered 200 only after Kafka acknowledged its record (`acks=all`);
//! every other outcome is one of the spec's error answers (see [`error::ApiError`]).
//!
//! * [`run`]: the service as `main` starts it (Kafka producer from the settings).
//! * [`serve`]: the same with any [`publish::Publisher`] (tests use [`publish::MemoryPublisher`]).
//! * [`serve_with_ops`]: [`serve`] with the operator endpoints' listener passed in.
//!
//! The operator endpoints (`/metrics`, `/healthz`, `/readyz`) are served next to the
//! API unless `ops.listen` is set: then on their own listener, and the API listener
//! answers 404 for them (keeps metrics off the public port).
//!
//! Modules: [`config`] (settings), [`http`] (connections, routing, CORS, bodies),
//! [`fields`] (body → fields, token), [`auth`] (tokens, rate limit), [`track`]
//! (validation → `TrackEvent`), [`users`] (validation → `UserCommand`), [`user_id`],
//! [`stamp`], [`publish`] (Kafka / memory), [`service`] (the handler), [`metrics`],
//! [`error`].

pub mod auth;
pub mod config;
pub mod error;
pub mod fields;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod publish;
pub mod service;
pub mod stamp;
pub mod track;
pub mod user_id;
pub mod users;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Settings;
use http::router::Endpoints;
use publish::{KafkaPublisher, Publisher};
use service::Gateway;

/// Serve the gateway on `listener`, producing to Kafka, until `shutdown` is
/// cancelled; then finish in-flight requests and flush the producer.
pub async fn run(settings: Settings, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let publisher: Arc<dyn Publisher> = Arc::new(KafkaPublisher::new(&settings.kafka)?);
    serve(settings, listener, publisher, shutdown).await
}

/// [`run`] with a given publisher. Binds `ops.listen` when it is set.
pub async fn serve(
    settings: Settings,
    listener: TcpListener,
    publisher: Arc<dyn Publisher>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let ops = match settings.ops.own_listener() {
        Some(address) => {
            Some(TcpListener::bind(address).await.with_context(|| format!("binding ops.listen = {address}"))?)
        }
        None => None,
    };
    serve_with_ops(settings, listener, ops, publisher, shutdown).await
}

/// [`serve`] with the operator endpoints on `ops` when given (whatever `ops.listen`
/// says), else next to the API on `listener`.
pub async fn serve_with_ops(
    settings: Settings,
    listener: TcpListener,
    ops: Option<TcpListener>,
    publisher: Arc<dyn Publisher>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let gateway = Arc::new(Gateway::new(&settings, publisher.clone()));
    let tls = http::tls::Tls::load(&settings.http.tls)?;
    if let Some(tls) = &tls {
        tokio::spawn(tls.clone().watch(shutdown.clone()));
    }
    tracing::info!(
        address = %listener.local_addr()?,
        scheme = if tls.is_some() { "https" } else { "http" },
        topic = %settings.kafka.events_topic,
        projects = settings.projects.len(),
        "ingest gateway listening"
    );
    match ops {
        None => http::server::serve(listener, gateway, Endpoints::All, &settings.http, tls, shutdown).await,
        Some(ops) => {
            tracing::info!(ops = %ops.local_addr()?, "ops endpoints listening");
            // The operator endpoints' own listener stays plain HTTP (probes, Prometheus).
            let h = &settings.http;
            let api = http::server::serve(listener, gateway.clone(), Endpoints::Api, h, tls, shutdown.clone());
            let ops = http::server::serve(ops, gateway, Endpoints::Ops, h, None, shutdown);
            tokio::join!(api, ops);
        }
    }
    let flush_timeout = Duration::from_millis(settings.kafka.flush_timeout_ms);
    match publisher.flush(flush_timeout).await {
        Ok(()) => tracing::info!("producer flushed; stopped"),
        // Every request answered 200 was acknowledged already; unflushed records
        // belong to requests that were not answered 200, whose clients retry.
        Err(e) => tracing::warn!(error = %e, "producer flush incomplete"),
    }
    Ok(())
}
