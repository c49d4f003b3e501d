//! A run: targets × scenarios × mechanisms, as trials, executed in
//! parallel (each trial on one worker thread, in its own scratch
//! directory, with its own actor processes and no shared process state).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::engine::driver::{Driver, SecondMount, TrialEnv};
use crate::plan::catalog::{Catalog, LoadedScenario};
use crate::plan::resolve::{Applicability, Need};
use crate::record::report::{ActorRecord, CatalogInfo, Report, Status, TrialResult};
use crate::spec::error::{Error, Result};
use crate::spec::scenario::Mechanism;
use crate::target::targets::{PrivateTmpfs, Target, TargetSpec};
use crate::verdict::classify::{classify, Seen};

/// One trial to run (or to report as skipped).
#[derive(Clone)]
pub struct TrialSpec {
    /// `target::scenario::mechanism`
    pub id: String,
    pub(crate) target: usize,
    pub(crate) scenario: Arc<LoadedScenario>,
    /// The lock mechanism it runs with.
    pub mechanism: Mechanism,
    /// Why it will not run.
    pub skip: Option<String>,
}

/// How far a trial's lab faults reach.
enum FaultScope {
    /// It injects none.
    None,
    /// Only its own target's hosts.
    Target,
    /// Every target (a server restart, a shared host).
    Everything,
}

/// The shared trials still to run, and which targets a fault lane holds.
struct Sched {
    pending: std::collections::VecDeque<usize>,
    /// Shared trials running, per target.
    running: Vec<usize>,
    /// Targets whose fault lane runs (no shared trial may start there).
    held: Vec<bool>,
}

/// Where a run tells how it goes: the command line prints it, a test may
/// ignore it. Called from the run's worker threads.
pub trait Progress: Sync {
    /// A run of the trials begins: the `k`-th (from 1) of `of`.
    fn run_started(&self, _k: usize, _of: usize) {}
    /// The `done`-th trial of the current run finished with `result`.
    fn trial_done(&self, done: usize, result: &TrialResult);
    /// The current run's trials are all done.
    fn run_ended(&self) {}
}

impl<F: Fn(usize, &TrialResult) + Sync> Progress for F {
    fn trial_done(&self, done: usize, result: &TrialResult) {
        self(done, result)
    }
}

/// The open targets of a run, and what they need to be cleaned up.
pub struct Session {
    /// The targets, open, in the order given.
    pub targets: Vec<Target>,
    /// Whether lockcheck has its own mount namespace (needed to mount), or why not.
    pub(crate) namespace: std::result::Result<(), String>,
    /// The binary actors are started from.
    pub exe: PathBuf,
    /// Default targets that could not be provided, and why.
    pub notes: Vec<String>,
    /// How PID reuse is forced here, or why it cannot be.
    pub(crate) pid_reuse: std::result::Result<String, String>,
    tmpfs: Option<PrivateTmpfs>,
    /// Filesystems lockcheck made for this run (taken down at the end).
    pub(crate) provisioned: Vec<crate::target::provision::Provisioned>,
    /// Forks local actors (started here, on the thread that opens the
    /// session, which outlives the trials). `LOCKCHECK_ZYGOTE=0` turns it
    /// off: every actor is then started by exec.
    zygote: Option<crate::actor::zygote::Zygote>,
    /// `--rounds-budget`: a trial of a scenario with `rounds` starts no new
    /// round after this long (it passes with the rounds that ran).
    pub rounds_budget: Option<std::time::Duration>,
}

impl Session {
    /// Open the targets (exit status 2 on a bad one).
    pub fn open(
        specs: &[TargetSpec],
        namespace: std::result::Result<(), String>,
        tmpfs: Option<PrivateTmpfs>,
        notes: Vec<String>,
    ) -> Result<Session> {
        Self::open_with(
            specs,
            namespace,
            tmpfs,
            notes,
            &[],
            &Default::default(),
            crate::plan::resolve::DEFAULT_LEASE,
        )
    }

