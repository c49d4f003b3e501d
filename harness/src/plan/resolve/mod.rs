//! Planning: a scenario, resolved for one mechanism, becomes a `TrialPlan` —
//! concrete steps with actors as indices, descriptors by name, every default
//! filled in and every per-mechanism expectation chosen.
//!
//! Resolving is also validation: it walks the steps keeping track of which
//! actors exist, are alive, are waiting in a blocked call, which signals
//! they handle and which descriptors each has open, so that a step that
//! cannot be performed is an error at its `file:line:column` before
//! anything runs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::spec::error::ScenarioError;
use crate::spec::loc::{Located, Pos};
use crate::spec::scenario::{
    Access, ActorSet, AwaitStep, ByteLocksStep, CaughtStep, Common, CounterStep, DupStep, Expect,
    HandleStep, HoldStep, InvalidCall, InvalidStep, KillStep, LeaseMode, ListedStep, LockMode,
    LockStep, Mechanism, OpenStep, PidSpec, ReadStep, RecordsSpec, RecordsStep, Scenario,
    SignalStep, SpawnStep, Step, TestStep, UnlockStep, Via, Whence, WriteStep,
};

mod checks;
mod expect;
mod model;
mod steps;

/// The step timeout when neither the step nor the scenario sets one.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest timeout a step may ask for.
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// The most actors one scenario may declare (including forked ones).
pub(crate) const MAX_ACTORS: usize = 256;
/// The most increments one counter step may ask for.
pub(crate) const MAX_COUNTER: u32 = 100_000;
/// The most locks one `byte-locks` step takes.
pub(crate) const MAX_BYTE_LOCKS: u32 = 100_000;
/// The sizes a `records` step's records may have.
pub(crate) const RECORD_SIZES: std::ops::RangeInclusive<u32> = 16..=4096;
/// The most bytes a `records` step may write (a `read` checks them all).
pub(crate) const MAX_RECORDS_BYTES: u64 = MAX_DATA as u64;
/// The most bytes a `write` or `read` step moves (the actor protocol carries
/// them as JSON text).
pub(crate) const MAX_DATA: usize = 64 * 1024;

/// A scenario made concrete for one mechanism.
#[derive(Debug, Clone)]
pub struct TrialPlan {
    pub(crate) actors: Vec<ActorPlan>,
    pub(crate) steps: Vec<PlannedStep>,
    /// The distinct hosts the actors are placed on (at least one).
    pub(crate) hosts: Vec<String>,
    /// Whether a step opens files through a second mount.
    pub(crate) needs_second_mount: bool,
    /// Faults and abilities the target must provide, or the trial is skipped.
    pub(crate) needs: BTreeSet<Need>,
}

/// Something a trial needs from its target beyond a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Need {
    /// Giving a new process a chosen PID (clone3 with set_tid).
    PidReuse,
    /// A lab fault.
    Lab(LabFault),
    /// The storage behind the target (`via: backing-store`).
    BackingStore,
    /// A file in an overlay's lower layer (`requires: [lower-file]`).
    LowerFile,
}

/// Faults only a lab target (the NFS lab) can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum LabFault {
    Disconnect,
    Reconnect,
    Crash,
    RestartServer,
    /// A slow or lossy link for a while (tc netem).
    Net,
}

/// A `net` step's impairment: netem's arguments and how long it lasts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NetFault {
    /// `delay 100000us 20000us loss 5% ...`, as `tc qdisc ... netem` takes them.
    pub(crate) netem: String,
    /// How long the impairment lasts.
    pub(crate) lasts: crate::spec::scenario::Bound,
}

impl LabFault {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LabFault::Disconnect => "disconnect",
            LabFault::Reconnect => "reconnect",
            LabFault::Crash => "crash",
            LabFault::RestartServer => "restart-server",
            LabFault::Net => "net",
        }
    }
}

impl Need {
    pub(crate) fn describe(self) -> String {
        match self {
            Need::PidReuse => "forcing PID reuse".to_string(),
            Need::Lab(f) => format!("the lab fault `{}`", f.as_str()),
            Need::BackingStore => {
                "the storage behind the target (a FUSE filesystem's source directory)".to_string()
            }
            Need::LowerFile => "a file in an overlay's lower layer".to_string(),
        }
    }
}

/// The host of actors that do not name one.
pub(crate) const DEFAULT_HOST: &str = "a";

#[derive(Debug, Clone)]
pub(crate) struct ActorPlan {
    pub(crate) name: String,
    pub(crate) host: String,
    /// Set for actors created by a `fork` step: the parent's index.
    pub(crate) forked_from: Option<usize>,
    /// Set for actors created by a `thread` step: the process actor's index.
    pub(crate) thread_of: Option<usize>,
    /// Set for actors created by a `spawn` step: the spawning actor's index.
    pub(crate) spawned_by: Option<usize>,
}

#[derive(Debug, Clone)]
pub(crate) struct PlannedStep {
    /// 1-based position in the scenario's step list.
    pub(crate) number: usize,
    pub(crate) pos: Pos,
    /// The actors the step addresses (several: they act at the same moment).
    pub(crate) actors: Vec<usize>,
    pub(crate) op: Op,
    pub(crate) expect: Expectation,
    pub(crate) timeout: Duration,
    pub(crate) note: Option<String>,
    /// Errno values that make the trial a skip ("not supported here").
    pub(crate) unsupported: Vec<i32>,
    /// A waiting call that is let wait: judged on its completion within
    /// `timeout`, not on being seen blocked (a lock step with `within`).
    pub(crate) patient: bool,
    /// The timeout as a number of the target's leases (`within: 3 leases`);
    /// `timeout` then holds it for the default lease.
    pub(crate) leases: Option<f64>,
}

/// The lease a bound in leases is reckoned with unless the run gives one
/// (`--lease`): the Linux NFS server's default lease and grace period.
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(90);

impl PlannedStep {
    /// The step's timeout on a target whose lease is `lease`.
    pub(crate) fn timeout_for(&self, lease: Duration) -> Duration {
        match self.leases {
            Some(n) => lease.mul_f64(n),
            None => self.timeout,
        }
    }
}

