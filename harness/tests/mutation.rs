//! Mutation tests: break one aspect of locking with an LD_PRELOAD shim
//! (`tests/shims/mutations.c`) and check that the catalog catches it — the
//! run exits 1 and names the trials that failed. Every scenario family has a
//! mutation it must catch; this is what shows that scenarios can fail, not
//! only pass.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::build_shim;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Run {
    code: i32,
    stderr: String,
    failed: BTreeSet<String>,
    passed: BTreeSet<String>,
    /// Every trial: its status and its whole record.
    all: std::collections::BTreeMap<String, (String, serde_json::Value)>,
}

/// Run the catalog on a fresh target, optionally with a mutation preloaded.
fn run_catalog(shim: Option<(&Path, &str)>, mechanisms: &[&str], work: &Path, tag: &str) -> Run {
    let target = work.join(format!("target-{tag}"));
    let out = work.join(format!("out-{tag}"));
    std::fs::create_dir_all(&target).expect("target dir");
    let target = std::fs::canonicalize(&target).expect("canonical target");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lockcheck"));
    cmd.arg("run")
        .arg("--scenarios")
        .arg(repo().join("scenarios"))
        .arg("--target")
        .arg(format!("m={}", target.display()))
        .arg("--out")
        .arg(&out)
        .arg("--quiet");
    for m in mechanisms {
        cmd.arg("--mechanism").arg(m);
    }
    if let Some((so, mode)) = shim {
        cmd.env("LD_PRELOAD", so)
            .env("LOCKCHECK_MUTATION", mode)
            .env("LOCKCHECK_MUTATION_DIR", &target);
    }
    let o = cmd.output().expect("running lockcheck");
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("m.json"))
            .unwrap_or_else(|e| panic!("no report ({e}); stderr:\n{stderr}")),
    )
    .expect("the report is JSON");
    let mut failed = BTreeSet::new();
    let mut passed = BTreeSet::new();
    let mut all = std::collections::BTreeMap::new();
    for r in report["results"].as_array().expect("results") {
        let id = r["id"]
            .as_str()
            .expect("id")
            .trim_start_matches("m::")
            .to_string();
        let status = r["status"].as_str().unwrap_or_default().to_string();
        all.insert(id.clone(), (status, r.clone()));
        if shim.is_some_and(|(_, m)| BROKEN_ACTORS.contains(&m)) {
            continue;
        }
        match r["status"].as_str() {
            Some("pass") => {
                passed.insert(id);
            }
            Some("fail") => {
                failed.insert(id);
            }
            Some("skip" | "xfail") => {}
            other => panic!("{id}: unexpected status {other:?}: {r}"),
        }
    }
    assert_eq!(
        std::fs::read_dir(&target).map(|d| d.count()).unwrap_or(0),
        0,
        "scratch left in the target"
    );
    Run {
        code: o.status.code().unwrap_or(-1),
        stderr,
        failed,
        passed,
        all,
    }
}

/// Shim modes that break the actor itself rather than a lock call.
const BROKEN_ACTORS: &[&str] = &["crash-on-unlock", "garble-on-unlock"];