    /// Open targets that also have other hosts (launchers) and lab faults.
    pub(crate) fn open_with(
        specs: &[TargetSpec],
        namespace: std::result::Result<(), String>,
        tmpfs: Option<PrivateTmpfs>,
        notes: Vec<String>,
        hosts: &[crate::target::targets::HostDef],
        faults: &std::collections::BTreeMap<crate::plan::resolve::LabFault, String>,
        lease: std::time::Duration,
    ) -> Result<Session> {
        let exe = std::env::current_exe()
            .map_err(|e| Error::io("finding lockcheck's own executable", e))?;
        let mut labels = std::collections::HashSet::new();
        for s in specs {
            if !labels.insert(s.label.as_str()) {
                return Err(Error::usage(
                    format!("target label {:?} is given twice", s.label),
                    Some("each target needs its own label; it names its report"),
                ));
            }
        }
        raise_fd_limit();
        let pid_reuse = crate::target::targets::pid_reuse_method();
        let mut targets = Vec::new();
        let mut notes = notes;
        for s in specs {
            let mut t = Target::open(s)?;
            // What a lockcheck killed with SIGKILL left behind here goes now.
            for c in crate::target::targets::clean_stale(&t.root).unwrap_or_default() {
                if let crate::target::targets::Cleaned::Removed(p) = c {
                    notes.push(format!(
                        "{}: removed {}, left by a lockcheck that is gone",
                        s.label,
                        p.display()
                    ));
                }
            }
            for (h, _) in &t.host_dirs {
                if !hosts.iter().any(|d| d.name == *h) {
                    return Err(Error::usage(
                        format!("--target {}: host {h} is not defined", s.label),
                        Some("define it with --host NAME=COMMAND"),
                    ));
                }
            }
            for h in hosts {
                let dir = t
                    .host_dirs
                    .iter()
                    .find(|(n, _)| *n == h.name)
                    .map(|(_, d)| d.clone())
                    .unwrap_or_else(|| t.root.clone());
                // `{target}` in a launcher names this target's own instance
                // of the host (the NFS lab gives each mount its own client).
                let mut h = h.clone();
                for w in &mut h.launcher {
                    *w = w.replace("{target}", &s.label);
                }
                t.hosts.push(h.name.clone());
                t.remote_hosts.push((h, dir));
            }
            t.lab_faults = faults
                .iter()
                .map(|(f, cmd)| (*f, cmd.replace("{target}", &s.label)))
                .collect();
            t.confined_faults = faults
                .iter()
                .filter(|(_, cmd)| cmd.contains("{target}"))
                .map(|(f, _)| *f)
                .collect();
            t.identity.hosts = t.hosts.clone();
            t.lease = lease;
            t.identity.lease_s = lease.as_secs_f64();
            t.identity.lab_faults = faults.keys().map(|f| f.as_str().to_string()).collect();
            t.identity.pid_reuse = match &pid_reuse {
                Ok(how) => how.clone(),
                Err(why) => format!("unavailable: {why}"),
            };
            targets.push(t);
        }
        let zygote = if std::env::var_os("LOCKCHECK_ZYGOTE").is_some_and(|v| v == "0") {
            None
        } else {
            crate::actor::zygote::Zygote::start(&exe).ok()
        };
        Ok(Session {
            targets,
            namespace,
            pid_reuse,
            exe,
            notes,
            tmpfs,
            provisioned: Vec::new(),
            zygote,
            rounds_budget: None,
        })
    }

    /// Every trial of the catalog on every target, restricted to `mechanisms` (all if empty).
    pub fn plan(&self, catalog: &Catalog, mechanisms: &[Mechanism]) -> Vec<TrialSpec> {
        let mut out = Vec::new();
        for (ti, t) in self.targets.iter().enumerate() {
            for s in &catalog.scenarios {
                for (mech, app) in &s.plans {
                    if !mechanisms.is_empty() && !mechanisms.contains(mech) {
                        continue;
                    }
                    let skip = match app {
                        Applicability::NotApplicable(r) => Some(r.clone()),
                        Applicability::Applies(p)
                            if !p.hosts.iter().all(|h| t.hosts.contains(h)) =>
                        {
                            let missing: Vec<&str> = p
                                .hosts
                                .iter()
                                .filter(|h| !t.hosts.contains(h))
                                .map(String::as_str)
                                .collect();
                            Some(format!(
                                "needs another client: host {} (give one with --host {}=COMMAND, or run the NFS lab); target {} has only {}",
                                missing.join(", host "),
                                missing.first().copied().unwrap_or("b"),
                                t.label,
                                t.hosts.join(", ")
                            ))
                        }
                        Applicability::Applies(p) => self.missing_need(t, p),
                    };
                    out.push(TrialSpec {
                        id: format!("{}::{}::{}", t.label, s.name(), mech),
                        target: ti,
                        scenario: Arc::clone(s),
                        mechanism: *mech,
                        skip,
                    });
                }
            }
        }
        out
    }