impl PlannedStep {
    /// Whether this step performs an operation of `mech` (or, for
    /// steps spelling out a method by hand, any step at all of a scenario
    /// about that method).
    /// Whether it is a kernel lock call: lock, unlock, test or a counter's
    /// locked increments, of any mechanism.
    pub(crate) fn is_lock_call(&self) -> bool {
        matches!(
            &self.op,
            Op::Lock { mech: m, .. }
                | Op::Test { mech: m, .. }
                | Op::Counter { mech: m, .. }
                | Op::Records { mech: m, .. }
                | Op::Hold { mech: m, .. }
                | Op::ByteLocks { mech: m, .. }
                | Op::Invalid { mech: m, .. }
                if m.is_kernel_lock()
        )
    }

    pub(crate) fn uses_mechanism(&self, mech: Mechanism) -> bool {
        match &self.op {
            Op::Lock { mech: m, .. }
            | Op::Test { mech: m, .. }
            | Op::Listed { mech: m, .. }
            | Op::Counter { mech: m, .. }
            | Op::Records { mech: m, .. }
            | Op::Hold { mech: m, .. }
            | Op::ByteLocks { mech: m, .. }
            | Op::Invalid { mech: m, .. } => *m == mech,
            Op::Open { .. } | Op::PidAlive { .. } | Op::Unlink { .. } => !mech.is_kernel_lock(),
            _ => false,
        }
    }
}

/// What a lock step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockKind {
    Exclusive,
    Shared,
    Unlock,
}

