//! Reading a service's Prometheus `/metrics` page in tests.

/// The sum of every sample whose series starts with `name` (all label sets, and
/// `name_total` for a `name` prefix) in the exposition `text`; 0 when there is none.
pub fn sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn sums_every_label_set_and_skips_comments() {
        let text = "# HELP x_total help\n# TYPE x_total counter\nx_total{a=\"1\"} 2\nx_total{a=\"2\"} 3.5\ny 7\n";
        assert_eq!(super::sum(text, "x_total"), 5.5);
        assert_eq!(super::sum(text, "y"), 7.0);
        assert_eq!(super::sum(text, "z"), 0.0);
    }
}
