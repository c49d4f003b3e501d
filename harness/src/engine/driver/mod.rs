//! Driving one trial: start the actors, perform each planned step through
//! them, observe and judge what happens, and tear everything down.
//!
//! Nothing here sleeps to "give it time": replies are awaited with poll(2)
//! against a deadline, and a call that should block is recognised from the
//! kernel's own state (see `observe`). Every wait ends at the step's
//! timeout, so a hung call is a failure that names the step, never a hang.
//!
//! The parts, one job each: `pool` (the `ActorPool`: starting actors,
//! greetings, sending and receiving, watching a call that should block,
//! the hosts' agents, killing and reaping), `timeline` (step times and the
//! measurements made from them), `steps` (`run_step` dispatches each kind
//! of operation), `wait` (awaiting pending calls, early replies), `signals`,
//! `lab` (lab faults), `locks` (/proc/locks evidence) and `launch` (exec,
//! teardown). The driver itself holds the plan, the pool and the timeline.

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
pub(crate) use pool::ActorPool;
use timeline::Timeline;

mod lab;
mod launch;
mod locks;
mod pool;
mod signals;
mod steps;
mod timeline;
mod wait;

/// How long teardown waits for killed actors to disappear.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);
/// After a host was cut off or crashed, its killed actors may still be
/// finishing a call to the file server (an NFS unlock waiting for the
/// network), which they do once the host is reconnected.
const LAB_REAP_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest pause between two checks of a deadline while waiting for a reply.
const IDLE_MAX: Duration = Duration::from_millis(20);
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
    /// A scenario in rounds under `--rounds-budget`: steps in a round, and
    /// the time after which no new round starts.
    pub(crate) rounds: Option<(usize, Duration)>,
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
    /// The actors and the channels to them.
    pool: ActorPool<'a>,
    /// When steps ran and replies came, and what was measured from them.
    time: Timeline,
    /// Whether teardown has run (it also runs on drop, after a panic).
    torn_down: bool,
    /// Hosts cut off (disconnected or crashed) and not reconnected yet:
    /// teardown reconnects them.
    severed: std::collections::BTreeSet<String>,
    /// Hosts whose link a `net` step impaired: teardown restores it.
    impaired: std::collections::BTreeSet<String>,
    /// Whether a lab fault was injected (teardown then waits longer).
    lab_faulted: bool,
}

impl<'a> Driver<'a> {
    pub(crate) fn new(plan: &'a TrialPlan, env: &'a TrialEnv<'a>) -> Self {
        Driver {
            plan,
            env,
            pool: ActorPool::new(plan, env),
            time: Timeline::new(Instant::now()),
            torn_down: false,
            severed: Default::default(),
            impaired: Default::default(),
            lab_faulted: false,
        }
    }

    /// Run the trial to its end and clean up.
    pub(crate) fn run(mut self) -> TrialOutcome {
        let mut steps = Vec::new();
        let mut failure = None;
        let mut error = None;
        let mut skip = None;
        let started = Instant::now();
        match self.spawn_initial() {
            Err(Infra(e)) => error = Some(format!("could not start the actors: {e}")),
            Ok(()) => {
                for step in &self.plan.steps {
                    // `--rounds-budget`: no new round once the budget is spent.
                    if let Some((per, budget)) = self.env.rounds {
                        if per > 0
                            && step.number > 1
                            && (step.number - 1) % per == 0
                            && started.elapsed() >= budget
                        {
                            break;
                        }
                    }
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
                .pool
                .actors
                .iter()
                .map(|a| (a.name.clone(), a.pid, self.pool.host_name(a.host)))
                .collect(),
            teardown,
            measurements: std::mem::take(&mut self.time.measurements),
            in_calls: Duration::from_nanos(union_ns(&mut self.pool.replies.spans)),
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

    /// End the trial: kill every actor; returns teardown problems.
    pub(crate) fn finish(mut self) -> Vec<String> {
        self.teardown()
    }
}

impl<'a> Driver<'a> {
    /// Start the plan's first actors: those not forked, spawned or
    /// started as threads by another actor during the trial.
    fn spawn_initial(&mut self) -> Result<(), Infra> {
        let initial: Vec<usize> = (self.plan.actors.iter().enumerate())
            .filter(|(_, a)| {
                a.forked_from.is_none() && a.thread_of.is_none() && a.spawned_by.is_none()
            })
            .map(|(i, _)| i)
            .collect();
        self.pool.start(&initial)
    }

    /// Actor pids by index (None for actors not started).
    pub(crate) fn pids(&self) -> Vec<Option<i32>> {
        self.pool.pids()
    }

    /// The actors, for callers that drive them directly after the plan's
    /// steps (the benchmarks).
    pub(crate) fn pool(&mut self) -> &mut ActorPool<'a> {
        &mut self.pool
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

/// Whether an expectation accepts a call that is still waiting.
fn allows_blocked(e: &Expectation) -> bool {
    match e {
        Expectation::Blocks => true,
        Expectation::OneOf(list) => list.iter().any(allows_blocked),
        Expectation::Winners { others, .. } => allows_blocked(others),
        _ => false,
    }
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
        let f = self.d.pool.actors[self.d.pool.owner(self.i)]
            .fds
            .get(name)?;
        Some(FdView {
            n: f.n,
            path: f.path.clone(),
            ino: f.ino,
        })
    }

    fn name(&self) -> &str {
        &self.d.pool.actors[self.i].name
    }

    fn path(&self, rel: &str) -> Beneath {
        self.d.pool.path(self.i, rel)
    }

    fn open_path(&self, rel: &str, via: Option<Via>) -> Option<Beneath> {
        self.d.pool.open_path(self.i, rel, via)
    }

    // A lease break makes open wait: watch for that on the file's inode,
    // known if an actor has it open (a lease needs one). The harness itself
    // never touches the target here: a call on a server that stopped
    // answering would not return.
    fn open_ino(&self, path: &Beneath) -> Option<u64> {
        self.d
            .pool
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