impl From<LockMode> for LockKind {
    fn from(m: LockMode) -> Self {
        match m {
            LockMode::Exclusive => LockKind::Exclusive,
            LockMode::Shared => LockKind::Shared,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    Open {
        path: String,
        access: Access,
        create: bool,
        excl: bool,
        trunc: bool,
        directory: bool,
        cloexec: bool,
        via: Option<Via>,
        fd: String,
    },
    Close {
        fd: String,
    },
    Dup {
        fd: String,
        new: String,
    },
    Lock {
        fd: String,
        mech: Mechanism,
        kind: LockKind,
        wait: bool,
        start: i64,
        len: i64,
        /// Where `start` counts from (record locks).
        whence: Whence,
    },
    Test {
        fd: String,
        mech: Mechanism,
        mode: LockMode,
        start: i64,
        len: i64,
        whence: Whence,
        /// Asked from a new PID namespace.
        pidns: bool,
    },
    Write {
        fd: String,
        data: String,
        offset: Option<u64>,
        sync: bool,
        /// Through a shared mapping of the file.
        mapped: bool,
    },
    Read {
        fd: String,
        len: u64,
        offset: Option<u64>,
        mapped: bool,
    },
    Fork {
        child: usize,
    },
    Thread {
        child: usize,
    },
    Exit {
        code: i32,
    },
    Exec,
    /// Wait for a blocked call; `hold`: it must keep waiting this long.
    Await {
        hold: Option<Duration>,
    },
    /// SIGSTOP, then wait until the kernel shows the actor stopped.
    Stop,
    /// SIGCONT, then wait until it runs again.
    Continue,
    /// Close every descriptor the actor has.
    CloseAll,
    /// A fresh actor process started by this one, with a dead actor's PID if `pid_of`.
    Spawn {
        child: usize,
        pid_of: Option<usize>,
    },
    /// Read the PID in a file and probe it with kill(PID, 0).
    PidAlive {
        path: String,
    },
    /// A fault only a lab target can inject.
    Lab {
        fault: LabFault,
        host: Option<String>,
        /// `net` only: the impairment.
        net: Option<NetFault>,
    },
    /// `kill` (fatal: wait until the process is gone) or `signal` (it stays).
    Signal {
        signal: Signal,
        fatal: bool,
    },
    /// Whether the process received `signal`, waiting up to `within`.
    Caught {
        signal: Signal,
        within: Duration,
    },
    Handle {
        signal: Signal,
        restart: bool,
    },
    Unlink {
        path: String,
    },
    Rename {
        from: String,
        to: String,
    },
    Symlink {
        target: String,
        path: String,
    },
    Mkdir {
        path: String,
    },
    Mkfifo {
        path: String,
    },
    Truncate {
        path: String,
        len: u64,
    },
    Listed {
        fd: String,
        mech: Mechanism,
        mode: LockMode,
        start: i64,
        len: i64,
    },
    Counter {
        fd: String,
        mech: Mechanism,
        times: u32,
        offset: u64,
    },
    /// A lock call made wrong on purpose.
    Invalid {
        fd: String,
        mech: Mechanism,
        call: InvalidCall,
    },
    /// `count` one-byte locks on bytes 0, 2, 4, ...
    ByteLocks {
        fd: String,
        mech: Mechanism,
        kind: LockKind,
        count: u32,
    },
    /// Wait for an exclusive lock, hold it this long, release it.
    Hold {
        fd: String,
        mech: Mechanism,
        hold: Duration,
    },
    /// Interleaved record writers; `writers` are the step's actors, in order.
    Records {
        fd: String,
        mech: Mechanism,
        count: u32,
        size: u32,
        writers: Vec<String>,
    },
}

fn range_text(start: i64, len: i64, whence: Whence) -> String {
    let text = match len {
        0 => format!("bytes {start}..EOF"),
        l if l > 0 => format!("bytes {start}..{}", start.saturating_add(l)),
        l => format!("start {start} len {l}"),
    };
    match whence {
        Whence::Set => text,
        Whence::Cur => format!("{text} from the current offset"),
        Whence::End => format!("{text} from the end of the file"),
        Whence::Invalid => format!("{text} from an invalid l_whence"),
    }
}

impl Op {
    /// Whether this call may legitimately wait in the kernel.
    pub(crate) fn may_block(&self) -> bool {
        matches!(
            self,
            Op::Lock { wait: true, .. }
                | Op::Hold { .. }
                | Op::Await { .. }
                | Op::Open { .. }
                | Op::Truncate { .. }
        )
    }

    /// A short description for reports: `lock exclusive on lock (posix, wait, bytes 0..EOF)`.
    pub(crate) fn describe(&self, actors: &[ActorPlan]) -> String {
        let name = |i: &usize| actors.get(*i).map(|a| a.name.as_str()).unwrap_or("?");
        match self {
            Op::Open {
                path,
                access,
                create,
                excl,
                trunc,
                directory,
                cloexec,
                via,
                fd,
            } => {
                let mut flags = vec![access.as_str()];
                for (on, word) in [
                    (*create, "create"),
                    (*excl, "excl"),
                    (*trunc, "trunc"),
                    (*directory, "directory"),
                    (!*cloexec, "no cloexec"),
                    (via.is_some(), "via a second mount"),
                ] {
                    if on {
                        flags.push(word);
                    }
                }
                let named = if fd != path {
                    format!(" as {fd}")
                } else {
                    String::new()
                };
                format!("open {path} ({}){named}", flags.join(", "))
            }
            Op::Close { fd } => format!("close {fd}"),
            Op::Dup { fd, new } => format!("dup {fd} as {new}"),
            Op::Lock {
                fd,
                mech,
                kind,
                wait,
                start,
                len,
                whence,
            } => {
                let what = match kind {
                    LockKind::Exclusive => "lock exclusive",
                    LockKind::Shared => "lock shared",
                    LockKind::Unlock => "unlock",
                };
                let mut details = vec![mech.to_string()];
                if *wait {
                    details.push("wait".into());
                }
                if mech.has_ranges() {
                    details.push(range_text(*start, *len, *whence));
                }
                format!("{what} on {fd} ({})", details.join(", "))
            }
            Op::Test {
                fd,
                mech,
                mode,
                start,
                len,
                whence,
                pidns,
            } => {
                if *mech == Mechanism::Lease {
                    format!("get the lease on {fd}")
                } else {
                    format!(
                        "test {} on {fd} ({mech}, {}){}",
                        mode.as_str(),
                        range_text(*start, *len, *whence),
                        if *pidns {
                            " from a new PID namespace"
                        } else {
                            ""
                        }
                    )
                }
            }
            Op::Write {
                fd,
                data,
                offset,
                sync,
                mapped,
            } => {
                let via = if *mapped { " through a shared mapping" } else { "" };
                let w = match offset {
                    Some(o) => format!("write {:?} to {fd} at {o}{via}", clip(data)),
                    None => format!("write {:?} to {fd}{via}", clip(data)),
                };
                if *sync {
                    format!("{w}, {}", if *mapped { "msync" } else { "fsync" })
                } else {
                    w
                }
            }
            Op::Read {
                fd,
                len,
                offset,
                mapped,
            } => match (offset, mapped) {
                (Some(o), true) => format!("read {len} bytes of {fd} at {o} through a shared mapping"),
                (Some(o), false) => format!("read {len} bytes of {fd} at {o}"),
                (None, _) => format!("read {len} bytes of {fd}"),
            },
            Op::Fork { child } => format!("fork as {}", name(child)),
            Op::Thread { child } => format!("start thread {}", name(child)),
            Op::Exit { code } => format!("exit {code}"),
            Op::Exec => "exec a fresh actor".to_string(),
            Op::Await { hold: None } => "await the blocked call".to_string(),
            Op::Await { hold: Some(d) } => format!(
                "check the blocked call keeps waiting for {}",
                humantime::format_duration(*d)
            ),
            Op::Stop => "stop (SIGSTOP)".to_string(),
            Op::Continue => "continue (SIGCONT)".to_string(),
            Op::CloseAll => "close every descriptor".to_string(),
            Op::Spawn { child, pid_of } => match pid_of {
                Some(dead) => format!(
                    "spawn {} with the PID of {}",
                    name(child),
                    name(dead)
                ),
                None => format!("spawn {}", name(child)),
            },
            Op::PidAlive { path } => format!("probe the PID in {path} with kill(PID, 0)"),
            Op::Lab {
                host, net: Some(n), ..
            } => format!(
                "net host {}: netem {} for {}",
                host.as_deref().unwrap_or("?"),
                n.netem,
                match n.lasts {
                    crate::spec::scenario::Bound::Fixed(d) => format!("{d:?}"),
                    crate::spec::scenario::Bound::Leases(x) => format!("{x} leases"),
                }
            ),
            Op::Lab { fault, host, .. } => match host {
                Some(h) => format!("{} host {h}", fault.as_str()),
                None => fault.as_str().to_string(),
            },
            Op::Signal {
                signal,
                fatal: true,
            } => format!("kill with {}", signal.as_str()),
            Op::Signal { signal, .. } => format!("send {}", signal.as_str()),
            Op::Handle { signal, restart } => format!(
                "handle {}{}",
                signal.as_str(),
                if *restart {
                    " with SA_RESTART"
                } else {
                    " without SA_RESTART"
                }
            ),
            Op::Unlink { path } => format!("unlink {path}"),
            Op::Rename { from, to } => format!("rename {from} to {to}"),
            Op::Symlink { target, path } => format!("make {path} a symlink to {target}"),
            Op::Mkdir { path } => format!("mkdir {path}"),
            Op::Mkfifo { path } => format!("mkfifo {path}"),
            Op::Truncate { path, len } => format!("truncate {path} to {len} bytes"),
            Op::Listed {
                fd,
                mech,
                mode,
                start,
                len,
            } => format!(
                "look up the {} {mech} lock on {fd} in /proc/locks{}",
                mode.as_str(),
                if mech.has_ranges() {
                    format!(" ({})", range_text(*start, *len, Whence::Set))
                } else {
                    String::new()
                }
            ),
            Op::Counter {
                fd,
                mech,
                times,
                offset,
            } => format!(
                "increment the counter at {offset} of {fd} {times} times, each under an exclusive {mech} lock"
            ),
            Op::Caught { signal, within } => format!(
                "check that {} arrived (waiting up to {})",
                signal.as_str(),
                humantime::format_duration(*within)
            ),
            Op::Invalid { fd, mech, call } => match call {
                InvalidCall::ClosedDescriptor => {
                    format!("{mech} lock call on descriptor -1 (not open)")
                }
                InvalidCall::NullPointer => format!("{mech} lock call on {fd} with a NULL struct flock"),
                InvalidCall::BadCommand => format!("{mech} lock call on {fd} with an invalid command"),
                InvalidCall::BadType => format!("{mech} lock call on {fd} with an invalid l_type"),
                InvalidCall::NonblockAlone => format!("flock on {fd} with LOCK_NB alone"),
            },
            Op::ByteLocks {
                fd,
                mech,
                kind,
                count,
            } => format!(
                "take {count} one-byte {} {mech} locks on {fd} (bytes 0, 2, 4, ... {})",
                if *kind == LockKind::Shared { "shared" } else { "exclusive" },
                2 * u64::from(*count).saturating_sub(1)
            ),
            Op::Hold { fd, mech, hold } => format!(
                "wait for an exclusive {mech} lock on {fd}, hold it {}, release it",
                humantime::format_duration(*hold)
            ),
            Op::Records {
                fd,
                mech,
                count,
                size,
                writers,
            } => format!(
                "write {count} records of {size} bytes into {fd}, interleaved among {}, each under an exclusive {mech} lock{}",
                writers.join(", "),
                if mech.has_ranges() { " of its own range" } else { "" }
            ),
        }
    }
}

fn clip(s: &str) -> String {
    if s.chars().count() > 40 {
        let mut c: String = s.chars().take(37).collect();
        c.push_str("...");
        c
    } else {
        s.to_string()
    }
}

/// An expectation with per-mechanism choices made and actor names resolved.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expectation {
    Ok,
    /// Refused because of a conflicting lock: one of these errno values
    /// (EAGAIN/EACCES for kernel locks, EEXIST for pid files).
    Conflict(Vec<i32>),
    Errno {
        value: i32,
        name: String,
    },
    Blocks,
    Unlocked,
    Holder {
        mode: Option<LockMode>,
        start: Option<i64>,
        len: Option<i64>,
        pid: PidExpect,
    },
    Data(String),
    Records(RecordsSpec),
    Lease(LeaseMode),
    Any,
    OneOf(Vec<Expectation>),
    Winners {
        count: u32,
        others: Box<Expectation>,
    },
}

impl Expectation {
    /// Whether some errno (other than a conflict) satisfies it.
    fn allows_an_errno(&self) -> bool {
        match self {
            Expectation::Errno { .. } | Expectation::Any => true,
            Expectation::OneOf(list) => list.iter().any(Expectation::allows_an_errno),
            _ => false,
        }
    }
}

/// Why a record-lock range (`l_start`, `l_len` from SEEK_SET) is refused by
/// every kernel, and with what: POSIX fcntl() gives EINVAL for a range that
/// starts (or, with a negative length, reaches) before byte 0, and
/// EOVERFLOW for one whose last byte is past the largest offset.
fn impossible_range(start: i64, len: i64) -> Option<(String, &'static str)> {
    if start < 0 {
        return Some((format!("it starts at {start}, before byte 0"), "EINVAL"));
    }
    if len < 0 && start.checked_add(len).is_none_or(|first| first < 0) {
        return Some((
            format!("with length {len} it reaches before byte 0"),
            "EINVAL",
        ));
    }
    if len > 0 && start.checked_add(len - 1).is_none() {
        return Some((
            format!("its last byte, {start} + {len} - 1, is past the largest offset"),
            "EOVERFLOW",
        ));
    }
    None
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PidExpect {
    Actor(usize),
    Raw(i64),
    Any,
}

impl Expectation {
    /// Whether a call judged by this expectation is left waiting afterwards.
    /// `None` when the expectation allows both.
    fn leaves_pending(&self) -> Option<bool> {
        match self {
            Expectation::Blocks => Some(true),
            Expectation::Any => None,
            Expectation::OneOf(list) => {
                let all: BTreeSet<Option<bool>> = list.iter().map(|e| e.leaves_pending()).collect();
                if all.len() == 1 {
                    all.into_iter().next().flatten()
                } else {
                    None
                }
            }
            Expectation::Winners { others, .. } => match others.leaves_pending() {
                Some(false) => Some(false),
                _ => None,
            },
            _ => Some(false),
        }
    }
}

/// What a scenario gives for each mechanism: a plan, or why it does not apply.
#[derive(Debug, Clone)]
pub enum Applicability {
    /// The scenario runs with the mechanism, by this plan.
    Applies(Box<TrialPlan>),
    /// It does not apply to the mechanism, for this reason.
    NotApplicable(String),
}

/// Resolve a scenario for every mechanism it concerns: the ones it lists,
/// and the default ones (flock, posix, ofd) it leaves out, with the reason.
/// An error in any applicable mechanism's plan is an error of the file.
pub(crate) fn resolve_all(
    file: &str,
    scn: &Scenario,
) -> Result<BTreeMap<Mechanism, Applicability>, ScenarioError> {
    let mechs = scenario_mechanisms(file, scn)?;
    let where_listed = scn
        .mechanisms
        .as_ref()
        .map(|l| l.pos)
        .unwrap_or(scn.name.pos);
    for m in scn.known_failures.keys() {
        if m.is_kernel_lock() {
            return Err(ScenarioError::new(
                file,
                where_listed,
                format!("`known-failures` names {m}, a kernel lock"),
            )
            .with_hint("only application-level methods (pidfile, lockfile) can fail by design; a kernel lock that fails this scenario is a finding about the target"));
        }
        if !mechs.contains(m) {
            return Err(ScenarioError::new(
                file,
                where_listed,
                format!("`known-failures` names {m}, which is not in `mechanisms`"),
            )
            .with_hint("list the mechanism, or drop its known failure"));
        }
    }
    for (fam, why) in &scn.divergent_on {
        if why.trim().is_empty() {
            return Err(ScenarioError::new(
                file,
                scn.name.pos,
                format!("`divergent-on` gives no reason for {}", fam.name()),
            )
            .with_hint("say how that filesystem family differs, and the document that says so (a specification section, a man page)"));
        }
    }
    for m in scn.not_applicable.keys() {
        if mechs.contains(m) {
            return Err(ScenarioError::new(
                file,
                where_listed,
                format!("`not-applicable` gives a reason for {m}, but {m} is in `mechanisms`"),
            )
            .with_hint("remove it from one of the two"));
        }
    }
    let mut out = BTreeMap::new();
    for m in Mechanism::ALL {
        if mechs.contains(&m) {
            let plan = Resolver::new(file, scn, m, &mechs)?.run()?;
            out.insert(m, Applicability::Applies(Box::new(plan)));
        } else if m.is_default() || scn.not_applicable.contains_key(&m) {
            let reason = match scn.not_applicable.get(&m) {
                Some(r) => r.clone(),
                None => inherent_reason(scn, m, &mechs).ok_or_else(|| {
                    ScenarioError::new(
                        file,
                        where_listed,
                        format!("{m} is left out of `mechanisms` without a reason"),
                    )
                    .with_hint(format!(
                        "say why in `not-applicable: {{{m}: \"...\"}}` so reports can explain the skip"
                    ))
                })?,
            };
            out.insert(m, Applicability::NotApplicable(reason));
        }
    }
    Ok(out)
}

fn scenario_mechanisms(file: &str, scn: &Scenario) -> Result<Vec<Mechanism>, ScenarioError> {
    match &scn.mechanisms {
        None => Ok(Mechanism::DEFAULT.to_vec()),
        Some(list) => {
            let mut seen = Vec::new();
            for m in list.iter() {
                if seen.contains(&m.value) {
                    return Err(ScenarioError::new(
                        file,
                        m.pos,
                        format!("mechanism {} is listed twice", m.value),
                    ));
                }
                seen.push(m.value);
            }
            if seen.is_empty() {
                return Err(ScenarioError::new(file, list.pos, "`mechanisms` is empty")
                    .with_hint("list at least one of flock, posix, ofd, lease, pidfile, or leave the key out for flock, posix and ofd"));
            }
            Ok(seen)
        }
    }
}

/// A reason a default mechanism cannot run a scenario that follows from its steps.
fn inherent_reason(scn: &Scenario, m: Mechanism, listed: &[Mechanism]) -> Option<String> {
    if listed.iter().all(|l| !l.is_default()) {
        let names: Vec<&str> = listed.iter().map(|l| l.as_str()).collect();
        return Some(format!(
            "this scenario is about {} semantics, not {m} locks",
            names.join(" and ")
        ));
    }
    let mut ranges = false;
    let mut test = false;
    for s in scn.steps.iter() {
        let (start, len, mech) = match &s.value {
            Step::Lock(l) => (&l.start, &l.len, &l.mechanism),
            Step::Unlock(l) => (&l.start, &l.len, &l.mechanism),
            Step::Test(t) => {
                test |= t.mechanism.is_none();
                (&t.start, &t.len, &t.mechanism)
            }
            _ => continue,
        };
        ranges |= mech.is_none() && (nonzero(start) || nonzero(len));
    }
    if m.has_ranges() {
        return None;
    }
    if ranges {
        Some(format!(
            "{m} locks whole files only; this scenario uses byte ranges"
        ))
    } else if test && !m.has_test() {
        Some(format!("{m} has no way to test for a lock (no F_GETLK)"))
    } else {
        None
    }
}

fn nonzero(v: &Option<Located<i64>>) -> bool {
    v.as_ref().is_some_and(|l| l.value != 0)
}

/// Expand `w[1..4]` into w1, w2, w3, w4; check plain names.
pub(crate) fn expand_actor_name(s: &str) -> Result<Vec<String>, String> {
    if let Some(open) = s.find('[') {
        let prefix = &s[..open];
        let rest = &s[open + 1..];
        let inner = rest
            .strip_suffix(']')
            .ok_or_else(|| format!("`{s}`: a range is written `name[1..N]`"))?;
        let (a, b) = inner
            .split_once("..")
            .ok_or_else(|| format!("`{s}`: a range is written `name[1..N]`"))?;
        let a: usize = a
            .trim()
            .parse()
            .map_err(|_| format!("`{s}`: `{a}` is not a number"))?;
        let b: usize = b
            .trim()
            .parse()
            .map_err(|_| format!("`{s}`: `{b}` is not a number"))?;
        check_identifier(prefix)?;
        if a > b {
            return Err(format!("`{s}`: the range is empty ({a} > {b})"));
        }
        if b - a >= MAX_ACTORS {
            return Err(format!("`{s}`: at most {MAX_ACTORS} actors per scenario"));
        }
        Ok((a..=b).map(|i| format!("{prefix}{i}")).collect())
    } else {
        check_identifier(s)?;
        Ok(vec![s.to_string()])
    }
}

fn check_identifier(s: &str) -> Result<(), String> {
    let mut chars = s.chars();
    let ok = match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {
            chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        }
        _ => false,
    };
    if !ok || s.len() > 64 {
        return Err(format!(
            "`{s}` is not a valid actor name (a letter, then letters, digits, `_` or `-`; at most 64)"
        ));
    }
    if s == "all" {
        return Err("`all` is reserved (it means every actor)".into());
    }
    Ok(())
}

/// Parse `KILL`, `SIGKILL` or a number into a signal.
pub(crate) fn parse_signal(s: &str) -> Result<Signal, String> {
    let upper = s.trim().to_ascii_uppercase();
    if let Ok(n) = upper.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("{n} is not a signal number"));
    }
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&full)
        .map_err(|_| format!("unknown signal `{s}`; write for example KILL or SIGTERM"))
}

