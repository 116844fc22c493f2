//! Rewrites of analysts' queries shared by the docs tests and the analyst benchmark.

/// The same query reading `vero.events FINAL` wherever it reads `vero.events` (and not
/// `vero.events_unique` or any other table whose name starts the same).
pub fn with_final(sql: &str) -> String {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(at) = rest.find("FROM vero.events") {
        let end = at + "FROM vero.events".len();
        out.push_str(&rest[..end]);
        let tail = &rest[end..];
        if tail.is_empty() || tail.starts_with(|c: char| c.is_whitespace() || c == ')') {
            out.push_str(" FINAL");
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}
