//! What a Dockerfile builds and ships, read from its instructions: the `--bin`
//! targets of `cargo build` and the binaries `COPY`ed into the final stage.
//!
//! Deliberately narrow: it understands the shapes `deploy/Dockerfile` uses (one
//! `cargo build ... --bin NAME ...` and `COPY --from=<stage> <dir>/NAME
//! /usr/local/bin/NAME`); anything else reaching `/usr/local/bin` is reported so the
//! check cannot silently miss a binary.

use std::collections::BTreeSet;

/// The instructions of a Dockerfile, continuation lines joined, comments dropped.
pub fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') && current.is_empty() {
            continue;
        }
        if let Some(continued) = trimmed.strip_suffix('\\') {
            current.push_str(continued);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            if !current.trim().is_empty() {
                out.push(current.trim().to_owned());
            }
            current.clear();
        }
    }
    out
}

/// What the Dockerfile builds and what its last stage contains.
#[derive(Debug, Default)]
pub struct Image {
    /// `--bin` arguments of `cargo build`.
    pub built: BTreeSet<String>,
    /// Binaries copied into the final stage's `/usr/local/bin`.
    pub shipped: BTreeSet<String>,
    /// `COPY` lines into `/usr/local/bin` of the final stage this parser did not
    /// understand.
    pub unexplained: Vec<String>,
    /// Whether the build uses `--locked` (the lock file CI tests is the one built).
    pub locked: bool,
}

pub fn analyse(text: &str) -> Image {
    let mut image = Image::default();
    let instructions = instructions(text);
    let last_from = instructions.iter().rposition(|i| i.to_ascii_uppercase().starts_with("FROM ")).unwrap_or(0);
    for (index, instruction) in instructions.iter().enumerate() {
        let words: Vec<&str> = instruction.split_whitespace().collect();
        let keyword = words.first().map(|w| w.to_ascii_uppercase()).unwrap_or_default();
        if keyword == "RUN" && words.windows(2).any(|w| w == ["cargo", "build"]) {
            image.locked |= words.contains(&"--locked");
            for pair in words.windows(2) {
                if pair[0] == "--bin" {
                    image.built.insert(pair[1].to_owned());
                }
            }
            for word in &words {
                if let Some(name) = word.strip_prefix("--bin=") {
                    image.built.insert(name.to_owned());
                }
            }
        }
        if keyword == "COPY" && index > last_from {
            let paths: Vec<&str> = words[1..].iter().copied().filter(|w| !w.starts_with("--")).collect();
            if let [source, target] = paths.as_slice() {
                if let Some(name) = target.strip_prefix("/usr/local/bin/") {
                    let source_name = source.rsplit('/').next().unwrap_or_default();
                    if source_name == name && !name.is_empty() {
                        image.shipped.insert(name.to_owned());
                    } else {
                        image.unexplained.push(instruction.clone());
                    }
                }
            } else if paths.last().is_some_and(|t| t.starts_with("/usr/local/bin")) {
                image.unexplained.push(instruction.clone());
            }
        }
    }
    image
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_built_and_shipped_binaries() {
        let text = "FROM rust AS build\n# a comment\nRUN cargo build --release --locked \\\n    --bin a \\\n    \
                    --bin=b && cp x /out/\nFROM debian\nCOPY --from=build /out/a /usr/local/bin/a\n\
                    COPY --from=build /out/b /usr/local/bin/c\nCOPY config/ /app/config/\n";
        let image = analyse(text);
        assert_eq!(image.built, BTreeSet::from(["a".to_owned(), "b".to_owned()]));
        assert_eq!(image.shipped, BTreeSet::from(["a".to_owned()]));
        assert_eq!(image.unexplained.len(), 1, "renamed copy is reported: {:?}", image.unexplained);
        assert!(image.locked);
    }
}
