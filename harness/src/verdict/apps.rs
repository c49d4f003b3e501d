//! Application profiles and verdicts: which trials an application's
//! correctness rests on, given how it locks, and what a report's results
//! mean for it — safe, degraded (works, with a cost: slow recovery, a known
//! weakness of its method) or unsafe (a trial it needs lost exclusion or
//! data). Profiles are data: `apps/*.yaml`, each citing where the
//! application's locking is documented.

use std::path::Path;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::plan::catalog::Catalog;
use crate::plan::resolve::Applicability;
use crate::record::apps::{AppStatus, AppVerdict};
use crate::record::report::{Status, TrialResult};
use crate::spec::error::{Error, Result, ScenarioError};
use crate::spec::loc::{Located, Pos};
use crate::spec::scenario::{Dur, Mechanism, Severity};
use crate::target::targets::TargetIdentity;

/// One application profile file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(title = "lockcheck application profile")]
pub(crate) struct AppProfile {
    /// kebab-case, the file name without `.yaml`.
    pub(crate) name: Located<String>,
    /// How people call it (`Prometheus TSDB`).
    pub(crate) title: String,
    /// How it locks, and what goes wrong when locking does.
    // Part of the profile format (and its schema), for people: no verdict reads it.
    #[allow(dead_code)]
    pub(crate) summary: String,
    /// Where its locking behaviour is documented (source files, manuals).
    pub(crate) reference: String,
    /// Trials it relies on: a failure makes it unsafe (or, for a divergent
    /// or informational failure, degraded).
    pub(crate) needs: Vec<Located<AppNeed>>,
    /// Measured recoveries: slower than `degraded-after`, or none, makes it degraded.
    #[serde(default)]
    pub(crate) recovery: Vec<Located<AppRecovery>>,
    /// Configurations of the application that the application lab runs and
    /// this profile's verdict does not cover (it assumes another), each with
    /// why: the lab shows them without a comparison.
    #[serde(default)]
    pub(crate) unjudged: Vec<AppUnjudged>,
    /// Facts about the target that decide the verdict through the
    /// application's own design, whatever the locks do (it takes no lock on
    /// NFS; its exclusion lives in shared memory or in PIDs, which do not
    /// cross hosts).
    #[serde(default)]
    pub(crate) target_facts: Vec<AppTargetFact>,
}

/// A fact about the target that makes the application unsafe or degraded
/// by its own design.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct AppTargetFact {
    pub(crate) fact: TargetFact,
    /// `unsafe` or `degraded`.
    pub(crate) verdict: FactVerdict,
    /// What the application does there, and where that is documented.
    pub(crate) why: String,
    /// Where a trial fails on the target, the application behaves otherwise
    /// than the fact says: this verdict and reason instead.
    #[serde(default)]
    pub(crate) unless: Option<FactUnless>,
    /// Another outcome the application was seen to have for the same
    /// cause, depending on timing (LMDB on NFS: two writers, or a process
    /// waiting on a mutex no process on its host will release). The verdict
    /// stays `verdict`, the worse; the application lab accepts either.
    #[serde(default)]
    pub(crate) or_observed: Option<FactAlternative>,
}

/// `or-observed` of a target fact.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct FactAlternative {
    /// `unsafe` or `degraded`: what the application lab may observe instead.
    pub(crate) verdict: FactVerdict,
    /// When and why the application does that.
    pub(crate) why: String,
}

impl AppTargetFact {
    /// The start of the reason a verdict gives for this fact as written
    /// (not its `unless`): "unsafe: shared by hosts — ".
    pub(crate) fn reason_prefix(&self) -> String {
        format!(
            "{}: {} — ",
            self.verdict.status().as_str(),
            self.fact.describe()
        )
    }
}

impl FactVerdict {
    pub(crate) fn status(self) -> AppStatus {
        match self {
            FactVerdict::Unsafe => AppStatus::Unsafe,
            FactVerdict::Degraded => AppStatus::Degraded,
        }
    }
}

/// `unless` of a target fact: a trial whose failure changes what the fact
/// means for the application.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct FactUnless {
    /// The trial (it fails on the target: `fail` or `xfail`).
    pub(crate) fails: FactTrial,
    /// `unsafe` or `degraded`: the verdict there instead.
    pub(crate) verdict: FactVerdict,
    /// What the application does then.
    pub(crate) why: String,
}

