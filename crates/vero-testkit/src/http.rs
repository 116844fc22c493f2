//! One plain HTTP/1.1 exchange with a local service: a GET of an ops endpoint
//! (`/metrics`, `/readyz`) or a POST of a body, what tests and benchmarks send to the
//! services they start. The request says `connection: close`, so the answer is what
//! arrives until the server closes the connection.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The whole answer (status line, headers, body) of `GET path` on `addr`, within `timeout`.
pub async fn get(addr: SocketAddr, path: &str, timeout: Duration) -> anyhow::Result<String> {
    let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    exchange(addr, &request, timeout).await.with_context(|| format!("GET {path} on {addr}"))
}

/// The whole answer (status line, headers, body) of `POST path` on `addr` with `body`
/// as `content_type`, within `timeout`.
pub async fn post(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: &str,
    timeout: Duration,
) -> anyhow::Result<String> {
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    exchange(addr, &request, timeout).await.with_context(|| format!("POST {path} on {addr}"))
}

async fn exchange(addr: SocketAddr, request: &str, timeout: Duration) -> anyhow::Result<String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        anyhow::Ok(answer)
    };
    tokio::time::timeout(timeout, exchange).await.with_context(|| format!("no answer in {timeout:?}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_the_whole_answer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 256];
            let n = socket.read(&mut request).await.unwrap();
            assert!(String::from_utf8_lossy(&request[..n]).starts_with("GET /metrics HTTP/1.1\r\n"));
            socket.write_all(b"HTTP/1.1 200 OK\r\n\r\nx_total 3\n").await.unwrap();
        });
        let answer = get(addr, "/metrics", Duration::from_secs(5)).await.unwrap();
        assert!(answer.ends_with("x_total 3\n"), "{answer}");
    }

    #[tokio::test]
    async fn posts_the_body() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut chunk = [0u8; 256];
            while !request.ends_with(b"{\"a\":1}") {
                let n = socket.read(&mut chunk).await.unwrap();
                request.extend_from_slice(&chunk[..n]);
            }
            let request = String::from_utf8(request).unwrap();
            assert!(request.starts_with("POST /track HTTP/1.1\r\n"), "{request}");
            assert!(request.contains("content-type: application/json\r\ncontent-length: 7\r\n"), "{request}");
            socket.write_all(b"HTTP/1.1 200 OK\r\n\r\nok").await.unwrap();
        });
        let answer = post(addr, "/track", "application/json", r#"{"a":1}"#, Duration::from_secs(5)).await.unwrap();
        assert_eq!(answer, "HTTP/1.1 200 OK\r\n\r\nok");
    }
}
