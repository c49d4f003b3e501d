//! Reports: one per target. JSON is canonical (`schema_version` says its
//! shape); Markdown is for people. Both carry the evidence: for every trial
//! the steps with the system calls made and what was observed.

use serde::Serialize;

use crate::spec::scenario::{Family, Mechanism, Severity};
use crate::target::targets::TargetIdentity;

/// Bumped when the JSON report changes shape.
pub const SCHEMA_VERSION: u32 = 1;

/// The runs of `--repeat N`, and what changed between them.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Repeat {
    pub(crate) runs: usize,
    /// Trials (and application verdicts) whose outcome was not the same in every run.
    pub flaky: Vec<FlakyTrial>,
}

/// A trial (or an application verdict) whose outcome was not the same in every run.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct FlakyTrial {
    /// The trial's id, or `TARGET::application NAME` for an application.
    pub id: String,
    /// Each outcome seen, with the runs (from 1) that had it.
    pub(crate) outcomes: Vec<OutcomeRuns>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub(crate) struct OutcomeRuns {
    pub(crate) outcome: String,
    pub(crate) runs: Vec<usize>,
}

impl FlakyTrial {
    /// `pass ×199; unsafe at step 4 ×1 (run 57)`
    pub fn describe(&self) -> String {
        self.outcomes
            .iter()
            .map(|o| {
                let mut s = format!("{} ×{}", o.outcome, o.runs.len());
                if o.runs.len() <= 5 {
                    let runs: Vec<String> = o.runs.iter().map(|r| r.to_string()).collect();
                    s.push_str(&format!(
                        " (run{} {})",
                        if o.runs.len() > 1 { "s" } else { "" },
                        runs.join(", ")
                    ));
                }
                s
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn is_zero_ms(x: &f64) -> bool {
    *x == 0.0
}

/// Milliseconds, rounded to the microsecond.
pub(crate) fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// One step as it ran.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct StepRecord {
    /// The step's number in the scenario, from 1.
    pub step: usize,
    pub(crate) line: u32,
    pub(crate) col: u32,
    /// The actors that made it.
    pub actors: Vec<String>,
    /// The step in the scenario's terms.
    pub op: String,
    /// The system calls made, one per actor.
    pub calls: Vec<String>,
    pub(crate) expected: String,
    /// What the calls returned, or that they blocked (`actor: ...` for each of several actors).
    pub observed: String,
    /// Whether what was observed met the expectation.
    pub passed: bool,
    /// Milliseconds from the start of the trial.
    pub(crate) start_ms: f64,
    pub(crate) elapsed_ms: f64,
    /// For an awaited call: how long after the previous step ended it returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) completed_after_ms: Option<f64>,
    /// For an awaited call after a fault: how long after the fault it returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) after_fault_ms: Option<f64>,
    /// The step of that fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) fault_step: Option<usize>,
}

/// A time measured during a trial, reported even when the trial passes.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub(crate) struct Measurement {
    pub(crate) step: usize,
    pub(crate) what: String,
    pub(crate) ms: f64,
    /// The bound the scenario set (`within`, or the step timeout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) bound_ms: Option<f64>,
}

/// The step where a trial failed.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Failure {
    /// The step's number in the scenario, from 1.
    pub step: usize,
    /// Its line in the scenario file.
    pub line: u32,
    pub(crate) col: u32,
    /// The actors that made it.
    pub actors: Vec<String>,
    /// The step in the scenario's terms.
    pub op: String,
    /// What the scenario expected.
    pub expected: String,
    /// What was observed; for several actors, why that misses the
    /// expectation, then each actor's result.
    pub observed: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) note: Option<String>,
    /// The step did not complete in time (no reply, no lock wait seen): a
    /// hang or a slow target, not a lost lock, so never labelled unsafe.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) timed_out: bool,
    /// Only the reported lock owner (F_GETLK's l_pid) was wrong: the lock,
    /// its type and range were right. A reporting error, never unsafe.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) owner_only: bool,
    /// Every actor that missed the expectation only got less than expected
    /// (a lock refused or still waiting, a lock reported where none should
    /// be): nothing was granted that should have been refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) refused_only: bool,
}

