//! Stress runs: one agent per host ([`crate::actor::stress`]) with its
//! worker processes, all started together on a few small files of a
//! target, for a given time; then the data oracle's check across hosts and
//! the run's figures ([`crate::record::stress`]).

use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::actor::channel::Channel;
use crate::actor::stress::{
    file_name, AgentConfig, AgentReady, AgentResult, Finding, FindingKind, MechCounts, CELL, CELLS,
    FILES, REGION, STRESS_ARG,
};
use crate::engine::runner::Session;
use crate::record::stress::{Stress, StressFinding, StressMech, WaitLatency};
use crate::spec::scenario::Mechanism;

/// How a stress run goes.
#[derive(Debug, Clone)]
pub struct StressOptions {
    /// How long the workers run.
    pub duration: Duration,
    /// Worker processes on each host.
    pub processes: u32,
    /// The mechanisms requests use.
    pub mechanisms: Vec<Mechanism>,
    /// The seed of the workers' choices.
    pub seed: u64,
    /// A blocking request not granted within this is a finding.
    pub wait_bound: Duration,
}

/// How long an agent may take to start and fork its workers.
const AGENT_START: Duration = Duration::from_secs(30);
/// Beyond the duration and the wait bound: time for the last requests,
/// unlocks and the results to come back.
const AGENT_SLACK: Duration = Duration::from_secs(60);

struct Agent {
    host: String,
    child: Child,
    chan: Channel,
    /// Its stderr, in a file (read at the end).
    stderr: std::fs::File,
    /// Its process group here (agents started here directly).
    group: Option<i32>,
}

impl Agent {
    fn stderr_text(&mut self) -> String {
        use std::io::{Read as _, Seek as _};
        let mut s = String::new();
        let _ = self.stderr.seek(std::io::SeekFrom::Start(0));
        let _ = (&mut self.stderr).take(4096).read_to_string(&mut s);
        s.trim().to_string()
    }

    fn kill(&mut self) {
        if let Some(g) = self.group {
            // SAFETY: signalling the process group of our own child.
            unsafe { libc::kill(-g, libc::SIGKILL) };
        }
        let _ = self.child.kill();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
        let _ = self.child.wait();
    }
}

