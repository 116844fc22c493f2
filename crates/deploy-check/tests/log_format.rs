//! Every deployment runs every service with JSON logs (`VERO_LOG_FORMAT=json`): one
//! object per line, with errors as their own `error` field, for the log shipper. The
//! binaries default to text for people at a terminal, so the deployments must say so.

use deploy_check::deployment::{compose_model, from_compose, from_kubernetes, kustomizations, kustomize, Container};
use deploy_check::repo::root;
use deploy_check::services::Service;

fn service_containers(containers: Vec<Container>) -> Vec<(Service, Container)> {
    containers.into_iter().filter_map(|c| Some((Service::from_binary(c.program()?)?, c))).collect()
}

#[test]
fn compose_and_kubernetes_run_every_service_with_json_logs() {
    let mut containers =
        service_containers(from_compose(&compose_model(&root().join("docker-compose.yml")).unwrap()).unwrap());
    for dir in kustomizations() {
        containers.extend(service_containers(from_kubernetes(&kustomize(&dir).unwrap()).unwrap()));
    }
    for service in Service::ALL {
        for origin in ["compose", "Deployment"] {
            assert!(
                containers.iter().any(|(s, c)| *s == service && c.origin.contains(origin)),
                "no {origin} container runs {service:?}"
            );
        }
    }
    let text: Vec<String> = containers
        .iter()
        .filter(|(_, c)| c.env.get("VERO_LOG_FORMAT").map(String::as_str) != Some("json"))
        .map(|(s, c)| format!("{} ({s:?}): VERO_LOG_FORMAT = {:?}", c.origin, c.env.get("VERO_LOG_FORMAT")))
        .collect();
    assert!(text.is_empty(), "services without JSON logs:\n{}", text.join("\n"));
}