    /// Why a target cannot provide what a plan needs, if it cannot.
    fn missing_need(&self, t: &Target, p: &crate::plan::resolve::TrialPlan) -> Option<String> {
        p.needs.iter().find_map(|need| match need {
            Need::PidReuse => self
                .pid_reuse
                .as_ref()
                .err()
                .map(|why| format!("needs {}: {why}", need.describe())),
            Need::Lab(f) if !t.lab_faults.contains_key(f) => Some(format!(
                "needs {}, which target {} cannot inject (the NFS lab can)",
                need.describe(),
                t.label
            )),
            Need::Lab(_) => None,
            Need::BackingStore if t.backing_of(t.scratch()).is_none() => Some(format!(
                "needs {}; lockcheck's `fuse` target has one (--provision fuse)",
                need.describe()
            )),
            Need::LowerFile if !t.has_lower_file() => Some(format!(
                "needs {}; lockcheck's `overlay` target has one (--provision overlay)",
                need.describe()
            )),
            Need::BackingStore | Need::LowerFile => None,
        })
    }

    /// Run one trial.
    pub fn run_trial(&self, spec: &TrialSpec) -> TrialResult {
        self.run_trial_in(spec, None, None)
    }

    /// How long a trial is expected to take, roughly: the fixed windows it
    /// watches a waiter for, then how many actors it starts.
    fn cost(spec: &TrialSpec) -> (Duration, usize) {
        match (&spec.skip, spec.scenario.plans.get(&spec.mechanism)) {
            (None, Some(Applicability::Applies(p))) => (
                p.steps
                    .iter()
                    .filter_map(|s| match s.op {
                        crate::plan::resolve::Op::Await { hold } => hold,
                        _ => None,
                    })
                    .sum(),
                p.actors.len(),
            ),
            _ => (Duration::ZERO, 0),
        }
    }

