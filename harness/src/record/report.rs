//! Reports: one per target. JSON is canonical (`schema_version` says its
//! shape); Markdown is for people. Both carry the evidence: for every trial
//! the steps with the system calls made and what was observed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::spec::error::{Error, Result};
use crate::spec::scenario::{Family, Mechanism, Severity};
use crate::target::targets::TargetIdentity;

/// Bumped when the JSON report changes shape.
pub const SCHEMA_VERSION: u32 = 1;

/// The runs of `--repeat N`, and what changed between them.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Repeat {
    pub runs: usize,
    /// Trials (and application verdicts) whose outcome was not the same in every run.
    pub flaky: Vec<FlakyTrial>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct FlakyTrial {
    pub id: String,
    /// Each outcome seen, with the runs (from 1) that had it.
    pub outcomes: Vec<OutcomeRuns>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct OutcomeRuns {
    pub outcome: String,
    pub runs: Vec<usize>,
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

/// Outcomes of every trial over repeated runs.
#[derive(Debug, Default)]
pub struct Tally {
    runs: usize,
    /// Per target label: per trial id, the outcome of each run.
    seen: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

impl Tally {
    /// Count one run's reports.
    pub fn add(&mut self, pass: &[Report]) {
        self.runs += 1;
        for r in pass {
            let t = self.seen.entry(r.target.label.clone()).or_default();
            for x in &r.results {
                let o = match &x.failure {
                    Some(f) => format!("{} at step {}", x.verdict, f.step),
                    None => x.verdict.clone(),
                };
                t.entry(x.id.clone()).or_default().push(o);
            }
            for a in &r.applications {
                t.entry(format!("{}::application {}", r.target.label, a.app))
                    .or_default()
                    .push(a.verdict.as_str().to_string());
            }
        }
    }

    /// What changed on one target.
    pub fn repeat_of(&self, label: &str) -> Repeat {
        let mut flaky = Vec::new();
        for (id, outs) in self.seen.get(label).into_iter().flatten() {
            let same = outs.len() == self.runs && outs.windows(2).all(|w| w[0] == w[1]);
            if same {
                continue;
            }
            let mut by: Vec<OutcomeRuns> = Vec::new();
            for (k, o) in outs.iter().enumerate() {
                match by.iter_mut().find(|b| b.outcome == *o) {
                    Some(b) => b.runs.push(k + 1),
                    None => by.push(OutcomeRuns {
                        outcome: o.clone(),
                        runs: vec![k + 1],
                    }),
                }
            }
            if outs.len() < self.runs {
                by.push(OutcomeRuns {
                    outcome: "not run".into(),
                    runs: Vec::new(),
                });
            }
            flaky.push(FlakyTrial {
                id: id.clone(),
                outcomes: by,
            });
        }
        Repeat {
            runs: self.runs,
            flaky,
        }
    }
}

fn is_zero_ms(x: &f64) -> bool {
    *x == 0.0
}

/// Milliseconds, rounded to the microsecond.
pub fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// One step as it ran.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct StepRecord {
    pub step: usize,
    pub line: u32,
    pub col: u32,
    pub actors: Vec<String>,
    /// The step in the scenario's terms.
    pub op: String,
    /// The system calls made, one per actor.
    pub calls: Vec<String>,
    pub expected: String,
    pub observed: String,
    pub passed: bool,
    /// Milliseconds from the start of the trial.
    pub start_ms: f64,
    pub elapsed_ms: f64,
    /// For an awaited call: how long after the previous step ended it returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_after_ms: Option<f64>,
    /// For an awaited call after a fault: how long after the fault it returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_fault_ms: Option<f64>,
    /// The step of that fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault_step: Option<usize>,
}

/// A time measured during a trial, reported even when the trial passes.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Measurement {
    pub step: usize,
    pub what: String,
    pub ms: f64,
    /// The bound the scenario set (`within`, or the step timeout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bound_ms: Option<f64>,
}

/// The step where a trial failed.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Failure {
    pub step: usize,
    pub line: u32,
    pub col: u32,
    pub actors: Vec<String>,
    pub op: String,
    pub expected: String,
    pub observed: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The step did not complete in time (no reply, no lock wait seen): a
    /// hang or a slow target, not a lost lock, so never labelled unsafe.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
    /// Only the reported lock owner (F_GETLK's l_pid) was wrong: the lock,
    /// its type and range were right. A reporting error, never unsafe.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub owner_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Skip,
    Error,
    /// A failure the scenario declares inherent to the mechanism (a PID file
    /// cannot tell a reused PID from its holder): the method fails, not the target.
    Xfail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
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
pub struct ActorRecord {
    pub name: String,
    pub pid: Option<i32>,
    /// The host it ran on (`a` is the one lockcheck runs on).
    pub host: String,
}

/// One trial: target × scenario × mechanism.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TrialResult {
    /// `target::scenario::mechanism`, as `cargo test` names it.
    pub id: String,
    pub scenario: String,
    pub mechanism: Mechanism,
    pub family: Family,
    pub severity: Severity,
    pub status: Status,
    /// pass, skip, error, or for a failure its severity: unsafe, divergent, info.
    pub verdict: String,
    /// Why it was skipped, or what kept it from running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    pub summary: String,
    pub reference: String,
    pub file: String,
    /// When the trial started, in ms after its run began (trials that ran
    /// at once overlap; with --shuffle this shows the order drawn).
    #[serde(default)]
    pub started_ms: f64,
    pub duration_ms: f64,
    /// Of `duration_ms`, the time some actor on this host was inside a
    /// call the scenario asked for (locks, waits, writes); the rest is
    /// lockcheck's own cost (starting actors, messages, observing, teardown).
    #[serde(default, skip_serializing_if = "is_zero_ms")]
    pub in_calls_ms: f64,
    pub actors: Vec<ActorRecord>,
    pub steps: Vec<StepRecord>,
    /// Times measured (fault to lock, how long a contender waited), even when it passes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub measurements: Vec<Measurement>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub teardown_problems: Vec<String>,
}

