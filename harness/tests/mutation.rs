//! Mutation tests: break a lock call with an LD_PRELOAD shim and check that
//! the catalog catches it — the run exits 1 and names the failing trials.
//! This is what shows that a scenario can fail, not only pass.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Compile a shim from tests/shims into a shared object.
fn build_shim(name: &str, out: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/shims/{name}.c"));
    let so = out.join(format!("{name}.so"));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-shared", "-fPIC", "-O2", "-Wall", "-o"])
        .arg(&so)
        .arg(&src)
        .arg("-ldl")
        .status()
        .unwrap_or_else(|e| panic!("running {cc} (a C compiler is needed for the shims): {e}"));
    assert!(status.success(), "compiling {}", src.display());
    so
}

struct Run {
    code: i32,
    stderr: String,
    failed: BTreeSet<String>,
    passed: BTreeSet<String>,
}

/// Run the catalog on a fresh target with an optional shim preloaded.
fn run_catalog(shim: Option<&Path>, work: &Path, tag: &str) -> Run {
    let target = work.join(format!("target-{tag}"));
    let out = work.join(format!("out-{tag}"));
    std::fs::create_dir_all(&target).expect("target dir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lockcheck"));
    cmd.arg("run")
        .arg("--scenarios")
        .arg(repo().join("scenarios"))
        .arg("--target")
        .arg(format!("m={}", target.display()))
        .arg("--out")
        .arg(&out)
        .arg("--quiet");
    if let Some(s) = shim {
        cmd.env("LD_PRELOAD", s);
    }
    let o = cmd.output().expect("running lockcheck");
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("m.json")).expect("the report is written"),
    )
    .expect("the report is JSON");
    let mut failed = BTreeSet::new();
    let mut passed = BTreeSet::new();
    for r in report["results"].as_array().expect("results") {
        let id = r["id"]
            .as_str()
            .expect("id")
            .trim_start_matches("m::")
            .to_string();
        match r["status"].as_str() {
            Some("pass") => {
                passed.insert(id);
            }
            Some("fail") => {
                failed.insert(id);
            }
            other => panic!("{id}: unexpected status {other:?}: {r}"),
        }
    }
    Run {
        code: o.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        failed,
        passed,
    }
}

fn check_caught(run: &Run, must_fail: &[&str], mechanisms_affected: &[&str]) {
    assert_eq!(
        run.code, 1,
        "a broken lock must make the run exit 1\n{}",
        run.stderr
    );
    for id in must_fail {
        assert!(
            run.failed.contains(*id),
            "{id} did not catch the mutation; failed: {:?}",
            run.failed
        );
        assert!(
            run.stderr.contains(&format!("m::{id}")),
            "the failing trial m::{id} is not named on the console:\n{}",
            run.stderr
        );
    }
    for id in &run.failed {
        let mech = id.rsplit("::").next().unwrap_or("");
        assert!(
            mechanisms_affected.contains(&mech),
            "{id} failed, but the shim does not touch {mech}"
        );
    }
}

#[test]
fn shims_are_caught() {
    let work = tempfile::tempdir().expect("tempdir");
    let control = run_catalog(None, work.path(), "control");
    assert_eq!(
        control.code, 0,
        "the catalog must pass without a shim:\n{}",
        control.stderr
    );
    assert!(control.failed.is_empty());

    // flock() that locks nothing.
    let shim = build_shim("flock_noop", work.path());
    let run = run_catalog(Some(&shim), work.path(), "flock");
    check_caught(
        &run,
        &[
            "exclusive-race-2::flock",
            "exclusive-race-16::flock",
            "shared-shared::flock",
            "shared-exclusive-conflict::flock",
            "unlock-lets-contender-in::flock",
            "exclusive-blocks-until-release::flock",
            "killed-holder-releases::flock",
            "close-dup-releases-posix::flock",
            "close-second-open-releases-posix::flock",
            "fork-inherits-flock-ofd::flock",
        ],
        &["flock"],
    );
    assert!(run.passed.contains("exclusive-race-2::posix"));

    // F_SETLKW / F_OFD_SETLKW that do not wait.
    let shim = build_shim("setlkw_to_setlk", work.path());
    let run = run_catalog(Some(&shim), work.path(), "setlkw");
    check_caught(
        &run,
        &[
            "exclusive-blocks-until-release::posix",
            "exclusive-blocks-until-release::ofd",
            "killed-holder-releases::posix",
            "killed-holder-releases::ofd",
        ],
        &["posix", "ofd"],
    );
    assert!(run.passed.contains("exclusive-blocks-until-release::flock"));
}
