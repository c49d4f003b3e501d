//! Driving one trial: start the actors, perform each planned step through
//! them, observe and judge what happens, and tear everything down.
//!
//! Nothing here sleeps to "give it time": replies are awaited with poll(2)
//! against a deadline, and a call that should block is recognised from the
//! kernel's own state (see `observe`). Every wait ends at the step's
//! timeout, so a hung call is a failure that names the step, never a hang.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::actor::channel::{wait_readable, Channel, ChannelError};
use crate::actor::observe::{self, describe_process, BlockDetector, Evidence, Pidfd};
use crate::actor::protocol::{
    Beneath, Envelope, FromActor, HelloBody, Outcome, Reply, Request, ACTOR_ARG, VERSION,
};
use crate::actor::signature::WaitSignature;
use crate::plan::lower::{lower, ActorView, FdView};
use crate::plan::mech;
use crate::plan::resolve::{Expectation, LabFault, Op, PlannedStep, TrialPlan};
use crate::record::report::{Failure, Measurement, Status, StepRecord};
use crate::spec::scenario::{LockMode, Mechanism, Via};
use crate::target::targets::HostEnv;
use crate::verdict::judge::{self, Actors, Observed};
use timeline::Timeline;

mod lab;
mod launch;
mod locks;
mod signals;
mod steps;
mod timeline;
mod wait;

/// How long an actor may take to start and say hello.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long teardown waits for killed actors to disappear.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);
/// After a host was cut off or crashed, its killed actors may still be
/// finishing a call to the file server (an NFS unlock waiting for the
/// network), which they do once the host is reconnected.
const LAB_REAP_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest pause between two looks at a waiting actor's kernel state.
const PROBE_MAX: Duration = Duration::from_millis(4);
/// The longest pause between two checks of a deadline while waiting for a reply.
const IDLE_MAX: Duration = Duration::from_millis(20);
/// A trial that has waited this long for a reply lends its job slot (see
/// `slots`) until the reply comes: it is not using the CPU.
const LEND_AFTER: Duration = Duration::from_millis(10);
/// How long the processes of a crashed host get to be gone (or seen killed).
const CRASH_SETTLE: Duration = Duration::from_secs(5);

/// What a trial needs from its surroundings.
pub(crate) struct TrialEnv<'a> {
    /// The executable to start actors from (this binary).
    pub(crate) exe: &'a Path,
    /// The trial's own scratch directory (exists, empty).
    pub(crate) scratch: &'a Path,
    /// The same directory through a second mount, when the plan needs one.
    pub(crate) second_mount: Option<&'a Path>,
    /// The trial directory in the storage behind the target, if it has one.
    pub(crate) backing: Option<&'a Path>,
    /// Whether the target's locks are listed in /proc/locks with waiters.
    pub(crate) lock_lists: bool,
    /// The target's device as /proc/locks prints it, when known.
    pub(crate) locks_dev: Option<String>,
    /// The hosts actors can run on; the first is this one.
    pub(crate) hosts: &'a [HostEnv],
    /// Lab faults the target can inject: the shell command for each.
    pub(crate) faults: &'a std::collections::BTreeMap<crate::plan::resolve::LabFault, String>,
    /// The run's zygote, which forks local actors faster than exec starts them.
    pub(crate) zygote: Option<&'a crate::actor::zygote::Zygote>,
    /// Lab faults whose command touches only this target's hosts.
    pub(crate) confined_faults: &'a std::collections::BTreeSet<crate::plan::resolve::LabFault>,
    /// Shared with the trials of the same scenario on other targets: the
    /// faults that touch every target are injected once for all of them.
    pub(crate) barrier: Option<&'a crate::engine::barrier::FaultBarrier>,
    /// The target's lease: bounds written in leases are reckoned with it.
    pub(crate) lease: Duration,
    /// The job slot the trial holds: lent to another trial while this one
    /// only watches a waiter for a fixed window or waits for a reply.
    pub(crate) slots: Option<&'a crate::engine::slots::JobSlots>,
}

