//! One keep-alive HTTP/1.1 connection to the target, with one request in flight.
//!
//! A raw hyper client connection per load-generator connection (no pool): the number of
//! server connections is exactly `--connections`, which is what a benchmark at "256
//! connections" must mean. A connection that fails or is closed by the server is
//! reopened before the next request; the failed request is reported, never retried,
//! so the report counts what the server actually did.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Why a request got no HTTP answer. Mapped to report keys in [`RequestError::kind`].
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("HTTP handshake failed: {0}")]
    Handshake(hyper::Error),
    #[error("no answer within the request timeout")]
    Timeout,
    #[error("connection failed mid-request: {0}")]
    Io(hyper::Error),
}

impl RequestError {
    /// The key this failure is counted under in the report.
    pub fn kind(&self) -> &'static str {
        match self {
            RequestError::Connect(_) | RequestError::Handshake(_) => "connect",
            RequestError::Timeout => "timeout",
            RequestError::Io(_) => "io",
        }
    }
}

/// Where requests go: `http://host:port/path`.
#[derive(Debug, Clone)]
pub struct Target {
    authority: String,
    host: HeaderValue,
    path: Uri,
}

impl Target {
    pub fn parse(url: &str) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("--url {url:?} is not a URL: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("--url {url:?}: only http:// targets are supported"));
        }
        let authority = uri.authority().ok_or_else(|| format!("--url {url:?} has no host"))?;
        let port = authority.port_u16().unwrap_or(80);
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        Ok(Self {
            authority: format!("{}:{port}", authority.host()),
            host: HeaderValue::from_str(authority.as_str()).map_err(|e| e.to_string())?,
            path: path.parse().map_err(|e| format!("--url path: {e}"))?,
        })
    }

    pub fn authority(&self) -> &str {
        &self.authority
    }
}

/// A connection that reopens itself when needed.
#[derive(Debug, Default)]
pub struct Connection {
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    async fn open(target: &Target) -> Result<SendRequest<Full<Bytes>>, RequestError> {
        let stream = TcpStream::connect(&target.authority).await.map_err(RequestError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(RequestError::Handshake)?;
        tokio::spawn(async move {
            // Ends when the server closes the connection or the sender is dropped.
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// POST `body` as JSON and return the status once the whole answer was read.
    pub async fn post_json(&mut self, target: &Target, body: Bytes, timeout: Duration) -> Result<u16, RequestError> {
        match tokio::time::timeout(timeout, self.exchange(target, body)).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(e)) => {
                self.sender = None;
                Err(e)
            }
            Err(_) => {
                // The request may still be in flight: this connection is unusable.
                self.sender = None;
                Err(RequestError::Timeout)
            }
        }
    }

    async fn exchange(&mut self, target: &Target, body: Bytes) -> Result<u16, RequestError> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.sender = Some(Self::open(target).await?);
        }
        let sender = self.sender.as_mut().expect("opened above");
        sender.ready().await.map_err(RequestError::Io)?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(target.path.clone())
            .header(HOST, target.host.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(Full::new(body))
            .expect("static request parts are valid");
        let response = sender.send_request(request).await.map_err(RequestError::Io)?;
        let status = response.status().as_u16();
        let closes = response.headers().get(CONNECTION).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        response.into_body().collect().await.map_err(RequestError::Io)?;
        if closes {
            self.sender = None;
        }
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        let t = Target::parse("http://127.0.0.1:8080/api/v2/events/track?x=1").unwrap();
        assert_eq!(t.authority(), "127.0.0.1:8080");
        assert_eq!(t.path.to_string(), "/api/v2/events/track?x=1");
        assert_eq!(Target::parse("http://localhost/").unwrap().authority(), "localhost:80");
        assert!(Target::parse("https://x/").unwrap_err().contains("only http"));
        assert!(Target::parse("not a url").is_err());
    }
}