/// A trial named by a target fact.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct FactTrial {
    pub(crate) scenario: Located<String>,
    pub(crate) mechanism: Located<Mechanism>,
}

/// What is known about a target from its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum TargetFact {
    /// statfs says NFS (f_type 0x6969).
    Nfs,
    /// The target is used from more than one host (`--host`): one
    /// filesystem, several machines.
    SharedByHosts,
}

impl TargetFact {
    fn holds(self, t: &TargetIdentity) -> bool {
        match self {
            TargetFact::Nfs => t.statfs_type.starts_with("0x6969 "),
            TargetFact::SharedByHosts => t.hosts.len() > 1,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            TargetFact::Nfs => "on NFS",
            TargetFact::SharedByHosts => "shared by hosts",
        }
    }
}

/// The verdict a target fact gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum FactVerdict {
    Unsafe,
    Degraded,
}

/// A configuration of the application the verdict does not cover.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct AppUnjudged {
    /// The application lab's name for it (`debian-default`).
    pub(crate) variant: String,
    /// Why the verdict does not apply to it.
    pub(crate) why: String,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct AppNeed {
    pub(crate) scenario: Located<String>,
    pub(crate) mechanism: Located<Mechanism>,
    /// Why the application depends on it.
    pub(crate) why: String,
    /// Only a failure that lost exclusion or data (unsafe) counts: the
    /// application needs what the trial checks, not its pace. A divergent
    /// failure (a counter that did not finish in time while waiters polled)
    /// is shown, not counted.
    #[serde(default)]
    pub(crate) integrity_only: bool,
    /// Other trials any one of which, passing, meets this need as well: the
    /// application has a second lock that does the same job (etcd's WAL lock
    /// where bbolt's flock does not cross hosts). The need counts as the best
    /// of them: met when one passes, else the mildest failure; an errored
    /// alternative leaves it incomplete.
    #[serde(default)]
    pub(crate) or: Vec<NeedAlternative>,
}

/// A trial that meets a need in place of the one it names.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct NeedAlternative {
    pub(crate) scenario: Located<String>,
    pub(crate) mechanism: Located<Mechanism>,
    /// How the application is covered by it instead.
    pub(crate) why: String,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct AppRecovery {
    pub(crate) scenario: Located<String>,
    pub(crate) mechanism: Located<Mechanism>,
    /// Recovery slower than this degrades the application.
    pub(crate) degraded_after: Located<Dur>,
    /// What the application does while the lock is held: `wait` for it
    /// (a blocking call, or retrying until it gets it), or `fail` (it
    /// exits or returns an error at once): how a slow recovery shows.
    pub(crate) when_held: WhenHeld,
    pub(crate) why: String,
}

/// What an application does when its lock is held by someone else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum WhenHeld {
    /// It waits (blocks, or retries) until it gets the lock.
    Wait,
    /// It gives up at once: exits, or returns an error to its caller.
    Fail,
}

impl WhenHeld {
    /// How a lock that is not recovered shows to the application's users.
    fn until_recovered(self) -> &'static str {
        match self {
            WhenHeld::Wait => "a restart waits for the lock until it is recovered",
            WhenHeld::Fail => "every restart fails at once until the lock is recovered (the application does not wait)",
        }
    }
}

/// The profiles a run uses.
pub struct Apps {
    pub(crate) profiles: Vec<AppProfile>,
}

impl Apps {
    /// No profiles: reports without application verdicts.
    pub fn none() -> Self {
        Apps {
            profiles: Vec::new(),
        }
    }
}

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_apps.rs"));
}

fn profile_error(file: &str, pos: Pos, msg: impl Into<String>) -> ScenarioError {
    ScenarioError::new(file, pos, msg)
}

