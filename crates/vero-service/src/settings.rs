//! Layered configuration with the `config` crate.
//!
//! Layers, later wins:
//! 1. `<dir>/default.toml`: every key with its default, committed in the repo.
//! 2. `<dir>/<VERO_ENV>.toml` when `VERO_ENV` is set (e.g. `local`, `production`).
//! 3. Environment variables `VERO__SECTION__KEY` (double underscore separates levels,
//!    e.g. `VERO__KAFKA__BROKERS=kafka:9092`). Values are parsed as numbers or
//!    booleans where they look like one, except passwords (`…__PASSWORD`) and
//!    librdkafka properties (`VERO__KAFKA__PROPERTIES__…`, see
//!    [`crate::kafka_properties`]), which are taken verbatim.
//!
//! `dir` is the service's folder under `config/`, overridable with `VERO_CONFIG_DIR`.
//! Unknown keys are rejected (settings structs use `deny_unknown_fields`) so a typo in
//! an operator's override fails the start instead of being ignored.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::de::DeserializeOwned;

/// Where a service's config files live: `$VERO_CONFIG_DIR`, else `config/<service>`
/// relative to the working directory.
pub fn config_dir(service: &str) -> PathBuf {
    std::env::var_os("VERO_CONFIG_DIR").map(PathBuf::from).unwrap_or_else(|| Path::new("config").join(service))
}

/// Load `T` from the layers described in the module docs.
pub fn load<T: DeserializeOwned>(dir: &Path) -> anyhow::Result<T> {
    load_with_env(dir, std::env::var("VERO_ENV").ok().as_deref(), std::env::vars())
}

