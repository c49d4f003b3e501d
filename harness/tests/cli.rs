//! The command line as a user meets it: exit statuses, error messages with
//! `file:line:column`, refused targets, the schema, and no leftovers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn lockcheck(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lockcheck"))
        .args(args)
        .output()
        .expect("running lockcheck")
}

/// A tmpfs mounted (as root) with these options, unmounted when dropped.
struct Mounted(PathBuf);

fn mount_tmpfs(at: &Path, options: &str) -> Mounted {
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", options, "tmpfs"])
        .arg(at)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "mount a tmpfs ({options}) on {}", at.display());
    Mounted(at.to_path_buf())
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// `lockcheck run` of the repository's catalog on one target.
fn run_catalog(target: &str, out: &Path, extra: &[&str]) -> Output {
    run_scenarios(&repo().join("scenarios"), target, out, extra)
}

/// `lockcheck run` of the scenarios in a directory on one target.
fn run_scenarios(scenarios: &Path, target: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "run",
        "--scenarios",
        scenarios.to_str().expect("utf8"),
        "--target",
        target,
        "--out",
        out.to_str().expect("utf8"),
    ];
    args.extend_from_slice(extra);
    lockcheck(&args)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const HEAD: &str =
    "name: bad\nsummary: s\nreference: r\nfamily: exclusion\nactors: [a, b]\nsteps:\n";

/// (file content, the line:column the message must point at, a word the message must contain)
fn malformed() -> Vec<(&'static str, Vec<u8>, &'static str, &'static str)> {
    let step = |s: &str| format!("{HEAD}{s}").into_bytes();
    // Record locks only (flock has no ranges), a file open: the step is line 10.
    let ranged = |s: &str| {
        format!(
            "name: bad\nsummary: s\nreference: r\nfamily: exclusion\nmechanisms: [posix, ofd]\n\
             not-applicable: {{flock: n/a}}\nactors: [a, b]\nsteps:\n  - open: {{actor: a, path: f}}\n{s}"
        )
        .into_bytes()
    };
    vec![
        ("not-yaml", b"name: [unclosed\n".to_vec(), ":1:", ""),
        ("tab", step("\t- open: {actor: a, path: f}\n"), ":7:", "tab"),
        ("unknown-op", step("  - lokc: {actor: a}\n"), ":7:5:", "lokc"),
        ("unknown-key", step("  - open: {actor: a, path: f, colour: red}\n"), ":7:", "colour"),
        ("wrong-type", step("  - open: {actor: a, path: f, create: maybe}\n"), ":7:", ""),
        ("bad-expect", step("  - open: {actor: a, path: f, expect: fine}\n"), ":7:", "fine"),
        ("unknown-actor", step("  - open: {actor: zed, path: f}\n"), ":7:", "zed"),
        ("fd-never-opened", step("  - lock: {actor: a, fd: nope, mode: exclusive}\n"), ":7:", "nope"),
        ("escape", step("  - open: {actor: a, path: ../../etc/passwd}\n"), ":7:", "scratch"),
        ("overflow", step("  - open: {actor: a, path: f}\n  - lock: {actor: a, mode: shared, start: 99999999999999999999}\n"), ":8:", ""),
        ("empty", b"".to_vec(), ":1:1:", "empty"),
        ("non-utf8", b"name: bad\nsummary: \xff\xfe\n".to_vec(), ":2:10:", "UTF-8"),
        ("duplicate-actor", b"name: bad\nsummary: s\nreference: r\nfamily: exclusion\nactors: [a, a]\nsteps:\n  - open: {actor: a, path: f}\n".to_vec(), ":5:", "twice"),
        ("missing-steps", b"name: bad\nsummary: s\nreference: r\nfamily: exclusion\nactors: [a]\n".to_vec(), ":", "steps"),
        ("absolute-path", step("  - open: {actor: a, path: /etc/passwd}\n"), ":7:", "absolute"),
        ("negative-start", ranged("  - lock: {actor: a, mode: shared, start: -1, len: 10}\n"), ":10:", "EINVAL"),
        ("negative-len-before-0", ranged("  - lock: {actor: a, mode: shared, start: 2, len: -5}\n"), ":10:", "EINVAL"),
        ("range-past-max", ranged("  - lock: {actor: a, mode: shared, start: 9223372036854775807, len: 2}\n"), ":10:", "EOVERFLOW"),
        ("alias-bomb", {
            let mut t = String::from("name: bad\nsummary: s\nreference: r\nfamily: exclusion\nactors: &a0 [a, a, a, a, a, a, a, a, a, a]\n");
            t.push_str("steps: [");
            for k in 1..=9 {
                t.push_str(&format!("&a{k} [{}], ", vec![format!("*a{}", k - 1); 10].join(", ")));
            }
            t.push_str("*a9]\n");
            t.into_bytes()
        }, ":6:", ""),
        ("deep-nesting", format!("name: {}{}\n", "[".repeat(20_000), "]".repeat(20_000)).into_bytes(), ":1:", ""),
        ("very-large", format!("{HEAD}{}", "  - open: {actor: a, path: f}\n".repeat(100_000)).into_bytes(), ":", "at most"),
    ]
}

