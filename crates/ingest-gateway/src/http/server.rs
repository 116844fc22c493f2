//! The connection loop.
//!
//! Guarantees:
//! * At most `http.max_connections` connections are served at once: the loop stops
//!   accepting while at the cap (further clients wait in the kernel backlog).
//! * A client must send a complete request head within `http.header_read_timeout_ms`;
//!   hyper runs the same timer while a keep-alive connection idles, so idle and slow
//!   connections are closed. Body time is bounded in [`super::body`].
//! * Shutdown: stop accepting, let in-flight requests finish (up to
//!   `http.shutdown_grace_ms`), close idle keep-alive connections.
//!
//! * With `tls` ([`super::tls`]) every connection is a TLS one, its handshake on the
//!   connection's own task within `http.header_read_timeout_ms`.
//!
//! The same loop serves the operator endpoints' own listener when `ops.listen` is
//! set: each listener answers the routes of its [`Endpoints`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::HttpSettings;
use crate::http::router::Endpoints;
use crate::http::tls::Tls;
use crate::service::Gateway;

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again,
/// so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    endpoints: Endpoints,
    settings: &HttpSettings,
    tls: Option<Arc<Tls>>,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(settings.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(settings.header_read_timeout()).keep_alive(true);
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let handler = gateway.clone();
        let service = hyper::service::service_fn(move |request| {
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(handler.handle_on(endpoints, request).await) }
        });
        let (watcher, builder, tls) = (graceful.watcher(), builder.clone(), tls.clone());
        let handshake_timeout = settings.header_read_timeout();
        let metrics_gateway = gateway.clone();
        metrics_gateway.metrics.connections_total.inc();
        metrics_gateway.metrics.connections_open.inc();
        tokio::spawn(async move {
            let served = match tls {
                None => watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await,
                Some(tls) => match tls.accept(stream, handshake_timeout).await {
                    Ok(stream) => watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await,
                    Err(e) => {
                        tracing::debug!(error = %e, "TLS handshake failed");
                        Ok(())
                    }
                },
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            metrics_gateway.metrics.connections_open.dec();
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!(open_connections = graceful.count(), "stopped accepting; waiting for open connections");
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections finished"),
        _ = tokio::time::sleep(settings.shutdown_grace()) => {
            tracing::warn!("shutdown grace period over; closing the remaining connections");
        }
    }
}
