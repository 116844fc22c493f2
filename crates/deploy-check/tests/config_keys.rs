//! Every setting a deployment hands a service is one the service accepts: each
//! container that runs a service binary is started "on paper" by loading its
//! settings with the service's own loader (image defaults + mounted config files +
//! `VERO_ENV` + `VERO__*` variables, exactly as the deployment defines them), which
//! rejects unknown keys and bad values.

use deploy_check::deployment::{compose_model, from_compose, from_kubernetes, kustomizations, kustomize, Container};
use deploy_check::repo::root;
use deploy_check::services::Service;

fn service_containers(containers: Vec<Container>) -> Vec<(Service, Container)> {
    containers.into_iter().filter_map(|c| Some((Service::from_binary(c.program()?)?, c))).collect()
}

fn all_containers() -> Vec<(Service, Container)> {
    let mut out =
        service_containers(from_compose(&compose_model(&root().join("docker-compose.yml")).unwrap()).unwrap());
    for dir in kustomizations() {
        out.extend(service_containers(from_kubernetes(&kustomize(&dir).unwrap()).unwrap()));
    }
    out
}

#[test]
fn every_deployment_sets_only_keys_the_services_accept() {
    let containers = all_containers();
    for service in Service::ALL {
        assert!(containers.iter().any(|(s, _)| *s == service), "no deployment runs {service:?}");
    }
    let mut checked = 0;
    let mut rejected = Vec::new();
    for (service, container) in &containers {
        checked += container.env.keys().filter(|k| k.starts_with("VERO__")).count();
        if let Err(e) = service.load_for(container) {
            rejected.push(format!("{e:#}"));
        }
    }
    assert!(rejected.is_empty(), "{}", rejected.join("\n"));
    assert!(checked >= 10, "only {checked} VERO__ variables found: is the env read at all?");
}

#[test]
fn the_check_rejects_an_unknown_key_a_bad_value_and_an_unread_config_file() {
    let (service, container) =
        all_containers().into_iter().find(|(s, c)| *s == Service::EventSink && c.origin.contains("compose")).unwrap();
    let mut typo = container.clone();
    typo.env.insert("VERO__KAFKA__BROKRES".into(), "kafka:9092".into());
    let err = format!("{:#}", service.load_for(&typo).unwrap_err());
    assert!(err.contains("brokres"), "{err}");

    let mut bad = container.clone();
    bad.env.insert("VERO__BATCH__MAX_ROWS".into(), "lots".into());
    let err = format!("{:#}", service.load_for(&bad).unwrap_err());
    assert!(err.contains("max_rows"), "{err}");

    let (gateway, container) = all_containers().into_iter().find(|(s, _)| *s == Service::Gateway).unwrap();
    let mut unread = container.clone();
    unread.env.insert("VERO_ENV".into(), "staging".into());
    assert!(gateway.load_for(&unread).is_err(), "a projects file the gateway never reads must be reported");
    let mut typo = container;
    for text in typo.files.values_mut() {
        *text = text.replace("tokens", "tokenz");
    }
    let err = format!("{:#}", gateway.load_for(&typo).unwrap_err());
    assert!(err.contains("tokenz"), "{err}");
}
