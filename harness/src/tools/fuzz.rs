//! Differential fuzzing: random lock programs (open, lock and unlock over
//! random ranges, try or wait, test, close, dup, fork, kill) run in lockstep
//! on a reference directory and a target directory; every observable —
//! results, error classes, F_GETLK answers, blocked or not — is compared
//! after each step. On the first mismatch the program is shrunk (delta
//! debugging) to a minimal one that still mismatches and written out as a
//! ready-to-run scenario whose expectations are the reference's behaviour.
//!
//! Programs are generated against a model of the lock state so they are
//! always executable, and so that runs are deterministic: at most one actor
//! waits for a lock at a time, and after any step by another actor the
//! waiter is awaited at once (so a released lock cannot be raced for).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

use crate::actor::protocol::Outcome;
use crate::engine::driver::{Driver, TrialEnv};
use crate::plan::resolve::{
    ActorPlan, Expectation, LockKind, Op, PlannedStep, TrialPlan, DEFAULT_HOST,
};
use crate::spec::loc::Pos;
use crate::spec::scenario::{Access, LockMode, Mechanism};
use crate::target::targets::HostEnv;
use crate::target::targets::Target;
use crate::verdict::judge::Observed;

/// The files programs work on.
const FILES: [&str; 2] = ["a", "b"];
/// Most descriptors an actor opens.
const MAX_FDS: usize = 3;
/// Forked actors a program may create.
const FORK_SLOTS: usize = 2;
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// One operation of a program.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FOp {
    pub(crate) actor: usize,
    pub(crate) kind: FKind,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FKind {
    Open {
        file: usize,
        access: Access,
        name: String,
    },
    Close {
        name: String,
    },
    Dup {
        from: String,
        to: String,
    },
    Lock {
        name: String,
        kind: LockKind,
        wait: bool,
        start: i64,
        len: i64,
    },
    Test {
        name: String,
        mode: LockMode,
        start: i64,
        len: i64,
    },
    Await,
    Kill,
    Fork {
        child: usize,
    },
}

/// A program: a mechanism, its actors (initial ones, then fork slots), and operations.
#[derive(Debug, Clone)]
pub(crate) struct Program {
    pub(crate) mech: Mechanism,
    pub(crate) initial: usize,
    pub(crate) ops: Vec<FOp>,
}

impl Program {
    fn actor_count(&self) -> usize {
        self.initial + FORK_SLOTS
    }

    fn actor_name(&self, i: usize) -> String {
        if i < self.initial {
            format!("p{i}")
        } else {
            format!("c{}", i - self.initial)
        }
    }
}

/// What the generator and replays know of the state, from the reference's
/// observations.
#[derive(Debug, Clone)]
struct Model {
    alive: Vec<bool>,
    /// Fork slots already used (a slot is used once).
    born: Vec<bool>,
    fds: Vec<Vec<String>>,
    pending: Option<usize>,
    /// Another actor has had its one step since the waiter started waiting.
    must_await: bool,
    next_name: usize,
}

/// Why a replayed program cannot be run as it stands.
#[derive(Debug)]
struct Invalid;

impl Model {
    fn new(initial: usize) -> Self {
        let n = initial + FORK_SLOTS;
        Model {
            alive: (0..n).map(|i| i < initial).collect(),
            born: (0..n).map(|i| i < initial).collect(),
            fds: vec![Vec::new(); n],
            pending: None,
            must_await: false,
            next_name: 0,
        }
    }

    fn has_fd(&self, a: usize, name: &str) -> bool {
        self.fds[a].iter().any(|n| n == name)
    }

    /// Whether `op` can run now.
    fn check(&self, op: &FOp, mech: Mechanism) -> Result<(), Invalid> {
        let a = op.actor;
        if !self.alive.get(a).copied().unwrap_or(false) {
            return Err(Invalid);
        }
        if let Some(p) = self.pending {
            if a == p {
                if !matches!(op.kind, FKind::Await | FKind::Kill) {
                    return Err(Invalid);
                }
            } else if self.must_await || matches!(op.kind, FKind::Lock { wait: true, .. }) {
                return Err(Invalid);
            }
        } else if matches!(op.kind, FKind::Await) {
            return Err(Invalid);
        }
        match &op.kind {
            FKind::Open { .. } => {
                if self.fds[a].len() >= MAX_FDS {
                    return Err(Invalid);
                }
            }
            FKind::Close { name } | FKind::Dup { from: name, .. } => {
                if !self.has_fd(a, name) {
                    return Err(Invalid);
                }
            }
            FKind::Lock {
                name, start, len, ..
            }
            | FKind::Test {
                name, start, len, ..
            } => {
                if !self.has_fd(a, name) {
                    return Err(Invalid);
                }
                if !mech.has_ranges() && (*start != 0 || *len != 0) {
                    return Err(Invalid);
                }
                if matches!(op.kind, FKind::Test { .. }) && !mech.has_test() {
                    return Err(Invalid);
                }
            }
            FKind::Fork { child } => {
                if self.born.get(*child).copied().unwrap_or(true) {
                    return Err(Invalid);
                }
            }
            FKind::Await | FKind::Kill => {}
        }
        Ok(())
    }