/// The result of driving one trial.
#[derive(Debug, Clone)]
pub(crate) struct TrialOutcome {
    pub(crate) status: Status,
    pub(crate) failure: Option<Failure>,
    /// For `Error`: what kept the trial from running; for `Skip`: why.
    pub(crate) reason: Option<String>,
    pub(crate) steps: Vec<StepRecord>,
    /// Actor names, pids and hosts, for the record.
    pub(crate) actors: Vec<(String, Option<i32>, String)>,
    /// Problems during teardown (an actor that would not die).
    pub(crate) teardown: Vec<String>,
    /// Times measured (fault to lock, how long a contender waited).
    pub(crate) measurements: Vec<Measurement>,
    /// How long some actor of this host was inside a requested call (the
    /// union of the calls' spans): the trial's time minus this is what the
    /// harness itself cost.
    pub(crate) in_calls: Duration,
}

/// The total length of the union of `[start, end]` spans (ns).
pub(crate) fn union_ns(spans: &mut [(u64, u64)]) -> u64 {
    spans.sort_unstable();
    let mut total = 0;
    let mut cur: Option<(u64, u64)> = None;
    for &(a, b) in spans.iter() {
        match cur {
            Some((ca, cb)) if a <= cb => cur = Some((ca, cb.max(b))),
            Some((ca, cb)) => {
                total += cb - ca;
                cur = Some((a, b));
            }
            None => cur = Some((a, b)),
        }
    }
    total + cur.map_or(0, |(a, b)| b - a)
}

/// An error of lockcheck itself (not of the target) that stops the trial.
#[derive(Debug)]
struct Infra(String);

/// What to do when the harness itself runs out of something.
fn resource_hint(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EMFILE) => {
            " (hint: this process's open-file limit is reached: raise it with `ulimit -n`, or run fewer trials at once with --jobs)"
        }
        Some(libc::ENFILE) => " (hint: the system's open-file table is full)",
        Some(libc::EAGAIN) | Some(libc::ENOMEM) => {
            " (hint: the process limit or memory is exhausted: run fewer trials at once with --jobs)"
        }
        _ => "",
    }
}

impl From<ChannelError> for Infra {
    fn from(e: ChannelError) -> Self {
        Infra(e.to_string())
    }
}

/// A call that is waiting in the kernel.
struct Pending {
    seq: u64,
    sig: Option<WaitSignature>,
    ino: Option<u64>,
    call: String,
    /// The operation, for bookkeeping when it completes (a blocked open).
    op: Op,
}

/// A descriptor an actor holds.
#[derive(Debug, Clone)]
struct FdRt {
    n: i32,
    ino: u64,
    /// The file's path.
    path: Beneath,
    cloexec: bool,
}

struct ActorRt {
    name: String,
    /// Process id (thread group id).
    pid: Option<i32>,
    /// The task serving the channel: the thread id for thread actors.
    tid: Option<i32>,
    /// For thread actors: the process actor's index.
    thread_of: Option<usize>,
    child: Option<Child>,
    pidfd: Option<Pidfd>,
    chan: Option<Channel>,
    stderr: Option<OwnedFd>,
    fds: HashMap<String, FdRt>,
    pending: Option<Pending>,
    alive: bool,
    /// When its last reply's call returned (CLOCK_MONOTONIC ns, from the actor).
    last_reply_ns: u64,
    /// The host it runs on (index into the trial's hosts).
    host: usize,
    /// Whether the harness sees its pids and /proc (same kernel and pid
    /// namespace); otherwise an agent on its host reads and signals for it.
    local_view: bool,
    /// Whether it shares the harness's monotonic clock (same kernel).
    shared_clock: bool,
    /// Forked by the zygote (which has its exit status), not our child.
    zygote_child: bool,
    /// How it ended, once known.
    exit: Option<String>,
    /// The reply to its pending call, found already waiting before step N
    /// began: the call returned before that step.
    early: Option<(crate::actor::protocol::Reply, usize)>,
}

impl ActorRt {
    fn new(name: &str, thread_of: Option<usize>) -> Self {
        ActorRt {
            name: name.to_string(),
            pid: None,
            tid: None,
            thread_of,
            child: None,
            pidfd: None,
            chan: None,
            stderr: None,
            fds: HashMap::new(),
            pending: None,
            alive: false,
            last_reply_ns: 0,
            host: 0,
            local_view: true,
            shared_clock: true,
            zygote_child: false,
            exit: None,
            early: None,
        }
    }