#[test]
fn validate_reports_file_line_column_and_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, content, at, word) in malformed() {
        let path = dir.path().join("bad.yaml");
        std::fs::write(&path, &content).expect("write");
        let began = std::time::Instant::now();
        let o = lockcheck(&["validate", path.to_str().expect("utf8")]);
        assert!(
            began.elapsed() < std::time::Duration::from_secs(10),
            "{name}: took {:?}",
            began.elapsed()
        );
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{name}: exit status\n{err}");
        assert!(!err.contains("panicked"), "{name}: panic\n{err}");
        let expected = format!("{}{at}", path.display());
        assert!(
            err.contains(&expected),
            "{name}: message should contain {expected:?}\n{err}"
        );
        assert!(
            err.contains(word),
            "{name}: message should mention {word:?}\n{err}"
        );
    }
}

#[test]
fn validate_accepts_the_catalog() {
    let mut args = vec!["validate".to_string()];
    for e in std::fs::read_dir(repo().join("scenarios")).expect("scenarios") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "yaml") {
            args.push(p.display().to_string());
        }
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = lockcheck(&refs);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn a_bad_file_in_the_catalog_stops_the_run_with_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scen = dir.path().join("scenarios");
    std::fs::create_dir(&scen).expect("mkdir");
    std::fs::write(
        scen.join("bad.yaml"),
        format!("{HEAD}  - lock: {{actor: a, mode: exclusive}}\n"),
    )
    .expect("write");
    let target = dir.path().join("t");
    std::fs::create_dir(&target).expect("mkdir");
    let o = lockcheck(&[
        "run",
        "--scenarios",
        scen.to_str().expect("utf8"),
        "--target",
        &format!("t={}", target.display()),
        "--out",
        dir.path().join("out").to_str().expect("utf8"),
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("bad.yaml:7:5"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    assert_eq!(
        std::fs::read_dir(&target).expect("ls").count(),
        0,
        "nothing may be written into the target"
    );
}

#[test]
fn refused_targets_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("file");
    std::fs::write(&file, "x").expect("write");
    let cases = [
        format!("x={}", dir.path().join("missing").display()),
        format!("x={}", file.display()),
        "x=/".to_string(),
        "x=/proc".to_string(),
        "x=/sys/kernel".to_string(),
        "x=/dev".to_string(),
        "no-equals-sign".to_string(),
        "bad label=/tmp".to_string(),
    ];
    for t in &cases {
        let o = lockcheck(&[
            "run",
            "--target",
            t,
            "--out",
            dir.path().join("out").to_str().expect("utf8"),
        ]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "--target {t}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(err.starts_with("lockcheck: "), "--target {t}: {err}");
    }
    assert!(
        !dir.path().join("out").exists(),
        "no report for a refused target"
    );
    // A read-only filesystem (as root: a read-only tmpfs).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let ro = dir.path().join("ro");
        std::fs::create_dir(&ro).expect("mkdir");
        let mounted = mount_tmpfs(&ro, "ro");
        let o = lockcheck(&[
            "run",
            "--target",
            &format!("ro={}", ro.display()),
            "--out",
            dir.path().join("out").to_str().expect("utf8"),
        ]);
        drop(mounted);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("not writable"), "{err}");
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["--no-such-flag"],
        vec!["run", "--mechanism", "fcntl"],
        vec!["run", "--jobs", "0"],
        vec!["run", "--target", "x=/tmp", "no-trial-has-this-name"],
        vec!["validate"],
    ] {
        let o = lockcheck(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
    let o = lockcheck(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("--target"));
}

#[test]
fn committed_schemas_are_current() {
    for (of, file) in [
        ("scenario", "scenarios/scenario.schema.json"),
        ("report", "reports/report.schema.json"),
        ("app", "apps/app.schema.json"),
        ("app-lab", "reports/app-lab.schema.json"),
    ] {
        let o = lockcheck(&["schema", "--of", of]);
        assert_eq!(o.status.code(), Some(0));
        let generated = String::from_utf8_lossy(&o.stdout).into_owned();
        let committed = std::fs::read_to_string(repo().join(file)).expect(file);
        assert!(
            committed == generated,
            "{file} is out of date; regenerate with: cargo run -q -- schema --of {of} > {file}"
        );
    }
}

/// Every field a report has is declared in the report schema, and every
/// field the schema requires is there.
#[test]
fn reports_follow_their_schema() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("reports/report.schema.json")).expect("schema"),
    )
    .expect("json");
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("reports/local.json")).expect("report"),
    )
    .expect("json");
    let declared = schema["properties"].as_object().expect("properties");
    for key in report.as_object().expect("object").keys() {
        assert!(declared.contains_key(key), "`{key}` is not in the schema");
    }
    for key in schema["required"].as_array().expect("required") {
        let key = key.as_str().expect("name");
        assert!(report.get(key).is_some(), "the report lacks `{key}`");
    }
    let trial = &schema["definitions"]["TrialResult"]["properties"];
    for r in report["results"].as_array().expect("results") {
        for key in r.as_object().expect("object").keys() {
            assert!(
                trial.get(key).is_some(),
                "result field `{key}` is not in the schema"
            );
        }
    }
}