    /// Update the state with what the reference observed.
    fn apply(&mut self, op: &FOp, obs: &Observed) {
        let a = op.actor;
        let returned_ok = matches!(
            obs,
            Observed::Returned(
                Outcome::Opened { .. } | Outcome::Done { .. } | Outcome::Forked { .. }
            )
        );
        if let Some(p) = self.pending {
            if a != p {
                self.must_await = true;
            }
        }
        match &op.kind {
            FKind::Open { name, .. } if returned_ok => self.fds[a].push(name.clone()),
            FKind::Dup { to, .. } if returned_ok => self.fds[a].push(to.clone()),
            FKind::Close { name } => self.fds[a].retain(|n| n != name),
            FKind::Lock { wait: true, .. } if matches!(obs, Observed::Blocked(_)) => {
                self.pending = Some(a);
                self.must_await = false;
            }
            FKind::Await => {
                self.must_await = false;
                if !matches!(obs, Observed::Blocked(_)) {
                    self.pending = None;
                }
            }
            FKind::Kill => {
                self.alive[a] = false;
                self.fds[a].clear();
                if self.pending == Some(a) {
                    self.pending = None;
                    self.must_await = false;
                }
            }
            FKind::Fork { child } if returned_ok => {
                self.alive[*child] = true;
                self.born[*child] = true;
                self.fds[*child] = self.fds[a].clone();
            }
            _ => {}
        }
    }
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

fn random_range_of(rng: &mut ChaCha8Rng) -> (i64, i64) {
    let start = pick(
        rng,
        &[0, 0, 1, 2, 5, 10, 10, 15, 20, 2_147_483_648, 4_294_967_299],
    );
    let len = pick(rng, &[0, 0, 1, 1, 2, 5, 10, 10, 100, -3]);
    (start, len)
}

/// A valid next operation for the model (None if no actor can act).
fn generate(rng: &mut ChaCha8Rng, m: &mut Model, mech: Mechanism) -> Option<FOp> {
    if let Some(p) = m.pending {
        if m.must_await {
            return Some(FOp {
                actor: p,
                kind: if rng.random_bool(0.05) {
                    FKind::Kill
                } else {
                    FKind::Await
                },
            });
        }
    }
    let alive: Vec<usize> = (0..m.alive.len()).filter(|&i| m.alive[i]).collect();
    if alive.is_empty() {
        return None;
    }
    for _ in 0..200 {
        let actor = pick(rng, &alive);
        let fd = if m.fds[actor].is_empty() {
            None
        } else {
            Some(m.fds[actor][rng.random_range(0..m.fds[actor].len())].clone())
        };
        let roll = rng.random_range(0..100);
        let kind = match (roll, fd) {
            (0..=14, _) => {
                m.next_name += 1;
                let file = rng.random_range(0..FILES.len());
                let access = pick(
                    rng,
                    &[
                        Access::ReadWrite,
                        Access::ReadWrite,
                        Access::ReadWrite,
                        Access::Read,
                        Access::Write,
                    ],
                );
                FKind::Open {
                    file,
                    access,
                    name: format!("{}{}", FILES[file], m.next_name),
                }
            }
            (15..=54, Some(name)) => {
                let (start, len) = if mech.has_ranges() {
                    random_range_of(rng)
                } else {
                    (0, 0)
                };
                let kind = pick(
                    rng,
                    &[
                        LockKind::Exclusive,
                        LockKind::Exclusive,
                        LockKind::Shared,
                        LockKind::Unlock,
                    ],
                );
                let wait = kind != LockKind::Unlock && rng.random_bool(0.2);
                FKind::Lock {
                    name,
                    kind,
                    wait,
                    start,
                    len,
                }
            }
            (55..=69, Some(name)) if mech.has_test() => {
                let (start, len) = random_range_of(rng);
                FKind::Test {
                    name,
                    mode: pick(rng, &[LockMode::Exclusive, LockMode::Shared]),
                    start,
                    len,
                }
            }
            (70..=77, Some(name)) => FKind::Close { name },
            (78..=85, Some(from)) => {
                m.next_name += 1;
                FKind::Dup {
                    from,
                    to: format!("d{}", m.next_name),
                }
            }
            (86..=89, _) => {
                let free = (m.alive.len() - FORK_SLOTS..m.alive.len()).find(|&c| !m.born[c]);
                match free {
                    Some(child) => FKind::Fork { child },
                    None => continue,
                }
            }
            (90..=92, _) if alive.len() > 1 => FKind::Kill,
            (93..=99, _) if m.pending.is_some() => {
                return m.pending.map(|p| FOp {
                    actor: p,
                    kind: FKind::Await,
                });
            }
            _ => continue,
        };
        let op = FOp { actor, kind };
        if m.check(&op, mech).is_ok() {
            return Some(op);
        }
    }
    None
}

/// Compare-ready form of an observation: pids become actor names, and
/// EAGAIN/EACCES one conflict class.
fn normalize(obs: &Observed, pids: &[Option<i32>], names: &[String]) -> String {
    match obs {
        Observed::Returned(o) => match o {
            Outcome::Failed { errno } if *errno == libc::EAGAIN || *errno == libc::EACCES => {
                "conflict".into()
            }
            Outcome::Failed { errno } => crate::spec::errno::name(*errno),
            Outcome::Lock { lock, .. } => {
                if i32::from(lock.l_type) == libc::F_UNLCK {
                    return "unlocked".into();
                }
                let who = pids
                    .iter()
                    .position(|p| *p == Some(lock.pid))
                    .map(|i| names[i].clone())
                    .unwrap_or_else(|| lock.pid.to_string());
                format!(
                    "holder {} {} {} {}",
                    crate::plan::mech::l_type_name(lock.l_type),
                    lock.start,
                    lock.len,
                    who
                )
            }
            Outcome::Data { data } => format!("data {data:?}"),
            Outcome::BadRequest { message } => format!("bad request {message}"),
            _ => "ok".into(),
        },
        Observed::Blocked(_) => "blocks".into(),
        Observed::Hung { .. } => "hung".into(),
        Observed::Ended { .. } => "ok".into(),
        Observed::Died { .. } => "died".into(),
        Observed::Listed(_) => "listed".into(),
        Observed::NotListed(_) => "unlisted".into(),
        Observed::Early { .. } => "early".into(),
    }
}

fn planned(prog: &Program, number: usize, op: &FOp) -> PlannedStep {
    let fd = |n: &String| n.clone();
    let (o, expect) = match &op.kind {
        FKind::Open { file, access, name } => (
            Op::Open {
                path: FILES[*file].to_string(),
                access: *access,
                create: true,
                excl: false,
                trunc: false,
                directory: false,
                cloexec: true,
                via: None,
                fd: fd(name),
            },
            Expectation::Any,
        ),
        FKind::Close { name } => (Op::Close { fd: fd(name) }, Expectation::Any),
        FKind::Dup { from, to } => (
            Op::Dup {
                fd: fd(from),
                new: fd(to),
            },
            Expectation::Any,
        ),
        FKind::Lock {
            name,
            kind,
            wait,
            start,
            len,
        } => (
            Op::Lock {
                fd: fd(name),
                mech: prog.mech,
                kind: *kind,
                wait: *wait,
                start: *start,
                len: *len,
                whence: crate::spec::scenario::Whence::Set,
            },
            Expectation::Any,
        ),
        FKind::Test {
            name,
            mode,
            start,
            len,
        } => (
            Op::Test {
                fd: fd(name),
                mech: prog.mech,
                mode: *mode,
                start: *start,
                len: *len,
                whence: crate::spec::scenario::Whence::Set,
                pidns: false,
            },
            Expectation::Any,
        ),
        FKind::Await => (
            Op::Await { hold: None },
            Expectation::OneOf(vec![Expectation::Blocks, Expectation::Any]),
        ),
        FKind::Kill => (
            Op::Signal {
                signal: nix::sys::signal::Signal::SIGKILL,
                fatal: true,
            },
            Expectation::Ok,
        ),
        FKind::Fork { child } => (Op::Fork { child: *child }, Expectation::Ok),
    };
    PlannedStep {
        number,
        pos: Pos::UNKNOWN,
        actors: vec![op.actor],
        op: o,
        expect,
        timeout: STEP_TIMEOUT,
        note: None,
        unsupported: Vec::new(),
        patient: false,
        leases: None,
    }
}

fn trial_plan(prog: &Program) -> TrialPlan {
    let actors = (0..prog.actor_count())
        .map(|i| ActorPlan {
            name: prog.actor_name(i),
            host: DEFAULT_HOST.to_string(),
            // Fork slots are not started with the others.
            forked_from: (i >= prog.initial).then_some(0),
            thread_of: None,
            spawned_by: None,
        })
        .collect();
    TrialPlan {
        actors,
        steps: Vec::new(),
        hosts: vec![DEFAULT_HOST.to_string()],
        needs_second_mount: false,
        needs: BTreeSet::new(),
    }
}

/// Where a program's two runs disagreed.
#[derive(Debug, Clone)]
pub struct Mismatch {
    /// Index of the operation.
    pub index: usize,
    /// What the reference observed, in compare-ready form (pids as actor
    /// names, `EAGAIN` and `EACCES` as `conflict`).
    pub reference: String,
    /// What the target observed, in the same form.
    pub target: String,
}

/// The outcome of a lockstep run.
struct Lockstep {
    /// The reference's observations, one per operation run.
    ref_obs: Vec<Observed>,
    ref_pids: Vec<Option<i32>>,
    mismatch: Option<Mismatch>,
}

/// One side of a lockstep run.
struct Side<'a> {
    target: &'a Target,
    exe: &'a Path,
    zygote: Option<&'a crate::actor::zygote::Zygote>,
}

