//! The report: one row per scenario, as a Markdown table (what `docs/reliability.md`
//! carries) and a closing line in the `N passed, N failed` form test tooling reads.

use crate::faults::Outcome;

pub fn table(outcomes: &[Outcome]) -> String {
    let mut out = String::from(
        "| fault | sent | acked | attempts | missing | duplicated rows | dup. events (FINAL) | profile mismatches | DLQ | recovery | longest stall | verdict |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|\n",
    );
    for o in outcomes {
        let v = &o.verdict;
        let recovery = o.recovery.map_or("—".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()));
        let dlq =
            if v.dlq_problems.is_empty() { "ok".to_owned() } else { format!("{} problems", v.dlq_problems.len()) };
        let verdict = match (&o.error, o.crashes.is_empty(), o.holds()) {
            (Some(e), _, _) => format!("ERROR: {}", e.lines().next().unwrap_or_default()),
            (None, false, _) => format!("FAIL: {}", o.crashes.join(", ")),
            (None, true, true) => "holds".to_owned(),
            (None, true, false) => format!("FAIL: {}", v.summary()),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} s | {} |\n",
            o.fault.name(),
            v.sent,
            v.acked,
            o.attempts,
            v.missing.len(),
            v.duplicated.len(),
            v.dup_final.len(),
            v.profile_mismatches.len(),
            dlq,
            recovery,
            o.longest_stall.as_secs_f64(),
            shorten(&verdict.replace('|', "/"), 160),
        ));
    }
    out
}

pub fn closing_line(outcomes: &[Outcome]) -> String {
    let passed = outcomes.iter().filter(|o| o.holds()).count();
    format!("chaos: {passed} passed, {} failed", outcomes.len() - passed)
}

/// At most `max` characters (the full verdict is in the run's log).
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let cut: String = text.chars().take(max).collect();
    format!("{cut}…")
}
