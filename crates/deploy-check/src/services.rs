//! The three services as deployments see them: binary name, config folder, and each
//! service's own settings loader and validation, run on exactly what a deployment
//! hands the container (its `VERO__*` variables, `VERO_ENV` and the config files
//! mounted next to the image's `config/<service>/default.toml`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::deployment::Container;

/// Where the image keeps the services' config folders (the Dockerfile's `WORKDIR`
/// plus `config/`, see `deploy/Dockerfile`).
pub const IMAGE_CONFIG_ROOT: &str = "/app/config";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Service {
    Gateway,
    EventSink,
    ProfileConsumer,
}

/// What the deployment-level checks need to know of a service's effective settings.
#[derive(Debug, Clone)]
pub struct Effective {
    /// The port its `/metrics`, `/healthz` and `/readyz` listen on.
    pub ops_port: u16,
    /// Gateway: the public (API) port, `http.listen`.
    pub public_port: Option<u16>,
    /// Gateway: whether `ops.listen` is set (else the ops endpoints share the public port).
    pub own_ops_listener: bool,
    /// Profile consumer: `kafka.create_topics` (it would create its topics at start).
    pub creates_topics: bool,
    /// Consumers: their consumer group and the topic they consume.
    pub group_and_topic: Option<(String, String)>,
}

impl Service {
    pub const ALL: [Service; 3] = [Service::Gateway, Service::EventSink, Service::ProfileConsumer];

    /// The binary (and compose/Kubernetes command) name.
    pub fn binary(self) -> &'static str {
        match self {
            Service::Gateway => "ingest-gateway",
            Service::EventSink => "event-sink",
            Service::ProfileConsumer => "profile-consumer",
        }
    }

    /// The folder under `config/`.
    pub fn config_folder(self) -> &'static str {
        match self {
            Service::Gateway => ingest_gateway::config::SERVICE,
            Service::EventSink => "event-sink",
            Service::ProfileConsumer => "profile-consumer",
        }
    }

    pub fn from_binary(binary: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|s| s.binary() == binary)
    }

    /// Load and validate the settings with the service's own types and loader.
    pub fn load(self, dir: &Path, vero_env: Option<&str>, vars: Vec<(String, String)>) -> anyhow::Result<Effective> {
        use vero_service::settings::load_with_env;
        Ok(match self {
            Service::Gateway => {
                let s = ingest_gateway::config::Settings::load_with_env(dir, vero_env, vars)?;
                // /metrics and the probes are on ops.listen when set, else next to the API.
                let public_port = port_of("http.listen", &s.http.listen)?;
                let ops_port = match s.ops.own_listener() {
                    Some(ops) => port_of("ops.listen", ops)?,
                    None => public_port,
                };
                Effective {
                    ops_port,
                    public_port: Some(public_port),
                    own_ops_listener: s.ops.own_listener().is_some(),
                    creates_topics: false,
                    group_and_topic: None,
                }
            }
            Service::EventSink => {
                let s = event_sink::Settings::load_with_env(dir, vero_env, vars)?;
                Effective {
                    ops_port: port_of("ops.listen", &s.ops.listen)?,
                    public_port: None,
                    own_ops_listener: true,
                    creates_topics: false,
                    group_and_topic: Some((s.kafka.group_id, s.kafka.events_topic)),
                }
            }
            Service::ProfileConsumer => {
                let s: profile_consumer::config::Settings = load_with_env(dir, vero_env, vars)?;
                s.validate()?;
                Effective {
                    ops_port: port_of("ops.listen", &s.ops.listen)?,
                    public_port: None,
                    own_ops_listener: true,
                    creates_topics: s.kafka.create_topics,
                    group_and_topic: Some((s.kafka.group_id, s.kafka.events_topic)),
                }
            }
        })
    }

    /// The repository's config folder of this service (what the image carries).
    pub fn repo_config_dir(self) -> PathBuf {
        crate::repo::root().join("config").join(self.config_folder())
    }

    /// Load the settings exactly as `container` would at start: the image's config
    /// folder plus the files the deployment mounts into it, `VERO_ENV`, and every
    /// `VERO__*` variable. Fails on unknown keys, bad values, and on files mounted
    /// into the config folder that the loader would never read.
    pub fn load_for(self, container: &Container) -> anyhow::Result<Effective> {
        let folder = Path::new(IMAGE_CONFIG_ROOT).join(self.config_folder());
        if let Some(dir) = container.env.get("VERO_CONFIG_DIR") {
            if Path::new(dir) != folder {
                bail!("{}: VERO_CONFIG_DIR={dir} is not the image's {}", container.origin, folder.display());
            }
        }
        let dir = tempfile::tempdir()?;
        crate::repo::copy_tree(&self.repo_config_dir(), dir.path())?;
        let mut mounted = BTreeMap::new();
        for (path, text) in &container.files {
            if let Ok(relative) = path.strip_prefix(&folder) {
                let target = dir.path().join(relative);
                std::fs::write(&target, text).with_context(|| format!("writing {}", target.display()))?;
                mounted.insert(relative.to_path_buf(), ());
            }
        }
        let vero_env = container.env.get("VERO_ENV").map(String::as_str).filter(|e| !e.is_empty());
        for relative in mounted.keys() {
            let used = relative == Path::new("default.toml")
                || vero_env.is_some_and(|env| relative == Path::new(&format!("{env}.toml")));
            if !used {
                bail!(
                    "{}: mounts {} into {}, but with VERO_ENV={vero_env:?} the service never reads it",
                    container.origin,
                    relative.display(),
                    folder.display()
                );
            }
        }
        let vars: Vec<(String, String)> = container
            .env
            .iter()
            .filter(|(k, _)| k.starts_with("VERO__"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.load(dir.path(), vero_env, vars).with_context(|| format!("{}: settings rejected", container.origin))
    }
}

fn port_of(key: &str, listen: &str) -> anyhow::Result<u16> {
    listen
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .with_context(|| format!("{key} = {listen:?} has no port"))
}
