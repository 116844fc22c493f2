//! Building the `clickhouse` crate's client the same way in every service.

use std::time::Duration;

use clickhouse::{Client, Compression};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;

use crate::config::ClickHouseSettings;

/// Idle pooled connections are dropped before ClickHouse's 3 s keep-alive would (as
/// the `clickhouse` crate's own client does).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// An HTTP client for `settings`: LZ4-compressed request and response bodies, no
/// schema validation (the `RowBinaryWithNamesAndTypes` check it needs does not exist
/// on ClickHouse 18.x). Over HTTPS with the connector of `settings.tls` (CA, client
/// certificate). The client is cheap to clone and pools connections.
pub fn build(settings: &ClickHouseSettings) -> Client {
    let client = match settings.tls.connector() {
        Some(connector) => Client::with_http_client(
            HyperClient::builder(TokioExecutor::new()).pool_idle_timeout(POOL_IDLE_TIMEOUT).build(connector.clone()),
        ),
        None => Client::default(),
    };
    let mut client = client
        .with_url(&settings.url)
        .with_user(&settings.user)
        .with_compression(Compression::Lz4)
        .with_validation(false);
    if !settings.password.is_empty() {
        client = client.with_password(&settings.password);
    }
    client
}
