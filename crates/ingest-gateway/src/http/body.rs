//! Read a request body within its limits, then undo `Content-Encoding: gzip`.
//!
//! Guarantees: never more than `max_body_bytes` are read from the wire (a larger
//! `Content-Length` is refused before reading), never more than
//! `max_decompressed_bytes` are inflated (zip bombs stop at the cap), and the whole
//! body must arrive within `body_read_timeout` (slow senders get 408). A 413 names
//! the setting that set the limit.

use std::io::Read;
use std::time::Duration;

use bytes::Bytes;
use flate2::read::MultiGzDecoder;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use http::HeaderMap;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::error::ApiError;

#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_body_bytes: usize,
    pub max_decompressed_bytes: usize,
    pub read_timeout: Duration,
    /// The settings the two limits come from, named in the 413s.
    pub settings: (&'static str, &'static str),
}

impl BodyLimits {
    /// The names of the single-record endpoints' limits.
    pub const SETTINGS: (&'static str, &'static str) = ("http.max_body_bytes", "http.max_decompressed_bytes");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
}

fn encoding(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let Some(value) = headers.get(CONTENT_ENCODING) else { return Ok(Encoding::Identity) };
    let value = value.to_str().unwrap_or_default().trim();
    if value.eq_ignore_ascii_case("gzip") || value.eq_ignore_ascii_case("x-gzip") {
        Ok(Encoding::Gzip)
    } else if value.is_empty() || value.eq_ignore_ascii_case("identity") {
        Ok(Encoding::Identity)
    } else {
        let shown: String = value.chars().take(50).collect();
        Err(ApiError::UnsupportedMediaType(
            format!("Content-Encoding {shown:?} is not supported; send gzip or no encoding.").into(),
        ))
    }
}

/// Read and decode the body of a request with `headers`.
pub async fn read<B>(body: B, headers: &HeaderMap, limits: BodyLimits) -> Result<Bytes, ApiError>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let encoding = encoding(headers)?;
    let too_large = || {
        ApiError::TooLarge(
            format!("Request body exceeds {} bytes ({}).", limits.max_body_bytes, limits.settings.0).into(),
        )
    };
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limits.max_body_bytes as u64) {
        return Err(too_large());
    }
    let collected = tokio::time::timeout(limits.read_timeout, Limited::new(body, limits.max_body_bytes).collect())
        .await
        .map_err(|_| ApiError::BodyTimeout(limits.read_timeout.as_millis() as u64))?;
    let raw = match collected {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return Err(too_large()),
        Err(_) => return Err(ApiError::invalid("Request body could not be read completely.")),
    };
    match encoding {
        Encoding::Identity => Ok(raw),
        Encoding::Gzip => gunzip(&raw, limits.max_decompressed_bytes, limits.settings.1),
    }
}

fn gunzip(compressed: &[u8], max: usize, setting: &str) -> Result<Bytes, ApiError> {
    let mut out = Vec::with_capacity((compressed.len() * 4).min(max));
    // Read one byte past the cap to tell "exactly at the cap" from "over it".
    MultiGzDecoder::new(compressed)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| ApiError::invalid("Request body is not valid gzip (Content-Encoding: gzip)."))?;
    if out.len() > max {
        return Err(ApiError::TooLarge(format!("Decompressed request body exceeds {max} bytes ({setting}).").into()));
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn gzip_within_and_beyond_the_cap() {
        assert_eq!(gunzip(&gzip(b"hello"), 5, "x").unwrap(), Bytes::from_static(b"hello"));
        let bomb = gzip(&vec![b'a'; 1 << 20]);
        assert!(bomb.len() < 5000, "a megabyte of one letter compresses to a few KB");
        let err = gunzip(&bomb, 1000, "http.max_decompressed_bytes").unwrap_err();
        assert_eq!(
            (err.status().as_u16(), err.to_string()),
            (413, "Decompressed request body exceeds 1000 bytes (http.max_decompressed_bytes).".into())
        );
        assert_eq!(gunzip(b"not gzip", 1000, "x").unwrap_err().status(), 400);
    }

    #[test]
    fn encodings() {
        let mut headers = HeaderMap::new();
        assert_eq!(encoding(&headers).unwrap(), Encoding::Identity);
        headers.insert(CONTENT_ENCODING, "GZIP".parse().unwrap());
        assert_eq!(encoding(&headers).unwrap(), Encoding::Gzip);
        headers.insert(CONTENT_ENCODING, "br".parse().unwrap());
        let err = encoding(&headers).unwrap_err();
        assert_eq!(
            (err.status().as_u16(), err.to_string()),
            (415, "Content-Encoding \"br\" is not supported; send gzip or no encoding.".into())
        );
    }
}
