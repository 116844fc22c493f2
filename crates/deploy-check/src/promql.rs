//! The metrics a PromQL expression reads, from its syntax tree (`promql-parser`), so
//! names inside functions, aggregations, binary operations and subqueries are all
//! found and an expression that does not parse is an error.

use std::collections::BTreeSet;

use anyhow::{anyhow, bail};
use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr, VectorSelector};
use promql_parser::util::{walk_expr, ExprVisitor};

/// One vector selector of an expression: the metric name and the label names its
/// matchers use.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Selector {
    pub metric: String,
    pub labels: BTreeSet<String>,
}

/// Grafana's built-in interval variables are not PromQL; give them a value so the
/// expression parses (the value does not matter for which metrics it reads).
pub fn substitute_grafana_variables(expr: &str) -> String {
    ["$__rate_interval", "$__interval", "$__range"].iter().fold(expr.to_owned(), |e, var| e.replace(var, "5m"))
}

struct Collect(Vec<Result<Selector, String>>);

impl Collect {
    fn selector(&mut self, vs: &VectorSelector) {
        let equal_name = vs.matchers.matchers.iter().find(|m| m.name == "__name__" && m.op == MatchOp::Equal);
        let metric = vs.name.clone().or_else(|| equal_name.map(|m| m.value.clone()));
        self.0.push(match metric {
            Some(metric) => Ok(Selector {
                metric,
                labels: vs.matchers.matchers.iter().filter(|m| m.name != "__name__").map(|m| m.name.clone()).collect(),
            }),
            None => Err(format!("selector {vs} does not name its metric exactly")),
        });
    }
}

impl ExprVisitor for Collect {
    type Error = std::convert::Infallible;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, Self::Error> {
        match expr {
            Expr::VectorSelector(vs) => self.selector(vs),
            Expr::MatrixSelector(ms) => self.selector(&ms.vs),
            _ => {}
        }
        Ok(true)
    }
}

/// Every selector of `expr`. Fails when it does not parse or a selector does not
/// name its metric (a regex on `__name__` cannot be checked against exports).
pub fn selectors(expr: &str) -> anyhow::Result<Vec<Selector>> {
    let ast = parser::parse(&substitute_grafana_variables(expr)).map_err(|e| anyhow!("{expr:?}: {e}"))?;
    let mut collect = Collect(Vec::new());
    let _ = walk_expr(&mut collect, &ast);
    if collect.0.is_empty() {
        bail!("{expr:?} reads no metric");
    }
    collect.0.into_iter().map(|s| s.map_err(|e| anyhow!("{expr:?}: {e}"))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_names_everywhere() {
        let expr = "histogram_quantile(0.99, sum by (le) (rate(a_bucket{job=\"x\"}[$__rate_interval]))) \
                    / on() group_left max(b) + max_over_time(c[10m:1m]) > bool 0";
        let names: Vec<String> = selectors(expr).unwrap().into_iter().map(|s| s.metric).collect();
        assert_eq!(names, ["a_bucket", "b", "c"]);
        assert_eq!(selectors("a_bucket{job=\"x\"}").unwrap()[0].labels, BTreeSet::from(["job".to_owned()]));
        assert!(selectors("sum(rate(a[5m]").is_err(), "unbalanced parentheses must not pass");
        assert!(selectors("{__name__=~\"a.*\"}").is_err(), "regex names cannot be checked");
        assert!(selectors("1 + 1").is_err(), "an expression reading nothing is a mistake");
    }
}
