//! `kafka.properties`: extra librdkafka settings (SASL, TLS, client tuning) that every
//! service passes to every Kafka client it creates, with two protections:
//!
//! * **Secrets stay secret.** `Debug` prints every key but replaces the value of
//!   each secret one ([`is_secret`]: librdkafka's own sensitive properties such as
//!   `sasl.password`, `ssl.key.password`, `ssl.keystore.password`, `ssl.key.pem`,
//!   `sasl.oauthbearer.client.secret`, plus any name containing `password` or
//!   `secret`) with `<redacted>`; error messages name keys, never values.
//! * **Guarantees cannot be switched off.** Each service lists the librdkafka
//!   properties its guarantees or its own settings depend on ([`Reserved`]), and
//!   [`KafkaProperties::refuse`] stops the start with a message naming the property
//!   and why (e.g. `acks`: "200 only after acks=all"). librdkafka's aliases count as
//!   the property they stand for (`request.required.acks` is `acks`,
//!   `metadata.broker.list` is `bootstrap.servers`, `auto.commit.enable` is
//!   `enable.auto.commit`, …).
//!
//! Names: in a TOML file write the property as librdkafka spells it, quoted:
//! `[kafka.properties]` / `"sasl.password" = "…"`. An environment variable cannot
//! portably carry dots, so in a name every `_` stands for a `.`:
//! `VERO__KAFKA__PROPERTIES__SASL_PASSWORD` sets `sasl.password` (librdkafka has no
//! property settable as text whose name has an underscore, except `log_level` and
//! `enabled_events`, which are kept as they are). When a file and a variable set the
//! same property, the variable's (underscore) form wins, as variables win over files
//! everywhere else. Values of `kafka.properties` variables are taken verbatim (never
//! parsed as numbers or booleans, see [`crate::settings`]), so a password `0012` stays
//! `0012`.
//!
//! Order: a service sets its own librdkafka settings first and applies these last, so
//! a property that is not reserved (e.g. `message.timeout.ms` of a DLQ producer,
//! `compression.type`, `client.id`) overrides the built-in default.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// librdkafka property names that contain an underscore and are settable as text:
/// they are not rewritten to dotted names.
const UNDERSCORE_NAMES: &[&str] = &["log_level", "enabled_events"];

/// librdkafka's aliases (`_RK_C_ALIAS` in `rdkafka_conf.c`): alias → the name the
/// services and [`Reserved`] lists use.
const ALIASES: &[(&str, &str)] = &[
    ("metadata.broker.list", "bootstrap.servers"),
    ("request.required.acks", "acks"),
    ("auto.commit.enable", "enable.auto.commit"),
    ("queue.buffering.max.ms", "linger.ms"),
    ("delivery.timeout.ms", "message.timeout.ms"),
    ("compression.codec", "compression.type"),
    ("message.send.max.retries", "retries"),
    ("max.in.flight", "max.in.flight.requests.per.connection"),
    ("sasl.mechanism", "sasl.mechanisms"),
    ("max.partition.fetch.bytes", "fetch.message.max.bytes"),
    ("sasl.oauthbearer.client.credentials.client.id", "sasl.oauthbearer.client.id"),
    ("sasl.oauthbearer.client.credentials.client.secret", "sasl.oauthbearer.client.secret"),
];

/// librdkafka's sensitive properties (`_RK_SENSITIVE`): never printed.
const SENSITIVE: &[&str] = &[
    "sasl.username",
    "sasl.password",
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.assertion.private.key.file",
    "sasl.oauthbearer.assertion.private.key.passphrase",
    "sasl.oauthbearer.assertion.private.key.pem",
    "ssl.key.location",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl.keystore.password",
    "ssl.ca.pem",
    "ssl_key",
];

/// The name librdkafka resolves `name` to (aliases followed).
pub fn canonical(name: &str) -> &str {
    ALIASES.iter().find(|(alias, _)| *alias == name).map_or(name, |(_, target)| target)
}

/// Whether the value of property `name` is a secret that must never be printed.
pub fn is_secret(name: &str) -> bool {
    let name = canonical(name);
    SENSITIVE.contains(&name) || name.contains("password") || name.contains("secret")
}

/// A librdkafka property a service sets itself and refuses in `kafka.properties`.
#[derive(Debug, Clone, Copy)]
pub struct Reserved {
    /// The property (librdkafka's name; aliases of it are refused too).
    pub name: &'static str,
    /// Why, or which setting to use instead, e.g. "use kafka.group_id".
    pub why: &'static str,
}