/// A catalog of one scenario whose only failure is a timeout (a counter
/// step behind a held lock), and an empty target directory.
/// A symlink made during the run that leads out of the trial directory is
/// never followed: the step is refused (nothing outside is read, created
/// or locked), its trial errors with the reason, the other trials run, and
/// the exit status is 2. A symlink that stays inside is followed.
#[test]
fn a_symlink_out_of_the_trial_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).expect("mkdir");
    std::fs::write(outside.join("secret"), "keep").expect("write");
    let scenarios = dir.path().join("scenarios");
    std::fs::create_dir(&scenarios).expect("mkdir");
    let head = |name: &str| {
        format!(
            "name: {name}\nsummary: s\nreference: r\nfamily: exclusion\nseverity: unsafe\n\
             mechanisms: [flock]\nnot-applicable: {{posix: n/a, ofd: n/a}}\nactors: [a, b]\nsteps:\n"
        )
    };
    std::fs::write(
        scenarios.join("inside.yaml"),
        format!(
            "{}  - open: {{actor: a, path: f, create: true}}\n\
             \x20 - symlink: {{actor: a, target: f, path: link}}\n\
             \x20 - open: {{actor: b, path: link}}\n\
             \x20 - lock: {{actor: a, fd: f, mode: exclusive}}\n\
             \x20 - lock: {{actor: b, fd: link, mode: exclusive, expect: conflict}}\n",
            head("inside")
        ),
    )
    .expect("write");
    for (name, target, path, create) in [
        (
            "absolute",
            outside.display().to_string(),
            "out/secret",
            false,
        ),
        (
            "absolute-create",
            outside.display().to_string(),
            "out/new",
            true,
        ),
        (
            "relative",
            "../../../..".to_string(),
            "up/etc/passwd",
            false,
        ),
    ] {
        std::fs::write(
            scenarios.join(format!("{name}.yaml")),
            format!(
                "{}  - symlink: {{actor: a, target: \"{target}\", path: {}}}\n\
                 \x20 - open: {{actor: b, path: {path}, create: {create}, mode: read-write}}\n",
                head(name),
                path.split('/').next().unwrap_or_default(),
            ),
        )
        .expect("write");
    }
    let t = dir.path().join("t");
    std::fs::create_dir(&t).expect("mkdir");
    let out = dir.path().join("out");
    let o = run_scenarios(&scenarios, &format!("t={}", t.display()), &out, &["-q"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("leads out of the trial directory"), "{err}");
    assert!(err.contains("3 trial(s) refused"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        std::fs::read_to_string(outside.join("secret")).expect("read"),
        "keep"
    );
    assert!(!outside.join("new").exists(), "created outside");
    assert_eq!(entries(&t), Vec::<String>::new(), "scratch left behind");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("t.json")).expect("json"))
            .expect("parse");
    let mut ran = 0;
    for r in json["results"].as_array().expect("results") {
        let id = r["id"].as_str().unwrap_or_default();
        if r["mechanism"] != "flock" {
            continue;
        }
        ran += 1;
        if id.contains("::inside::") {
            assert_eq!(r["status"], "pass", "{r}");
        } else {
            assert_eq!(r["status"], "error", "{r}");
            let reason = r["reason"].as_str().unwrap_or_default();
            assert!(reason.starts_with("step 2 "), "{reason}");
            assert!(reason.contains("refused"), "{reason}");
        }
    }
    assert_eq!(ran, 4);
}

fn slow_counter() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenarios = dir.path().join("scenarios");
    std::fs::create_dir(&scenarios).expect("mkdir");
    std::fs::write(
        scenarios.join("slow-counter.yaml"),
        "name: slow-counter\nsummary: s\nreference: r\nfamily: integrity\nseverity: unsafe\n\
         mechanisms: [posix]\nnot-applicable: {flock: n/a, ofd: n/a}\nactors: [holder, w]\nsteps:\n\
         \x20 - open: {actors: all, path: counter, create: true}\n\
         \x20 - lock: {actor: holder, mode: exclusive}\n\
         \x20 - counter: {actor: w, times: 5, timeout: 200ms}\n",
    )
    .expect("write");
    let target = dir.path().join("t");
    std::fs::create_dir(&target).expect("mkdir");
    (dir, scenarios, target)
}

