//! One classification of ClickHouse failures, shared by every consumer, each class
//! with one behaviour (docs/operations.md, "Failure policy"):
//!
//! * [`Failure::Retryable`]: unreachable, timed out, overloaded, restarting, lost its
//!   coordinator (ZooKeeper/Keeper), or anything the server says that is not known to
//!   be about the data. The same request may succeed later: retry with backoff (on a
//!   cluster, on the shard's next replica).
//! * [`Failure::Operator`]: the server is up but refuses *every* request of this kind
//!   until someone changes the deployment: authentication failed, access denied, read-only
//!   user, unknown database/table/column (dropped or never migrated). Nothing about
//!   the data is wrong, so it must never be dead-lettered: consumers pause, keep
//!   retrying with backoff, report not ready and raise a metric an alert fires on.
//! * [`Failure::Invalid`]: this request can never succeed because of what it carries
//!   (a value that does not parse or fit its type, a statement too large): for a write
//!   of records, those records are *bad records* (dead-lettered with the reason, then
//!   committed).
//!
//! The safe default is the allowlist: only the codes of [`INVALID_CODES`] (and two
//! messages of otherwise retryable codes) are the data's fault. Every other code, also
//! one this build does not know, retries, because a dead letter of a record the server
//! merely could not take *now* is a lost event until someone replays the DLQ (as
//! ClickHouse 18.16 answers INSERTs with 999 `Coordination::Exception` or 225
//! `NO_ZOOKEEPER` while ZooKeeper is unreachable). A code that never clears stalls the
//! consumer visibly (not ready, failure metrics by class) instead of losing data.
//!
//! Codes are ClickHouse's `ErrorCodes.cpp`; what the Debian 18.16 server the tests run
//! answers for each class is checked against a real server (and a real cluster with
//! its ZooKeeper killed) in `tests/failure_classes.rs`.

use clickhouse::error::Error;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The server is unreachable, overloaded, restarting, timed out, without its
    /// coordinator, or failed in a way not known to be the data's fault: the same
    /// request may succeed later.
    #[error("ClickHouse unavailable: {0}")]
    Retryable(String),
    /// The server refuses every request like this one until an operator acts
    /// (credentials, grants, missing schema objects): retry, never dead-letter.
    #[error("ClickHouse needs an operator: {0}")]
    Operator(String),
    /// The server refused what the request carries (a value that does not parse or
    /// fit, a statement too large): repeating it cannot help.
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

/// Server error codes that say the request can never succeed because of the data it
/// carries: a value that does not parse or does not fit its column, a row a check of
/// the schema refuses, a statement too large. The only codes that make a bad record.
pub const INVALID_CODES: &[u32] = &[
    6,   // CANNOT_PARSE_TEXT
    19,  // SIZE_OF_FIXED_STRING_DOESNT_MATCH
    25,  // CANNOT_PARSE_ESCAPE_SEQUENCE
    26,  // CANNOT_PARSE_QUOTED_STRING
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    38,  // CANNOT_PARSE_DATE
    41,  // CANNOT_PARSE_DATETIME
    53,  // TYPE_MISMATCH
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    72,  // CANNOT_PARSE_NUMBER
    117, // INCORRECT_DATA
    128, // TOO_LARGE_ARRAY_SIZE
    130, // CANNOT_READ_ARRAY_FROM_TEXT
    131, // TOO_LARGE_STRING_SIZE
    190, // SIZES_OF_ARRAYS_DOESNT_MATCH
    229, // QUERY_IS_TOO_LARGE
    321, // VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    349, // CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
    395, // FUNCTION_THROW_IF_VALUE_IS_NON_ZERO (a throwIf check on the row's values)
    469, // VIOLATED_CONSTRAINT (20.x+ CHECK constraints)
];

