//! The Prometheus text exposition format, as far as the metrics check needs it:
//! which series names a `/metrics` page contains, with which label names, and the
//! declared type of each family.
//!
//! Series names are compared as exposed, so histogram and summary suffixes come out
//! right by construction: a histogram family `x_seconds` is exposed as
//! `x_seconds_bucket`, `x_seconds_sum` and `x_seconds_count` and a query of plain
//! `x_seconds` matches nothing, exactly as in Prometheus.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default, Clone)]
pub struct Exposition {
    /// Series name -> label names seen on it.
    pub series: BTreeMap<String, BTreeSet<String>>,
    /// Family name -> type from `# TYPE` lines.
    pub types: BTreeMap<String, String>,
}

impl Exposition {
    pub fn parse(text: &str) -> Self {
        let mut out = Self::default();
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut words = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (words.next(), words.next()) {
                    out.types.insert(name.to_owned(), kind.to_owned());
                }
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let labels = out.series.entry(line[..name_end].to_owned()).or_default();
            if line[name_end..].starts_with('{') {
                if let Some(close) = line.rfind('}') {
                    labels.extend(label_names(&line[name_end + 1..close]));
                }
            }
        }
        out
    }

    /// Merge another page (several services, or several scrapes).
    pub fn extend(&mut self, other: Exposition) {
        for (name, labels) in other.series {
            self.series.entry(name).or_default().extend(labels);
        }
        self.types.extend(other.types);
    }
}

/// Label names of a `a="x",b="y,z"` list (values may contain commas and escaped quotes).
fn label_names(list: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = list;
    while let Some(eq) = rest.find('=') {
        names.push(rest[..eq].trim().trim_start_matches(',').trim().to_owned());
        // Skip the quoted value.
        let value = &rest[eq + 1..];
        let mut escaped = false;
        let mut end = value.len();
        for (i, c) in value.char_indices().skip(1) {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &value[end..];
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_series_labels_and_types() {
        let page = "# HELP h_seconds x\n# TYPE h_seconds histogram\nh_seconds_bucket{le=\"0.5\"} 1\n\
                    h_seconds_sum 0.2\nh_seconds_count 1\n# TYPE c_total counter\n\
                    c_total{reason=\"a,b\",route=\"say \\\"hi\\\"\"} 3\n";
        let e = Exposition::parse(page);
        assert_eq!(e.types["h_seconds"], "histogram");
        assert!(e.series.contains_key("h_seconds_bucket") && e.series.contains_key("h_seconds_count"));
        assert!(!e.series.contains_key("h_seconds"));
        assert_eq!(e.series["c_total"], BTreeSet::from(["reason".to_owned(), "route".to_owned()]));
    }
}