/// `--format json` puts the reports on stdout; `--junit` writes one file
/// for all targets; `--fail-on` chooses what makes the exit status 1.
#[test]
fn formats_and_fail_on() {
    let (dir, scenarios, target) = slow_counter();
    let out = dir.path().join("out");
    let junit = dir.path().join("all.xml");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--scenarios",
            scenarios.to_str().expect("utf8"),
            "--target",
            "disk=PLACEHOLDER",
            "--out",
            out.to_str().expect("utf8"),
        ];
        let t = format!("disk={}", target.display());
        args[4] = &t;
        args.extend_from_slice(extra);
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        lockcheck(&refs)
    };
    // The one failure is a timeout, so divergent, not unsafe.
    let o = run(&["--format", "json", "--junit", junit.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let doc: serde_json::Value =
        serde_json::from_slice(&o.stdout).expect("stdout is the JSON reports");
    assert_eq!(doc["reports"][0]["target"]["label"], "disk");
    assert!(
        stderr(&o).contains("divergent"),
        "the summary goes to stderr"
    );
    let xml = std::fs::read_to_string(&junit).expect("junit");
    assert!(xml.contains(r#"<testsuite name="disk""#), "{xml}");
    assert_eq!(run(&["--fail-on", "unsafe"]).status.code(), Some(0));
    assert_eq!(run(&["--fail-on", "divergent"]).status.code(), Some(1));
}

#[test]
fn a_run_leaves_nothing_in_the_target_and_writes_both_reports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("t");
    std::fs::create_dir(&target).expect("mkdir");
    let out = dir.path().join("out");
    let o = run_catalog(
        &format!("disk={}", target.display()),
        &out,
        &["--mechanism", "posix", "exclusive"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_dir(&target).expect("ls").count(),
        0,
        "scratch left behind"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("disk.json")).expect("json"))
            .expect("parse");
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["target"]["label"], "disk");
    let results = json["results"].as_array().expect("results");
    assert!(!results.is_empty());
    assert!(results
        .iter()
        .all(|r| r["mechanism"] == "posix"
            && r["id"].as_str().is_some_and(|i| i.contains("exclusive"))));
    let md = std::fs::read_to_string(out.join("disk.md")).expect("md");
    assert!(md.starts_with("# lockcheck report: `disk`"));
    let xml = std::fs::read_to_string(out.join("disk.junit.xml")).expect("junit");
    assert!(xml.contains(&format!(
        r#"<testsuite name="disk" tests="{}""#,
        results.len()
    )));
}

#[test]
fn committed_reports_match_the_catalog() {
    let catalog = lockcheck::plan::catalog::load_dir(&repo().join("scenarios")).expect("catalog");
    let mut seen = 0;
    for e in std::fs::read_dir(repo().join("reports")).expect("reports/") {
        let p = e.expect("entry").path();
        // The application lab's results are not a report (they have their
        // own schema, checked above).
        if p.extension().is_none_or(|x| x != "json")
            || p.to_string_lossy().ends_with(".schema.json")
            || p.file_name().is_some_and(|n| n == "app-lab.json")
        {
            continue;
        }
        seen += 1;
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).expect("read")).expect("json");
        assert_eq!(
            r["catalog"]["hash"].as_str(),
            Some(catalog.hash.as_str()),
            "{} was made from another catalog; regenerate the reports (see reports/README.md)",
            p.display()
        );
        assert_eq!(
            r["lockcheck_version"].as_str(),
            Some(env!("CARGO_PKG_VERSION")),
            "{}",
            p.display()
        );
        let md = p.with_extension("md");
        assert!(md.is_file(), "{} has no Markdown twin", p.display());
        let xml = p.with_extension("junit.xml");
        assert!(xml.is_file(), "{} has no JUnit twin", p.display());
    }
    assert!(
        seen >= 2,
        "reports/ should hold the default targets' reports"
    );
}

#[test]
fn scenarios_readme_lists_every_scenario() {
    let readme = std::fs::read_to_string(repo().join("scenarios/README.md")).expect("README");
    let catalog = lockcheck::plan::catalog::load_dir(&repo().join("scenarios")).expect("catalog");
    let table = lockcheck::plan::catalog::markdown_table(&catalog);
    assert!(
        readme.contains(&table),
        "the catalog in scenarios/README.md is out of date; replace it with the output of: lockcheck list --format markdown --scenarios scenarios"
    );
    for s in &catalog.scenarios {
        assert!(readme.contains(&format!("[`{0}`]({0}.yaml)", s.name())));
    }
}

/// A step that only times out (no reply, no lock wait seen) is a failure,
/// but never labelled unsafe: nothing was seen lost.
#[test]
fn a_timeout_is_a_failure_but_not_unsafe() {
    let (dir, scenarios, target) = slow_counter();
    let out = dir.path().join("out");
    let o = run_scenarios(&scenarios, &format!("disk={}", target.display()), &out, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("disk.json")).expect("json"))
            .expect("parse");
    let r = json["results"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["mechanism"] == "posix"))
        .expect("posix result");
    assert_eq!(r["status"], "fail", "{r}");
    assert_eq!(r["verdict"], "divergent", "{r}");
    assert_eq!(r["failure"]["timed_out"], true, "{r}");
    assert_eq!(json["summary"]["unsafe_failures"], 0);
}