/// Where operations come from: a fixed list (replay), or the generator.
enum Source<'r> {
    Replay(&'r [FOp]),
    Generate {
        rng: &'r mut ChaCha8Rng,
        count: usize,
    },
}

fn lockstep(
    prog: &mut Program,
    source: Source<'_>,
    reference: &Side<'_>,
    target: &Side<'_>,
) -> Result<Lockstep, String> {
    let plan = trial_plan(prog);
    let names: Vec<String> = plan.actors.iter().map(|a| a.name.clone()).collect();
    let ref_dir = reference
        .target
        .trial_dir("fuzz")
        .map_err(|e| format!("reference: {e}"))?;
    let tgt_dir = target
        .target
        .trial_dir("fuzz")
        .map_err(|e| format!("target: {e}"))?;
    let no_faults = Default::default();
    let none_confined = Default::default();
    let ref_hosts = [HostEnv::local(reference.exe, &ref_dir)];
    let tgt_hosts = [HostEnv::local(target.exe, &tgt_dir)];
    let ref_env = TrialEnv {
        exe: reference.exe,
        scratch: &ref_dir,
        second_mount: None,
        backing: None,
        lock_lists: reference.target.lock_lists(),
        locks_dev: reference.target.identity.locks_dev.clone(),
        hosts: &ref_hosts,
        faults: &no_faults,
        zygote: reference.zygote,
        confined_faults: &none_confined,
        barrier: None,
        lease: crate::plan::resolve::DEFAULT_LEASE,
        slots: None,
        rounds: None,
    };
    let tgt_env = TrialEnv {
        exe: target.exe,
        scratch: &tgt_dir,
        second_mount: None,
        backing: None,
        lock_lists: target.target.lock_lists(),
        locks_dev: target.target.identity.locks_dev.clone(),
        hosts: &tgt_hosts,
        faults: &no_faults,
        zygote: target.zygote,
        confined_faults: &none_confined,
        barrier: None,
        lease: crate::plan::resolve::DEFAULT_LEASE,
        slots: None,
        rounds: None,
    };
    let mut r = Driver::new(&plan, &ref_env);
    let mut t = Driver::new(&plan, &tgt_env);
    let result = (|| {
        r.start().map_err(|e| format!("reference: {e}"))?;
        t.start().map_err(|e| format!("target: {e}"))?;
        let mut model = Model::new(prog.initial);
        let mut out = Lockstep {
            ref_obs: Vec::new(),
            ref_pids: Vec::new(),
            mismatch: None,
        };
        let mut generated = Vec::new();
        let (fixed, mut gen) = match source {
            Source::Replay(ops) => (Some(ops), None),
            Source::Generate { rng, count } => (None, Some((rng, count))),
        };
        let mut i = 0;
        loop {
            let op = match (&fixed, &mut gen) {
                (Some(ops), _) => match ops.get(i) {
                    Some(op) => {
                        if model.check(op, prog.mech).is_err() {
                            return Err("invalid".to_string());
                        }
                        op.clone()
                    }
                    None => break,
                },
                (None, Some((rng, count))) => {
                    if i >= *count {
                        break;
                    }
                    match generate(rng, &mut model, prog.mech) {
                        Some(op) => op,
                        None => break,
                    }
                }
                _ => break,
            };
            let step = planned(prog, i + 1, &op);
            let (ro, _, _) = r.step(&step).map_err(|e| format!("reference: {e}"))?;
            let (to, _, _) = t.step(&step).map_err(|e| format!("target: {e}"))?;
            let (Some(ro), Some(to)) = (ro.into_iter().next(), to.into_iter().next()) else {
                return Err("a step observed nothing".into());
            };
            let rn = normalize(&ro, &r.pids(), &names);
            let tn = normalize(&to, &t.pids(), &names);
            model.apply(&op, &ro);
            out.ref_obs.push(ro);
            generated.push(op);
            if rn != tn {
                out.mismatch = Some(Mismatch {
                    index: i,
                    reference: rn,
                    target: tn,
                });
                break;
            }
            i += 1;
        }
        out.ref_pids = r.pids();
        if fixed.is_none() {
            prog.ops = generated;
        }
        Ok(out)
    })();
    r.finish();
    t.finish();
    let _ = std::fs::remove_dir_all(&ref_dir);
    let _ = std::fs::remove_dir_all(&tgt_dir);
    result
}

