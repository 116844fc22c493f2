//! The docs name only what exists: metrics, config keys and subcommands
//! (`deploy_check::docs`). Each check is also shown to catch a mistake of the kind it
//! guards against, reintroduced into a copy of the real docs.

use deploy_check::docs::{self, Doc};
use deploy_check::repo::root;

fn real_docs() -> Vec<Doc> {
    let docs = docs::docs(&root());
    assert!(docs.len() >= 7, "README.md and docs/*.md are read");
    docs
}

/// The real docs plus one file holding `text`.
fn with(text: &str) -> Vec<Doc> {
    let mut docs = real_docs();
    docs.push(Doc { name: "injected.md".into(), text: text.into() });
    docs
}

#[test]
fn every_metric_the_docs_name_is_registered() {
    let registered = docs::registered_metrics(&root());
    for name in ["vero_sink_write_failures_total", "vero_gateway_http_requests_total", "vero_profiles_in_memory"] {
        assert!(registered.contains(name), "{name} not found among {registered:?}");
    }
    let problems = docs::unknown_metrics(&root(), &real_docs());
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let problems = docs::unknown_metrics(&root(), &with("Alert on `vero_sink_clickhouse_failures_total`."));
    assert_eq!(problems, ["injected.md: metric vero_sink_clickhouse_failures_total is not registered by any service"]);
    // Histogram series, crate paths and prefixes are not reported.
    let fine = "`vero_sink_insert_duration_seconds_bucket`, `vero_service::shutdown`, `vero_model`, `vero_gateway_*`";
    assert!(docs::unknown_metrics(&root(), &with(fine)).is_empty());
}

#[test]
fn every_config_key_the_docs_name_is_accepted_by_a_service() {
    let mentioned = docs::mentioned_keys(&root(), &real_docs());
    assert!(mentioned.len() >= 20, "only {} keys found: {mentioned:?}", mentioned.len());
    let problems = docs::unknown_keys(&root(), &real_docs());
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let injected = "Set `clickhouse.events_ttl_days`, or `VERO__BATCH__MAX_ROW=10`; `kafka.properties.sasl.mechanism` \
                    and `clickhouse.password_file` exist, `vero.events` and `cluster.rs` are not keys.";
    let problems = docs::unknown_keys(&root(), &with(injected));
    assert_eq!(
        problems,
        [
            "injected.md: config key VERO__BATCH__MAX_ROW is accepted by no service",
            "injected.md: config key VERO__CLICKHOUSE__EVENTS_TTL_DAYS is accepted by no service",
        ]
    );
}

#[test]
fn every_subcommand_the_docs_name_exists() {
    use deploy_check::services::Service;
    let sink = docs::subcommands(&root(), Service::EventSink);
    assert!(sink.contains("migrate") && sink.contains("replay-dlq"), "{sink:?}");
    let problems = docs::unknown_subcommands(&root(), &real_docs());
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let injected =
        "```sh\ndocker compose run --rm event-sink replay-dlq\nevent-sink migrate\nevent-sink rebuild\n```\n\
                    and `profile-consumer restore`, `docker compose logs event-sink profile-consumer`";
    let problems = docs::unknown_subcommands(&root(), &with(injected));
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("`event-sink rebuild`") && problems[1].contains("`profile-consumer restore`"));
}
