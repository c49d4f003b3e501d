//! Shared by the integration tests that preload the mutation shim.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Compile the shim library.
pub fn build_shim(out: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/shims/mutations.c");
    let so = out.join("mutations.so");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o"])
        .arg(&so)
        .arg(&src)
        .arg("-ldl")
        .status()
        .unwrap_or_else(|e| panic!("running {cc} (a C compiler is needed for the shims): {e}"));
    assert!(status.success(), "compiling {}", src.display());
    so
}
