//! The Dockerfile builds binaries that exist in the workspace and ships every
//! service binary, and every deployment runs a program the image contains.

use std::collections::BTreeSet;
use std::process::Command;

use deploy_check::deployment::{compose_model, from_compose, from_kubernetes, kustomizations, kustomize};
use deploy_check::dockerfile::analyse;
use deploy_check::repo::root;
use deploy_check::services::Service;

/// Names of every `bin` target of the workspace, from `cargo metadata`.
fn workspace_binaries() -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .filter(|t| t["kind"].as_array().unwrap().iter().any(|k| k == "bin"))
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

fn image() -> deploy_check::dockerfile::Image {
    analyse(&std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap())
}

#[test]
fn dockerfile_builds_workspace_binaries_and_ships_every_service() {
    let workspace = workspace_binaries();
    let image = image();
    assert!(image.locked, "cargo build in the Dockerfile must use --locked");
    assert!(image.unexplained.is_empty(), "copies into /usr/local/bin not understood: {:?}", image.unexplained);
    for bin in &image.built {
        assert!(workspace.contains(bin), "the Dockerfile builds --bin {bin}, which no workspace crate defines");
    }
    for bin in &image.shipped {
        assert!(image.built.contains(bin), "the image ships {bin}, which the Dockerfile does not build");
    }
    for service in Service::ALL {
        assert!(workspace.contains(service.binary()), "{} is not a workspace binary", service.binary());
        assert!(image.shipped.contains(service.binary()), "the image lacks {}", service.binary());
    }
}

#[test]
fn every_deployment_runs_a_program_of_the_image() {
    let shipped = image().shipped;
    let mut containers = from_compose(&compose_model(&root().join("docker-compose.yml")).unwrap()).unwrap();
    for dir in kustomizations() {
        containers.extend(from_kubernetes(&kustomize(&dir).unwrap()).unwrap());
    }
    let ours: Vec<_> = containers.iter().filter(|c| c.image.contains("vero-pipeline")).collect();
    let programs: BTreeSet<&str> = ours.iter().filter_map(|c| c.program()).collect();
    for container in &ours {
        let program = container.program().unwrap_or_default();
        assert!(shipped.contains(program), "{} runs {program:?}, which the image does not contain", container.origin);
    }
    for service in Service::ALL {
        assert!(programs.contains(service.binary()), "no deployment runs {}", service.binary());
    }
}
