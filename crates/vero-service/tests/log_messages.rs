//! The services log errors (and every other value) as structured fields —
//! `tracing::warn!(error = %e, "storing offsets failed")` — never interpolated into
//! the message text: with JSON logs (`VERO_LOG_FORMAT=json`) the message stays a
//! constant that logs can be grouped and alerted on, and the error is its own field.
//!
//! Checked on the sources of every service crate (their `src/`, tests excluded): a
//! `tracing` event macro whose string literals contain a `{…}` placeholder fails.

use std::path::{Path, PathBuf};

const CRATES: &[&str] = &["ingest-gateway", "event-sink", "profile-consumer", "vero-service"];
const MACROS: &[&str] = &["trace!(", "debug!(", "info!(", "warn!(", "error!("];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The string literals of the macro call starting at `open` (just after its `(`),
/// up to the matching `)`.
fn literals_of_call(source: &str, open: usize) -> Vec<&str> {
    let bytes = source.as_bytes();
    let (mut depth, mut i, mut literals) = (1, open, Vec::new());
    while depth > 0 && i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                literals.push(&source[start..i.min(bytes.len())]);
            }
            b'(' => depth += 1,
            b')' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    literals
}

/// Whether a format string has a placeholder (`{}` `{e}` `{e:?}`; `{{` is a brace).
fn has_placeholder(literal: &str) -> bool {
    let mut chars = literal.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '{' {
            if chars.peek() == Some(&'{') {
                chars.next();
            } else {
                return true;
            }
        }
    }
    false
}

/// `file:line: call` for every event macro with an interpolated message in `source`.
fn interpolated_calls(file: &str, source: &str) -> Vec<String> {
    let mut found = Vec::new();
    for name in MACROS {
        for (at, _) in source.match_indices(name) {
            // `warn!(` but not `my_warn!(`; `tracing::warn!(` is fine.
            if source[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            if literals_of_call(source, at + name.len()).into_iter().any(has_placeholder) {
                let line = source[..at].matches('\n').count() + 1;
                let text = source[at..].lines().next().unwrap_or_default().trim();
                found.push(format!("{file}:{line}: {text}"));
            }
        }
    }
    found
}

#[test]
fn the_check_finds_interpolation_and_accepts_fields() {
    let bad =
        "fn f() {\n    tracing::warn!(\"flush failed: {e}\");\n    debug!(partition, \"not stored: {:?}\", e);\n}";
    let found = interpolated_calls("x.rs", bad);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].starts_with("x.rs:3: debug!(") || found[1].starts_with("x.rs:3: debug!("), "{found:?}");
    let good = "tracing::warn!(error = %e, partition, \"flush failed {{literally}}\"); my_warn!(\"{x}\");";
    assert!(interpolated_calls("y.rs", good).is_empty());
}

#[test]
fn service_sources_log_values_as_fields_not_in_the_message() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for name in CRATES {
        rust_files(&root.join(name).join("src"), &mut files);
    }
    assert!(files.len() > 20, "only {} source files found under {}", files.len(), root.display());
    let mut found = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file).unwrap();
        let shown = file.strip_prefix(&root).unwrap_or(file).display().to_string();
        found.extend(interpolated_calls(&shown, &source));
    }
    assert!(
        found.is_empty(),
        "log values as fields (`error = %e, \"message\"`), not in the message text:\n{}",
        found.join("\n")
    );
}