    /// What the actor printed on stderr, if anything (non-blocking).
    fn stderr_text(&mut self) -> String {
        let Some(fd) = &self.stderr else {
            return String::new();
        };
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        while out.len() < 16 * 1024 {
            match nix::unistd::read(fd.as_fd(), &mut chunk) {
                Ok(n) if n > 0 => out.extend_from_slice(&chunk[..n]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&out).trim().to_string()
    }
}

static SOCKET_COUNTER: AtomicU64 = AtomicU64::new(0);

/// How a new actor comes to be.
#[derive(Debug, Clone, Copy)]
enum NewActor {
    Fork,
    Thread,
    /// A fresh process; with a pid, forced to that pid.
    Spawn(Option<i32>),
}

/// The trial stops early: a failure was judged, or the target cannot do something.
enum Stop {
    Fail(Failure),
    Skip(String),
    /// Not a result about locking (the target or this machine ran out of
    /// something): the trial errors with this reason.
    Error(String),
}

/// Errnos that say a resource ran out or the filesystem went away, not how
/// locking behaves: a step that did not expect one errors its trial instead
/// of failing it (a full disk must not read as "unsafe").
const EXHAUSTED: &[(i32, &str)] = &[
    (libc::ENOSPC, "the target's filesystem is full"),
    (libc::EDQUOT, "a disk quota is exhausted"),
    (
        libc::EMFILE,
        "the actor's open-file limit is reached (ulimit -n)",
    ),
    (libc::ENFILE, "the system's open-file table is full"),
    (libc::ENOMEM, "memory is exhausted"),
    (
        libc::ENOTCONN,
        "the filesystem is gone (its FUSE daemon died, or it was unmounted)",
    ),
];

pub(crate) struct Driver<'a> {
    plan: &'a TrialPlan,
    env: &'a TrialEnv<'a>,
    actors: Vec<ActorRt>,
    seq: u64,
    /// When steps ran and replies came, and what was measured from them.
    time: Timeline,
    /// Sends to actors give up at this time (the current step's deadline).
    send_deadline: Instant,
    /// Whether teardown has run (it also runs on drop, after a panic).
    torn_down: bool,
    /// Per host: the agent that observes and signals for actors the harness
    /// cannot see directly (started on first use).
    agents: Vec<Option<ActorRt>>,
    /// This process's kernel and pid namespace, to compare actors' with.
    me: HelloBody,
    /// A private directory for the sockets new actors connect back on.
    sock_dir: Option<tempfile::TempDir>,
    /// Hosts cut off (disconnected or crashed) and not reconnected yet:
    /// teardown reconnects them.
    severed: std::collections::BTreeSet<String>,
    /// Whether a lab fault was injected (teardown then waits longer).
    lab_faulted: bool,
}

impl<'a> Driver<'a> {
    pub(crate) fn new(plan: &'a TrialPlan, env: &'a TrialEnv<'a>) -> Self {
        let now = Instant::now();
        Driver {
            plan,
            env,
            actors: plan
                .actors
                .iter()
                .map(|a| {
                    let mut rt = ActorRt::new(&a.name, a.thread_of);
                    rt.host = env
                        .hosts
                        .iter()
                        .position(|h| h.name == a.host)
                        .unwrap_or(usize::MAX);
                    rt
                })
                .collect(),
            seq: 0,
            time: Timeline::new(now),
            send_deadline: now + crate::plan::resolve::DEFAULT_TIMEOUT,
            torn_down: false,
            agents: (0..env.hosts.len().max(1)).map(|_| None).collect(),
            me: HelloBody::here(std::process::id() as i32, 0),
            sock_dir: None,
            severed: Default::default(),
            lab_faulted: false,
        }
    }

