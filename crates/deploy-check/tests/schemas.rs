//! The compose file and every kustomization are valid for their specifications:
//! the Compose spec JSON schema plus the real Docker Compose v2 loader, and the
//! strict Kubernetes schemas (plus KEDA's model for ScaledObjects) after assembly
//! with `kubectl kustomize`. Each validator is also shown to reject a broken copy,
//! so a validator that accepts everything cannot pass these tests.

use std::path::Path;

use deploy_check::deployment::kustomizations;
use deploy_check::repo::{copy_tree, root, validate, validate_ok};

fn replace_in(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} does not contain {from:?}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn compose_file_is_valid() {
    let out = validate_ok("compose", &root().join("docker-compose.yml")).unwrap();
    assert!(out.contains("OK"), "{out}");
}

#[test]
fn compose_validation_rejects_unknown_keys_dangling_dependencies_and_defaulted_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    // The compose file refers to ./deploy/... relative to itself: keep that valid.
    std::os::unix::fs::symlink(root().join("deploy"), dir.path().join("deploy")).unwrap();
    let cases = [
        ("    restart: unless-stopped\n", "    restart: unless-stopped\n    restrat: always\n", "restrat"),
        (
            "      kafka:\n        condition: service_healthy\n",
            "      kafak:\n        condition: service_healthy\n",
            "kafak",
        ),
        ("      interval: 10s\n", "      interval: often\n", "interval"),
        // A secret with a default is a secret anyone knows.
        (
            "${GRAFANA_ADMIN_PASSWORD:?set GRAFANA_ADMIN_PASSWORD in the shell or .env}",
            "${GRAFANA_ADMIN_PASSWORD:-admin}",
            "GRAFANA_ADMIN_PASSWORD must be required",
        ),
    ];
    for (from, to, expected) in cases {
        assert!(text.contains(from), "case {expected}: pattern missing");
        let file = dir.path().join("docker-compose.yml");
        std::fs::write(&file, text.replacen(from, to, 1)).unwrap();
        let run = validate("compose", &file).unwrap();
        assert!(!run.ok && run.stderr.contains(expected), "case {expected}: {run:?}");
    }
}

#[test]
fn every_kustomization_is_valid() {
    let dirs = kustomizations();
    assert!(dirs.len() >= 2, "base and the KEDA overlay: {dirs:?}");
    for dir in dirs {
        let out = validate_ok("kubernetes", &dir).unwrap();
        assert!(out.contains("OK"), "{out}");
    }
}

#[test]
fn kubernetes_validation_rejects_typos_wrong_types_and_unknown_kinds() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&root().join("deploy/kubernetes"), dir.path()).unwrap();
    let base = dir.path().join("base");
    let keda = dir.path().join("overlays/keda");
    let cases: [(&Path, &str, &str, &str, &str); 4] = [
        (&base, "gateway/deployment.yaml", "failureThreshold: 2", "failureTreshold: 2", "failureTreshold"),
        (&base, "gateway/hpa.yaml", "minReplicas: 2", "minReplicas: two", "minReplicas"),
        (&base, "namespace.yaml", "kind: Namespace", "kind: Namespaces", "no Kubernetes"),
        (
            &keda,
            "scaledobjects.yaml",
            "stabilizationWindowSeconds: 300",
            "stabilisationWindowSeconds: 300",
            "stabilisationWindowSeconds",
        ),
    ];
    for (kustomization, file, from, to, expected) in cases {
        let path = if file == "scaledobjects.yaml" { keda.join(file) } else { base.join(file) };
        let original = std::fs::read_to_string(&path).unwrap();
        replace_in(&path, from, to);
        let run = validate("kubernetes", kustomization).unwrap();
        assert!(!run.ok && run.stderr.contains(expected), "case {expected}: {run:?}");
        std::fs::write(&path, original).unwrap();
    }
    validate_ok("kubernetes", &keda).unwrap();
}
