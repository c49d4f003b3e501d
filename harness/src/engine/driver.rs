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

/// When a step ran, on the monotonic clock actors stamp their replies with.
#[derive(Debug, Clone, Copy)]
struct StepTime {
    number: usize,
    start_ns: u64,
    end_ns: u64,
    /// When the step's last call returned (its release, for an unlock).
    release_ns: u64,
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
    t0: Instant,
    /// When the previous step ended: completion latencies are measured from it.
    last_step_end: Instant,
    /// The last fault (kill, stop, close-all, exit, lab fault): when (ns) and which step.
    last_fault: Option<(u64, usize, String)>,
    /// When the calls completed by the current `await` returned (ns).
    await_done_ns: u64,
    /// Values measured during the trial, for the report.
    measurements: Vec<Measurement>,
    /// When each executed step ran.
    step_times: Vec<StepTime>,
    /// The latest reply time seen during the current step.
    step_reply_ns: u64,
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
    /// When calls of actors on this host's clock ran (ns spans).
    call_spans: Vec<(u64, u64)>,
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
            t0: now,
            last_step_end: now,
            last_fault: None,
            await_done_ns: 0,
            measurements: Vec::new(),
            step_times: Vec::new(),
            step_reply_ns: 0,
            send_deadline: now + crate::plan::resolve::DEFAULT_TIMEOUT,
            torn_down: false,
            agents: (0..env.hosts.len().max(1)).map(|_| None).collect(),
            me: HelloBody::here(std::process::id() as i32, 0),
            sock_dir: None,
            severed: Default::default(),
            lab_faulted: false,
            call_spans: Vec::new(),
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
            measurements: std::mem::take(&mut self.measurements),
            in_calls: Duration::from_nanos(union_ns(&mut self.call_spans)),
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

