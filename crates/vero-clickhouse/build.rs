//! Embeds every `.sql` file of `schemas/clickhouse/` (the single-node schema) and of
//! `schemas/clickhouse/cluster/` (the cluster schema) into the crate as two sorted
//! const lists, so services carry their schema with them and a new migration file is
//! picked up by the next build (cargo re-runs this script when anything in those
//! directories changes; if an incremental build ever embeds a stale list, touch this
//! file).

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    // Read at run time, not with env!: a build script binary reused from another
    // checkout sharing the target directory would otherwise read that checkout.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest).join("../../schemas/clickhouse");
    let mut out = String::new();
    embed(&mut out, "EMBEDDED", &root, "schemas/clickhouse/");
    embed(&mut out, "EMBEDDED_CLUSTER", &root.join("cluster"), "schemas/clickhouse/cluster/");
    let target = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("embedded_migrations.rs");
    std::fs::write(target, out).expect("writing embedded_migrations.rs");
}

/// Append `pub const <name>: &[(&str, &str)]` with every `.sql` file of `dir`.
fn embed(out: &mut String, name: &str, dir: &Path, shown: &str) {
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").file_name().into_string().expect("UTF-8 file name"))
        .filter(|name| name.ends_with(".sql"))
        .collect();
    files.sort();
    writeln!(out, "/// `(file name, SQL text)` of every file in `{shown}`, sorted by name.").unwrap();
    writeln!(out, "pub const {name}: &[(&str, &str)] = &[").unwrap();
    for file in files {
        let path = dir.join(&file).canonicalize().expect("canonical path");
        writeln!(out, "    ({file:?}, include_str!({:?})),", path.display().to_string()).unwrap();
    }
    out.push_str("];\n");
}