/// Whether a signal ends an actor that has no handler for it. Actors
/// ignore SIGPIPE (a closed channel is an error, not a death), SIGIO (lease
/// breaks) and SIGCHLD (their children are reaped by the kernel).
pub(crate) fn is_fatal_by_default(sig: Signal) -> bool {
    !matches!(
        sig,
        Signal::SIGCHLD
            | Signal::SIGCONT
            | Signal::SIGSTOP
            | Signal::SIGTSTP
            | Signal::SIGTTIN
            | Signal::SIGTTOU
            | Signal::SIGURG
            | Signal::SIGWINCH
            | Signal::SIGPIPE
            | Signal::SIGIO
    )
}

/// Signals whose handling an actor cannot change (or needs for itself).
fn handleable(sig: Signal) -> bool {
    !matches!(
        sig,
        Signal::SIGKILL | Signal::SIGSTOP | Signal::SIGPIPE | Signal::SIGIO
    )
}

#[derive(Debug, Clone)]
enum Life {
    /// Not created yet: made by a later fork or thread step.
    Unborn,
    Alive,
    Dead {
        how: String,
        pos: Pos,
    },
}

/// A blocked call still waiting.
#[derive(Debug, Clone)]
struct Waiting {
    number: usize,
    pos: Pos,
    /// For a blocked `open`: the descriptor it creates when it completes.
    opens: Option<(String, bool)>,
}