impl Reserved {
    pub const fn new(name: &'static str, why: &'static str) -> Self {
        Self { name, why }
    }
}

/// `bootstrap.servers` and the properties that decide when a consumer's offsets
/// move: common to every consumer group member of the services (the event sink's
/// consumer, the profile consumer's consumer). Offsets are stored only after a
/// record was written, and only stored offsets are committed.
pub const GROUP_CONSUMER: &[Reserved] = &[
    Reserved::new("bootstrap.servers", "use kafka.brokers"),
    Reserved::new("group.id", "use kafka.group_id"),
    Reserved::new("group.instance.id", "use kafka.group_instance_id"),
    Reserved::new("session.timeout.ms", "use kafka.session_timeout_ms"),
    Reserved::new("max.poll.interval.ms", "use kafka.max_poll_interval_ms"),
    Reserved::new(
        "enable.auto.offset.store",
        "offsets are stored only after a record was written (at-least-once); it is always false",
    ),
    Reserved::new(
        "enable.auto.commit",
        "only offsets stored after a successful write are committed, by the service's own commit policy",
    ),
    Reserved::new("offset.store.method", "offsets are committed to the broker (at-least-once)"),
    Reserved::new("isolation.level", "consumers read committed records only (librdkafka's default read_committed)"),
    Reserved::new(
        "enable.partition.eof",
        "the service's read loop depends on whether end-of-partition events are reported",
    ),
    Reserved::new("statistics.interval.ms", "the consumer-lag metrics are computed from librdkafka's statistics"),
];

/// The delivery guarantees of every producer of the services: a record counts as
/// written only once every in-sync replica has it, retries never duplicate or
/// reorder it, and a keyed record lands on the partition a Java client (and the
/// consumers' co-partitioning) expects.
pub const PRODUCER: &[Reserved] = &[
    Reserved::new("bootstrap.servers", "use kafka.brokers"),
    Reserved::new("acks", "a record counts as written only after acks=all (the gateway's 200 waits for it)"),
    Reserved::new(
        "enable.idempotence",
        "retries must never duplicate or reorder a record; use kafka.idempotent_producer",
    ),
    Reserved::new(
        "partitioner",
        "keyed records must land where a Java client puts them (murmur2_random), which co-partitioning \
         of vero.events, vero.profiles and vero.profiles.handoff depends on",
    ),
    Reserved::new("transactional.id", "the producers are not transactional"),
];

/// Extra librdkafka properties from `[kafka.properties]`, keyed by the name
/// librdkafka receives (underscore forms of environment variables already turned
/// into dotted names). `Debug` redacts secret values.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaProperties(BTreeMap<String, String>);

impl KafkaProperties {
    /// Build from `(name, value)` pairs as a file would give them (tests, tools).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, String> {
        let mut forms = Forms::default();
        for (name, value) in pairs {
            forms.insert(name, value.to_owned())?;
        }
        forms.finish()
    }

    /// The properties, as librdkafka receives them, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(name, value)| (name.as_str(), value.as_str()))
    }

    /// The value of property `name` (or of one of its aliases).
    pub fn get(&self, name: &str) -> Option<&str> {
        let wanted = canonical(name);
        self.iter().find(|(n, _)| canonical(n) == wanted).map(|(_, v)| v)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Fail when any property is in one of the `reserved` lists, naming the first
    /// such property, the alias it was written as, and why. `section` is the key the
    /// operator writes (`kafka.properties`).
    pub fn refuse(&self, section: &str, reserved: &[&[Reserved]]) -> anyhow::Result<()> {
        for name in self.0.keys() {
            let resolved = canonical(name);
            if let Some(found) = reserved.iter().flat_map(|list| list.iter()).find(|r| canonical(r.name) == resolved) {
                let written = if resolved == name.as_str() {
                    format!("`{name}`")
                } else {
                    format!("`{name}` (librdkafka's alias of `{resolved}`)")
                };
                anyhow::bail!("{section}: {written} cannot be set here: {}", found.why);
            }
        }
        Ok(())
    }
}

impl fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (name, value) in &self.0 {
            if is_secret(name) {
                map.entry(name, &format_args!("<redacted>"));
            } else {
                map.entry(name, value);
            }
        }
        map.finish()
    }
}

/// The names seen while reading, to let the environment's form win over a file's
/// and to refuse the same property given twice in one form.
#[derive(Default)]
struct Forms {
    /// name librdkafka receives → (value, came in the environment's underscore form)
    values: BTreeMap<String, (String, bool)>,
    /// canonical name → the name first seen for it (alias clashes)
    canonical: BTreeMap<String, String>,
}

