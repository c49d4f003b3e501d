//! Qualification: the catalog run several times on a vendor's storage; a
//! trial whose outcome changes between repeats is flaky; everything goes into
//! one bundle (the reports, a summary in JSON and Markdown, a matrix page with
//! one column per repeat, JUnit) with an overall verdict and the command that
//! reproduces it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::record::report::Report;
use crate::spec::error::{Error, Result};
use crate::verdict::tally::Tally;

/// The overall outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Every repeat passed (as `--fail-on` counts), the same way each time.
    Pass,
    /// Some trial's outcome differed between repeats.
    Flaky,
    /// A repeat failed (as `--fail-on` counts), the same way each time.
    Fail,
}

/// A trial (or an application verdict) whose outcome differed between repeats.
#[derive(Debug, Clone, Serialize)]
pub struct Flaky {
    /// The trial's id, or `application NAME` for an application.
    pub id: String,
    /// Outcome per repeat (`pass`, `unsafe at step 4`, `skip`, `not run`, ...;
    /// see [`crate::verdict::tally`]).
    pub outcomes: Vec<String>,
}

/// One target's part of a qualification.
#[derive(Debug, Clone, Serialize)]
pub struct TargetQualification {
    pub(crate) label: String,
    pub(crate) fs_type: String,
    pub(crate) path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mount_source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mount_options: Option<String>,
    /// The server, for a network filesystem (from `addr=` in its options).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) server: Option<String>,
    /// Per repeat: pass, fail, skip, error, xfail counts and failures by severity.
    pub(crate) repeats: Vec<crate::record::report::Summary>,
    /// Trials, then applications, whose outcome differed between repeats.
    pub flaky: Vec<Flaky>,
    pub(crate) applications: Vec<crate::record::apps::AppVerdict>,
    /// The stress phase (`--stress`): its outcome, how long it ran, how
    /// many requests it made and what it found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stress: Option<StressPhase>,
}

/// A stress phase as the bundle summarizes it (the reports have it all).
#[derive(Debug, Clone, Serialize)]
pub struct StressPhase {
    pub(crate) verdict: crate::record::stress::StressVerdict,
    pub(crate) duration_ms: f64,
    pub(crate) elapsed_ms: f64,
    pub(crate) operations: u64,
    pub(crate) findings: usize,
    pub(crate) headline: String,
}

/// What `lockcheck qualify` concludes: the verdict, and each target's repeats.
#[derive(Debug, Clone, Serialize)]
pub struct Qualification {
    /// The overall outcome.
    pub verdict: Verdict,
    pub(crate) repeats: usize,
    pub(crate) lockcheck_version: String,
    pub(crate) kernel: String,
    pub(crate) catalog_hash: String,
    pub(crate) generated_at: String,
    /// The command that reproduces this qualification.
    pub(crate) command: String,
    /// Each target, in the order of the reports.
    pub targets: Vec<TargetQualification>,
}

/// Compare the repeats and decide. `passes[k]` are repeat k's reports (one
/// per target, in the same order); `failed` says whether one report counts
/// as a failure.
pub fn assess(passes: &[Vec<Report>], failed: &dyn Fn(&Report) -> bool) -> Qualification {
    let first = passes.first().cloned().unwrap_or_default();
    let mut targets = Vec::new();
    let mut any_flaky = false;
    let mut any_failed = false;
    // What counts as a change between repeats: crate::verdict::tally.
    let tally = Tally::of(passes);
    for (t, r0) in first.iter().enumerate() {
        let mut repeats = Vec::new();
        for pass in passes {
            let Some(r) = pass.get(t) else { continue };
            any_failed |= failed(r);
            repeats.push(r.summary.clone());
        }
        let flaky: Vec<Flaky> = tally
            .changed(&r0.target.label)
            .into_iter()
            .map(|(id, outcomes)| Flaky { id, outcomes })
            .collect();
        any_flaky |= !flaky.is_empty();
        let options = r0.target.mount.as_ref().map(|m| m.super_options.clone());
        let server = options.as_ref().and_then(|o| {
            o.split(',')
                .find_map(|kv| kv.strip_prefix("addr="))
                .map(str::to_string)
        });
        targets.push(TargetQualification {
            label: r0.target.label.clone(),
            fs_type: r0.target.fs_type.clone(),
            path: r0.target.path.clone(),
            mount_source: r0.target.mount.as_ref().map(|m| m.source.clone()),
            mount_options: options,
            server,
            repeats,
            flaky,
            applications: r0.applications.clone(),
            stress: r0.stress.as_ref().map(|s| StressPhase {
                verdict: s.verdict,
                duration_ms: s.duration_ms,
                elapsed_ms: s.elapsed_ms,
                operations: s.operations,
                findings: s.findings.len() + s.findings_dropped as usize,
                headline: crate::render::stress::headline(s),
            }),
        });
    }
    let verdict = if any_flaky {
        Verdict::Flaky
    } else if any_failed {
        Verdict::Fail
    } else {
        Verdict::Pass
    };
    let command = crate::record::portable(&shell_words::join(std::env::args()));
    Qualification {
        verdict,
        repeats: passes.len(),
        lockcheck_version: env!("CARGO_PKG_VERSION").to_string(),
        kernel: first
            .first()
            .map(|r| r.target.kernel.clone())
            .unwrap_or_default(),
        catalog_hash: first
            .first()
            .map(|r| r.catalog.hash.clone())
            .unwrap_or_default(),
        generated_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        command,
        targets,
    }
}

