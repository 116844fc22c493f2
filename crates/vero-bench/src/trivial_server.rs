//! The HTTP baseline: a hyper server that parses a track request's JSON into typed
//! fields, checks what the gateway checks first (token, `event_name`, `identity.id`)
//! and answers `{"status":200,"message":"Success."}`, producing nothing anywhere.
//!
//! Same runtime, same HTTP stack (hyper 1, HTTP/1.1 keep-alive) as the gateway, so the
//! ratio gateway/baseline measures what the gateway adds: routing, validation,
//! Avro encoding and waiting for Kafka's acknowledgement. Bodies are capped at 1 MiB.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const MAX_BODY: usize = 1 << 20;

/// A user id arrives as a string or as a number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum UserId {
    Text(String),
    Number(serde_json::Number),
}

#[derive(Debug, Deserialize)]
pub struct Identity {
    pub id: Option<UserId>,
    pub email: Option<String>,
    #[serde(flatten)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// The JSON form of `POST /api/v2/events/track`.
#[derive(Debug, Deserialize)]
pub struct TrackRequest {
    pub auth_token: Option<String>,
    pub tracking_api_key: Option<String>,
    pub event_name: Option<String>,
    pub identity: Option<Identity>,
    pub data: Option<serde_json::Map<String, serde_json::Value>>,
    pub development_mode: Option<bool>,
    pub extras: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Parse and check a body the way the gateway's first steps do. `Err` is (status, message).
pub fn parse_and_check(body: &[u8], token: &str) -> Result<TrackRequest, (StatusCode, String)> {
    let request: TrackRequest =
        serde_json::from_slice(body).map_err(|e| (StatusCode::BAD_REQUEST, format!("body is not valid JSON: {e}")))?;
    let sent = request.auth_token.as_deref().or(request.tracking_api_key.as_deref());
    if sent != Some(token) {
        return Err((StatusCode::UNAUTHORIZED, "auth_token is missing or unknown".into()));
    }
    match request.event_name.as_deref() {
        Some(name) if !name.is_empty() && name.chars().count() <= 255 => {}
        _ => return Err((StatusCode::BAD_REQUEST, "event_name must be 1 to 255 characters".into())),
    }
    if request.identity.as_ref().and_then(|i| i.id.as_ref()).is_none() {
        return Err((StatusCode::BAD_REQUEST, "identity.id is required".into()));
    }
    Ok(request)
}

fn json(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "status": status.as_u16(), "message": message }).to_string();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    response
}

async fn answer(request: Request<Incoming>, token: &str, accepted: &AtomicU64) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if path != "/api/v2/events/track" && path != "/api/v2/events/track.json" {
        return json(StatusCode::NOT_FOUND, "unknown path");
    }
    if request.method() != Method::POST {
        return json(StatusCode::METHOD_NOT_ALLOWED, "use POST");
    }
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return json(StatusCode::PAYLOAD_TOO_LARGE, "body larger than 1 MiB"),
    };
    match parse_and_check(&body, token) {
        Ok(_) => {
            accepted.fetch_add(1, Ordering::Relaxed);
            json(StatusCode::OK, "Success.")
        }
        Err((status, message)) => json(status, &message),
    }
}

/// A running baseline's counters.
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests answered 200.
    pub accepted: AtomicU64,
}

/// Serve on `listener` until `shutdown`; `token` is the one accepted auth token.
pub async fn run(listener: TcpListener, token: String, counters: Arc<Counters>, shutdown: CancellationToken) {
    let token: Arc<str> = token.into();
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (token, counters, shutdown) = (token.clone(), counters.clone(), shutdown.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let (token, counters) = (token.clone(), counters.clone());
                async move { Ok::<_, Infallible>(answer(request, &token, &counters.accepted).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = shutdown.cancelled() => connection.as_mut().graceful_shutdown(),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_what_the_gateway_checks_first() {
        let ok = br#"{"auth_token":"t","identity":{"id":1,"email":null,"plan":"pro"},"event_name":"e","data":{"a":1}}"#;
        let request = parse_and_check(ok, "t").unwrap();
        assert!(matches!(request.identity.unwrap().id, Some(UserId::Number(_))));
        let key = br#"{"tracking_api_key":"t","identity":{"id":"1"},"event_name":"e"}"#;
        assert!(parse_and_check(key, "t").is_ok());
        assert_eq!(parse_and_check(ok, "other").unwrap_err().0, StatusCode::UNAUTHORIZED);
        let no_id = br#"{"auth_token":"t","identity":{},"event_name":"e"}"#;
        assert_eq!(parse_and_check(no_id, "t").unwrap_err().0, StatusCode::BAD_REQUEST);
        let empty_name = br#"{"auth_token":"t","identity":{"id":"1"},"event_name":""}"#;
        assert_eq!(parse_and_check(empty_name, "t").unwrap_err().0, StatusCode::BAD_REQUEST);
        assert_eq!(parse_and_check(b"{", "t").unwrap_err().0, StatusCode::BAD_REQUEST);
    }
}
