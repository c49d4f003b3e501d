//! Embeds the repository's scenario catalog (`../scenarios/*.yaml`) into the
//! binary, so that `lockcheck` works from any directory.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<(String, String)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
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
    let mut out = String::from("/// The scenario files compiled in: (file name, text).\npub static FILES: &[(&str, &str)] = &[\n");
    for (name, abs) in &files {
        let _ = writeln!(out, "    ({name:?}, include_str!({abs:?})),");
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("embedded_catalog.rs");
    std::fs::write(dest, out).expect("writing the embedded catalog");
}