/// Shrink a mismatching program with delta debugging: remove chunks, then
/// single operations, keeping any removal after which the two sides still
/// disagree.
fn shrink(prog: &Program, reference: &Side<'_>, target: &Side<'_>, budget: Instant) -> Program {
    let still_fails = |ops: &[FOp]| -> Option<usize> {
        let mut p = Program {
            ops: ops.to_vec(),
            ..prog.clone()
        };
        match lockstep(&mut p, Source::Replay(ops), reference, target) {
            Ok(Lockstep {
                mismatch: Some(m), ..
            }) => Some(m.index),
            _ => None,
        }
    };
    let mut ops = prog.ops.clone();
    let mut n = 2usize;
    while ops.len() >= 2 && Instant::now() < budget {
        let chunk = ops.len().div_ceil(n);
        let mut reduced = None;
        for k in 0..n {
            let lo = k * chunk;
            if lo >= ops.len() {
                break;
            }
            let hi = (lo + chunk).min(ops.len());
            let candidate: Vec<FOp> = ops[..lo].iter().chain(&ops[hi..]).cloned().collect();
            if let Some(at) = still_fails(&candidate) {
                reduced = Some(candidate[..=at].to_vec());
                break;
            }
        }
        if let Some(smaller) = reduced {
            ops = smaller;
            n = (n - 1).max(2);
        } else {
            if n >= ops.len() {
                break;
            }
            n = (2 * n).min(ops.len());
        }
    }
    // Then single removals and simplifying rewrites, until none helps.
    loop {
        let mut changed = false;
        let mut i = 0;
        while i < ops.len() && Instant::now() < budget {
            let candidate: Vec<FOp> = ops
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, o)| o.clone())
                .collect();
            match still_fails(&candidate) {
                Some(at) => {
                    ops = candidate[..=at].to_vec();
                    changed = true;
                }
                None => i += 1,
            }
        }
        for candidate in simplifications(&ops) {
            if Instant::now() >= budget {
                break;
            }
            if let Some(at) = still_fails(&candidate) {
                ops = candidate[..=at].to_vec();
                changed = true;
                break;
            }
        }
        if !changed || Instant::now() >= budget {
            break;
        }
    }
    Program {
        ops,
        ..prog.clone()
    }
}

