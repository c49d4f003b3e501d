//! A run: targets × scenarios × mechanisms, as trials, executed in
//! parallel (each trial on one worker thread, in its own scratch
//! directory, with its own actor processes and no shared process state).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::catalog::{Catalog, LoadedScenario};
use crate::driver::{self, Driver, SecondMount, TrialEnv};
use crate::error::{Error, Result};
use crate::plan::{Applicability, Need};
use crate::report::{ActorRecord, CatalogInfo, Report, Status, TrialResult};
use crate::scenario::Mechanism;
use crate::target::{PrivateTmpfs, Target, TargetSpec};

/// One trial to run (or to report as skipped).
#[derive(Clone)]
pub struct TrialSpec {
    /// `target::scenario::mechanism`
    pub id: String,
    pub target: usize,
    pub scenario: Arc<LoadedScenario>,
    pub mechanism: Mechanism,
    /// Why it will not run.
    pub skip: Option<String>,
}

/// The open targets of a run, and what they need to be cleaned up.
pub struct Session {
    pub targets: Vec<Target>,
    /// Whether lockcheck has its own mount namespace (needed to mount), or why not.
    pub namespace: std::result::Result<(), String>,
    /// The binary actors are started from.
    pub exe: PathBuf,
    /// Default targets that could not be provided, and why.
    pub notes: Vec<String>,
    /// How PID reuse is forced here, or why it cannot be.
    pub pid_reuse: std::result::Result<String, String>,
    tmpfs: Option<PrivateTmpfs>,
}

impl Session {
    /// Open the targets (exit status 2 on a bad one).
    pub fn open(
        specs: &[TargetSpec],
        namespace: std::result::Result<(), String>,
        tmpfs: Option<PrivateTmpfs>,
        notes: Vec<String>,
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
        let pid_reuse = crate::target::pid_reuse_method();
        let mut targets = Vec::new();
        for s in specs {
            let mut t = Target::open(s)?;
            t.identity.pid_reuse = match &pid_reuse {
                Ok(how) => how.clone(),
                Err(why) => format!("unavailable: {why}"),
            };
            targets.push(t);
        }
        Ok(Session {
            targets,
            namespace,
            pid_reuse,
            exe,
            notes,
            tmpfs,
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
                        Applicability::Applies(p) if p.hosts.len() > t.hosts.len() => {
                            Some(format!(
                                "needs {} hosts ({}); target {} has {}",
                                p.hosts.len(),
                                p.hosts.join(", "),
                                t.label,
                                t.hosts.len()
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
    fn missing_need(&self, t: &Target, p: &crate::plan::TrialPlan) -> Option<String> {
        p.needs.iter().find_map(|need| match need {
            Need::PidReuse => self
                .pid_reuse
                .as_ref()
                .err()
                .map(|why| format!("needs {}: {why}", need.describe())),
            Need::Lab(f) if !t.lab_faults.contains(f) => Some(format!(
                "needs {}, which target {} cannot inject (the NFS lab can)",
                need.describe(),
                t.label
            )),
            Need::Lab(_) => None,
        })
    }

    /// Run one trial.
    pub fn run_trial(&self, spec: &TrialSpec) -> TrialResult {
        let s = &spec.scenario.scenario;
        let mut result = TrialResult {
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
            duration_ms: 0.0,
            actors: Vec::new(),
            steps: Vec::new(),
            measurements: Vec::new(),
            teardown_problems: Vec::new(),
        };
        let plan = match (&spec.skip, spec.scenario.plans.get(&spec.mechanism)) {
            (None, Some(Applicability::Applies(p))) => p,
            (skip, _) => {
                result.reason = Some(skip.clone().unwrap_or_else(|| "not applicable".into()));
                result.verdict = TrialResult::verdict_for(Status::Skip, s.severity);
                return result;
            }
        };
        let target = &self.targets[spec.target];
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
                Ok(()) => SecondMount::create(&dir),
                Err(why) => Err(format!("lockcheck has no private mount namespace ({why})")),
            };
            match made {
                Ok(m) => Some(m),
                Err(why) => {
                    let _ = std::fs::remove_dir_all(&dir);
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
        let env = TrialEnv {
            exe: &self.exe,
            scratch: &dir,
            second_mount: second.as_ref().map(|m| m.dir.as_path()),
            lock_lists: target.lock_lists(),
            locks_dev: target.identity.locks_dev.clone(),
        };
        let outcome = Driver::new(plan, &env).run();
        drop(second);
        let mut teardown = outcome.teardown;
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            teardown.push(format!("removing {}: {e}", dir.display()));
        }
        result.status = match outcome.status {
            driver::Status::Pass if !teardown.is_empty() => {
                result.reason = Some(format!("teardown: {}", teardown.join("; ")));
                Status::Error
            }
            driver::Status::Pass => Status::Pass,
            // A known failure of the mechanism excuses only a failure of
            // one of its own lock operations, never anything else.
            driver::Status::Fail => match (
                s.known_failures.get(&spec.mechanism),
                outcome
                    .failure
                    .as_ref()
                    .and_then(|f| plan.steps.iter().find(|st| st.number == f.step)),
            ) {
                (Some(why), Some(step)) if step.uses_mechanism(spec.mechanism) => {
                    result.reason = Some(why.trim().to_string());
                    Status::Xfail
                }
                _ => Status::Fail,
            },
            driver::Status::Skip => {
                result.reason = outcome.reason;
                Status::Skip
            }
            driver::Status::Error => {
                result.reason = outcome.reason;
                Status::Error
            }
        };
        result.verdict = TrialResult::verdict_for(result.status, s.severity);
        result.failure = outcome.failure;
        result.steps = outcome.steps;
        result.actors = outcome
            .actors
            .into_iter()
            .map(|(name, pid)| ActorRecord { name, pid })
            .collect();
        result.teardown_problems = teardown;
        result.measurements = outcome.measurements;
        result.duration_ms = crate::report::ms(started.elapsed());
        result
    }

    /// Run trials on `jobs` worker threads; `progress` sees each result as it ends.
    pub fn run_all(
        &self,
        trials: &[TrialSpec],
        jobs: usize,
        progress: &(dyn Fn(usize, &TrialResult) + Sync),
    ) -> Vec<TrialResult> {
        let next = AtomicUsize::new(0);
        let done = AtomicUsize::new(0);
        let slots: Mutex<Vec<Option<TrialResult>>> = Mutex::new(vec![None; trials.len()]);
        std::thread::scope(|scope| {
            for _ in 0..jobs.max(1).min(trials.len().max(1)) {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(spec) = trials.get(i) else { break };
                    let r = self.run_trial(spec);
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    progress(n, &r);
                    if let Ok(mut s) = slots.lock() {
                        s[i] = Some(r);
                    }
                });
            }
        });
        slots
            .into_inner()
            .unwrap_or_default()
            .into_iter()
            .flatten()
            .collect()
    }

    /// One report per target that had trials; `wall_ms` is the run's wall time.
    pub fn reports(
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

/// Default number of parallel trials: the number of CPUs.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
}
