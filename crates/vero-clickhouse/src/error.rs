//! One classification of ClickHouse failures, shared by every consumer, each class
//! with one behaviour (docs/operations.md, "Failure policy"):
//!
//! * [`Failure::Retryable`]: unreachable, timed out, overloaded, restarting. The same
//!   request may succeed later: retry with backoff.
//! * [`Failure::Operator`]: the server is up but refuses *every* request of this kind
//!   until someone changes the deployment: authentication failed, access denied, read-only
//!   user, unknown database/table/column (dropped or never migrated). Nothing about
//!   the data is wrong, so it must never be dead-lettered: consumers pause, keep
//!   retrying with backoff, report not ready and raise a metric an alert fires on.
//! * [`Failure::Invalid`]: this request can never succeed (bad data, statement too
//!   large): for a write of records, those records are *bad records* (dead-lettered
//!   with the reason, then committed).
//!
//! Codes are ClickHouse's `ErrorCodes.cpp`; the messages of the Debian 18.16 server the
//! tests run are checked against a real server in `tests/failure_classes.rs`.

use clickhouse::error::Error;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The server is unreachable, overloaded, restarting or timed out: the same request
    /// may succeed later.
    #[error("ClickHouse unavailable: {0}")]
    Retryable(String),
    /// The server refuses every request like this one until an operator acts
    /// (credentials, grants, missing schema objects): retry, never dead-letter.
    #[error("ClickHouse needs an operator: {0}")]
    Operator(String),
    /// The server understood the request and refused it (bad data, bad SQL, schema
    /// mismatch): repeating it cannot help.
    #[error("ClickHouse rejected the request: {0}")]
    Invalid(String),
}

impl Failure {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable(_))
    }

    /// `retryable`, `operator` or `invalid`: the label of metrics by failure class.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Retryable(_) => "retryable",
            Self::Operator(_) => "operator",
            Self::Invalid(_) => "invalid",
        }
    }

    /// The server's (or client's) message.
    pub fn message(&self) -> &str {
        match self {
            Self::Retryable(m) | Self::Operator(m) | Self::Invalid(m) => m,
        }
    }
}

/// Server error codes that mean "try again later".
const RETRYABLE_CODES: &[u32] = &[
    3,   // UNEXPECTED_END_OF_FILE (connection cut mid-request)
    159, // TIMEOUT_EXCEEDED
    202, // TOO_MANY_SIMULTANEOUS_QUERIES
    203, // NO_FREE_CONNECTION
    209, // SOCKET_TIMEOUT
    210, // NETWORK_ERROR
    241, // MEMORY_LIMIT_EXCEEDED
    242, // TABLE_IS_READ_ONLY (replica lost ZooKeeper; comes back by itself)
    252, // TOO_MANY_PARTS (merges behind inserts; "for single INSERT block" is data, see below)
    319, // UNKNOWN_STATUS_OF_INSERT
    425, // SYSTEM_ERROR
];

/// Server error codes that only an operator can clear: the deployment, not the data,
/// is wrong.
const OPERATOR_CODES: &[u32] = &[
    16,  // NO_SUCH_COLUMN_IN_TABLE (table re-created without a column we write)
    60,  // UNKNOWN_TABLE (dropped, or migrations not applied)
    81,  // UNKNOWN_DATABASE
    164, // READONLY (user or profile with readonly=1: "Cannot insert into table in readonly mode")
    192, // UNKNOWN_USER (18.x)
    193, // WRONG_PASSWORD (18.x; a rotated password)
    194, // REQUIRED_PASSWORD
    195, // IP_ADDRESS_NOT_ALLOWED
    218, // TABLE_IS_DROPPED (dropped while the INSERT ran)
    291, // DATABASE_ACCESS_DENIED (18.x `allow_databases`)
    497, // ACCESS_DENIED (grants, 20.x+)
    516, // AUTHENTICATION_FAILED (20.x+: unknown user or wrong password)
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
        Some(code) if OPERATOR_CODES.contains(&code) => Failure::Operator(text),
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

    #[test]
    fn operator_fixable_codes_are_neither_retryable_nor_invalid() {
        // Verbatim from ClickHouse 18.16 (see tests/failure_classes.rs) and 20.x+.
        for message in [
            "Code: 60, e.displayText() = DB::Exception: Table vero.events doesn't exist., e.what() = DB::Exception",
            "Code: 81, e.displayText() = DB::Exception: Database vero doesn't exist, e.what() = DB::Exception",
            "Code: 16, e.displayText() = DB::Exception: No such column b in table events, e.what() = DB::Exception",
            "Code: 164, e.displayText() = DB::Exception: Cannot insert into table in readonly mode",
            "Code: 192, e.displayText() = DB::Exception: Unknown user nouser, e.what() = DB::Exception",
            "Code: 193, e.displayText() = DB::Exception: Wrong password for user secret, e.what() = DB::Exception",
            "Code: 291, e.displayText() = DB::Exception: Access denied to database vero for user limited",
            "Code: 516. DB::Exception: vero: Authentication failed: password is incorrect. (AUTHENTICATION_FAILED)",
            "Code: 497. DB::Exception: vero: Not enough privileges. (ACCESS_DENIED)",
        ] {
            let failure = classify_server_message(message);
            assert_eq!(failure.class(), "operator", "{message}");
            assert_eq!(failure.message(), message);
        }
        let too_big =
            "Code: 62, e.displayText() = DB::Exception: Syntax error: failed at position 8: Max query size exceeded";
        assert_eq!(classify_server_message(too_big).class(), "invalid");
        let replica = "Code: 242. DB::Exception: Table is in readonly mode (replica path: /x). (TABLE_IS_READ_ONLY)";
        assert_eq!(classify_server_message(replica).class(), "retryable");
    }
}