/// `qualify` on tmpfs writes the whole bundle, with verdict pass.
#[test]
fn qualify_writes_a_bundle() {
    let shm = Path::new("/dev/shm");
    let Ok(target) = tempfile::tempdir_in(shm) else {
        eprintln!("skipped: no writable /dev/shm");
        return;
    };
    let bundle = tempfile::tempdir().expect("tempdir");
    let o = lockcheck(&[
        "qualify",
        "--target",
        &format!("shm={}", target.path().display()),
        "--out",
        bundle.path().to_str().expect("utf8"),
        "--repeat",
        "2",
        "-q",
        "exclusion",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for f in [
        "shm.json",
        "shm.md",
        "shm.junit.xml",
        "run-2/shm.json",
        "qualification.json",
        "qualification.md",
        "qualification.junit.xml",
        "matrix.html",
    ] {
        assert!(bundle.path().join(f).is_file(), "{f} is missing");
    }
    let q: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(bundle.path().join("qualification.json")).expect("json"),
    )
    .expect("parse");
    assert_eq!(q["verdict"], "pass");
    assert_eq!(q["repeats"], 2);
    assert!(q["command"].as_str().is_some_and(|c| c.contains("qualify")));
    assert!(String::from_utf8_lossy(&o.stdout).contains("qualification: pass"));
}

#[test]
fn clean_removes_only_what_a_gone_lockcheck_left() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(outside.path().join("precious"), "x").expect("write");
    let mark = |d: &Path, pid: u32| {
        std::fs::create_dir_all(d).expect("mkdir");
        std::fs::write(
            d.join(".lockcheck-scratch"),
            format!("{{\"pid\": {pid}, \"lockcheck\": \"0.1.0\"}}\n"),
        )
        .expect("marker");
    };
    // Left by a lockcheck that is gone (a pid that cannot exist), with
    // content and a symlink out of it that must not be followed.
    let gone = dir.path().join(".lockcheck-gone1");
    mark(&gone, 999_999_999);
    std::fs::write(gone.join("data"), "x").expect("write");
    std::os::unix::fs::symlink(outside.path(), gone.join("link")).expect("symlink");
    // Still running (this test's own pid), not marked, a symlink, a file.
    let live = dir.path().join(".lockcheck-live1");
    mark(&live, std::process::id());
    let unmarked = dir.path().join(".lockcheck-mine");
    std::fs::create_dir(&unmarked).expect("mkdir");
    let link = dir.path().join(".lockcheck-link");
    std::os::unix::fs::symlink(&gone, &link).expect("symlink");
    let other = dir.path().join("user-data");
    mark(&other, 999_999_999);

    let o = lockcheck(&["clean", dir.path().to_str().expect("utf8")]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(!gone.exists(), "{out}");
    assert!(
        outside.path().join("precious").exists(),
        "followed a symlink"
    );
    for kept in [&live, &unmarked, &other] {
        assert!(kept.exists(), "{} removed: {out}", kept.display());
    }
    assert!(std::fs::symlink_metadata(&link).is_ok(), "{out}");
    assert!(out.contains("1 left-over directory removed"), "{out}");
    assert!(out.contains("may still be running"), "{out}");

    let o = lockcheck(&["clean", dir.path().join("missing").to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn a_run_removes_what_a_killed_lockcheck_left_in_its_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let stale = dir.path().join(".lockcheck-killed");
    std::fs::create_dir(&stale).expect("mkdir");
    std::fs::write(stale.join(".lockcheck-scratch"), "{\"pid\": 999999999}\n").expect("marker");
    let o = lockcheck(&[
        "run",
        "--target",
        &format!("t={}", dir.path().display()),
        "--out",
        out.path().to_str().expect("utf8"),
        "t::exclusive-race-2::flock",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stale.exists());
    assert!(
        stderr(&o).contains("left by a lockcheck that is gone"),
        "{}",
        stderr(&o)
    );
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Processes whose working directory is below `dir` (actors run in their
/// trial's directory, inside lockcheck's scratch directory there).
fn processes_in(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(cwd) = std::fs::read_link(e.path().join("cwd")) {
            if cwd.starts_with(dir) && cwd != dir {
                found.push(format!(
                    "{} in {}",
                    e.file_name().to_string_lossy(),
                    cwd.display()
                ));
            }
        }
    }
    found
}

/// Wait for `cond` (polling; the deadline turns a hang into a failure).
fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::yield_now();
    }
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Start the catalog on the default targets with `dir` as the local target
/// and `tmp` as TMPDIR; returns once actors are running there.
fn start_run(dir: &Path, tmp: &Path, out: &Path) -> std::process::Child {
    let child = Command::new(env!("CARGO_BIN_EXE_lockcheck"))
        .args(["run", "-q", "--out"])
        .arg(out)
        .current_dir(dir)
        .env("TMPDIR", tmp)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start lockcheck");
    wait_for("actors in the target", 20, || !processes_in(dir).is_empty());
    child
}

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let mut status = None;
    wait_for("lockcheck to end", 30, || {
        status = child.try_wait().expect("wait");
        status.is_some()
    });
    status.expect("status")
}

#[test]
fn interrupted_runs_leave_no_process_mount_or_directory() {
    use std::os::unix::process::ExitStatusExt;
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGKILL] {
        let dir = tempfile::tempdir().expect("tempdir");
        let tmp = tempfile::tempdir().expect("tempdir");
        let out = tempfile::tempdir().expect("tempdir");
        let mut child = start_run(dir.path(), tmp.path(), out.path());
        // SAFETY: signalling the child this test started.
        unsafe { libc::kill(child.id() as i32, sig) };
        let status = wait_exit(&mut child);
        wait_for("the actors to be gone", 20, || {
            processes_in(dir.path()).is_empty()
        });
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        for d in [dir.path(), tmp.path()] {
            assert!(
                !mounts.contains(&d.display().to_string()),
                "signal {sig}: a mount under {} is left",
                d.display()
            );
        }
        if sig == libc::SIGKILL {
            assert_eq!(status.signal(), Some(sig));
            // Nothing could clean up: `lockcheck clean` does it, and only that.
            for d in [dir.path(), tmp.path()] {
                let left = entries(d);
                assert!(
                    left.iter().all(|e| e.starts_with(".lockcheck-")),
                    "{left:?}"
                );
                let o = lockcheck(&["clean", d.to_str().expect("utf8")]);
                assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
            }
        } else {
            assert_eq!(status.code(), Some(128 + sig), "signal {sig}");
            assert!(
                entries(out.path()).is_empty(),
                "no reports of a run cut short"
            );
        }
        for d in [dir.path(), tmp.path()] {
            assert!(
                entries(d).is_empty(),
                "signal {sig}: {:?} left in {}",
                entries(d),
                d.display()
            );
        }
    }
}

#[test]
fn an_unprivileged_run_skips_what_needs_root_and_fails_nothing() {
    use std::os::unix::fs::{chown, PermissionsExt};
    use std::os::unix::process::CommandExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: already unprivileged (the other tests cover this run)");
        return;
    }
    const NOBODY: u32 = 65534;
    let base = tempfile::tempdir().expect("tempdir");
    let own = |p: &Path| {
        chown(p, Some(NOBODY), Some(NOBODY)).expect("chown");
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    };
    own(base.path());
    // A copy of the binary the unprivileged user can surely reach.
    let exe = base.path().join("lockcheck");
    std::fs::copy(env!("CARGO_BIN_EXE_lockcheck"), &exe).expect("copy");
    own(&exe);
    let (dir, tmp, out) = (
        base.path().join("t"),
        base.path().join("tmp"),
        base.path().join("out"),
    );
    for d in [&dir, &tmp, &out] {
        std::fs::create_dir(d).expect("mkdir");
        own(d);
    }
    let o = Command::new(&exe)
        .args(["run", "-q", "--provision", "all", "--out"])
        .arg(&out)
        .current_dir(&dir)
        .env("TMPDIR", &tmp)
        .env("HOME", base.path())
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("run as nobody");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("not made here"),
        "provisioning needs root and says so: {err}"
    );
    let text = std::fs::read_to_string(out.join("local.json")).expect("report");
    let r: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(r["summary"]["fail"], 0, "{err}");
    assert_eq!(r["summary"]["error"], 0, "{err}");
    let skips: Vec<&str> = r["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|x| x["status"] == "skip")
        .filter_map(|x| x["reason"].as_str())
        .collect();
    assert!(
        skips
            .iter()
            .any(|s| s.contains("CAP_SYS_ADMIN") || s.contains("as root")),
        "what needs privileges is skipped with the reason: {skips:?}"
    );
    assert!(entries(&dir).is_empty(), "{:?}", entries(&dir));
    assert!(entries(&tmp).is_empty(), "{:?}", entries(&tmp));
}

/// A FUSE daemon that dies mid-run: every trial after that errors with the
/// reason (nothing fails, nothing hangs), the run ends, no actor is left,
/// and `lockcheck clean` removes the scratch directory the dead mount kept
/// (as root with bindfs; skipped otherwise).
#[test]
fn a_dead_fuse_daemon_errors_the_trials_and_the_run_ends() {
    let Some(lab) = FuseLab::new(&[
        "exclusive-blocks-until-release",
        "close-dup-releases-posix",
        "counter-4-actors",
        "lock-directory",
    ]) else {
        return;
    };
    let (dir, src, mnt, mut daemon) = (&lab.dir, &lab.src, &lab.mnt, lab.start());
    let out = dir.path().join("out");
    let mut run = lab.run(&["--repeat", "2"]);
    lab.wait_for_a_trial();
    daemon.kill().expect("kill bindfs");
    let _ = daemon.wait();
    let killed = std::time::Instant::now();
    let status = wait_exit(&mut run);
    let took = killed.elapsed();
    let o = run.wait_with_output().expect("output");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let _ = Command::new("umount").arg("-l").arg(mnt).status();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(took < std::time::Duration::from_secs(60), "{took:?}");
    wait_for("the actors to end", 10, || {
        processes_in(dir.path()).is_empty()
    });
    // The second run began after the daemon died: each trial errored with
    // the reason; none may read as a locking failure.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("fz.json")).expect("report"))
            .expect("parse");
    let mut errors = 0;
    for r in json["results"].as_array().expect("results") {
        match r["status"].as_str() {
            Some("skip") => {}
            Some("error") => {
                errors += 1;
                let reason = r["reason"].as_str().unwrap_or_default();
                assert!(
                    reason.contains("not connected") || reason.contains("ENOTCONN"),
                    "{}: {reason}",
                    r["id"]
                );
            }
            other => panic!("{}: {other:?} after the daemon died: {r}", r["id"]),
        }
    }
    assert!(errors >= 8, "{errors} errors");
    // What the dead mount kept is lockcheck's and is removed by clean.
    assert_eq!(entries(src).len(), 1, "{:?}", entries(src));
    let o = lockcheck(&["clean", src.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(entries(src), Vec::<String>::new());
}

/// The statuses of a run's trials, with the reasons of those that errored;
/// panics on a failed trial (running out of something is not a finding).
fn errors_only(report: &Path) -> (usize, Vec<String>) {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report).expect("report")).expect("parse");
    let mut passed = 0;
    let mut reasons = Vec::new();
    for r in json["results"].as_array().expect("results") {
        match r["status"].as_str() {
            Some("pass") => passed += 1,
            Some("skip" | "xfail") => {}
            Some("error") => reasons.push(r["reason"].as_str().unwrap_or_default().to_string()),
            other => panic!("{}: {other:?}: {r}", r["id"]),
        }
    }
    (passed, reasons)
}

/// A full disk: trials whose writes get ENOSPC error with that reason (never
/// "fail" or "unsafe"), the others pass, the run ends quickly (a counter
/// whose write failed still unlocks); a disk with no room at all is refused
/// with exit 2 and a hint. As root (it mounts a small tmpfs).
#[test]
fn a_full_disk_errors_trials_and_never_fails_them() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to mount a small tmpfs");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let t = dir.path().join("t");
    std::fs::create_dir(&t).expect("mkdir");
    let _mounted = mount_tmpfs(&t, "size=256k,nr_inodes=1000");
    // All but one page: lockcheck's marker takes it, data writes find none.
    std::fs::write(t.join("filler"), vec![0u8; 63 * 4096]).expect("fill");
    let out = dir.path().join("out");
    let began = std::time::Instant::now();
    let o = run_catalog(&format!("full={}", t.display()), &out, &["-q"]);
    let took = began.elapsed();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(took < std::time::Duration::from_secs(30), "{took:?}");
    let (passed, reasons) = errors_only(&out.join("full.json"));
    assert!(passed > 100, "{passed} passed");
    assert!(reasons.len() >= 10, "{reasons:?}");
    for r in &reasons {
        assert!(r.contains("ENOSPC") && r.contains("full"), "{r}");
    }
    assert_eq!(entries(&t), vec!["filler".to_string()]);
    // No room at all: the target is refused before anything runs.
    std::fs::write(t.join("last"), vec![0u8; 4096]).expect("fill");
    let o = lockcheck(&[
        "run",
        "--target",
        &format!("full={}", t.display()),
        "--out",
        out.to_str().expect("utf8"),
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("No space left") && err.contains("hint:"),
        "{err}"
    );
    let mut left = entries(&t);
    left.sort();
    assert_eq!(left, vec!["filler".to_string(), "last".to_string()]);
}

/// Out of descriptors (a limit of 60 for lockcheck and its actors): the
/// trials that cannot start or open error with the reason and a hint, none
/// fails, the others pass, and nothing is left behind.
#[test]
fn running_out_of_descriptors_errors_trials_and_never_fails_them() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let t = dir.path().join("t");
    std::fs::create_dir(&t).expect("mkdir");
    let out = dir.path().join("out");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lockcheck"));
    // One trial at a time: then exactly the trials that need more
    // descriptors than the limit leaves error (with two, whichever trial
    // starts beside a large one may too).
    cmd.args(["run", "-q", "--jobs", "1", "--scenarios"])
        .arg(repo().join("scenarios"))
        .arg("--target")
        .arg(format!("t={}", t.display()))
        .arg("--out")
        .arg(&out);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 60,
                rlim_max: 60,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = cmd.output().expect("lockcheck");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let (passed, reasons) = errors_only(&out.join("t.json"));
    // How many start beside a large one depends on the load (a trial that
    // waits lends its job slot): only that some pass is certain.
    assert!(passed > 20, "{passed} passed");
    assert!(!reasons.is_empty());
    for r in &reasons {
        assert!(
            r.contains("Too many open files") || r.contains("EMFILE"),
            "{r}"
        );
    }
    assert!(err.contains("ulimit -n"), "no hint: {err}");
    assert_eq!(entries(&t), Vec::<String>::new());
    assert_eq!(processes_in(dir.path()), Vec::<String>::new());
}