impl Session {
    /// A stress run on target `i`: workers on every host of the target.
    pub fn stress(&self, i: usize, opts: &StressOptions) -> Stress {
        let mut problems = Vec::new();
        let started = Instant::now();
        let mut stress = Stress {
            duration_ms: opts.duration.as_secs_f64() * 1000.0,
            elapsed_ms: 0.0,
            processes: opts.processes,
            hosts: Vec::new(),
            mechanisms: opts.mechanisms.clone(),
            seed: opts.seed,
            wait_bound_ms: opts.wait_bound.as_millis() as u64,
            operations: 0,
            operations_per_s: 0.0,
            results: Vec::new(),
            cells_checked: 0,
            cell_writes: 0,
            findings: Vec::new(),
            findings_dropped: 0,
            verdict: crate::record::stress::StressVerdict::Error,
            problems: Vec::new(),
        };
        let Some(t) = self.targets.get(i) else {
            stress.problems.push(format!("no target {i}"));
            return stress;
        };
        let dir = match t.trial_dir("stress") {
            Ok(d) => d,
            Err(e) => {
                stress.problems.push(e);
                return stress;
            }
        };
        let files = dir.clone();
        if let Err(e) = t.fs_call("making the stress files", move || {
            for record in [false, true] {
                for f in 0..FILES {
                    std::fs::write(files.join(file_name(record, f)), [0u8; REGION as usize])?;
                }
            }
            Ok(())
        }) {
            stress.problems.push(e);
            return stress;
        }
        let hosts = t.host_envs(&self.exe, &dir);
        stress.hosts = hosts.iter().map(|h| h.name.clone()).collect();
        let mut agents = Vec::new();
        for (n, h) in hosts.iter().enumerate() {
            let cfg = AgentConfig {
                host: h.name.clone(),
                host_index: n as u32,
                dir: h.dir.clone(),
                processes: opts.processes,
                mechanisms: opts.mechanisms.clone(),
                duration_ms: opts.duration.as_millis() as u64,
                seed: opts.seed,
                wait_bound_ms: opts.wait_bound.as_millis() as u64,
            };
            match start_agent(h, &cfg) {
                Ok(a) => agents.push(a),
                Err(e) => problems.push(e),
            }
        }
        // Everyone ready (every worker forked and its files open), then go.
        if problems.is_empty() {
            let deadline = Instant::now() + AGENT_START;
            for a in &mut agents {
                match a.chan.recv_until::<AgentReady>(deadline) {
                    Ok(Some(_)) => {}
                    Ok(None) => problems.push(format!(
                        "the stress agent on host {} did not start within {} s",
                        a.host,
                        AGENT_START.as_secs()
                    )),
                    Err(e) => {
                        let err = a.stderr_text();
                        problems.push(format!(
                            "the stress agent on host {} failed to start: {e} {err}",
                            a.host
                        ))
                    }
                }
            }
        }
        let mut results: Vec<AgentResult> = Vec::new();
        let mut stuck: Vec<Finding> = Vec::new();
        if problems.is_empty() {
            let go_by = Instant::now() + Duration::from_secs(5);
            for a in &mut agents {
                if let Err(e) = a.chan.send(&"go", go_by) {
                    problems.push(format!("telling host {} to go: {e}", a.host));
                }
            }
            let allowed = opts.duration + opts.wait_bound + AGENT_SLACK;
            let deadline = Instant::now() + allowed;
            for a in &mut agents {
                match recv_result(a, deadline) {
                    Ok(r) => {
                        problems.extend(r.problems.iter().cloned());
                        results.push(r);
                    }
                    // The storage did not let a worker finish: a finding
                    // (that host's counts are lost with it).
                    Err(Late) => {
                        a.kill();
                        stuck.push(Finding {
                            kind: FindingKind::Stuck,
                            at_ns: 0,
                            holder: None,
                            other: None,
                            detail: format!(
                                "the workers on host {} had not finished {:.0} s after the start (the run's {:.0} s, the wait bound and {} s more): one is stuck in a lock or I/O call; that host's counts are lost",
                                a.host,
                                allowed.as_secs_f64(),
                                opts.duration.as_secs_f64(),
                                AGENT_SLACK.as_secs()
                            ),
                            after_ms: allowed.as_secs_f64() * 1000.0,
                            operations_before: 0,
                        });
                    }
                    Err(Failed(e)) => {
                        a.kill();
                        let err = a.stderr_text();
                        problems.push(format!("{e} {err}").trim().to_string());
                    }
                }
            }
        }
        drop(agents);
        let wall = started.elapsed();
        merge(&mut stress, &results, wall);
        for f in stuck.drain(..) {
            stress.findings.push(StressFinding {
                severity: StressFinding::severity_of(f.kind),
                finding: f,
                replay: None,
            });
        }
        // The data oracle across hosts: each cell holds as many writes as
        // were made to it (with every host's counts only).
        if problems.is_empty()
            && stress
                .findings
                .iter()
                .all(|f| f.finding.kind != FindingKind::Stuck)
        {
            let files = dir.clone();
            match t.fs_call("reading the stress files", move || {
                let mut all = Vec::new();
                for record in [false, true] {
                    for f in 0..FILES {
                        all.push(read_under_lock(&files.join(file_name(record, f)))?);
                    }
                }
                Ok(all)
            }) {
                Ok(contents) => check_cells(&mut stress, &results, &contents),
                Err(e) => problems.push(e),
            }
        }
        if let Err(e) = t.remove_trial_dir(&dir) {
            problems.push(format!("removing the stress directory: {e}"));
        }
        stress.findings.sort_by(|a, b| {
            a.finding
                .after_ms
                .total_cmp(&b.finding.after_ms)
                .then(a.finding.kind.cmp(&b.finding.kind))
        });
        stress.problems = problems;
        stress.verdict = Stress::judge(&stress.findings, &stress.problems);
        stress
    }
}

fn start_agent(h: &crate::target::targets::HostEnv, cfg: &AgentConfig) -> Result<Agent, String> {
    let mut cmd = match &h.launcher {
        None => {
            let mut c = Command::new(&h.exe);
            c.arg(STRESS_ARG);
            c
        }
        Some(prefix) => {
            let (first, rest) = prefix
                .split_first()
                .ok_or_else(|| format!("host {} has an empty launcher", h.name))?;
            let mut c = Command::new(first);
            c.args(rest).arg(&h.exe).arg(STRESS_ARG);
            c
        }
    };
    let stderr = tempfile::tempfile().map_err(|e| format!("a file for stderr: {e}"))?;
    let err_copy = stderr
        .try_clone()
        .map_err(|e| format!("a file for stderr: {e}"))?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(err_copy))
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("starting the stress agent on host {}: {e}", h.name))?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err("stress agent pipes missing".into());
    };
    let group = h.launcher.is_none().then_some(child.id() as i32);
    let chan = Channel::new(OwnedFd::from(stdout), OwnedFd::from(stdin))
        .map_err(|e| format!("stress agent channel: {e}"))?;
    let mut a = Agent {
        host: h.name.clone(),
        child,
        chan,
        stderr,
        group,
    };
    if let Err(e) = a.chan.send(cfg, Instant::now() + AGENT_START) {
        let err = a.stderr_text();
        return Err(format!(
            "configuring the stress agent on host {}: {e} {err}",
            h.name
        ));
    }
    Ok(a)
}