    /// Run the trial to its end and clean up.
    pub(crate) fn run(mut self) -> TrialOutcome {
        let mut steps = Vec::new();
        let mut failure = None;
        let mut error = None;
        let mut skip = None;
        match self.spawn_initial() {
            Err(Infra(e)) => error = Some(format!("could not start the actors: {e}")),
            Ok(()) => {
                for step in &self.plan.steps {
                    match self.run_step(step) {
                        Ok((record, stop, _)) => {
                            steps.push(record);
                            match stop {
                                Some(Stop::Fail(f)) => {
                                    failure = Some(f);
                                    break;
                                }
                                Some(Stop::Skip(why)) => {
                                    skip = Some(why);
                                    break;
                                }
                                Some(Stop::Error(why)) => {
                                    error = Some(why);
                                    break;
                                }
                                None => {}
                            }
                        }
                        Err(Infra(e)) => {
                            error = Some(format!(
                                "step {} (line {}): {e}",
                                step.number, step.pos.line
                            ));
                            break;
                        }
                    }
                }
            }
        }
        let teardown = self.teardown();
        let (status, reason) = match (error, &failure, skip) {
            (Some(e), _, _) => (Status::Error, Some(e)),
            (None, Some(_), _) => (Status::Fail, None),
            (None, None, Some(why)) => (Status::Skip, Some(why)),
            (None, None, None) => (Status::Pass, None),
        };
        TrialOutcome {
            status,
            failure,
            reason,
            steps,
            actors: self
                .actors
                .iter()
                .map(|a| (a.name.clone(), a.pid, self.host_name(a.host)))
                .collect(),
            teardown,
            measurements: std::mem::take(&mut self.time.measurements),
            in_calls: Duration::from_nanos(union_ns(&mut self.time.call_spans)),
        }
    }

    /// Step by step, for callers that build steps as they go (the fuzzer):
    /// start the plan's initial actors.
    pub(crate) fn start(&mut self) -> Result<(), String> {
        self.spawn_initial().map_err(|Infra(e)| e)
    }

    /// Run one step; returns what each of its actors observed, the record,
    /// and whether the expectation was met.
    pub(crate) fn step(
        &mut self,
        step: &PlannedStep,
    ) -> Result<(Vec<Observed>, StepRecord, bool), String> {
        let (record, stop, observed) = self.run_step(step).map_err(|Infra(e)| e)?;
        Ok((observed, record, stop.is_none()))
    }

    /// Actor pids by index (None for actors not started).
    pub(crate) fn pids(&self) -> Vec<Option<i32>> {
        self.actors.iter().map(|a| a.pid).collect()
    }

    /// End the trial: kill every actor; returns teardown problems.
    pub(crate) fn finish(mut self) -> Vec<String> {
        self.teardown()
    }

    /// For benchmarks, which time calls themselves: the descriptor actor
    /// `i` opened as `handle`, and the inode of its file.
    pub(crate) fn descriptor(&self, i: usize, handle: &str) -> Option<(i32, u64)> {
        self.actors.get(i)?.fds.get(handle).map(|f| (f.n, f.ino))
    }

    /// For benchmarks: send `req` to actor `i` without waiting for the
    /// answer; returns the request's sequence number.
    pub(crate) fn submit(
        &mut self,
        i: usize,
        req: Request,
        timeout: Duration,
    ) -> Result<u64, String> {
        let seq = self.next_seq();
        self.send_deadline = Instant::now() + timeout;
        self.send(i, seq, req).map_err(|Infra(e)| e)?;
        Ok(seq)
    }

    /// For benchmarks: the answer to request `seq` of actor `i`.
    pub(crate) fn reply(&mut self, i: usize, seq: u64, timeout: Duration) -> Result<Reply, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Some(r) = self.recv_answer(i, seq, left)? {
                return Ok(r);
            }
            if left.is_zero() {
                return Err(format!(
                    "actor {} did not answer within {} ms",
                    self.actors[i].name,
                    timeout.as_millis()
                ));
            }
        }
    }

    /// For benchmarks: wait until request `seq` of actor `i` is seen waiting
    /// in the kernel (`None`), or what happened instead (it returned, or the
    /// actor died).
    pub(crate) fn until_blocked(
        &mut self,
        i: usize,
        seq: u64,
        sig: WaitSignature,
        ino: Option<u64>,
        timeout: Duration,
    ) -> Result<Option<Observed>, String> {
        let deadline = Instant::now() + timeout;
        match self
            .wait_call(i, seq, deadline, Some(sig), ino)
            .map_err(|Infra(e)| e)?
        {
            Observed::Blocked(_) => Ok(None),
            Observed::Hung { .. } => Err(format!(
                "actor {} neither returned nor was seen waiting within {} ms",
                self.actors[i].name,
                timeout.as_millis()
            )),
            other => Ok(Some(other)),
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// The actor whose descriptor table actor `i` uses (a thread's process).
    fn owner(&self, i: usize) -> usize {
        self.actors[i].thread_of.unwrap_or(i)
    }

    fn fd(&self, i: usize, name: &str) -> Result<&FdRt, Infra> {
        self.actors[self.owner(i)].fds.get(name).ok_or_else(|| {
            Infra(format!(
                "actor {} has no descriptor {name}",
                self.actors[i].name
            ))
        })
    }

    /// The trial directory as actor `i`'s host names it.
    fn dir_of(&self, i: usize) -> &Path {
        self.env
            .hosts
            .get(self.actors[i].host)
            .map(|h| h.dir.as_path())
            .unwrap_or(self.env.scratch)
    }

    fn path(&self, i: usize, rel: &str) -> Beneath {
        Beneath::new(self.dir_of(i), rel)
    }

    /// The path an `open` step names: in actor `i`'s trial directory, or
    /// through another view of it (`via`); `None` if this target has none.
    fn open_path(
        &self,
        i: usize,
        rel: &str,
        via: Option<crate::spec::scenario::Via>,
    ) -> Option<Beneath> {
        match via {
            Some(v) => self.via_dir(v).map(|d| Beneath::new(d, rel)),
            None => Some(self.path(i, rel)),
        }
    }
}

impl Drop for Driver<'_> {
    /// A trial that ends without reaching teardown (a panic) still kills
    /// its actors.
    fn drop(&mut self) {
        if !self.torn_down {
            self.teardown();
        }
    }
}

