//! What the gateway adds to every record it produces, whatever the endpoint: the
//! project the token resolved to, the receive time and the client's `User-Agent`.
//!
//! The token itself is never part of a stamp, so it cannot reach a record.

/// Everything the gateway adds to what the client sent.
#[derive(Debug, Clone, Copy)]
pub struct Stamp<'a> {
    pub project: &'a str,
    /// Gateway clock, ms since the Unix epoch.
    pub received_at: i64,
    pub user_agent: Option<&'a str>,
}