/// How a trial ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every step met its expectation.
    Pass,
    /// A step did not meet its expectation.
    Fail,
    /// Not run, or stopped: the scenario does not apply to the mechanism, or
    /// the target lacks something it needs (another host, a lab fault, a
    /// second mount, a system call).
    Skip,
    /// Not judged: something other than locking went wrong (no space or
    /// descriptors left, a failed teardown, a target that stopped answering,
    /// lockcheck itself).
    Error,
    /// A failure the scenario declares inherent to the mechanism (a PID file
    /// cannot tell a reused PID from its holder): the method fails, not the target.
    Xfail,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Skip => "skip",
            Status::Error => "error",
            Status::Xfail => "xfail",
        }
    }
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub(crate) struct ActorRecord {
    pub(crate) name: String,
    pub(crate) pid: Option<i32>,
    /// The host it ran on (`a` is the one lockcheck runs on).
    pub(crate) host: String,
}

/// One trial: target × scenario × mechanism.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TrialResult {
    /// `target::scenario::mechanism`, as `cargo test` names it.
    pub id: String,
    pub(crate) scenario: String,
    /// The lock mechanism the trial used.
    pub mechanism: Mechanism,
    pub(crate) family: Family,
    pub(crate) severity: Severity,
    /// How the trial ended.
    pub status: Status,
    /// pass, skip, error, or for a failure its severity: unsafe, divergent, info.
    pub verdict: String,
    /// Why it was skipped, or what kept it from running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For a failure or an expected failure: the step where it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// The scenario's summary: what it checks and which applications rely on it.
    pub summary: String,
    pub(crate) reference: String,
    /// The scenario file.
    pub file: String,
    /// When the trial started, in ms after its run began (trials that ran
    /// at once overlap; with --shuffle this shows the order drawn).
    #[serde(default)]
    pub(crate) started_ms: f64,
    pub(crate) duration_ms: f64,
    /// Of `duration_ms`, the time some actor on this host was inside a
    /// call the scenario asked for (locks, waits, writes); the rest is
    /// lockcheck's own cost (starting actors, messages, observing, teardown).
    #[serde(default, skip_serializing_if = "is_zero_ms")]
    pub(crate) in_calls_ms: f64,
    pub(crate) actors: Vec<ActorRecord>,
    /// The steps that ran, in order, with their system calls and what they returned.
    pub steps: Vec<StepRecord>,
    /// Times measured (fault to lock, how long a contender waited), even when it passes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) measurements: Vec<Measurement>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) teardown_problems: Vec<String>,
    /// For a scenario run in rounds: how many ran; `steps` keeps the
    /// first round and the last that ran (where it failed), not those between.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rounds: Option<RoundsRun>,
}

/// The rounds of a trial whose scenario has `rounds`.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RoundsRun {
    /// Rounds that ran: all of them, or up to the one it failed in.
    pub ran: u32,
    /// Rounds the scenario asks for.
    pub of: u32,
    /// Set when the trial passed with fewer rounds than asked because
    /// `--rounds-budget` (this many seconds) was spent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_s: Option<f64>,
    /// Steps in one round (a step's round is (step - 1) / this + 1).
    pub steps_per_round: usize,
}

impl RoundsRun {
    /// `steps` of a trial in rounds, with the rounds between the first and
    /// the last that ran left out, and what ran.
    pub(crate) fn compact(
        steps: Vec<StepRecord>,
        of: u32,
        steps_per_round: usize,
    ) -> (Vec<StepRecord>, Option<RoundsRun>) {
        if of <= 1 || steps_per_round == 0 || steps.is_empty() {
            return (steps, None);
        }
        let round = |st: &StepRecord| (st.step.saturating_sub(1) / steps_per_round) as u32 + 1;
        let last = steps.last().map_or(0, round);
        let kept = steps
            .into_iter()
            .filter(|st| {
                let r = round(st);
                r == 1 || r == last
            })
            .collect();
        (
            kept,
            Some(RoundsRun {
                budget_s: None,
                ran: last,
                of,
                steps_per_round,
            }),
        )
    }
}

