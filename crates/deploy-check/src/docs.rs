//! What the docs name exists: every metric, config key and service subcommand that
//! `README.md` and `docs/*.md` mention is one the code has.
//!
//! * Metrics: every `vero_…` name (not a crate path) must be registered by a service:
//!   the name given to `Opts::new`, `HistogramOpts::new`, `IntCounter::new`,
//!   `IntGauge::new` (or the float `Counter`/`Gauge`) in `crates/*/src`, with the prefix
//!   of the file's `Registry::new_custom(Some("…"))` when it has one. A histogram's
//!   `_bucket`/`_sum`/`_count` series count as its name.
//! * Config keys: every `VERO__SECTION__KEY` variable, and every code span
//!   `section.key` whose first part is a section of a service's `default.toml`, must
//!   be accepted by at least one service's own loader (`deny_unknown_fields`: an
//!   unknown key fails with "unknown field"; a wrong value type does not count).
//! * Subcommands: in code (spans and fenced blocks), a service binary followed by a
//!   word (`event-sink migrate`) must name a variant of that binary's clap
//!   `enum Command` (in kebab case).
//!
//! Each check returns the problems it found, as `file: what`; the tests assert that
//! the real docs have none and that a reintroduced mistake is reported.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::services::Service;

/// A markdown file and its text.
pub struct Doc {
    pub name: String,
    pub text: String,
}

/// `README.md` and every `docs/*.md` of the repository at `root`.
pub fn docs(root: &Path) -> Vec<Doc> {
    let mut paths = vec![root.join("README.md")];
    let mut inside: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    inside.sort();
    paths.extend(inside);
    paths
        .into_iter()
        .map(|path| Doc {
            name: path.strip_prefix(root).unwrap_or(&path).display().to_string(),
            text: std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        })
        .collect()
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Maximal runs of `[A-Za-z0-9_]` starting with `prefix`, with the text just before
/// and after each.
fn words_with_prefix<'t>(text: &'t str, prefix: &str) -> Vec<(&'t str, &'t str, &'t str)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find(prefix) {
        let start = from + found;
        let end = start + text[start..].find(|c: char| !is_word(c)).unwrap_or(text.len() - start);
        let boundary = !text[..start].ends_with(is_word);
        if boundary {
            out.push((&text[..start], &text[start..end], &text[end..]));
        }
        from = end.max(start + prefix.len());
    }
    out
}

// ---------------------------------------------------------------- metrics

/// Every metric name the services register (see the module docs).
pub fn registered_metrics(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for file in rust_sources(&root.join("crates")) {
        let text = std::fs::read_to_string(&file).unwrap();
        let prefix = quoted_after(&text, "Registry::new_custom(Some(").into_iter().next();
        for opener in ["Opts::new(", "IntCounter::new(", "IntGauge::new(", "Counter::new(", "Gauge::new("] {
            for name in quoted_after(&text, opener) {
                out.insert(match &prefix {
                    Some(prefix) => format!("{prefix}_{name}"),
                    None => name,
                });
            }
        }
    }
    out
}

/// The string literal right after each `opener` (skipping whitespace).
fn quoted_after(text: &str, opener: &str) -> Vec<String> {
    text.match_indices(opener)
        .filter_map(|(at, _)| {
            let rest = text[at + opener.len()..].trim_start().strip_prefix('"')?;
            Some(rest[..rest.find('"')?].to_owned())
        })
        .collect()
}

/// `.rs` files under every `crates/*/src`.
fn rust_sources(crates: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = std::fs::read_dir(crates).unwrap().map(|e| e.unwrap().path().join("src")).collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out
}

/// Names of the workspace's crates as Rust paths (`vero_model`): not metrics.
fn crate_names(root: &Path) -> BTreeSet<String> {
    std::fs::read_dir(root.join("crates"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().replace('-', "_"))
        .collect()
}

/// The metric names `text` mentions: `vero_…` words that are not crate names, not
/// prefixes (`vero_gateway_…`), and not parts of a Rust path.
pub fn mentioned_metrics(text: &str, crates: &BTreeSet<String>) -> BTreeSet<String> {
    words_with_prefix(text, "vero_")
        .into_iter()
        .filter(|(before, word, after)| {
            !crates.contains(*word)
                && !word.ends_with('_')
                && !after.starts_with("::")
                && !before.ends_with("::")
                && !after.starts_with('…')
        })
        .map(|(_, word, _)| word.to_owned())
        .collect()
}

/// Metrics the docs name that no service registers.
pub fn unknown_metrics(root: &Path, docs: &[Doc]) -> Vec<String> {
    let registered = registered_metrics(root);
    let crates = crate_names(root);
    let known = |name: &str| {
        registered.contains(name)
            || ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| name.strip_suffix(suffix).is_some_and(|base| registered.contains(base)))
    };
    let mut out = Vec::new();
    for doc in docs {
        for name in mentioned_metrics(&doc.text, &crates) {
            if !known(&name) {
                out.push(format!("{}: metric {name} is not registered by any service", doc.name));
            }
        }
    }
    out
}

// ---------------------------------------------------------------- code