/// Codes of a lost or unhealthy coordination layer (ZooKeeper, ClickHouse Keeper) or
/// replica: retried, on a cluster on the shard's next replica. Listed for readers and
/// tests: any code outside [`INVALID_CODES`] and [`OPERATOR_CODES`] retries anyway.
pub const COORDINATION_CODES: &[u32] = &[
    225, // NO_ZOOKEEPER ("ZooKeeper session has been expired")
    242, // TABLE_IS_READ_ONLY (replica lost ZooKeeper; comes back by itself)
    244, // UNEXPECTED_ZOOKEEPER_ERROR
    254, // NO_ACTIVE_REPLICAS
    319, // UNKNOWN_STATUS_OF_INSERT (ZooKeeper lost during the commit)
    999, // KEEPER_EXCEPTION (18.16: Coordination::Exception, "Connection loss", "Session expired")
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
        // Too many partitions for one INSERT block: the rows' dates, not the merges.
        Some(252) if text.contains("single INSERT block") => Failure::Invalid(text),
        // A statement above max_query_size (an erasure of a huge id); other syntax
        // errors are in our own SQL, which no record can fix.
        Some(62) if text.contains("Max query size exceeded") => Failure::Invalid(text),
        Some(code) if INVALID_CODES.contains(&code) => Failure::Invalid(text),
        Some(code) if OPERATOR_CODES.contains(&code) => Failure::Operator(text),
        Some(_) => Failure::Retryable(text),
        // No code: a proxy/HTTP-level failure (502, 503, ...) rather than a verdict.
        None => Failure::Retryable(text),
    }
}

/// The TLS handshake's refusal in a network error's sources, if that is what it is: a
/// server certificate the configured CA does not vouch for (or an expired one), or a
/// client certificate the server refuses. Retrying cannot fix either; an operator must
/// (`clickhouse.tls`). OpenSSL's wording, as the connector reports it.
fn tls_refusal(error: &Error) -> Option<String> {
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        let text = inner.to_string();
        let refused =
            ["certificate verify failed", "alert unknown ca", "alert bad certificate", "certificate required"]
                .iter()
                .any(|needle| text.contains(needle));
        if refused {
            return Some(text);
        }
        source = inner.source();
    }
    None
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        match error {
            Error::BadResponse(message) => classify_server_message(&message),
            Error::Network(_) => match tls_refusal(&error) {
                Some(reason) => {
                    Failure::Operator(format!("{error}: {reason} (check clickhouse.tls: ca_file, cert_file, key_file)"))
                }
                None => Failure::Retryable(error.to_string()),
            },
            Error::TimedOut | Error::Compression(_) | Error::Decompression(_) | Error::Other(_) => {
                Failure::Retryable(error.to_string())
            }
            // Client-side: parameters, row types and answers that do not match the
            // server (a deployment or code mismatch). Never the data's fault.
            other => Failure::Operator(other.to_string()),
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

    #[test]
    fn only_the_allowlist_is_the_datas_fault_and_everything_else_retries() {
        // What 18.16 answers while ZooKeeper is unreachable, and Keeper's
        // codes on current servers: never a bad record.
        for message in [
            "Code: 999, e.displayText() = Coordination::Exception: All connection tries failed while connecting to \
             ZooKeeper. Addresses: 127.0.0.1:2181, e.what() = Coordination::Exception",
            "Code: 999, e.displayText() = Coordination::Exception: Session expired (Session expired)",
            "Code: 999, e.displayText() = Coordination::Exception: Connection loss",
            "Code: 225, e.displayText() = DB::Exception: ZooKeeper session has been expired., e.what() = DB::Exception",
            "Code: 999. Coordination::Exception: Connection loss, path: /clickhouse. (KEEPER_EXCEPTION)",
            "Code: 319. DB::Exception: Unknown status, client must retry. (UNKNOWN_STATUS_OF_INSERT)",
            "Code: 1234. DB::Exception: a code this build has never heard of",
            "Code: 62, e.displayText() = DB::Exception: Syntax error: failed at position 1 (our own SQL)",
        ] {
            assert_eq!(classify_server_message(message).class(), "retryable", "{message}");
        }
        for code in COORDINATION_CODES {
            let message = format!("Code: {code}, e.displayText() = DB::Exception: x");
            assert_eq!(classify_server_message(&message).class(), "retryable", "{message}");
        }
        for code in INVALID_CODES {
            let message = format!("Code: {code}, e.displayText() = DB::Exception: x");
            assert_eq!(classify_server_message(&message).class(), "invalid", "{message}");
            assert!(!OPERATOR_CODES.contains(code) && !COORDINATION_CODES.contains(code), "{code} in two lists");
        }
        assert_eq!(Failure::from(Error::RowNotFound).class(), "operator", "client-side mismatches are not data");
    }
}