/// Simpler variants of a program: a dup's uses moved to the original
/// descriptor (the dup dropped), a forked child's steps done by its parent
/// (the fork dropped), waits made tries, ranges moved to smaller offsets.
fn simplifications(ops: &[FOp]) -> Vec<Vec<FOp>> {
    let rename = |ops: &[FOp],
                  skip: usize,
                  actor_from: Option<(usize, usize)>,
                  fd_from: Option<(&str, &str)>| {
        ops.iter()
            .enumerate()
            .filter(|(j, _)| *j != skip)
            .map(|(_, o)| {
                let mut o = o.clone();
                if let Some((from, to)) = actor_from {
                    if o.actor == from {
                        o.actor = to;
                    }
                }
                if let Some((from, to)) = fd_from {
                    let swap = |n: &mut String| {
                        if n == from {
                            *n = to.to_string();
                        }
                    };
                    match &mut o.kind {
                        FKind::Close { name }
                        | FKind::Lock { name, .. }
                        | FKind::Test { name, .. } => swap(name),
                        FKind::Dup { from: f, .. } => swap(f),
                        _ => {}
                    }
                }
                o
            })
            .collect::<Vec<FOp>>()
    };
    let mut out = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match &op.kind {
            FKind::Dup { from, to } => out.push(rename(ops, i, None, Some((to, from)))),
            FKind::Fork { child } => out.push(rename(ops, i, Some((*child, op.actor)), None)),
            FKind::Lock { wait: true, .. } => {
                let mut v = ops.to_vec();
                if let FKind::Lock { wait, .. } = &mut v[i].kind {
                    *wait = false;
                }
                out.push(v);
            }
            _ => {}
        }
        if let FKind::Lock { start, len, .. } | FKind::Test { start, len, .. } = &op.kind {
            for (s, l) in [(0, *len), (*start, 0), (0, 0)] {
                if (s, l) != (*start, *len) {
                    let mut v = ops.to_vec();
                    if let FKind::Lock { start, len, .. } | FKind::Test { start, len, .. } =
                        &mut v[i].kind
                    {
                        *start = s;
                        *len = l;
                    }
                    out.push(v);
                }
            }
        }
    }
    out
}

fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"?\"".into())
}

/// The expectation line for a step, from the reference's observation.
fn expect_yaml(
    op: &FOp,
    obs: &Observed,
    pids: &[Option<i32>],
    names: &[String],
    mech: Mechanism,
) -> Option<String> {
    let errno = |e: i32| {
        if e == libc::EAGAIN || e == libc::EACCES {
            if matches!(op.kind, FKind::Lock { .. } | FKind::Await) {
                "conflict".to_string()
            } else {
                crate::spec::errno::name(e)
            }
        } else {
            crate::spec::errno::name(e)
        }
    };
    match obs {
        Observed::Blocked(_) => Some("blocks".into()),
        Observed::Returned(Outcome::Failed { errno: e }) => Some(errno(*e)),
        Observed::Returned(Outcome::Lock { lock, .. }) => {
            if i32::from(lock.l_type) == libc::F_UNLCK {
                return Some("unlocked".into());
            }
            let mode = if i32::from(lock.l_type) == libc::F_WRLCK {
                "exclusive"
            } else {
                "shared"
            };
            let pid = match pids.iter().position(|p| *p == Some(lock.pid)) {
                Some(i) => names[i].clone(),
                None => lock.pid.to_string(),
            };
            let pid = if mech == Mechanism::Ofd {
                lock.pid.to_string()
            } else {
                pid
            };
            Some(format!(
                "{{holder: {{mode: {mode}, start: {}, len: {}, pid: {pid}}}}}",
                lock.start, lock.len
            ))
        }
        _ => None,
    }
}

