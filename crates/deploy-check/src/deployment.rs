//! What each deployment hands each container: the program it runs, its environment
//! and the files mounted into it, read from the *resolved* compose model
//! (`docker compose config --format json`) and from the *assembled* Kubernetes
//! manifests (`kubectl kustomize`), so anchors, merges, generators and patches are
//! already applied exactly as Docker and Kubernetes will apply them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use base64::Engine as _;
use serde_json::Value;

/// One container as a deployment defines it.
#[derive(Debug, Clone)]
pub struct Container {
    /// Where it comes from, for messages: `compose service event-sink`, `Deployment/x`.
    pub origin: String,
    /// Image as written (after kustomize's `images` rewrite).
    pub image: String,
    /// `command` then `args` (compose: `entrypoint` then `command`).
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Files mounted into the container, by absolute path, with their contents.
    pub files: BTreeMap<PathBuf, String>,
    /// Ports the container declares (`containerPort`; compose: none declared).
    pub ports: BTreeMap<String, u16>,
    /// Raw spec (compose service / Kubernetes container), for checks of other fields.
    pub spec: Value,
    /// Kubernetes only: the workload's replicas, when set.
    pub replicas: Option<u64>,
}

impl Container {
    /// The program it runs: the first word of its command.
    pub fn program(&self) -> Option<&str> {
        self.argv.first().map(String::as_str)
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// Containers of a resolved compose model (`docker compose config --format json`).
pub fn from_compose(model: &Value) -> anyhow::Result<Vec<Container>> {
    let services = model["services"].as_object().context("compose model without services")?;
    let secrets = model["secrets"].as_object().cloned().unwrap_or_default();
    let mut out = Vec::new();
    for (name, service) in services {
        let mut argv = strings(service.get("entrypoint"));
        argv.extend(strings(service.get("command")));
        let env = service["environment"]
            .as_object()
            .map(|vars| vars.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
            .unwrap_or_default();
        let mut files = BTreeMap::new();
        for secret in service["secrets"].as_array().into_iter().flatten() {
            let source = secret["source"].as_str().context("secret without source")?;
            let target =
                secret["target"].as_str().map(str::to_owned).unwrap_or_else(|| format!("/run/secrets/{source}"));
            let file = secrets.get(source).and_then(|s| s["file"].as_str()).with_context(|| {
                format!("compose service {name}: secret {source} is not a file secret defined at the top level")
            })?;
            let text = std::fs::read_to_string(file).with_context(|| format!("reading secret file {file}"))?;
            files.insert(PathBuf::from(target), text);
        }
        for volume in service["volumes"].as_array().into_iter().flatten() {
            if volume["type"] == "bind" {
                let (source, target) = (volume["source"].as_str().unwrap_or_default(), volume["target"].as_str());
                if let (Ok(text), Some(target)) = (std::fs::read_to_string(source), target) {
                    files.insert(PathBuf::from(target), text);
                }
            }
        }
        out.push(Container {
            origin: format!("compose service {name}"),
            image: service["image"].as_str().unwrap_or_default().to_owned(),
            argv,
            env,
            files,
            ports: BTreeMap::new(),
            spec: service.clone(),
            replicas: None,
        });
    }
    Ok(out)
}

/// Parse a multi-document YAML stream into JSON values (empty documents skipped).
pub fn parse_yaml_stream(text: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for document in serde_norway::Deserializer::from_str(text) {
        let value: Value = serde::Deserialize::deserialize(document).context("parsing YAML")?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

/// The `data` of a ConfigMap or Secret (Secret values base64-decoded, `stringData`
/// included), keyed by `(kind, name)`.
fn key_values(objects: &[Value]) -> anyhow::Result<BTreeMap<(String, String), BTreeMap<String, String>>> {
    let mut out = BTreeMap::new();
    for object in objects {
        let kind = object["kind"].as_str().unwrap_or_default();
        if kind != "ConfigMap" && kind != "Secret" {
            continue;
        }
        let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        let mut data = BTreeMap::new();
        for (key, value) in object["data"].as_object().into_iter().flatten() {
            let text = value.as_str().unwrap_or_default();
            let text = if kind == "Secret" {
                // kustomize wraps long values over several lines.
                let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .with_context(|| format!("Secret/{name} key {key} is not base64"))?;
                String::from_utf8(bytes).with_context(|| format!("Secret/{name} key {key} is not UTF-8"))?
            } else {
                text.to_owned()
            };
            data.insert(key.clone(), text);
        }
        for (key, value) in object["stringData"].as_object().into_iter().flatten() {
            data.insert(key.clone(), value.as_str().unwrap_or_default().to_owned());
        }
        out.insert((kind.to_owned(), name), data);
    }
    Ok(out)
}

/// Containers of assembled Kubernetes manifests (every workload kind with a pod
/// template), with `envFrom`, `valueFrom` and ConfigMap/Secret volume mounts resolved.
pub fn from_kubernetes(objects: &[Value]) -> anyhow::Result<Vec<Container>> {
    let sources = key_values(objects)?;
    let lookup = |kind: &str, name: &str, origin: &str| {
        sources
            .get(&(kind.to_owned(), name.to_owned()))
            .with_context(|| format!("{origin}: refers to {kind}/{name}, which the manifests do not define"))
    };
    let mut out = Vec::new();
    for object in objects {
        let kind = object["kind"].as_str().unwrap_or_default();
        let pod = match kind {
            "Deployment" | "StatefulSet" | "DaemonSet" | "Job" => &object["spec"]["template"]["spec"],
            _ => continue,
        };
        let workload = format!("{kind}/{}", object["metadata"]["name"].as_str().unwrap_or_default());
        let volumes: BTreeMap<&str, &Value> =
            pod["volumes"].as_array().into_iter().flatten().filter_map(|v| Some((v["name"].as_str()?, v))).collect();
        for container in pod["containers"].as_array().into_iter().flatten() {
            let origin = format!("{workload} container {}", container["name"].as_str().unwrap_or_default());
            let mut env = BTreeMap::new();
            for from in container["envFrom"].as_array().into_iter().flatten() {
                let prefix = from["prefix"].as_str().unwrap_or_default();
                let (source_kind, reference) = if from["configMapRef"].is_object() {
                    ("ConfigMap", &from["configMapRef"])
                } else {
                    ("Secret", &from["secretRef"])
                };
                let data = lookup(source_kind, reference["name"].as_str().unwrap_or_default(), &origin)?;
                env.extend(data.iter().map(|(k, v)| (format!("{prefix}{k}"), v.clone())));
            }
            for var in container["env"].as_array().into_iter().flatten() {
                let name = var["name"].as_str().unwrap_or_default().to_owned();
                let value = if let Some(value) = var["value"].as_str() {
                    value.to_owned()
                } else if let Some(reference) = var["valueFrom"]["configMapKeyRef"].as_object() {
                    key_of(lookup("ConfigMap", reference["name"].as_str().unwrap_or_default(), &origin)?, reference)?
                } else if let Some(reference) = var["valueFrom"]["secretKeyRef"].as_object() {
                    key_of(lookup("Secret", reference["name"].as_str().unwrap_or_default(), &origin)?, reference)?
                } else {
                    continue; // fieldRef / resourceFieldRef: known only at run time
                };
                env.insert(name, value);
            }
            let mut files = BTreeMap::new();
            for mount in container["volumeMounts"].as_array().into_iter().flatten() {
                let volume_name = mount["name"].as_str().unwrap_or_default();
                let volume = volumes
                    .get(volume_name)
                    .with_context(|| format!("{origin}: mounts volume {volume_name}, which the pod does not define"))?;
                let data = if let Some(name) = volume["configMap"]["name"].as_str() {
                    lookup("ConfigMap", name, &origin)?
                } else if let Some(name) = volume["secret"]["secretName"].as_str() {
                    lookup("Secret", name, &origin)?
                } else {
                    continue; // emptyDir and friends carry no files we could check
                };
                // `items` remaps keys to paths inside the volume.
                let mut paths: BTreeMap<String, &String> = data.iter().map(|(k, v)| (k.clone(), v)).collect();
                let items = volume["configMap"]["items"].as_array().or(volume["secret"]["items"].as_array());
                if let Some(items) = items {
                    paths = items
                        .iter()
                        .filter_map(|item| Some((item["path"].as_str()?.to_owned(), data.get(item["key"].as_str()?)?)))
                        .collect();
                }
                let mount_path = Path::new(mount["mountPath"].as_str().unwrap_or_default());
                match mount["subPath"].as_str() {
                    Some(sub) => {
                        let text = paths
                            .get(sub)
                            .with_context(|| format!("{origin}: subPath {sub} is not a key of volume {volume_name}"))?;
                        files.insert(mount_path.to_path_buf(), (*text).clone());
                    }
                    None => files.extend(paths.iter().map(|(p, text)| (mount_path.join(p), (*text).clone()))),
                }
            }
            let ports = container["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    Some((p["name"].as_str()?.to_owned(), u16::try_from(p["containerPort"].as_u64()?).ok()?))
                })
                .collect();
            let mut argv = strings(container.get("command"));
            argv.extend(strings(container.get("args")));
            out.push(Container {
                origin,
                image: container["image"].as_str().unwrap_or_default().to_owned(),
                argv,
                env,
                files,
                ports,
                spec: container.clone(),
                replicas: object["spec"]["replicas"].as_u64(),
            });
        }
    }
    Ok(out)
}

fn key_of(data: &BTreeMap<String, String>, reference: &serde_json::Map<String, Value>) -> anyhow::Result<String> {
    let key = reference.get("key").and_then(Value::as_str).unwrap_or_default();
    match data.get(key) {
        Some(value) => Ok(value.clone()),
        None if reference.get("optional") == Some(&Value::Bool(true)) => Ok(String::new()),
        None => bail!("key {key} is missing from the referenced ConfigMap/Secret"),
    }
}

/// The resolved compose model of `file`, through the real Compose loader.
pub fn compose_model(file: &Path) -> anyhow::Result<Value> {
    let json = crate::repo::validate_ok("compose-config", file)?;
    serde_json::from_str(&json).context("parsing `docker compose config --format json`")
}

/// The objects `kubectl kustomize dir` assembles.
pub fn kustomize(dir: &Path) -> anyhow::Result<Vec<Value>> {
    parse_yaml_stream(&crate::repo::validate_ok("kustomize", dir)?)
}

/// Every kustomization directory under `deploy/kubernetes` that can be applied:
/// the base and each overlay.
pub fn kustomizations() -> Vec<PathBuf> {
    let root = crate::repo::root().join("deploy/kubernetes");
    let mut dirs = vec![root.join("base")];
    if let Ok(entries) = std::fs::read_dir(root.join("overlays")) {
        let mut overlays: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        overlays.sort();
        dirs.extend(overlays.into_iter().filter(|d| d.join("kustomization.yaml").is_file()));
    }
    dirs
}
