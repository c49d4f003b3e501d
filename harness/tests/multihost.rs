//! Actors on other hosts, reached through launcher commands, and lab faults
//! given as commands. The "other host" here is a network namespace (actors
//! in it share this kernel, so the harness sees them in its own /proc) or a
//! PID namespace (it does not, and an agent there reads /proc for it): the
//! two ways the harness observes a remote actor. Both need root; without it
//! the trials are listed as ignored, with the reason.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::Value;

mod common;

fn lockcheck(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lockcheck"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("running lockcheck")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("multihost-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("dir")).expect("scratch dir");
    std::fs::create_dir_all(d.join("out")).expect("out dir");
    d
}

fn sh(cmd: &str) -> Result<String, Failed> {
    let o = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if !o.status.success() {
        return Err(format!("{cmd}: {}", String::from_utf8_lossy(&o.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// A network namespace for the test's lifetime.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Result<Self, Failed> {
        let name = format!("lc{tag}{}", std::process::id());
        sh(&format!("ip netns add {name}"))?;
        let ns = Netns(name);
        sh(&format!("ip -n {} link set lo up", ns.0))?;
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh(&format!(
            "ip netns pids {0} | xargs -r kill -9; ip netns del {0}",
            self.0
        ));
    }
}

/// A process in its own PID and mount namespace that other processes can
/// join with nsenter, for the test's lifetime.
struct PidNs {
    holder: std::process::Child,
    inner: i32,
}

impl PidNs {
    fn new() -> Result<Self, Failed> {
        let holder = Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("unshare: {e}"))?;
        // The sleep inside is unshare's only child; wait for it to exist.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let children =
                std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", holder.id()))
                    .unwrap_or_default();
            if let Some(pid) = children.split_whitespace().next() {
                let inner = pid.parse().map_err(|e| format!("child pid: {e}"))?;
                return Ok(PidNs { holder, inner });
            }
            if std::time::Instant::now() > deadline {
                return Err("unshare's child did not appear within 10 s".into());
            }
            std::thread::yield_now();
        }
    }
}

impl Drop for PidNs {
    fn drop(&mut self) {
        // Killing the namespace's init kills everything in it.
        let _ = Command::new("kill")
            .args(["-9", &self.inner.to_string()])
            .status();
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

fn report(out: &Path, label: &str) -> Result<Value, Failed> {
    let text = std::fs::read_to_string(out.join(format!("{label}.json")))
        .map_err(|e| format!("report {label}.json: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("report: {e}").into())
}

fn result<'a>(r: &'a Value, scenario: &str, mech: &str) -> Result<&'a Value, Failed> {
    r["results"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|t| t["scenario"] == scenario && t["mechanism"] == mech)
        })
        .ok_or_else(|| format!("no result for {scenario}::{mech}").into())
}

fn expect_status(r: &Value, scenario: &str, mech: &str, status: &str) -> Result<(), Failed> {
    let t = result(r, scenario, mech)?;
    if t["status"] != status {
        return Err(format!(
            "{scenario}::{mech}: expected {status}, got {} ({})\n{}",
            t["status"],
            t["reason"],
            serde_json::to_string_pretty(&t["failure"]).unwrap_or_default()
        )
        .into());
    }
    Ok(())
}

/// lockcheck's exit status must be `code`; `why` says why in the failure.
fn expect_exit(o: &Output, code: i32, why: &str) -> Result<(), Failed> {
    if o.status.code() != Some(code) {
        return Err(format!(
            "lockcheck exited {:?}, expected {code} ({why})\n{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stderr)
        )
        .into());
    }
    Ok(())
}

fn run_ok(args: &[&str]) -> Result<(), Failed> {
    let o = lockcheck(args);
    if !o.status.success() {
        return Err(format!(
            "lockcheck {args:?} exited {:?}\n{}\n{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
        .into());
    }
    Ok(())
}

/// Host b is a network namespace: cross-client exclusion holds; a crash
/// (every process of the namespace killed) frees the lock and the time to
/// get it is measured. (A partition takes nothing from a holder on the same
/// kernel: that scenario waits out its bound, and runs in the NFS lab.)
fn netns_host_and_faults() -> Result<(), Failed> {
    let ns = Netns::new("n")?;
    let d = scratch("netns");
    let target = format!("t={}", d.join("dir").display());
    let host = format!("b=ip netns exec {}", ns.0);
    let crash = format!("crash=ip netns pids {} | xargs -r kill -9", ns.0);
    let down = format!("disconnect=ip -n {} link set lo down", ns.0);
    let up = format!("reconnect=ip -n {} link set lo up", ns.0);
    let out = d.join("out");
    run_ok(&[
        "run",
        "--target",
        &target,
        "--host",
        &host,
        "--fault",
        &crash,
        "--fault",
        &down,
        "--fault",
        &up,
        "--out",
        out.to_str().ok_or("utf8")?,
        "cross-client",
        "crashed-client",
    ])?;
    let r = report(&out, "t")?;
    for m in ["flock", "posix", "ofd"] {
        expect_status(&r, "cross-client-exclusion", m, "pass")?;
    }
    let t = result(&r, "cross-client-exclusion", "posix")?;
    let hosts: Vec<&str> = t["actors"]
        .as_array()
        .ok_or("actors")?
        .iter()
        .filter_map(|a| a["host"].as_str())
        .collect();
    if hosts != ["a", "b", "a"] {
        return Err(format!("actor hosts in the report: {hosts:?}").into());
    }
    expect_status(&r, "crashed-client-lock-recovered", "posix", "pass")?;
    let c = result(&r, "crashed-client-lock-recovered", "posix")?;
    if c["measurements"].as_array().is_none_or(|m| m.is_empty()) {
        return Err(format!("no time-to-lock measured after the crash: {c}").into());
    }
    let _ = std::fs::remove_dir_all(&d);
    Ok(())
}

/// Host b is a PID namespace: the harness cannot see its actors in its own
/// /proc, so an agent on b reports whether they wait; exclusion still holds
/// and the evidence of the wait comes from b's kernel view.
fn pid_namespace_host_uses_agent() -> Result<(), Failed> {
    let ns = PidNs::new()?;
    let d = scratch("pidns");
    let target = format!("t={}", d.join("dir").display());
    let host = format!("b=nsenter -t {} -p -m --", ns.inner);
    let out = d.join("out");
    run_ok(&[
        "run",
        "--target",
        &target,
        "--host",
        &host,
        "--out",
        out.to_str().ok_or("utf8")?,
        "cross-client",
    ])?;
    let r = report(&out, "t")?;
    for m in ["flock", "posix", "ofd"] {
        expect_status(&r, "cross-client-exclusion", m, "pass")?;
        let t = result(&r, "cross-client-exclusion", m)?;
        let blocked = t["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["step"] == 5))
            .and_then(|s| s["observed"].as_str())
            .unwrap_or("");
        if !blocked.starts_with("blocked:") {
            return Err(format!("{m}: step 5 observed {blocked:?}").into());
        }
    }
    let _ = std::fs::remove_dir_all(&d);
    Ok(())
}

/// Host b's actors run as another user (the launcher is `setpriv` to
/// nobody, as an ssh login to another account would be): they cannot open
/// what lockcheck made here. That is not a locking result: the trials
/// error, naming the host and what to do, and none fails.
fn other_user_on_host_b_errors() -> Result<(), Failed> {
    let d = scratch("otheruser");
    let target = format!("t={}", d.join("dir").display());
    let host = "b=setpriv --reuid=65534 --regid=65534 --clear-groups";
    let out = d.join("out");
    let o = lockcheck(&[
        "run",
        "--target",
        &target,
        "--host",
        host,
        "--out",
        out.to_str().ok_or("utf8")?,
        "cross-client-exclusion",
    ]);
    expect_exit(&o, 1, "errors")?;
    let r = report(&out, "t")?;
    for m in ["flock", "posix", "ofd"] {
        expect_status(&r, "cross-client-exclusion", m, "error")?;
        let t = result(&r, "cross-client-exclusion", m)?;
        let why = t["reason"].as_str().unwrap_or("");
        if !why.contains("on host b") || !why.contains("same user") {
            return Err(format!("{m}: reason {why:?}").into());
        }
    }
    let _ = std::fs::remove_dir_all(&d);
    Ok(())
}

/// The cross-client scenarios fail under the mutation each is meant to
/// catch, with the second client in a network namespace (the actors there
/// load the shim too): record locks that cover the whole file, an
/// `l_whence` that is ignored, and a page cache that locks never refresh.
fn cross_client_scenarios_catch_their_mutations() -> Result<(), Failed> {
    let ns = Netns::new("m")?;
    let d = scratch("mutation");
    let shim = common::build_shim(&d);
    // (shim mode, the run's filter, the trials that must fail)
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
    let cases: [Case; 3] = [
        (
            "ranges-whole-file",
            "cross-client-range-conflicts",
            &[
                ("cross-client-range-conflicts", "posix"),
                ("cross-client-range-conflicts", "ofd"),
            ],
        ),
        (
            "whence-ignored",
            "range-seek-end-after-other-client-truncates",
            &[
                ("range-seek-end-after-other-client-truncates", "posix"),
                ("range-seek-end-after-other-client-truncates", "ofd"),
            ],
        ),
        (
            "stale-page-cache",
            "cross-client-interleaved-records",
            &[
                ("cross-client-interleaved-records", "flock"),
                ("cross-client-interleaved-records", "posix"),
                ("cross-client-interleaved-records", "ofd"),
            ],
        ),
    ];
    for (mode, filter, must_fail) in cases {
        let dir = d.join(format!("dir-{mode}"));
        let out = d.join(format!("out-{mode}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let dir = std::fs::canonicalize(&dir).map_err(|e| format!("{e}"))?;
        let o = Command::new(env!("CARGO_BIN_EXE_lockcheck"))
            .args(["run", "--quiet", "--target"])
            .arg(format!("t={}", dir.display()))
            .arg("--host")
            .arg(format!("b=ip netns exec {}", ns.0))
            .arg("--out")
            .arg(&out)
            .arg(filter)
            .current_dir(repo())
            .env("LD_PRELOAD", &shim)
            .env("LOCKCHECK_MUTATION", mode)
            .env("LOCKCHECK_MUTATION_DIR", &dir)
            .output()
            .map_err(|e| format!("running lockcheck: {e}"))?;
        expect_exit(&o, 1, &format!("mutation {mode}"))?;
        let r = report(&out, "t")?;
        for (scenario, mech) in must_fail {
            expect_status(&r, scenario, mech, "fail")
                .map_err(|e| format!("mutation {mode}: {}", e.message().unwrap_or_default()))?;
        }
    }
    let _ = std::fs::remove_dir_all(&d);
    Ok(())
}

/// A fault that reaches every target (a server restart) is injected once for
/// the trials of one scenario on all targets, which run together; faults
/// naming `{target}` stay per target. Bounds in leases follow `--lease`.
fn global_fault_is_shared_by_all_targets() -> Result<(), Failed> {
    let ns = Netns::new("g")?;
    let d = scratch("global");
    std::fs::create_dir_all(d.join("dir2")).map_err(|e| e.to_string())?;
    let log = d.join("restarts.log");
    let t1 = format!("t1={}", d.join("dir").display());
    let t2 = format!("t2={}", d.join("dir2").display());
    let host = format!("b=ip netns exec {}", ns.0);
    let restart = format!("restart-server=echo restarted >> {}", log.display());
    let out = d.join("out");
    let o = lockcheck(&[
        "run",
        "--target",
        &t1,
        "--target",
        &t2,
        "--host",
        &host,
        "--fault",
        "disconnect=echo cut {target} {host}",
        "--fault",
        "reconnect=echo back {target} {host}",
        "--fault",
        &restart,
        "--lease",
        "1s",
        "--out",
        out.to_str().ok_or("utf8")?,
        "server-restart",
    ]);
    expect_exit(
        &o,
        1,
        "on a local filesystem the cut-off holder keeps its lock",
    )?;
    let restarts = std::fs::read_to_string(&log).map_err(|e| e.to_string())?;
    if restarts.lines().count() != 1 {
        return Err(format!("the restart ran {} times", restarts.lines().count()).into());
    }
    for label in ["t1", "t2"] {
        let r = report(&out, label)?;
        let t = result(&r, "server-restart-reclaim", "posix")?;
        // The holder on b keeps its lock (one kernel): the taker is still
        // waiting after three leases of 1 s; a timeout, so divergent.
        if t["status"] != "fail" || t["verdict"] != "divergent" {
            return Err(format!("{label}: {} {}", t["status"], t["verdict"]).into());
        }
        // Waited for the whole bound (counted from when the call was sent,
        // a few milliseconds after the step began).
        let observed = t["failure"]["observed"].as_str().unwrap_or("");
        let waited_ms = observed
            .split("still waiting after ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse::<u64>().ok());
        if !waited_ms.is_some_and(|ms| (2900..10_000).contains(&ms)) {
            return Err(format!("{label}: {observed}").into());
        }
    }
    let _ = std::fs::remove_dir_all(&d);
    Ok(())
}

/// Without other hosts, scenarios that need one are skipped and say why.
fn single_host_skips_with_reason() -> Result<(), Failed> {
    let d = scratch("single");
    let target = format!("t={}", d.join("dir").display());
    let out = d.join("out");
    run_ok(&[
        "run",
        "--target",
        &target,
        "--out",
        out.to_str().ok_or("utf8")?,
        "client",
    ])?;
    let r = report(&out, "t")?;
    for m in ["flock", "posix", "ofd"] {
        let t = result(&r, "cross-client-exclusion", m)?;
        let reason = t["reason"].as_str().unwrap_or("");
        if t["status"] != "skip" || !reason.contains("host b") {
            return Err(format!("{m}: {} {reason:?}", t["status"]).into());
        }
    }
    let _ = std::fs::remove_dir_all(&d);
    Ok(())
}

/// Bad host, fault and target arguments are usage errors (exit 2) with a hint.
fn bad_arguments_exit_2() -> Result<(), Failed> {
    let d = scratch("args");
    let dir = d.join("dir");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--host".into(), "b".into()], "NAME=COMMAND"),
        (vec!["--host".into(), "b=".into()], "empty"),
        (vec!["--host".into(), "a=ssh x".into()], "this host"),
        (vec!["--host".into(), "b=ssh 'x".into()], "--host"),
        (
            vec!["--fault".into(), "explode=true".into()],
            "unknown fault",
        ),
        (vec!["--fault".into(), "crash".into()], "KIND=COMMAND"),
        (
            vec!["--fault".into(), "crash=true".into()],
            "needs --fault reconnect",
        ),
        (
            vec![
                "--fault".into(),
                "reconnect=true".into(),
                "--fault".into(),
                "reconnect=false".into(),
            ],
            "given twice",
        ),
        (
            vec!["--target".into(), format!("t={},b:", dir.display())],
            "HOST:DIR",
        ),
        (
            vec!["--target".into(), format!("t={},c:/x", dir.display())],
            "host c is not defined",
        ),
    ];
    for (mut args, word) in cases {
        if !args.contains(&"--target".to_string()) {
            args.extend(["--target".into(), format!("t={}", dir.display())]);
        }
        args.insert(0, "run".into());
        args.extend(["--out".into(), d.join("out").display().to_string()]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = lockcheck(&refs);
        let err = String::from_utf8_lossy(&o.stderr);
        if o.status.code() != Some(2) || !err.contains(word) || err.contains("panicked") {
            return Err(format!(
                "{args:?}: exit {:?}, expected 2 and {word:?} in:\n{err}",
                o.status.code()
            )
            .into());
        }
    }
    let _ = std::fs::remove_dir_all(&d);
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let have = |tool: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let why = |tools: &[&str]| -> Option<String> {
        if !root {
            return Some("needs root (namespaces)".into());
        }
        tools
            .iter()
            .find(|t| !have(t))
            .map(|t| format!("needs the `{t}` command"))
    };
    let mut trials = vec![
        Trial::test(
            "single_host_skips_with_reason",
            single_host_skips_with_reason,
        ),
        Trial::test("bad_arguments_exit_2", bad_arguments_exit_2),
    ];
    for (name, f, tools) in [
        (
            "netns_host_and_faults",
            netns_host_and_faults as fn() -> Result<(), Failed>,
            &["ip"][..],
        ),
        (
            "pid_namespace_host_uses_agent",
            pid_namespace_host_uses_agent,
            &["unshare", "nsenter"][..],
        ),
        (
            "other_user_on_host_b_errors",
            other_user_on_host_b_errors,
            &["setpriv"][..],
        ),
        (
            "cross_client_scenarios_catch_their_mutations",
            cross_client_scenarios_catch_their_mutations,
            &["ip", "cc"][..],
        ),
        (
            "global_fault_is_shared_by_all_targets",
            global_fault_is_shared_by_all_targets,
            &["ip"][..],
        ),
    ] {
        let t = Trial::test(name, f);
        trials.push(match why(tools) {
            Some(reason) => t.with_ignored_flag(true).with_kind(reason),
            None => t,
        });
    }
    libtest_mimic::run(&args, trials).exit();
}