/// An actor that crashes (SIGSEGV in flock(LOCK_UN)) or sends a line that
/// is not a message (after flock(LOCK_UN)) fails or errors its own trial,
/// with the evidence, and nothing else: every other trial keeps the outcome
/// it has without the shim, the run ends with exit 1, nothing is left.
#[test]
fn a_crashed_or_garbled_actor_fails_its_trial_only() {
    let work = tempfile::tempdir().expect("tempdir");
    let control = run_catalog(None, &[], work.path(), "control");
    assert_eq!(control.code, 0, "{}", control.stderr);
    let shim = build_shim(work.path());
    for (mode, status, evidence) in [
        ("crash-on-unlock", "fail", "the actor died"),
        (
            "garble-on-unlock",
            "error",
            "the actor sent an unreadable message",
        ),
    ] {
        let started = std::time::Instant::now();
        let run = run_catalog(Some((&shim, mode)), &[], work.path(), mode);
        let took = started.elapsed();
        assert_eq!(run.code, 1, "{mode}: exit status\n{}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        let mut changed = 0;
        for (id, (st, record)) in &run.all {
            let (before, _) = &control.all[id];
            if st == before {
                continue;
            }
            changed += 1;
            let text = record.to_string();
            assert_eq!(st, status, "{mode}: {id} {before} -> {st}: {text}");
            assert!(
                text.contains(evidence),
                "{mode}: {id} changed ({before} -> {st}) without its actor being broken: {text}"
            );
            assert!(
                text.contains("flock"),
                "{mode}: {id} has no flock call: {text}"
            );
        }
        eprintln!("{mode}: {changed} trials broken, the rest unchanged, in {took:?}");
        assert!(changed >= 10, "{mode}: only {changed} trials noticed");
        assert_eq!(run.all.len(), control.all.len());
    }
}

/// A mutation, the mechanisms to run, and trials that must catch it.
struct Case {
    mode: &'static str,
    mechanisms: &'static [&'static str],
    families: &'static [&'static str],
    must_fail: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        mode: "flock-noop",
        mechanisms: &["flock"],
        families: &[
            "exclusion",
            "blocking",
            "integrity",
            "release-on-close",
            "inheritance",
        ],
        must_fail: &[
            "exclusive-race-2::flock",
            "exclusive-race-16::flock",
            "shared-shared::flock",
            "unlock-lets-contender-in::flock",
            "exclusive-blocks-until-release::flock",
            "killed-holder-releases::flock",
            "counter-4-actors::flock",
            "close-dup-releases-posix::flock",
            "fork-inherits-flock-ofd::flock",
            "lock-on-fifo::flock",
            "unlock-by-other-process-does-nothing::flock",
            "exclusive-waiters-one-granted::flock",
            "locks-and-mmap::flock",
        ],
    },
    Case {
        mode: "setlkw-nowait",
        mechanisms: &["posix", "ofd"],
        families: &["blocking", "faults", "deadlock"],
        must_fail: &[
            "exclusive-blocks-until-release::posix",
            "exclusive-blocks-until-release::ofd",
            "queued-waiters-all-granted::ofd",
            "killed-holder-releases::posix",
            "killed-holder-releases::ofd",
            "range-waiter-woken-when-its-range-frees::posix",
            "deadlock-posix-two-process::posix",
            "exclusive-waiters-one-granted::posix",
        ],
    },
    Case {
        mode: "setlk-noop",
        mechanisms: &["posix"],
        families: &["exclusion", "integrity"],
        must_fail: &[
            "exclusive-race-2::posix",
            "counter-4-actors::posix",
            "counter-16-actors::posix",
            "lock-on-fifo::posix",
            "locks-and-mmap-ranges::posix",
            "child-unlock-releases-shared-lock::posix",
        ],
    },
    Case {
        mode: "ranges-whole-file",
        mechanisms: &["posix", "ofd"],
        families: &["byte-ranges"],
        must_fail: &[
            "range-adjacent-no-conflict::posix",
            "range-adjacent-no-conflict::ofd",
            "range-unlock-middle-splits::posix",
            "range-large-offsets::posix",
            "many-byte-locks::ofd",
            "locks-and-mmap-ranges::ofd",
        ],
    },
    Case {
        mode: "open-rdwr",
        mechanisms: &["posix", "ofd"],
        families: &["open-mode"],
        must_fail: &[
            "open-mode-write-lock-needs-write::posix",
            "open-mode-write-lock-needs-write::ofd",
            "open-mode-read-lock-needs-read::posix",
        ],
    },
    Case {
        mode: "edeadlk-eagain",
        mechanisms: &["posix"],
        families: &["deadlock"],
        must_fail: &[
            "deadlock-posix-two-process::posix",
            "deadlock-posix-three-process::posix",
        ],
    },
    Case {
        mode: "close-keeps-locks",
        mechanisms: &["flock", "posix", "ofd"],
        families: &["release-on-close"],
        must_fail: &[
            "close-dup-releases-posix::posix",
            "close-second-open-releases-posix::posix",
            "last-close-releases-flock-ofd::flock",
            "last-close-releases-flock-ofd::ofd",
            "close-wakes-waiter::posix",
            "many-byte-locks::posix",
            "clone-files-sibling-close-releases::posix",
            "reopen-and-io-after-lock-and-close::ofd",
        ],
    },
    Case {
        mode: "flock-as-posix",
        mechanisms: &["flock", "posix", "ofd"],
        families: &["interplay", "inheritance", "open-mode"],
        must_fail: &[
            "flock-and-record-locks-independent::posix",
            "record-lock-then-flock-independent::posix",
            "fork-inherits-flock-ofd::flock",
            "flock-exclusive-on-read-only::flock",
            "two-opens-one-process::flock",
            "child-unlock-releases-shared-lock::flock",
        ],
    },
    Case {
        mode: "ofd-as-posix",
        mechanisms: &["ofd"],
        families: &["ofd", "reporting"],
        must_fail: &[
            "two-opens-one-process::ofd",
            "ofd-locks-serialize-threads::ofd",
            "getlk-reports-holder::ofd",
            "child-unlock-releases-shared-lock::ofd",
        ],
    },
    Case {
        mode: "getlk-pid-zero",
        mechanisms: &["posix"],
        families: &["reporting"],
        must_fail: &[
            "getlk-reports-holder::posix",
            "getlk-reports-shared-holder::posix",
        ],
    },
    Case {
        mode: "getlk-pid-untranslated",
        mechanisms: &["posix"],
        families: &["reporting"],
        must_fail: &["getlk-from-pid-namespace::posix"],
    },
    Case {
        mode: "locks-mandatory",
        mechanisms: &["posix", "ofd"],
        families: &["interplay"],
        must_fail: &["locks-are-advisory::posix", "locks-are-advisory::ofd"],
    },
    Case {
        mode: "stale-page-cache",
        mechanisms: &["flock", "posix", "ofd"],
        families: &["integrity"],
        must_fail: &[
            "interleaved-record-writers::flock",
            "interleaved-record-writers::posix",
            "interleaved-record-writers::ofd",
        ],
    },
    Case {
        mode: "whence-ignored",
        mechanisms: &["posix", "ofd"],
        families: &["byte-ranges"],
        must_fail: &[
            "range-whence-cur-and-end::posix",
            "range-whence-cur-and-end::ofd",
        ],
    },
    Case {
        mode: "getlk-free-reset",
        mechanisms: &["ofd"],
        families: &["byte-ranges"],
        must_fail: &["range-whence-cur-and-end::ofd"],
    },
    Case {
        mode: "errors-hidden",
        mechanisms: &["flock", "posix", "ofd"],
        families: &["arguments"],
        must_fail: &[
            "argument-errors::flock",
            "flock-operation-errors::flock",
            "argument-errors::posix",
            "record-lock-argument-errors::ofd",
        ],
    },
    Case {
        mode: "excl-ignored",
        mechanisms: &["pidfile"],
        families: &["lock-files"],
        must_fail: &["git-style-lock-file::pidfile", "exclusive-race-2::pidfile"],
    },
    Case {
        mode: "setlkw-giveup",
        mechanisms: &["flock", "posix", "ofd"],
        families: &["blocking", "faults"],
        must_fail: &[
            "waiter-keeps-waiting-while-held::flock",
            "waiter-keeps-waiting-while-held::posix",
            "waiter-keeps-waiting-while-held::ofd",
            "stopped-holder-keeps-lock::posix",
        ],
    },
    Case {
        mode: "conflict-eacces",
        mechanisms: &["flock", "ofd"],
        families: &["reporting"],
        must_fail: &["conflict-errno::flock", "conflict-errno::ofd"],
    },
    Case {
        mode: "lease-noop",
        mechanisms: &["lease"],
        families: &["leases"],
        must_fail: &[
            "lease-broken-by-conflicting-open::lease",
            "lease-denied-when-open-for-write::lease",
            "lease-broken-by-truncate::lease",
            "lease-break-signals-holder::lease",
            "lease-read-not-broken-by-reader::lease",
            "lease-modes-by-open-mode::lease",
        ],
    },
];

