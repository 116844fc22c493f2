//! The Avro specification's Parsing Canonical Form and its CRC-64-AVRO (Rabin)
//! fingerprint, computed from a schema's JSON text — what the single-object header of
//! every message we write carries.
//!
//! Why our own: apache-avro 0.21 (like the Python `avro` package) keeps
//! `{"type":"string"}` in the canonical form of a primitive that carries a
//! `logicalType` (`uuid`, `timestamp-millis`), where the specification's
//! [PRIMITIVES] rule and every other implementation (Java's `SchemaNormalization`,
//! fastavro) write the bare name `"string"`. Its fingerprints therefore differ from
//! everyone else's for every schema in `schemas/avro/`.
//!
//! Guarantees:
//! * [`Form::Spec`] follows the specification's transformations: [PRIMITIVES] a
//!   primitive is its bare name (all other attributes, `logicalType` included, dropped);
//!   [FULLNAMES] names are fullnames, resolved with the enclosing namespace; [STRIP]
//!   only `name`, `type`, `fields`, `symbols`, `items`, `values`, `size` are kept;
//!   [ORDER] in that order; [STRINGS]/[INTEGERS]/[WHITESPACE] compact JSON, UTF-8,
//!   plain integers. A named type's second occurrence is its quoted fullname. An
//!   `error` is written as `record`, like Java. Tests pin the result to the
//!   fingerprints Java and fastavro compute for our schemas.
//! * [`Form::Legacy`] differs only in writing a primitive that carries a
//!   `logicalType` as `{"type":"<primitive>"}`: the form apache-avro 0.21 fingerprinted
//!   and that every record we wrote before the fix carries. Readers keep accepting it
//!   (see `docs/design.md`, "Records on the wire").
//! * The input is assumed to be a schema apache-avro already parsed (the callers in
//!   [`crate::schemas`] do that first); malformed JSON or structure is still an error,
//!   never a panic.

use std::collections::HashSet;
use std::fmt::Write as _;

use serde_json::{Map, Value};

/// Which canonical form to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// The Avro specification's Parsing Canonical Form (what Java and fastavro use).
    Spec,
    /// apache-avro 0.21's form: a primitive with a `logicalType` stays `{"type":"..."}`.
    Legacy,
}

const PRIMITIVES: [&str; 8] = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"];

/// The canonical form of the schema in `schema_json`.
pub fn canonical_form(schema_json: &str, form: Form) -> Result<String, String> {
    let schema: Value = serde_json::from_str(schema_json).map_err(|e| format!("schema is not JSON: {e}"))?;
    let mut out = String::with_capacity(schema_json.len());
    write_schema(&schema, "", &mut HashSet::new(), form, &mut out)?;
    Ok(out)
}

/// The 8 bytes a single-object header carries for this schema: the CRC-64-AVRO
/// fingerprint of its canonical form, little-endian.
pub fn fingerprint(schema_json: &str, form: Form) -> Result<[u8; 8], String> {
    Ok(crc64_avro(canonical_form(schema_json, form)?.as_bytes()).to_le_bytes())
}

/// CRC-64-AVRO, the specification's 64-bit Rabin fingerprint of `bytes`.
pub fn crc64_avro(bytes: &[u8]) -> u64 {
    bytes.iter().fold(EMPTY, |fp, &b| (fp >> 8) ^ TABLE[((fp ^ u64::from(b)) & 0xff) as usize])
}

const EMPTY: u64 = 0xc15d_213a_a4d7_a795;
static TABLE: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut fp = i as u64;
        let mut bit = 0;
        while bit < 8 {
            fp = (fp >> 1) ^ (EMPTY & (fp & 1).wrapping_neg());
            bit += 1;
        }
        table[i] = fp;
        i += 1;
    }
    table
};

/// Append the canonical form of `schema`, read in namespace `namespace` ("" = none).
fn write_schema(
    schema: &Value,
    namespace: &str,
    defined: &mut HashSet<String>,
    form: Form,
    out: &mut String,
) -> Result<(), String> {
    match schema {
        Value::String(name) if PRIMITIVES.contains(&name.as_str()) => write_json_str(name, out),
        Value::String(name) => write_json_str(&fullname(name, None, namespace), out),
        Value::Array(branches) => {
            out.push('[');
            for (i, branch) in branches.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_schema(branch, namespace, defined, form, out)?;
            }
            out.push(']');
        }
        Value::Object(attrs) => write_object(attrs, namespace, defined, form, out)?,
        other => return Err(format!("not an Avro schema: {other}")),
    }
    Ok(())
}