/// How /proc/locks prints the range `start`/`len`: first byte and last byte
/// (or `EOF`), computed like the kernel does; `None` for an impossible range.
fn listed_range(start: i64, len: i64) -> Option<(String, String)> {
    match len {
        0 => (start >= 0).then(|| (start.to_string(), "EOF".to_string())),
        l if l > 0 => {
            let end = start.checked_add(l - 1)?;
            (start >= 0).then(|| (start.to_string(), end.to_string()))
        }
        l => {
            let first = start.checked_add(l)?;
            (first >= 0).then(|| (first.to_string(), (start - 1).to_string()))
        }
    }
}

/// Wait (bounded) for a child process the harness started, and reap it.
fn reap(child: &mut Child, deadline: Instant) {
    if let Ok(fd) = Pidfd::open(child.id() as i32) {
        let _ = fd.wait_exit(deadline.saturating_duration_since(Instant::now()));
    }
    let _ = child.try_wait();
}

/// Whether an expectation accepts a call that is still waiting.
fn allows_blocked(e: &Expectation) -> bool {
    match e {
        Expectation::Blocks => true,
        Expectation::OneOf(list) => list.iter().any(allows_blocked),
        Expectation::Winners { others, .. } => allows_blocked(others),
        _ => false,
    }
}

/// Accept the connection of process `peer` (checked with SO_PEERCRED).
fn accept_from(
    listener: &UnixListener,
    peer: i32,
    deadline: Instant,
) -> Result<Option<UnixStream>, Infra> {
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                if peer_pid(&s) == Some(peer) {
                    return Ok(Some(s));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                wait_readable(listener.as_fd(), left)
                    .map_err(|e| Infra(format!("waiting for the new actor: {e}")))?;
            }
            Err(e) => return Err(Infra(format!("accepting the new actor: {e}"))),
        }
    }
}

fn rand_suffix() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most b.len() bytes into b.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == 8 {
        u64::from_ne_bytes(b)
    } else {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::from(d.subsec_nanos()))
            .unwrap_or(0)
    }
}

fn peer_pid(s: &UnixStream) -> Option<i32> {
    use std::os::fd::AsRawFd;
    let mut cred: libc::ucred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(cred.pid)
}

/// A bind mount of a trial directory: a second mount of the same
/// filesystem, removed when dropped. Only in lockcheck's private mount
/// namespace (so the host never sees it).
pub(crate) struct SecondMount {
    pub(crate) dir: PathBuf,
}

impl SecondMount {
    pub(crate) fn create(trial_dir: &Path) -> Result<SecondMount, String> {
        let mut alt = trial_dir.as_os_str().to_owned();
        alt.push(".second-mount");
        let dir = PathBuf::from(alt);
        std::fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        if let Err(e) = nix::mount::mount(
            Some(trial_dir),
            &dir,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        ) {
            let _ = std::fs::remove_dir(&dir);
            return Err(format!("bind-mounting the trial directory: {e}"));
        }
        Ok(SecondMount { dir })
    }
}