/// Parse one profile and check it against the catalog: every trial it
/// names must exist.
pub(crate) fn parse_profile(
    file: &str,
    text: &str,
    expected_name: Option<&str>,
    catalog: &Catalog,
) -> std::result::Result<AppProfile, ScenarioError> {
    let p: AppProfile = crate::plan::catalog::from_yaml(file, text).map_err(|e| {
        // The parser's hints speak of scenario files.
        if e.hint.as_deref().is_some_and(|h| h.contains("scenarios/README.md")) {
            e.with_hint(
                "a profile's keys: name, title, summary, reference, needs, recovery, unjudged, target-facts (apps/app.schema.json)",
            )
        } else {
            e
        }
    })?;
    if let Some(n) = expected_name {
        if n != p.name.value {
            return Err(profile_error(
                file,
                p.name.pos,
                format!(
                    "the profile is named `{}` but its file is `{n}.yaml`",
                    p.name.value
                ),
            )
            .with_hint("a profile's name and file name are the same"));
        }
    }
    if p.needs.is_empty() {
        return Err(profile_error(
            file,
            p.name.pos,
            "a profile needs at least one trial in `needs`",
        ));
    }
    let check = |scenario: &Located<String>, mech: &Located<Mechanism>| {
        let Some(s) = catalog
            .scenarios
            .iter()
            .find(|s| s.name() == scenario.value)
        else {
            return Err(profile_error(
                file,
                scenario.pos,
                format!("no scenario `{}` in the catalog", scenario.value),
            )
            .with_hint("`lockcheck list` shows the scenarios"));
        };
        match s.plans.get(&mech.value) {
            Some(Applicability::Applies(_)) => Ok(()),
            _ => Err(profile_error(
                file,
                mech.pos,
                format!(
                    "scenario `{}` does not run for {}",
                    scenario.value,
                    mech.value.as_str()
                ),
            )
            .with_hint("`lockcheck list` shows each scenario's mechanisms")),
        }
    };
    for n in &p.needs {
        check(&n.scenario, &n.mechanism)?;
        for a in &n.or {
            check(&a.scenario, &a.mechanism)?;
        }
    }
    for r in &p.recovery {
        check(&r.scenario, &r.mechanism)?;
    }
    for u in p.target_facts.iter().filter_map(|f| f.unless.as_ref()) {
        check(&u.fails.scenario, &u.fails.mechanism)?;
    }
    Ok(p)
}