/// Why an agent's result did not come.
enum NoResult {
    /// Not by the deadline.
    Late,
    /// The agent failed, or lockcheck was interrupted.
    Failed(String),
}
use NoResult::{Failed, Late};

/// The agent's result, waited for until `deadline` (Ctrl-C ends the wait).
fn recv_result(a: &mut Agent, deadline: Instant) -> Result<AgentResult, NoResult> {
    loop {
        if let Some(sig) = crate::actor::interrupt::interrupted() {
            return Err(Failed(format!("lockcheck was interrupted (signal {sig})")));
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Late);
        }
        let slice = (deadline - now).min(Duration::from_millis(500));
        match a.chan.recv_within::<AgentResult>(slice) {
            Ok(Some(r)) => return Ok(r),
            Ok(None) => continue,
            Err(e) => {
                return Err(Failed(format!(
                    "the stress agent on host {} failed: {e}",
                    a.host
                )))
            }
        }
    }
}

/// Sum the workers' counts into the run's figures and keep their findings.
fn merge(s: &mut Stress, results: &[AgentResult], wall: Duration) {
    let mut per: Vec<MechCounts> = s.mechanisms.iter().map(|m| MechCounts::new(*m)).collect();
    let mut elapsed: f64 = 0.0;
    for r in results {
        for w in &r.workers {
            elapsed = elapsed.max(w.elapsed_ms);
            for c in &w.mechanisms {
                if let Some(p) = per.iter_mut().find(|p| p.mechanism == c.mechanism) {
                    p.add(c);
                }
            }
            s.findings_dropped += w.findings_dropped;
            for f in &w.findings {
                s.findings.push(StressFinding {
                    severity: StressFinding::severity_of(f.kind),
                    finding: f.clone(),
                    replay: None,
                });
            }
        }
    }
    if elapsed == 0.0 {
        elapsed = wall.as_secs_f64() * 1000.0;
    }
    s.elapsed_ms = elapsed;
    s.operations = per.iter().map(|p| p.requests).sum();
    s.operations_per_s = s.operations as f64 / (elapsed / 1000.0).max(1e-9);
    s.results = per
        .into_iter()
        .map(|c| StressMech {
            requests_per_s: c.requests as f64 / (elapsed / 1000.0).max(1e-9),
            waits: WaitLatency::of(&c.wait_histogram, c.wait_max_us),
            counts: c,
        })
        .collect();
}

/// A stress file's contents, read under a shared OFD lock of the whole file:
/// taking a lock is the point where a network filesystem's client must
/// drop cached data (the Linux NFS client invalidates its cache there), so
/// another host's last writes are seen. A plain open and read may be
/// served from a cache that the file's unchanged timestamps left valid,
/// and would report updates as lost that were only not seen.
fn read_under_lock(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    use std::os::fd::AsRawFd as _;
    let mut file = std::fs::File::open(path)?;
    // SAFETY: a zeroed struct flock, filled in; fcntl on our own open
    // descriptor. The lock is released when the file is closed.
    let locked = unsafe {
        let mut fl: libc::flock = std::mem::zeroed();
        fl.l_type = libc::F_RDLCK as i16;
        fl.l_whence = libc::SEEK_SET as i16;
        libc::fcntl(
            file.as_raw_fd(),
            libc::F_OFD_SETLKW,
            &mut fl as *mut libc::flock,
        )
    };
    if locked != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut data = Vec::new();
    file.read_to_end(&mut data)?;
    Ok(data)
}

