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
    Access, ActorSet, AwaitStep, Common, CounterStep, DupStep, Expect, HandleStep, KillStep,
    LeaseMode, ListedStep, LockMode, LockStep, Mechanism, OpenStep, PidSpec, ReadStep, Scenario,
    SignalStep, SpawnStep, Step, TestStep, UnlockStep, Via, WriteStep,
};

/// The step timeout when neither the step nor the scenario sets one.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest timeout a step may ask for.
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// The most actors one scenario may declare (including forked ones).
pub(crate) const MAX_ACTORS: usize = 256;
/// The most increments one counter step may ask for.
pub(crate) const MAX_COUNTER: u32 = 100_000;
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
}

impl LabFault {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LabFault::Disconnect => "disconnect",
            LabFault::Reconnect => "reconnect",
            LabFault::Crash => "crash",
            LabFault::RestartServer => "restart-server",
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
    pub(crate) fn uses_mechanism(&self, mech: Mechanism) -> bool {
        match &self.op {
            Op::Lock { mech: m, .. }
            | Op::Test { mech: m, .. }
            | Op::Listed { mech: m, .. }
            | Op::Counter { mech: m, .. } => *m == mech,
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
    },
    Test {
        fd: String,
        mech: Mechanism,
        mode: LockMode,
        start: i64,
        len: i64,
    },
    Write {
        fd: String,
        data: String,
        offset: Option<u64>,
        sync: bool,
    },
    Read {
        fd: String,
        len: u64,
        offset: Option<u64>,
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
    },
    /// `kill` (fatal: wait until the process is gone) or `signal` (it stays).
    Signal {
        signal: Signal,
        fatal: bool,
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
}

fn range_text(start: i64, len: i64) -> String {
    match len {
        0 => format!("bytes {start}..EOF"),
        l if l > 0 => format!("bytes {start}..{}", start.saturating_add(l)),
        l => format!("start {start} len {l}"),
    }
}

impl Op {
    /// Whether this call may legitimately wait in the kernel.
    pub(crate) fn may_block(&self) -> bool {
        matches!(
            self,
            Op::Lock { wait: true, .. } | Op::Await { .. } | Op::Open { .. }
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
                    details.push(range_text(*start, *len));
                }
                format!("{what} on {fd} ({})", details.join(", "))
            }
            Op::Test {
                fd,
                mech,
                mode,
                start,
                len,
            } => {
                if *mech == Mechanism::Lease {
                    format!("get the lease on {fd}")
                } else {
                    format!(
                        "test {} on {fd} ({mech}, {})",
                        mode.as_str(),
                        range_text(*start, *len)
                    )
                }
            }
            Op::Write {
                fd,
                data,
                offset,
                sync,
            } => {
                let w = match offset {
                    Some(o) => format!("write {:?} to {fd} at {o}", clip(data)),
                    None => format!("write {:?} to {fd}", clip(data)),
                };
                if *sync {
                    format!("{w}, fsync")
                } else {
                    w
                }
            }
            Op::Read { fd, len, offset } => match offset {
                Some(o) => format!("read {len} bytes of {fd} at {o}"),
                None => format!("read {len} bytes of {fd}"),
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
            Op::Lab { fault, host } => match host {
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
                    format!(" ({})", range_text(*start, *len))
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

    fn add_actor(
        &mut self,
        name: String,
        host: Option<String>,
        pos: Pos,
        life: Life,
    ) -> Result<(), ScenarioError> {
        if self.index.contains_key(&name) {
            return Err(self
                .err(pos, format!("actor `{name}` is declared twice"))
                .with_hint(
                "actor names are unique; a fork's or thread's `as` must not repeat another actor",
            ));
        }
        if self.actors.len() >= MAX_ACTORS {
            return Err(self.err(pos, format!("more than {MAX_ACTORS} actors")));
        }
        self.index.insert(name.clone(), self.actors.len());
        self.actors.push(ActorPlan {
            name,
            host: host.unwrap_or_else(|| DEFAULT_HOST.to_string()),
            forked_from: None,
            thread_of: None,
            spawned_by: None,
        });
        self.state.push(ActorState::new(life));
        Ok(())
    }

    /// The actor whose descriptor table actor `i` uses (a thread's process).
    fn owner(&self, i: usize) -> usize {
        self.actors[i].thread_of.unwrap_or(i)
    }

    fn err(&self, pos: Pos, msg: impl Into<String>) -> ScenarioError {
        ScenarioError::new(self.file, pos, msg)
    }

    /// A bound in time; in leases, it is reckoned with the default lease
    /// here and with the target's at run time.
    fn check_bound(
        &self,
        b: &Located<crate::spec::scenario::Bound>,
        leases: &mut Option<f64>,
    ) -> Result<Duration, ScenarioError> {
        match b.value {
            crate::spec::scenario::Bound::Fixed(d) => self.check_timeout(&Located {
                value: crate::spec::scenario::Dur(d),
                pos: b.pos,
            }),
            crate::spec::scenario::Bound::Leases(n) => {
                *leases = Some(n);
                Ok(DEFAULT_LEASE.mul_f64(n))
            }
        }
    }

    fn check_timeout(
        &self,
        t: &Located<crate::spec::scenario::Dur>,
    ) -> Result<Duration, ScenarioError> {
        if t.value.0.is_zero() || t.value.0 > MAX_TIMEOUT {
            return Err(self
                .err(
                    t.pos,
                    format!(
                        "timeout {} is out of range",
                        humantime::format_duration(t.value.0)
                    ),
                )
                .with_hint("give a duration between 1ms and 10m"));
        }
        Ok(t.value.0)
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

    /// Resolve `actor:` / `actors:` to indices.
    fn actors_of(&self, c: &Common<'_>, step_pos: Pos) -> Result<Vec<usize>, ScenarioError> {
        let names: Vec<Located<String>> = match (c.actor, c.actors) {
            (Some(a), None) => vec![a.clone()],
            (None, Some(set)) => match &set.value {
                ActorSet::All(_) => self
                    .scn
                    .actors
                    .iter()
                    .flat_map(|d| expand_actor_name(d.name()).unwrap_or_default())
                    .map(|n| Located::new(n, set.pos))
                    .collect(),
                ActorSet::List(list) => {
                    let mut out = Vec::new();
                    for n in list {
                        let expanded =
                            expand_actor_name(&n.value).map_err(|m| self.err(n.pos, m))?;
                        out.extend(expanded.into_iter().map(|e| Located::new(e, n.pos)));
                    }
                    if out.is_empty() {
                        return Err(self.err(set.pos, "`actors` is empty"));
                    }
                    out
                }
            },
            (Some(a), Some(_)) => {
                return Err(self.err(a.pos, "a step has either `actor` or `actors`, not both"))
            }
            (None, None) => {
                return Err(self
                    .err(step_pos, "the step does not say which actor performs it")
                    .with_hint("add `actor: NAME` (or `actors: [A, B]` for a race)"))
            }
        };
        let mut out = Vec::new();
        for n in &names {
            let i = *self.index.get(&n.value).ok_or_else(|| {
                let known: Vec<&str> = self.actors.iter().map(|a| a.name.as_str()).collect();
                self.err(n.pos, format!("unknown actor `{}`", n.value))
                    .with_hint(format!("declared actors: {}", known.join(", ")))
            })?;
            if out.contains(&i) {
                return Err(self.err(n.pos, format!("actor `{}` is named twice", n.value)));
            }
            out.push(i);
        }
        Ok(out)
    }

    /// The actor must exist and be alive; `allow_pending` for await/kill/signal/listed.
    fn check_usable(
        &self,
        i: usize,
        pos: Pos,
        op: &str,
        allow_pending: bool,
    ) -> Result<(), ScenarioError> {
        let name = &self.actors[i].name;
        let st = &self.state[i];
        match &st.life {
            Life::Unborn => {
                return Err(self
                    .err(pos, format!("actor `{name}` does not exist yet"))
                    .with_hint(
                        "it is created by a later `fork` or `thread` step; move this step after it",
                    ))
            }
            Life::Dead { how, pos: at } => {
                return Err(self
                    .err(
                        pos,
                        format!("actor `{name}` is gone ({how} at line {})", at.line),
                    )
                    .with_hint(format!(
                        "a {op} step cannot address an actor that has ended"
                    )))
            }
            Life::Alive => {}
        }
        if let Some((n, at)) = st.ambiguous {
            if op != "kill" {
                return Err(self
                    .err(pos, format!("after the race of step {n} (line {}) it is not known whether `{name}` holds the lock or still waits", at.line))
                    .with_hint("only `kill` can address it now; give waiters separate steps when later steps need to know who holds the lock"));
            }
        }
        if let (Some(w), false) = (&st.pending, allow_pending) {
            return Err(self
                .err(
                    pos,
                    format!(
                        "actor `{name}` is still waiting in the blocked call of step {} (line {})",
                        w.number, w.pos.line
                    ),
                )
                .with_hint("an actor in a blocked call can only be awaited (`await`), signalled or killed; add an `await` step first"));
        }
        Ok(())
    }

    /// The descriptor a step uses: the one named, or the actor's only one.
    fn fd_of(
        &self,
        i: usize,
        fd: Option<&Located<String>>,
        pos: Pos,
    ) -> Result<String, ScenarioError> {
        let st = &self.state[self.owner(i)];
        let name = &self.actors[i].name;
        let open = || {
            st.fds
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match fd {
            Some(f) => {
                if st.fds.contains_key(&f.value) {
                    Ok(f.value.clone())
                } else {
                    Err(self
                        .err(
                            f.pos,
                            format!("actor `{name}` has no descriptor `{}` open here", f.value),
                        )
                        .with_hint(if st.fds.is_empty() {
                            "it has no open descriptors; add an `open` step first".to_string()
                        } else {
                            format!("open descriptors of `{name}`: {}", open())
                        }))
                }
            }
            None => match st.fds.len() {
                1 => Ok(st.fds.keys().next().cloned().unwrap_or_default()),
                0 => Err(self
                    .err(pos, format!("actor `{name}` has no open descriptor"))
                    .with_hint("add an `open` step for it first")),
                _ => Err(self
                    .err(
                        pos,
                        format!(
                            "actor `{name}` has several descriptors open; say which with `fd:`"
                        ),
                    )
                    .with_hint(format!("open descriptors: {}", open()))),
            },
        }
    }

    /// The same descriptor name for every actor of a group step.
    fn fd_for_all(
        &self,
        actors: &[usize],
        fd: Option<&Located<String>>,
        pos: Pos,
    ) -> Result<String, ScenarioError> {
        let mut chosen: Option<String> = None;
        for &i in actors {
            let f = self.fd_of(i, fd, pos)?;
            match &chosen {
                None => chosen = Some(f),
                Some(c) if *c != f => return Err(self
                    .err(
                        pos,
                        "the actors of this step have different descriptors open",
                    )
                    .with_hint(
                        "name the descriptor with `fd:` (each actor must have one of that name)",
                    )),
                Some(_) => {}
            }
        }
        chosen.ok_or_else(|| self.err(pos, "no actor"))
    }

    fn mech_of(&self, m: Option<&Located<Mechanism>>) -> Mechanism {
        m.map(|l| l.value).unwrap_or(self.mech)
    }

    /// Check what a mechanism can do against what a lock step asks.
    fn check_capability(
        &self,
        mech: Mechanism,
        explicit: Option<&Located<Mechanism>>,
        pos: Pos,
        what: &str,
        ok: bool,
    ) -> Result<(), ScenarioError> {
        if ok {
            return Ok(());
        }
        let hint = match explicit {
            Some(_) => format!("use another mechanism for this step; {mech} cannot"),
            None => format!(
                "leave {mech} out of `mechanisms` (with a reason in `not-applicable` if needed)"
            ),
        };
        Err(self
            .err(pos, format!("{mech} has no {what}, but this step needs it"))
            .with_hint(hint))
    }

    fn range(
        &self,
        mech: Mechanism,
        start: Option<&Located<i64>>,
        len: Option<&Located<i64>>,
        explicit: Option<&Located<Mechanism>>,
    ) -> Result<(i64, i64), ScenarioError> {
        let s = start.map(|l| l.value).unwrap_or(0);
        let l = len.map(|l| l.value).unwrap_or(0);
        if !mech.has_ranges() && (s != 0 || l != 0) {
            let pos = start
                .filter(|v| v.value != 0)
                .or(len)
                .map(|v| v.pos)
                .unwrap_or(Pos::UNKNOWN);
            self.check_capability(
                mech,
                explicit,
                pos,
                "byte ranges (it locks whole files)",
                false,
            )?;
        }
        Ok((s, l))
    }

    fn timeout(&self, c: &Common<'_>) -> Result<Duration, ScenarioError> {
        match c.timeout {
            Some(t) => self.check_timeout(t),
            None => Ok(self.default_timeout),
        }
    }

    fn expectation(
        &self,
        e: &Located<Expect>,
        nested: bool,
        conflict: &[i32],
    ) -> Result<Expectation, ScenarioError> {
        Ok(match &e.value {
            Expect::Ok => Expectation::Ok,
            Expect::Conflict => Expectation::Conflict(conflict.to_vec()),
            Expect::Errno(v, n) => Expectation::Errno {
                value: *v,
                name: n.clone(),
            },
            Expect::Blocks => Expectation::Blocks,
            Expect::Unlocked => Expectation::Unlocked,
            Expect::Any => Expectation::Any,
            Expect::Data(d) => Expectation::Data(d.clone()),
            Expect::Lease(l) => Expectation::Lease(*l),
            Expect::Holder(h) => {
                let pid = match &h.pid {
                    None | Some(PidSpec::Any) => PidExpect::Any,
                    Some(PidSpec::Raw(n)) => PidExpect::Raw(*n),
                    Some(PidSpec::Actor(name)) => {
                        PidExpect::Actor(*self.index.get(name).ok_or_else(|| {
                            self.err(e.pos, format!("holder pid names unknown actor `{name}`"))
                                .with_hint("use an actor name, a number such as -1, or `any`")
                        })?)
                    }
                };
                Expectation::Holder {
                    mode: h.mode,
                    start: h.start,
                    len: h.len,
                    pid,
                }
            }
            Expect::OneOf(list) => Expectation::OneOf(
                list.iter()
                    .map(|x| self.expectation(x, true, conflict))
                    .collect::<Result<_, _>>()?,
            ),
            Expect::Winners { count, others } => {
                if nested {
                    return Err(
                        self.err(e.pos, "`winners` cannot be nested in another expectation")
                    );
                }
                Expectation::Winners {
                    count: *count,
                    others: Box::new(self.expectation(others, true, conflict)?),
                }
            }
            Expect::PerMechanism(map) => {
                if nested {
                    return Err(self.err(e.pos, "a per-mechanism expectation cannot be nested"));
                }
                for (m, v) in map {
                    if !self.mechs.contains(m) {
                        return Err(self.err(
                            v.pos,
                            format!(
                                "an expectation for {m}, but the scenario does not run with {m}"
                            ),
                        ));
                    }
                }
                let chosen = map.get(&self.mech).ok_or_else(|| {
                    self.err(
                        e.pos,
                        format!("no expectation for {} in this per-mechanism map", self.mech),
                    )
                    .with_hint(format!(
                        "the scenario runs with {}; give each of them",
                        self.mechs
                            .iter()
                            .map(|m| m.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
                self.expectation(chosen, false, conflict)?
            }
        })
    }

    /// Check that an expectation can be observed for this operation.
    fn check_fits(
        &self,
        exp: &Expectation,
        op: &Op,
        n: usize,
        pos: Pos,
    ) -> Result<(), ScenarioError> {
        let bad = |what: &str, hint: &str| {
            Err(self.err(pos, what.to_string()).with_hint(hint.to_string()))
        };
        let is_test = matches!(op, Op::Test { .. });
        let lease_test = matches!(
            op,
            Op::Test {
                mech: Mechanism::Lease,
                ..
            }
        );
        match exp {
            Expectation::Blocks if !op.may_block() => bad(
                "only a waiting lock (`wait: true`), an `open` (a lease break) or an `await` can be expected to block",
                "add `wait: true` to the lock, or expect `conflict` for a lock that only tries",
            ),
            Expectation::Unlocked if !(is_test || matches!(op, Op::Listed { .. })) => bad(
                "`unlocked` describes the answer of a `test` or `listed` step",
                "use ok, conflict or an errno here",
            ),
            Expectation::Unlocked if lease_test => bad(
                "a lease test answers with `{leased: none|read|write}`",
                "write `expect: {leased: none}`",
            ),
            Expectation::Holder { .. } if !is_test || lease_test => bad(
                "`holder` describes the answer of a `test` step of a record lock",
                "use ok, conflict or an errno here",
            ),
            Expectation::Lease(_) if !lease_test => bad(
                "`leased` describes the answer of a `test` step with mechanism lease",
                "use ok, conflict or an errno here",
            ),
            Expectation::Data(_) if !matches!(op, Op::Read { .. }) => {
                bad("`data` describes what a `read` step returns", "use ok or an errno here")
            }
            Expectation::Ok if matches!(op, Op::Test { .. } | Op::Read { .. }) => bad(
                "`ok` would accept any answer here",
                "say what the answer must be: `unlocked`, `{holder: ...}`, `{leased: ...}` or `{data: ...}`",
            ),
            Expectation::Conflict(_) if !matches!(op, Op::Lock { .. } | Op::Await { .. }) => bad(
                "`conflict` (a lock refused because another holds it) is for `lock` and `await` steps",
                "expect a specific errno instead",
            ),
            Expectation::Errno { .. } | Expectation::Conflict(_) | Expectation::Blocks
                if matches!(
                    op,
                    Op::Signal { .. }
                        | Op::Exit { .. }
                        | Op::Handle { .. }
                        | Op::Listed { .. }
                        | Op::Stop
                        | Op::Continue
                        | Op::CloseAll
                        | Op::Spawn { .. }
                        | Op::Lab { .. }
                ) =>
            {
                bad(
                    "this step can only expect `ok` (or `unlocked` for `listed`)",
                    "remove the expectation",
                )
            }
            Expectation::OneOf(list) => {
                for e in list {
                    self.check_fits(e, op, n, pos)?;
                }
                Ok(())
            }
            Expectation::Winners { count, others } => {
                if n < 2 {
                    return bad(
                        "`winners` needs several actors",
                        "write `actors: [a, b, ...]` or `actors: all`",
                    );
                }
                if *count as usize > n {
                    return Err(self.err(pos, format!("{count} winners among {n} actors")));
                }
                self.check_fits(others, op, n, pos)
            }
            _ => Ok(()),
        }
    }

    fn step(&mut self, number: usize, step: &Located<Step>) -> Result<PlannedStep, ScenarioError> {
        let c = step.common();
        let pos = step.pos;
        let timeout = self.timeout(&c)?;
        let op_name = step.op_name();
        if let Step::Disconnect(s) | Step::Reconnect(s) | Step::Crash(s) | Step::RestartServer(s) =
            &step.value
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

    /// Whether each actor of the step can take part: alive, not stopped
    /// (unless the step continues, signals or kills it), a whole process
    /// where the step addresses one.
    fn check_actors(
        &self,
        step: &Located<Step>,
        actors: &[usize],
        pos: Pos,
    ) -> Result<(), ScenarioError> {
        let op_name = step.op_name();
        let allow_pending = matches!(
            step.value,
            Step::Await(_)
                | Step::Kill(_)
                | Step::Signal(_)
                | Step::Listed(_)
                | Step::Stop(_)
                | Step::Continue(_)
        );
        for &i in actors {
            self.check_usable(i, pos, op_name, allow_pending)?;
            if self.state[i].stopped
                && !matches!(
                    step.value,
                    Step::Continue(_) | Step::Kill(_) | Step::Signal(_) | Step::Listed(_)
                )
            {
                return Err(self
                    .err(pos, format!("actor `{}` is stopped (SIGSTOP)", self.actors[i].name))
                    .with_hint("a stopped actor can only be continued, signalled, killed or looked up in /proc/locks"));
            }
            if matches!(step.value, Step::Continue(_)) && !self.state[i].stopped {
                return Err(self.err(
                    pos,
                    format!("actor `{}` is not stopped", self.actors[i].name),
                ));
            }
            if matches!(step.value, Step::Stop(_)) && self.state[i].stopped {
                return Err(self.err(
                    pos,
                    format!("actor `{}` is already stopped", self.actors[i].name),
                ));
            }
            if self.actors[i].thread_of.is_some()
                && matches!(
                    step.value,
                    Step::Kill(_)
                        | Step::Exit(_)
                        | Step::Exec(_)
                        | Step::Fork(_)
                        | Step::Thread(_)
                        | Step::Stop(_)
                        | Step::Continue(_)
                        | Step::Spawn(_)
                )
            {
                return Err(self
                    .err(
                        pos,
                        format!(
                            "`{}` is a thread; a {op_name} step addresses a whole process",
                            self.actors[i].name
                        ),
                    )
                    .with_hint("address the actor the thread was started in"));
            }
        }
        Ok(())
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

    /// The step's operation, checked against the state of its actors: the
    /// lowering of a scenario step, one method per kind of step.
    fn lower(
        &mut self,
        step: &Located<Step>,
        c: &Common<'_>,
        actors: &[usize],
        pos: Pos,
    ) -> Result<Op, ScenarioError> {
        match &step.value {
            Step::Open(o) => self.lower_open(o, actors, pos),
            Step::Close(s) => Ok(Op::Close {
                fd: self.fd_for_all(actors, s.fd.as_ref(), pos)?,
            }),
            Step::Dup(s) => self.lower_dup(s, actors, pos),
            Step::Lock(s) => self.lower_lock(s, actors, pos),
            Step::Unlock(s) => self.lower_unlock(s, actors, pos),
            Step::Test(s) => self.lower_test(s, actors, pos),
            Step::Listed(s) => self.lower_listed(s, actors, pos),
            Step::Counter(s) => self.lower_counter(s, actors, pos),
            Step::Write(s) => self.lower_write(s, actors, pos),
            Step::Read(s) => self.lower_read(s, actors, pos),
            Step::Fork(s) => Ok(Op::Fork {
                child: self.new_child(actors, &s.as_name, "fork", pos)?,
            }),
            Step::Thread(s) => Ok(Op::Thread {
                child: self.new_child(actors, &s.as_name, "thread", pos)?,
            }),
            Step::Exit(s) => Ok(Op::Exit { code: s.code }),
            Step::Exec(_) => Ok(Op::Exec),
            Step::Await(s) => self.lower_await(s, c, actors, pos),
            Step::Kill(s) => self.lower_kill(s, actors, pos),
            Step::Signal(s) => self.lower_signal(s, actors),
            Step::Handle(s) => self.lower_handle(s),
            Step::Unlink(s) => Ok(Op::Unlink {
                path: self.check_path(&s.path)?,
            }),
            Step::Rename(s) => Ok(Op::Rename {
                from: self.check_path(&s.from)?,
                to: self.check_path(&s.to)?,
            }),
            Step::Mkdir(s) => Ok(Op::Mkdir {
                path: self.check_path(&s.path)?,
            }),
            Step::Symlink(s) => Ok(Op::Symlink {
                target: s.target.value.clone(),
                path: self.check_path(&s.path)?,
            }),
            Step::Stop(_) => Ok(Op::Stop),
            Step::Continue(_) => Ok(Op::Continue),
            Step::CloseAll(_) => Ok(Op::CloseAll),
            Step::PidAlive(s) => Ok(Op::PidAlive {
                path: self.check_path(&s.path)?,
            }),
            Step::Spawn(s) => self.lower_spawn(s, actors, pos),
            Step::Disconnect(_) | Step::Reconnect(_) | Step::Crash(_) | Step::RestartServer(_) => {
                Err(self.err(pos, "internal: lab faults are planned separately"))
            }
        }
    }

    /// An `open` step: the descriptor's name must be new to each actor.
    fn lower_open(
        &mut self,
        o: &OpenStep,
        actors: &[usize],
        pos: Pos,
    ) -> Result<Op, ScenarioError> {
        let path = self.check_path(&o.path)?;
        let fd = o
            .as_name
            .as_ref()
            .map(|n| n.value.clone())
            .unwrap_or_else(|| path.clone());
        let name_pos = o.as_name.as_ref().map(|n| n.pos).unwrap_or(o.path.pos);
        check_fd_name(&fd).map_err(|m| self.err(name_pos, m))?;
        for &i in actors {
            if self.state[self.owner(i)].fds.contains_key(&fd) {
                return Err(self
                    .err(
                        name_pos,
                        format!(
                            "actor `{}` already has a descriptor named `{fd}`",
                            self.actors[i].name
                        ),
                    )
                    .with_hint("give this one another name with `as:`"));
            }
        }
        if o.excl && !o.create {
            return Err(self.err(
                pos,
                "`excl` needs `create` (O_EXCL only means something with O_CREAT)",
            ));
        }
        match o.via.as_ref().map(|v| v.value) {
            Some(Via::SecondMount) => self.second_mount = true,
            Some(Via::BackingStore) => {
                self.needs.insert(Need::BackingStore);
            }
            None => {}
        }
        Ok(Op::Open {
            path,
            access: o.mode,
            create: o.create,
            excl: o.excl,
            trunc: o.trunc,
            directory: o.directory,
            cloexec: o.cloexec,
            via: o.via.as_ref().map(|v| v.value),
            fd,
        })
    }

    /// A `dup` step: the new name must be new to each actor.
    fn lower_dup(&self, s: &DupStep, actors: &[usize], pos: Pos) -> Result<Op, ScenarioError> {
        let fd = self.fd_for_all(actors, s.fd.as_ref(), pos)?;
        check_fd_name(&s.as_name).map_err(|m| self.err(s.as_name.pos, m))?;
        for &i in actors {
            if self.state[self.owner(i)].fds.contains_key(&s.as_name.value) {
                return Err(self.err(
                    s.as_name.pos,
                    format!(
                        "actor `{}` already has a descriptor named `{}`",
                        self.actors[i].name, s.as_name.value
                    ),
                ));
            }
        }
        Ok(Op::Dup {
            fd,
            new: s.as_name.value.clone(),
        })
    }

    /// A `lock` step, for the scenario's mechanism or its own.
    fn lower_lock(
        &mut self,
        s: &LockStep,
        actors: &[usize],
        pos: Pos,
    ) -> Result<Op, ScenarioError> {
        let mech = self.mech_of(s.mechanism.as_ref());
        let (start, len) =
            self.range(mech, s.start.as_ref(), s.len.as_ref(), s.mechanism.as_ref())?;
        self.check_capability(
            mech,
            s.mechanism.as_ref(),
            pos,
            "waiting locks",
            !s.wait || mech.can_wait(),
        )?;
        self.check_capability(
            mech,
            s.mechanism.as_ref(),
            s.mode.pos,
            "shared locks",
            s.mode.value == LockMode::Exclusive || mech.has_shared(),
        )?;
        Ok(Op::Lock {
            fd: self.fd_for_all(actors, s.fd.as_ref(), pos)?,
            mech,
            kind: s.mode.value.into(),
            wait: s.wait,
            start,
            len,
        })
    }

    /// An `unlock` step.
    fn lower_unlock(
        &mut self,
        s: &UnlockStep,
        actors: &[usize],
        pos: Pos,
    ) -> Result<Op, ScenarioError> {
        let mech = self.mech_of(s.mechanism.as_ref());
        let (start, len) =
            self.range(mech, s.start.as_ref(), s.len.as_ref(), s.mechanism.as_ref())?;
        Ok(Op::Lock {
            fd: self.fd_for_all(actors, s.fd.as_ref(), pos)?,
            mech,
            kind: LockKind::Unlock,
            wait: false,
            start,
            len,
        })
    }

    /// A `test` step (F_GETLK, F_OFD_GETLK, F_GETLEASE).
    fn lower_test(
        &mut self,
        s: &TestStep,
        actors: &[usize],
        pos: Pos,
    ) -> Result<Op, ScenarioError> {
        let (fd, mech, mode, start, len) = self.probe(
            Probe {
                fd: s.fd.as_ref(),
                mechanism: s.mechanism.as_ref(),
                mode: s.mode.as_ref(),
                start: s.start.as_ref(),
                len: s.len.as_ref(),
            },
            actors,
            pos,
            ("way to test for a lock (no F_GETLK)", Mechanism::has_test),
        )?;
        Ok(Op::Test {
            fd,
            mech,
            mode,
            start,
            len,
        })
    }

    /// A `listed` step: the lock as /proc/locks shows it.
    fn lower_listed(
        &mut self,
        s: &ListedStep,
        actors: &[usize],
        pos: Pos,
    ) -> Result<Op, ScenarioError> {
        let (fd, mech, mode, start, len) = self.probe(
            Probe {
                fd: s.fd.as_ref(),
                mechanism: s.mechanism.as_ref(),
                mode: s.mode.as_ref(),
                start: s.start.as_ref(),
                len: s.len.as_ref(),
            },
            actors,
            pos,
            ("entry in /proc/locks", |m| m != Mechanism::Pidfile),
        )?;
        Ok(Op::Listed {
            fd,
            mech,
            mode,
            start,
            len,
        })
    }

    /// What a step that looks for a lock names: its mechanism (which must
    /// have the capability `needs` names), byte range, descriptor and the
    /// mode looked for (exclusive by default), checked in that order.
    fn probe(
        &mut self,
        p: Probe<'_>,
        actors: &[usize],
        pos: Pos,
        needs: (&str, fn(Mechanism) -> bool),
    ) -> Result<(String, Mechanism, LockMode, i64, i64), ScenarioError> {
        let mech = self.mech_of(p.mechanism);
        self.check_capability(mech, p.mechanism, pos, needs.0, needs.1(mech))?;
        let (start, len) = self.range(mech, p.start, p.len, p.mechanism)?;
        let fd = self.fd_for_all(actors, p.fd, pos)?;
        let mode = p.mode.map(|m| m.value).unwrap_or(LockMode::Exclusive);
        Ok((fd, mech, mode, start, len))
    }

    /// A `counter` step: increments under the lock.
    fn lower_counter(
        &mut self,
        s: &CounterStep,
        actors: &[usize],
        pos: Pos,
    ) -> Result<Op, ScenarioError> {
        let mech = self.mech;
        self.check_capability(mech, None, pos, "waiting locks", mech.can_wait())?;
        if s.times.value == 0 || s.times.value > MAX_COUNTER {
            return Err(self.err(
                s.times.pos,
                format!("`times` must be between 1 and {MAX_COUNTER}"),
            ));
        }
        Ok(Op::Counter {
            fd: self.fd_for_all(actors, s.fd.as_ref(), pos)?,
            mech,
            times: s.times.value,
            offset: s.offset.as_ref().map(|o| o.value).unwrap_or(0),
        })
    }

    /// A `write` step.
    fn lower_write(
        &mut self,
        s: &WriteStep,
        actors: &[usize],
        pos: Pos,
    ) -> Result<Op, ScenarioError> {
        if s.data.len() > MAX_DATA {
            return Err(self.err(pos, format!("`data` is longer than {MAX_DATA} bytes")));
        }
        Ok(Op::Write {
            fd: self.fd_for_all(actors, s.fd.as_ref(), pos)?,
            data: s.data.clone(),
            offset: s.offset.as_ref().map(|o| o.value),
            sync: s.sync,
        })
    }

    /// A `read` step.
    fn lower_read(
        &mut self,
        s: &ReadStep,
        actors: &[usize],
        pos: Pos,
    ) -> Result<Op, ScenarioError> {
        if s.len.value > MAX_DATA as u64 {
            return Err(self.err(s.len.pos, format!("`len` is larger than {MAX_DATA}")));
        }
        Ok(Op::Read {
            fd: self.fd_for_all(actors, s.fd.as_ref(), pos)?,
            len: s.len.value,
            offset: s.offset.as_ref().map(|o| o.value),
        })
    }

    /// An `await` step: each actor has a blocked call.
    fn lower_await(
        &mut self,
        s: &AwaitStep,
        c: &Common<'_>,
        actors: &[usize],
        pos: Pos,
    ) -> Result<Op, ScenarioError> {
        if let Some(f) = &s.for_ {
            let blocks = matches!(c.expect.map(|e| &e.value), Some(Expect::Blocks));
            if !blocks {
                return Err(self
                    .err(f.pos, "`for` needs `expect: blocks`")
                    .with_hint("`for` checks that the call keeps waiting that long; to bound how long it may take to complete, use `within`"));
            }
        }
        for &i in actors {
            if self.state[i].pending.is_none() {
                return Err(self
                    .err(
                        pos,
                        format!(
                            "actor `{}` has no blocked call to await",
                            self.actors[i].name
                        ),
                    )
                    .with_hint("`await` follows a call whose expectation is `blocks`"));
            }
        }
        if let (Some(w), Some(t)) = (&s.within, c.timeout) {
            return Err(self
                .err(w.pos, "give either `within` or `timeout`, not both")
                .with_hint(format!(
                    "`within` is the bound for the call to complete (timeout was at {})",
                    t.pos
                )));
        }
        Ok(Op::Await {
            hold: match &s.for_ {
                Some(f) => Some(self.check_timeout(f)?),
                None => None,
            },
        })
    }

    /// A `kill` step: the signal must end each actor.
    fn lower_kill(&self, s: &KillStep, actors: &[usize], pos: Pos) -> Result<Op, ScenarioError> {
        let signal = match &s.signal {
            None => Signal::SIGKILL,
            Some(l) => parse_signal(&l.value).map_err(|m| self.err(l.pos, m))?,
        };
        let at = s.signal.as_ref().map(|l| l.pos).unwrap_or(pos);
        for &i in actors {
            if self.state[i].stopped && signal != Signal::SIGKILL {
                return Err(self
                    .err(
                        at,
                        format!(
                            "actor `{}` is stopped: {} would wait until it continues",
                            self.actors[i].name,
                            signal.as_str()
                        ),
                    )
                    .with_hint("kill a stopped actor with KILL, or `continue` it first"));
            }
            if !is_fatal_by_default(signal) || self.state[i].handled.contains(&signal) {
                return Err(self
                    .err(at, format!("{} does not end actor `{}`", signal.as_str(), self.actors[i].name))
                    .with_hint("`kill` sends a signal that ends the process, such as KILL or TERM; use a `signal` step for the others"));
            }
        }
        Ok(Op::Signal {
            signal,
            fatal: true,
        })
    }

    /// A `signal` step: the signal must not end an actor that does not handle it.
    fn lower_signal(&self, s: &SignalStep, actors: &[usize]) -> Result<Op, ScenarioError> {
        let signal = parse_signal(&s.signal.value).map_err(|m| self.err(s.signal.pos, m))?;
        for &i in actors {
            let st = &self.state[i];
            if is_fatal_by_default(signal) && !st.handled.contains(&signal) {
                return Err(self
                    .err(
                        s.signal.pos,
                        format!(
                            "{} would end actor `{}`: it has no handler for it",
                            signal.as_str(),
                            self.actors[i].name
                        ),
                    )
                    .with_hint("add a `handle` step first, or use `kill` to end the actor"));
            }
        }
        Ok(Op::Signal {
            signal,
            fatal: false,
        })
    }

    /// A `handle` step: a signal an actor can catch.
    fn lower_handle(&self, s: &HandleStep) -> Result<Op, ScenarioError> {
        let signal = parse_signal(&s.signal.value).map_err(|m| self.err(s.signal.pos, m))?;
        if !handleable(signal) {
            return Err(self
                .err(
                    s.signal.pos,
                    format!("{} cannot be handled by an actor", signal.as_str()),
                )
                .with_hint(
                    "SIGKILL and SIGSTOP cannot be caught; SIGPIPE and SIGIO are the actor's own",
                ));
        }
        Ok(Op::Handle {
            signal,
            restart: s.restart,
        })
    }

    /// A `spawn` step, optionally reusing a dead actor's PID.
    fn lower_spawn(
        &mut self,
        s: &SpawnStep,
        actors: &[usize],
        pos: Pos,
    ) -> Result<Op, ScenarioError> {
        let child = self.new_child(actors, &s.as_name, "spawn", pos)?;
        let pid_of = match &s.pid_of {
            None => None,
            Some(d) => {
                let dead = *self
                    .index
                    .get(&d.value)
                    .ok_or_else(|| self.err(d.pos, format!("unknown actor `{}`", d.value)))?;
                if !matches!(self.state[dead].life, Life::Dead { .. }) {
                    return Err(self
                        .err(
                            d.pos,
                            format!("actor `{}` is not dead here; its PID is not free", d.value),
                        )
                        .with_hint("kill or exit that actor in an earlier step"));
                }
                if self.actors[dead].thread_of.is_some() {
                    return Err(self.err(d.pos, "a thread's id is not a process id to reuse"));
                }
                self.needs.insert(Need::PidReuse);
                Some(dead)
            }
        };
        Ok(Op::Spawn { child, pid_of })
    }

    /// The one actor of a step that makes a new actor, and the new actor,
    /// which must not exist yet.
    fn new_child(
        &self,
        actors: &[usize],
        name: &Located<String>,
        what: &str,
        pos: Pos,
    ) -> Result<usize, ScenarioError> {
        if actors.len() != 1 {
            return Err(self.err(pos, format!("a {what} step has one actor")));
        }
        let child = self.index[&name.value];
        if !matches!(self.state[child].life, Life::Unborn) {
            return Err(self.err(name.pos, format!("actor `{}` already exists", name.value)));
        }
        Ok(child)
    }

    /// The step's timeout: `within` where the step bounds its call, else
    /// its `timeout` (or the scenario's); `within` in leases notes them.
    fn step_timeout(
        &self,
        step: &Located<Step>,
        c: &Common<'_>,
        timeout: Duration,
        leases: &mut Option<f64>,
    ) -> Result<Duration, ScenarioError> {
        Ok(match &step.value {
            Step::Await(s) => match &s.within {
                Some(w) => self.check_bound(w, leases)?,
                None => timeout,
            },
            Step::Lock(s) => match &s.within {
                Some(w) => {
                    if !s.wait {
                        return Err(self
                            .err(w.pos, "`within` needs `wait: true`")
                            .with_hint("a lock that is only tried returns at once"));
                    }
                    if let Some(t) = c.timeout {
                        return Err(self
                            .err(w.pos, "give either `within` or `timeout`, not both")
                            .with_hint(format!(
                                "`within` is the bound for the call to complete (timeout was at {})",
                                t.pos
                            )));
                    }
                    if matches!(c.expect.map(|e| &e.value), Some(Expect::Blocks)) {
                        return Err(self
                            .err(w.pos, "`within` bounds a call that completes; `expect: blocks` says it must not")
                            .with_hint("expect the outcome (`ok`, an errno), or drop `within`"));
                    }
                    self.check_bound(w, leases)?
                }
                None => timeout,
            },
            _ => timeout,
        })
    }

    /// The step's expectation and where it is written (a step without one
    /// expects success, except those that only look).
    fn step_expectation(
        &self,
        c: &Common<'_>,
        op: &Op,
        op_name: &str,
        pos: Pos,
        conflict: &[i32],
    ) -> Result<(Expectation, Pos), ScenarioError> {
        Ok(match c.expect {
            Some(e) => (self.expectation(e, false, conflict)?, e.pos),
            None => {
                if matches!(op, Op::Test { .. } | Op::Read { .. }) {
                    return Err(self
                        .err(pos, format!("a `{op_name}` step needs an `expect`"))
                        .with_hint(match op {
                            Op::Test {
                                mech: Mechanism::Lease,
                                ..
                            } => "expect `{leased: none}`, `{leased: read}` or `{leased: write}`",
                            Op::Test { .. } => {
                                "expect `unlocked` or `{holder: {mode: exclusive, pid: a}}`"
                            }
                            _ => "expect `{data: \"...\"}`",
                        }));
                }
                (Expectation::Ok, pos)
            }
        })
    }

    /// `unsupported` turns a failure into a skip: it must not name an outcome
    /// the step can legitimately have, or a real failure would hide.
    fn check_unsupported(
        &self,
        c: &Common<'_>,
        unsupported: &[i32],
        expect: &Expectation,
        op: &Op,
        actors: &[usize],
        conflict: &[i32],
    ) -> Result<(), ScenarioError> {
        let mut legit = conflict.to_vec();
        expected_errnos(expect, &mut legit);
        // A lease is refused with EAGAIN when another process has the file
        // open; when no other process has anything open, EAGAIN can only
        // mean the filesystem does not grant leases (NFS without a delegation).
        if let Op::Lock {
            mech: Mechanism::Lease,
            kind: LockKind::Exclusive | LockKind::Shared,
            ..
        } = op
        {
            let mine: BTreeSet<usize> = actors.iter().map(|&i| self.owner(i)).collect();
            let others_open = (0..self.actors.len()).any(|j| {
                !mine.contains(&self.owner(j))
                    && matches!(self.state[j].life, Life::Alive)
                    && !self.state[j].fds.is_empty()
            });
            // A second descriptor of its own can conflict too.
            let own_second = mine.iter().any(|&o| self.state[o].fds.len() > 1);
            if !others_open && !own_second && !matches!(expect, Expectation::Conflict(_)) {
                legit.retain(|&e| e != libc::EAGAIN);
            }
        }
        for (u, e) in c.unsupported.iter().zip(unsupported) {
            if legit.contains(e) {
                return Err(self
                    .err(u.pos, format!("`{}` is an outcome this step can have, not a sign of missing support", u.value))
                    .with_hint("`unsupported` lists errno values that mean the target lacks the feature, such as EINVAL or ENOLCK"));
            }
        }
        Ok(())
    }

    /// A byte range no lock can have, expected to work: the scenario is
    /// wrong, not the target.
    fn check_range(&self, op: &Op, expect: &Expectation, epos: Pos) -> Result<(), ScenarioError> {
        if let Op::Lock {
            mech, start, len, ..
        }
        | Op::Test {
            mech, start, len, ..
        } = op
        {
            if let (true, Some((why, errno))) = (mech.has_ranges(), impossible_range(*start, *len))
            {
                if !expect.allows_an_errno() {
                    return Err(self
                        .err(epos, format!("no lock can cover this range: {why}, so the call fails with {errno}"))
                        .with_hint(format!("expect `{errno}` (see scenarios/range-negative-start-einval.yaml), or fix the range")));
                }
            }
        }
        Ok(())
    }

    /// A lab fault: no actor performs it; the target must be able to inject it.
    fn lab_step(
        &mut self,
        number: usize,
        step: &Located<Step>,
        s: &crate::spec::scenario::LabFaultStep,
        timeout: Duration,
    ) -> Result<PlannedStep, ScenarioError> {
        let fault = match &step.value {
            Step::Disconnect(_) => LabFault::Disconnect,
            Step::Reconnect(_) => LabFault::Reconnect,
            Step::Crash(_) => LabFault::Crash,
            _ => LabFault::RestartServer,
        };
        let host = match (&s.host, fault) {
            (Some(h), LabFault::RestartServer) => {
                return Err(self.err(h.pos, "`restart-server` takes no host"));
            }
            (None, LabFault::RestartServer) => None,
            (None, _) => {
                return Err(self
                    .err(step.pos, format!("`{}` needs `host:`", fault.as_str()))
                    .with_hint(
                        "name the host the fault happens to (a host actors are placed on)",
                    ));
            }
            (Some(h), _) => {
                if !self.actors.iter().any(|a| a.host == h.value) {
                    let hosts: BTreeSet<&str> =
                        self.actors.iter().map(|a| a.host.as_str()).collect();
                    return Err(self
                        .err(h.pos, format!("no actor is placed on host `{}`", h.value))
                        .with_hint(format!(
                            "hosts in this scenario: {}",
                            hosts.into_iter().collect::<Vec<_>>().join(", ")
                        )));
                }
                Some(h.value.clone())
            }
        };
        let expect = match &s.expect {
            Some(e) => self.expectation(e, false, &[])?,
            None => Expectation::Ok,
        };
        if !matches!(expect, Expectation::Ok | Expectation::Any) {
            return Err(self.err(step.pos, "a lab fault can only expect `ok`"));
        }
        self.needs.insert(Need::Lab(fault));
        if fault == LabFault::Crash {
            if let Some(h) = &host {
                let on: Vec<usize> = (0..self.actors.len())
                    .filter(|&i| self.actors[i].host == *h)
                    .collect();
                for i in on {
                    if matches!(self.state[i].life, Life::Alive) {
                        self.end_process(i, format!("host {h} crashed"), step.pos);
                    }
                }
            }
        }
        Ok(PlannedStep {
            number,
            pos: step.pos,
            actors: Vec::new(),
            op: Op::Lab { fault, host },
            expect,
            timeout,
            note: s.note.clone(),
            unsupported: Vec::new(),
            patient: false,
            leases: None,
        })
    }

    fn check_path(&self, p: &Located<String>) -> Result<String, ScenarioError> {
        let path = std::path::Path::new(&p.value);
        let bad = |m: &str| {
            Err(self.err(p.pos, m.to_string()).with_hint(
                "paths are relative to the trial's scratch directory, such as `lock` or `data/db`",
            ))
        };
        if p.value.is_empty() {
            return bad("the path is empty");
        }
        if p.value.contains('\0') {
            return bad("the path contains a NUL byte");
        }
        if path.is_absolute() {
            return bad("the path is absolute; scenario paths stay inside the scratch directory");
        }
        for comp in path.components() {
            match comp {
                std::path::Component::Normal(_) | std::path::Component::CurDir => {}
                _ => return bad("the path leaves the scratch directory (`..`)"),
            }
        }
        if p.value.len() > 1024 {
            return bad("the path is longer than 1024 bytes");
        }
        Ok(p.value.clone())
    }

    /// Mark an actor and the threads of its process dead.
    fn end_process(&mut self, i: usize, how: String, pos: Pos) {
        let threads: Vec<usize> = (0..self.actors.len())
            .filter(|&t| self.actors[t].thread_of == Some(i))
            .collect();
        for t in threads.into_iter().chain(std::iter::once(i)) {
            if matches!(self.state[t].life, Life::Alive) {
                self.state[t].life = Life::Dead {
                    how: how.clone(),
                    pos,
                };
            }
            self.state[t].pending = None;
            self.state[t].ambiguous = None;
        }
    }

    /// Update the simulated state after a step.
    fn apply(&mut self, number: usize, pos: Pos, actors: &[usize], op: &Op, exp: &Expectation) {
        let succeeds = matches!(exp, Expectation::Ok);
        for &i in actors {
            let o = self.owner(i);
            match op {
                Op::Open { fd, cloexec, .. } => {
                    if succeeds {
                        self.state[o].fds.insert(fd.clone(), *cloexec);
                    } else if matches!(exp, Expectation::Blocks) {
                        self.state[i].pending = Some(Waiting {
                            number,
                            pos,
                            opens: Some((fd.clone(), *cloexec)),
                        });
                    }
                }
                Op::Close { fd } => {
                    self.state[o].fds.remove(fd);
                }
                Op::CloseAll => self.state[o].fds.clear(),
                Op::Stop => self.state[i].stopped = true,
                Op::Continue => self.state[i].stopped = false,
                Op::Spawn { child, .. } if succeeds => {
                    let host = self.actors[i].host.clone();
                    self.actors[*child].spawned_by = Some(i);
                    self.actors[*child].host = host;
                    self.state[*child].life = Life::Alive;
                }
                Op::Dup { new, .. } if succeeds => {
                    // dup(2) clears close-on-exec on the copy.
                    self.state[o].fds.insert(new.clone(), false);
                }
                Op::Fork { child } | Op::Thread { child } if succeeds => {
                    let host = self.actors[i].host.clone();
                    if matches!(op, Op::Fork { .. }) {
                        // The child gets copies of the descriptors (the same open
                        // file descriptions) and the signal dispositions.
                        self.actors[*child].forked_from = Some(i);
                        self.state[*child].fds = self.state[o].fds.clone();
                    } else {
                        // A thread shares its process's descriptor table.
                        self.actors[*child].thread_of = Some(i);
                    }
                    self.state[*child].handled = self.state[i].handled.clone();
                    self.actors[*child].host = host;
                    self.state[*child].life = Life::Alive;
                }
                Op::Exec if succeeds => {
                    self.state[o].fds.retain(|_, cloexec| !*cloexec);
                    self.state[i].handled.clear();
                    let threads: Vec<usize> = (0..self.actors.len())
                        .filter(|&t| self.actors[t].thread_of == Some(i))
                        .collect();
                    for t in threads {
                        self.state[t].life = Life::Dead {
                            how: "its process exec'd".into(),
                            pos,
                        };
                    }
                }
                Op::Handle { signal, .. } => {
                    // Handlers belong to the process: its threads share them.
                    let process = self.actors[i].thread_of.unwrap_or(i);
                    let members: Vec<usize> = (0..self.actors.len())
                        .filter(|&t| t == process || self.actors[t].thread_of == Some(process))
                        .collect();
                    for t in members {
                        self.state[t].handled.insert(*signal);
                    }
                }
                Op::Exit { .. } => self.end_process(i, "exited".into(), pos),
                Op::Signal {
                    signal,
                    fatal: true,
                } => self.end_process(i, format!("killed with {}", signal.as_str()), pos),
                Op::Lock { wait: true, .. } | Op::Await { .. } => {
                    let was = self.state[i].pending.take();
                    match exp {
                        // Whether the call still waits is known only at run time
                        // (a race, or a target that may restart or interrupt):
                        // only `kill` may address the actor afterwards.
                        _ if exp.leaves_pending().is_none() => {
                            self.state[i].ambiguous = Some((number, pos));
                        }
                        _ if exp.leaves_pending() == Some(true) => {
                            self.state[i].pending = Some(was.unwrap_or(Waiting {
                                number,
                                pos,
                                opens: None,
                            }));
                        }
                        _ => {
                            if let (
                                Some(Waiting {
                                    opens: Some((fd, cloexec)),
                                    ..
                                }),
                                true,
                            ) = (was, succeeds)
                            {
                                self.state[o].fds.insert(fd, cloexec);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
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