#[derive(Debug, Clone)]
struct ActorState {
    life: Life,
    pending: Option<Waiting>,
    /// After a race whose losers block: which actors still wait is not known.
    ambiguous: Option<(usize, Pos)>,
    /// Descriptor name → close-on-exec.
    fds: BTreeMap<String, bool>,
    /// Signals with a handler installed.
    handled: BTreeSet<Signal>,
    /// Stopped with SIGSTOP.
    stopped: bool,
}

impl ActorState {
    fn new(life: Life) -> Self {
        ActorState {
            life,
            pending: None,
            ambiguous: None,
            fds: BTreeMap::new(),
            handled: BTreeSet::new(),
            stopped: false,
        }
    }
}

/// The fields a step that looks for a lock (`test`, `listed`) names.
struct Probe<'s> {
    fd: Option<&'s Located<String>>,
    mechanism: Option<&'s Located<Mechanism>>,
    mode: Option<&'s Located<LockMode>>,
    start: Option<&'s Located<i64>>,
    len: Option<&'s Located<i64>>,
    whence: Option<&'s Located<Whence>>,
}

struct Resolver<'a> {
    file: &'a str,
    scn: &'a Scenario,
    mech: Mechanism,
    mechs: &'a [Mechanism],
    actors: Vec<ActorPlan>,
    index: HashMap<String, usize>,
    state: Vec<ActorState>,
    default_timeout: Duration,
    second_mount: bool,
    needs: BTreeSet<Need>,
}

