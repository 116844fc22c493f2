//! Building the `clickhouse` crate's client the same way in every service.

use clickhouse::{Client, Compression};

use crate::config::ClickHouseSettings;

/// An HTTP client for `settings`: LZ4-compressed request and response bodies, no
/// schema validation (the `RowBinaryWithNamesAndTypes` check it needs does not exist
/// on ClickHouse 18.x). The client is cheap to clone and pools connections.
pub fn build(settings: &ClickHouseSettings) -> Client {
    let mut client = Client::default()
        .with_url(&settings.url)
        .with_user(&settings.user)
        .with_compression(Compression::Lz4)
        .with_validation(false);
    if !settings.password.is_empty() {
        client = client.with_password(&settings.password);
    }
    client
}
