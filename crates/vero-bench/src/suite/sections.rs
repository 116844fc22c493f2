//! A partial run (`VERO_BENCH_STEPS=dedup`) must not erase the figures of the steps it
//! did not run: those sections of `docs/benchmarks.md` are carried over from the
//! previous file, each under its step's `## ` heading. A carried-over section keeps
//! the figures of the run that measured it (the header's machine and settings are
//! this run's; the full `make bench` regenerates everything).

/// Each step and the heading (prefix) of the section it renders.
pub const STEP_SECTIONS: &[(&str, &str)] = &[
    ("http", "## Gateway vs trivial hyper server"),
    ("produce", "## Kafka produce path"),
    ("sink", "## Sink vs clickhouse-client"),
    ("e2e", "## End to end"),
    ("overload", "## Overload"),
    ("dedup", "## Gateway cost of idempotent retries"),
    ("cluster", "## Sink into a 2×2 ClickHouse cluster"),
    ("batch", "## Batch endpoint"),
    ("profiles", "## Profile state"),
    // Not a suite step: `scripts/bench.sh` runs criterion when `micro` is selected.
    ("micro", "## Microbenchmarks"),
];

/// `(start, end)` byte range of the section whose heading line starts with `heading`:
/// from the heading to the next `## ` heading (or the end).
fn section_range(doc: &str, heading: &str) -> Option<(usize, usize)> {
    let start = if doc.starts_with(heading) { 0 } else { doc.find(&format!("\n{heading}"))? + 1 };
    let end = doc[start + 1..].find("\n## ").map(|i| start + 1 + i + 1).unwrap_or(doc.len());
    Some((start, end))
}

/// `new` with every section of a step that did not run (`ran(step)` false) replaced
/// by the same section of `old`, when `old` has it.
pub fn keep_unmeasured(new: &str, old: &str, ran: impl Fn(&str) -> bool) -> String {
    let mut doc = new.to_owned();
    for (step, heading) in STEP_SECTIONS {
        if ran(step) {
            continue;
        }
        let Some((os, oe)) = section_range(old, heading) else { continue };
        let old_section = &old[os..oe];
        doc = match section_range(&doc, heading) {
            Some((ns, ne)) => format!("{}{old_section}{}", &doc[..ns], &doc[ne..]),
            None => doc,
        };
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str =
        "# B\n\n## Gateway vs trivial hyper server (x)\n\nold http\n\n## Sink vs clickhouse-client\n\nold sink\n";
    const NEW: &str =
        "# B\n\n## Gateway vs trivial hyper server (x)\n\nnew http\n\n## Sink vs clickhouse-client\n\nNot measured\n";

    #[test]
    fn sections_of_steps_not_run_come_from_the_old_file() {
        let doc = keep_unmeasured(NEW, OLD, |step| step == "http");
        assert_eq!(
            doc,
            "# B\n\n## Gateway vs trivial hyper server (x)\n\nnew http\n\n## Sink vs clickhouse-client\n\nold sink\n"
        );
    }

    #[test]
    fn a_full_run_or_a_missing_old_section_changes_nothing() {
        assert_eq!(keep_unmeasured(NEW, OLD, |_| true), NEW);
        assert_eq!(keep_unmeasured(NEW, "# B\n", |_| false), NEW);
    }
}