/// The profiles: from `dir`, else `./apps` when run in the repository, else
/// the ones built into the binary.
pub fn load(dir: Option<&Path>, catalog: &Catalog) -> Result<Apps> {
    let dir = match dir {
        Some(d) => Some(d.to_path_buf()),
        None => {
            let local = Path::new("apps");
            (local.is_dir() && Path::new("scenarios").is_dir()).then(|| local.to_path_buf())
        }
    };
    let mut errors = Vec::new();
    let mut profiles = Vec::new();
    match &dir {
        Some(d) => {
            let mut files: Vec<_> = std::fs::read_dir(d)
                .map_err(|e| Error::io(format!("reading {}", d.display()), e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
                .collect();
            files.sort();
            for f in files {
                let shown = f.display().to_string();
                let stem = f.file_stem().and_then(|s| s.to_str()).map(str::to_string);
                match std::fs::read_to_string(&f) {
                    Ok(text) => match parse_profile(&shown, &text, stem.as_deref(), catalog) {
                        Ok(p) => profiles.push(p),
                        Err(e) => errors.push(e),
                    },
                    Err(e) => errors.push(profile_error(
                        &shown,
                        Pos::UNKNOWN,
                        format!("cannot read it: {e}"),
                    )),
                }
            }
        }
        None => {
            for (name, text) in embedded::FILES {
                let stem = name.strip_suffix(".yaml");
                match parse_profile(&format!("apps/{name}"), text, stem, catalog) {
                    Ok(p) => profiles.push(p),
                    Err(e) => errors.push(e),
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(Error::Scenarios(errors));
    }
    Ok(Apps { profiles })
}

fn find<'a>(
    results: &'a [TrialResult],
    scenario: &str,
    mech: Mechanism,
) -> Option<&'a TrialResult> {
    results
        .iter()
        .find(|r| r.scenario == scenario && r.mechanism == mech)
}

fn failure_text(r: &TrialResult) -> String {
    match &r.failure {
        Some(f) => format!(
            "{}::{} {} (step {}: expected {}, observed {})",
            r.scenario,
            r.mechanism,
            r.verdict,
            f.step,
            f.expected,
            clip(&f.observed, 160)
        ),
        None => format!("{}::{} {}", r.scenario, r.mechanism, r.verdict),
    }
}

/// `s`, cut to `n` characters with an ellipsis.
pub(crate) fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

/// What one need's trial says for an application.
struct NeedOutcome {
    /// Safe (met, or not counted), Degraded, Unsafe or Incomplete; NotChecked
    /// when the target cannot have it (skipped).
    status: AppStatus,
    checked: bool,
    /// It passed (or its failure is not counted).
    met: bool,
    reasons: Vec<String>,
    unchecked: Vec<String>,
}

/// How trial `sc`::`mech` in `results` meets a need.
fn judge_need(
    results: &[TrialResult],
    sc: &str,
    mech: Mechanism,
    integrity_only: bool,
    why: &str,
) -> NeedOutcome {
    let mut o = NeedOutcome {
        status: AppStatus::Safe,
        checked: false,
        met: false,
        reasons: Vec::new(),
        unchecked: Vec::new(),
    };
    let Some(r) = find(results, sc, mech) else {
        o.status = AppStatus::Incomplete;
        o.unchecked.push(format!("{sc}::{mech}: not run"));
        return o;
    };
    match r.status {
        Status::Pass => {
            o.checked = true;
            o.met = true;
        }
        // Skipped: the target cannot have it (no second client here).
        Status::Skip => {
            o.status = AppStatus::NotChecked;
            o.unchecked.push(format!(
                "{sc}::{mech}: skip ({})",
                clip(r.reason.as_deref().unwrap_or(""), 120)
            ));
        }
        // Errored: it should have run and did not.
        Status::Error => {
            o.status = AppStatus::Incomplete;
            o.unchecked.push(format!(
                "{sc}::{mech}: error ({})",
                clip(r.reason.as_deref().unwrap_or(""), 120)
            ));
        }
        Status::Xfail => {
            o.checked = true;
            o.status = AppStatus::Degraded;
            o.reasons.push(format!(
                "degraded: {sc}::{mech} fails by design of the method ({}) — {why}",
                clip(r.reason.as_deref().unwrap_or(""), 160),
            ));
        }
        Status::Fail if integrity_only && r.severity != Severity::Unsafe => {
            o.checked = true;
            o.met = true;
            o.reasons.push(format!(
                "not counted: {} — {why} (only lost exclusion or data counts here)",
                failure_text(r),
            ));
        }
        Status::Fail => {
            o.checked = true;
            o.status = if r.severity == Severity::Unsafe {
                AppStatus::Unsafe
            } else {
                AppStatus::Degraded
            };
            o.reasons.push(format!(
                "{}: {} — {why}",
                o.status.as_str(),
                failure_text(r)
            ));
        }
    }
    o
}

/// A need with alternatives (`or`) counts as the best of its trials: met
/// when one is met (the others' failures are shown, not counted); else
/// incomplete when one could not run (it might have been met); else the
/// mildest failure; skipped only when all were.
fn best_of(first: NeedOutcome, others: Vec<NeedOutcome>, n: &AppNeed) -> NeedOutcome {
    if others.is_empty() {
        return first;
    }
    let mut all = vec![first];
    all.extend(others);
    let names: Vec<String> = std::iter::once((&n.scenario.value, n.mechanism.value))
        .chain(n.or.iter().map(|a| (&a.scenario.value, a.mechanism.value)))
        .map(|(s, m)| format!("{s}::{m}"))
        .collect();
    // Met; else could not run; else the mildest failure; else (all skipped)
    // the first.
    let pick = all
        .iter()
        .position(|o| o.met)
        .or_else(|| all.iter().position(|o| o.status == AppStatus::Incomplete))
        .or_else(|| {
            (0..all.len())
                .filter(|&i| all[i].checked)
                .min_by_key(|&i| all[i].status)
        })
        .unwrap_or(0);
    let mut chosen = NeedOutcome {
        status: all[pick].status,
        checked: all.iter().any(|o| o.checked),
        met: all[pick].met,
        reasons: Vec::new(),
        unchecked: Vec::new(),
    };
    // The others' failures are shown, with what decided instead.
    let instead = if chosen.met {
        format!("the need is met by {} instead", names[pick])
    } else if chosen.status == AppStatus::Incomplete {
        format!("{} did not run, and might meet the need", names[pick])
    } else {
        format!("{} fails less: {}", names[pick], chosen.status.as_str())
    };
    for (i, o) in all.into_iter().enumerate() {
        chosen.unchecked.extend(o.unchecked);
        if i == pick {
            chosen.reasons.extend(o.reasons);
            continue;
        }
        for r in o.reasons {
            let body = r.split_once(": ").map_or(r.as_str(), |(_, b)| b);
            chosen
                .reasons
                .push(format!("not counted: {body} ({instead})"));
        }
    }
    chosen
}

/// The verdict for one application from one target's results.
pub(crate) fn verdict(
    p: &AppProfile,
    target: &TargetIdentity,
    results: &[TrialResult],
) -> AppVerdict {
    let mut status = AppStatus::Safe;
    let mut reasons = Vec::new();
    let mut unchecked = Vec::new();
    let mut checked = 0;
    let worse = |s: &mut AppStatus, t: AppStatus| {
        if t > *s && t != AppStatus::NotChecked {
            *s = t;
        }
    };
    for n in &p.needs {
        let first = judge_need(
            results,
            &n.scenario.value,
            n.mechanism.value,
            n.integrity_only,
            &n.why,
        );
        let others: Vec<NeedOutcome> =
            n.or.iter()
                .map(|a| {
                    judge_need(
                        results,
                        &a.scenario.value,
                        a.mechanism.value,
                        n.integrity_only,
                        &a.why,
                    )
                })
                .collect();
        let outcome = best_of(first, others, n);
        if outcome.checked {
            checked += 1;
        }
        worse(&mut status, outcome.status);
        reasons.extend(outcome.reasons);
        unchecked.extend(outcome.unchecked);
    }
    for rec in &p.recovery {
        let (sc, mech) = (&rec.scenario.value, rec.mechanism.value);
        let limit = rec.degraded_after.value.0;
        match find(results, sc, mech) {
            Some(r) if r.status == Status::Pass => {
                let took = r
                    .measurements
                    .iter()
                    .filter(|m| m.what.contains("after the fault"))
                    .map(|m| m.ms)
                    .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b))));
                match took {
                    Some(ms) if ms > limit.as_secs_f64() * 1000.0 => {
                        worse(&mut status, AppStatus::Degraded);
                        reasons.push(format!(
                            "degraded: recovery took {:.1} s (over {} s) in {sc}::{mech} — {}: {}",
                            ms / 1000.0,
                            limit.as_secs_f64(),
                            rec.why,
                            rec.when_held.until_recovered()
                        ));
                    }
                    Some(ms) => reasons.push(format!(
                        "recovery took {:.1} s in {sc}::{mech}",
                        ms / 1000.0
                    )),
                    None => {}
                }
            }
            // The other host was not refused before the crash: there was no
            // exclusion to recover, and nothing waits or fails afterwards.
            Some(r)
                if r.status == Status::Fail
                    && r.failure
                        .as_ref()
                        .is_some_and(|f| f.expected.starts_with("conflict")) =>
            {
                worse(&mut status, AppStatus::Unsafe);
                reasons.push(format!(
                    "unsafe: no exclusion to recover: {} — the other host does not see the lock, so after a crash (as before it) a second instance starts at once",
                    failure_text(r)
                ));
            }
            Some(r) if matches!(r.status, Status::Fail | Status::Xfail) => {
                worse(&mut status, AppStatus::Degraded);
                reasons.push(format!(
                    "degraded: no recovery: {} — {}: {}",
                    failure_text(r),
                    rec.why,
                    rec.when_held.until_recovered()
                ));
            }
            Some(r) => {
                if r.status == Status::Error {
                    worse(&mut status, AppStatus::Incomplete);
                }
                unchecked.push(format!(
                    "{sc}::{mech}: {} ({})",
                    r.status.as_str(),
                    clip(r.reason.as_deref().unwrap_or(""), 120)
                ))
            }
            None => {
                worse(&mut status, AppStatus::Incomplete);
                unchecked.push(format!("{sc}::{mech}: not run"));
            }
        }
    }
    if checked == 0 {
        status = AppStatus::NotChecked;
    }
    // By the application's own design: they hold whatever the locks did
    // (and even where nothing could be checked).
    for f in p.target_facts.iter().filter(|f| f.fact.holds(target)) {
        // The fact as it applies here: as written, or its `unless` where
        // that trial failed.
        let failed = f.unless.as_ref().and_then(|u| {
            let (sc, mech) = (&u.fails.scenario.value, u.fails.mechanism.value);
            find(results, sc, mech)
                .filter(|r| matches!(r.status, Status::Fail | Status::Xfail))
                .map(|r| (u, failure_text(r)))
        });
        let (verdict, why, how) = match &failed {
            Some((u, text)) => (
                u.verdict,
                u.why.trim(),
                format!("{}, and {text}", f.fact.describe()),
            ),
            None => (f.verdict, f.why.trim(), f.fact.describe().to_string()),
        };
        let t = verdict.status();
        if t > status || status == AppStatus::NotChecked {
            status = t;
        }
        reasons.push(format!("{}: {how} — {why}", t.as_str()));
    }
    AppVerdict {
        app: p.name.value.clone(),
        title: p.title.clone(),
        verdict: status,
        reasons,
        unchecked,
        checked,
        needed: p.needs.len(),
        reference: p.reference.trim().to_string(),
    }
}

