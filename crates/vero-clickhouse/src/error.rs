//! One classification of ClickHouse failures, used by every caller to decide between
//! "retry later" and "this data/statement will never succeed".

use clickhouse::error::Error;

#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The server is unreachable, overloaded, restarting or timed out: the same request
    /// may succeed later.
    #[error("ClickHouse unavailable: {0}")]
    Retryable(String),
    /// The server understood the request and refused it (bad data, bad SQL, schema
    /// mismatch): repeating it cannot help.
    #[error("ClickHouse rejected the request: {0}")]
    Invalid(String),
}

impl Failure {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable(_))
    }
}

/// Server error codes that mean "try again later" (see ClickHouse's ErrorCodes.cpp).
const RETRYABLE_CODES: &[u32] = &[
    3,   // UNEXPECTED_END_OF_FILE (connection cut mid-request)
    159, // TIMEOUT_EXCEEDED
    164, // READONLY (replica in read-only mode)
    202, // TOO_MANY_SIMULTANEOUS_QUERIES
    203, // NO_FREE_CONNECTION
    209, // SOCKET_TIMEOUT
    210, // NETWORK_ERROR
    241, // MEMORY_LIMIT_EXCEEDED
    242, // TABLE_IS_READ_ONLY
    252, // TOO_MANY_PARTS (merges behind inserts; "for single INSERT block" is data, see below)
    319, // UNKNOWN_STATUS_OF_INSERT
    425, // SYSTEM_ERROR
];

/// `Code: 241, e.displayText() = ...` (18.x) or `Code: 241. DB::Exception: ...`.
fn server_code(message: &str) -> Option<u32> {
    let rest = &message[message.find("Code: ")? + 6..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Classify a server error message by its code.
pub fn classify_server_message(message: &str) -> Failure {
    let text = message.trim().to_owned();
    match server_code(&text) {
        Some(252) if text.contains("single INSERT block") => Failure::Invalid(text),
        Some(code) if RETRYABLE_CODES.contains(&code) => Failure::Retryable(text),
        Some(_) => Failure::Invalid(text),
        // No code: a proxy/HTTP-level failure (502, 503, ...) rather than a verdict.
        None => Failure::Retryable(text),
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        match error {
            Error::BadResponse(message) => classify_server_message(&message),
            Error::Network(_) | Error::TimedOut | Error::Decompression(_) => Failure::Retryable(error.to_string()),
            other => Failure::Invalid(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified() {
        let old = "Code: 241, e.displayText() = DB::Exception: Memory limit (for query) exceeded";
        assert!(classify_server_message(old).is_retryable());
        let new = "Code: 27. DB::Exception: Cannot parse input: expected '\\t'. (CANNOT_PARSE_INPUT_ASSERTION_FAILED)";
        assert!(!classify_server_message(new).is_retryable());
        let parts = "Code: 252. DB::Exception: Too many partitions for single INSERT block (more than 100).";
        assert!(!classify_server_message(parts).is_retryable());
        let merges = "Code: 252. DB::Exception: Too many parts (300). Merges are processing significantly slower";
        assert!(classify_server_message(merges).is_retryable());
        assert!(classify_server_message("<html>502 Bad Gateway</html>").is_retryable());
        assert!(Failure::from(Error::TimedOut).is_retryable());
    }
}
