//! How the deployments are wired, checked against the services' effective settings:
//! health checks and probes hit the port the service listens on, consumers can be
//! scaled, and no deployment runs more consumers than `vero.events` has partitions.

use std::collections::BTreeMap;

use deploy_check::deployment::{compose_model, from_compose, from_kubernetes, kustomizations, kustomize};
use deploy_check::repo::root;
use deploy_check::services::Service;
use serde_json::Value;

/// `VERO_PARTITIONS` of the topic-creation job in Kubernetes.
fn kubernetes_partitions(objects: &[Value]) -> u64 {
    let topics = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"].as_str().unwrap().starts_with("vero-topics"))
        .expect("the vero-topics ConfigMap");
    topics["data"]["VERO_PARTITIONS"].as_str().unwrap().parse().unwrap()
}

fn port_in(text: &str) -> Option<u16> {
    let after = text.split("localhost:").nth(1)?;
    after.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

#[test]
fn compose_health_checks_hit_the_services_and_consumers_scale() {
    let model = compose_model(&root().join("docker-compose.yml")).unwrap();
    for container in from_compose(&model).unwrap() {
        let Some(service) = container.program().and_then(Service::from_binary) else { continue };
        let effective = service.load_for(&container).unwrap();
        if container.argv.get(1).is_some_and(|command| command != "run") {
            continue; // a one-shot (`event-sink migrate`): no health check, never scaled
        }
        let test = container.spec["healthcheck"]["test"].to_string();
        assert_eq!(port_in(&test), Some(effective.ops_port), "{}: health check {test}", container.origin);
        assert!(test.contains("/readyz"), "{}: health check should use /readyz: {test}", container.origin);
        if effective.group_and_topic.is_some() {
            // `docker compose up --scale` needs replicas that do not collide.
            assert!(
                container.spec.get("container_name").is_none(),
                "{}: container_name blocks --scale",
                container.origin
            );
            let published = container.spec["ports"].as_array().is_some_and(|p| !p.is_empty());
            assert!(!published, "{}: a published host port blocks --scale", container.origin);
            let depends = &container.spec["depends_on"];
            assert_eq!(depends["kafka-init"]["condition"], "service_completed_successfully", "{}", container.origin);
            assert_eq!(depends["clickhouse"]["condition"], "service_healthy", "{}", container.origin);
        }
    }
    let partitions: u64 =
        model["services"]["kafka-init"]["environment"]["VERO_PARTITIONS"].as_str().unwrap().parse().unwrap();
    assert!(partitions >= 3, "the documented `--scale event-sink=3` needs at least 3 partitions");
}

#[test]
fn kubernetes_probes_hit_the_services_and_consumers_stay_within_partitions() {
    for dir in kustomizations() {
        let objects = kustomize(&dir).unwrap();
        let partitions = kubernetes_partitions(&objects);
        let mut groups = BTreeMap::new();
        for container in from_kubernetes(&objects).unwrap() {
            let Some(service) = container.program().and_then(Service::from_binary) else { continue };
            let effective = service.load_for(&container).unwrap();
            if !container.origin.starts_with("Deployment/") {
                continue; // the setup Job's `event-sink migrate`: no probes, never scaled
            }
            for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
                let get = &container.spec[probe]["httpGet"];
                assert_eq!(get["path"], path, "{}: {probe}", container.origin);
                let port = match &get["port"] {
                    Value::String(name) => container.ports.get(name).copied(),
                    other => other.as_u64().and_then(|p| u16::try_from(p).ok()),
                };
                assert_eq!(port, Some(effective.ops_port), "{}: {probe} port", container.origin);
            }
            let resources = &container.spec["resources"];
            assert!(
                resources["requests"]["cpu"].is_string() && resources["limits"]["memory"].is_string(),
                "{}",
                container.origin
            );
            if let Some(group) = effective.group_and_topic {
                assert!(
                    container.replicas.unwrap_or(0) <= partitions,
                    "{}: more replicas than partitions",
                    container.origin
                );
                groups.insert(container.origin.split(' ').next().unwrap().to_owned(), group);
            }
        }
        for object in &objects {
            match object["kind"].as_str().unwrap() {
                "ScaledObject" => {
                    let target = format!("Deployment/{}", object["spec"]["scaleTargetRef"]["name"].as_str().unwrap());
                    let (group, topic) = groups.get(&target).unwrap_or_else(|| panic!("{target} is not a consumer"));
                    let max = object["spec"]["maxReplicaCount"].as_u64().unwrap();
                    assert!(max <= partitions, "{target}: KEDA may scale to {max} > {partitions} partitions");
                    let trigger = &object["spec"]["triggers"][0]["metadata"];
                    assert_eq!(trigger["consumerGroup"], group.as_str(), "{target}: KEDA watches another group");
                    assert_eq!(trigger["topic"], topic.as_str(), "{target}: KEDA watches another topic");
                    assert_eq!(trigger["allowIdleConsumers"], "false", "{target}");
                }
                "HorizontalPodAutoscaler" => {
                    let target = format!("Deployment/{}", object["spec"]["scaleTargetRef"]["name"].as_str().unwrap());
                    if groups.contains_key(&target) {
                        assert!(object["spec"]["maxReplicas"].as_u64().unwrap() <= partitions, "{target}");
                    }
                }
                _ => {}
            }
        }
        let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
        for kind in ["Deployment", "Service", "ConfigMap", "Secret", "PodDisruptionBudget", "HorizontalPodAutoscaler"] {
            assert!(kinds.contains(&kind), "{}: no {kind}", dir.display());
        }
    }
}

#[test]
fn prometheus_scrapes_every_service_on_its_port_and_loads_the_mounted_rules() {
    let model = compose_model(&root().join("docker-compose.yml")).unwrap();
    let text = std::fs::read_to_string(root().join("deploy/prometheus/prometheus.yml")).unwrap();
    let config: Value = serde_norway::from_str(&text).unwrap();
    let jobs: BTreeMap<&str, &Value> =
        config["scrape_configs"].as_array().unwrap().iter().map(|j| (j["job_name"].as_str().unwrap(), j)).collect();
    for container in from_compose(&model).unwrap() {
        let Some(service) = container.program().and_then(Service::from_binary) else { continue };
        if container.argv.get(1).is_some_and(|command| command != "run") {
            continue; // a one-shot exits: nothing to scrape
        }
        let effective = service.load_for(&container).unwrap();
        let name = container.origin.trim_start_matches("compose service ");
        let job = jobs.get(name).unwrap_or_else(|| panic!("Prometheus does not scrape {name}"));
        let sd = &job["dns_sd_configs"][0];
        assert_eq!(sd["port"].as_u64(), Some(u64::from(effective.ops_port)), "{name}: scrape port");
        assert_eq!(sd["names"][0], name, "{name}: DNS discovery must use the service name so all replicas are found");
    }
    let mounts = model["services"]["prometheus"]["volumes"].as_array().unwrap();
    for rule_file in config["rule_files"].as_array().unwrap() {
        assert!(mounts.iter().any(|m| m["target"] == *rule_file), "rule file {rule_file} is not mounted");
    }
}
