//! The PromQL expressions of a Grafana dashboard (every Prometheus target of every
//! panel, rows' nested panels included) and of Prometheus rule files.

use anyhow::Context;
use serde_json::Value;

/// A query and where it is, for messages.
#[derive(Debug, Clone)]
pub struct Query {
    pub origin: String,
    pub expr: String,
}

fn is_prometheus(datasource: &Value, default_is_prometheus: bool) -> bool {
    match datasource {
        Value::Object(d) => d.get("type").and_then(Value::as_str) == Some("prometheus"),
        Value::String(s) => s.to_ascii_lowercase().contains("prometheus"),
        _ => default_is_prometheus,
    }
}

/// Every Prometheus query of a dashboard JSON. Targets without their own datasource
/// inherit the panel's.
pub fn dashboard_queries(dashboard: &Value) -> Vec<Query> {
    let mut out = Vec::new();
    let mut stack: Vec<&Value> = dashboard["panels"].as_array().into_iter().flatten().collect();
    while let Some(panel) = stack.pop() {
        stack.extend(panel["panels"].as_array().into_iter().flatten());
        let panel_is_prometheus = is_prometheus(&panel["datasource"], false);
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                if is_prometheus(&target["datasource"], panel_is_prometheus) {
                    let title = panel["title"].as_str().unwrap_or("untitled");
                    out.push(Query { origin: format!("panel {title:?}"), expr: expr.to_owned() });
                }
            }
        }
    }
    out
}

/// Every `expr` of a Prometheus rule file (alerting and recording rules).
pub fn rule_queries(rules: &Value) -> anyhow::Result<Vec<Query>> {
    let mut out = Vec::new();
    for group in rules["groups"].as_array().context("rule file without groups")? {
        for rule in group["rules"].as_array().context("rule group without rules")? {
            let name = rule["alert"].as_str().or(rule["record"].as_str()).unwrap_or("unnamed");
            let expr = rule["expr"].as_str().with_context(|| format!("rule {name} has no expr"))?;
            out.push(Query { origin: format!("rule {name}"), expr: expr.to_owned() });
        }
    }
    Ok(out)
}