/// The summary as Markdown.
pub(crate) fn markdown(q: &Qualification) -> String {
    let mut s = String::new();
    let word = match q.verdict {
        Verdict::Pass => "**pass**",
        Verdict::Flaky => "**flaky**",
        Verdict::Fail => "**fail**",
    };
    let _ = writeln!(s, "# lockcheck qualification: {word}\n");
    let _ = writeln!(
        s,
        "The catalog ran {} times on each target; a trial whose outcome differs between the runs is flaky.\n",
        q.repeats
    );
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(s, "| lockcheck | {} |", q.lockcheck_version);
    let _ = writeln!(s, "| kernel | {} |", q.kernel);
    let _ = writeln!(s, "| catalog hash | {} |", q.catalog_hash);
    let _ = writeln!(s, "| generated | {} |", q.generated_at);
    let _ = writeln!(
        s,
        "| reproduce with | `{}` |\n",
        q.command.replace('|', "\\|")
    );
    for t in &q.targets {
        let _ = writeln!(s, "## `{}` ({})\n", t.label, t.fs_type);
        let _ = writeln!(s, "- path: `{}`", t.path);
        if let Some(src) = &t.mount_source {
            let _ = writeln!(s, "- mount: `{src}`");
        }
        if let Some(o) = &t.mount_options {
            let _ = writeln!(s, "- options: `{o}`");
        }
        if let Some(sv) = &t.server {
            let _ = writeln!(s, "- server: `{sv}`");
        }
        let _ = writeln!(s, "\n| run | pass | fail | skip | xfail | error | unsafe | divergent |\n|---|---|---|---|---|---|---|---|");
        for (k, r) in t.repeats.iter().enumerate() {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                k + 1,
                r.pass,
                r.fail,
                r.skip,
                r.xfail,
                r.error,
                r.unsafe_failures,
                r.divergent_failures
            );
        }
        if t.flaky.is_empty() {
            let _ = writeln!(s, "\nNo trial changed its outcome between runs.\n");
        } else {
            let _ = writeln!(s, "\nFlaky trials (outcome per run):\n");
            for f in &t.flaky {
                let _ = writeln!(s, "- `{}`: {}", f.id, f.outcomes.join(" → "));
            }
            let _ = writeln!(s);
        }
        if let Some(st) = &t.stress {
            let _ = writeln!(
                s,
                "Stress phase ({:.0} s, after the runs; details in `{}.md`): {}\n",
                st.duration_ms / 1000.0,
                t.label,
                st.headline
            );
        }
        if !t.applications.is_empty() {
            let _ = writeln!(
                s,
                "Applications (first run): {}\n",
                t.applications
                    .iter()
                    .map(|a| format!("{} {}", a.title, a.verdict.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    s
}

/// Write the bundle into `dir`: each target's reports from the first run,
/// the other runs' JSON reports under `run-K/`, `qualification.json`,
/// `qualification.md`, `matrix.html` (a column per run) and
/// `qualification.junit.xml`. Returns the files written.
pub fn write_bundle(dir: &Path, passes: &[Vec<Report>], q: &Qualification) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    if let Some(first) = passes.first() {
        for r in first {
            written.extend(r.write(dir)?);
        }
    }
    for (k, pass) in passes.iter().enumerate().skip(1) {
        let sub = dir.join(format!("run-{}", k + 1));
        for r in pass {
            written.extend(r.write(&sub)?);
        }
    }
    let json = dir.join("qualification.json");
    let text = serde_json::to_string_pretty(q).map_err(|e| Error::usage(e.to_string(), None))?;
    std::fs::write(&json, text + "\n")
        .map_err(|e| Error::io(format!("writing {}", json.display()), e))?;
    written.push(json);
    let md = dir.join("qualification.md");
    std::fs::write(&md, markdown(q))
        .map_err(|e| Error::io(format!("writing {}", md.display()), e))?;
    written.push(md);
    // The matrix page: a column per target and run.
    let mut columns = Vec::new();
    for (k, pass) in passes.iter().enumerate() {
        for r in pass {
            let mut m: crate::render::matrix::MReport = serde_json::from_value(
                serde_json::to_value(r).map_err(|e| Error::usage(e.to_string(), None))?,
            )
            .map_err(|e| Error::usage(e.to_string(), None))?;
            m.target.label = format!("{} run {}", r.target.label, k + 1);
            columns.push(m);
        }
    }
    let html = dir.join("matrix.html");
    let m = crate::render::matrix::Matrix::build(columns)?;
    std::fs::write(&html, crate::render::matrix::html(&m))
        .map_err(|e| Error::io(format!("writing {}", html.display()), e))?;
    written.push(html);
    let all: Vec<Report> = passes
        .iter()
        .enumerate()
        .flat_map(|(k, p)| {
            p.iter().map(move |r| {
                let mut r = r.clone();
                r.target.label = format!("{} run {}", r.target.label, k + 1);
                r
            })
        })
        .collect();
    written.push(crate::render::report::write_junit(
        &all,
        &dir.join("qualification.junit.xml"),
    )?);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::report::{CatalogInfo, Status, TrialResult};
    use crate::spec::scenario::{Family, Mechanism, Severity};

    fn trial(id: &str, status: Status) -> TrialResult {
        TrialResult {
            id: format!("t::{id}::posix"),
            scenario: id.into(),
            mechanism: Mechanism::Posix,
            family: Family::Exclusion,
            severity: Severity::Unsafe,
            status,
            verdict: TrialResult::verdict_for(status, Severity::Unsafe),
            reason: None,
            failure: None,
            summary: String::new(),
            reference: String::new(),
            file: String::new(),
            started_ms: 0.0,
            duration_ms: 1.0,
            in_calls_ms: 0.0,
            actors: vec![],
            steps: vec![],
            measurements: vec![],
            teardown_problems: vec![],
            rounds: None,
        }
    }

    fn report(results: Vec<TrialResult>) -> Report {
        Report::new(
            crate::target::targets::identify("t", Path::new("/tmp"), "test"),
            CatalogInfo {
                source: "s".into(),
                scenarios: 2,
                hash: "h".into(),
            },
            results,
            1.0,
        )
    }

    #[test]
    fn a_changing_outcome_is_flaky_a_steady_failure_fails() {
        let failed = |r: &Report| r.summary.fail > 0;
        let steady = vec![
            vec![report(vec![
                trial("a", Status::Pass),
                trial("b", Status::Pass)
            ])];
            3
        ];
        assert_eq!(assess(&steady, &failed).verdict, Verdict::Pass);
        let flaky = vec![
            vec![report(vec![
                trial("a", Status::Pass),
                trial("b", Status::Pass),
            ])],
            vec![report(vec![
                trial("a", Status::Fail),
                trial("b", Status::Pass),
            ])],
        ];
        let q = assess(&flaky, &failed);
        assert_eq!(q.verdict, Verdict::Flaky);
        assert_eq!(q.targets[0].flaky.len(), 1);
        assert_eq!(q.targets[0].flaky[0].outcomes, vec!["pass", "unsafe"]);
        let broken = vec![vec![report(vec![trial("a", Status::Fail)])]; 2];
        assert_eq!(assess(&broken, &failed).verdict, Verdict::Fail);
        // The same trials, but an application's verdict changed (a
        // recovery time crossed its limit): flaky too.
        let app = |v: crate::record::apps::AppStatus| {
            let mut r = report(vec![trial("a", Status::Pass)]);
            r.applications = vec![crate::record::apps::AppVerdict {
                app: "prometheus".into(),
                title: "Prometheus".into(),
                verdict: v,
                reasons: vec![],
                unchecked: vec![],
                checked: 1,
                needed: 1,
                reference: String::new(),
            }];
            vec![r]
        };
        let q2 = assess(
            &[
                app(crate::record::apps::AppStatus::Safe),
                app(crate::record::apps::AppStatus::Degraded),
            ],
            &failed,
        );
        assert_eq!(q2.verdict, Verdict::Flaky);
        assert_eq!(q2.targets[0].flaky[0].id, "application prometheus");
        assert!(markdown(&q).contains("`t::a::posix`: pass → unsafe"));
    }
}