/// `--seed` fixes the order the trials start in (recorded in the reports
/// with each trial's start); another seed gives another order.
#[test]
fn the_same_seed_starts_the_trials_in_the_same_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = dir.path().join("t");
    std::fs::create_dir(&t).expect("mkdir");
    let order = |seed: &str, tag: &str| -> Vec<String> {
        let out = dir.path().join(tag);
        let o = run_catalog(
            &format!("t={}", t.display()),
            &out,
            &["--jobs", "1", "--seed", seed, "-q", "close", "exclusive"],
        );
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(0), "{err}");
        assert!(err.contains(&format!("--seed {seed}")), "{err}");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("t.json")).expect("report"))
                .expect("parse");
        assert_eq!(json["order_seed"].as_u64(), seed.parse().ok());
        let mut ran: Vec<(f64, String)> = json["results"]
            .as_array()
            .expect("results")
            .iter()
            .filter(|r| r["status"] != "skip")
            .map(|r| {
                (
                    r["started_ms"].as_f64().expect("started_ms"),
                    r["id"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        ran.sort_by(|a, b| a.0.total_cmp(&b.0));
        ran.into_iter().map(|(_, id)| id).collect()
    };
    let a = order("7", "a");
    assert!(a.len() >= 20, "{a:?}");
    assert_eq!(a, order("7", "b"));
    assert_ne!(a, order("8", "c"));
}

/// A filesystem that stops answering (its FUSE daemon stopped with
/// SIGSTOP: every call on it sleeps, as on a hard NFS mount whose server is
/// gone): the run still ends by itself, with exit 1 and its reports; the
/// trial under way and the rest error with the reason, none fails, and no
/// actor is left (as root with bindfs; skipped otherwise).
#[test]
fn a_filesystem_that_stops_answering_does_not_hang_the_run() {
    let Some(lab) = FuseLab::new(&["exclusive-blocks-until-release", "close-dup-releases-posix"])
    else {
        return;
    };
    std::fs::write(
        lab.scenarios.join("hold.yaml"),
        "name: hold\nsummary: s\nreference: r\nfamily: blocking\nmechanisms: [posix]\n\
         not-applicable: {flock: n/a, ofd: n/a}\nactors: [holder, waiter]\nsteps:\n\
         \x20 - open: {actors: all, path: f, create: true}\n\
         \x20 - lock: {actor: holder, mode: exclusive}\n\
         \x20 - lock: {actor: waiter, mode: exclusive, wait: true, expect: blocks}\n\
         \x20 - await: {actor: waiter, expect: blocks, for: 2s}\n\
         \x20 - open: {actor: holder, path: g, create: true}\n",
    )
    .expect("write");
    let (dir, mnt, mut daemon) = (&lab.dir, &lab.mnt, lab.start());
    let out = dir.path().join("out");
    let mut run = lab.run(&[]);
    // The longest trial first: the hold window; stop the daemon in it.
    lab.wait_for_a_trial();
    let pid = i32::try_from(daemon.id()).expect("pid");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let stopped = std::time::Instant::now();
    let mut status = None;
    let deadline = stopped + std::time::Duration::from_secs(120);
    while status.is_none() && std::time::Instant::now() < deadline {
        status = run.try_wait().expect("wait");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let took = stopped.elapsed();
    if status.is_none() {
        let _ = run.kill();
    }
    let o = run.wait_with_output().expect("output");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let _ = daemon.kill();
    let _ = daemon.wait();
    let _ = Command::new("umount").arg("-l").arg(mnt).status();
    let status = status.unwrap_or_else(|| panic!("lockcheck still running after {took:?}\n{err}"));
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("lockcheck clean"), "{err}");
    let (_, reasons) = errors_only(&out.join("fz.json"));
    assert!(reasons.len() >= 6, "{reasons:?}");
    for r in &reasons {
        assert!(r.contains("stopped answering"), "{r}");
    }
    wait_for("the actors to end", 10, || {
        processes_in(dir.path()).is_empty()
    });
    eprintln!("ended {took:?} after the filesystem stopped answering");
}

/// A FUSE passthrough (bindfs) of a source directory, and scenarios copied
/// from the catalog, for runs whose storage misbehaves. `None` (the test is
/// skipped) without root or bindfs.
struct FuseLab {
    dir: tempfile::TempDir,
    src: PathBuf,
    mnt: PathBuf,
    scenarios: PathBuf,
}

impl FuseLab {
    fn new(from_catalog: &[&str]) -> Option<FuseLab> {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if !root || Command::new("bindfs").arg("--version").output().is_err() {
            eprintln!("skipped: needs root and bindfs");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let (src, mnt, scenarios) = (
            dir.path().join("src"),
            dir.path().join("mnt"),
            dir.path().join("scenarios"),
        );
        for d in [&src, &mnt, &scenarios] {
            std::fs::create_dir(d).expect("mkdir");
        }
        for s in from_catalog {
            std::fs::copy(
                repo().join(format!("scenarios/{s}.yaml")),
                scenarios.join(format!("{s}.yaml")),
            )
            .expect("copy");
        }
        Some(FuseLab {
            dir,
            src,
            mnt,
            scenarios,
        })
    }

    /// Mount: the daemon runs in the foreground, as our child.
    fn start(&self) -> std::process::Child {
        let daemon = Command::new("bindfs")
            .arg("-f")
            .arg(&self.src)
            .arg(&self.mnt)
            .spawn()
            .expect("bindfs");
        let mnt = self.mnt.to_string_lossy().into_owned();
        wait_for("the FUSE mount", 10, || {
            std::fs::read_to_string("/proc/self/mountinfo")
                .unwrap_or_default()
                .lines()
                .any(|l| l.split(' ').nth(4) == Some(mnt.as_str()))
        });
        daemon
    }

    /// lockcheck on the mount, one trial at a time, output captured.
    fn run(&self, extra: &[&str]) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_lockcheck"))
            .args(["run", "--jobs", "1", "-q", "--scenarios"])
            .arg(&self.scenarios)
            .arg("--target")
            .arg(format!("fz={}", self.mnt.display()))
            .arg("--out")
            .arg(self.dir.path().join("out"))
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("lockcheck")
    }

    /// Until a trial directory shows in the source directory (the target
    /// is open and trials run).
    fn wait_for_a_trial(&self) {
        wait_for("a trial directory", 20, || {
            entries(&self.src).iter().any(|s| {
                std::fs::read_dir(self.src.join(s))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|e| e.file_name() != ".lockcheck-scratch")
            })
        });
    }
}

/// `lockcheck oracle` fails when an application did not do what the verdict
/// for its mount says, passes when it did, and refuses a broken observation
/// with `file:line:column` and exit 2.
#[test]
fn the_oracle_fails_on_a_disagreement() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = repo().join("reports/nfs3-nolock.json");
    let report = report.to_str().expect("utf-8");
    let case = |second: &str| {
        format!(
            "{{\"label\":\"nfs3-nolock\",\"app\":\"sqlite\",\"variant\":\"rollback-journal\",\"second\":\"{second}\",\"lost\":0,\"crash_recovered_s\":0.5,\"crash_tries\":1,\"crash_limit_s\":45}}\n"
        )
    };
    // On nolock, lockcheck says unsafe: a second writer agrees with it ...
    let agree = dir.path().join("agree.jsonl");
    std::fs::write(&agree, case("ran")).expect("write");
    let o = lockcheck(&[
        "oracle",
        "--observed",
        agree.to_str().expect("utf-8"),
        report,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("1 agree, 0 disagree"));
    // ... a refused one does not.
    let disagree = dir.path().join("disagree.jsonl");
    std::fs::write(&disagree, case("refused")).expect("write");
    let o = lockcheck(&[
        "oracle",
        "--observed",
        disagree.to_str().expect("utf-8"),
        report,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("✗ predicted unsafe, observed safe"));
    let broken = dir.path().join("broken.jsonl");
    std::fs::write(&broken, "{\"label\": 3}\n").expect("write");
    let o = lockcheck(&[
        "oracle",
        "--observed",
        broken.to_str().expect("utf-8"),
        report,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("broken.jsonl:1:"), "{}", stderr(&o));
}