fn write_object(
    attrs: &Map<String, Value>,
    namespace: &str,
    defined: &mut HashSet<String>,
    form: Form,
    out: &mut String,
) -> Result<(), String> {
    let ty = str_attr(attrs, "type")?;
    match ty {
        _ if PRIMITIVES.contains(&ty) => {
            if form == Form::Legacy && attrs.contains_key("logicalType") {
                out.push_str("{\"type\":");
                write_json_str(ty, out);
                out.push('}');
            } else {
                write_json_str(ty, out);
            }
        }
        "record" | "error" | "enum" | "fixed" => {
            let namespace_attr = attrs.get("namespace").and_then(Value::as_str);
            let full = fullname(str_attr(attrs, "name")?, namespace_attr, namespace);
            if !defined.insert(full.clone()) {
                return Err(format!("named type {full} is defined twice"));
            }
            out.push_str("{\"name\":");
            write_json_str(&full, out);
            out.push_str(",\"type\":");
            write_json_str(if ty == "error" { "record" } else { ty }, out);
            match ty {
                "enum" => {
                    out.push_str(",\"symbols\":");
                    let symbols = array_attr(attrs, "symbols")?;
                    let symbols: Result<Vec<&str>, String> =
                        symbols.iter().map(|s| s.as_str().ok_or_else(|| format!("enum {full}: symbol {s}"))).collect();
                    out.push_str(&serde_json::to_string(&symbols?).expect("strings serialize"));
                }
                "fixed" => {
                    let size =
                        attrs.get("size").and_then(Value::as_u64).ok_or_else(|| format!("fixed {full}: no size"))?;
                    write!(out, ",\"size\":{size}").expect("writing to a String");
                }
                _ => {
                    let enclosing = full.rsplit_once('.').map_or("", |(ns, _)| ns);
                    out.push_str(",\"fields\":[");
                    for (i, field) in array_attr(attrs, "fields")?.iter().enumerate() {
                        let field = field.as_object().ok_or_else(|| format!("record {full}: field {field}"))?;
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str("{\"name\":");
                        write_json_str(str_attr(field, "name")?, out);
                        out.push_str(",\"type\":");
                        let field_type =
                            field.get("type").ok_or_else(|| format!("record {full}: field without type"))?;
                        write_schema(field_type, enclosing, defined, form, out)?;
                        out.push('}');
                    }
                    out.push(']');
                }
            }
            out.push('}');
        }
        "array" | "map" => {
            let key = if ty == "array" { "items" } else { "values" };
            out.push_str("{\"type\":");
            write_json_str(ty, out);
            write!(out, ",\"{key}\":").expect("writing to a String");
            let inner = attrs.get(key).ok_or_else(|| format!("{ty} without {key}"))?;
            write_schema(inner, namespace, defined, form, out)?;
            out.push('}');
        }
        // `{"type": "SomeName"}`: a reference to a named type, like the bare string.
        name => write_json_str(&fullname(name, None, namespace), out),
    }
    Ok(())
}

/// The fullname of `name`: itself if it has a dot, else qualified by its own
/// `namespace` attribute if present (`""` = the null namespace), else by `enclosing`.
fn fullname(name: &str, namespace_attr: Option<&str>, enclosing: &str) -> String {
    let namespace = namespace_attr.unwrap_or(enclosing);
    if name.contains('.') || namespace.is_empty() {
        name.to_owned()
    } else {
        format!("{namespace}.{name}")
    }
}

fn str_attr<'a>(attrs: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    attrs.get(key).and_then(Value::as_str).ok_or_else(|| format!("schema object without a string `{key}`"))
}

fn array_attr<'a>(attrs: &'a Map<String, Value>, key: &str) -> Result<&'a Vec<Value>, String> {
    attrs.get(key).and_then(Value::as_array).ok_or_else(|| format!("schema object without an array `{key}`"))
}