#[test]
fn every_family_catches_its_mutation() {
    let work = tempfile::tempdir().expect("tempdir");
    let control = run_catalog(None, &[], work.path(), "control");
    assert_eq!(
        control.code, 0,
        "the catalog must pass without a shim:\n{}",
        control.stderr
    );
    assert!(control.failed.is_empty());
    assert!(control.all.values().all(|(s, _)| s != "error"));
    let shim = build_shim(work.path());
    let mut covered = BTreeSet::new();
    for case in CASES {
        let started = std::time::Instant::now();
        let run = run_catalog(
            Some((&shim, case.mode)),
            case.mechanisms,
            work.path(),
            case.mode,
        );
        eprintln!(
            "mutation {}: {} trials failed in {:?}",
            case.mode,
            run.failed.len(),
            started.elapsed()
        );
        assert_eq!(
            run.code, 1,
            "mutation {} must make the run exit 1\n{}",
            case.mode, run.stderr
        );
        for id in case.must_fail {
            assert!(
                run.failed.contains(*id),
                "mutation {}: {id} did not catch it; failed: {:?}; passed: {}",
                case.mode,
                run.failed,
                run.passed.contains(*id)
            );
            assert!(
                run.stderr.contains(&format!("m::{id}")),
                "mutation {}: failing trial m::{id} is not named on the console:\n{}",
                case.mode,
                run.stderr
            );
        }
        covered.extend(case.families.iter().copied());
    }
    // Every family of the catalog has a mutation it catches.
    let catalog = lockcheck::plan::catalog::load_dir(&repo().join("scenarios")).expect("catalog");
    for s in &catalog.scenarios {
        let fam = s.scenario.family.value.as_str();
        assert!(covered.contains(fam), "family {fam} has no mutation test");
    }
}