impl TrialResult {
    pub fn verdict_for(status: Status, severity: Severity) -> String {
        match status {
            Status::Fail => severity.as_str().to_string(),
            s => s.as_str().to_string(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct Summary {
    pub total: usize,
    pub pass: usize,
    pub fail: usize,
    pub skip: usize,
    pub error: usize,
    /// Expected failures of a mechanism (not counted against the target).
    pub xfail: usize,
    /// Failures by severity.
    pub unsafe_failures: usize,
    pub divergent_failures: usize,
    pub info_failures: usize,
    pub duration_ms: f64,
}

impl Summary {
    pub fn of(results: &[TrialResult], duration_ms: f64) -> Self {
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

    pub fn conforms(&self) -> bool {
        self.fail == 0 && self.error == 0
    }
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct CatalogInfo {
    /// Where the scenarios came from.
    pub source: String,
    pub scenarios: usize,
    /// FNV-1a over the scenario files, to tell catalogs apart.
    pub hash: String,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Report {
    pub schema_version: u32,
    pub lockcheck_version: String,
    pub generated_at: String,
    /// The command line that produced the report.
    pub command: String,
    pub target: TargetIdentity,
    pub catalog: CatalogInfo,
    pub summary: Summary,
    /// What the results mean for the applications of `apps/` (safe,
    /// degraded, unsafe, not checked), each with its reasons.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub applications: Vec<crate::verdict::apps::AppVerdict>,
    /// Lock latency and throughput on the target (`--bench`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub benchmarks: Option<crate::engine::bench::Bench>,
    /// With `--repeat N`: how many runs, and the trials whose outcome changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat: Option<Repeat>,
    /// With `--shuffle` or `--seed`: the seed of this run's trial order
    /// (`lockcheck run --seed N` starts the trials in the same order again).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_seed: Option<u64>,
    pub results: Vec<TrialResult>,
}

impl Report {
    pub fn new(
        target: TargetIdentity,
        catalog: CatalogInfo,
        mut results: Vec<TrialResult>,
        duration_ms: f64,
    ) -> Self {
        results.sort_by(|a, b| {
            (a.family, &a.scenario, a.mechanism).cmp(&(b.family, &b.scenario, b.mechanism))
        });
        let command = shell_words::join(std::env::args());
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
            repeat: None,
            order_seed: None,
            results,
        }
    }

    /// With the verdicts of these application profiles.
    pub fn with_apps(mut self, apps: &crate::verdict::apps::Apps) -> Self {
        self.applications = crate::verdict::apps::verdicts(apps, &self.results);
        self
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// Write `LABEL.json`, `LABEL.md` and `LABEL.junit.xml` into `dir`;
    /// returns their paths.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let json = dir.join(format!("{}.json", self.target.label));
        let md = dir.join(format!("{}.md", self.target.label));
        let xml = dir.join(format!("{}.junit.xml", self.target.label));
        write_atomically(&json, &(self.to_json() + "\n"))?;
        write_atomically(&md, &markdown(self))?;
        write_atomically(&xml, &junit(self))?;
        Ok(vec![json, md, xml])
    }
}

/// The report as JUnit XML, for CI systems: one test suite per target, one
/// test case per trial (`scenario::mechanism`, class = family). A failure's
/// type is its severity (unsafe, divergent, info); an expected failure of a
/// method (xfail) is reported as skipped, with the reason.
pub fn junit(r: &Report) -> String {
    let mut report = quick_junit::Report::new("lockcheck");
    report.add_test_suite(junit_suite(r));
    report
        .to_string()
        .unwrap_or_else(|e| format!("<!-- lockcheck could not write JUnit XML: {e} -->\n"))
}

fn junit_suite(r: &Report) -> quick_junit::TestSuite {
    use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};
    let secs = |ms: f64| std::time::Duration::from_secs_f64((ms / 1000.0).max(0.0));
    let mut suite = TestSuite::new(r.target.label.as_str());
    suite.set_time(secs(r.summary.duration_ms));
    suite.add_property(("fs_type", r.target.fs_type.as_str()));
    suite.add_property(("path", r.target.path.as_str()));
    suite.add_property(("kernel", r.target.kernel.as_str()));
    suite.add_property(("lockcheck_version", r.lockcheck_version.as_str()));
    suite.add_property(("catalog_hash", r.catalog.hash.as_str()));
    if let Some(m) = &r.target.mount {
        suite.add_property(("mount_source", m.source.as_str()));
        suite.add_property(("mount_options", m.super_options.as_str()));
    }
    for a in &r.applications {
        suite.add_property((
            format!("application {}", a.app).as_str(),
            a.verdict.as_str(),
        ));
    }
    for t in &r.results {
        let status = match t.status {
            Status::Pass => TestCaseStatus::success(),
            Status::Fail => {
                let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
                st.set_type(t.severity.as_str());
                if let Some(f) = &t.failure {
                    st.set_message(format!(
                        "{}: step {} (line {}) {}: expected {}, observed {}",
                        t.severity.as_str().to_uppercase(),
                        f.step,
                        f.line,
                        f.op,
                        f.expected,
                        f.observed
                    ));
                }
                st.set_description(format!("{}\n\nReference: {}", t.summary, t.reference));
                st
            }
            Status::Error => {
                let mut st = TestCaseStatus::non_success(NonSuccessKind::Error);
                st.set_message(t.reason.clone().unwrap_or_else(|| "error".into()));
                st
            }
            Status::Skip => {
                let mut st = TestCaseStatus::skipped();
                st.set_message(t.reason.clone().unwrap_or_else(|| "skipped".into()));
                st
            }
            Status::Xfail => {
                let mut st = TestCaseStatus::skipped();
                st.set_type("xfail");
                st.set_message(format!(
                    "expected failure of the method: {}",
                    t.reason.clone().unwrap_or_default()
                ));
                st
            }
        };
        let mut case = TestCase::new(format!("{}::{}", t.scenario, t.mechanism), status);
        case.set_classname(format!("{}.{}", r.target.label, t.family.as_str()));
        case.set_time(secs(t.duration_ms));
        for m in &t.measurements {
            case.add_property((
                format!("step {}: {}", m.step, m.what).as_str(),
                format!("{} ms", m.ms).as_str(),
            ));
        }
        suite.add_test_case(case);
    }
    suite
}

/// One JUnit XML file with a test suite per target.
pub fn write_junit(reports: &[Report], path: &Path) -> Result<PathBuf> {
    let mut all = quick_junit::Report::new("lockcheck");
    for r in reports {
        all.add_test_suite(junit_suite(r));
    }
    let text = all
        .to_string()
        .map_err(|e| Error::usage(format!("cannot render JUnit XML: {e}"), None))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    write_atomically(path, &text)?;
    Ok(path.to_path_buf())
}

/// The JSON Schema (draft-07) of JSON reports.
pub fn json_schema() -> schemars::Schema {
    schemars::generate::SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<Report>()
}

fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp~",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("report")
    ));
    std::fs::write(&tmp, text).map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn cell(r: &TrialResult) -> String {
    match r.status {
        Status::Pass => "pass".into(),
        Status::Skip => "skip".into(),
        Status::Error => "**error**".into(),
        Status::Xfail => "xfail".into(),
        Status::Fail => format!("**{}**", r.severity.as_str().to_uppercase()),
    }
}

/// The Markdown report.
pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let t = &r.target;
    let _ = writeln!(s, "# lockcheck report: `{}`\n", t.label);
    let sm = &r.summary;
    let verdict = if sm.conforms() {
        "**conforms**: every trial passed or was skipped with a reason".to_string()
    } else {
        format!(
            "**does not conform**: {} failed ({} unsafe, {} divergent, {} info), {} errored",
            sm.fail, sm.unsafe_failures, sm.divergent_failures, sm.info_failures, sm.error
        )
    };
    let _ = writeln!(s, "{verdict}.\n");
    let _ = writeln!(
        s,
        "{} trials: {} pass, {} fail, {} skip, {} error, {} expected failures of a method, in {:.0} ms.\n",
        sm.total, sm.pass, sm.fail, sm.skip, sm.error, sm.xfail, sm.duration_ms
    );
    if !r.applications.is_empty() {
        let _ = writeln!(s, "## Applications\n");
        let _ = writeln!(s, "| application | verdict | why |\n|---|---|---|");
        for a in &r.applications {
            let mut cell = if a.reasons.is_empty() {
                format!("the {} trials it relies on that ran here pass", a.checked)
            } else {
                a.reasons.join("; ")
            };
            if !a.unchecked.is_empty() {
                let names: Vec<&str> = a
                    .unchecked
                    .iter()
                    .map(|u| u.split(": ").next().unwrap_or(u))
                    .collect();
                cell.push_str(&format!(" — not checked here: {}", names.join(", ")));
                if a.verdict == crate::verdict::apps::AppStatus::NotChecked {
                    cell = format!("not checked here: {}", a.unchecked.join("; "));
                }
            }
            let verdict = match a.verdict {
                crate::verdict::apps::AppStatus::Unsafe => "**UNSAFE**".to_string(),
                crate::verdict::apps::AppStatus::Degraded => "**degraded**".to_string(),
                v => v.as_str().to_string(),
            };
            let _ = writeln!(s, "| {} | {verdict} | {} |", a.title, md_escape(&cell));
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "## Target\n");
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(s, "| label | `{}` |", t.label);
    let _ = writeln!(s, "| path | `{}` |", md_escape(&t.path));
    let _ = writeln!(s, "| how chosen | {} |", md_escape(&t.provision));
    let _ = writeln!(
        s,
        "| filesystem | {} (statfs {}) |",
        t.fs_type, t.statfs_type
    );
    if let Some(m) = &t.mount {
        let _ = writeln!(
            s,
            "| mount | `{}` on `{}` type {}{} |",
            md_escape(&m.source),
            md_escape(&m.mount_point),
            m.fs_type,
            m.subtype
                .as_ref()
                .map(|x| format!(" (subtype {x})"))
                .unwrap_or_default()
        );
        let _ = writeln!(s, "| mount options | `{}` |", md_escape(&m.mount_options));
        let _ = writeln!(
            s,
            "| superblock options | `{}` |",
            md_escape(&m.super_options)
        );
    }
    let _ = writeln!(s, "| kernel | {} ({}) |", t.kernel, t.arch);
    let _ = writeln!(
        s,
        "| waiters listed in /proc/locks | {} |",
        if t.lock_lists { "yes" } else { "no" }
    );
    let _ = writeln!(s, "| PID reuse | {} |", md_escape(&t.pid_reuse));
    let _ = writeln!(s, "| hosts | {} |", md_escape(&t.hosts.join(", ")));
    if !t.lab_faults.is_empty() {
        let _ = writeln!(
            s,
            "| lab faults | {} |",
            md_escape(&t.lab_faults.join(", "))
        );
    }
    let _ = writeln!(s, "| lease (bounds in leases) | {} s |", t.lease_s);
    let _ = writeln!(s, "| lockcheck | {} |", r.lockcheck_version);
    let _ = writeln!(
        s,
        "| catalog | {} ({} scenarios, hash {}) |",
        md_escape(&r.catalog.source),
        r.catalog.scenarios,
        r.catalog.hash
    );
    let _ = writeln!(s, "| generated | {} |", r.generated_at);
    let _ = writeln!(s, "| command | `{}` |\n", md_escape(&r.command));

    let _ = writeln!(s, "## Results by family\n");
    let mechs: Vec<Mechanism> = Mechanism::ALL
        .into_iter()
        .filter(|m| r.results.iter().any(|x| x.mechanism == *m))
        .collect();
    let mut families: Vec<Family> = r.results.iter().map(|x| x.family).collect();
    families.sort();
    families.dedup();
    for fam in families {
        let _ = writeln!(s, "### {}\n", fam.title());
        let _ = write!(s, "| scenario | severity |");
        for m in &mechs {
            let _ = write!(s, " {m} |");
        }
        let _ = write!(s, "\n|---|---|");
        for _ in &mechs {
            let _ = write!(s, "---|");
        }
        let _ = writeln!(s);
        let mut names: Vec<&str> = r
            .results
            .iter()
            .filter(|x| x.family == fam)
            .map(|x| x.scenario.as_str())
            .collect();
        names.dedup();
        for name in names {
            let row: Vec<&TrialResult> = r.results.iter().filter(|x| x.scenario == name).collect();
            let sev = row.first().map(|x| x.severity.as_str()).unwrap_or("");
            let _ = write!(s, "| `{name}` | {sev} |");
            for m in &mechs {
                match row.iter().find(|x| x.mechanism == *m) {
                    Some(x) => {
                        let _ = write!(s, " {} |", cell(x));
                    }
                    None => {
                        let _ = write!(s, " |");
                    }
                }
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(s);
    }

    let problems: Vec<&TrialResult> = r
        .results
        .iter()
        .filter(|x| matches!(x.status, Status::Fail | Status::Error))
        .collect();
    if !problems.is_empty() {
        let _ = writeln!(s, "## Failures\n");
        for x in problems {
            let _ = writeln!(s, "### `{}` — {}\n", x.id, x.verdict);
            if let Some(f) = &x.failure {
                let _ = writeln!(
                    s,
                    "At step {} (`{}` line {}): {} — {}\n",
                    f.step,
                    x.file,
                    f.line,
                    f.actors.join(", "),
                    md_escape(&f.op)
                );
                let _ = writeln!(s, "- **expected**: {}", md_escape(&f.expected));
                let _ = writeln!(s, "- **observed**: {}", md_escape(&f.observed));
                if let Some(n) = &f.note {
                    let _ = writeln!(s, "- **step note**: {}", md_escape(n));
                }
                if f.owner_only {
                    let _ = writeln!(
                        s,
                        "- **wrong owner only**: the conflicting lock was found with the right type and range; only its reported owner (l_pid) differs, so it is not labelled unsafe"
                    );
                }
                if f.timed_out {
                    let _ = writeln!(
                        s,
                        "- **timed out**: the step did not complete in time; no lost lock or data was seen, so it is not labelled unsafe"
                    );
                }
            }
            if let Some(reason) = &x.reason {
                let _ = writeln!(s, "- **error**: {}", md_escape(reason));
            }
            let _ = writeln!(s, "- **why it matters**: {}", md_escape(&x.summary));
            let _ = writeln!(s, "- **reference**: {}\n", md_escape(&x.reference));
            if !x.steps.is_empty() {
                let _ = writeln!(s, "| # | actor | step | calls | expected | observed | ms |\n|---|---|---|---|---|---|---|");
                for st in &x.steps {
                    let _ = writeln!(
                        s,
                        "| {}{} | {} | {} | `{}` | {} | {} | {:.2} |",
                        st.step,
                        if st.passed { "" } else { " ✗" },
                        st.actors.join(", "),
                        md_escape(&st.op),
                        md_escape(&st.calls.join("; ")),
                        md_escape(&st.expected),
                        md_escape(&st.observed),
                        st.elapsed_ms
                    );
                }
                let _ = writeln!(s);
            }
        }
    }

    let xfails: Vec<&TrialResult> = r
        .results
        .iter()
        .filter(|x| x.status == Status::Xfail)
        .collect();
    if !xfails.is_empty() {
        let _ = writeln!(s, "## Expected failures of a method\n");
        let _ = writeln!(
            s,
            "These mechanisms cannot do what the scenario asks, by design, on any target: they show why kernel locks are preferable.\n"
        );
        for x in xfails {
            let _ = writeln!(
                s,
                "- `{}`: {}",
                x.id,
                md_escape(x.reason.as_deref().unwrap_or(""))
            );
            if let Some(f) = &x.failure {
                let _ = writeln!(
                    s,
                    "  (step {}: expected {}, observed {})",
                    f.step,
                    md_escape(&f.expected),
                    md_escape(&f.observed)
                );
            }
        }
        let _ = writeln!(s);
    }

    let measured: Vec<&TrialResult> = r
        .results
        .iter()
        .filter(|x| !x.measurements.is_empty())
        .collect();
    if !measured.is_empty() {
        let _ = writeln!(s, "## Measurements\n");
        let _ = writeln!(
            s,
            "| trial | step | what | ms | bound ms |\n|---|---|---|---|---|"
        );
        for x in measured {
            for m in &x.measurements {
                let _ = writeln!(
                    s,
                    "| `{}` | {} | {} | {:.3} | {} |",
                    x.id,
                    m.step,
                    md_escape(&m.what),
                    m.ms,
                    m.bound_ms.map(|b| format!("{b:.0}")).unwrap_or_default()
                );
            }
        }
        let _ = writeln!(s);
    }

    if let Some(rep) = &r.repeat {
        let _ = writeln!(s, "## Repeated runs\n");
        if rep.flaky.is_empty() {
            let _ = writeln!(
                s,
                "The catalog ran {} times; no trial changed its outcome.\n",
                rep.runs
            );
        } else {
            let _ = writeln!(
                s,
                "The catalog ran {} times; these changed their outcome (flaky):\n",
                rep.runs
            );
            for f in &rep.flaky {
                let _ = writeln!(s, "- `{}`: {}", f.id, md_escape(&f.describe()));
            }
            let _ = writeln!(s);
        }
    }

    if let Some(b) = &r.benchmarks {
        let _ = writeln!(s, "## Lock latency\n");
        let _ = writeln!(
            s,
            "Measured by `lockcheck bench` after the trials: lock+unlock by one process \
             (no contention); hand-off from a holder's unlock to a waiting process's \
             return; locks granted per second with {} processes contending. About {:.0} ms \
             per measurement.\n",
            b.contenders, b.budget_ms
        );
        s.push_str(&crate::engine::bench::markdown(b));
        let _ = writeln!(s);
    }

    let skipped: Vec<&TrialResult> = r
        .results
        .iter()
        .filter(|x| x.status == Status::Skip)
        .collect();
    if !skipped.is_empty() {
        let _ = writeln!(s, "## Skipped\n");
        for x in skipped {
            let _ = writeln!(
                s,
                "- `{}`: {}",
                x.id,
                md_escape(x.reason.as_deref().unwrap_or(""))
            );
        }
        let _ = writeln!(s);
    }
    s
}

/// A console table: one line per target.
pub fn console_summary(reports: &[Report]) -> String {
    let mut s = String::new();
    let w = reports
        .iter()
        .map(|r| r.target.label.len())
        .max()
        .unwrap_or(0)
        .max(12);
    let _ = writeln!(
        s,
        "{:<w$} {:<10} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>9}  verdict",
        "target", "fs", "trials", "pass", "fail", "skip", "xfail", "error", "ms"
    );
    for r in reports {
        let sm = &r.summary;
        let verdict = if sm.conforms() {
            "conforms".to_string()
        } else {
            format!(
                "{} unsafe, {} divergent, {} info, {} error",
                sm.unsafe_failures, sm.divergent_failures, sm.info_failures, sm.error
            )
        };
        let _ = writeln!(
            s,
            "{:<w$} {:<10} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>9.0}  {}",
            r.target.label,
            r.target.fs_type,
            sm.total,
            sm.pass,
            sm.fail,
            sm.skip,
            sm.xfail,
            sm.error,
            sm.duration_ms,
            verdict
        );
    }
    // What it means for applications, a line per target.
    for r in reports.iter().filter(|r| !r.applications.is_empty()) {
        let mut parts = Vec::new();
        for status in [
            crate::verdict::apps::AppStatus::Unsafe,
            crate::verdict::apps::AppStatus::Degraded,
            crate::verdict::apps::AppStatus::Incomplete,
            crate::verdict::apps::AppStatus::Safe,
            crate::verdict::apps::AppStatus::NotChecked,
        ] {
            let names: Vec<&str> = r
                .applications
                .iter()
                .filter(|a| a.verdict == status)
                .map(|a| a.app.as_str())
                .collect();
            if !names.is_empty() {
                parts.push(format!("{} {}", status.as_str(), names.join(", ")));
            }
        }
        let _ = writeln!(
            s,
            "{:<w$} applications: {}",
            r.target.label,
            parts.join("; ")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> TargetIdentity {
        crate::target::targets::identify("t", Path::new("/tmp"), "test")
    }

    fn result(scenario: &str, mech: Mechanism, status: Status, severity: Severity) -> TrialResult {
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
        }
    }

    fn catalog() -> CatalogInfo {
        CatalogInfo {
            source: "scenarios".into(),
            scenarios: 2,
            hash: "0123456789abcdef".into(),
        }
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

    #[test]
    fn junit_has_a_case_per_trial_with_severity_and_reasons() {
        let r = Report::new(
            identity(),
            catalog(),
            vec![
                result("a", Mechanism::Posix, Status::Pass, Severity::Unsafe),
                result("a", Mechanism::Ofd, Status::Fail, Severity::Unsafe),
                result("a", Mechanism::Flock, Status::Skip, Severity::Unsafe),
                result("b", Mechanism::Posix, Status::Xfail, Severity::Info),
                result("b", Mechanism::Ofd, Status::Error, Severity::Info),
            ],
            10.0,
        );
        let xml = junit(&r);
        assert!(
            xml.contains(r#"tests="5" skipped="2" failures="1" errors="1""#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<testcase name="a::ofd" classname="t.exclusion""#),
            "{xml}"
        );
        assert!(xml.contains(r#"type="unsafe""#), "{xml}");
        assert!(
            xml.contains("UNSAFE: step 3 (line 12) lock exclusive on lock (posix): expected conflict (EAGAIN or EACCES), observed ok"),
            "{xml}"
        );
        assert!(xml.contains("no byte ranges"), "{xml}");
        assert!(xml.contains(r#"type="xfail""#), "{xml}");
    }

    #[test]
    fn markdown_shows_grid_failures_and_skips() {
        let r = Report::new(
            identity(),
            catalog(),
            vec![
                result("a", Mechanism::Posix, Status::Pass, Severity::Unsafe),
                result("a", Mechanism::Ofd, Status::Fail, Severity::Unsafe),
                result("a", Mechanism::Flock, Status::Skip, Severity::Unsafe),
            ],
            10.0,
        );
        let md = markdown(&r);
        assert!(md.contains("**does not conform**"), "{md}");
        assert!(
            md.contains("| `a` | unsafe | skip | pass | **UNSAFE** |"),
            "{md}"
        );
        assert!(md.contains("### `t::a::ofd` — unsafe"), "{md}");
        assert!(
            md.contains("- **expected**: conflict (EAGAIN or EACCES)"),
            "{md}"
        );
        assert!(md.contains("- **observed**: ok"), "{md}");
        assert!(md.contains("- `t::a::flock`: no byte ranges"), "{md}");
        let table = console_summary(std::slice::from_ref(&r));
        assert!(table.contains("1 unsafe"), "{table}");
    }

    #[test]
    fn writes_all_three_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = Report::new(
            identity(),
            catalog(),
            vec![result(
                "a",
                Mechanism::Posix,
                Status::Pass,
                Severity::Unsafe,
            )],
            1.0,
        );
        let files = r.write(dir.path()).expect("write");
        assert_eq!(files.len(), 3);
        for f in ["t.json", "t.md", "t.junit.xml"] {
            assert!(dir.path().join(f).is_file(), "{f}");
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("ls").count(),
            3,
            "no temporary files left"
        );
        assert_eq!(ms(std::time::Duration::from_nanos(1_234_567)), 1.235);
    }
}