/// [`load`] with the environment passed in, for tests.
pub fn load_with_env<T: DeserializeOwned>(
    dir: &Path,
    vero_env: Option<&str>,
    vars: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<T> {
    let defaults = dir.join("default.toml");
    anyhow::ensure!(
        defaults.is_file(),
        "config defaults file {} does not exist (set VERO_CONFIG_DIR?)",
        defaults.display()
    );
    let mut builder = config::Config::builder().add_source(config::File::from(defaults));
    if let Some(env) = vero_env.filter(|e| !e.is_empty()) {
        let overlay = dir.join(format!("{env}.toml"));
        anyhow::ensure!(overlay.is_file(), "VERO_ENV={env} but {} does not exist", overlay.display());
        builder = builder.add_source(config::File::from(overlay));
    }
    let (verbatim, parsed): (config::Map<String, String>, config::Map<String, String>) =
        vars.into_iter().filter(|(k, _)| k.starts_with("VERO__")).partition(|(k, _)| is_verbatim(k));
    builder = builder.add_source(
        config::Environment::with_prefix("VERO")
            .prefix_separator("__")
            .separator("__")
            // No list_separator: with one, the config crate turns *every* variable into
            // a list and string keys such as `kafka.brokers` ("a:9092,b:9092") fail.
            // List-valued keys accept a comma-separated string via [`comma_list`].
            .try_parsing(true)
            .source(Some(parsed)),
    );
    builder = builder.add_source(
        config::Environment::with_prefix("VERO")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(false)
            .source(Some(verbatim)),
    );
    let merged = builder.build().context("reading configuration")?;
    refuse_renamed(&merged)?;
    merged.try_deserialize::<T>().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
}

/// Keys renamed in a release: `(old, new, release)`. The old name is refused with a
/// message naming the new one (in files and as a variable), never silently ignored
/// or half-applied; docs/operations.md, "Upgrading", lists them.
pub const RENAMED: &[(&str, &str, &str)] = &[("kafka.topic", "kafka.events_topic", "0.2.0")];

fn refuse_renamed(merged: &config::Config) -> anyhow::Result<()> {
    let variable = |key: &str| format!("VERO__{}", key.to_ascii_uppercase().replace('.', "__"));
    for (old, new, release) in RENAMED {
        if merged.get::<config::Value>(old).is_ok() {
            anyhow::bail!(
                "{old} was renamed {new} in {release}: rename it in your config file, or the variable {} to {}",
                variable(old),
                variable(new)
            );
        }
    }
    Ok(())
}

/// Variables whose value is taken as text, never parsed into a number or boolean:
/// secrets and librdkafka properties (`VERO__KAFKA__PROPERTIES__…`,
/// `…__PASSWORD`), where parsing would turn a password `0012` into `12` or `TRUE`
/// into `true`.
fn is_verbatim(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    upper.contains("__PROPERTIES__") || upper.ends_with("__PASSWORD")
}

/// Deserialize a list from either a TOML array or a comma-separated string (the form
/// an environment variable gives), trimming items and dropping empty ones. Use with
/// `#[serde(deserialize_with = "vero_service::settings::comma_list")]`.
pub fn comma_list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<String>),
        Text(String),
    }
    Ok(match <Form as serde::Deserialize>::deserialize(deserializer)? {
        Form::List(items) => items,
        Form::Text(text) => text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Settings {
        kafka: Kafka,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Kafka {
        brokers: String,
        partitions: u32,
        #[serde(default, deserialize_with = "comma_list")]
        topics: Vec<String>,
    }

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = dir_with(&[
            ("default.toml", "[kafka]\nbrokers = \"a:9092\"\npartitions = 3\n"),
            ("prod.toml", "[kafka]\nbrokers = \"b:9092\"\n"),
        ]);
        let s: Settings = load_with_env(dir.path(), None, []).unwrap();
        assert_eq!((s.kafka.brokers.as_str(), s.kafka.partitions), ("a:9092", 3));
        let s: Settings = load_with_env(dir.path(), Some("prod"), []).unwrap();
        assert_eq!(s.kafka.brokers, "b:9092");
        let vars = [("VERO__KAFKA__PARTITIONS".to_string(), "12".to_string())];
        let s: Settings = load_with_env(dir.path(), Some("prod"), vars).unwrap();
        assert_eq!((s.kafka.brokers.as_str(), s.kafka.partitions), ("b:9092", 12));
    }

    #[test]
    fn comma_separated_values_stay_strings_unless_the_key_is_a_list() {
        let dir = dir_with(&[("default.toml", "[kafka]\nbrokers = \"a\"\npartitions = 3\ntopics = [\"x\"]\n")]);
        let s: Settings = load_with_env(dir.path(), None, []).unwrap();
        assert_eq!(s.kafka.topics, ["x"]);
        let vars = [
            ("VERO__KAFKA__BROKERS".to_string(), "a:9092,b:9092".to_string()),
            ("VERO__KAFKA__TOPICS".to_string(), "one, two,".to_string()),
        ];
        let s: Settings = load_with_env(dir.path(), None, vars).unwrap();
        assert_eq!(s.kafka.brokers, "a:9092,b:9092");
        assert_eq!(s.kafka.topics, ["one", "two"]);
    }

    #[test]
    fn secrets_and_kafka_properties_from_variables_are_taken_verbatim() {
        #[derive(Debug, Deserialize)]
        struct Secret {
            db: Db,
        }
        #[derive(Debug, Deserialize)]
        struct Db {
            password: String,
            port: u16,
        }
        let dir = dir_with(&[("default.toml", "[db]\npassword = \"\"\nport = 1\n")]);
        let vars = [
            ("VERO__DB__PASSWORD".to_string(), "0012".to_string()),
            ("VERO__DB__PORT".to_string(), "8123".to_string()),
        ];
        let s: Secret = load_with_env(dir.path(), None, vars).unwrap();
        assert_eq!((s.db.password.as_str(), s.db.port), ("0012", 8123));
        let vars = [("VERO__DB__PASSWORD".to_string(), "TRUE".to_string())];
        let s: Secret = load_with_env(dir.path(), None, vars).unwrap();
        assert_eq!(s.db.password, "TRUE");
    }

    #[test]
    fn a_renamed_key_is_refused_naming_its_new_name() {
        let dir = dir_with(&[
            ("default.toml", "[kafka]\nbrokers = \"a\"\npartitions = 3\n"),
            ("old.toml", "[kafka]\ntopic = \"vero.events\"\n"),
        ]);
        let vars = [("VERO__KAFKA__TOPIC".to_string(), "x".to_string())];
        let err = load_with_env::<Settings>(dir.path(), None, vars).unwrap_err().to_string();
        assert!(
            err.contains("kafka.topic was renamed kafka.events_topic")
                && err.contains("VERO__KAFKA__TOPIC to VERO__KAFKA__EVENTS_TOPIC"),
            "{err}"
        );
        let err = load_with_env::<Settings>(dir.path(), Some("old"), []).unwrap_err().to_string();
        assert!(err.contains("kafka.topic was renamed kafka.events_topic"), "{err}");
    }

    #[test]
    fn errors_name_the_wrong_key() {
        let dir = dir_with(&[("default.toml", "[kafka]\nbrokers = \"a\"\npartitions = 3\n")]);
        let vars = [("VERO__KAFKA__PARTITIONS".to_string(), "many".to_string())];
        let err = load_with_env::<Settings>(dir.path(), None, vars).unwrap_err().to_string();
        assert!(err.contains("partitions"), "{err}");
        let vars = [("VERO__KAFKA__BROKRES".to_string(), "x".to_string())];
        let err = load_with_env::<Settings>(dir.path(), None, vars).unwrap_err().to_string();
        assert!(err.contains("brokres"), "{err}");
        let err = load_with_env::<Settings>(dir.path(), Some("nope"), []).unwrap_err().to_string();
        assert!(err.contains("nope.toml"), "{err}");
    }
}