/// Each cell's final sequence must be the number of writes made to it.
fn check_cells(s: &mut Stress, results: &[AgentResult], contents: &[Vec<u8>]) {
    let n = 2 * FILES as usize * CELLS;
    let mut writes = vec![0u64; n];
    let mut by_host: Vec<Vec<(String, u64)>> = vec![Vec::new(); n];
    for r in results {
        let mut host_writes = vec![0u64; n];
        for w in &r.workers {
            for (k, c) in w.cell_writes.iter().enumerate().take(n) {
                host_writes[k] += c;
            }
        }
        for k in 0..n {
            writes[k] += host_writes[k];
            if host_writes[k] > 0 {
                by_host[k].push((r.host.clone(), host_writes[k]));
            }
        }
    }
    s.cells_checked = n;
    s.cell_writes = writes.iter().sum();
    for (k, &made) in writes.iter().enumerate() {
        let (file, cell) = (k / CELLS, k % CELLS);
        let data = &contents[file];
        let off = cell * CELL as usize;
        let (seq, writer) = if data.len() >= off + CELL as usize {
            let c = &data[off..off + CELL as usize];
            (
                u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            )
        } else {
            (0, 0)
        };
        // The sequence is 32 bits: compare modulo 2^32.
        if u64::from(seq) == made & 0xffff_ffff {
            continue;
        }
        let record = file >= FILES as usize;
        let name = file_name(record, (file % FILES as usize) as u32);
        // Fewer than were made: updates lost. More: a write the storage
        // applied twice, or one nobody made.
        let made32 = made & 0xffff_ffff;
        let what = if u64::from(seq) < made32 {
            let lost = made32 - u64::from(seq);
            format!("{lost} update{} lost", if lost == 1 { "" } else { "s" })
        } else {
            format!("{} more than were made", u64::from(seq) - made32)
        };
        let from = by_host[k]
            .iter()
            .map(|(h, n)| format!("{n} from host {h}"))
            .collect::<Vec<_>>()
            .join(", ");
        s.findings.push(StressFinding {
            severity: StressFinding::severity_of(FindingKind::LostUpdate),
            finding: Finding {
                kind: FindingKind::LostUpdate,
                at_ns: 0,
                holder: None,
                other: None,
                detail: format!(
                    "cell {cell} (bytes [{}, {})) of {name}: exclusive holders wrote it {made} times ({from}), it holds write {seq} (by {}): {what}",
                    cell as u64 * CELL,
                    (cell as u64 + 1) * CELL,
                    crate::actor::stress::writer_text(writer),
                ),
                after_ms: s.elapsed_ms,
                operations_before: s.operations,
            },
            replay: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actor::stress::WorkerResult;

    fn stress() -> Stress {
        Stress {
            duration_ms: 1000.0,
            elapsed_ms: 1000.0,
            processes: 1,
            hosts: vec!["a".into(), "b".into()],
            mechanisms: vec![Mechanism::Posix],
            seed: 1,
            wait_bound_ms: 1000,
            operations: 10,
            operations_per_s: 10.0,
            results: vec![],
            cells_checked: 0,
            cell_writes: 0,
            findings: vec![],
            findings_dropped: 0,
            verdict: crate::record::stress::StressVerdict::Clean,
            problems: vec![],
        }
    }

    fn host(name: &str, writes_to_cell_17: u64) -> AgentResult {
        let mut w = vec![0; 2 * FILES as usize * CELLS];
        w[17] = writes_to_cell_17;
        AgentResult {
            host: name.into(),
            workers: vec![WorkerResult {
                cell_writes: w,
                ..WorkerResult::default()
            }],
            problems: vec![],
        }
    }

    /// Files as the storage holds them: cell 17 (record file 0, cell 1) at `seq`.
    fn files(seq: u32) -> Vec<Vec<u8>> {
        let mut all = vec![vec![0u8; REGION as usize]; 2 * FILES as usize];
        all[2][8..12].copy_from_slice(&seq.to_le_bytes());
        all[2][12..16].copy_from_slice(&((2u32 << 16) | 1).to_le_bytes());
        all
    }

    #[test]
    fn every_write_must_survive_in_its_cell() {
        let mut s = stress();
        check_cells(&mut s, &[host("a", 30), host("b", 12)], &files(42));
        assert!(s.findings.is_empty(), "{:?}", s.findings);
        assert_eq!((s.cells_checked, s.cell_writes), (32, 42));
        let mut s = stress();
        check_cells(&mut s, &[host("a", 30), host("b", 12)], &files(40));
        assert_eq!(s.findings.len(), 1);
        let f = &s.findings[0];
        assert_eq!(f.finding.kind, FindingKind::LostUpdate);
        assert_eq!(f.severity, crate::spec::scenario::Severity::Unsafe);
        assert!(
            f.finding
                .detail
                .contains("cell 1 (bytes [8, 16)) of stress-record-0")
                && f.finding
                    .detail
                    .contains("42 times (30 from host a, 12 from host b)")
                && f.finding.detail.contains("2 updates lost")
                && f.finding.detail.contains("host #1 worker 0"),
            "{}",
            f.finding.detail
        );
    }
}
