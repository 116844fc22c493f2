//! Embeds every file of `schemas/clickhouse/` into the crate as a sorted const list,
//! so services carry their schema with them and a new migration file is picked up by
//! the next build (cargo re-runs this script when anything in the directory changes).

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/clickhouse");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").file_name().into_string().expect("UTF-8 file name"))
        .filter(|name| name.ends_with(".sql"))
        .collect();
    files.sort();
    let mut out = String::from("/// `(file name, SQL text)` of every file in `schemas/clickhouse/`, sorted by name.\n");
    out.push_str("pub const EMBEDDED: &[(&str, &str)] = &[\n");
    for name in files {
        let path = dir.join(&name).canonicalize().expect("canonical path");
        writeln!(out, "    ({name:?}, include_str!({:?})),", path.display().to_string()).unwrap();
    }
    out.push_str("];\n");
    let target = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("embedded_migrations.rs");
    std::fs::write(target, out).expect("writing embedded_migrations.rs");
}
