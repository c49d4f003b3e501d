//! Embeds the scenario catalog (`scenarios/*.yaml`) and the application
//! profiles (`apps/*.yaml`) into the binary, so that `lockcheck` works from
//! any directory. In the repository, `harness/scenarios` and `harness/apps`
//! are symbolic links to the top-level directories; `cargo package` follows
//! them, so the packaged crate carries copies and builds the same catalog.
//! Finding no file is a build error: a binary without its catalog would
//! test nothing.

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
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let files = yaml_files(&path);
    if files.is_empty() {
        panic!(
            "no {what} (*.yaml) in {}: the built-in catalog would be empty. \
             In a checkout, harness/{dir} is a symbolic link to ../{dir} (git clone \
             with core.symlinks=true); in a packaged crate it is a directory.",
            path.display()
        );
    }
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
    embed("scenarios", "scenario files", "embedded_catalog.rs");
    embed("apps", "application profiles", "embedded_apps.rs");
}