#[test]
fn the_shim_leaves_the_harness_alone() {
    // Without the actor marker the shim must not change anything: the
    // harness itself runs with it preloaded and must behave.
    let work = tempfile::tempdir().expect("tempdir");
    let shim = build_shim(work.path());
    let o = Command::new(env!("CARGO_BIN_EXE_lockcheck"))
        .arg("list")
        .env("LD_PRELOAD", &shim)
        .env("LOCKCHECK_MUTATION", "close-keeps-locks")
        .output()
        .expect("running lockcheck");
    assert_eq!(o.status.code(), Some(0));
}

/// `lockcheck stress` on a fresh directory: its JSON result and exit status.
fn stress(
    shim: Option<(&Path, &str)>,
    work: &Path,
    tag: &str,
) -> (i32, serde_json::Value, PathBuf) {
    let target = work.join(format!("stress-{tag}"));
    let out = work.join(format!("stress-out-{tag}"));
    std::fs::create_dir_all(&target).expect("target dir");
    let target = std::fs::canonicalize(&target).expect("canonical target");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lockcheck"));
    cmd.args([
        "stress",
        "--duration",
        "3s",
        "--processes",
        "4",
        "--seed",
        "7",
    ])
    .arg("--target")
    .arg(format!("m={}", target.display()))
    .arg("--out")
    .arg(&out);
    if let Some((so, rate)) = shim {
        cmd.env("LD_PRELOAD", so)
            .env("LOCKCHECK_MUTATION", "rare-double-grant")
            .env("LOCKCHECK_MUTATION_RATE", rate)
            .env("LOCKCHECK_MUTATION_DIR", &target);
    }
    let o = cmd.output().expect("running lockcheck stress");
    let json = std::fs::read_to_string(out.join("m.stress.json")).unwrap_or_else(|e| {
        panic!(
            "no m.stress.json ({e}); stderr: {}",
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (
        o.status.code().unwrap_or(-1),
        serde_json::from_str(&json).expect("stress JSON"),
        out,
    )
}

#[test]
fn stress_catches_rare_double_grants_and_replays_them() {
    let work = tempfile::tempdir().expect("tempdir");
    let shim = build_shim(work.path());
    // Clean storage: no finding, and the oracles did check something.
    let (code, clean, _) = stress(None, work.path(), "clean");
    assert_eq!(code, 0, "clean storage: {clean}");
    assert_eq!(clean["verdict"], "clean");
    assert!(
        clean["operations"].as_u64().unwrap_or(0) > 10_000,
        "{clean}"
    );
    assert!(clean["cell_writes"].as_u64().unwrap_or(0) > 1000, "{clean}");
    // One refused exclusive request in 200 granted: caught, as overlapping
    // locks, with a replay scenario.
    let (code, bad, out) = stress(Some((&shim, "200")), work.path(), "bad");
    assert_eq!(code, 1, "{bad}");
    assert_eq!(bad["verdict"], "unsafe");
    let findings = bad["findings"].as_array().expect("findings");
    assert!(findings.iter().any(|f| f["kind"] == "overlap"), "{bad}");
    let replay = findings
        .iter()
        .find_map(|f| f["replay"].as_str())
        .expect("a replay scenario");
    let replay = out.join(replay);
    // The replay is a valid scenario that fails where every refusal is
    // turned into a grant, and passes on this machine's storage.
    let scenarios = work.path().join("replay");
    std::fs::create_dir_all(&scenarios).expect("dir");
    std::fs::copy(&replay, scenarios.join(replay.file_name().expect("name"))).expect("copy");
    let target = work.path().join("replay-target");
    std::fs::create_dir_all(&target).expect("dir");
    let target = std::fs::canonicalize(&target).expect("canonical");
    let run = |rate: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lockcheck"));
        cmd.arg("run")
            .arg("--scenarios")
            .arg(&scenarios)
            .arg("--target")
            .arg(format!("r={}", target.display()))
            .arg("--out")
            .arg(work.path().join("replay-out"))
            .arg("--quiet");
        if let Some(rate) = rate {
            cmd.env("LD_PRELOAD", &shim)
                .env("LOCKCHECK_MUTATION", "rare-double-grant")
                .env("LOCKCHECK_MUTATION_RATE", rate)
                .env("LOCKCHECK_MUTATION_DIR", &target);
        }
        let o = cmd.output().expect("running the replay");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (ok, err) = run(None);
    assert_eq!(ok, Some(0), "the replay on clean storage: {err}");
    let (broken, err) = run(Some("1"));
    assert_eq!(
        broken,
        Some(1),
        "the replay where every refusal is a grant: {err}"
    );
}
