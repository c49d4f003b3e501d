//! Planning: a scenario, resolved for one mechanism, becomes a `TrialPlan` —
//! concrete steps with actors as indices, descriptors by name, every default
//! filled in and every per-mechanism expectation chosen.
//!
//! Resolving is also validation: it walks the steps keeping track of which
//! actors exist, are alive, are waiting in a blocked call, and which
//! descriptors each has open, so that a step that cannot be performed is an
//! error at its `file:line:column` before anything runs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::error::ScenarioError;
use crate::loc::{Located, Pos};
use crate::scenario::{
    Access, ActorSet, Common, Expect, LockMode, Mechanism, PidSpec, Scenario, Step,
};

/// The step timeout when neither the step nor the scenario sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest timeout a step may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// The most actors one scenario may declare (including forked ones).
pub const MAX_ACTORS: usize = 256;

/// A scenario made concrete for one mechanism.
#[derive(Debug, Clone)]
pub struct TrialPlan {
    pub mechanism: Mechanism,
    pub actors: Vec<ActorPlan>,
    pub steps: Vec<PlannedStep>,
    /// The distinct hosts the actors are placed on (at least one).
    pub hosts: Vec<String>,
}

/// The host of actors that do not name one.
pub const DEFAULT_HOST: &str = "local";

#[derive(Debug, Clone)]
pub struct ActorPlan {
    pub name: String,
    pub host: String,
    /// Set for actors created by a `fork` step: the parent's index.
    pub forked_from: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct PlannedStep {
    /// 1-based position in the scenario's step list.
    pub number: usize,
    pub pos: Pos,
    /// The actors the step addresses (several: they act at the same moment).
    pub actors: Vec<usize>,
    pub op: Op,
    pub expect: Expectation,
    pub timeout: Duration,
    pub note: Option<String>,
}

/// What a lock step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
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
pub enum Op {
    Open {
        path: String,
        access: Access,
        create: bool,
        excl: bool,
        trunc: bool,
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
    },
    Read {
        fd: String,
        len: u64,
        offset: Option<u64>,
    },
    Fork {
        child: usize,
    },
    Exit {
        code: i32,
    },
    Await,
    Signal {
        signal: Signal,
    },
}

impl Op {
    /// Whether this call may legitimately wait in the kernel.
    pub fn may_block(&self) -> bool {
        matches!(self, Op::Lock { wait: true, .. } | Op::Await)
    }

