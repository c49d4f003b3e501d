//! Differential fuzzing end to end: healthy directories never differ; a
//! broken one is found fast, shrunk, and written as a scenario that
//! reproduces the failure with `lockcheck run`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn lockcheck(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lockcheck"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running lockcheck")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn dir(base: &Path, name: &str) -> PathBuf {
    let d = base.join(name);
    std::fs::create_dir_all(&d).expect("mkdir");
    std::fs::canonicalize(d).expect("canonical")
}

fn shim(out: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/shims/mutations.c");
    let so = out.join("mutations.so");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let ok = Command::new(&cc)
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&so)
        .arg(&src)
        .arg("-ldl")
        .status()
        .expect("a C compiler")
        .success();
    assert!(ok);
    so
}

#[test]
fn healthy_directories_never_differ() {
    let work = tempfile::tempdir().expect("tempdir");
    let reference = dir(work.path(), "ref");
    // A second, different filesystem when there is one.
    let shm = Path::new("/dev/shm");
    let other = if shm.is_dir() {
        tempfile::tempdir_in(shm)
            .expect("tempdir in /dev/shm")
            .keep()
    } else {
        dir(work.path(), "tgt")
    };
    let o = lockcheck(
        &[
            "fuzz",
            "--reference",
            &format!("ref={}", reference.display()),
            "--target",
            &format!("tgt={}", other.display()),
            "--seed",
            "42",
            "--ops",
            "10000",
            "--out",
            work.path().join("out").to_str().expect("utf8"),
        ],
        &[],
    );
    let _ = std::fs::remove_dir_all(&other);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("no difference in 10000 operations"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("seed 42"));
}

#[test]
fn widened_locks_are_found_shrunk_and_reproduced() {
    let work = tempfile::tempdir().expect("tempdir");
    let reference = dir(work.path(), "ref");
    let target = dir(work.path(), "tgt");
    let out = work.path().join("found");
    let so = shim(work.path());
    let mutation = [
        ("LD_PRELOAD", so.to_str().expect("utf8")),
        ("LOCKCHECK_MUTATION", "ranges-whole-file"),
        ("LOCKCHECK_MUTATION_DIR", target.to_str().expect("utf8")),
    ];
    let tgt_arg = format!("tgt={}", target.display());
    let started = Instant::now();
    let o = lockcheck(
        &[
            "fuzz",
            "--reference",
            &format!("ref={}", reference.display()),
            "--target",
            &tgt_arg,
            "--seed",
            "7",
            "--ops",
            "100000",
            "--out",
            out.to_str().expect("utf8"),
        ],
        &mutation,
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "fuzzing took {:?}",
        started.elapsed()
    );
    let report = text(&o);
    let secs: f64 = report
        .split("difference found after ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|s| s.parse().ok())
        .expect("the time to find it is printed");
    assert!(secs < 10.0, "found after {secs} s");
    let steps: usize = report
        .split(" to ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|s| s.parse().ok())
        .expect("the shrunk size is printed");
    assert!(steps <= 6, "shrunk to {steps} steps:\n{report}");
    let file = out.join("fuzz-7.yaml");
    let yaml = std::fs::read_to_string(&file).expect("the scenario is written");
    assert!(
        yaml.contains("--seed 7"),
        "the seed is in the summary:\n{yaml}"
    );
    let valid = lockcheck(&["validate", file.to_str().expect("utf8")], &[]);
    assert_eq!(valid.status.code(), Some(0), "{}", text(&valid));
    // It reproduces the failure on the target and passes on the reference.
    let on_target = lockcheck(
        &[
            "run",
            "--scenarios",
            out.to_str().expect("utf8"),
            "--target",
            &tgt_arg,
            "--out",
            work.path().join("r1").to_str().expect("utf8"),
        ],
        &mutation,
    );
    assert_eq!(on_target.status.code(), Some(1), "{}", text(&on_target));
    let on_reference = lockcheck(
        &[
            "run",
            "--scenarios",
            out.to_str().expect("utf8"),
            "--target",
            &format!("ref={}", reference.display()),
            "--out",
            work.path().join("r2").to_str().expect("utf8"),
        ],
        &[],
    );
    assert_eq!(
        on_reference.status.code(),
        Some(0),
        "{}",
        text(&on_reference)
    );
}
