//! Every Avro schema version we have ever written, embedded at build time from
//! `schemas/avro/`, parsed and checked once on first use.
//!
//! Writers always use the newest version; readers accept any version listed here and
//! resolve it to the newest (Avro schema resolution fills added fields from their
//! defaults). Services call [`check`] at start so a bad schema file fails the start,
//! not the first request.
//!
//! Fingerprints are the Avro specification's ([`crate::fingerprint`]), which Java and
//! fastavro agree on; each version also keeps the legacy fingerprint apache-avro 0.21
//! computed, which records written before the fix carry and readers still accept.

use std::sync::LazyLock;

use apache_avro::Schema;

use crate::fingerprint::{fingerprint, Form};

/// The `.avsc` texts of the track event, oldest first.
pub const TRACK_EVENT_VERSIONS: &[(&str, &str)] = &[
    ("track_event.v1.avsc", include_str!("../../../schemas/avro/track_event.v1.avsc")),
    ("track_event.v2.avsc", include_str!("../../../schemas/avro/track_event.v2.avsc")),
];

/// The `.avsc` texts of the user command, oldest first.
pub const USER_COMMAND_VERSIONS: &[(&str, &str)] =
    &[("user_command.v1.avsc", include_str!("../../../schemas/avro/user_command.v1.avsc"))];

/// The `.avsc` texts of the merged user profile, oldest first.
pub const PROFILE_VERSIONS: &[(&str, &str)] = &[
    ("profile.v1.avsc", include_str!("../../../schemas/avro/profile.v1.avsc")),
    ("profile.v2.avsc", include_str!("../../../schemas/avro/profile.v2.avsc")),
];

/// One parsed schema version with its single-object-encoding fingerprint.
#[derive(Debug)]
pub struct SchemaVersion {
    pub file: &'static str,
    pub schema: Schema,
    /// CRC-64-AVRO (Rabin) fingerprint of the specification's Parsing Canonical
    /// Form, as the 8 little-endian bytes the single-object header carries. Writers
    /// write this one.
    pub fingerprint: [u8; 8],
    /// The fingerprint apache-avro 0.21 computed (its canonical form keeps
    /// `{"type":"string"}` for primitives with a `logicalType`), carried by records
    /// written before the switch. Readers accept it until the major version named in
    /// `docs/design.md`; writers never write it.
    pub legacy_fingerprint: [u8; 8],
}

impl SchemaVersion {
    /// Whether a single-object header with `fingerprint` was written with this
    /// version (the specification's fingerprint or the legacy one).
    pub fn matches(&self, fingerprint: [u8; 8]) -> bool {
        fingerprint == self.fingerprint || fingerprint == self.legacy_fingerprint
    }
}

type Parsed = LazyLock<Result<Vec<SchemaVersion>, String>>;
static TRACK_EVENT: Parsed = LazyLock::new(|| parse_versions(TRACK_EVENT_VERSIONS));
static USER_COMMAND: Parsed = LazyLock::new(|| parse_versions(USER_COMMAND_VERSIONS));
static PROFILE: Parsed = LazyLock::new(|| parse_versions(PROFILE_VERSIONS));

fn parse_versions(texts: &[(&'static str, &str)]) -> Result<Vec<SchemaVersion>, String> {
    texts
        .iter()
        .map(|(file, text)| {
            let schema = Schema::parse_str(text).map_err(|e| format!("schemas/avro/{file}: {e}"))?;
            let spec = fingerprint(text, Form::Spec).map_err(|e| format!("schemas/avro/{file}: {e}"))?;
            let legacy = fingerprint(text, Form::Legacy).map_err(|e| format!("schemas/avro/{file}: {e}"))?;
            Ok(SchemaVersion { file, schema, fingerprint: spec, legacy_fingerprint: legacy })
        })
        .collect()
}

fn versions(parsed: &'static Parsed) -> &'static [SchemaVersion] {
    match &**parsed {
        Ok(versions) => versions,
        Err(e) => panic!("embedded Avro schema is invalid: {e} (call vero_model::schemas::check at start)"),
    }
}

/// All track event versions, oldest first; the last one is what writers use.
pub fn track_event_versions() -> &'static [SchemaVersion] {
    versions(&TRACK_EVENT)
}

/// All user command versions, oldest first; the last one is what writers use.
pub fn user_command_versions() -> &'static [SchemaVersion] {
    versions(&USER_COMMAND)
}

/// All profile versions, oldest first; the last one is what writers use.
pub fn profile_versions() -> &'static [SchemaVersion] {
    versions(&PROFILE)
}

/// Parse every embedded schema; the error names the file that is wrong.
pub fn check() -> Result<(), String> {
    for parsed in [&TRACK_EVENT, &USER_COMMAND, &PROFILE] {
        parsed.as_ref().map_err(Clone::clone)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_embedded_schemas_parse_and_have_distinct_fingerprints() {
        check().unwrap();
        let versions = track_event_versions();
        assert_eq!(versions.len(), TRACK_EVENT_VERSIONS.len());
        assert_ne!(versions[0].fingerprint, versions[1].fingerprint);
        let commands = user_command_versions();
        assert!(commands.iter().all(|c| versions.iter().all(|v| v.fingerprint != c.fingerprint)));
    }

    #[test]
    fn no_fingerprint_of_one_version_matches_another() {
        // Readers tell record types and versions apart by either fingerprint, so all
        // of them, spec and legacy, must be distinct across every schema.
        let all: Vec<&SchemaVersion> =
            track_event_versions().iter().chain(user_command_versions()).chain(profile_versions()).collect();
        for (i, a) in all.iter().enumerate() {
            assert!(a.matches(a.fingerprint) && a.matches(a.legacy_fingerprint), "{}", a.file);
            for b in &all[i + 1..] {
                assert!(!b.matches(a.fingerprint) && !b.matches(a.legacy_fingerprint), "{} vs {}", a.file, b.file);
            }
        }
    }

    #[test]
    fn a_broken_schema_is_reported_with_its_file() {
        let err = parse_versions(&[("broken.avsc", "{\"type\": \"record\"}")]).unwrap_err();
        assert!(err.contains("schemas/avro/broken.avsc"), "{err}");
    }
}