impl<'a> Resolver<'a> {
    fn new(
        file: &'a str,
        scn: &'a Scenario,
        mech: Mechanism,
        mechs: &'a [Mechanism],
    ) -> Result<Self, ScenarioError> {
        let mut r = Resolver {
            file,
            scn,
            mech,
            mechs,
            actors: Vec::new(),
            index: HashMap::new(),
            state: Vec::new(),
            default_timeout: DEFAULT_TIMEOUT,
            second_mount: false,
            needs: BTreeSet::new(),
        };
        if let Some(t) = &scn.timeout {
            r.default_timeout = r.check_timeout(t)?;
        }
        if scn.actors.is_empty() {
            return Err(r.err(scn.actors.pos, "a scenario needs at least one actor"));
        }
        for decl in scn.actors.iter() {
            let names = expand_actor_name(decl.name()).map_err(|m| r.err(decl.pos, m))?;
            for name in names {
                r.add_actor(name, decl.host().map(str::to_string), decl.pos, Life::Alive)?;
            }
        }
        // Actors created by fork and thread steps exist from the start
        // (unborn), so that a reference before their creation gets a precise message.
        for step in scn.steps.iter() {
            let made = match &step.value {
                Step::Fork(f) => &f.as_name,
                Step::Thread(t) => &t.as_name,
                Step::Spawn(s) => &s.as_name,
                _ => continue,
            };
            check_identifier(made).map_err(|m| r.err(made.pos, m))?;
            r.add_actor(made.value.clone(), None, made.pos, Life::Unborn)?;
        }
        Ok(r)
    }

    fn run(mut self) -> Result<TrialPlan, ScenarioError> {
        if self.scn.steps.is_empty() {
            return Err(self.err(self.scn.steps.pos, "a scenario needs at least one step"));
        }
        for r in &self.scn.requires {
            match r {
                crate::spec::scenario::Requirement::LowerFile => {
                    self.needs.insert(Need::LowerFile);
                }
            }
        }
        let mut steps = Vec::with_capacity(self.scn.steps.len());
        for (i, step) in self.scn.steps.iter().enumerate() {
            steps.push(self.step(i + 1, step)?);
        }
        let hosts: BTreeSet<String> = self.actors.iter().map(|a| a.host.clone()).collect();
        Ok(TrialPlan {
            actors: self.actors,
            steps,
            hosts: hosts.into_iter().collect(),
            needs_second_mount: self.second_mount,
            needs: self.needs,
        })
    }

    fn step(&mut self, number: usize, step: &Located<Step>) -> Result<PlannedStep, ScenarioError> {
        let c = step.common();
        let pos = step.pos;
        let timeout = self.timeout(&c)?;
        let op_name = step.op_name();
        if let Step::Disconnect(s)
        | Step::Reconnect(s)
        | Step::Crash(s)
        | Step::RestartServer(s)
        | Step::Net(s) = &step.value
        {
            return self.lab_step(number, step, s, timeout);
        }
        let actors = self.actors_of(&c, pos)?;
        self.check_actors(step, &actors, pos)?;
        let unsupported = self.unsupported_errnos(&c)?;
        let op = self.lower(step, &c, &actors, pos)?;
        let mut leases = None;
        let timeout = self.step_timeout(step, &c, timeout, &mut leases)?;
        let patient = matches!(&step.value, Step::Lock(s) if s.within.is_some());
        let conflict = match &op {
            Op::Lock { mech, .. } => mech.conflict_errnos().to_vec(),
            _ => self.mech.conflict_errnos().to_vec(),
        };
        let (expect, epos) = self.step_expectation(&c, &op, op_name, pos, &conflict)?;
        self.check_fits(&expect, &op, actors.len(), epos)?;
        self.check_unsupported(&c, &unsupported, &expect, &op, &actors, &conflict)?;
        let blocks_on_open =
            matches!(op, Op::Open { .. }) && expect.leaves_pending() != Some(false);

        if blocks_on_open && actors.len() > 1 {
            return Err(self.err(epos, "a blocking `open` has one actor"));
        }
        self.check_range(&op, &expect, epos)?;
        self.apply(number, pos, &actors, &op, &expect);
        Ok(PlannedStep {
            number,
            pos,
            actors,
            op,
            expect,
            timeout,
            note: c.note.map(str::to_string),
            unsupported,
            patient,
            leases,
        })
    }

    /// The errno names of the step's `unsupported`.
    fn unsupported_errnos(&self, c: &Common<'_>) -> Result<Vec<i32>, ScenarioError> {
        let mut unsupported = Vec::new();
        for u in c.unsupported {
            unsupported.push(crate::spec::errno::by_name(&u.value).ok_or_else(|| {
                self.err(u.pos, format!("`{}` is not an errno name", u.value))
                    .with_hint("write errno names such as EINVAL or ENOLCK")
            })?);
        }
        Ok(unsupported)
    }
}

/// The errno values an expectation accepts.
fn expected_errnos(e: &Expectation, out: &mut Vec<i32>) {
    match e {
        Expectation::Errno { value, .. } => out.push(*value),
        Expectation::Conflict(list) => out.extend(list),
        Expectation::OneOf(list) => list.iter().for_each(|x| expected_errnos(x, out)),
        Expectation::Winners { others, .. } => expected_errnos(others, out),
        _ => {}
    }
}