/// The code of a markdown text: inline code spans and fenced blocks.
pub fn code_of(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fence: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        match &mut fence {
            Some(block) if trimmed.starts_with("```") => {
                out.push(std::mem::take(block));
                fence = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None if trimmed.starts_with("```") => fence = Some(String::new()),
            None => {
                let mut parts = line.split('`');
                parts.next();
                while let Some(span) = parts.next() {
                    out.push(span.to_owned());
                    parts.next();
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------- config keys

/// The top-level sections of every service's `default.toml`.
fn sections(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for service in Service::ALL {
        let text =
            std::fs::read_to_string(root.join("config").join(service.config_folder()).join("default.toml")).unwrap();
        for line in text.lines() {
            if let Some(name) = line.trim().strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                out.insert(name.split('.').next().unwrap().to_owned());
            }
        }
    }
    out
}

/// Kafka's own topic settings that look like ours (the event sink has a `[retention]`
/// section): not config keys of a service.
const KAFKA_SETTINGS: [&str; 2] = ["retention.ms", "retention.bytes"];

/// File names are not keys (`cluster.rs`, `default.toml`).
const FILE_EXTENSIONS: [&str; 10] = ["rs", "md", "toml", "yml", "yaml", "sql", "sh", "json", "py", "xml"];

/// The config keys `docs` name, as the variable that sets each (`VERO__A__B`), with
/// where they were found.
pub fn mentioned_keys(root: &Path, docs: &[Doc]) -> Vec<(String, String)> {
    let sections = sections(root);
    let mut out = Vec::new();
    for doc in docs {
        for (_, word, _) in words_with_prefix(&doc.text, "VERO__") {
            // The placeholder of the naming rule, and keys written with an ellipsis.
            if word != "VERO__SECTION__KEY" && !word.ends_with('_') {
                out.push((doc.name.clone(), word.to_owned()));
            }
        }
        for span in code_of(&doc.text) {
            let span = span.trim();
            let parts: Vec<&str> = span.split('.').collect();
            let plain = parts.len() >= 2
                && parts.iter().all(|p| {
                    !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                });
            if !plain
                || !sections.contains(parts[0])
                || FILE_EXTENSIONS.contains(parts.last().unwrap())
                || KAFKA_SETTINGS.contains(&span)
            {
                continue;
            }
            // Below `kafka.properties` are librdkafka's own names.
            let path: Vec<&str> = match parts.iter().position(|p| *p == "properties") {
                Some(at) => parts[..=at].to_vec(),
                None => parts,
            };
            out.push((doc.name.clone(), format!("VERO__{}", path.join("__").to_uppercase())));
        }
    }
    out
}

/// Whether some service's loader knows the key `variable` sets.
pub fn key_is_known(variable: &str) -> bool {
    Service::ALL.into_iter().any(|service| {
        match service.load(&service.repo_config_dir(), None, vec![(variable.to_owned(), "1".to_owned())]) {
            Ok(_) => true,
            Err(e) => !format!("{e:#}").contains("unknown field"),
        }
    })
}

/// Config keys the docs name that no service accepts.
pub fn unknown_keys(root: &Path, docs: &[Doc]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (doc, variable) in mentioned_keys(root, docs) {
        if seen.insert((doc.clone(), variable.clone())) && !key_is_known(&variable) {
            out.push(format!("{doc}: config key {variable} is accepted by no service"));
        }
    }
    out
}

// ---------------------------------------------------------------- subcommands

/// The subcommands of `binary`: its `enum Command` variants in kebab case.
pub fn subcommands(root: &Path, service: Service) -> BTreeSet<String> {
    let folder = match service {
        Service::Gateway => "ingest-gateway",
        Service::EventSink => "event-sink",
        Service::ProfileConsumer => "profile-consumer",
    };
    let main = std::fs::read_to_string(root.join("crates").join(folder).join("src/main.rs")).unwrap();
    let Some(start) = main.find("enum Command {") else {
        return BTreeSet::new();
    };
    let body = &main[start + "enum Command {".len()..];
    let body = &body[..body.find("\n}").unwrap_or(body.len())];
    body.lines()
        .map(str::trim)
        .filter(|l| l.starts_with(|c: char| c.is_ascii_uppercase()))
        .map(|l| {
            let name: String = l.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
            let mut kebab = String::new();
            for (i, c) in name.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    kebab.push('-');
                }
                kebab.push(c.to_ascii_lowercase());
            }
            kebab
        })
        .collect()
}

/// `binary word` in the docs' code where `word` is not a subcommand of `binary`.
pub fn unknown_subcommands(root: &Path, docs: &[Doc]) -> Vec<String> {
    let binaries: Vec<(Service, BTreeSet<String>)> =
        Service::ALL.into_iter().map(|s| (s, subcommands(root, s))).collect();
    let mut out = Vec::new();
    for doc in docs {
        for code in code_of(&doc.text) {
            for (service, known) in &binaries {
                let name = service.binary();
                for (at, _) in code.match_indices(name) {
                    let before_ok = !code[..at].ends_with(|c: char| is_word(c) || c == '-' || c == '/');
                    let Some(rest) = code[at + name.len()..].strip_prefix(' ') else { continue };
                    let word: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '-').collect();
                    let is_binary = Service::ALL.iter().any(|s| s.binary() == word);
                    if before_ok && !word.is_empty() && !word.starts_with('-') && !is_binary && !known.contains(&word) {
                        out.push(format!("{}: `{name} {word}`: {name} has no subcommand {word} ({known:?})", doc.name));
                    }
                }
            }
        }
    }
    out
}
