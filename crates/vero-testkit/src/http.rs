//! One plain HTTP/1.1 GET against a local ops endpoint (`/metrics`, `/readyz`): what
//! tests and benchmarks read from the services they start.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The whole answer (status line, headers, body) of `GET path` on `addr`, within `timeout`.
pub async fn get(addr: SocketAddr, path: &str, timeout: Duration) -> anyhow::Result<String> {
    let get = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        anyhow::Ok(answer)
    };
    tokio::time::timeout(timeout, get)
        .await
        .with_context(|| format!("GET {path} on {addr}: no answer in {timeout:?}"))?
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
}