impl Drop for SecondMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.dir, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Whether a failed step failed only by not completing in time (no reply,
/// or a patient call still waiting at its bound): every observation that
/// misses the expectation is such a timeout, and, in a race, no more
/// actors won than may.
fn only_timed_out(step: &PlannedStep, observed: &[Observed], who: &judge::Actors<'_>) -> bool {
    let late = |o: &Observed| {
        matches!(o, Observed::Hung { .. }) || (step.patient && matches!(o, Observed::Blocked(_)))
    };
    match &step.expect {
        Expectation::Winners { count, .. } => {
            let winners = observed
                .iter()
                .filter(|o| judge::satisfies(&Expectation::Ok, o, who))
                .count();
            winners <= *count as usize && observed.iter().any(late)
        }
        exp => {
            let mut failing = observed
                .iter()
                .filter(|o| !judge::satisfies(exp, o, who))
                .peekable();
            failing.peek().is_some() && failing.all(late)
        }
    }
}

/// Run a lab fault's shell command until it ends or the deadline passes:
/// `Ok(true)` it succeeded, `Ok(false)` it did not finish (it is killed).
fn run_fault_command(cmd: &str, deadline: Instant) -> crate::engine::barrier::FaultResult {
    // Its output goes to a file: a pipe nobody reads could stall it.
    let errors = tempfile::tempfile().map_err(|e| format!("running `{cmd}`: {e}"))?;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        // Its own process group: on a timeout every process it started goes.
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            errors
                .try_clone()
                .map_err(|e| format!("running `{cmd}`: {e}"))?,
        ))
        .spawn()
        .map_err(|e| format!("running `{cmd}`: {e}"))?;
    let ended = Pidfd::open(child.id() as i32)
        .and_then(|fd| fd.wait_exit(deadline.saturating_duration_since(Instant::now())))
        .unwrap_or(false);
    if !ended {
        let _ = kill(Pid::from_raw(-(child.id() as i32)), Signal::SIGKILL);
        let _ = child.kill();
        let _ = child.wait();
        return Ok(false);
    }
    let status = child.wait().map_err(|e| format!("running `{cmd}`: {e}"))?;
    if status.success() {
        return Ok(true);
    }
    let mut text = String::new();
    {
        use std::io::{Read, Seek};
        let mut f = errors;
        let _ = f.rewind();
        let _ = f.take(4096).read_to_string(&mut text);
    }
    Err(format!(
        "the fault command `{cmd}` failed ({status}): {}",
        text.trim()
    ))
}

/// Actor `i` of a running trial, as lowering sees it.
struct DriverView<'d, 'e> {
    d: &'d Driver<'e>,
    i: usize,
}

impl ActorView for DriverView<'_, '_> {
    fn fd(&self, name: &str) -> Option<FdView> {
        let f = self.d.actors[self.d.owner(self.i)].fds.get(name)?;
        Some(FdView {
            n: f.n,
            path: f.path.clone(),
            ino: f.ino,
        })
    }

    fn name(&self) -> &str {
        &self.d.actors[self.i].name
    }

    fn path(&self, rel: &str) -> Beneath {
        self.d.path(self.i, rel)
    }

    fn open_path(&self, rel: &str, via: Option<Via>) -> Option<Beneath> {
        self.d.open_path(self.i, rel, via)
    }

    // A lease break makes open wait: watch for that on the file's inode,
    // known if an actor has it open (a lease needs one). The harness itself
    // never touches the target here: a call on a server that stopped
    // answering would not return.
    fn open_ino(&self, path: &Beneath) -> Option<u64> {
        self.d
            .actors
            .iter()
            .flat_map(|a| a.fds.values())
            .find(|f| f.path == *path)
            .map(|f| f.ino)
    }
}

#[cfg(test)]
mod tests {
    use super::union_ns;

    #[test]
    fn overlapping_calls_count_once() {
        assert_eq!(union_ns(&mut []), 0);
        assert_eq!(union_ns(&mut [(10, 20)]), 10);
        // Two actors waiting at once, one call inside another, one apart.
        assert_eq!(union_ns(&mut [(30, 40), (10, 25), (12, 20), (20, 28)]), 28);
        assert_eq!(union_ns(&mut [(0, 5), (5, 9)]), 9);
    }
}
