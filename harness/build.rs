//! Embeds the repository's scenario catalog (`../scenarios/*.yaml`) and
//! application profiles (`../apps/*.yaml`) into the binary, so that
//! `lockcheck` works from any directory.

use std::fmt::Write as _;
use std::path::Path;

/// `(file name, absolute path)` of the YAML files in `dir`, sorted.
fn yaml_files(dir: &Path) -> Vec<(String, String)> {
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) == Some("yaml") {
                if let (Some(name), Ok(abs)) = (
                    path.file_name().and_then(|n| n.to_str()),
                    std::fs::canonicalize(&path),
                ) {
                    println!("cargo:rerun-if-changed={}", abs.display());
                    files.push((name.to_string(), abs.display().to_string()));
                }
            }
        }
    }
    files.sort();
    files
}

fn embed(dir: &str, what: &str, dest: &str) {
    let files = yaml_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir));
    let mut out = format!(
        "/// The {what} compiled in: (file name, text).\npub static FILES: &[(&str, &str)] = &[\n"
    );
    for (name, abs) in &files {
        let _ = writeln!(out, "    ({name:?}, include_str!({abs:?})),");
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join(dest);
    std::fs::write(dest, out).expect("writing an embedded file list");
}

fn main() {
    embed("../scenarios", "scenario files", "embedded_catalog.rs");
    embed("../apps", "application profiles", "embedded_apps.rs");
}