fn check_fd_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 128 || s.chars().any(char::is_control) {
        return Err(format!("`{s}` is not a usable descriptor name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scn(y: &str) -> Scenario {
        serde_saphyr::from_str(y).expect("parses")
    }

    const HEAD: &str = "name: t\nsummary: s\nreference: r\nfamily: blocking\n";

    fn plans(y: &str) -> Result<BTreeMap<Mechanism, Applicability>, ScenarioError> {
        resolve_all("t.yaml", &scn(&format!("{HEAD}{y}")))
    }

    fn plan(y: &str, m: Mechanism) -> TrialPlan {
        match plans(y).expect("valid").remove(&m) {
            Some(Applicability::Applies(p)) => *p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn resolves_defaults_and_per_mechanism_expectations() {
        let y = "actors: [a, b]\nsteps:\n  - open: {actors: all, path: f, create: true}\n  - lock: {actor: a, mode: exclusive}\n  - dup: {actor: a, as: g}\n  - close: {actor: a, fd: g}\n  - lock: {actor: b, mode: shared, fd: f, expect: {posix: ok, flock: conflict, ofd: conflict}}\n";
        let p = plan(y, Mechanism::Posix);
        assert_eq!(p.steps.len(), 5);
        assert_eq!(p.steps[0].actors, vec![0, 1]);
        assert_eq!(p.steps[4].expect, Expectation::Ok);
        let f = plan(y, Mechanism::Flock);
        assert_eq!(
            f.steps[4].expect,
            Expectation::Conflict(vec![libc::EAGAIN, libc::EACCES])
        );
        assert!(
            matches!(&f.steps[1].op, Op::Lock { fd, mech: Mechanism::Flock, kind: LockKind::Exclusive, wait: false, .. } if fd == "f")
        );
        assert!(!plans(y).expect("valid").contains_key(&Mechanism::Lease));
    }

    fn err_of(y: &str) -> ScenarioError {
        plans(y).expect_err("invalid")
    }

    #[test]
    fn eagain_means_no_lease_support_only_when_nothing_else_is_open() {
        let alone = "mechanisms: [lease]\nactors: [a, b]\nsteps:\n  - open: {actor: a, path: f, create: true}\n  - lock: {actor: a, mode: exclusive, unsupported: [EAGAIN]}\n";
        assert!(plans(alone).is_ok());
        let shared = "mechanisms: [lease]\nactors: [a, b]\nsteps:\n  - open: {actors: all, path: f, create: true}\n  - lock: {actor: a, mode: exclusive, unsupported: [EAGAIN]}\n";
        assert!(err_of(shared)
            .to_string()
            .contains("an outcome this step can have"));
        let twice = "mechanisms: [lease]\nactors: [a]\nsteps:\n  - open: {actor: a, path: f, create: true}\n  - open: {actor: a, path: f, as: g}\n  - lock: {actor: a, fd: f, mode: exclusive, unsupported: [EAGAIN]}\n";
        assert!(err_of(twice)
            .to_string()
            .contains("an outcome this step can have"));
        let posix = "actors: [a]\nsteps:\n  - open: {actor: a, path: f, create: true}\n  - lock: {actor: a, mode: exclusive, unsupported: [EAGAIN]}\n";
        assert!(err_of(posix)
            .to_string()
            .contains("an outcome this step can have"));
    }

    #[test]
    fn rejects_impossible_steps_with_positions() {
        let cases = [
            ("actors: [a]\nsteps:\n  - lock: {actor: b, mode: exclusive}\n", "unknown actor `b`"),
            ("actors: [a]\nsteps:\n  - lock: {actor: a, mode: exclusive}\n", "no open descriptor"),
            ("actors: [a]\nsteps:\n  - open: {actor: a, path: f}\n  - open: {actor: a, path: g}\n  - lock: {actor: a, mode: exclusive}\n", "several descriptors"),
            ("actors: [a]\nsteps:\n  - open: {actor: a, path: ../f}\n", "leaves the scratch"),
            ("actors: [a]\nsteps:\n  - open: {actor: a, path: /etc/passwd}\n", "absolute"),
            ("actors: [a, b]\nsteps:\n  - open: {actors: all, path: f}\n  - lock: {actor: b, mode: exclusive, wait: true, expect: blocks}\n  - unlock: {actor: b}\n", "still waiting"),
            ("actors: [a]\nsteps:\n  - open: {actor: a, path: f}\n  - await: {actor: a}\n", "no blocked call"),
            ("actors: [a]\nsteps:\n  - open: {actor: a, path: f}\n  - kill: {actor: a}\n  - close: {actor: a}\n", "is gone"),
            ("actors: [a]\nsteps:\n  - open: {actor: a, path: f}\n  - lock: {actor: a, mode: shared, expect: blocks}\n", "only a waiting lock"),
            ("actors: [a]\nsteps:\n  - open: {actor: a, path: f}\n  - lock: {actor: a, mode: shared, start: 5}\n", "flock has no byte ranges"),
            ("actors: [a]\nsteps:\n  - open: {actor: a, path: f}\n  - lock: {actor: a, mode: shared, expect: {posix: ok}}\n", "no expectation for flock"),
            ("actors: [a]\nsteps:\n  - open: {actor: kid, path: f}\n  - fork: {actor: a, as: kid}\n", "does not exist yet"),
            ("mechanisms: [posix]\nactors: [a]\nsteps:\n  - open: {actor: a, path: f}\n", "without a reason"),
            ("actors: [a]\nsteps:\n  - open: {actor: a, path: f}\n  - signal: {actor: a, signal: USR1}\n", "no handler"),
            ("actors: [a]\nsteps:\n  - open: {actor: a, path: f}\n  - handle: {actor: a, signal: TERM}\n  - kill: {actor: a, signal: TERM}\n", "does not end"),
            ("actors: [a]\nsteps:\n  - open: {actor: a, path: f}\n  - thread: {actor: a, as: t}\n  - kill: {actor: t}\n", "is a thread"),
            ("mechanisms: [pidfile]\nactors: [a]\nsteps:\n  - open: {actor: a, path: f}\n  - lock: {actor: a, mode: shared}\n", "pidfile has no shared locks"),
            ("mechanisms: [lease]\nactors: [a]\nsteps:\n  - open: {actor: a, path: f}\n  - lock: {actor: a, mode: shared, wait: true, expect: blocks}\n", "lease has no waiting locks"),
            ("actors: [a]\nsteps:\n  - open: {actor: a, path: f, unsupported: [ENOPE]}\n", "not an errno"),
            ("actors: ['w[1..2]']\nsteps:\n  - open: {actors: all, path: f}\n  - lock: {actors: all, mode: exclusive, wait: true, expect: {winners: 1, others: blocks}}\n  - unlock: {actor: w1}\n", "not known whether"),
        ];
        for (y, want) in cases {
            let e = err_of(y);
            assert!(e.message.contains(want), "{want:?} not in: {e}");
            assert!(
                e.pos.is_known() || want == "without a reason",
                "no position: {e}"
            );
        }
        let e = err_of("actors: [a]\nsteps:\n  - lock: {actor: b, mode: exclusive}\n");
        assert_eq!(e.pos.line, 7);
    }

    #[test]
    fn net_steps_say_what_they_impair_and_for_how_long() {
        let head = "actors: [{name: a, host: a}, {name: b, host: b}]\nsteps:\n  - open: {actors: all, path: f, create: true}\n";
        let p = plan(
            &format!("{head}  - net: {{host: b, delay: 100ms, jitter: 20ms, loss: 5%, duplicate: 1, reorder: 0.5%, for: 2 leases}}\n"),
            Mechanism::Posix,
        );
        match &p.steps[1].op {
            Op::Lab {
                fault: LabFault::Net,
                host: Some(h),
                net: Some(n),
            } => {
                assert_eq!(h, "b");
                assert_eq!(
                    n.netem,
                    "delay 100000us 20000us loss 5% duplicate 1% reorder 0.5%"
                );
                assert_eq!(n.lasts, crate::spec::scenario::Bound::Leases(2.0));
            }
            other => panic!("{other:?}"),
        }
        assert!(p.needs.contains(&Need::Lab(LabFault::Net)));
        for (step, want) in [
            ("net: {host: b, loss: 5%}", "needs `for:`"),
            ("net: {host: b, for: 5s}", "needs an impairment"),
            (
                "net: {host: b, jitter: 5ms, for: 5s}",
                "`jitter` needs `delay`",
            ),
            ("net: {loss: 5%, for: 5s}", "needs `host:`"),
            (
                "disconnect: {host: b, loss: 5%}",
                "`disconnect` takes no `loss`",
            ),
        ] {
            let e = err_of(&format!("{head}  - {step}\n"));
            assert!(e.message.contains(want), "{want:?} not in: {e}");
            assert!(e.pos.is_known(), "no position: {e}");
        }
        let bad = format!("{HEAD}{head}  - net: {{host: b, loss: 120%, for: 5s}}\n");
        let e = serde_saphyr::from_str::<Scenario>(&bad).expect_err("a share above 100%");
        assert!(e.to_string().contains("from 0% to 100%"), "{e}");
    }

    #[test]
    fn inherent_reasons() {
        let y = "mechanisms: [posix, ofd]\nactors: [a]\nsteps:\n  - open: {actor: a, path: f}\n  - lock: {actor: a, mode: shared, start: 5, len: 1}\n";
        match plans(y).expect("valid").get(&Mechanism::Flock) {
            Some(Applicability::NotApplicable(r)) => assert!(r.contains("byte ranges"), "{r}"),
            other => panic!("{other:?}"),
        }
        let y = "mechanisms: [lease]\nactors: [a]\nsteps:\n  - open: {actor: a, path: f, mode: read}\n  - lock: {actor: a, mode: shared}\n";
        let all = plans(y).expect("valid");
        assert!(
            matches!(all.get(&Mechanism::Posix), Some(Applicability::NotApplicable(r)) if r.contains("lease"))
        );
        assert!(matches!(
            all.get(&Mechanism::Lease),
            Some(Applicability::Applies(_))
        ));
        assert!(!all.contains_key(&Mechanism::Pidfile));
    }

    #[test]
    fn fork_thread_and_exec_track_descriptors() {
        let y = "actors: [p]\nsteps:\n  - open: {actor: p, path: f, create: true}\n  - lock: {actor: p, mode: exclusive}\n  - fork: {actor: p, as: kid}\n  - exit: {actor: p}\n  - unlock: {actor: kid}\n";
        let p = plan(y, Mechanism::Ofd);
        assert_eq!(p.actors[1].forked_from, Some(0));
        assert!(matches!(
            &p.steps[4].op,
            Op::Lock {
                kind: LockKind::Unlock,
                ..
            }
        ));
        // A close-on-exec descriptor is gone after exec; a kept one stays.
        let e = err_of("actors: [a]\nsteps:\n  - open: {actor: a, path: f}\n  - exec: {actor: a}\n  - lock: {actor: a, mode: exclusive}\n");
        assert!(e.message.contains("no open descriptor"), "{e}");
        let p = plan("actors: [a]\nsteps:\n  - open: {actor: a, path: f, cloexec: false}\n  - exec: {actor: a}\n  - lock: {actor: a, mode: exclusive}\n", Mechanism::Posix);
        assert_eq!(p.steps.len(), 3);
        // Threads end with their process.
        let e = err_of("actors: [a]\nsteps:\n  - open: {actor: a, path: f}\n  - thread: {actor: a, as: t}\n  - exit: {actor: a}\n  - close: {actor: t}\n");
        assert!(e.message.contains("is gone"), "{e}");
        // A blocked open registers its descriptor when awaited.
        let p = plan("mechanisms: [lease]\nactors: [a, b]\nsteps:\n  - open: {actor: a, path: f, create: true}\n  - lock: {actor: a, mode: exclusive}\n  - open: {actor: b, path: f, mode: read, expect: blocks}\n  - unlock: {actor: a}\n  - await: {actor: b}\n  - close: {actor: b}\n", Mechanism::Lease);
        assert_eq!(p.steps.len(), 6);
    }

    #[test]
    fn conflict_depends_on_the_mechanism() {
        let y = "mechanisms: [pidfile, posix, flock, ofd]\nactors: [a, b]\nsteps:\n  - open: {actors: all, path: f, create: true}\n  - lock: {actor: a, mode: exclusive}\n  - lock: {actor: b, mode: exclusive, expect: conflict}\n";
        assert_eq!(
            plan(y, Mechanism::Pidfile).steps[2].expect,
            Expectation::Conflict(vec![libc::EEXIST])
        );
        assert_eq!(
            plan(y, Mechanism::Posix).steps[2].expect,
            Expectation::Conflict(vec![libc::EAGAIN, libc::EACCES])
        );
    }

    #[test]
    fn actor_ranges_and_signals() {
        assert_eq!(
            expand_actor_name("w[1..3]").expect("ok"),
            vec!["w1", "w2", "w3"]
        );
        assert!(expand_actor_name("w[3..1]").is_err());
        assert!(expand_actor_name("w[1..999]").is_err());
        assert!(expand_actor_name("1abc").is_err());
        assert!(expand_actor_name("all").is_err());
        assert_eq!(parse_signal("KILL").expect("ok"), Signal::SIGKILL);
        assert_eq!(parse_signal("sigterm").expect("ok"), Signal::SIGTERM);
        assert_eq!(parse_signal("9").expect("ok"), Signal::SIGKILL);
        assert!(parse_signal("NOPE").is_err());
    }
}
