//! `cargo bench`: what the harness itself costs, next to the raw costs it
//! is built from, measured in the same run on this machine:
//!
//! - a process spawn (fork + exec of /bin/true, waited for) and an
//!   uncontended flock lock+unlock, in this process;
//! - the full catalog on the default targets (local filesystem and tmpfs):
//!   wall time with the default jobs and with one job;
//! - the harness's cost per trial: trial time minus the time its actors
//!   spent inside the calls the scenario asked for;
//! - how soon a blocked waiter is recognized (from `lockcheck bench`).
//!
//! It prints each figure with its target and ratio, and exits 1 if a target
//! is missed. Options: `--runs N` (catalog runs, default 5).

use std::os::fd::AsRawFd;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

const EXE: &str = env!("CARGO_BIN_EXE_lockcheck");

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Median wall time of spawning /bin/true and waiting for it, in ms.
fn spawn_ms() -> f64 {
    let mut v: Vec<f64> = (0..200)
        .filter_map(|_| {
            let t = Instant::now();
            Command::new("/bin/true")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .status()
                .ok()
                .filter(|s| s.success())
                .map(|_| t.elapsed().as_secs_f64() * 1000.0)
        })
        .collect();
    median(&mut v)
}

/// Median of one uncontended flock(LOCK_EX) + flock(LOCK_UN), in µs.
fn lock_us(dir: &std::path::Path) -> f64 {
    let Ok(f) = std::fs::File::create(dir.join("raw")) else {
        return f64::NAN;
    };
    let fd = f.as_raw_fd();
    let mut v = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        let t = Instant::now();
        // SAFETY: flock on a descriptor this function owns.
        unsafe {
            libc::flock(fd, libc::LOCK_EX);
            libc::flock(fd, libc::LOCK_UN);
        }
        v.push(t.elapsed().as_secs_f64() * 1e6);
    }
    median(&mut v)
}

struct CatalogRun {
    wall_s: f64,
    trials: usize,
    /// Per trial that ran: (duration ms, harness overhead ms).
    per_trial: Vec<(f64, f64)>,
}

/// One full catalog run on the default targets, timed from outside.
fn catalog(jobs: Option<usize>, out: &std::path::Path) -> Result<CatalogRun, String> {
    let mut cmd = Command::new(EXE);
    cmd.args(["run", "-q", "--format", "json", "--out"])
        .arg(out);
    if let Some(j) = jobs {
        cmd.args(["--jobs", &j.to_string()]);
    }
    let t = Instant::now();
    let o = cmd
        .stderr(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let wall_s = t.elapsed().as_secs_f64();
    if !o.status.success() {
        return Err(format!("lockcheck run exited with {}", o.status));
    }
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).map_err(|e| e.to_string())?;
    let mut per_trial = Vec::new();
    let mut trials = 0;
    for r in doc["reports"].as_array().into_iter().flatten() {
        for x in r["results"].as_array().into_iter().flatten() {
            trials += 1;
            if x["status"] == "skip" {
                continue;
            }
            let d = x["duration_ms"].as_f64().unwrap_or(0.0);
            let calls = x["in_calls_ms"].as_f64().unwrap_or(0.0);
            per_trial.push((d, (d - calls).max(0.0)));
        }
    }
    Ok(CatalogRun {
        wall_s,
        trials,
        per_trial,
    })
}

/// Blocked-detection and lock latencies from `lockcheck bench` on `dir`:
/// (detection medians in µs, detection p99s in µs), over the mechanisms.
fn detection(dir: &std::path::Path) -> Result<(Vec<f64>, Vec<f64>), String> {
    let o = Command::new(EXE)
        .args(["bench", "--format", "json", "--target"])
        .arg(format!("bench={}", dir.display()))
        .stderr(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err(format!("lockcheck bench exited with {}", o.status));
    }
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).map_err(|e| e.to_string())?;
    let mut med = Vec::new();
    let mut p99 = Vec::new();
    for t in doc["targets"].as_array().into_iter().flatten() {
        for m in t["benchmarks"]["results"].as_array().into_iter().flatten() {
            if let (Some(a), Some(b)) = (
                m["blocked_seen"]["median_us"].as_f64(),
                m["blocked_seen"]["p99_us"].as_f64(),
            ) {
                med.push(a);
                p99.push(b);
            }
        }
    }
    Ok((med, p99))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // cargo bench passes `--bench`; a filter or other flags are ignored.
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(5)
        .max(1);
    let Ok(scratch) = tempfile::tempdir() else {
        eprintln!("cannot make a scratch directory");
        return ExitCode::from(2);
    };
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "lockcheck harness benchmarks: {cpus} CPUs, Linux {}, {runs} catalog runs\n",
        kernel.trim()
    );

    let spawn = spawn_ms();
    let lock = lock_us(scratch.path());
    let row = |label: &str, value: String| println!("  {label:<54} {value}");
    println!("raw costs");
    row(
        "spawn a process (fork+exec /bin/true, wait)",
        format!("{spawn:.3} ms"),
    );
    row(
        "flock LOCK_EX + LOCK_UN, uncontended",
        format!("{lock:.3} µs"),
    );

    let mut walls = Vec::new();
    let mut overheads = Vec::new();
    let mut durations = Vec::new();
    let mut trials = 0;
    for k in 0..runs {
        match catalog(None, &scratch.path().join(format!("run{k}"))) {
            Ok(r) => {
                walls.push(r.wall_s);
                trials = r.trials;
                for (d, o) in r.per_trial {
                    durations.push(d);
                    overheads.push(o);
                }
            }
            Err(e) => {
                eprintln!("catalog run failed: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let one_job = catalog(Some(1), &scratch.path().join("one-job"))
        .map(|r| r.wall_s)
        .unwrap_or(f64::NAN);
    let wall = median(&mut walls);
    let overhead = median(&mut overheads);
    let overhead_p90 = percentile(&mut overheads, 0.9);
    let duration = median(&mut durations);
    let (mut det, mut det99) = match detection(scratch.path()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("lockcheck bench failed: {e}");
            return ExitCode::from(1);
        }
    };
    let detect = median(&mut det) / 1000.0;
    let detect99 = percentile(&mut det99, 1.0) / 1000.0;

    println!("\nthe harness");
    row(
        &format!("full catalog, local + tmpfs ({trials} trials), {cpus} jobs"),
        format!("{wall:.3} s (median; one job: {one_job:.3} s)"),
    );
    row(
        "trial time, median",
        format!("{duration:.3} ms = {:.1} process spawns", duration / spawn),
    );
    row(
        "harness cost per trial, median (p90)",
        format!(
            "{overhead:.3} ms ({overhead_p90:.3} ms) = {:.1} process spawns",
            overhead / spawn
        ),
    );
    row(
        "blocked waiter recognized after, median (worst p99)",
        format!(
            "{detect:.3} ms ({detect99:.3} ms) = {:.0} lock calls",
            detect * 1000.0 / lock
        ),
    );

    let checks = [
        ("full catalog ≤ 1.5 s", wall <= 1.5),
        ("harness cost per trial ≤ 5 ms", overhead <= 5.0),
        ("blocked waiter recognized ≤ 2 ms", detect <= 2.0),
    ];
    println!("\ntargets");
    let mut ok = true;
    for (what, met) in checks {
        println!("  {} {what}", if met { "met   " } else { "MISSED" });
        ok &= met;
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