/// Every application's verdict from one target's results.
pub(crate) fn verdicts(
    apps: &Apps,
    target: &TargetIdentity,
    results: &[TrialResult],
) -> Vec<AppVerdict> {
    apps.profiles
        .iter()
        .map(|p| verdict(p, target, results))
        .collect()
}

/// The JSON Schema (draft-07) of profile files.
pub fn json_schema() -> schemars::Schema {
    let settings = schemars::generate::SchemaSettings::draft07();
    settings
        .into_generator()
        .into_root_schema_for::<AppProfile>()
}

impl crate::record::report::Report {
    /// With the verdicts of these application profiles.
    pub(crate) fn with_apps(mut self, apps: &Apps) -> Self {
        self.applications = verdicts(apps, &self.target, &self.results);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        crate::plan::catalog::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios"))
            .expect("catalog")
    }

    /// A trial result of `scenario` with `mech`, as a report has it.
    fn trial(
        scenario: &str,
        mech: Mechanism,
        status: Status,
        severity: Severity,
    ) -> crate::record::report::TrialResult {
        crate::record::report::TrialResult {
            id: format!("t::{scenario}::{mech}"),
            scenario: scenario.into(),
            mechanism: mech,
            family: crate::spec::scenario::Family::Exclusion,
            severity,
            status,
            verdict: crate::record::report::TrialResult::verdict_for(status, severity),
            reason: Some("why".into()),
            failure: None,
            summary: String::new(),
            reference: String::new(),
            file: String::new(),
            started_ms: 0.0,
            duration_ms: 0.0,
            in_calls_ms: 0.0,
            actors: vec![],
            steps: vec![],
            measurements: vec![],
            teardown_problems: vec![],
            rounds: None,
        }
    }