/// The program as a scenario file; expectations are the reference's observations.
fn scenario_yaml(
    name: &str,
    prog: &Program,
    lockstep: &Lockstep,
    mismatch: &Mismatch,
    about: &str,
) -> String {
    let names: Vec<String> = (0..prog.actor_count())
        .map(|i| prog.actor_name(i))
        .collect();
    let mut used: Vec<usize> = prog
        .ops
        .iter()
        .map(|o| o.actor)
        .filter(|a| *a < prog.initial)
        .collect();
    used.sort();
    used.dedup();
    let mut y = String::new();
    let _ = writeln!(y, "name: {name}");
    let _ = writeln!(y, "summary: >");
    for line in textwrap(about, 74) {
        let _ = writeln!(y, "  {line}");
    }
    let _ = writeln!(y, "reference: >\n  lockcheck fuzz (differential): the reference directory's behaviour on the\n  same operations; fcntl(2), flock(2).");
    let _ = writeln!(y, "family: fuzz\nseverity: unsafe");
    let _ = writeln!(y, "mechanisms: [{}]", prog.mech);
    let others: Vec<Mechanism> = Mechanism::DEFAULT
        .into_iter()
        .filter(|m| *m != prog.mech)
        .collect();
    if !others.is_empty() {
        let _ = writeln!(y, "not-applicable:");
        for m in others {
            let _ = writeln!(y, "  {m}: \"found by fuzzing with {}\"", prog.mech);
        }
    }
    let actors: Vec<String> = used.iter().map(|&i| names[i].clone()).collect();
    let _ = writeln!(y, "actors: [{}]", actors.join(", "));
    let _ = writeln!(y, "steps:");
    for (k, op) in prog.ops.iter().enumerate() {
        let actor = &names[op.actor];
        let obs = &lockstep.ref_obs[k];
        let exp = expect_yaml(op, obs, &lockstep.ref_pids, &names, prog.mech);
        let exp = exp.map(|e| format!(", expect: {e}")).unwrap_or_default();
        let note = if k == mismatch.index {
            format!(
                ", note: {}",
                yaml_str(&format!(
                    "the target differs here: it observed {}",
                    mismatch.target
                ))
            )
        } else {
            String::new()
        };
        let range = |start: i64, len: i64| {
            if prog.mech.has_ranges() && (start != 0 || len != 0) {
                format!(", start: {start}, len: {len}")
            } else {
                String::new()
            }
        };
        let line = match &op.kind {
            FKind::Open { file, access, name } => format!(
                "open: {{actor: {actor}, path: {}, mode: {}, create: true, as: {name}{exp}{note}}}",
                FILES[*file],
                access.as_str()
            ),
            FKind::Close { name } => format!("close: {{actor: {actor}, fd: {name}{exp}{note}}}"),
            FKind::Dup { from, to } => {
                format!("dup: {{actor: {actor}, fd: {from}, as: {to}{exp}{note}}}")
            }
            FKind::Lock {
                name,
                kind: LockKind::Unlock,
                start,
                len,
                ..
            } => {
                format!(
                    "unlock: {{actor: {actor}, fd: {name}{}{exp}{note}}}",
                    range(*start, *len)
                )
            }
            FKind::Lock {
                name,
                kind,
                wait,
                start,
                len,
            } => format!(
                "lock: {{actor: {actor}, fd: {name}, mode: {}{}{}{exp}{note}}}",
                if *kind == LockKind::Exclusive {
                    "exclusive"
                } else {
                    "shared"
                },
                if *wait { ", wait: true" } else { "" },
                range(*start, *len)
            ),
            FKind::Test {
                name,
                mode,
                start,
                len,
            } => format!(
                "test: {{actor: {actor}, fd: {name}, mode: {}{}{exp}{note}}}",
                mode.as_str(),
                range(*start, *len)
            ),
            FKind::Await => format!("await: {{actor: {actor}{exp}{note}}}"),
            FKind::Kill => format!("kill: {{actor: {actor}{note}}}"),
            FKind::Fork { child } => {
                format!("fork: {{actor: {actor}, as: {}{note}}}", names[*child])
            }
        };
        let _ = writeln!(y, "  - {line}");
    }
    y
}