impl TrialResult {
    pub(crate) fn verdict_for(status: Status, severity: Severity) -> String {
        match status {
            Status::Fail => severity.as_str().to_string(),
            s => s.as_str().to_string(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub(crate) struct Summary {
    pub(crate) total: usize,
    pub(crate) pass: usize,
    pub(crate) fail: usize,
    pub(crate) skip: usize,
    pub(crate) error: usize,
    /// Expected failures of a mechanism (not counted against the target).
    pub(crate) xfail: usize,
    /// Failures by severity.
    pub(crate) unsafe_failures: usize,
    pub(crate) divergent_failures: usize,
    pub(crate) info_failures: usize,
    pub(crate) duration_ms: f64,
}

impl Summary {
    pub(crate) fn of(results: &[TrialResult], duration_ms: f64) -> Self {
        let mut s = Summary {
            total: results.len(),
            duration_ms,
            ..Summary::default()
        };
        for r in results {
            match r.status {
                Status::Pass => s.pass += 1,
                Status::Skip => s.skip += 1,
                Status::Error => s.error += 1,
                Status::Xfail => s.xfail += 1,
                Status::Fail => {
                    s.fail += 1;
                    match r.severity {
                        Severity::Unsafe => s.unsafe_failures += 1,
                        Severity::Divergent => s.divergent_failures += 1,
                        Severity::Info => s.info_failures += 1,
                    }
                }
            }
        }
        s
    }

    pub(crate) fn conforms(&self) -> bool {
        self.fail == 0 && self.error == 0
    }
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub(crate) struct CatalogInfo {
    /// Where the scenarios came from.
    pub(crate) source: String,
    pub(crate) scenarios: usize,
    /// FNV-1a over the scenario files, to tell catalogs apart.
    pub(crate) hash: String,
}

/// The results of the scenarios on one target.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Report {
    pub(crate) schema_version: u32,
    pub(crate) lockcheck_version: String,
    pub(crate) generated_at: String,
    /// The command line that produced the report.
    pub(crate) command: String,
    /// The target tested.
    pub target: TargetIdentity,
    pub(crate) catalog: CatalogInfo,
    pub(crate) summary: Summary,
    /// What the results mean for the applications of `apps/` (safe,
    /// degraded, unsafe, not checked), each with its reasons.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) applications: Vec<crate::record::apps::AppVerdict>,
    /// Lock latency and throughput on the target (`--bench`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub benchmarks: Option<crate::record::bench::Bench>,
    /// A stress phase's figures and findings (`--stress`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stress: Option<crate::record::stress::Stress>,
    /// With `--repeat N`: how many runs, and the trials whose outcome changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat: Option<Repeat>,
    /// With `--shuffle` or `--seed`: the seed of this run's trial order
    /// (`lockcheck run --seed N` starts the trials in the same order again).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) order_seed: Option<u64>,
    /// Every trial, whatever its status, by family, scenario and mechanism.
    pub results: Vec<TrialResult>,
}

impl Report {
    pub(crate) fn new(
        target: TargetIdentity,
        catalog: CatalogInfo,
        mut results: Vec<TrialResult>,
        duration_ms: f64,
    ) -> Self {
        results.sort_by(|a, b| {
            (a.family, &a.scenario, a.mechanism).cmp(&(b.family, &b.scenario, b.mechanism))
        });
        let portable = crate::record::portable_here();
        let command = portable(&shell_words::join(std::env::args()));
        let mut target = target;
        target.path = portable(&target.path);
        let mut catalog = catalog;
        catalog.source = portable(&catalog.source);
        for r in &mut results {
            r.file = portable(&r.file);
            for step in &mut r.steps {
                for call in &mut step.calls {
                    *call = portable(call);
                }
            }
        }
        Report {
            schema_version: SCHEMA_VERSION,
            lockcheck_version: env!("CARGO_PKG_VERSION").to_string(),
            generated_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                .to_string(),
            command,
            summary: Summary::of(&results, duration_ms),
            target,
            catalog,
            applications: Vec::new(),
            benchmarks: None,
            stress: None,
            repeat: None,
            order_seed: None,
            results,
        }
    }

    /// The trials that ended with `status`.
    pub(crate) fn with_status(&self, status: Status) -> Vec<&TrialResult> {
        self.results.iter().filter(|x| x.status == status).collect()
    }

    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

/// The JSON Schema (draft-07) of JSON reports.
pub fn json_schema() -> schemars::Schema {
    schemars::generate::SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<Report>()
}

/// Reports and results for tests, here and in [`crate::render`].
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use std::path::Path;

    pub(crate) fn identity() -> TargetIdentity {
        crate::target::targets::identify("t", Path::new("/tmp"), "test")
    }

    pub(crate) fn result(
        scenario: &str,
        mech: Mechanism,
        status: Status,
        severity: Severity,
    ) -> TrialResult {
        TrialResult {
            id: format!("t::{scenario}::{mech}"),
            scenario: scenario.into(),
            mechanism: mech,
            family: Family::Exclusion,
            severity,
            status,
            verdict: TrialResult::verdict_for(status, severity),
            reason: (status == Status::Skip).then(|| "no byte ranges".to_string()),
            failure: (status == Status::Fail).then(|| Failure {
                step: 3,
                line: 12,
                col: 5,
                actors: vec!["b".into()],
                op: "lock exclusive on lock (posix)".into(),
                expected: "conflict (EAGAIN or EACCES)".into(),
                observed: "ok".into(),
                note: Some("two holders".into()),
                timed_out: false,
                owner_only: false,
                refused_only: false,
            }),
            summary: "why it matters".into(),
            reference: "fcntl(2)".into(),
            file: format!("scenarios/{scenario}.yaml"),
            started_ms: 0.0,
            duration_ms: 1.5,
            in_calls_ms: 0.0,
            actors: vec![],
            measurements: vec![],
            steps: vec![StepRecord {
                step: 3,
                line: 12,
                col: 5,
                actors: vec!["b".into()],
                op: "lock exclusive on lock (posix)".into(),
                calls: vec!["fcntl(3, F_SETLK, {F_WRLCK 0..EOF})".into()],
                expected: "conflict (EAGAIN or EACCES)".into(),
                observed: "ok".into(),
                passed: status != Status::Fail,
                start_ms: 1.0,
                elapsed_ms: 0.1,
                completed_after_ms: None,
                after_fault_ms: None,
                fault_step: None,
            }],
            teardown_problems: vec![],
            rounds: None,
        }
    }

    pub(crate) fn catalog() -> CatalogInfo {
        CatalogInfo {
            source: "scenarios".into(),
            scenarios: 2,
            hash: "0123456789abcdef".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{catalog, identity, result};
    use super::*;

    #[test]
    fn rounds_keep_the_first_and_the_last_that_ran() {
        let step = |n: usize| StepRecord {
            step: n,
            line: 1,
            col: 1,
            actors: vec![],
            op: String::new(),
            calls: vec![],
            expected: String::new(),
            observed: String::new(),
            passed: true,
            start_ms: 0.0,
            elapsed_ms: 0.0,
            completed_after_ms: None,
            after_fault_ms: None,
            fault_step: None,
        };
        // Failed in round 3 of 10 (at its second step), 4 steps a round.
        let steps: Vec<_> = (1..=10).map(step).collect();
        let (kept, r) = RoundsRun::compact(steps, 10, 4);
        let kept: Vec<usize> = kept.iter().map(|s| s.step).collect();
        assert_eq!(kept, [1, 2, 3, 4, 9, 10]);
        assert_eq!(
            r,
            Some(RoundsRun {
                budget_s: None,
                ran: 3,
                of: 10,
                steps_per_round: 4
            })
        );
        // No rounds, or nothing ran: as they are.
        assert_eq!(RoundsRun::compact(vec![step(1)], 1, 1).1, None);
        assert_eq!(RoundsRun::compact(vec![], 10, 4).1, None);
    }

    #[test]
    fn summary_counts_by_status_and_severity() {
        let r = Report::new(
            identity(),
            catalog(),
            vec![
                result("a", Mechanism::Posix, Status::Pass, Severity::Unsafe),
                result("a", Mechanism::Ofd, Status::Fail, Severity::Unsafe),
                result("b", Mechanism::Flock, Status::Skip, Severity::Divergent),
                result("b", Mechanism::Posix, Status::Fail, Severity::Divergent),
                result("b", Mechanism::Ofd, Status::Error, Severity::Divergent),
            ],
            10.0,
        );
        let s = &r.summary;
        assert_eq!((s.total, s.pass, s.fail, s.skip, s.error), (5, 1, 2, 1, 1));
        assert_eq!((s.unsafe_failures, s.divergent_failures), (1, 1));
        assert!(!s.conforms());
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).expect("json");
        assert_eq!(json["schema_version"], SCHEMA_VERSION);
        assert_eq!(json["results"][1]["verdict"], "unsafe");
        assert_eq!(
            json["results"][1]["failure"]["expected"],
            "conflict (EAGAIN or EACCES)"
        );
    }
}