    /// For benchmarks: one receive attempt for the answer to request `seq`.
    fn recv_answer(&mut self, i: usize, seq: u64, wait: Duration) -> Result<Option<Reply>, String> {
        match self.recv(i, wait).map_err(|Infra(e)| e)? {
            Some(Ok(r)) if r.seq == seq => Ok(Some(r)),
            Some(Ok(r)) => Err(format!(
                "actor {} answered request {} while {seq} was outstanding",
                self.actors[i].name, r.seq
            )),
            Some(Err(ended)) => Err(format!("actor {}: {ended:?}", self.actors[i].name)),
            None => Ok(None),
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

    /// Start an actor process on a host: this binary directly, or through
    /// the host's launcher (`ip netns exec NS`, `ssh HOST`, ...), speaking
    /// the protocol over its stdin and stdout.
    fn launch(&self, host: usize, into: &mut ActorRt) -> Result<(), Infra> {
        if let Some(sig) = crate::actor::interrupt::interrupted() {
            return Err(Infra(format!("lockcheck was interrupted (signal {sig})")));
        }
        let h = self.env.hosts.get(host).ok_or_else(|| {
            Infra(format!(
                "actor {} is placed on a host this target does not have",
                into.name
            ))
        })?;
        if let (None, Some(z)) = (&h.launcher, self.env.zygote) {
            // Forked by the zygote; if it cannot, started by exec below.
            if let Ok(s) = z.spawn(&h.dir) {
                let _ = nix::fcntl::fcntl(
                    &s.stderr,
                    nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
                );
                into.chan = Some(
                    Channel::new(s.chan_read, s.chan_write)
                        .map_err(|e| Infra(format!("actor channel: {e}")))?,
                );
                into.pid = Some(s.pid);
                into.pidfd = Pidfd::open(s.pid).ok();
                into.stderr = Some(s.stderr);
                into.child = None;
                into.zygote_child = true;
                into.host = host;
                into.alive = true;
                return Ok(());
            }
        }
        let mut cmd = match &h.launcher {
            None => {
                let mut c = Command::new(self.env.exe);
                // Not current_dir: spawn would wait for the child's chdir,
                // which sleeps on a server that stopped answering.
                c.arg(ACTOR_ARG)
                    .arg(std::process::id().to_string())
                    .env(crate::actor::process::CWD_ENV, &h.dir);
                c
            }
            Some(prefix) => {
                let (first, rest) = prefix
                    .split_first()
                    .ok_or_else(|| Infra(format!("host {} has an empty launcher", h.name)))?;
                let mut c = Command::new(first);
                c.args(rest).arg(&h.exe).arg(ACTOR_ARG).arg("0");
                c
            }
        };
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a terminal's Ctrl-C reaches the harness, not actors.
            .process_group(0);
        let mut child = cmd.spawn().map_err(|e| {
            Infra(format!(
                "starting an actor on host {}: {e}{}",
                h.name,
                resource_hint(&e)
            ))
        })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(Infra("actor pipes missing".into()));
        };
        let stderr: OwnedFd = stderr.into();
        let _ = nix::fcntl::fcntl(
            stderr.as_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        );
        into.chan = Some(
            Channel::new(stdout.into(), stdin.into())
                .map_err(|e| Infra(format!("actor channel: {e}")))?,
        );
        if h.launcher.is_none() {
            let pid = child.id() as i32;
            into.pid = Some(pid);
            into.pidfd = Pidfd::open(pid).ok();
        }
        into.stderr = Some(stderr);
        into.child = Some(child);
        into.host = host;
        into.alive = true;
        Ok(())
    }

    fn spawn_initial(&mut self) -> Result<(), Infra> {
        for i in 0..self.actors.len() {
            let plan = &self.plan.actors[i];
            if plan.forked_from.is_some() || plan.thread_of.is_some() || plan.spawned_by.is_some() {
                continue;
            }
            let mut rt = std::mem::replace(&mut self.actors[i], ActorRt::new("", None));
            let host = rt.host;
            let launched = self.launch(host, &mut rt);
            self.actors[i] = rt;
            launched?;
        }
        // All actors start in parallel; now collect their greetings.
        let deadline = Instant::now() + START_TIMEOUT;
        for i in 0..self.actors.len() {
            if self.actors[i].alive {
                self.expect_hello(i, deadline)?;
            }
        }
        Ok(())
    }

    /// Wait for an actor's greeting; checks it is who we think it is.
    fn expect_hello(&mut self, i: usize, deadline: Instant) -> Result<(), Infra> {
        // Started here (forked or exec'd by us): this kernel, whatever it says.
        let here = self
            .env
            .hosts
            .get(self.actors[i].host)
            .is_some_and(|h| h.launcher.is_none());
        let a = &mut self.actors[i];
        let Some(chan) = a.chan.as_mut() else {
            return Err(Infra(format!("actor {} has no channel", a.name)));
        };
        match chan.recv_until::<FromActor>(deadline) {
            Ok(Some(FromActor::Hello { hello: h })) => {
                if h.version != VERSION {
                    return Err(Infra(format!(
                        "actor {} speaks protocol {} (expected {VERSION})",
                        a.name, h.version
                    )));
                }
                if a.pid.is_some_and(|p| p != h.pid) {
                    return Err(Infra(format!(
                        "actor {} says it is pid {}, expected {:?}",
                        a.name, h.pid, a.pid
                    )));
                }
                // Only what is known to be the same kernel and PID namespace
                // is watched directly; unreadable identities count as foreign
                // (pid numbers of another machine must never be signalled here).
                let known = !h.boot_id.is_empty() && h.pidns != 0;
                a.shared_clock = here || (known && h.boot_id == self.me.boot_id);
                a.local_view = here || (a.shared_clock && h.pidns == self.me.pidns);
                if a.local_view && a.pidfd.is_none() {
                    // Started through a launcher that exec'd it (ip netns exec):
                    // a process the harness can see and watch.
                    a.pidfd = Pidfd::open(h.pid).ok();
                }
                a.pid = Some(h.pid);
                a.tid = Some(if h.tid > 0 { h.tid } else { h.pid });
                Ok(())
            }
            Ok(Some(FromActor::Reply(r))) => Err(Infra(format!(
                "actor {} sent a reply ({:?}) instead of a greeting",
                a.name, r.outcome
            ))),
            Ok(None) => Err(Infra(format!(
                "actor {} did not start within {} s",
                a.name,
                START_TIMEOUT.as_secs()
            ))),
            Err(e) => {
                let err = a.stderr_text();
                Err(Infra(format!(
                    "actor {} failed to start: {e} {err}",
                    a.name
                )))
            }
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

    /// Send a signal to actor `i` (to its thread, for a thread actor).
    fn send_signal(&mut self, i: usize, signal: Signal) -> Result<(), String> {
        let a = &self.actors[i];
        let pid = a.pid.unwrap_or(0);
        let tid = a.thread_of.and(a.tid);
        if !a.local_view {
            let host = a.host;
            let req = Request::SignalPid {
                pid,
                tid,
                signal: signal as i32,
            };
            return match self.agent_call(host, req, Duration::from_secs(5)) {
                Ok(Outcome::Done { .. }) => Ok(()),
                Ok(Outcome::Failed { errno }) => Err(crate::spec::errno::name(errno)),
                Ok(other) => Err(format!("{other:?}")),
                Err(Infra(e)) => Err(e),
            };
        }
        match tid {
            Some(t) => {
                // SAFETY: tgkill with plain integers.
                let r = unsafe { libc::syscall(libc::SYS_tgkill, pid, t, signal as i32) };
                if r < 0 {
                    Err(std::io::Error::last_os_error().to_string())
                } else {
                    Ok(())
                }
            }
            None => kill(Pid::from_raw(pid), signal).map_err(|e| e.to_string()),
        }
    }

    /// The state letter of actor `i`'s task (None: gone).
    fn state_of(&mut self, i: usize) -> Result<Option<char>, Infra> {
        let a = &self.actors[i];
        let tid = a.tid.or(a.pid).unwrap_or(0);
        if a.local_view {
            return Ok(observe::read_state(tid).ok());
        }
        let host = a.host;
        match self.agent_call(host, Request::ReadProc { tid }, Duration::from_secs(5))? {
            Outcome::Proc { snapshot } => Ok(snapshot.state),
            other => Err(Infra(format!("the agent answered {other:?}"))),
        }
    }

    /// Wait until actor `i`'s process has ended; true once it has.
    fn wait_gone(&mut self, i: usize, deadline: Instant) -> bool {
        self.wait_gone_seen(i, deadline) == Some(true)
    }

    /// The trial directory reached another way (`via:`).
    fn via_dir(&self, via: crate::spec::scenario::Via) -> Option<&'a Path> {
        match via {
            crate::spec::scenario::Via::SecondMount => self.env.second_mount,
            crate::spec::scenario::Via::BackingStore => self.env.backing,
        }
    }

    /// Whether actor `i` has been killed and is on its way out (a local one only).
    fn actor_dying(&self, i: usize) -> bool {
        let a = &self.actors[i];
        a.local_view && a.pid.is_some_and(observe::is_dying)
    }

    /// Whether actor `i` is gone by the deadline; `None` when its host's agent
    /// cannot be asked (a crashed host takes its agent with it).
    fn wait_gone_seen(&mut self, i: usize, deadline: Instant) -> Option<bool> {
        let a = &self.actors[i];
        if a.local_view {
            return Some(match &a.pidfd {
                Some(fd) => fd
                    .wait_exit(deadline.saturating_duration_since(Instant::now()))
                    .unwrap_or(false),
                None => false,
            });
        }
        let (host, pid) = (a.host, a.pid.unwrap_or(0));
        let left = deadline.saturating_duration_since(Instant::now());
        let req = Request::WaitGone {
            pid,
            timeout_ms: left.as_millis() as u64,
        };
        match self.agent_call(host, req, left + Duration::from_secs(2)) {
            Ok(Outcome::Done { ret }) => Some(ret == 1),
            Ok(_) => Some(false),
            Err(_) => None,
        }
    }

    /// The request actor `i` makes for an operation (see [`lower`]).
    fn request_for(
        &self,
        i: usize,
        op: &Op,
    ) -> Result<(Request, Option<WaitSignature>, Option<u64>), Infra> {
        let l = lower(op, &DriverView { d: self, i }).map_err(|e| Infra(e.0))?;
        Ok((l.request, l.waits_as, l.ino))
    }

    fn run_step(
        &mut self,
        step: &PlannedStep,
    ) -> Result<(StepRecord, Option<Stop>, Vec<Observed>), Infra> {
        self.collect_early_replies(step.number)?;
        let start = Instant::now();
        let start_ns = crate::actor::protocol::monotonic_ns();
        self.step_reply_ns = 0;
        let step_timeout = step.timeout_for(self.env.lease);
        self.send_deadline = start + step_timeout;
        self.await_done_ns = 0;
        let deadline = start + step_timeout;
        let mut calls = Vec::new();
        let mut latency: Option<Duration> = None;
        let observed = self.perform_op(step, deadline, &mut calls, &mut latency)?;
        let end = Instant::now();
        self.last_step_end = end;
        let (step_time, after_fault) = self.time_step(step, start_ns, latency, &observed);
        let (mut record, stop) = self.judge_step(step, start, end, calls, latency, &observed);
        self.step_times.push(step_time);
        record.after_fault_ms = after_fault.map(|(ms, _)| ms);
        record.fault_step = after_fault.map(|(_, n)| n);
        Ok((record, stop, observed))
    }

    /// A step's times: when it started and ended, when its release was seen,
    /// whether it was a fault (the next granted wait is measured from it), and
    /// the measurements it makes (a wait granted after a fault or after the
    /// previous step; how long a contender was kept waiting). Returns the
    /// step's time and, for a wait granted after a fault, how long after
    /// (ms) and the fault's step.
    fn time_step(
        &mut self,
        step: &PlannedStep,
        start_ns: u64,
        latency: Option<Duration>,
        observed: &[Observed],
    ) -> (StepTime, Option<(f64, usize)>) {
        let end_ns = crate::actor::protocol::monotonic_ns();
        let step_time = StepTime {
            number: step.number,
            start_ns,
            end_ns,
            release_ns: if self.step_reply_ns > 0 {
                self.step_reply_ns
            } else {
                end_ns
            },
        };
        if matches!(
            step.op,
            Op::Signal { fatal: true, .. }
                | Op::Stop
                | Op::CloseAll
                | Op::Exit { .. }
                | Op::Lab { .. }
        ) {
            self.last_fault = Some((
                step_time.release_ns,
                step.number,
                step.op.describe(&self.plan.actors),
            ));
        }
        // When a waiting call was granted: an awaited call, or a waiting
        // lock step with `within` that succeeded (a crashed holder's lock).
        let granted_ns = match (&step.op, latency) {
            (Op::Await { .. }, Some(_)) => Some(self.await_done_ns),
            (Op::Lock { wait: true, .. }, _)
                if !observed.is_empty()
                    && observed
                        .iter()
                        .all(|o| matches!(o, Observed::Returned(Outcome::Done { .. }))) =>
            {
                Some(self.step_reply_ns)
            }
            _ => None,
        };
        let bound_ms = Some(crate::record::report::ms(step.timeout_for(self.env.lease)));
        // How long after the last fault a waiting call was granted.
        let after_fault = match (granted_ns, &self.last_fault) {
            (Some(done), Some((at, n, what))) => {
                let ms = done.saturating_sub(*at) as f64 / 1e6;
                let ms = (ms * 1000.0).round() / 1000.0;
                self.measurements.push(Measurement {
                    step: step.number,
                    what: format!("lock granted after the fault of step {n} ({what})"),
                    ms,
                    bound_ms,
                });
                Some((ms, *n))
            }
            _ => None,
        };
        if let (None, Op::Await { .. }, Some(l)) = (&after_fault, &step.op, latency) {
            self.measurements.push(Measurement {
                step: step.number,
                what: "blocked call completed after the previous step".into(),
                ms: crate::record::report::ms(l),
                bound_ms,
            });
        }
        if let Op::Await { hold: Some(d) } = step.op {
            self.measurements.push(Measurement {
                step: step.number,
                what: "contender kept waiting (its timeout)".into(),
                ms: crate::record::report::ms(d),
                bound_ms: None,
            });
        }
        (step_time, after_fault)
    }

    /// Performs `act` with each actor of the step in turn: what each saw,
    /// and the call each made into `calls`.
    fn each_actor(
        &mut self,
        step: &PlannedStep,
        calls: &mut Vec<String>,
        mut act: impl FnMut(&mut Self, usize) -> Result<(String, Observed), Infra>,
    ) -> Result<Vec<Observed>, Infra> {
        let mut out = Vec::new();
        for &i in &step.actors {
            let (call, obs) = act(self, i)?;
            calls.push(call);
            out.push(obs);
        }
        Ok(out)
    }

    /// Performs a step's operation with each of its actors: what each saw.
    fn perform_op(
        &mut self,
        step: &PlannedStep,
        deadline: Instant,
        calls: &mut Vec<String>,
        latency: &mut Option<Duration>,
    ) -> Result<Vec<Observed>, Infra> {
        match &step.op {
            Op::Await { hold } => self.await_step(step, hold, deadline, calls, latency),
            Op::Stop | Op::Continue => {
                let stop = matches!(step.op, Op::Stop);
                let sig = if stop {
                    Signal::SIGSTOP
                } else {
                    Signal::SIGCONT
                };
                self.each_actor(step, calls, |d, i| {
                    Ok((d.signal_call(i, sig), d.stop_or_continue(i, stop, deadline)))
                })
            }
            Op::CloseAll => self.close_all_step(step, deadline, calls),
            Op::Spawn { child, pid_of } => self.spawn_step(step, *child, *pid_of, deadline, calls),
            Op::Lab { fault, host } => self.lab_step(*fault, host.as_deref(), deadline, calls),
            Op::Signal { signal, fatal } => self.each_actor(step, calls, |d, i| {
                Ok((
                    d.signal_call(i, *signal),
                    d.signal(i, *signal, *fatal, deadline),
                ))
            }),
            Op::Exit { .. } => self.each_actor(step, calls, |d, i| {
                let (req, _, _) = d.request_for(i, &step.op)?;
                let call = mech::describe_request(&req);
                let seq = d.next_seq();
                d.send(i, seq, req)?;
                Ok((call, d.wait_end(i, deadline, "exited")))
            }),
            Op::Exec => self.each_actor(step, calls, |d, i| {
                Ok((mech::describe_request(&Request::Exec), d.exec(i, deadline)?))
            }),
            Op::Fork { child } | Op::Thread { child } => {
                self.fork_step(step, *child, deadline, calls)
            }
            Op::Listed {
                fd,
                mech,
                mode,
                start: s,
                len,
            } => self.each_actor(step, calls, |d, i| {
                let obs = d.listed(i, fd, *mech, *mode, *s, *len)?;
                Ok(("read /proc/locks".into(), obs))
            }),
            op => self.requests_step(step, op, deadline, calls),
        }
    }

    fn await_step(
        &mut self,
        step: &PlannedStep,
        hold: &Option<Duration>,
        deadline: Instant,
        calls: &mut Vec<String>,
        latency: &mut Option<Duration>,
    ) -> Result<Vec<Observed>, Infra> {
        let mut out = Vec::new();
        for &i in &step.actors {
            calls.push(
                self.actors[i]
                    .pending
                    .as_ref()
                    .map(|p| p.call.clone())
                    .unwrap_or_default(),
            );
            let (obs, after) = match (self.early_reply(i, step.number), hold) {
                (Some(early), _) => (early, None),
                (None, Some(d)) => (self.hold_pending(i, *d, deadline)?, None),
                (None, None) => self.await_pending(i, deadline, &step.expect)?,
            };
            *latency = (*latency).max(after);
            out.push(obs);
        }
        Ok(out)
    }

    fn close_all_step(
        &mut self,
        step: &PlannedStep,
        deadline: Instant,
        calls: &mut Vec<String>,
    ) -> Result<Vec<Observed>, Infra> {
        let mut out = Vec::new();
        for &i in &step.actors {
            let mut names: Vec<String> = self.actors[self.owner(i)].fds.keys().cloned().collect();
            names.sort();
            let mut worst = Observed::Returned(Outcome::Done { ret: 0 });
            for name in names {
                let n = self.fd(i, &name)?.n;
                let req = Request::Close { fd: n };
                calls.push(mech::describe_request(&req));
                let seq = self.next_seq();
                self.send(i, seq, req)?;
                let obs = self.wait_call(i, seq, deadline, None, None)?;
                self.after_call(i, &Op::Close { fd: name }, &obs);
                if !matches!(obs, Observed::Returned(Outcome::Done { .. })) {
                    worst = obs;
                }
            }
            out.push(worst);
        }
        Ok(out)
    }

    fn spawn_step(
        &mut self,
        step: &PlannedStep,
        child: usize,
        pid_of: Option<usize>,
        deadline: Instant,
        calls: &mut Vec<String>,
    ) -> Result<Vec<Observed>, Infra> {
        let parent = step.actors[0];
        let set_tid = match pid_of {
            Some(dead) => Some(self.actors[dead].pid.ok_or_else(|| {
                Infra(format!("actor {} never had a pid", self.actors[dead].name))
            })?),
            None => None,
        };
        calls.push(mech::describe_request(&Request::Spawn {
            socket: String::new(),
            set_tid,
        }));
        Ok(vec![self.new_actor(
            parent,
            child,
            NewActor::Spawn(set_tid),
            deadline,
        )?])
    }

    fn lab_step(
        &mut self,
        fault: LabFault,
        host: Option<&str>,
        deadline: Instant,
        calls: &mut Vec<String>,
    ) -> Result<Vec<Observed>, Infra> {
        let (call, obs) = self.lab_fault(fault, host, deadline)?;
        calls.push(call);
        Ok(vec![obs])
    }

    fn fork_step(
        &mut self,
        step: &PlannedStep,
        child: usize,
        deadline: Instant,
        calls: &mut Vec<String>,
    ) -> Result<Vec<Observed>, Infra> {
        let parent = step.actors[0];
        let thread = matches!(step.op, Op::Thread { .. });
        calls.push(if thread { "pthread_create()" } else { "fork()" }.into());
        let kind = if thread {
            NewActor::Thread
        } else {
            NewActor::Fork
        };
        Ok(vec![self.new_actor(parent, child, kind, deadline)?])
    }

    fn requests_step(
        &mut self,
        step: &PlannedStep,
        op: &Op,
        deadline: Instant,
        calls: &mut Vec<String>,
    ) -> Result<Vec<Observed>, Infra> {
        // Send to every actor first, so that a group step is a race.
        let mut sent = Vec::new();
        for &i in &step.actors {
            let (req, sig, ino) = self.request_for(i, op)?;
            let call = mech::describe_request(&req);
            calls.push(call.clone());
            let seq = self.next_seq();
            self.send(i, seq, req)?;
            sent.push((i, seq, sig, ino, call));
        }
        let mut out = Vec::new();
        for (i, seq, sig, ino, call) in sent {
            let obs = if step.patient {
                self.wait_patiently(i, seq, deadline, sig, ino)?
            } else {
                self.wait_call(i, seq, deadline, sig, ino)?
            };
            if matches!(obs, Observed::Blocked(_)) {
                self.actors[i].pending = Some(Pending {
                    seq,
                    sig,
                    ino,
                    call,
                    op: op.clone(),
                });
            }
            self.after_call(i, op, &obs);
            out.push(obs);
        }
        Ok(out)
    }

    /// Judge a step's observations and make its record.
    fn judge_step(
        &self,
        step: &PlannedStep,
        start: Instant,
        end: Instant,
        calls: Vec<String>,
        latency: Option<Duration>,
        observed: &[Observed],
    ) -> (StepRecord, Option<Stop>) {
        let names: Vec<String> = self.actors.iter().map(|a| a.name.clone()).collect();
        let pids: Vec<Option<i32>> = self.actors.iter().map(|a| a.pid).collect();
        let who = Actors {
            names: &names,
            pids: &pids,
        };
        let verdict = judge::judge(&step.expect, observed, &who);
        let step_actors: Vec<String> = step.actors.iter().map(|&i| names[i].clone()).collect();
        let observed_text: Vec<String> = observed.iter().map(judge::describe_observed).collect();
        let observed_joined = if step_actors.len() == 1 {
            observed_text.join("")
        } else {
            step_actors
                .iter()
                .zip(&observed_text)
                .map(|(a, o)| format!("{a}: {o}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let expected = judge::describe_expectation(&step.expect, &who);
        let op_text = step.op.describe(&self.plan.actors);
        // A call the target does not support skips the trial instead of failing it.
        let unsupported = observed.iter().zip(&calls).find_map(|(o, call)| match o {
            Observed::Returned(Outcome::Failed { errno })
                if step.unsupported.contains(errno) && verdict.is_err() =>
            {
                Some(format!(
                    "not supported here: {call} returned {} (step {}, line {})",
                    crate::spec::errno::name(*errno),
                    step.number,
                    step.pos.line
                ))
            }
            _ => None,
        });
        // Out of space, descriptors or memory: not a locking result — if
        // the step would pass whatever those calls had returned (otherwise
        // the others' results are a failure in their own right).
        let ran_out = |o: &Observed| match o {
            Observed::Returned(Outcome::Failed { errno }) => {
                EXHAUSTED.iter().find(|(e, _)| e == errno)
            }
            _ => None,
        };
        let exhausted = observed
            .iter()
            .zip(&calls)
            .find_map(|(o, call)| {
                ran_out(o).map(|(errno, what)| {
                    format!(
                        "step {} (line {}): {call} returned {}: {what} — not a locking result",
                        step.number,
                        step.pos.line,
                        crate::spec::errno::name(*errno),
                    )
                })
            })
            .filter(|_| {
                verdict.is_err()
                    && judge::passes_without(&step.expect, observed, &who, |o| ran_out(o).is_some())
            });
        let record = StepRecord {
            step: step.number,
            line: step.pos.line,
            col: step.pos.col,
            actors: step_actors.clone(),
            op: op_text.clone(),
            calls,
            expected: expected.clone(),
            observed: observed_joined.clone(),
            passed: verdict.is_ok(),
            start_ms: crate::record::report::ms(start.duration_since(self.t0)),
            elapsed_ms: crate::record::report::ms(end.duration_since(start)),
            completed_after_ms: latency.map(crate::record::report::ms),
            after_fault_ms: None,
            fault_step: None,
        };
        let stop = match (unsupported, verdict) {
            (Some(why), _) => Some(Stop::Skip(why)),
            (None, Err(_)) if exhausted.is_some() => exhausted.map(Stop::Error),
            (None, Ok(())) => None,
            (None, Err(why)) => Some(Stop::Fail(Failure {
                step: step.number,
                line: step.pos.line,
                col: step.pos.col,
                actors: step_actors,
                op: op_text,
                expected,
                observed: if step.actors.len() > 1 {
                    format!("{why}: {observed_joined}")
                } else {
                    observed_joined
                },
                note: step.note.clone(),
                timed_out: only_timed_out(step, observed, &who),
                owner_only: judge::only_owner_differs(&step.expect, observed, &who),
            })),
        };
        (record, stop)
    }

    fn send(&mut self, i: usize, seq: u64, req: Request) -> Result<(), Infra> {
        let a = &mut self.actors[i];
        let chan = a
            .chan
            .as_mut()
            .ok_or_else(|| Infra(format!("actor {} has no channel", a.name)))?;
        match chan.send(&Envelope { seq, req }, self.send_deadline) {
            Ok(()) | Err(ChannelError::Closed) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn detector(&self, i: usize, sig: WaitSignature, ino: Option<u64>) -> BlockDetector {
        let a = &self.actors[i];
        let pid = a.pid.unwrap_or(0);
        BlockDetector::new(
            a.tid.unwrap_or(pid),
            pid,
            sig,
            ino,
            // The device name is this host's; another kernel numbers differently.
            if a.local_view {
                self.env.locks_dev.clone()
            } else {
                None
            },
            self.env.lock_lists,
        )
    }

    /// One observation of actor `i`'s task: from /proc here, or from a
    /// snapshot its host's agent takes.
    fn probe(&mut self, i: usize, d: &mut BlockDetector) -> Result<Option<Evidence>, Infra> {
        if self.actors[i].local_view {
            return Ok(d.probe(&mut crate::actor::observe::LocalProc));
        }
        let a = &self.actors[i];
        let tid = a.tid.or(a.pid).unwrap_or(0);
        let host = a.host;
        match self.agent_call(host, Request::ReadProc { tid }, Duration::from_secs(5))? {
            Outcome::Proc { mut snapshot } => Ok(d.probe(&mut snapshot)),
            other => Err(Infra(format!(
                "the agent on host {} answered {other:?}",
                self.host_name(host)
            ))),
        }
    }

    fn host_name(&self, host: usize) -> String {
        self.env
            .hosts
            .get(host)
            .map(|h| h.name.clone())
            .unwrap_or_else(|| "?".into())
    }

    /// Start the agent of a host if it is not running yet.
    fn ensure_agent(&mut self, host: usize, wait: Duration) -> Result<(), Infra> {
        if self
            .agents
            .get(host)
            .is_some_and(|a| a.as_ref().is_some_and(|a| a.alive))
        {
            return Ok(());
        }
        let mut rt = ActorRt::new(&format!("agent on host {}", self.host_name(host)), None);
        self.launch(host, &mut rt)?;
        let deadline = Instant::now() + wait;
        let chan = rt
            .chan
            .as_mut()
            .ok_or_else(|| Infra("agent without a channel".into()))?;
        match chan.recv_until::<FromActor>(deadline)? {
            Some(FromActor::Hello { hello }) => rt.pid = Some(hello.pid),
            _ => {
                return Err(Infra(format!(
                    "the agent on host {} did not start",
                    self.host_name(host)
                )))
            }
        }
        if host >= self.agents.len() {
            self.agents.resize_with(host + 1, || None);
        }
        self.agents[host] = Some(rt);
        Ok(())
    }

    /// A request to a host's agent and its answer.
    fn agent_call(&mut self, host: usize, req: Request, wait: Duration) -> Result<Outcome, Infra> {
        self.ensure_agent(host, START_TIMEOUT)?;
        self.seq += 1;
        let seq = self.seq;
        let deadline = Instant::now() + wait;
        let name = self.host_name(host);
        let Some(Some(agent)) = self.agents.get_mut(host) else {
            return Err(Infra(format!("no agent on host {name}")));
        };
        let chan = agent
            .chan
            .as_mut()
            .ok_or_else(|| Infra(format!("the agent on host {name} has no channel")))?;
        chan.send(&Envelope { seq, req }, deadline)?;
        loop {
            match chan.recv_until::<FromActor>(deadline)? {
                Some(FromActor::Reply(r)) if r.seq == seq => return Ok(r.outcome),
                Some(_) => continue,
                None => return Err(Infra(format!("the agent on host {name} did not answer"))),
            }
        }
    }

    /// Wait for the reply to `seq` until the deadline even if the call is
    /// seen waiting for a lock: still waiting at the deadline is reported
    /// as blocked, with the evidence and how long it waited.
    fn wait_patiently(
        &mut self,
        i: usize,
        seq: u64,
        deadline: Instant,
        sig: Option<WaitSignature>,
        ino: Option<u64>,
    ) -> Result<Observed, Infra> {
        let began = Instant::now();
        let first = self.wait_call(i, seq, deadline, sig, ino)?;
        let Observed::Blocked(ev) = first else {
            return Ok(first);
        };
        match self.wait_call(i, seq, deadline, None, None)? {
            Observed::Hung { waited, .. } => Ok(Observed::Blocked(Evidence {
                text: format!(
                    "{}; still waiting after {} ms",
                    ev.text,
                    (began.elapsed().max(waited)).as_millis()
                ),
            })),
            other => Ok(other),
        }
    }

    /// Wait for the reply to `seq`, watching for the call to block.
    fn wait_call(
        &mut self,
        i: usize,
        seq: u64,
        deadline: Instant,
        sig: Option<WaitSignature>,
        ino: Option<u64>,
    ) -> Result<Observed, Infra> {
        let mut detector = sig.map(|s| self.detector(i, s, ino));
        let began = Instant::now();
        let mut interval = Duration::from_micros(20);
        let mut lent = None;
        loop {
            match self.recv(i, interval)? {
                Some(Ok(reply)) => {
                    if reply.seq != seq {
                        return Err(Infra(format!(
                            "actor {} answered request {} while {seq} was outstanding",
                            self.actors[i].name, reply.seq
                        )));
                    }
                    return Ok(Observed::Returned(reply.outcome));
                }
                Some(Err(died)) => return Ok(died),
                None => self.lend_if_idle(began, &mut lent),
            }
            if let Some(d) = detector.as_mut() {
                if let Some(ev) = self.probe(i, d)? {
                    return Ok(Observed::Blocked(ev));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                let task = self.actors[i].tid.or(self.actors[i].pid).unwrap_or(0);
                return Ok(Observed::Hung {
                    waited: now.duration_since(began),
                    process: describe_process(task),
                });
            }
            // Replies wake the wait at once; only the kernel probes are
            // paced: quickly at first, then at most every PROBE_MAX.
            interval = (interval * 2)
                .min(if detector.is_some() {
                    PROBE_MAX
                } else {
                    IDLE_MAX
                })
                .min(deadline - now);
        }
    }

    /// While a wait for a reply goes on past `LEND_AFTER`, the trial's job
    /// slot goes to another trial (`lent` takes it back when dropped: when
    /// the wait ends).
    fn lend_if_idle(&self, began: Instant, lent: &mut Option<crate::engine::slots::Lent<'a>>) {
        if lent.is_none() && began.elapsed() >= LEND_AFTER {
            *lent = self.env.slots.map(|s| s.lend());
        }
    }

    /// One receive attempt: `Some(Ok(reply))`, `Some(Err(observation))` if
    /// the actor died, `None` if nothing came.
    fn recv(&mut self, i: usize, wait: Duration) -> Result<Option<Result<Reply, Observed>>, Infra> {
        let a = &mut self.actors[i];
        let Some(chan) = a.chan.as_mut() else {
            return Err(Infra(format!("actor {} has no channel", a.name)));
        };
        match chan.recv_within::<FromActor>(wait) {
            Ok(Some(FromActor::Reply(r))) => {
                if let Outcome::Refused { message } = &r.outcome {
                    return Err(Infra(format!("refused: {message}")));
                }
                // Another kernel's clock says nothing here: the time it
                // arrived is the best bound then.
                let t = if r.t_ns > 0 && a.shared_clock {
                    r.t_ns
                } else {
                    crate::actor::protocol::monotonic_ns()
                };
                a.last_reply_ns = t;
                if a.shared_clock && r.start_ns > 0 && r.t_ns >= r.start_ns {
                    self.call_spans.push((r.start_ns, r.t_ns));
                }
                self.step_reply_ns = self.step_reply_ns.max(t);
                Ok(Some(Ok(r)))
            }
            Ok(Some(FromActor::Hello { .. })) => Err(Infra(format!(
                "actor {} greeted again in the middle of a call",
                a.name
            ))),
            Ok(None) => Ok(None),
            Err(ChannelError::Closed) => {
                let detail = self.death_detail(i);
                Ok(Some(Err(Observed::Died { detail })))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// How an ended actor ended (`exit status: 0`), if known; for an actor
    /// the zygote forked, asking also has it reaped (its pid is then free).
    fn exit_status(&mut self, i: usize) -> Option<String> {
        let zygote = self.env.zygote;
        let a = &mut self.actors[i];
        if a.exit.is_none() {
            a.exit = match (a.child.as_mut(), zygote, a.pid) {
                (Some(c), _, _) => c.try_wait().ok().flatten().map(|s| s.to_string()),
                (None, Some(z), Some(pid)) if a.zygote_child => z.status(pid),
                _ => None,
            };
        }
        a.exit.clone()
    }

    /// How an actor ended, with what it printed, after its channel closed.
    fn death_detail(&mut self, i: usize) -> String {
        let a = &mut self.actors[i];
        a.alive = false;
        a.pending = None;
        if let Some(fd) = &a.pidfd {
            let _ = fd.wait_exit(Duration::from_millis(500));
        }
        let status = self.exit_status(i).unwrap_or_else(|| "ended".into());
        let a = &mut self.actors[i];
        let err = a.stderr_text();
        if err.is_empty() {
            status
        } else {
            format!("{status}; stderr: {err}")
        }
    }

    /// Bookkeeping after a call returned: descriptor tables.
    fn after_call(&mut self, i: usize, op: &Op, obs: &Observed) {
        let Observed::Returned(outcome) = obs else {
            return;
        };
        match (op, outcome) {
            (
                Op::Open {
                    fd,
                    path,
                    cloexec,
                    via,
                    ..
                },
                Outcome::Opened { fd: n, ino, .. },
            ) => {
                let full = self
                    .open_path(i, path, *via)
                    .unwrap_or_else(|| self.path(i, path));
                let o = self.owner(i);
                self.actors[o].fds.insert(
                    fd.clone(),
                    FdRt {
                        n: *n,
                        ino: *ino,
                        path: full,
                        cloexec: *cloexec,
                    },
                );
            }
            (Op::Dup { fd, new }, Outcome::Opened { fd: n, ino, .. }) => {
                let path = self.actors[self.owner(i)]
                    .fds
                    .get(fd)
                    .map(|f| f.path.clone())
                    .unwrap_or_default();
                let o = self.owner(i);
                self.actors[o].fds.insert(
                    new.clone(),
                    FdRt {
                        n: *n,
                        ino: *ino,
                        path,
                        cloexec: false,
                    },
                );
            }
            (Op::Close { fd }, _) => {
                let o = self.owner(i);
                self.actors[o].fds.remove(fd);
            }
            _ => {}
        }
    }

    /// Place a completed call in time: it must have returned no earlier
    /// than the start of the step before the `await` (the step that should
    /// let it complete). Returns the observation and the hand-off latency
    /// from that step's release.
    fn timed(&mut self, i: usize, obs: Observed) -> (Observed, Option<Duration>) {
        let Observed::Returned(outcome) = obs else {
            return (obs, None);
        };
        let t_done = self.actors[i].last_reply_ns;
        let Some(prev) = self.step_times.last().copied() else {
            return (Observed::Returned(outcome), None);
        };
        if !self.actors[i].shared_clock {
            // Another kernel's clock: its timestamps say nothing here.
            return (Observed::Returned(outcome), None);
        }
        if t_done < prev.start_ns {
            let during = match self
                .step_times
                .iter()
                .find(|s| s.start_ns <= t_done && t_done <= s.end_ns)
            {
                Some(s) => format!("during step {}", s.number),
                None => match self.step_times.iter().rev().find(|s| s.end_ns < t_done) {
                    Some(s) => format!("after step {}", s.number),
                    None => "before any step".to_string(),
                },
            };
            return (
                Observed::Early {
                    outcome,
                    during,
                    before_step: prev.number,
                    ms_before: (prev.start_ns - t_done) as f64 / 1e6,
                },
                None,
            );
        }
        let handoff = Duration::from_nanos(t_done.saturating_sub(prev.release_ns));
        self.await_done_ns = self.await_done_ns.max(t_done);
        (Observed::Returned(outcome), Some(handoff))
    }

    /// Before a step: a pending call whose reply is already waiting returned
    /// before this step began. Its reply is kept for the `await`, which can
    /// then tell it returned too early even on another machine's clock.
    fn collect_early_replies(&mut self, step: usize) -> Result<(), Infra> {
        let reply_ns = self.step_reply_ns;
        for i in 0..self.actors.len() {
            let a = &self.actors[i];
            let (Some(p), None, Some(chan)) = (&a.pending, &a.early, &a.chan) else {
                continue;
            };
            let seq = p.seq;
            // SAFETY: the descriptor is owned by the channel, alive for this call.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(chan.raw_read_fd()) };
            if !crate::actor::channel::wait_readable(fd, Duration::ZERO).unwrap_or(false) {
                continue;
            }
            if let Some(Ok(reply)) = self.recv(i, Duration::ZERO)? {
                if reply.seq == seq {
                    self.actors[i].early = Some((reply, step));
                }
            }
        }
        self.step_reply_ns = reply_ns;
        Ok(())
    }

    /// The outcome of actor `i`'s pending call if its reply came before
    /// step `step` (an `await`): too early when it came before the step
    /// right before this one (the step that should let it complete) began.
    fn early_reply(&mut self, i: usize, step: usize) -> Option<Observed> {
        let (reply, seen_before) = self.actors[i].early.take()?;
        let p = self.actors[i].pending.take()?;
        let obs = Observed::Returned(reply.outcome.clone());
        self.after_call(i, &p.op, &obs);
        if seen_before < step {
            return Some(Observed::Early {
                outcome: reply.outcome,
                during: format!("before step {seen_before} began"),
                before_step: step.saturating_sub(1),
                ms_before: 0.0,
            });
        }
        Some(self.timed(i, obs).0)
    }

    fn await_pending(
        &mut self,
        i: usize,
        deadline: Instant,
        expect: &Expectation,
    ) -> Result<(Observed, Option<Duration>), Infra> {
        let Some(p) = self.actors[i].pending.take() else {
            return Err(Infra(format!(
                "actor {} has no pending call",
                self.actors[i].name
            )));
        };
        if allows_blocked(expect) {
            // Either it completes, or it is seen waiting again in the kernel
            // (a woken waiter that lost the race sleeps again, with a new
            // /proc/locks line; a waiter not yet woken is never mistaken for
            // one: wakeups happen inside the releasing call, which has returned).
            let obs = self.wait_call(i, p.seq, deadline, p.sig, p.ino)?;
            if matches!(obs, Observed::Blocked(_)) {
                self.actors[i].pending = Some(p);
                return Ok((obs, None));
            }
            self.after_call(i, &p.op, &obs);
            return Ok(self.timed(i, obs));
        }
        let mut interval = Duration::from_micros(20);
        let began = Instant::now();
        let mut lent = None;
        loop {
            match self.recv(i, interval)? {
                Some(Ok(reply)) => {
                    if reply.seq != p.seq {
                        return Err(Infra(format!(
                            "actor {} answered request {} while {} was outstanding",
                            self.actors[i].name, reply.seq, p.seq
                        )));
                    }
                    let obs = Observed::Returned(reply.outcome);
                    self.after_call(i, &p.op, &obs);
                    return Ok(self.timed(i, obs));
                }
                Some(Err(died)) => return Ok((died, None)),
                None => self.lend_if_idle(began, &mut lent),
            }
            let now = Instant::now();
            if now >= deadline {
                // Say what it is doing instead of completing.
                let mut d = p.sig.map(|s| self.detector(i, s, p.ino));
                let still = match d.as_mut() {
                    // Two reads make a stable observation.
                    Some(d) => {
                        self.probe(i, d)?;
                        self.probe(i, d)?
                    }
                    None => None,
                };
                let waited = now.duration_since(self.last_step_end);
                let task = self.actors[i].tid.or(self.actors[i].pid).unwrap_or(0);
                let obs = match still {
                    Some(ev) => Observed::Blocked(Evidence {
                        text: format!("still waiting {} ms later: {}", waited.as_millis(), ev.text),
                    }),
                    None => Observed::Hung {
                        waited,
                        process: describe_process(task),
                    },
                };
                self.actors[i].pending = Some(p);
                return Ok((obs, None));
            }
            // Replies wake the wait at once: the interval only bounds how
            // late the deadline is noticed.
            interval = (interval * 2).min(IDLE_MAX).min(deadline - now);
        }
    }

    /// The call must keep waiting for `hold` (a contender with a lock timeout
    /// behind a hung holder); then it is confirmed still blocked.
    fn hold_pending(
        &mut self,
        i: usize,
        hold: Duration,
        deadline: Instant,
    ) -> Result<Observed, Infra> {
        let Some(p) = self.actors[i].pending.take() else {
            return Err(Infra(format!(
                "actor {} has no pending call",
                self.actors[i].name
            )));
        };
        let began = Instant::now();
        let until = began + hold;
        // Only watching: another trial may use the CPU meanwhile. A reply
        // still wakes the wait at once; taking the slot back can only make
        // the window longer, and the time it took extends the deadline.
        let lent = self.env.slots.map(|s| s.lend());
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.recv(i, left)? {
                Some(Ok(reply)) => {
                    let obs = Observed::Returned(reply.outcome);
                    drop(lent);
                    self.after_call(i, &p.op, &obs);
                    return Ok(obs);
                }
                Some(Err(died)) => return Ok(died),
                None => {}
            }
        }
        let deadline = deadline + lent.map(|l| l.back()).unwrap_or_default();
        let obs = self.wait_call(i, p.seq, deadline, p.sig, p.ino)?;
        Ok(match obs {
            Observed::Blocked(ev) => {
                self.actors[i].pending = Some(p);
                Observed::Blocked(Evidence {
                    text: format!(
                        "kept waiting for {} ms; {}",
                        began.elapsed().as_millis(),
                        ev.text
                    ),
                })
            }
            other => {
                self.after_call(i, &p.op, &other);
                other
            }
        })
    }

    /// SIGSTOP or SIGCONT, then wait until the kernel shows the new state.
    fn stop_or_continue(&mut self, i: usize, stop: bool, deadline: Instant) -> Observed {
        let pid = self.actors[i].pid.unwrap_or(0);
        let sig = if stop {
            Signal::SIGSTOP
        } else {
            Signal::SIGCONT
        };
        if let Err(e) = self.send_signal(i, sig) {
            return Observed::Died {
                detail: format!("kill({pid}, {}) failed: {e}", sig.as_str()),
            };
        }
        let reached = |s: char| {
            if stop {
                matches!(s, 'T' | 't')
            } else {
                !matches!(s, 'T' | 't')
            }
        };
        let mut pause = Duration::from_micros(10);
        loop {
            match self.state_of(i) {
                Ok(Some(s)) if reached(s) => {
                    return Observed::Returned(Outcome::Done { ret: 0 });
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Observed::Died {
                        detail: format!("pid {pid} is gone"),
                    }
                }
                Err(Infra(e)) => {
                    return Observed::Died {
                        detail: format!("cannot see pid {pid}: {e}"),
                    }
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Observed::Hung {
                    waited: Duration::ZERO,
                    process: format!(
                        "did not {}: {}",
                        if stop { "stop" } else { "continue" },
                        describe_process(pid)
                    ),
                };
            }
            // The state changes as soon as the signal is delivered: poll it
            // with a short, growing pause, bounded by the deadline.
            let _ = nix::poll::ppoll(
                &mut [],
                Some(nix::sys::time::TimeSpec::from_duration(
                    pause.min(deadline - now),
                )),
                None,
            );
            pause = (pause * 2).min(Duration::from_millis(1));
        }
    }

    fn signal_call(&self, i: usize, signal: Signal) -> String {
        let a = &self.actors[i];
        match (a.thread_of, a.pid, a.tid) {
            (Some(_), Some(pid), Some(tid)) => format!("tgkill({pid}, {tid}, {})", signal.as_str()),
            _ => format!("kill({}, {})", a.pid.unwrap_or(0), signal.as_str()),
        }
    }

    /// Send a signal; for a fatal one wait until the process is gone.
    fn signal(&mut self, i: usize, signal: Signal, fatal: bool, deadline: Instant) -> Observed {
        if let Err(e) = self.send_signal(i, signal) {
            return Observed::Died {
                detail: format!("{} failed: {e}", self.signal_call(i, signal)),
            };
        }
        if !fatal {
            return Observed::Returned(Outcome::Done { ret: 0 });
        }
        self.wait_end(i, deadline, &format!("killed by {}", signal.as_str()))
    }

    /// Wait until the actor's process has ended (its locks are then gone).
    fn wait_end(&mut self, i: usize, deadline: Instant, how: &str) -> Observed {
        let pid = self.actors[i].pid.unwrap_or(0);
        let ended = self.wait_gone(i, deadline);
        if !ended {
            return Observed::Hung {
                waited: Duration::ZERO,
                process: format!("did not end: {}", describe_process(pid)),
            };
        }
        // The process and its threads are gone.
        for t in 0..self.actors.len() {
            if t == i || self.actors[t].thread_of == Some(i) {
                let a = &mut self.actors[t];
                a.alive = false;
                a.pending = None;
                a.chan = None;
            }
        }
        let status = self
            .exit_status(i)
            .map(|s| format!(", {s}"))
            .unwrap_or_default();
        Observed::Ended {
            how: format!("{how}{status}"),
        }
    }

    /// Inject a lab fault with the target's command for it; after a crash,
    /// the host's actors are gone (their locks are not released by them).
    fn lab_fault(
        &mut self,
        fault: crate::plan::resolve::LabFault,
        host: Option<&str>,
        deadline: Instant,
    ) -> Result<(String, Observed), Infra> {
        let cmd = self
            .env
            .faults
            .get(&fault)
            .ok_or_else(|| Infra(format!("this target cannot inject `{}`", fault.as_str())))?
            .replace("{host}", host.unwrap_or(""));
        // A host being cut off counts as cut off from now on, whatever the
        // command does next (it may finish after its deadline): teardown
        // reconnects it.
        self.lab_faulted = true;
        if let (
            Some(h),
            crate::plan::resolve::LabFault::Disconnect | crate::plan::resolve::LabFault::Crash,
        ) = (host, fault)
        {
            self.severed.insert(h.to_string());
        }
        // A fault shared with the other targets' trials (a server restart)
        // is injected once, when all of them have reached it.
        let shared = !self.env.confined_faults.contains(&fault);
        let key = format!("{} {cmd}", fault.as_str());
        let result = match (self.env.barrier, shared) {
            (Some(b), true) => b
                .arrive(&key, deadline, &mut || run_fault_command(&cmd, deadline))
                .ok_or_else(|| {
                    Infra(format!(
                        "the other trials sharing `{cmd}` did not reach it in time"
                    ))
                })?,
            _ => run_fault_command(&cmd, deadline),
        };
        match result {
            Ok(true) => {}
            Ok(false) => {
                return Ok((
                    cmd,
                    Observed::Hung {
                        waited: Duration::ZERO,
                        process: "the fault command did not finish".into(),
                    },
                ))
            }
            Err(e) => return Err(Infra(e)),
        }
        if let (Some(h), crate::plan::resolve::LabFault::Reconnect) = (host, fault) {
            self.severed.remove(h);
        }
        if let (crate::plan::resolve::LabFault::Crash, Some(h)) = (fault, host) {
            let on: Vec<usize> = (0..self.actors.len())
                .filter(|&i| {
                    self.actors[i].alive
                        && self
                            .env
                            .hosts
                            .get(self.actors[i].host)
                            .is_some_and(|x| x.name == h)
                })
                .collect();
            for i in on {
                // A crash takes the whole host with it, its agent too: an actor
                // seen alive afterwards means the fault did not do what it
                // says. A killed process may take long to go (an NFS client
                // finishes its unlock once the network is back): killed is
                // enough. Without a view of the host (its agent went down
                // with it), the fault command's word is taken.
                let settle = deadline.min(Instant::now() + CRASH_SETTLE);
                if !self.actor_dying(i)
                    && self.wait_gone_seen(i, settle) == Some(false)
                    && !self.actor_dying(i)
                {
                    let a = &self.actors[i];
                    return Err(Infra(format!(
                        "actor {} (pid {}) on host {h} survived the crash fault `{cmd}`",
                        a.name,
                        a.pid.unwrap_or(0)
                    )));
                }
                let a = &mut self.actors[i];
                a.alive = false;
                a.chan = None;
                a.pending = None;
            }
        }
        Ok((cmd, Observed::Returned(Outcome::Done { ret: 0 })))
    }

    /// The actor replaces itself with a fresh image; close-on-exec descriptors go.
    fn exec(&mut self, i: usize, deadline: Instant) -> Result<Observed, Infra> {
        let seq = self.next_seq();
        self.send(i, seq, Request::Exec)?;
        let pid = self.actors[i].pid;
        let msg = {
            let a = &mut self.actors[i];
            let Some(chan) = a.chan.as_mut() else {
                return Err(Infra(format!("actor {} has no channel", a.name)));
            };
            chan.recv_until::<FromActor>(deadline)
        };
        match msg {
            Ok(Some(FromActor::Hello { hello })) => {
                if Some(hello.pid) != pid {
                    return Err(Infra(format!(
                        "after exec, actor {} says it is pid {}",
                        self.actors[i].name, hello.pid
                    )));
                }
                let a = &mut self.actors[i];
                a.fds.retain(|_, f| !f.cloexec);
                for t in 0..self.actors.len() {
                    if self.actors[t].thread_of == Some(i) {
                        let th = &mut self.actors[t];
                        th.alive = false;
                        th.chan = None;
                        th.pending = None;
                    }
                }
                Ok(Observed::Returned(Outcome::Done { ret: 0 }))
            }
            Ok(Some(FromActor::Reply(r))) => Ok(Observed::Returned(r.outcome)),
            Ok(None) => Ok(Observed::Hung {
                waited: Duration::ZERO,
                process: describe_process(pid.unwrap_or(0)),
            }),
            Err(ChannelError::Closed) => Ok(Observed::Died {
                detail: self.death_detail(i),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// /proc/locks of the actor's own host (its agent reads it elsewhere),
    /// with the device name this target's locks carry there when known.
    fn proc_locks_of(
        &mut self,
        i: usize,
    ) -> Result<(Vec<observe::LockLine>, Option<String>), Infra> {
        if self.actors[i].local_view {
            return Ok((
                observe::read_proc_locks().unwrap_or_default(),
                self.env.locks_dev.clone(),
            ));
        }
        let host = self.actors[i].host;
        let tid = self.actors[i].pid.unwrap_or(0);
        match self.agent_call(host, Request::ReadProc { tid }, Duration::from_secs(5))? {
            Outcome::Proc { mut snapshot } => {
                use crate::actor::observe::ProcView;
                Ok((snapshot.locks(), None))
            }
            other => Err(Infra(format!("the agent answered {other:?}"))),
        }
    }

    /// Look for the actor's lock on a descriptor's file in /proc/locks.
    fn listed(
        &mut self,
        i: usize,
        fd: &str,
        mech: Mechanism,
        mode: LockMode,
        start: i64,
        len: i64,
    ) -> Result<Observed, Infra> {
        let f = self.fd(i, fd)?.clone();
        let (kind, pid) = match mech {
            Mechanism::Flock => ("FLOCK", i64::from(self.actors[i].pid.unwrap_or(0))),
            Mechanism::Posix => ("POSIX", i64::from(self.actors[i].pid.unwrap_or(0))),
            Mechanism::Ofd => ("OFDLCK", -1),
            Mechanism::Lease => ("LEASE", i64::from(self.actors[i].pid.unwrap_or(0))),
            Mechanism::Pidfile | Mechanism::Lockfile => {
                return Err(Infra("lock files are not in /proc/locks".into()))
            }
        };
        let access = match mode {
            LockMode::Exclusive => "WRITE",
            LockMode::Shared => "READ",
        };
        // The range as the kernel stores it (a negative length locks the
        // bytes before `start`); an impossible range cannot be listed.
        let Some((want_start, want_end)) = listed_range(start, len) else {
            return Ok(Observed::NotListed(format!(
                "start {start} len {len} is not a lockable range"
            )));
        };
        // /proc/locks is printed a page per read() and walked by position, so
        // a line can be skipped when locks ahead of it go away between pages
        // (other trials run in parallel). A line seen once was there; one not
        // seen is only reported missing after several complete readings.
        let mut all_lines = Vec::new();
        let mut found = None;
        for _ in 0..observe::LISTING_READS {
            let (lines, dev) = self.proc_locks_of(i)?;
            found = lines
                .iter()
                .find(|l| {
                    !l.blocked
                        && l.ino == f.ino
                        && dev.as_ref().is_none_or(|d| *d == l.dev)
                        && l.kind == kind
                        && l.pid == pid
                        && l.access == access
                        && (!mech.has_ranges() || (l.start == want_start && l.end == want_end))
                })
                .cloned();
            all_lines = lines;
            if found.is_some() {
                break;
            }
            std::thread::yield_now();
        }
        Ok(match found {
            Some(l) => Observed::Listed(l.raw.clone()),
            None => {
                let all: Vec<String> = all_lines
                    .into_iter()
                    .filter(|l| l.ino == f.ino)
                    .map(|l| l.raw)
                    .collect();
                Observed::NotListed(if all.is_empty() {
                    format!("no line for inode {}", f.ino)
                } else {
                    format!("lines for inode {}: {}", f.ino, all.join(" | "))
                })
            }
        })
    }

    /// A new actor: a forked child, a thread or a spawned process of
    /// `parent`, connected back through an abstract Unix socket only that
    /// process may use.
    fn new_actor(
        &mut self,
        parent: usize,
        child: usize,
        kind: NewActor,
        deadline: Instant,
    ) -> Result<Observed, Infra> {
        if !self.actors[parent].local_view {
            return Err(Infra(format!(
                "a new actor on host {} could not reach lockcheck's socket (another machine); fork, thread and spawn work on hosts that share this one's kernel",
                self.host_name(self.actors[parent].host)
            )));
        }
        // A socket path in a private directory: reachable from actors in
        // other network namespaces (abstract names are per namespace).
        if self.sock_dir.is_none() {
            self.sock_dir = Some(
                tempfile::Builder::new()
                    .prefix("lockcheck-sock-")
                    .tempdir()
                    .map_err(|e| Infra(format!("socket directory: {e}")))?,
            );
        }
        let dir = self
            .sock_dir
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .unwrap_or_default();
        let path = dir.join(format!(
            "{}.{}.sock",
            SOCKET_COUNTER.fetch_add(1, Ordering::Relaxed),
            rand_suffix() % 1_000_000
        ));
        let name = path.to_string_lossy().into_owned();
        let listener =
            UnixListener::bind(&path).map_err(|e| Infra(format!("binding {name}: {e}")))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Infra(format!("listener: {e}")))?;
        let seq = self.next_seq();
        let req = match kind {
            NewActor::Thread => Request::Thread { socket: name },
            NewActor::Fork => Request::Fork { socket: name },
            NewActor::Spawn(set_tid) => Request::Spawn {
                socket: name,
                set_tid,
            },
        };
        self.send(parent, seq, req)?;
        let obs = self.wait_call(parent, seq, deadline, None, None)?;
        let peer = match &obs {
            Observed::Returned(Outcome::Forked { pid } | Outcome::Spawned { pid }) => *pid,
            Observed::Returned(Outcome::Threaded { .. }) => self.actors[parent].pid.unwrap_or(0),
            _ => return Ok(obs),
        };
        if let NewActor::Spawn(Some(want)) = kind {
            if peer != want {
                return Err(Infra(format!(
                    "clone3 asked for pid {want} but gave {peer}"
                )));
            }
        }
        let Some(stream) = accept_from(&listener, peer, deadline)? else {
            return Ok(Observed::Hung {
                waited: Duration::ZERO,
                process: format!("the new actor did not connect: {}", describe_process(peer)),
            });
        };
        let write_half = stream
            .try_clone()
            .map_err(|e| Infra(format!("socket: {e}")))?;
        let inherited = match kind {
            NewActor::Spawn(_) => HashMap::new(),
            NewActor::Fork => self.actors[self.owner(parent)].fds.clone(),
            NewActor::Thread => HashMap::new(),
        };
        let c = &mut self.actors[child];
        c.chan = Some(
            Channel::new(OwnedFd::from(stream), OwnedFd::from(write_half))
                .map_err(|e| Infra(format!("new actor's channel: {e}")))?,
        );
        c.pid = Some(peer);
        if !matches!(kind, NewActor::Thread) {
            c.pidfd = Pidfd::open(peer).ok();
        }
        let (host, view, clock) = {
            let p = &self.actors[parent];
            (p.host, p.local_view, p.shared_clock)
        };
        let c = &mut self.actors[child];
        c.host = host;
        c.local_view = view;
        c.shared_clock = clock;
        c.alive = true;
        c.fds = inherited;
        self.expect_hello(child, deadline)?;
        Ok(obs)
    }

    /// Kill everything the trial started and wait for it to be gone.
    fn teardown(&mut self) -> Vec<String> {
        self.torn_down = true;
        let mut problems = Vec::new();
        // Hosts left cut off come back first: their killed actors may be
        // waiting for the network to finish dying.
        // Never through the fault barrier: this host is this trial's own.
        for h in std::mem::take(&mut self.severed) {
            let deadline = Instant::now() + Duration::from_secs(60);
            let Some(cmd) = self
                .env
                .faults
                .get(&crate::plan::resolve::LabFault::Reconnect)
            else {
                problems.push(format!("host {h} was left cut off: no reconnect command"));
                continue;
            };
            let cmd = cmd.replace("{host}", &h);
            match run_fault_command(&cmd, deadline) {
                Ok(true) => {}
                Ok(false) => problems.push(format!("reconnecting host {h}: `{cmd}` hung")),
                Err(e) => problems.push(format!("reconnecting host {h}: {e}")),
            }
        }
        // Actors the harness cannot see are killed by their host's agent.
        for i in 0..self.actors.len() {
            let a = &self.actors[i];
            if !a.local_view && a.alive && a.thread_of.is_none() {
                let _ = self.send_signal(i, Signal::SIGKILL);
            }
        }
        // Kill through pidfds: exactly the processes this trial started,
        // never a reused pid or process group of someone else.
        for a in &mut self.actors {
            a.chan = None;
            if a.thread_of.is_some() {
                continue;
            }
            if !a.local_view {
                // Its launcher (ssh, kubectl, ...) is our child: end it too.
                if let Some(c) = a.child.as_mut() {
                    let _ = c.kill();
                }
                continue;
            }
            match (&a.pidfd, a.pid) {
                (Some(fd), _) => fd.kill(),
                // No pidfd (an old kernel): a direct child not yet reaped
                // still owns its pid, so kill() cannot hit another process.
                (None, Some(pid)) => {
                    if a.child
                        .as_mut()
                        .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
                    {
                        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    }
                }
                (None, None) => {}
            }
        }
        let deadline = Instant::now()
            + if self.lab_faulted {
                LAB_REAP_TIMEOUT
            } else {
                REAP_TIMEOUT
            };
        for a in &mut self.actors {
            let gone = match (&a.pidfd, a.local_view) {
                (Some(fd), true) => fd
                    .wait_exit(deadline.saturating_duration_since(Instant::now()))
                    .unwrap_or(true),
                _ => true,
            };
            if let Some(child) = a.child.as_mut() {
                reap(child, deadline);
            }
            // The zygote reaps it now, so no zombie outlives the trial.
            if let (true, true, Some(z), Some(pid)) = (gone, a.zygote_child, self.env.zygote, a.pid)
            {
                if a.exit.is_none() {
                    a.exit = z.status(pid);
                }
            }
            if !gone {
                problems.push(format!(
                    "actor {} did not end after SIGKILL: {}",
                    a.name,
                    describe_process(a.pid.unwrap_or(0))
                ));
            }
        }
        // The hosts' agents last: they killed the actors the harness cannot see.
        for agent in self.agents.iter_mut().flatten() {
            agent.chan = None;
            if let Some(child) = agent.child.as_mut() {
                let _ = child.kill();
                reap(child, deadline);
            }
        }
        problems
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