fn textwrap(s: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for w in s.split_whitespace() {
        if !cur.is_empty() && cur.len() + 1 + w.len() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(w);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

/// How a fuzz run is set up.
pub struct FuzzConfig {
    /// The seed of the random programs: the same seed gives the same programs.
    pub seed: u64,
    /// Operations to run in all (over many programs).
    pub ops: usize,
    /// Initial actors per program.
    pub actors: usize,
    /// The mechanisms to draw from, one per program.
    pub mechanisms: Vec<Mechanism>,
    /// Operations per program.
    pub program_len: usize,
    /// Where a found scenario is written.
    pub out: PathBuf,
    /// How long shrinking may take.
    pub shrink_budget: Duration,
}

/// What a fuzz run found.
pub struct FuzzResult {
    /// Operations run, over all programs.
    pub ops_run: usize,
    /// Programs run.
    pub programs: usize,
    /// The first mismatch, if the two sides disagreed.
    pub found: Option<Found>,
}

/// A program on which the reference and the target disagreed, shrunk and
/// written out as a scenario.
pub struct Found {
    /// The program's mechanism.
    pub mechanism: Mechanism,
    /// Operations in the program as generated.
    pub original_len: usize,
    /// Operations in the program after shrinking.
    pub shrunk_len: usize,
    /// Where the shrunk program's runs disagreed (the original's, if the
    /// shrunk one no longer disagrees when run again).
    pub mismatch: Mismatch,
    /// The scenario file written.
    pub file: PathBuf,
    /// Time from the start of the run to the mismatch, shrinking not included.
    pub elapsed_to_find: Duration,
}

/// Run programs until `config.ops` operations have run or the two sides disagree.
pub fn run(
    config: &FuzzConfig,
    reference: &Target,
    target: &Target,
    exe: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<FuzzResult, String> {
    let started = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    // Actors are forked by a zygote when one can be started (faster), or
    // started by exec.
    let zygote = crate::actor::zygote::Zygote::start(exe).ok();
    let rs = Side {
        target: reference,
        exe,
        zygote: zygote.as_ref(),
    };
    let ts = Side {
        target,
        exe,
        zygote: zygote.as_ref(),
    };
    let mut ops_run = 0;
    let mut programs = 0;
    while ops_run < config.ops {
        let mech = pick(&mut rng, &config.mechanisms);
        let mut prog = Program {
            mech,
            initial: config.actors,
            ops: Vec::new(),
        };
        let count = config.program_len.min(config.ops - ops_run);
        let ls = lockstep(
            &mut prog,
            Source::Generate {
                rng: &mut rng,
                count,
            },
            &rs,
            &ts,
        )?;
        programs += 1;
        ops_run += prog.ops.len().max(1);
        progress(ops_run, programs);
        let Some(first) = ls.mismatch.clone() else {
            continue;
        };
        let elapsed_to_find = started.elapsed();
        let original_len = prog.ops.len();
        let shrunk = shrink(&prog, &rs, &ts, Instant::now() + config.shrink_budget);
        // Run the shrunk program once more for the reference's expectations.
        let mut final_prog = shrunk.clone();
        let final_ls = lockstep(&mut final_prog, Source::Replay(&shrunk.ops), &rs, &ts)?;
        let (prog_out, ls_out, mismatch) = match final_ls.mismatch.clone() {
            Some(m) => (shrunk, final_ls, m),
            None => (prog, ls, first),
        };
        let name = format!("fuzz-{}", config.seed);
        let about = format!(
            "Found by differential fuzzing: `lockcheck fuzz --seed {} --mechanism {}` ran the same random lock operations on the reference {} ({}) and on the target {} ({}); at step {} the reference observed {} and the target observed {}. Shrunk from {} to {} steps. The expectations are the reference's behaviour.",
            config.seed,
            mech,
            reference.label,
            reference.identity.fs_type,
            target.label,
            target.identity.fs_type,
            mismatch.index + 1,
            mismatch.reference,
            mismatch.target,
            original_len,
            prog_out.ops.len()
        );
        let text = scenario_yaml(&name, &prog_out, &ls_out, &mismatch, &about);
        std::fs::create_dir_all(&config.out)
            .map_err(|e| format!("creating {}: {e}", config.out.display()))?;
        let file = config.out.join(format!("{name}.yaml"));
        std::fs::write(&file, text).map_err(|e| format!("writing {}: {e}", file.display()))?;
        return Ok(FuzzResult {
            ops_run,
            programs,
            found: Some(Found {
                mechanism: mech,
                original_len,
                shrunk_len: prog_out.ops.len(),
                mismatch,
                file,
                elapsed_to_find,
            }),
        });
    }
    Ok(FuzzResult {
        ops_run,
        programs,
        found: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_programs_are_valid_for_the_model() {
        for seed in 0..20 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            for mech in Mechanism::DEFAULT {
                let mut m = Model::new(3);
                for _ in 0..200 {
                    let Some(op) = generate(&mut rng, &mut m, mech) else {
                        break;
                    };
                    assert!(m.check(&op, mech).is_ok(), "{op:?}");
                    // Pretend every call returned ok (waits block half of the time).
                    let obs = match op.kind {
                        FKind::Lock { wait: true, .. } if rng.random_bool(0.5) => {
                            Observed::Blocked(crate::actor::observe::Evidence {
                                text: String::new(),
                            })
                        }
                        FKind::Open { .. } => Observed::Returned(Outcome::Opened {
                            fd: 3,
                            dev: 0,
                            ino: 0,
                        }),
                        _ => Observed::Returned(Outcome::Done { ret: 0 }),
                    };
                    m.apply(&op, &obs);
                    assert!(m.pending.is_none() || m.alive[m.pending.unwrap_or(0)]);
                }
            }
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_program() {
        let gen = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut m = Model::new(3);
            let mut ops = Vec::new();
            for _ in 0..50 {
                if let Some(op) = generate(&mut rng, &mut m, Mechanism::Posix) {
                    m.apply(
                        &op,
                        &Observed::Returned(Outcome::Opened {
                            fd: 3,
                            dev: 0,
                            ino: 0,
                        }),
                    );
                    ops.push(op);
                }
            }
            ops
        };
        assert_eq!(gen(7), gen(7));
        assert_ne!(gen(7), gen(8));
    }
}