    /// Run one trial; `barrier` is shared with the trials of the same
    /// scenario on the other targets, which inject their global faults
    /// together; `slots`: the job slot this trial holds, which it lends
    /// while it only watches.
    fn run_trial_in(
        &self,
        spec: &TrialSpec,
        barrier: Option<&crate::engine::barrier::FaultBarrier>,
        slots: Option<&crate::engine::slots::JobSlots>,
    ) -> TrialResult {
        // A bug in the harness ends this trial as an error, not the run (a
        // worker that unwound would leave its target held and the run hung).
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.run_trial_inner(spec, barrier, slots)
        }))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let mut r = Self::base_result(spec);
            r.status = Status::Error;
            r.reason = Some(format!("lockcheck itself failed in this trial: {what}"));
            r.verdict = TrialResult::verdict_for(Status::Error, r.severity);
            r
        })
    }

    /// A trial's result before it has run.
    fn base_result(spec: &TrialSpec) -> TrialResult {
        let s = &spec.scenario.scenario;
        TrialResult {
            id: spec.id.clone(),
            scenario: s.name.value.clone(),
            mechanism: spec.mechanism,
            family: s.family.value,
            severity: s.severity,
            status: Status::Skip,
            verdict: String::new(),
            reason: None,
            failure: None,
            summary: s.summary.trim().to_string(),
            reference: s.reference.trim().to_string(),
            file: spec.scenario.file.clone(),
            started_ms: 0.0,
            duration_ms: 0.0,
            in_calls_ms: 0.0,
            actors: Vec::new(),
            steps: Vec::new(),
            measurements: Vec::new(),
            teardown_problems: Vec::new(),
            rounds: None,
        }
    }

    fn run_trial_inner(
        &self,
        spec: &TrialSpec,
        barrier: Option<&crate::engine::barrier::FaultBarrier>,
        slots: Option<&crate::engine::slots::JobSlots>,
    ) -> TrialResult {
        let s = &spec.scenario.scenario;
        let mut result = Self::base_result(spec);
        let plan = match (&spec.skip, spec.scenario.plans.get(&spec.mechanism)) {
            (None, Some(Applicability::Applies(p))) => p,
            (skip, _) => {
                result.reason = Some(skip.clone().unwrap_or_else(|| "not applicable".into()));
                result.verdict = TrialResult::verdict_for(Status::Skip, s.severity);
                return result;
            }
        };
        let target = &self.targets[spec.target];
        if let Some(why) = target.stalled() {
            result.status = Status::Error;
            result.reason = Some(format!("not run: the target stopped answering ({why})"));
            result.verdict = TrialResult::verdict_for(Status::Error, s.severity);
            return result;
        }
        let started = Instant::now();
        let dir = match target.trial_dir(&format!("{}.{}", s.name.value, spec.mechanism)) {
            Ok(d) => d,
            Err(e) => {
                result.status = Status::Error;
                result.reason = Some(format!("cannot create the trial directory: {e}"));
                result.verdict = TrialResult::verdict_for(Status::Error, s.severity);
                return result;
            }
        };
        let second = if plan.needs_second_mount {
            let made = match &self.namespace {
                Ok(()) => {
                    let d = dir.clone();
                    target.fs_call("making a second mount", move || {
                        SecondMount::create(&d).map_err(std::io::Error::other)
                    })
                }
                Err(why) => Err(format!("lockcheck has no private mount namespace ({why})")),
            };
            match made {
                Ok(m) => Some(m),
                Err(why) => {
                    let _ = target.remove_trial_dir(&dir);
                    result.reason = Some(format!(
                        "needs a second mount of the target's filesystem; {why}"
                    ));
                    result.verdict = TrialResult::verdict_for(Status::Skip, s.severity);
                    return result;
                }
            }
        } else {
            None
        };
        let hosts = target.host_envs(&self.exe, &dir);
        let backing = target.backing_of(&dir);
        let env = TrialEnv {
            exe: &self.exe,
            scratch: &dir,
            second_mount: second.as_ref().map(|m| m.dir.as_path()),
            backing: backing.as_deref(),
            lock_lists: target.lock_lists(),
            locks_dev: target.identity.locks_dev.clone(),
            hosts: &hosts,
            faults: &target.lab_faults,
            zygote: self.zygote.as_ref(),
            confined_faults: &target.confined_faults,
            barrier,
            lease: target.lease,
            slots,
            rounds: s
                .rounds
                .as_ref()
                .filter(|r| r.value > 1)
                .zip(self.rounds_budget)
                .map(|(r, b)| (s.steps.value.len() / r.value.max(1) as usize, b)),
        };
        let outcome = Driver::new(plan, &env).run();
        if let Some(m) = second {
            // Unmounted and removed on a thread of its own, bounded.
            let _ = target.fs_call("removing the second mount", move || {
                drop(m);
                Ok(())
            });
        }
        let mut teardown = outcome.teardown;
        if let Err(e) = target.remove_trial_dir(&dir) {
            teardown.push(format!("removing {}: {e}", dir.display()));
        }
        // The step the trial failed at, if it failed.
        let failed_step = outcome
            .failure
            .as_ref()
            .and_then(|f| plan.steps.iter().find(|st| st.number == f.step));
        // A known failure of the mechanism excuses only a failure of one of
        // its own lock operations, never anything else.
        let known_failure = s
            .known_failures
            .get(&spec.mechanism)
            .filter(|_| failed_step.is_some_and(|step| step.uses_mechanism(spec.mechanism)));
        // So does a filesystem family's documented divergence, of a lock call.
        let divergent_on = crate::spec::scenario::FsFamily::of_fs_type(&target.identity.fs_type)
            .and_then(|f| s.divergent_on.get(&f).map(|why| (f.name(), why.as_str())))
            .filter(|_| failed_step.is_some_and(|step| step.is_lock_call()));
        let c = classify(
            &Seen {
                status: outcome.status,
                reason: outcome.reason.as_deref(),
                failure: outcome.failure.as_ref(),
                teardown: &teardown,
                known_failure: known_failure.map(String::as_str),
                stalled: target.stalled(),
                divergent_on,
            },
            result.severity,
        );
        result.status = c.status;
        result.reason = c.reason;
        result.severity = c.severity;
        result.verdict = TrialResult::verdict_for(result.status, result.severity);
        result.failure = outcome.failure;
        let of = s.rounds.as_ref().map_or(1, |r| r.value);
        let (steps, rounds) = crate::record::report::RoundsRun::compact(
            outcome.steps,
            of,
            s.steps.value.len() / of.max(1) as usize,
        );
        result.steps = steps;
        result.rounds = rounds.map(|mut r| {
            // Stopped by the budget, not by a failure.
            if r.ran < r.of && result.status == Status::Pass {
                r.budget_s = self.rounds_budget.map(|b| b.as_secs_f64());
            }
            r
        });
        result.actors = outcome
            .actors
            .into_iter()
            .map(|(name, pid, host)| ActorRecord { name, pid, host })
            .collect();
        result.teardown_problems = teardown;
        result.measurements = outcome.measurements;
        result.in_calls_ms = crate::record::report::ms(outcome.in_calls);
        result.duration_ms = crate::record::report::ms(started.elapsed());
        result
    }

    /// The order trials start in: longest first, so the trials that watch a
    /// waiter for a fixed window start early and lend their slots while the
    /// rest run; or, with a seed, a shuffled order.
    fn order(
        trials: &[TrialSpec],
        shuffle: Option<u64>,
        shared: &mut Vec<usize>,
        lanes: &mut [Vec<usize>],
        alone: &mut Vec<usize>,
    ) {
        match shuffle {
            Some(seed) => {
                use rand::seq::SliceRandom;
                use rand::SeedableRng;
                let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(seed);
                // From one order (by id, whatever order the catalog was
                // read in) to the same shuffled order.
                for list in std::iter::once(shared)
                    .chain(lanes.iter_mut())
                    .chain(std::iter::once(alone))
                {
                    list.sort_by(|&a, &b| trials[a].id.cmp(&trials[b].id));
                    list.shuffle(&mut rng);
                }
            }
            None => shared.sort_by_key(|&i| std::cmp::Reverse(Self::cost(&trials[i]))),
        }
    }

    /// Faults that reach every target: the trials of one scenario run
    /// together on all targets and inject each such fault once, then the
    /// next scenario's.
    fn run_global_faults(
        &self,
        trials: &[TrialSpec],
        alone: Vec<usize>,
        record: &(dyn Fn(usize, TrialResult, Instant) + Sync),
    ) {
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for i in alone {
            let name = trials[i].scenario.scenario.name.value.clone();
            match groups.iter_mut().find(|(n, _)| *n == name) {
                Some((_, g)) => g.push(i),
                None => groups.push((name, vec![i])),
            }
        }
        for (_, group) in groups {
            if crate::actor::interrupt::interrupted().is_some() {
                break;
            }
            let barrier = crate::engine::barrier::FaultBarrier::new(group.len());
            std::thread::scope(|scope| {
                for &i in &group {
                    let (barrier, record) = (&barrier, &record);
                    scope.spawn(move || {
                        let began = Instant::now();
                        let r = self.run_trial_in(&trials[i], Some(barrier), None);
                        barrier.leave();
                        record(i, r, began);
                    });
                }
            });
        }
    }

    /// Run trials on `jobs` worker threads; `progress` sees each result as it ends.
    ///
    /// Trials that inject a lab fault (a host crash, a network cut, a server
    /// restart) affect every process on the host they hit and every mount of
    /// the server. A fault whose command names the target (`{target}`) hits
    /// only that target's own hosts: its trials run on a lane of their own,
    /// one at a time, while no other trial of that target runs (other
    /// targets' trials go on; the fault's waits are mostly idle). Any other
    /// lab-fault trial runs last, with nothing else running but the same
    /// scenario's trials on the other targets: they run together and inject
    /// each such fault once for all (one server restart for every mount).
    ///
    /// With `shuffle`, trials start in an order drawn from that seed (to
    /// show trials that depend on what ran before them) instead of longest
    /// first; the same seed gives the same order.
    pub(crate) fn run_all(
        &self,
        trials: &[TrialSpec],
        jobs: usize,
        shuffle: Option<u64>,
        progress: &dyn Progress,
    ) -> Vec<TrialResult> {
        let t0 = Instant::now();
        let done = AtomicUsize::new(0);
        let slots: Mutex<Vec<Option<TrialResult>>> = Mutex::new(vec![None; trials.len()]);
        let mut alone = Vec::new();
        let mut lanes: Vec<Vec<usize>> = vec![Vec::new(); self.targets.len()];
        let mut shared = std::collections::VecDeque::new();
        for (i, spec) in trials.iter().enumerate() {
            match self.fault_scope(spec) {
                FaultScope::None => shared.push_back(i),
                FaultScope::Target => lanes[spec.target].push(i),
                FaultScope::Everything => alone.push(i),
            }
        }
        let record = |i: usize, mut r: TrialResult, began: Instant| {
            r.started_ms = crate::record::report::ms(began.duration_since(t0));
            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
            progress.trial_done(n, &r);
            if let Ok(mut s) = slots.lock() {
                s[i] = Some(r);
            }
        };
        let run = |i: usize| {
            let began = Instant::now();
            record(i, self.run_trial(&trials[i]), began)
        };
        let run_shared = |i: usize, slots: &crate::engine::slots::JobSlots| {
            let began = Instant::now();
            record(i, self.run_trial_in(&trials[i], None, Some(slots)), began)
        };
        let mut shared: Vec<usize> = shared.into();
        Self::order(trials, shuffle, &mut shared, &mut lanes, &mut alone);
        let job_slots = crate::engine::slots::JobSlots::new(jobs);
        let sched = Mutex::new(Sched {
            pending: shared.into(),
            running: vec![0; self.targets.len()],
            held: vec![false; self.targets.len()],
        });
        let changed = std::sync::Condvar::new();
        let lock = || sched.lock().unwrap_or_else(|e| e.into_inner());
        std::thread::scope(|scope| {
            for (t, lane) in lanes.iter().enumerate().filter(|(_, l)| !l.is_empty()) {
                let (run, lock, changed) = (&run, &lock, &changed);
                scope.spawn(move || {
                    let mut g = lock();
                    g.held[t] = true;
                    while g.running[t] > 0 {
                        g = changed.wait(g).unwrap_or_else(|e| e.into_inner());
                    }
                    drop(g);
                    for &i in lane {
                        if crate::actor::interrupt::interrupted().is_some() {
                            break;
                        }
                        run(i);
                    }
                    lock().held[t] = false;
                    changed.notify_all();
                });
            }
            // A worker runs a trial while it holds a job slot; the extra
            // workers start trials in the slots lent by trials that only
            // watch or wait.
            let workers = (jobs.max(1) * 4).max(jobs + 16).min(trials.len().max(1));
            for _ in 0..workers {
                // A worker never holds a slot while it waits for a trial it
                // may start: a fault lane waits for the running trials of
                // its target to end, and one of those may be waiting to take
                // back the slot it lent.
                scope.spawn(|| loop {
                    let mut g = lock();
                    let picked = loop {
                        if crate::actor::interrupt::interrupted().is_some() {
                            g.pending.clear();
                            changed.notify_all();
                        }
                        let next = g.pending.iter().position(|&i| !g.held[trials[i].target]);
                        if let Some(i) = next.and_then(|k| g.pending.remove(k)) {
                            break Some(i);
                        } else if g.pending.is_empty() {
                            break None;
                        }
                        g = changed.wait(g).unwrap_or_else(|e| e.into_inner());
                    };
                    let Some(i) = picked else { break };
                    let t = trials[i].target;
                    g.running[t] += 1;
                    // Taken in the queue's order, under its lock.
                    let ticket = job_slots.ticket();
                    drop(g);
                    job_slots.acquire(ticket);
                    run_shared(i, &job_slots);
                    job_slots.release();
                    lock().running[t] -= 1;
                    changed.notify_all();
                });
            }
        });
        self.run_global_faults(trials, alone, &record);
        slots
            .into_inner()
            .unwrap_or_default()
            .into_iter()
            .flatten()
            .collect()
    }

    /// What a trial's lab faults reach, if it will inject any.
    fn fault_scope(&self, spec: &TrialSpec) -> FaultScope {
        let Some(Applicability::Applies(p)) = spec.scenario.plans.get(&spec.mechanism) else {
            return FaultScope::None;
        };
        if spec.skip.is_some() {
            return FaultScope::None;
        }
        let confined = &self.targets[spec.target].confined_faults;
        let mut scope = FaultScope::None;
        for n in &p.needs {
            if let crate::plan::resolve::Need::Lab(f) = n {
                if !confined.contains(f) {
                    return FaultScope::Everything;
                }
                scope = FaultScope::Target;
            }
        }
        scope
    }

    /// One report per target that had trials; `wall_ms` is the run's wall time.
    pub(crate) fn reports(
        &self,
        catalog: &Catalog,
        results: Vec<TrialResult>,
        wall_ms: f64,
    ) -> Vec<Report> {
        let mut per: Vec<Vec<TrialResult>> = vec![Vec::new(); self.targets.len()];
        for r in results {
            let label = r.id.split("::").next().unwrap_or("");
            if let Some(i) = self.targets.iter().position(|t| t.label == label) {
                per[i].push(r);
            }
        }
        per.into_iter()
            .enumerate()
            .filter(|(_, rs)| !rs.is_empty())
            .map(|(i, rs)| {
                Report::new(
                    self.targets[i].identity.clone(),
                    CatalogInfo {
                        source: catalog.source.clone(),
                        scenarios: catalog.scenarios.len(),
                        hash: catalog.hash.clone(),
                    },
                    rs,
                    (wall_ms * 1000.0).round() / 1000.0,
                )
            })
            .collect()
    }

    /// Measure lock latency on target `t` (`lockcheck bench`), one
    /// mechanism after another, with nothing else running.
    pub fn bench(
        &self,
        t: usize,
        mechanisms: &[Mechanism],
        opts: &crate::engine::bench::BenchOptions,
    ) -> crate::record::bench::Bench {
        let target = &self.targets[t];
        let mut results = Vec::new();
        for &m in mechanisms {
            let r = match target.trial_dir(&format!("bench.{m}")) {
                Err(e) => crate::record::bench::MechBench {
                    mechanism: m,
                    uncontended: None,
                    handoff: None,
                    throughput: None,
                    blocked_seen: None,
                    io: None,
                    problems: vec![format!("cannot create the benchmark directory: {e}")],
                },
                Ok(dir) => {
                    let env = crate::engine::bench::BenchEnv {
                        exe: &self.exe,
                        scratch: &dir,
                        lock_lists: target.lock_lists(),
                        locks_dev: target.identity.locks_dev.clone(),
                        zygote: self.zygote.as_ref(),
                    };
                    let mut r = crate::engine::bench::run_mechanism(&env, m, opts);
                    if let Err(e) = target.remove_trial_dir(&dir) {
                        r.problems.push(format!("removing {}: {e}", dir.display()));
                    }
                    r
                }
            };
            results.push(r);
        }
        crate::record::bench::Bench {
            budget_ms: crate::record::report::ms(opts.budget),
            contenders: opts.contenders,
            results,
        }
    }

    /// Remove scratch directories and unmount what lockcheck mounted.
    pub fn close(self) -> Vec<String> {
        let mut problems = Vec::new();
        for t in self.targets {
            let shown = t.scratch().display().to_string();
            if let Err(e) = t.close() {
                problems.push(format!("removing {shown}: {e}"));
            }
        }
        drop(self.tmpfs);
        problems
    }
}

/// Raise this process's soft limit on open descriptors to its hard limit:
/// every actor costs the harness a few descriptors (its channel, stderr,
/// pidfd), and a few trials of 64 actors at once pass the usual soft limit
/// of 1024. Returns the limit now in force.
pub(crate) fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return want.rlim_cur;
            }
        }
    }
    lim.rlim_cur
}

/// Default number of parallel trials: the number of CPUs.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
}
