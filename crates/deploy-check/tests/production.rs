//! What an operator's path to production depends on (issue 23), checked on the
//! resolved compose model and on every assembled kustomization:
//! * the three scalable services publish no fixed host port; the gateway is reached
//!   through the load balancer, which sends to its API port and health-checks its
//!   ops port;
//! * every object lands in the namespace of the deployment, and every scaler targets
//!   a Deployment of that namespace;
//! * consumers start only after the one-shot setup (topics, then migrations) and never
//!   create topics themselves; the topic script sets an explicit DLQ retention and
//!   corrects existing topics;
//! * the gateway's ops endpoints are off its public port, and every scrape uses the
//!   ops port;
//! * KEDA slows scale-down with the HPA behaviour (cooldownPeriod does nothing with
//!   minReplicaCount ≥ 1); PDBs let unready pods be evicted;
//! * the alert `VeroTargetDown` selects the targets both scrape setups produce.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use deploy_check::deployment::{compose_model, from_compose, from_kubernetes, kustomizations, kustomize, Container};
use deploy_check::repo::root;
use deploy_check::services::Service;
use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr};
use serde_json::Value;

fn is_one_shot(container: &Container) -> bool {
    container.argv.get(1).is_some_and(|command| command != "run")
}

/// Kinds without a namespace (of those a kustomization here could hold).
const CLUSTER_SCOPED: [&str; 5] =
    ["Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass"];

#[test]
fn compose_scales_every_service_and_orders_the_setup_before_the_consumers() {
    let model = compose_model(&root().join("docker-compose.yml")).unwrap();
    let services = model["services"].as_object().unwrap();
    let runs = |service: &Value, needle: &str| {
        let mut argv = service["entrypoint"].to_string();
        argv.push_str(&service["command"].to_string());
        argv.contains(needle)
    };
    let mut gateway = None;
    let mut consumers = 0;
    for container in from_compose(&model).unwrap() {
        let Some(service) = container.program().and_then(Service::from_binary) else { continue };
        let effective = service.load_for(&container).unwrap();
        let origin = &container.origin;
        assert!(!effective.creates_topics, "{origin}: creates topics itself (set VERO__KAFKA__CREATE_TOPICS=false)");
        if is_one_shot(&container) {
            continue;
        }
        // `docker compose up --scale` starts N containers: a fixed host port can be
        // bound by one of them only (a range like "8080-8089" would do).
        for port in container.spec["ports"].as_array().into_iter().flatten() {
            let published = port["published"].as_str().unwrap_or_default();
            assert!(
                published.is_empty() || published.contains('-'),
                "{origin}: publishes fixed host port {published}, so --scale fails"
            );
        }
        if service == Service::Gateway {
            assert!(effective.own_ops_listener, "{origin}: ops.listen unset, /metrics is on the public port");
            assert_ne!(Some(effective.ops_port), effective.public_port, "{origin}: ops on the public port");
            gateway = Some(effective);
            continue;
        }
        consumers += 1;
        // Waits for the topics and the migrations, both run once before it.
        let depends = container.spec["depends_on"].as_object().unwrap();
        let completed: Vec<&Value> = depends
            .iter()
            .filter(|(_, d)| d["condition"] == "service_completed_successfully")
            .map(|(name, _)| &services[name])
            .collect();
        assert!(completed.iter().any(|s| runs(s, "create-topics.sh")), "{origin}: does not wait for the topics");
        assert!(completed.iter().any(|s| runs(s, "\"migrate\"")), "{origin}: does not wait for the migrations");
    }
    assert_eq!(consumers, 2);
    // The load balancer in front of the gateway replicas: API port, ops health check.
    let gateway = gateway.expect("compose runs the gateway");
    let haproxy = std::fs::read_to_string(root().join("deploy/compose/haproxy.cfg")).unwrap();
    let line = |keyword: &str| {
        haproxy.lines().map(str::trim).find(|l| l.starts_with(keyword)).unwrap_or_else(|| panic!("no {keyword}"))
    };
    let public = gateway.public_port.unwrap();
    assert!(line("server-template").ends_with(&format!("ingest-gateway:{public}")), "haproxy sends elsewhere");
    assert!(line("default-server").contains(&format!(" port {} ", gateway.ops_port)), "haproxy checks elsewhere");
    assert_eq!(line("option httpchk"), "option httpchk GET /readyz");
    let lb = services.values().find(|s| s["volumes"].to_string().contains("haproxy.cfg")).expect("the gateway-lb");
    assert!(lb["ports"].to_string().contains(&format!("\"target\":{public}")), "the balancer publishes no API port");
}