/// [STRINGS]: a JSON string literal with UTF-8 kept as is (serde_json escapes only
/// what JSON requires; Avro names and symbols never need it).
fn write_json_str(s: &str, out: &mut String) {
    out.push_str(&serde_json::to_string(s).expect("strings serialize"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schemas::{PROFILE_VERSIONS, TRACK_EVENT_VERSIONS, USER_COMMAND_VERSIONS};

    fn avsc(file: &str) -> &'static str {
        [TRACK_EVENT_VERSIONS, USER_COMMAND_VERSIONS, PROFILE_VERSIONS]
            .concat()
            .into_iter()
            .find(|(f, _)| *f == file)
            .map(|(_, text)| text)
            .unwrap_or_else(|| panic!("no schema {file}"))
    }

    fn hex(bytes: [u8; 8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// (file, the specification's fingerprint, the legacy apache-avro 0.21 one), as
    /// the 8 header bytes in wire order. The spec values are what Java's
    /// `SchemaNormalization.parsingFingerprint64` and fastavro compute.
    const PINNED: [(&str, &str, &str); 5] = [
        ("track_event.v1.avsc", "c20c30983659544d", "d3efd4cdef04c2f7"),
        ("track_event.v2.avsc", "d5eae38f53074c38", "0aa3628a5fa7c2d4"),
        ("user_command.v1.avsc", "01350462a2a052c1", "a85624f275ce53de"),
        ("profile.v1.avsc", "a1d805ca72893bff", "fd077b06c50b4b43"),
        ("profile.v2.avsc", "76620dd36697388b", "6fc69a76a87278e6"),
    ];

    #[test]
    fn our_schemas_have_the_specifications_fingerprints() {
        for (file, spec, _) in PINNED {
            assert_eq!(hex(fingerprint(avsc(file), Form::Spec).unwrap()), spec, "{file}");
        }
    }

    #[test]
    fn legacy_fingerprints_are_the_ones_already_written() {
        for (file, _, legacy) in PINNED {
            assert_eq!(hex(fingerprint(avsc(file), Form::Legacy).unwrap()), legacy, "{file}");
        }
    }

    #[test]
    fn apache_avro_still_computes_one_of_the_two() {
        // If an apache-avro upgrade changes its canonical form again this says so; our
        // fingerprints do not depend on it.
        for (file, spec, legacy) in PINNED {
            let theirs = apache_avro::Schema::parse_str(avsc(file)).unwrap().fingerprint::<apache_avro::rabin::Rabin>();
            let theirs = hex(theirs.bytes.try_into().unwrap());
            assert!(theirs == legacy || theirs == spec, "{file}: apache-avro gives {theirs}");
        }
    }

    #[test]
    fn canonical_form_follows_the_specification() {
        let schema = r#"{
            "type": "record", "name": "Outer", "namespace": "a.b", "doc": "dropped", "aliases": ["x"],
            "fields": [
                {"name": "id", "type": {"type": "string", "logicalType": "uuid"}, "doc": "d"},
                {"name": "at", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}], "default": null},
                {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"], "default": "A"}},
                {"name": "again", "type": "Kind"},
                {"name": "hash", "type": {"type": "fixed", "name": "c.Hash", "size": 16}},
                {"name": "tags", "type": {"type": "map", "values": {"type": "array", "items": "c.Hash"}}},
                {"name": "plain", "type": {"type": "int"}},
                {"name": "top", "type": {"type": "record", "name": "Top", "namespace": "", "fields": []}}
            ]
        }"#;
        let spec = concat!(
            r#"{"name":"a.b.Outer","type":"record","fields":["#,
            r#"{"name":"id","type":"string"},"#,
            r#"{"name":"at","type":["null","long"]},"#,
            r#"{"name":"kind","type":{"name":"a.b.Kind","type":"enum","symbols":["A","B"]}},"#,
            r#"{"name":"again","type":"a.b.Kind"},"#,
            r#"{"name":"hash","type":{"name":"c.Hash","type":"fixed","size":16}},"#,
            r#"{"name":"tags","type":{"type":"map","values":{"type":"array","items":"c.Hash"}}},"#,
            r#"{"name":"plain","type":"int"},"#,
            r#"{"name":"top","type":{"name":"Top","type":"record","fields":[]}}]}"#,
        );
        assert_eq!(canonical_form(schema, Form::Spec).unwrap(), spec);
        let legacy = canonical_form(schema, Form::Legacy).unwrap();
        assert!(legacy.contains(r#"{"name":"id","type":{"type":"string"}}"#), "{legacy}");
        assert!(legacy.contains(r#"["null",{"type":"long"}]"#), "{legacy}");
        assert!(legacy.contains(r#"{"name":"plain","type":"int"}"#), "{legacy}");
    }

    #[test]
    fn crc64_avro_matches_known_values() {
        // Fingerprints of primitive schemas as the Avro spec's test data and Java give them.
        assert_eq!(crc64_avro(b""), EMPTY);
        assert_eq!(crc64_avro(b"\"int\"") as i64, 8247732601305521295);
        assert_eq!(crc64_avro(b"\"string\"") as i64, -8142146995180207161);
    }

    #[test]
    fn malformed_schemas_are_errors() {
        assert!(canonical_form("{", Form::Spec).is_err());
        assert!(canonical_form("42", Form::Spec).is_err());
        assert!(canonical_form(r#"{"type":"record","name":"R"}"#, Form::Spec).is_err());
        assert!(canonical_form(r#"{"type":"fixed","name":"F"}"#, Form::Spec).is_err());
        let twice = r#"{"type":"record","name":"R","fields":[{"name":"a","type":{"type":"enum","name":"E","symbols":[]}},{"name":"b","type":{"type":"enum","name":"E","symbols":[]}}]}"#;
        assert!(canonical_form(twice, Form::Spec).unwrap_err().contains("defined twice"));
    }
}