    #[test]
    fn built_in_profiles_are_valid() {
        let c = catalog();
        let a = load(
            Some(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../apps")),
            &c,
        )
        .expect("apps/ is valid");
        assert!(a.profiles.len() >= 7);
        let e = embedded::FILES.len();
        assert_eq!(e, a.profiles.len(), "the binary carries every profile");
    }

    #[test]
    fn a_target_fact_gives_way_to_its_unless_where_that_trial_fails() {
        let c = catalog();
        let text = "name: x\ntitle: X\nsummary: s\nreference: r\nneeds:\n  - {scenario: exclusive-race-2, mechanism: posix, why: w}\ntarget-facts:\n  - fact: shared-by-hosts\n    verdict: unsafe\n    why: two writers\n    unless:\n      fails: {scenario: lock-downgrade, mechanism: posix}\n      verdict: degraded\n      why: the second one waits instead\n";
        let p = parse_profile("x.yaml", text, Some("x"), &c).expect("valid");
        let mut id = crate::record::report::fixtures::identity();
        id.hosts = vec!["a".into(), "b".into()];
        let t = |s: &str, st: Status| trial(s, Mechanism::Posix, st, Severity::Unsafe);
        let passed = [
            t("exclusive-race-2", Status::Pass),
            t("lock-downgrade", Status::Pass),
        ];
        let v = verdict(&p, &id, &passed);
        assert_eq!(v.verdict, AppStatus::Unsafe);
        assert!(v.reasons.iter().any(|r| r.contains("two writers")));
        let refused = [
            t("exclusive-race-2", Status::Pass),
            t("lock-downgrade", Status::Fail),
        ];
        let v = verdict(&p, &id, &refused);
        assert_eq!(v.verdict, AppStatus::Degraded);
        assert!(
            v.reasons
                .iter()
                .any(|r| r.contains("lock-downgrade::posix") && r.contains("waits instead")),
            "{:?}",
            v.reasons
        );
        // A trial the fact names that is not in the catalog is refused.
        let bad = text.replace("lock-downgrade", "no-such-scenario");
        assert!(parse_profile("x.yaml", &bad, Some("x"), &c).is_err());
    }

    #[test]
    fn an_integrity_only_need_counts_only_a_lost_exclusion() {
        let c = catalog();
        let text = "name: x\ntitle: X\nsummary: s\nreference: r\nneeds:\n  - {scenario: counter-4-actors, mechanism: posix, why: every update, integrity-only: true}\n";
        let p = parse_profile("x.yaml", text, Some("x"), &c).expect("valid");
        let id = crate::record::report::fixtures::identity();
        let t = |sev: Severity| trial("counter-4-actors", Mechanism::Posix, Status::Fail, sev);
        // Too slow (waiters polled): shown, not counted.
        let v = verdict(&p, &id, &[t(Severity::Divergent)]);
        assert_eq!(v.verdict, AppStatus::Safe);
        assert!(v.reasons.iter().any(|r| r.starts_with("not counted: ")));
        // Updates lost: unsafe.
        assert_eq!(
            verdict(&p, &id, &[t(Severity::Unsafe)]).verdict,
            AppStatus::Unsafe
        );
    }

    #[test]
    fn a_need_with_alternatives_counts_as_the_best_of_them() {
        let c = catalog();
        let text = "name: x\ntitle: X\nsummary: s\nreference: r\nneeds:\n  - scenario: cross-client-exclusion\n    mechanism: flock\n    why: the first lock\n    or:\n      - {scenario: cross-client-exclusion, mechanism: ofd, why: the second lock}\n";
        let p = parse_profile("x.yaml", text, Some("x"), &c).expect("valid");
        let id = crate::record::report::fixtures::identity();
        let t = |m: Mechanism, st: Status, sev: Severity| {
            let mut r = trial("cross-client-exclusion", m, st, sev);
            r.reason = None;
            r
        };
        let (f, o) = (Mechanism::Flock, Mechanism::Ofd);
        let (u, d) = (Severity::Unsafe, Severity::Divergent);
        let v = verdict(&p, &id, &[t(f, Status::Pass, u), t(o, Status::Fail, u)]);
        assert_eq!(v.verdict, AppStatus::Safe, "{v:?}");
        assert!(
            v.reasons.iter().any(
                |r| r.starts_with("not counted: cross-client-exclusion::ofd")
                    && r.contains("met by cross-client-exclusion::flock")
            ),
            "{v:?}"
        );
        let v = verdict(&p, &id, &[t(f, Status::Fail, u), t(o, Status::Pass, u)]);
        assert_eq!(v.verdict, AppStatus::Safe, "{v:?}");
        let v = verdict(&p, &id, &[t(f, Status::Fail, u), t(o, Status::Fail, u)]);
        assert_eq!(v.verdict, AppStatus::Unsafe, "{v:?}");
        let v = verdict(&p, &id, &[t(f, Status::Fail, d), t(o, Status::Fail, u)]);
        assert_eq!(v.verdict, AppStatus::Degraded, "{v:?}");
        assert!(v.reasons.iter().any(|r| r.contains("fails less")), "{v:?}");
        let v = verdict(&p, &id, &[t(f, Status::Error, u), t(o, Status::Fail, u)]);
        assert_eq!(v.verdict, AppStatus::Incomplete, "{v:?}");
        let v = verdict(&p, &id, &[t(f, Status::Skip, u), t(o, Status::Skip, u)]);
        assert_eq!(v.verdict, AppStatus::NotChecked, "{v:?}");
        assert_eq!(v.checked, 0);
        // An alternative the catalog does not have is refused, where it is.
        let bad = text.replace("mechanism: ofd", "mechanism: lease");
        let e = parse_profile("x.yaml", &bad, Some("x"), &c).expect_err("no lease run");
        assert!(e.to_string().contains("x.yaml:10:"), "{e}");
    }

    #[test]
    fn an_error_or_a_trial_left_out_is_never_safe() {
        let c = catalog();
        let text = "name: x\ntitle: X\nsummary: s\nreference: r\nneeds:\n  - {scenario: exclusive-race-2, mechanism: flock, why: w}\n  - {scenario: killed-holder-releases, mechanism: flock, why: w}\n";
        let p = parse_profile("x.yaml", text, Some("x"), &c).expect("valid");
        let id = crate::record::report::fixtures::identity();
        let t = |s: &str, st: Status| trial(s, Mechanism::Flock, st, Severity::Unsafe);
        let both = [
            t("exclusive-race-2", Status::Pass),
            t("killed-holder-releases", Status::Pass),
        ];
        assert_eq!(verdict(&p, &id, &both).verdict, AppStatus::Safe);
        let errored = [
            t("exclusive-race-2", Status::Pass),
            t("killed-holder-releases", Status::Error),
        ];
        assert_eq!(verdict(&p, &id, &errored).verdict, AppStatus::Incomplete);
        let filtered = [t("exclusive-race-2", Status::Pass)];
        assert_eq!(verdict(&p, &id, &filtered).verdict, AppStatus::Incomplete);
        let skipped = [
            t("exclusive-race-2", Status::Pass),
            t("killed-holder-releases", Status::Skip),
        ];
        assert_eq!(verdict(&p, &id, &skipped).verdict, AppStatus::Safe);
        let failed = [
            t("exclusive-race-2", Status::Fail),
            t("killed-holder-releases", Status::Error),
        ];
        assert_eq!(verdict(&p, &id, &failed).verdict, AppStatus::Unsafe);
    }

    #[test]
    fn a_target_fact_decides_by_the_applications_design() {
        use crate::record::report::fixtures::{identity, result};
        let c = catalog();
        let text = "name: x\ntitle: X\nsummary: s\nreference: r\nneeds:\n  - {scenario: exclusive-race-2, mechanism: flock, why: w}\ntarget-facts:\n  - {fact: nfs, verdict: unsafe, why: takes no lock on NFS}\n  - {fact: shared-by-hosts, verdict: degraded, why: PIDs do not cross hosts}\n";
        let p = parse_profile("x.yaml", text, Some("x"), &c).expect("valid");
        let passed = [result(
            "exclusive-race-2",
            Mechanism::Flock,
            Status::Pass,
            Severity::Unsafe,
        )];
        let mut t = identity();
        t.statfs_type = "0x1021994 (tmpfs)".into();
        t.hosts = vec!["a".into()];
        assert_eq!(verdict(&p, &t, &passed).verdict, AppStatus::Safe);
        t.hosts = vec!["a".into(), "b".into()];
        let v = verdict(&p, &t, &passed);
        assert_eq!(v.verdict, AppStatus::Degraded);
        assert!(
            v.reasons
                .iter()
                .any(|r| r.contains("shared by hosts — PIDs do not cross hosts")),
            "{v:?}"
        );
        t.statfs_type = "0x6969 (nfs)".into();
        let v = verdict(&p, &t, &passed);
        assert_eq!(v.verdict, AppStatus::Unsafe);
        assert!(
            v.reasons.iter().any(|r| r.starts_with("unsafe: on NFS")),
            "{v:?}"
        );
        // Nothing checked, but the design alone says unsafe.
        assert_eq!(verdict(&p, &t, &[]).verdict, AppStatus::Unsafe);
        let bad = text.replace("fact: nfs", "fact: smb");
        let e = parse_profile("x.yaml", &bad, Some("x"), &c).expect_err("unknown fact");
        assert!(e.to_string().contains("x.yaml:8:"), "{e}");
        let bad = text.replace("target-facts:", "target-fact:");
        let e = parse_profile("x.yaml", &bad, Some("x"), &c).expect_err("unknown key");
        assert!(e.to_string().contains("apps/app.schema.json"), "{e}");
        assert!(!e.to_string().contains("scenarios/README.md"), "{e}");
    }

    #[test]
    fn profiles_name_existing_trials_with_positions() {
        let c = catalog();
        let bad = "name: x\ntitle: X\nsummary: s\nreference: r\nneeds:\n  - {scenario: no-such-thing, mechanism: flock, why: w}\n";
        let e = parse_profile("x.yaml", bad, Some("x"), &c).expect_err("unknown scenario");
        assert!(e.to_string().contains("x.yaml:6:"), "{e}");
        let wrong = "name: x\ntitle: X\nsummary: s\nreference: r\nneeds:\n  - {scenario: lock-upgrade-atomic, mechanism: flock, why: w}\n";
        let e = parse_profile("x.yaml", wrong, Some("x"), &c).expect_err("no flock run");
        assert!(e.to_string().contains("does not run for flock"), "{e}");
    }
}