impl Forms {
    fn insert(&mut self, written: &str, value: String) -> Result<(), String> {
        let written = written.trim();
        if written.is_empty() {
            return Err("kafka.properties: a property name is empty".into());
        }
        let underscored = written.contains('_') && !UNDERSCORE_NAMES.contains(&written);
        let name = if underscored { written.replace('_', ".") } else { written.to_owned() };
        match self.values.get(&name) {
            Some((_, true)) if underscored => {
                return Err(format!("kafka.properties: `{name}` is set twice (as `{written}` and another spelling)"))
            }
            // A dotted name (a file's) never replaces an underscore one (a variable's).
            Some((_, true)) => return Ok(()),
            Some((_, false)) if !underscored => {
                return Err(format!("kafka.properties: `{name}` is set twice"));
            }
            _ => {}
        }
        let resolved = canonical(&name).to_owned();
        match self.canonical.get(&resolved) {
            Some(other) if *other != name => {
                return Err(format!(
                    "kafka.properties: `{other}` and `{name}` are the same librdkafka property (`{resolved}`); set one"
                ))
            }
            _ => {}
        }
        self.canonical.insert(resolved, name.clone());
        self.values.insert(name, (value, underscored));
        Ok(())
    }

    fn finish(self) -> Result<KafkaProperties, String> {
        Ok(KafkaProperties(self.values.into_iter().map(|(name, (value, _))| (name, value)).collect()))
    }
}

/// A property value as TOML or an environment variable may type it.
#[derive(Deserialize)]
#[serde(untagged)]
enum Value {
    Text(String),
    Integer(i64),
    Float(f64),
    Flag(bool),
    List(Vec<String>),
}

impl Value {
    fn into_librdkafka(self) -> String {
        match self {
            Self::Text(s) => s,
            Self::Integer(i) => i.to_string(),
            Self::Float(x) => x.to_string(),
            Self::Flag(b) => b.to_string(),
            Self::List(items) => items.join(","),
        }
    }
}

impl<'de> Deserialize<'de> for KafkaProperties {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Properties;

