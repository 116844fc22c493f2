//! Our messages decode with Avro implementations that share no code with ours, by
//! fingerprint lookup among the `.avsc` files of `schemas/avro/`, as a consumer in
//! another language would: Java's `BinaryMessageDecoder` (Debian's `libavro-java`)
//! and fastavro (PyPI). The records are encoded by the producers' own path
//! (`vero_model::encode_event` for the gateway's track events, `vero_model::encode`
//! for commands and profiles).
//!
//! Guarantees, for each tool:
//! * its own fingerprint of every schema equals the one our writers put in the header;
//! * every record decodes, resolved to the newest version, to exactly our fields;
//! * a record with the legacy (apache-avro 0.21) fingerprint is rejected, so the check
//!   has teeth: a wrong fingerprint fails the test.
//!
//! A missing tool fails the test with the install command (`scripts/install-deps.sh`
//! installs both); it is never skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use apache_avro::types::Value as Avro;
use serde_json::{json, Value};
use uuid::Uuid;
use vero_model::codec::{encode_event_with, AvroRecord};
use vero_model::profile::{Profile, RecentRequest};
use vero_model::schemas::{profile_versions, track_event_versions, user_command_versions, SchemaVersion};
use vero_model::{encode, encode_event, TrackEvent, UserAction, UserCommand};

const JAVA_JARS: &[&str] =
    &["avro.jar", "jackson-core-asl.jar", "jackson-mapper-asl.jar", "slf4j-api.jar", "slf4j-nop.jar"];
const JAVA_LIB: &str = "/usr/share/java";

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn schemas_dir() -> PathBuf {
    crate_dir().join("../../schemas/avro")
}

fn event(i: u32) -> TrackEvent {
    TrackEvent {
        event_id: Uuid::now_v7(),
        received_at: 1_764_000_000_123 + i64::from(i),
        project: "shop".into(),
        event_name: if i == 2 { "ünïcode \"quoted\" \\ ✓".into() } else { format!("user_signed_up_{i}") },
        user_id: i.to_string(),
        email: (i != 1).then(|| "janedoe@getvero.com".into()),
        identity_attributes: r#"{"plan":"pro","age":31}"#.into(),
        data: r#"{"item":"Blue shoes","price":40.0}"#.into(),
        development_mode: i == 1,
        created_at: (i != 1).then_some(1_763_999_999_000),
        source: (i == 0).then(|| "ios".into()),
        extras: "{}".into(),
        user_agent: (i != 1).then(|| "vero-ruby/1.0".into()),
    }
}

fn command(action: UserAction) -> UserCommand {
    UserCommand {
        command_id: Uuid::now_v7(),
        received_at: 1_764_000_000_000,
        project: "shop".into(),
        action,
        user_id: "42".into(),
        email: Some("jane@example.com".into()),
        attributes: r#"{"plan":"pro"}"#.into(),
        tags_add: vec!["vip".into(), "beta".into()],
        tags_remove: vec![],
        new_id: (action == UserAction::Reidentify).then(|| "43".into()),
        user_agent: None,
    }
}

fn profile() -> Profile {
    Profile {
        project: "shop".into(),
        user_id: "42".into(),
        email: Some("jane@example.com".into()),
        attributes: r#"{"email":"jane@example.com"}"#.into(),
        attribute_versions: r#"{"email":[1,2,3]}"#.into(),
        tags: vec!["beta".into(), "vip".into()],
        subscribed: false,
        subscription_changed_at: Some(1_764_000_000_000),
        first_seen: Some(1_763_000_000_000),
        last_seen: None,
        event_count: 7,
        last_event_name: Some("purchased".into()),
        last_event_version: "[1,2,3]".into(),
        previous_ids: vec!["anon-1".into()],
        merged_from: "{}".into(),
        events_partition: 2,
        events_offset: 3,
        handoff_offset: -1,
        version: 1_764_000_000_000_000,
        recent_requests: vec![
            RecentRequest { request_key: Uuid::from_u128(0x0123_4567_89ab_8def_8123_4567_89ab_cdef), received_at: 1 },
            RecentRequest { request_key: Uuid::now_v7(), received_at: 1_764_000_000_000 },
        ],
    }
}

/// What a decoder resolved to the newest schema must print for a record: its fields
/// as plain JSON (unions unwrapped, logical types as their underlying wire values).
fn expected<R: AvroRecord>(record: &R) -> Value {
    fn plain(value: Avro) -> Value {
        match value {
            Avro::Null => Value::Null,
            Avro::Boolean(b) => json!(b),
            Avro::Long(n) | Avro::TimestampMillis(n) => json!(n),
            Avro::String(s) | Avro::Enum(_, s) => json!(s),
            Avro::Uuid(u) => json!(u.to_string()),
            Avro::Union(_, inner) => plain(*inner),
            Avro::Array(items) => Value::Array(items.into_iter().map(plain).collect()),
            Avro::Record(fields) => {
                Value::Object(fields.into_iter().map(|(name, value)| (name, plain(value))).collect())
            }
            other => panic!("no plain JSON for {other:?} in our schemas"),
        }
    }
    Value::Object(record.to_fields().into_iter().map(|(name, value)| (name, plain(value))).collect())
}

