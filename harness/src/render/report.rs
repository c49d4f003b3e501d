//! Reports for people and CI systems: Markdown (one per target, with the
//! evidence of every trial), JUnit XML, the console summary, and writing a
//! report's three files.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::record::report::{Report, Status, TrialResult};
use crate::spec::error::{Error, Result};
use crate::spec::scenario::{Family, Mechanism};

impl Report {
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
pub(crate) fn junit(r: &Report) -> String {
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
                        "{}: step {} (line {}) {}: expected {}, observed {}{}",
                        t.severity.as_str().to_uppercase(),
                        f.step,
                        f.line,
                        f.op,
                        f.expected,
                        f.observed,
                        t.reason
                            .as_deref()
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default()
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
    if let Some(st) = &r.stress {
        use crate::record::stress::StressVerdict;
        let status = match st.verdict {
            StressVerdict::Clean => TestCaseStatus::success(),
            StressVerdict::Error => {
                let mut x = TestCaseStatus::non_success(NonSuccessKind::Error);
                x.set_message(st.problems.join("; "));
                x
            }
            v => {
                let mut x = TestCaseStatus::non_success(NonSuccessKind::Failure);
                x.set_type(if v == StressVerdict::Unsafe {
                    "unsafe"
                } else {
                    "divergent"
                });
                x.set_message(crate::render::stress::headline(st));
                x.set_description(
                    st.findings
                        .iter()
                        .map(|f| f.finding.detail.clone())
                        .collect::<Vec<_>>()
                        .join("\n"),
                );
                x
            }
        };
        let mut case = TestCase::new("stress", status);
        case.set_classname(format!("{}.stress", r.target.label));
        case.set_time(secs(st.elapsed_ms));
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

/// Write `text` to `path` through a temporary file renamed over it: a
/// reader never sees half a report.
pub(crate) fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp~",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("report")
    ));
    std::fs::write(&tmp, text).map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// Text for a Markdown table cell: pipes escaped, on one line.
pub(crate) fn md_escape(s: &str) -> String {
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
pub(crate) fn markdown(r: &Report) -> String {
    let mut s = String::new();
    section_header(&mut s, r);
    section_applications(&mut s, r);
    section_target(&mut s, r);
    section_families(&mut s, r);
    section_problems(&mut s, r);
    section_xfails(&mut s, r);
    section_measured(&mut s, r);
    section_repeat(&mut s, r);
    section_benchmarks(&mut s, r);
    if let Some(st) = &r.stress {
        s.push_str("\n## Stress\n\n");
        s.push_str(&crate::render::stress::markdown(st));
    }
    section_skipped(&mut s, r);
    s
}

/// The title, the verdict and the counts.
fn section_header(s: &mut String, r: &Report) {
    let t = &r.target;
    let sm = &r.summary;
    let _ = writeln!(s, "# lockcheck report: `{}`\n", t.label);
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
}

/// What the results mean for each application.
fn section_applications(s: &mut String, r: &Report) {
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
                if a.verdict == crate::record::apps::AppStatus::NotChecked {
                    cell = format!("not checked here: {}", a.unchecked.join("; "));
                }
            }
            let verdict = match a.verdict {
                crate::record::apps::AppStatus::Unsafe => "**UNSAFE**".to_string(),
                crate::record::apps::AppStatus::Degraded => "**degraded**".to_string(),
                v => v.as_str().to_string(),
            };
            let _ = writeln!(s, "| {} | {verdict} | {} |", a.title, md_escape(&cell));
        }
        let _ = writeln!(s);
    }
}

/// What the target is: path, mount, kernel, hosts, lease, command.
fn section_target(s: &mut String, r: &Report) {
    let t = &r.target;
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
}

/// Every trial, by family: a grid of scenarios and mechanisms.
fn section_families(s: &mut String, r: &Report) {
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
}

/// The failures and errors, each with its evidence.
fn section_problems(s: &mut String, r: &Report) {
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
                let round = x
                    .rounds
                    .as_ref()
                    .map(|r| format!(", in round {} of {}", r.ran, r.of))
                    .unwrap_or_default();
                let _ = writeln!(
                    s,
                    "At step {} (`{}` line {}{round}): {} — {}\n",
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
                let label = match x.status {
                    Status::Fail => "why divergent here",
                    _ => "error",
                };
                let _ = writeln!(s, "- **{label}**: {}", md_escape(reason));
            }
            let _ = writeln!(s, "- **why it matters**: {}", md_escape(&x.summary));
            let _ = writeln!(s, "- **reference**: {}\n", md_escape(&x.reference));
            if let Some(r) = x.rounds.as_ref().filter(|r| r.ran > 2) {
                let _ = writeln!(
                    s,
                    "Steps of round 1 and round {} ({} steps a round; rounds 2 to {} passed and are left out):\n",
                    r.ran,
                    r.steps_per_round,
                    r.ran - 1
                );
            }
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
}

/// Expected failures of a method.
fn section_xfails(s: &mut String, r: &Report) {
    let xfails = r.with_status(Status::Xfail);
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
}

/// Times measured in passing trials.
fn section_measured(s: &mut String, r: &Report) {
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
}

/// With --repeat: what changed between runs.
fn section_repeat(s: &mut String, r: &Report) {
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
}

/// Lock latency and throughput.
fn section_benchmarks(s: &mut String, r: &Report) {
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
        s.push_str(&crate::render::bench::markdown(b));
        let _ = writeln!(s);
    }
}

/// What was skipped, and why.
fn section_skipped(s: &mut String, r: &Report) {
    let skipped = r.with_status(Status::Skip);
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
            crate::record::apps::AppStatus::Unsafe,
            crate::record::apps::AppStatus::Degraded,
            crate::record::apps::AppStatus::Incomplete,
            crate::record::apps::AppStatus::Safe,
            crate::record::apps::AppStatus::NotChecked,
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
    use crate::record::report::fixtures::{catalog, identity, result};
    use crate::spec::scenario::Severity;

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
        assert_eq!(
            crate::record::report::ms(std::time::Duration::from_nanos(1_234_567)),
            1.235
        );
    }
}