    /// A short description for reports: `lock exclusive, wait, bytes [0, EOF)`.
    pub fn describe(&self, actors: &[ActorPlan]) -> String {
        fn range(start: i64, len: i64) -> String {
            match len {
                0 => format!("bytes {start}..EOF"),
                l if l > 0 => format!("bytes {start}..{}", start.saturating_add(l)),
                l => format!("start {start} len {l}"),
            }
        }
        match self {
            Op::Open {
                path,
                access,
                create,
                excl,
                trunc,
                fd,
            } => {
                let mut flags = vec![access.as_str()];
                if *create {
                    flags.push("create");
                }
                if *excl {
                    flags.push("excl");
                }
                if *trunc {
                    flags.push("trunc");
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
                    details.push(range(*start, *len));
                }
                format!("{what} on {fd} ({})", details.join(", "))
            }
            Op::Test {
                fd,
                mech,
                mode,
                start,
                len,
            } => format!(
                "test {} on {fd} ({mech}, {})",
                mode.as_str(),
                range(*start, *len)
            ),
            Op::Write { fd, data, offset } => match offset {
                Some(o) => format!("write {:?} to {fd} at {o}", clip(data)),
                None => format!("write {:?} to {fd}", clip(data)),
            },
            Op::Read { fd, len, offset } => match offset {
                Some(o) => format!("read {len} bytes of {fd} at {o}"),
                None => format!("read {len} bytes of {fd}"),
            },
            Op::Fork { child } => format!(
                "fork as {}",
                actors.get(*child).map(|a| a.name.as_str()).unwrap_or("?")
            ),
            Op::Exit { code } => format!("exit {code}"),
            Op::Await => "await the blocked call".to_string(),
            Op::Signal { signal } => format!("kill with {}", signal.as_str()),
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
pub enum Expectation {
    Ok,
    Conflict,
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
    Any,
    OneOf(Vec<Expectation>),
    Winners {
        count: u32,
        others: Box<Expectation>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum PidExpect {
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
    Applies(Box<TrialPlan>),
    NotApplicable(String),
}

/// Resolve a scenario for every mechanism. An error in any applicable
/// mechanism's plan is an error of the file.
pub fn resolve_all(
    file: &str,
    scn: &Scenario,
) -> Result<BTreeMap<Mechanism, Applicability>, ScenarioError> {
    let mechs = scenario_mechanisms(file, scn)?;
    for m in scn.not_applicable.keys() {
        if mechs.contains(m) {
            return Err(ScenarioError::new(
                file,
                scn.mechanisms
                    .as_ref()
                    .map(|l| l.pos)
                    .unwrap_or(scn.name.pos),
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
        } else {
            let reason = match scn.not_applicable.get(&m) {
                Some(r) => r.clone(),
                None => inherent_reason(scn, m).ok_or_else(|| {
                    ScenarioError::new(
                        file,
                        scn.mechanisms.as_ref().map(|l| l.pos).unwrap_or(scn.name.pos),
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
        None => Ok(Mechanism::ALL.to_vec()),
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
                return Err(ScenarioError::new(
                    file,
                    list.pos,
                    "`mechanisms` is empty",
                )
                .with_hint("list at least one of flock, posix, ofd, or leave the key out for all three"));
            }
            Ok(seen)
        }
    }
}

/// A reason a mechanism cannot run a scenario that follows from its steps.
fn inherent_reason(scn: &Scenario, m: Mechanism) -> Option<String> {
    if m != Mechanism::Flock {
        return None;
    }
    let mut ranges = false;
    let mut test = false;
    for s in scn.steps.iter() {
        match &s.value {
            Step::Lock(l) if l.mechanism.is_none() => {
                ranges |= nonzero(&l.start) || nonzero(&l.len);
            }
            Step::Unlock(l) if l.mechanism.is_none() => {
                ranges |= nonzero(&l.start) || nonzero(&l.len);
            }
            Step::Test(t) if t.mechanism.is_none() => test = true,
            _ => {}
        }
    }
    if ranges {
        Some("flock locks whole files only; this scenario uses byte ranges".into())
    } else if test {
        Some("flock has no way to test for a lock (no F_GETLK)".into())
    } else {
        None
    }
}

fn nonzero(v: &Option<Located<i64>>) -> bool {
    v.as_ref().is_some_and(|l| l.value != 0)
}

/// Expand `w[1..4]` into w1, w2, w3, w4; check plain names.
pub fn expand_actor_name(s: &str) -> Result<Vec<String>, String> {
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
pub fn parse_signal(s: &str) -> Result<Signal, String> {
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

/// Whether a signal's default action ends the process.
pub fn is_fatal_by_default(sig: Signal) -> bool {
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
    )
}

#[derive(Debug, Clone)]
enum Life {
    /// Not created yet: made by the fork step at this position.
    Unborn,
    Alive,
    Dead {
        how: String,
        pos: Pos,
    },
}

#[derive(Debug, Clone)]
struct ActorState {
    life: Life,
    /// The step (number, position) of a blocked call still waiting.
    pending: Option<(usize, Pos)>,
    fds: BTreeSet<String>,
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
                r.add_actor(
                    name,
                    decl.host().map(str::to_string),
                    None,
                    decl.pos,
                    Life::Alive,
                )?;
            }
        }
        // Actors created by fork steps exist from the start (unborn), so that
        // a reference before the fork gets a precise message.
        for step in scn.steps.iter() {
            if let Step::Fork(f) = &step.value {
                let name = f.as_name.value.clone();
                check_identifier(&name).map_err(|m| r.err(f.as_name.pos, m))?;
                r.add_actor(name, None, None, f.as_name.pos, Life::Unborn)?;
            }
        }
        Ok(r)
    }

    fn add_actor(
        &mut self,
        name: String,
        host: Option<String>,
        forked_from: Option<usize>,
        pos: Pos,
        life: Life,
    ) -> Result<(), ScenarioError> {
        if self.index.contains_key(&name) {
            return Err(self
                .err(pos, format!("actor `{name}` is declared twice"))
                .with_hint(
                    "actor names are unique; a fork's `as` must not repeat a declared actor",
                ));
        }
        if self.actors.len() >= MAX_ACTORS {
            return Err(self.err(pos, format!("more than {MAX_ACTORS} actors")));
        }
        self.index.insert(name.clone(), self.actors.len());
        self.actors.push(ActorPlan {
            name,
            host: host.unwrap_or_else(|| DEFAULT_HOST.to_string()),
            forked_from,
        });
        self.state.push(ActorState {
            life,
            pending: None,
            fds: BTreeSet::new(),
        });
        Ok(())
    }

    fn err(&self, pos: Pos, msg: impl Into<String>) -> ScenarioError {
        ScenarioError::new(self.file, pos, msg)
    }

    fn check_timeout(&self, t: &Located<crate::scenario::Dur>) -> Result<Duration, ScenarioError> {
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
        let mut steps = Vec::with_capacity(self.scn.steps.len());
        for (i, step) in self.scn.steps.iter().enumerate() {
            steps.push(self.step(i + 1, step)?);
        }
        let hosts: BTreeSet<String> = self.actors.iter().map(|a| a.host.clone()).collect();
        Ok(TrialPlan {
            mechanism: self.mech,
            actors: self.actors,
            steps,
            hosts: hosts.into_iter().collect(),
        })
    }

    /// Resolve `actor:` / `actors:` to indices and check each can take a new call.
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

    /// The actor must exist and be alive; `allow_pending` for await/kill.
    fn check_usable(
        &self,
        i: usize,
        pos: Pos,
        op: &str,
        allow_pending: bool,
    ) -> Result<(), ScenarioError> {
        let name = &self.actors[i].name;
        match &self.state[i].life {
            Life::Unborn => {
                return Err(self
                    .err(pos, format!("actor `{name}` does not exist yet"))
                    .with_hint("it is created by a later `fork` step; move this step after it"))
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
        if let (Some((n, at)), false) = (self.state[i].pending, allow_pending) {
            return Err(self
                .err(
                    pos,
                    format!(
                        "actor `{name}` is still waiting in the blocked call of step {n} (line {})",
                        at.line
                    ),
                )
                .with_hint("an actor in a blocked call can only be awaited (`await`) or killed; add an `await` step first"));
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
        let st = &self.state[i];
        let name = &self.actors[i].name;
        match fd {
            Some(f) => {
                if st.fds.contains(&f.value) {
                    Ok(f.value.clone())
                } else {
                    let open: Vec<&str> = st.fds.iter().map(String::as_str).collect();
                    Err(self
                        .err(
                            f.pos,
                            format!("actor `{name}` has no descriptor `{}` open here", f.value),
                        )
                        .with_hint(if open.is_empty() {
                            "it has no open descriptors; add an `open` step first".to_string()
                        } else {
                            format!("open descriptors of `{name}`: {}", open.join(", "))
                        }))
                }
            }
            None => {
                match st.fds.len() {
                    1 => Ok(st.fds.iter().next().cloned().unwrap_or_default()),
                    0 => Err(self
                        .err(pos, format!("actor `{name}` has no open descriptor"))
                        .with_hint("add an `open` step for it first")),
                    _ => {
                        let open: Vec<&str> = st.fds.iter().map(String::as_str).collect();
                        Err(self
                        .err(pos, format!("actor `{name}` has several descriptors open; say which with `fd:`"))
                        .with_hint(format!("open descriptors: {}", open.join(", "))))
                    }
                }
            }
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

    fn mech_of(&self, m: Option<&Located<Mechanism>>) -> Result<Mechanism, ScenarioError> {
        match m {
            None => Ok(self.mech),
            Some(l) => Ok(l.value),
        }
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
            let hint = if explicit.is_some() {
                "flock locks whole files; remove `start`/`len` or use mechanism posix or ofd for this step"
            } else {
                "list only posix and ofd in `mechanisms` (flock locks whole files)"
            };
            return Err(self
                .err(pos, "flock has no byte ranges, but this step gives one")
                .with_hint(hint));
        }
        Ok((s, l))
    }

    fn timeout(&self, c: &Common<'_>) -> Result<Duration, ScenarioError> {
        match c.timeout {
            Some(t) => self.check_timeout(t),
            None => Ok(self.default_timeout),
        }
    }

    fn expectation(&self, e: &Located<Expect>, nested: bool) -> Result<Expectation, ScenarioError> {
        Ok(match &e.value {
            Expect::Ok => Expectation::Ok,
            Expect::Conflict => Expectation::Conflict,
            Expect::Errno(v, n) => Expectation::Errno {
                value: *v,
                name: n.clone(),
            },
            Expect::Blocks => Expectation::Blocks,
            Expect::Unlocked => Expectation::Unlocked,
            Expect::Any => Expectation::Any,
            Expect::Data(d) => Expectation::Data(d.clone()),
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
                    .map(|x| self.expectation(x, true))
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
                    others: Box::new(self.expectation(others, true)?),
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
                self.expectation(chosen, false)?
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
        match exp {
            Expectation::Blocks if !op.may_block() => bad(
                "only a waiting lock (`wait: true`) or an `await` can be expected to block",
                "add `wait: true` to the lock, or expect `conflict` for a lock that only tries",
            ),
            Expectation::Unlocked | Expectation::Holder { .. }
                if !matches!(op, Op::Test { .. }) =>
            {
                bad(
                    "`unlocked` and `holder` describe the answer of a `test` step",
                    "use ok, conflict or an errno here",
                )
            }
            Expectation::Data(_) if !matches!(op, Op::Read { .. }) => bad(
                "`data` describes what a `read` step returns",
                "use ok or an errno here",
            ),
            Expectation::Conflict if !matches!(op, Op::Lock { .. } | Op::Await) => bad(
                "`conflict` (EAGAIN/EACCES from a lock) is for `lock` and `await` steps",
                "expect a specific errno instead",
            ),
            Expectation::Errno { .. } | Expectation::Conflict | Expectation::Blocks
                if matches!(op, Op::Signal { .. } | Op::Exit { .. }) =>
            {
                bad(
                    "a kill or exit step can only expect `ok`",
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
                if matches!(others.as_ref(), Expectation::Blocks) {
                    return bad(
                        "`others: blocks` would leave it open which actors are still waiting",
                        "give the waiters separate steps, so later steps know who holds the lock",
                    );
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
        let actors = self.actors_of(&c, pos)?;
        let allow_pending = matches!(step.value, Step::Await(_) | Step::Kill(_));
        for &i in &actors {
            self.check_usable(i, pos, op_name, allow_pending)?;
        }
        let op = match &step.value {
            Step::Open(o) => {
                let path = self.check_path(&o.path)?;
                let fd = o
                    .as_name
                    .as_ref()
                    .map(|n| n.value.clone())
                    .unwrap_or_else(|| path.clone());
                let name_pos = o.as_name.as_ref().map(|n| n.pos).unwrap_or(o.path.pos);
                check_fd_name(&fd).map_err(|m| self.err(name_pos, m))?;
                for &i in &actors {
                    if self.state[i].fds.contains(&fd) {
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
                Op::Open {
                    path,
                    access: o.mode,
                    create: o.create,
                    excl: o.excl,
                    trunc: o.trunc,
                    fd,
                }
            }
            Step::Close(s) => Op::Close {
                fd: self.fd_for_all(&actors, s.fd.as_ref(), pos)?,
            },
            Step::Dup(s) => {
                let fd = self.fd_for_all(&actors, s.fd.as_ref(), pos)?;
                check_fd_name(&s.as_name).map_err(|m| self.err(s.as_name.pos, m))?;
                for &i in &actors {
                    if self.state[i].fds.contains(&s.as_name.value) {
                        return Err(self.err(
                            s.as_name.pos,
                            format!(
                                "actor `{}` already has a descriptor named `{}`",
                                self.actors[i].name, s.as_name.value
                            ),
                        ));
                    }
                }
                Op::Dup {
                    fd,
                    new: s.as_name.value.clone(),
                }
            }
            Step::Lock(s) => {
                let mech = self.mech_of(s.mechanism.as_ref())?;
                let (start, len) =
                    self.range(mech, s.start.as_ref(), s.len.as_ref(), s.mechanism.as_ref())?;
                Op::Lock {
                    fd: self.fd_for_all(&actors, s.fd.as_ref(), pos)?,
                    mech,
                    kind: s.mode.value.into(),
                    wait: s.wait,
                    start,
                    len,
                }
            }
            Step::Unlock(s) => {
                let mech = self.mech_of(s.mechanism.as_ref())?;
                let (start, len) =
                    self.range(mech, s.start.as_ref(), s.len.as_ref(), s.mechanism.as_ref())?;
                Op::Lock {
                    fd: self.fd_for_all(&actors, s.fd.as_ref(), pos)?,
                    mech,
                    kind: LockKind::Unlock,
                    wait: false,
                    start,
                    len,
                }
            }
            Step::Test(s) => {
                let mech = self.mech_of(s.mechanism.as_ref())?;
                if !mech.has_test() {
                    let hint = if s.mechanism.is_some() {
                        "use mechanism posix or ofd for this step"
                    } else {
                        "list only posix and ofd in `mechanisms`"
                    };
                    return Err(self
                        .err(pos, "flock has no way to test for a lock (no F_GETLK)")
                        .with_hint(hint));
                }
                let (start, len) =
                    self.range(mech, s.start.as_ref(), s.len.as_ref(), s.mechanism.as_ref())?;
                Op::Test {
                    fd: self.fd_for_all(&actors, s.fd.as_ref(), pos)?,
                    mech,
                    mode: s
                        .mode
                        .as_ref()
                        .map(|m| m.value)
                        .unwrap_or(LockMode::Exclusive),
                    start,
                    len,
                }
            }
            Step::Write(s) => {
                if s.data.len() > 1 << 20 {
                    return Err(self.err(pos, "`data` is longer than 1 MiB"));
                }
                Op::Write {
                    fd: self.fd_for_all(&actors, s.fd.as_ref(), pos)?,
                    data: s.data.clone(),
                    offset: s.offset.as_ref().map(|o| o.value),
                }
            }
            Step::Read(s) => {
                if s.len.value > 1 << 20 {
                    return Err(self.err(s.len.pos, "`len` is larger than 1 MiB"));
                }
                Op::Read {
                    fd: self.fd_for_all(&actors, s.fd.as_ref(), pos)?,
                    len: s.len.value,
                    offset: s.offset.as_ref().map(|o| o.value),
                }
            }
            Step::Fork(s) => {
                if actors.len() != 1 {
                    return Err(self.err(pos, "a fork step has one actor (the parent)"));
                }
                let child = self.index[&s.as_name.value];
                if !matches!(self.state[child].life, Life::Unborn) {
                    return Err(self.err(
                        s.as_name.pos,
                        format!("actor `{}` already exists", s.as_name.value),
                    ));
                }
                Op::Fork { child }
            }
            Step::Exit(s) => Op::Exit { code: s.code },
            Step::Await(s) => {
                for &i in &actors {
                    if self.state[i].pending.is_none() {
                        return Err(self
                            .err(
                                pos,
                                format!(
                                    "actor `{}` has no blocked call to await",
                                    self.actors[i].name
                                ),
                            )
                            .with_hint(
                                "`await` follows a waiting lock whose expectation is `blocks`",
                            ));
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
                Op::Await
            }
            Step::Kill(s) => {
                let signal = match &s.signal {
                    None => Signal::SIGKILL,
                    Some(l) => parse_signal(&l.value).map_err(|m| self.err(l.pos, m))?,
                };
                if !is_fatal_by_default(signal) {
                    return Err(self
                        .err(
                            s.signal.as_ref().map(|l| l.pos).unwrap_or(pos),
                            format!("{} does not end the actor", signal.as_str()),
                        )
                        .with_hint(
                            "`kill` sends a signal that ends the process, such as KILL or TERM",
                        ));
                }
                Op::Signal { signal }
            }
        };
        let timeout = match &step.value {
            Step::Await(s) => match &s.within {
                Some(w) => self.check_timeout(w)?,
                None => timeout,
            },
            _ => timeout,
        };
        let (expect, epos) = match c.expect {
            Some(e) => (self.expectation(e, false)?, e.pos),
            None => {
                if matches!(op, Op::Test { .. } | Op::Read { .. }) {
                    return Err(self
                        .err(pos, format!("a `{op_name}` step needs an `expect`"))
                        .with_hint(if matches!(op, Op::Test { .. }) {
                            "expect `unlocked` or `{holder: {mode: exclusive, pid: a}}`"
                        } else {
                            "expect `{data: \"...\"}`"
                        }));
                }
                (Expectation::Ok, pos)
            }
        };
        self.check_fits(&expect, &op, actors.len(), epos)?;
        if op.may_block() && expect.leaves_pending().is_none() {
            return Err(self
                .err(
                    epos,
                    "this expectation leaves open whether the call is still waiting afterwards",
                )
                .with_hint("for a waiting call, expect either `blocks` or a result, not both"));
        }
        self.apply(number, pos, &actors, &op, &expect);
        Ok(PlannedStep {
            number,
            pos,
            actors,
            op,
            expect,
            timeout,
            note: c.note.map(str::to_string),
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
                std::path::Component::Normal(_) => {}
                std::path::Component::CurDir => {}
                _ => return bad("the path leaves the scratch directory (`..`)"),
            }
        }
        if p.value.len() > 1024 {
            return bad("the path is longer than 1024 bytes");
        }
        Ok(p.value.clone())
    }

    /// Update the simulated state after a step.
    fn apply(&mut self, number: usize, pos: Pos, actors: &[usize], op: &Op, exp: &Expectation) {
        let succeeds = matches!(exp, Expectation::Ok);
        for &i in actors {
            match op {
                Op::Open { fd, .. } if succeeds => {
                    self.state[i].fds.insert(fd.clone());
                }
                Op::Close { fd } => {
                    self.state[i].fds.remove(fd);
                }
                Op::Dup { new, .. } if succeeds => {
                    self.state[i].fds.insert(new.clone());
                }
                Op::Fork { child } if succeeds => {
                    let fds = self.state[i].fds.clone();
                    let host = self.actors[i].host.clone();
                    self.actors[*child].forked_from = Some(i);
                    self.actors[*child].host = host;
                    self.state[*child] = ActorState {
                        life: Life::Alive,
                        pending: None,
                        fds,
                    };
                }
                Op::Exit { .. } => {
                    self.state[i].life = Life::Dead {
                        how: "exited".into(),
                        pos,
                    };
                    self.state[i].pending = None;
                }
                Op::Signal { signal } => {
                    self.state[i].life = Life::Dead {
                        how: format!("killed with {}", signal.as_str()),
                        pos,
                    };
                    self.state[i].pending = None;
                }
                Op::Lock { wait: true, .. } | Op::Await => {
                    self.state[i].pending = if exp.leaves_pending() == Some(true) {
                        Some((number, pos))
                    } else {
                        None
                    };
                }
                _ => {}
            }
        }
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
        assert_eq!(f.steps[4].expect, Expectation::Conflict);
        assert!(
            matches!(&f.steps[1].op, Op::Lock { fd, mech: Mechanism::Flock, kind: LockKind::Exclusive, wait: false, .. } if fd == "f")
        );
    }

    fn err_of(y: &str) -> ScenarioError {
        plans(y).expect_err("invalid")
    }

    #[test]
    fn rejects_impossible_steps_with_positions() {
        let e = err_of("actors: [a]\nsteps:\n  - lock: {actor: b, mode: exclusive}\n");
        assert!(e.message.contains("unknown actor `b`"), "{e}");
        assert_eq!(e.pos.line, 7);
        let e = err_of("actors: [a]\nsteps:\n  - lock: {actor: a, mode: exclusive}\n");
        assert!(e.message.contains("no open descriptor"), "{e}");
        let e = err_of("actors: [a]\nsteps:\n  - open: {actor: a, path: f}\n  - open: {actor: a, path: g}\n  - lock: {actor: a, mode: exclusive}\n");
        assert!(e.message.contains("several descriptors"), "{e}");
        let e = err_of("actors: [a]\nsteps:\n  - open: {actor: a, path: ../f}\n");
        assert!(e.message.contains("leaves the scratch"), "{e}");
        let e = err_of("actors: [a]\nsteps:\n  - open: {actor: a, path: /etc/passwd}\n");
        assert!(e.message.contains("absolute"), "{e}");
        let e = err_of("actors: [a, b]\nsteps:\n  - open: {actors: all, path: f}\n  - lock: {actor: b, mode: exclusive, wait: true, expect: blocks}\n  - unlock: {actor: b}\n");
        assert!(e.message.contains("still waiting"), "{e}");
        let e =
            err_of("actors: [a]\nsteps:\n  - open: {actor: a, path: f}\n  - await: {actor: a}\n");
        assert!(e.message.contains("no blocked call"), "{e}");
        let e = err_of("actors: [a]\nsteps:\n  - open: {actor: a, path: f}\n  - kill: {actor: a}\n  - close: {actor: a}\n");
        assert!(e.message.contains("is gone"), "{e}");
        let e = err_of("actors: [a]\nsteps:\n  - open: {actor: a, path: f}\n  - lock: {actor: a, mode: shared, expect: blocks}\n");
        assert!(e.message.contains("only a waiting lock"), "{e}");
        let e = err_of("actors: [a]\nsteps:\n  - open: {actor: a, path: f}\n  - lock: {actor: a, mode: shared, start: 5}\n");
        assert!(e.message.contains("flock has no byte ranges"), "{e}");
        let e = err_of("actors: [a]\nsteps:\n  - open: {actor: a, path: f}\n  - lock: {actor: a, mode: shared, expect: {posix: ok}}\n");
        assert!(e.message.contains("no expectation for flock"), "{e}");
        let e = err_of(
            "actors: [a]\nsteps:\n  - open: {actor: kid, path: f}\n  - fork: {actor: a, as: kid}\n",
        );
        assert!(e.message.contains("does not exist yet"), "{e}");
        let e = err_of("mechanisms: [posix]\nactors: [a]\nsteps:\n  - open: {actor: a, path: f}\n");
        assert!(e.message.contains("without a reason"), "{e}");
    }

    #[test]
    fn inherent_reasons_for_flock() {
        let y = "mechanisms: [posix, ofd]\nactors: [a]\nsteps:\n  - open: {actor: a, path: f}\n  - lock: {actor: a, mode: shared, start: 5, len: 1}\n";
        match plans(y).expect("valid").get(&Mechanism::Flock) {
            Some(Applicability::NotApplicable(r)) => assert!(r.contains("byte ranges"), "{r}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fork_children_inherit_descriptors() {
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