#[test]
fn kubernetes_namespaces_scalers_setup_gateway_ops_and_disruption_budgets() {
    for dir in kustomizations() {
        let objects = kustomize(&dir).unwrap();
        let at = dir.display();
        let namespaces: Vec<&str> = objects
            .iter()
            .filter(|o| o["kind"] == "Namespace")
            .map(|o| o["metadata"]["name"].as_str().unwrap())
            .collect();
        let [namespace] = namespaces[..] else { panic!("{at}: want one Namespace, found {namespaces:?}") };
        let name_of =
            |o: &Value| format!("{}/{}", o["kind"].as_str().unwrap(), o["metadata"]["name"].as_str().unwrap());
        for object in &objects {
            if !CLUSTER_SCOPED.contains(&object["kind"].as_str().unwrap()) {
                assert_eq!(object["metadata"]["namespace"], namespace, "{at}: {} not in {namespace}", name_of(object));
            }
        }
        let deployment = |name: &str, ns: &Value| {
            objects.iter().any(|o| {
                o["kind"] == "Deployment" && o["metadata"]["name"] == name && o["metadata"]["namespace"] == *ns
            })
        };
        for object in objects.iter().filter(|o| o["kind"] == "ScaledObject" || o["kind"] == "HorizontalPodAutoscaler") {
            let target = &object["spec"]["scaleTargetRef"];
            let kind = target["kind"].as_str().unwrap_or("Deployment");
            let name = target["name"].as_str().unwrap();
            assert!(
                kind == "Deployment" && deployment(name, &object["metadata"]["namespace"]),
                "{at}: {} scales {kind}/{name}, which is not in its namespace",
                name_of(object)
            );
        }
        for object in objects.iter().filter(|o| o["kind"] == "ScaledObject") {
            let spec = &object["spec"];
            if spec["minReplicaCount"].as_u64().unwrap_or(0) >= 1 {
                assert!(
                    spec.get("cooldownPeriod").is_none(),
                    "{at}: {}: cooldownPeriod only applies to scaling to/from zero",
                    name_of(object)
                );
            }
            let window = &spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
                ["stabilizationWindowSeconds"];
            assert!(window.as_u64().is_some_and(|s| s >= 60), "{at}: {}: no scale-down window", name_of(object));
        }
        for object in objects.iter().filter(|o| o["kind"] == "PodDisruptionBudget") {
            assert_eq!(
                object["spec"]["unhealthyPodEvictionPolicy"],
                "AlwaysAllow",
                "{at}: {}: unready pods would block drains",
                name_of(object)
            );
        }
        // The setup Job: topics (init container) before migrations.
        let jobs: Vec<&Value> = objects.iter().filter(|o| o["kind"] == "Job").collect();
        let setup = jobs.iter().any(|j| {
            let pod = &j["spec"]["template"]["spec"];
            pod["initContainers"].to_string().contains("create-topics.sh")
                && pod["containers"].as_array().unwrap().iter().any(|c| {
                    c["command"].as_array().is_some_and(|a| a.len() == 2 && a[0] == "event-sink" && a[1] == "migrate")
                })
        });
        assert!(setup, "{at}: no Job creating topics then running `event-sink migrate`");
        let pods: BTreeMap<String, &Value> = objects
            .iter()
            .filter(|o| o["kind"] == "Deployment")
            .map(|o| (name_of(o), &o["spec"]["template"]))
            .collect();
        for container in from_kubernetes(&objects).unwrap() {
            let Some(service) = container.program().and_then(Service::from_binary) else { continue };
            let effective = service.load_for(&container).unwrap();
            let origin = &container.origin;
            assert!(
                !effective.creates_topics,
                "{origin}: creates topics itself (set VERO__KAFKA__CREATE_TOPICS=false)"
            );
            let Some(pod) = pods.get(origin.split(' ').next().unwrap()) else { continue };
            let annotations = &pod["metadata"]["annotations"];
            if annotations["prometheus.io/scrape"] == "true" {
                assert_eq!(
                    annotations["prometheus.io/port"],
                    effective.ops_port.to_string(),
                    "{origin}: Prometheus would scrape another port than /metrics is on"
                );
            }
            if service == Service::Gateway {
                assert!(effective.own_ops_listener, "{origin}: ops.listen unset, /metrics is on the public port");
                assert_ne!(Some(effective.ops_port), effective.public_port, "{origin}: ops on the public port");
            } else {
                let waits = pod["spec"]["initContainers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["command"].to_string().contains("wait-for-migrations.sh"));
                assert!(waits, "{origin}: starts without waiting for the setup Job (init container)");
            }
        }
    }
}

/// The consumers' init container, run against a stand-in `curl` that answers like
/// ClickHouse: it asks for exactly the migration ids the services number from
/// `schemas/clickhouse/*.sql` (the image's `/app/schemas/clickhouse`), keeps waiting
/// while ClickHouse is unreachable or has fewer of them, passes once all are recorded,
/// and never puts the password on a command line.
#[test]
fn the_wait_script_waits_until_clickhouse_records_every_migration_the_image_ships() {
    let expected: BTreeSet<u32> = std::fs::read_dir(root().join("schemas/clickhouse"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".sql")?.split_once('_')?.0.parse().ok()
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    // Answers, call by call: unreachable, then all but one recorded, then all.
    let curl = dir.path().join("curl");
    let script = format!(
        "#!/bin/sh\nn=$(cat \"$STATE\" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > \"$STATE\"\n\
         echo \"argv $*\" >> \"$CALLS\"; sed 's/^/stdin /' >> \"$CALLS\"\n\
         case $n in 1) exit 7;; 2) echo {};; *) echo {};; esac\n",
        expected.len() - 1,
        expected.len()
    );
    std::fs::write(&curl, script).unwrap();
    Command::new("chmod").arg("+x").arg(&curl).status().unwrap();
    let (state, calls) = (dir.path().join("state"), dir.path().join("calls"));
    let out = Command::new("sh")
        .arg(root().join("deploy/kubernetes/base/migrations/wait-for-migrations.sh"))
        .env("PATH", format!("{}:{}", dir.path().display(), std::env::var("PATH").unwrap()))
        .env("VERO__CLICKHOUSE__URL", "http://clickhouse:8123")
        .env("VERO__CLICKHOUSE__USER", "vero")
        .env("VERO__CLICKHOUSE__PASSWORD", "s3cret")
        .env("VERO_SCHEMAS_DIR", root().join("schemas/clickhouse"))
        .env("VERO_WAIT_INTERVAL_S", "0")
        .env("STATE", &state)
        .env("CALLS", &calls)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(&state).unwrap().trim(), "3", "passed before all were recorded: {stdout}");
    let calls = std::fs::read_to_string(&calls).unwrap();
    let ids: Vec<String> = expected.iter().map(u32::to_string).collect();
    assert!(calls.contains(&format!("WHERE id IN ({})", ids.join(","))), "{calls}");
    assert!(calls.contains("stdin header = \"X-ClickHouse-Key: s3cret\""), "{calls}");
    assert!(
        calls.lines().filter(|l| l.starts_with("argv")).all(|l| !l.contains("s3cret")),
        "password in argv: {calls}"
    );
}

/// Run `create-topics.sh` with stand-in Kafka tools that record every call and
/// describe each topic with `partitions` partitions and `replicas` replicas.
fn run_topic_script(env: &BTreeMap<String, String>, replicas: u32) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls");
    let tool = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\necho \"{name} $*\" >> \"$CALLS\"\n{body}\n")).unwrap();
        Command::new("chmod").arg("+x").arg(&path).status().unwrap();
    };
    let describe = format!(
        "case \" $* \" in *\" --describe \"*) printf 'Topic: x\\tTopicId: y\\tPartitionCount: %s\\tReplicationFactor: {replicas}\\tConfigs:\\n' \"$VERO_PARTITIONS\";; esac"
    );
    tool("kafka-topics.sh", &describe);
    tool("kafka-configs.sh", "");
    let script = root().join("deploy/kubernetes/base/topics/create-topics.sh");
    let out = Command::new("sh")
        .arg(&script)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .envs(env)
        .env("KAFKA_BIN", dir.path())
        .env("CALLS", &log)
        .output()
        .unwrap();
    let calls = std::fs::read_to_string(&log).unwrap_or_default();
    (out.status.success(), calls, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Configs the script sets on `topic`: `--config` at creation and `--add-config` after.
fn topic_configs(calls: &str, topic: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for call in calls.lines().filter(|c| c.contains(&format!(" {topic} ")) || c.ends_with(&format!(" {topic}"))) {
        let words: Vec<&str> = call.split_whitespace().collect();
        for pair in words.windows(2) {
            if pair[0] == "--config" || pair[0] == "--add-config" {
                for setting in pair[1].split(',') {
                    let (k, v) = setting.split_once('=').unwrap();
                    out.insert(k.to_owned(), v.to_owned());
                }
            }
        }
    }
    out
}

#[test]
fn the_topic_step_sets_dlq_retention_and_corrects_existing_topics_in_both_deployments() {
    let model = compose_model(&root().join("docker-compose.yml")).unwrap();
    let compose: BTreeMap<String, String> = model["services"]["kafka-init"]["environment"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    let objects = kustomize(&root().join("deploy/kubernetes/base")).unwrap();
    let topics = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"].as_str().unwrap().starts_with("vero-topics"))
        .unwrap();
    let kubernetes: BTreeMap<String, String> = topics["data"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !k.ends_with(".sh"))
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    for (deployment, env) in [("compose", &compose), ("kubernetes", &kubernetes)] {
        let replicas: u32 = env["VERO_REPLICATION_FACTOR"].parse().unwrap();
        let (ok, calls, stderr) = run_topic_script(env, replicas);
        assert!(ok, "{deployment}: {stderr}\n{calls}");
        // Dead letters outlive the broker's default 7 days: replay-dlq needs them.
        let dlq = topic_configs(&calls, "vero.events.dlq");
        let retention: i64 =
            dlq.get("retention.ms").unwrap_or_else(|| panic!("{deployment}: DLQ retention unset")).parse().unwrap();
        assert!(retention == -1 || retention >= 30 * 24 * 3_600_000, "{deployment}: DLQ kept only {retention} ms");
        // Configs are set with --alter too, so an existing topic is corrected.
        assert!(calls.contains("--alter --entity-type topics --entity-name vero.profiles"), "{deployment}: {calls}");
        assert_eq!(topic_configs(&calls, "vero.profiles")["cleanup.policy"], "compact");
        for topic in ["vero.events", "vero.events.dlq", "vero.profiles", "vero.profiles.handoff"] {
            assert_eq!(topic_configs(&calls, topic)["min.insync.replicas"], env["VERO_MIN_INSYNC_REPLICAS"]);
        }
    }
    // A topic with fewer replicas than wanted (created elsewhere with broker defaults)
    // stops the step.
    let (ok, _, stderr) = run_topic_script(&kubernetes, 1);
    assert!(!ok && stderr.contains("replication factor 1, want 3"), "{stderr}");
}

/// Target labels a scrape job gives every target: its job name, then relabelings that
/// set a fixed value (the only kind the compose config uses).
fn compose_target_labels(job: &Value) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([("job".to_owned(), job["job_name"].as_str().unwrap().to_owned())]);
    for rule in job["relabel_configs"].as_array().into_iter().flatten() {
        assert!(
            rule.get("source_labels").is_none() && rule.get("action").is_none_or(|a| a == "replace"),
            "unsupported relabeling in the compose scrape config: {rule}"
        );
        labels.insert(
            rule["target_label"].as_str().unwrap().to_owned(),
            rule["replacement"].as_str().unwrap().to_owned(),
        );
    }
    labels
}

/// Whether a label matcher of the alert accepts `value` (a missing label is "").
fn matches(op: &MatchOp, wanted: &str, value: &str) -> bool {
    let literal_alternatives = || {
        assert!(
            !wanted.contains(|c: char| "\\.*+?()[]{}^$".contains(c)),
            "regex {wanted:?}: only alternatives of literal values can be checked"
        );
        wanted.split('|').any(|alt| alt == value)
    };
    match op {
        MatchOp::Equal => wanted == value,
        MatchOp::NotEqual => wanted != value,
        MatchOp::Re(_) => literal_alternatives(),
        MatchOp::NotRe(_) => !literal_alternatives(),
    }
}

#[test]
fn target_down_alert_selects_every_target_of_both_scrape_setups() {
    let rules: Value =
        serde_norway::from_str(&std::fs::read_to_string(root().join("deploy/prometheus/alerts.yml")).unwrap()).unwrap();
    let rule = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .find(|r| r["alert"] == "VeroTargetDown")
        .expect("the alert VeroTargetDown");
    let expr = parser::parse(rule["expr"].as_str().unwrap()).unwrap();
    let Expr::Binary(binary) = &expr else { panic!("VeroTargetDown is not `up{{…}} == 0`") };
    let Expr::VectorSelector(up) = &*binary.lhs else { panic!("VeroTargetDown is not `up{{…}} == 0`") };
    assert_eq!(up.name.as_deref(), Some("up"));
    let selects = |labels: &BTreeMap<String, String>| {
        up.matchers.matchers.iter().all(|m| matches(&m.op, &m.value, labels.get(&m.name).map_or("", String::as_str)))
    };

    // compose: deploy/prometheus/prometheus.yml
    let compose: Value =
        serde_norway::from_str(&std::fs::read_to_string(root().join("deploy/prometheus/prometheus.yml")).unwrap())
            .unwrap();
    let jobs: Vec<&Value> = compose["scrape_configs"].as_array().unwrap().iter().collect();
    for service in Service::ALL {
        let job = jobs
            .iter()
            .find(|j| j["dns_sd_configs"][0]["names"][0] == service.binary())
            .unwrap_or_else(|| panic!("compose Prometheus does not scrape {}", service.binary()));
        let labels = compose_target_labels(job);
        assert!(
            selects(&labels),
            "compose: VeroTargetDown never fires for {} (target labels {labels:?})",
            service.binary()
        );
    }

    // Kubernetes: deploy/prometheus/kubernetes.yml maps the pod labels to target labels.
    let kubernetes: Value =
        serde_norway::from_str(&std::fs::read_to_string(root().join("deploy/prometheus/kubernetes.yml")).unwrap())
            .unwrap();
    let job = &kubernetes["scrape_configs"][0];
    let relabel = job["relabel_configs"].as_array().unwrap();
    assert!(
        relabel.iter().any(|r| r["action"] == "labelmap" && r["regex"] == "__meta_kubernetes_pod_label_(.+)"),
        "kubernetes.yml must copy the pod labels to the targets"
    );
    for dir in kustomizations() {
        let objects = kustomize(&dir).unwrap();
        let namespace = objects.iter().find(|o| o["kind"] == "Namespace").unwrap()["metadata"]["name"].clone();
        assert!(
            job["kubernetes_sd_configs"][0]["namespaces"]["names"].as_array().unwrap().contains(&namespace),
            "kubernetes.yml does not discover namespace {namespace}"
        );
        let mut scraped = BTreeSet::new();
        for deployment in objects.iter().filter(|o| o["kind"] == "Deployment") {
            let pod = &deployment["spec"]["template"]["metadata"];
            if pod["annotations"]["prometheus.io/scrape"] != "true" {
                continue;
            }
            let mut labels: BTreeMap<String, String> = pod["labels"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.replace(|c: char| !c.is_ascii_alphanumeric(), "_"), v.as_str().unwrap().to_owned()))
                .collect();
            labels.insert("job".into(), job["job_name"].as_str().unwrap().to_owned());
            let name = deployment["metadata"]["name"].as_str().unwrap();
            assert!(
                selects(&labels),
                "{}: VeroTargetDown never fires for Deployment/{name} (target labels {labels:?})",
                dir.display()
            );
            scraped.insert(name.to_owned());
        }
        for service in Service::ALL {
            assert!(scraped.contains(service.binary()), "{}: {} is not scraped", dir.display(), service.binary());
        }
    }
    // And nothing else: a target of another application is not selected.
    let other = BTreeMap::from([
        ("job".to_owned(), "vero-pods".to_owned()),
        ("app_kubernetes_io_name".to_owned(), "unrelated".to_owned()),
    ]);
    assert!(!selects(&other), "VeroTargetDown selects targets of other applications");
}

/// No rule groups, selects or labels its summary by `job`: compose names its jobs after
/// the services, a Kubernetes scrape setup names them as it likes (`vero-pods`,
/// `namespace/podmonitor`, `kubernetes-pods`).
#[test]
fn no_alert_depends_on_job_names() {
    let rules: Value =
        serde_norway::from_str(&std::fs::read_to_string(root().join("deploy/prometheus/alerts.yml")).unwrap()).unwrap();
    for rule in rules["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap()) {
        let name = rule["alert"].as_str().or(rule["record"].as_str()).unwrap();
        let expr = rule["expr"].as_str().unwrap();
        let words: Vec<&str> = expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).collect();
        assert!(!words.contains(&"job"), "rule {name} uses the label job: {expr}");
        assert!(!rule["annotations"].to_string().contains("$labels.job"), "rule {name} prints $labels.job");
    }
}