        impl<'de> Visitor<'de> for Properties {
            type Value = KafkaProperties;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of librdkafka properties")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KafkaProperties, A::Error> {
                let mut forms = Forms::default();
                while let Some(name) = map.next_key::<String>()? {
                    // Never echo the value: it may be a secret.
                    let value = map.next_value::<Value>().map_err(|_| {
                        de::Error::custom(format!(
                            "kafka.properties.{name}: expected a string, number, boolean or list of strings \
                             (a dotted name must be quoted in TOML, \"{name}.…\" = …; in an environment \
                             variable write its dots as underscores, e.g. VERO__KAFKA__PROPERTIES__SASL_PASSWORD)"
                        ))
                    })?;
                    forms.insert(&name, value.into_librdkafka()).map_err(de::Error::custom)?;
                }
                forms.finish().map_err(de::Error::custom)
            }
        }

        deserializer.deserialize_map(Properties)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Settings {
        kafka: Kafka,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Kafka {
        #[allow(dead_code)]
        brokers: String,
        #[serde(default)]
        properties: KafkaProperties,
    }

    fn load(files: &[(&str, &str)], env: Option<&str>, vars: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        crate::settings::load_with_env(dir.path(), env, vars)
    }

    const DEFAULTS: &str = "[kafka]\nbrokers = \"a:9092\"\n\n[kafka.properties]\n";

    #[test]
    fn dotted_names_from_files_and_underscore_names_from_variables() {
        let prod = "[kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanism\" = \"PLAIN\"\n\
                    \"batch.num.messages\" = 5000\n\"enable.ssl.certificate.verification\" = true\n";
        let s = load(
            &[("default.toml", DEFAULTS), ("prod.toml", prod)],
            Some("prod"),
            &[
                ("VERO__KAFKA__PROPERTIES__SASL_PASSWORD", "0012"),
                ("VERO__KAFKA__PROPERTIES__SECURITY_PROTOCOL", "SSL"),
                ("VERO__KAFKA__PROPERTIES__LOG_LEVEL", "7"),
            ],
        )
        .unwrap();
        let p = &s.kafka.properties;
        assert_eq!(p.get("sasl.password"), Some("0012"), "variables are taken verbatim, never parsed as numbers");
        assert_eq!(p.get("security.protocol"), Some("SSL"), "the variable wins over the file");
        assert_eq!(p.get("sasl.mechanisms"), Some("PLAIN"), "aliases resolve");
        assert_eq!(p.get("batch.num.messages"), Some("5000"));
        assert_eq!(p.get("enable.ssl.certificate.verification"), Some("true"));
        assert_eq!(p.get("log_level"), Some("7"), "librdkafka's underscore names stay as they are");
        let names: Vec<&str> = p.iter().map(|(n, _)| n).collect();
        assert!(names.contains(&"sasl.password") && names.contains(&"log_level"), "{names:?}");
    }

    #[test]
    fn debug_and_errors_never_show_secret_values() {
        let p = KafkaProperties::from_pairs([
            ("sasl.username", "svc-user"),
            ("sasl.password", "hunter2"),
            ("ssl.key.password", "keypass"),
            ("ssl.keystore.password", "storepass"),
            ("sasl.oauthbearer.client.secret", "oauth-secret"),
            ("ssl.key.pem", "-----BEGIN PRIVATE KEY-----"),
            ("my.custom.secret.thing", "c0ffee"),
            ("security.protocol", "SASL_SSL"),
        ]);
        let p = p.unwrap();
        let shown = format!("{p:?}");
        for secret in ["svc-user", "hunter2", "keypass", "storepass", "oauth-secret", "BEGIN PRIVATE", "c0ffee"] {
            assert!(!shown.contains(secret), "{secret} printed: {shown}");
        }
        assert!(shown.contains("\"sasl.password\": <redacted>"), "{shown}");
        assert!(shown.contains("\"security.protocol\": \"SASL_SSL\""), "non-secret values are shown: {shown}");
        assert!(is_secret("sasl.oauthbearer.client.credentials.client.secret"));

        // A value of a type librdkafka cannot take: the error names the key only.
        let err = load(
            &[(
                "default.toml",
                "[kafka]\nbrokers = \"a\"\n[kafka.properties.sasl]\npassword = { nested = \"hunter2\" }\n",
            )],
            None,
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("kafka.properties.sasl") && !err.contains("hunter2"), "{err}");
    }

    #[test]
    fn reserved_properties_are_refused_naming_them_and_their_aliases() {
        let ok = KafkaProperties::from_pairs([("security.protocol", "SSL"), ("client.id", "me")]).unwrap();
        ok.refuse("kafka.properties", &[GROUP_CONSUMER, PRODUCER]).unwrap();
        for (name, value, expected) in [
            ("acks", "1", "`acks` cannot be set here: a record counts as written only after acks=all"),
            ("request.required.acks", "1", "`request.required.acks` (librdkafka's alias of `acks`)"),
            ("enable.idempotence", "false", "`enable.idempotence`"),
            ("partitioner", "random", "`partitioner`"),
            ("enable.auto.offset.store", "true", "`enable.auto.offset.store`"),
            ("auto.commit.enable", "false", "alias of `enable.auto.commit`"),
            ("isolation.level", "read_uncommitted", "`isolation.level`"),
            ("group.id", "other", "use kafka.group_id"),
            ("metadata.broker.list", "x:1", "alias of `bootstrap.servers`) cannot be set here: use kafka.brokers"),
        ] {
            let p = KafkaProperties::from_pairs([("security.protocol", "SSL"), (name, value)]).unwrap();
            let err = p.refuse("kafka.properties", &[GROUP_CONSUMER, PRODUCER]).unwrap_err().to_string();
            assert!(err.starts_with("kafka.properties: ") && err.contains(expected), "{name}: {err}");
        }
        // Only the lists a service passes apply: a producer-only list allows group settings.
        let p = KafkaProperties::from_pairs([("isolation.level", "read_committed")]).unwrap();
        p.refuse("kafka.properties", &[PRODUCER]).unwrap();
    }

    #[test]
    fn the_same_property_twice_is_refused() {
        let err = KafkaProperties::from_pairs([("linger.ms", "5"), ("queue.buffering.max.ms", "6")]).unwrap_err();
        assert!(err.contains("`linger.ms` and `queue.buffering.max.ms` are the same"), "{err}");
        let err = load(
            &[("default.toml", DEFAULTS)],
            None,
            &[("VERO__KAFKA__PROPERTIES__SASL_MECHANISM", "PLAIN"), ("VERO__KAFKA__PROPERTIES__SASL_MECHANISMS", "X")],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("same librdkafka property (`sasl.mechanisms`)"), "{err}");
    }
}