/// One message to decode: its file name (`<type>.<name>.bin`, the type picking Java's
/// decoder), its bytes, and the record the tool must print (`None`: must be rejected).
struct Message {
    file: String,
    bytes: Vec<u8>,
    expect: Option<Value>,
}

fn messages() -> Vec<Message> {
    let mut out = Vec::new();
    let mut add = |file: &str, bytes: Vec<u8>, expect: Option<Value>| {
        out.push(Message { file: file.into(), bytes, expect });
    };
    for i in 0..3 {
        let e = event(i);
        add(&format!("track_event.gateway-{i}.bin"), encode_event(&e), Some(expected(&e)));
    }
    // A record written with the older version resolves to the newest: user_agent null.
    let e = event(0);
    let v1 = encode_event_with(&e, &track_event_versions()[0]);
    add("track_event.written-v1.bin", v1, Some(expected(&TrackEvent { user_agent: None, ..e })));
    for action in [UserAction::Track, UserAction::Tags, UserAction::Reidentify, UserAction::Delete] {
        let c = command(action);
        add(&format!("user_command.{action:?}.bin"), encode(&c), Some(expected(&c)));
    }
    let p = profile();
    add("profile.merged.bin", encode(&p), Some(expected(&p)));
    // A profile written before version 2 resolves to it with no recent requests.
    let v1 = vero_model::codec::encode_with(&p, &profile_versions()[0]);
    add("profile.written-v1.bin", v1, Some(expected(&Profile { recent_requests: vec![], ..p.clone() })));
    // The fingerprint apache-avro 0.21 computed: no other implementation knows it.
    let legacy = |mut bytes: Vec<u8>, version: &SchemaVersion| {
        bytes[2..10].copy_from_slice(&version.legacy_fingerprint);
        bytes
    };
    add(
        "track_event.legacy-fingerprint.bin",
        legacy(encode_event(&event(0)), track_event_versions().last().unwrap()),
        None,
    );
    add("profile.legacy-fingerprint.bin", legacy(encode(&p), Profile::current()), None);
    out
}

/// Write the messages to a fresh directory, run `tool` on it, and check its output.
fn check_decoder(name: &str, tool: &mut Command, rejection: &str) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("independent-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let messages = messages();
    for m in &messages {
        std::fs::write(dir.join(&m.file), &m.bytes).unwrap();
    }
    let output = tool
        .arg(schemas_dir())
        .arg(&dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name} ({e}): install it with scripts/install-deps.sh"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{name} failed ({}); install the tools with scripts/install-deps.sh\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );

    let mut theirs = BTreeMap::new();
    let mut results = BTreeMap::new();
    for line in stdout.lines() {
        let mut parts = line.splitn(3, ' ');
        let (kind, file, rest) = (parts.next().unwrap(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        match kind {
            "fingerprint" => {
                theirs.insert(file.to_owned(), rest.to_owned());
            }
            "ok" | "error" => {
                results.insert(file.to_owned(), (kind == "ok", rest.to_owned()));
            }
            _ => panic!("{name}: unexpected output line {line:?}"),
        }
    }
    for m in &messages {
        let (ok, text) = results.get(&m.file).unwrap_or_else(|| panic!("{name} printed nothing for {}", m.file));
        match &m.expect {
            Some(want) => {
                assert!(ok, "{name} cannot decode {}: {text}", m.file);
                let got: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{}: {e}: {text}", m.file));
                assert_eq!(&got, want, "{name} decoded {} differently", m.file);
            }
            None => {
                assert!(!ok, "{name} decoded {} although its fingerprint is not the spec's", m.file);
                assert!(text.contains(rejection), "{name} rejected {} for another reason: {text}", m.file);
            }
        }
    }
    // Its own fingerprints of the schemas are the ones we write.
    let ours: BTreeMap<String, String> = [track_event_versions(), user_command_versions(), profile_versions()]
        .iter()
        .flat_map(|versions| versions.iter())
        .map(|v| (v.file.to_owned(), v.fingerprint.iter().map(|b| format!("{b:02x}")).collect()))
        .collect();
    assert_eq!(theirs, ours, "{name}'s fingerprints of schemas/avro/*.avsc differ from the ones we write");

    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn java_binary_message_decoder_decodes_our_messages() {
    let missing: Vec<&str> = JAVA_JARS.iter().copied().filter(|jar| !Path::new(JAVA_LIB).join(jar).exists()).collect();
    assert!(
        missing.is_empty(),
        "{JAVA_LIB}/{missing:?} missing: run scripts/install-deps.sh (apt-get install libavro-java default-jdk-headless)"
    );
    let classpath: Vec<String> = JAVA_JARS.iter().map(|jar| format!("{JAVA_LIB}/{jar}")).collect();
    let mut java = Command::new("java");
    java.arg("-cp").arg(classpath.join(":")).arg(crate_dir().join("tests/interop/AvroDecode.java"));
    check_decoder("java", &mut java, "Cannot resolve schema for fingerprint");
}

#[test]
fn fastavro_decodes_our_messages_by_fingerprint() {
    let mut python = Command::new("python3");
    python.arg(crate_dir().join("tests/interop/fastavro_decode.py"));
    check_decoder("fastavro", &mut python, "unknown schema fingerprint");
}
