//! Every way a request can fail, and the one place that maps a failure to its HTTP
//! status, `Retry-After` and the spec's body `{"status":N,"message":"..."}`.
//!
//! Messages name the field or limit at fault and never contain a token.

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::publish::PublishError;

pub type Body = Full<Bytes>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or a field is invalid; the message names the field.
    #[error("{0}")]
    Invalid(Cow<'static, str>),
    #[error("Missing auth token: send auth_token or tracking_api_key in the body, form or query string.")]
    MissingToken,
    #[error("Invalid auth token.")]
    UnknownToken,
    #[error("Not found: {0}")]
    NotFound(String),
    #[error("Method {method} is not allowed here; use {allow}.")]
    MethodNotAllowed { method: String, allow: &'static str },
    #[error("Request body did not arrive within {0} ms.")]
    BodyTimeout(u64),
    #[error("{0}")]
    TooLarge(Cow<'static, str>),
    #[error("{0}")]
    UnsupportedMediaType(Cow<'static, str>),
    #[error("Rate limit exceeded for this token; retry after {retry_after_secs} s.")]
    RateLimited { retry_after_secs: u64 },
    #[error("The request could not be stored right now ({reason}); retry after {retry_after_secs} s.")]
    Unavailable { reason: &'static str, retry_after_secs: u64 },
    /// A non-retryable downstream failure (e.g. topic authorization): a server bug or
    /// misconfiguration, not something the client can fix or retry away.
    #[error("The request could not be stored: {0}.")]
    Internal(&'static str),
}

impl ApiError {
    pub fn invalid(message: impl Into<Cow<'static, str>>) -> Self {
        Self::Invalid(message.into())
    }

    /// What a publisher failure means for the client; `retry_after_secs` goes into 503s.
    pub fn from_sink(error: PublishError, retry_after_secs: u64) -> Self {
        match error {
            PublishError::QueueFull => Self::Unavailable { reason: "the producer queue is full", retry_after_secs },
            PublishError::Timeout => {
                Self::Unavailable { reason: "Kafka did not acknowledge it in time", retry_after_secs }
            }
            PublishError::Unavailable => Self::Unavailable { reason: "Kafka is unavailable", retry_after_secs },
            PublishError::TooLarge => Self::TooLarge("The record is larger than the broker accepts.".into()),
            PublishError::Rejected(reason) => Self::Internal(reason),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::MissingToken | Self::UnknownToken => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `reason` label of `vero_gateway_events_rejected_total`: a fixed, small set.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid",
            Self::MissingToken => "missing_token",
            Self::UnknownToken => "unknown_token",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::BodyTimeout(_) => "body_timeout",
            Self::TooLarge(_) => "too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::RateLimited { .. } => "rate_limited",
            Self::Unavailable { .. } => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let mut response = json_response(status, &self.to_string());
        let headers = response.headers_mut();
        match self {
            Self::RateLimited { retry_after_secs } | Self::Unavailable { retry_after_secs, .. } => {
                headers.insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            Self::MethodNotAllowed { allow, .. } => {
                headers.insert(ALLOW, HeaderValue::from_static(allow));
            }
            _ => {}
        }
        response
    }
}

/// `{"status":N,"message":"..."}` with `Content-Type: application/json`.
pub fn json_response(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "status": status.as_u16(), "message": message }).to_string();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The spec's success answer.
pub fn success() -> Response<Body> {
    static BODY: &[u8] = br#"{"status":200,"message":"Success."}"#;
    let mut response = Response::new(Full::new(Bytes::from_static(BODY)));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_of(response: Response<Body>) -> serde_json::Value {
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap()
    }

    #[tokio::test]
    async fn every_error_has_the_spec_body_and_headers() {
        let r = ApiError::Unavailable { reason: "broker down", retry_after_secs: 5 }.into_response();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[RETRY_AFTER], "5");
        let body = body_of(r).await;
        assert_eq!(body["status"], 503);
        assert!(body["message"].as_str().unwrap().contains("broker down"));

        let r = ApiError::MethodNotAllowed { method: "GET".into(), allow: "POST, OPTIONS" }.into_response();
        assert_eq!((r.status().as_u16(), r.headers()[ALLOW].to_str().unwrap()), (405, "POST, OPTIONS"));
        let r = ApiError::RateLimited { retry_after_secs: 2 }.into_response();
        assert_eq!((r.status().as_u16(), r.headers()[RETRY_AFTER].to_str().unwrap()), (429, "2"));
        let body = body_of(ApiError::invalid("identity.id is required").into_response()).await;
        assert_eq!(body, serde_json::json!({"status": 400, "message": "identity.id is required"}));
        let body = body_of(success()).await;
        assert_eq!(body, serde_json::json!({"status": 200, "message": "Success."}));
    }
}
