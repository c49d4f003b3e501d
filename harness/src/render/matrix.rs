//! The compatibility matrix: many targets' reports side by side. Rows are
//! the applications' verdicts, then the scenarios grouped by family; columns
//! are targets; a cell is the worst outcome of the scenario's trials there
//! (per mechanism when they differ), with the measured recovery times. As
//! Markdown for `reports/README.md`, and as one self-contained HTML page
//! where a cell opens its expected-versus-observed detail.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::spec::error::{Error, Result};
use crate::spec::scenario::Family;

/// A JSON report as the matrix reads it: the parts it shows.
#[derive(Debug, Clone, Deserialize)]
pub struct MReport {
    pub(crate) target: MTarget,
    #[serde(default)]
    pub(crate) applications: Vec<MApp>,
    pub(crate) results: Vec<MResult>,
    #[serde(default)]
    pub(crate) generated_at: String,
    /// The catalog the report's scenarios came from, if the report says.
    #[serde(default)]
    pub catalog: Option<MCatalog>,
    #[serde(default)]
    pub(crate) benchmarks: Option<crate::record::bench::Bench>,
    #[serde(default)]
    pub(crate) stress: Option<crate::record::stress::Stress>,
}

/// A report's catalog, as the matrix reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct MCatalog {
    /// The catalog's hash: reports with different hashes ran different scenarios.
    pub hash: String,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct MTarget {
    pub(crate) label: String,
    pub(crate) fs_type: String,
    #[serde(default)]
    pub(crate) mount: Option<MMount>,
    #[serde(default)]
    pub(crate) kernel: String,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct MMount {
    #[serde(default)]
    pub(crate) super_options: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub(crate) struct MApp {
    pub(crate) app: String,
    pub(crate) title: String,
    pub(crate) verdict: String,
    #[serde(default)]
    pub(crate) reasons: Vec<String>,
    #[serde(default)]
    pub(crate) unchecked: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub(crate) struct MFailure {
    pub(crate) step: usize,
    pub(crate) expected: String,
    pub(crate) observed: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub(crate) struct MMeasure {
    pub(crate) what: String,
    pub(crate) ms: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub(crate) struct MResult {
    pub(crate) scenario: String,
    pub(crate) mechanism: String,
    pub(crate) family: Family,
    pub(crate) status: String,
    pub(crate) verdict: String,
    #[serde(default)]
    pub(crate) reason: Option<String>,
    #[serde(default)]
    pub(crate) failure: Option<MFailure>,
    #[serde(default)]
    pub(crate) measurements: Vec<MMeasure>,
    #[serde(default)]
    pub(crate) summary: String,
}

/// Read a JSON report.
pub fn read_report(path: &Path) -> Result<MReport> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::usage(
            format!("{}: {e}", path.display()),
            Some("give the JSON reports lockcheck wrote (LABEL.json)"),
        )
    })?;
    serde_json::from_str(&text).map_err(|e| {
        Error::usage(
            format!(
                "{}:{}:{}: not a lockcheck report: {e}",
                path.display(),
                e.line(),
                e.column()
            ),
            Some("give the JSON reports lockcheck wrote (LABEL.json)"),
        )
    })
}

/// How bad an outcome is, for the worst of a cell.
/// An error ranks just below unsafe: what it hides could be anything.
fn rank(verdict: &str) -> i32 {
    match verdict {
        "unsafe" => 6,
        "error" => 5,
        "divergent" => 4,
        "info" => 3,
        "xfail" => 2,
        "pass" => 1,
        _ => 0, // skip
    }
}

/// One cell: a scenario on a target.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Cell {
    /// The worst verdict of its trials: unsafe, divergent, info, error,
    /// xfail, pass, skip.
    pub(crate) verdict: String,
    /// Mechanisms that got that verdict, when others did better.
    pub(crate) which: Vec<String>,
    /// The longest time to a lock after a fault, in ms, if measured.
    pub(crate) recovery_ms: Option<f64>,
    pub(crate) trials: Vec<MResult>,
}

/// Reports side by side: a column per target, a row per scenario, a cell
/// per target and scenario.
pub struct Matrix {
    pub(crate) targets: Vec<MReport>,
    /// (family, scenario) in catalog order.
    pub(crate) rows: Vec<(Family, String)>,
    pub(crate) cells: BTreeMap<(String, String), Cell>,
    /// The application lab's results, shown after the application verdicts.
    pub(crate) lab: Option<crate::record::applab::AppLab>,
    /// Pairs of targets compared trial by trial (`--differ A=B`).
    pub(crate) differ: Vec<(String, String)>,
}

impl Matrix {
    /// Lay out these reports, as columns in this order; two reports for the
    /// same target are an error.
    pub fn build(reports: Vec<MReport>) -> Result<Matrix> {
        let mut seen = std::collections::HashSet::new();
        for r in &reports {
            if !seen.insert(r.target.label.clone()) {
                return Err(Error::usage(
                    format!("two reports for target {:?}", r.target.label),
                    Some("give each target's report once"),
                ));
            }
        }
        let mut rows: Vec<(Family, String)> = Vec::new();
        let mut cells = BTreeMap::new();
        for r in &reports {
            let mut by: BTreeMap<&str, Vec<&MResult>> = BTreeMap::new();
            for t in &r.results {
                if !rows.iter().any(|(_, s)| *s == t.scenario) {
                    rows.push((t.family, t.scenario.clone()));
                }
                by.entry(t.scenario.as_str()).or_default().push(t);
            }
            for (scenario, trials) in by {
                let worst = trials
                    .iter()
                    .map(|t| t.verdict.as_str())
                    .max_by_key(|v| rank(v))
                    .unwrap_or("skip")
                    .to_string();
                let which: Vec<String> = if trials
                    .iter()
                    .filter(|t| rank(&t.verdict) > 0)
                    .all(|t| t.verdict == worst)
                {
                    Vec::new()
                } else {
                    trials
                        .iter()
                        .filter(|t| t.verdict == worst)
                        .map(|t| t.mechanism.clone())
                        .collect()
                };
                let recovery_ms = trials
                    .iter()
                    .flat_map(|t| t.measurements.iter())
                    .filter(|m| m.what.contains("after the fault"))
                    .map(|m| m.ms)
                    .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b))));
                cells.insert(
                    (r.target.label.clone(), scenario.to_string()),
                    Cell {
                        verdict: worst,
                        which,
                        recovery_ms,
                        trials: trials.into_iter().cloned().collect(),
                    },
                );
            }
        }
        rows.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        Ok(Matrix {
            targets: reports,
            rows,
            cells,
            lab: None,
            differ: Vec::new(),
        })
    }

    /// Show the application lab's results too (`reports/app-lab.json`).
    pub fn with_lab(mut self, lab: crate::record::applab::AppLab) -> Matrix {
        self.lab = Some(lab);
        self
    }

    /// Compare these pairs of targets trial by trial (a server differential):
    /// both labels of each pair must be columns.
    pub fn with_differential(mut self, pairs: Vec<(String, String)>) -> Result<Matrix> {
        for (a, b) in &pairs {
            for l in [a, b] {
                if !self.targets.iter().any(|r| r.target.label == *l) {
                    return Err(Error::usage(
                        format!("--differ {a}={b}: no report for target {l:?}"),
                        Some("give both targets' reports (LABEL.json) as well"),
                    ));
                }
            }
            if a == b {
                return Err(Error::usage(
                    format!("--differ {a}={b} compares a target with itself"),
                    Some("name two different targets: --differ nfs3=ganesha-nfs3"),
                ));
            }
        }
        self.differ = pairs;
        Ok(self)
    }

    /// The trials whose verdicts differ between targets `a` and `b`, in
    /// catalog order: (scenario, mechanism, a's trial, b's trial). A trial
    /// missing on one side (another catalog) is not a difference.
    pub(crate) fn differences(&self, a: &str, b: &str) -> Vec<(&str, &MResult, &MResult)> {
        let mut out = Vec::new();
        for (_, scenario) in &self.rows {
            let (Some(ca), Some(cb)) = (self.cell(a, scenario), self.cell(b, scenario)) else {
                continue;
            };
            for ta in &ca.trials {
                if let Some(tb) = cb.trials.iter().find(|t| t.mechanism == ta.mechanism) {
                    if ta.verdict != tb.verdict {
                        out.push((scenario.as_str(), ta, tb));
                    }
                }
            }
        }
        out
    }

    fn cell(&self, target: &str, scenario: &str) -> Option<&Cell> {
        self.cells.get(&(target.to_string(), scenario.to_string()))
    }

    /// The applications, in the order of the first report that has them.
    fn apps(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for r in &self.targets {
            for a in &r.applications {
                if !out.iter().any(|(n, _)| *n == a.app) {
                    out.push((a.app.clone(), a.title.clone()));
                }
            }
        }
        out
    }

    fn app(&self, target: &MReport, app: &str) -> Option<MApp> {
        target.applications.iter().find(|a| a.app == app).cloned()
    }
}

fn secs(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{ms:.0} ms")
    }
}

fn md_cell(c: &Cell) -> String {
    let mut s = match c.verdict.as_str() {
        "unsafe" => "**UNSAFE**".to_string(),
        "divergent" => "divergent".to_string(),
        "error" => "**error**".to_string(),
        v => v.to_string(),
    };
    if !c.which.is_empty() {
        s.push_str(&format!(" ({})", c.which.join(", ")));
    }
    if let Some(ms) = c.recovery_ms {
        s.push_str(&format!(" · {}", secs(ms)));
    }
    s
}

use super::report::md_escape;

/// The matrix as Markdown.
pub fn markdown(m: &Matrix) -> String {
    let mut s = String::new();
    let labels: Vec<&str> = m.targets.iter().map(|r| r.target.label.as_str()).collect();
    let head = |s: &mut String, first: &str| {
        let _ = writeln!(
            s,
            "| {first} | {} |",
            labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(s, "|---|{}", "---|".repeat(labels.len()));
    };
    let apps = m.apps();
    if !apps.is_empty() {
        let _ = writeln!(s, "### Applications\n");
        head(&mut s, "application");
        for (name, title) in &apps {
            let cells: Vec<String> = m
                .targets
                .iter()
                .map(|r| match m.app(r, name) {
                    Some(a) => match a.verdict.as_str() {
                        "unsafe" => "**UNSAFE**".into(),
                        "degraded" => "degraded".into(),
                        v => v.replace('-', " "),
                    },
                    None => String::new(),
                })
                .collect();
            let _ = writeln!(s, "| {} | {} |", md_escape(title), cells.join(" | "));
        }
        let _ = writeln!(s);
    }
    if let Some(lab) = &m.lab {
        let labels: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
        let _ = writeln!(s, "{}", crate::render::applab::markdown(lab, &labels));
    }
    for (title, note, rows) in [
        ("Lock latency", LATENCY_NOTE, latency_rows(m)),
        ("Stress", STRESS_NOTE, stress_rows(m)),
    ] {
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(s, "### {title}\n\n{note}\n");
        head(&mut s, "measurement");
        for (label, cells) in &rows {
            let _ = writeln!(s, "| {} | {} |", md_escape(label), cells.join(" | "));
        }
        let _ = writeln!(s);
    }
    let mut family: Option<Family> = None;
    for (f, scenario) in &m.rows {
        if family != Some(*f) {
            if family.is_some() {
                let _ = writeln!(s);
            }
            let _ = writeln!(s, "### {}\n", family_title(*f));
            head(&mut s, "scenario");
            family = Some(*f);
        }
        let cells: Vec<String> = m
            .targets
            .iter()
            .map(|r| {
                m.cell(&r.target.label, scenario)
                    .map(md_cell)
                    .unwrap_or_default()
            })
            .collect();
        let _ = writeln!(
            s,
            "| [`{scenario}`](../scenarios/{scenario}.yaml) | {} |",
            cells.join(" | ")
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "A cell is the worst outcome of the scenario's trials on that target (the mechanisms that got it in brackets when others did better); `· 9.7 s` is the longest measured time from a fault to the next lock. Details: [matrix.html](matrix.html) or each target's report."
    );
    let diff = differential(m);
    if !diff.is_empty() {
        let _ = writeln!(s, "\n{diff}");
    }
    s
}

/// A trial's evidence in a line: its verdict, then where it failed and
/// what was seen, or why it was skipped or errored.
fn evidence(t: &MResult) -> String {
    const MAX: usize = 240;
    let clip = |s: &str| -> String {
        if s.chars().count() > MAX {
            format!("{}…", s.chars().take(MAX).collect::<String>())
        } else {
            s.to_string()
        }
    };
    let mut e = format!("**{}**", t.verdict);
    if let Some(f) = &t.failure {
        let _ = write!(
            e,
            ": step {}: expected {}, observed {}",
            f.step,
            md_escape(&clip(&f.expected)),
            md_escape(&clip(&f.observed))
        );
    }
    if let Some(r) = &t.reason {
        let _ = write!(e, " ({})", md_escape(&clip(r)));
    }
    e
}

/// The server differential: for each pair, every trial whose verdict
/// differs, with the evidence from both reports.
pub fn differential(m: &Matrix) -> String {
    let mut s = String::new();
    if m.differ.is_empty() {
        return s;
    }
    let _ = writeln!(s, "### Server differential\n");
    let _ = writeln!(
        s,
        "The same catalog on two targets that differ only in the server (or the protocol): every trial whose outcome differs, with what each report saw. Links go to the scenario; each report has the steps.\n"
    );
    for (a, b) in &m.differ {
        let diffs = m.differences(a, b);
        let n = diffs.len();
        let what = if n == 1 {
            "trial differs"
        } else {
            "trials differ"
        };
        let _ = writeln!(s, "#### `{a}` and `{b}`: {n} {what}\n");
        if diffs.is_empty() {
            let _ = writeln!(s, "Every trial has the same outcome on both.\n");
            continue;
        }
        let _ = writeln!(s, "| trial | `{a}` | `{b}` |\n|---|---|---|");
        for (scenario, ta, tb) in diffs {
            let _ = writeln!(
                s,
                "| [`{scenario}`](../scenarios/{scenario}.yaml)::{} | {} | {} |",
                ta.mechanism,
                evidence(ta),
                evidence(tb)
            );
        }
        let _ = writeln!(s);
    }
    s
}

/// The lock latency rows (`lockcheck bench` figures in the reports): a
/// label and one cell per target; none if no report has figures.
pub(crate) fn latency_rows(m: &Matrix) -> Vec<(String, Vec<String>)> {
    use crate::record::bench::MechBench;
    use crate::render::bench::{format_us, group};
    if m.targets.iter().all(|r| r.benchmarks.is_none()) {
        return Vec::new();
    }
    let mut rows = Vec::new();
    for mech in crate::record::bench::MECHANISMS {
        let of = |r: &MReport| -> Option<MechBench> {
            r.benchmarks
                .as_ref()?
                .results
                .iter()
                .find(|b| b.mechanism == mech)
                .cloned()
        };
        let lat = |l: Option<&crate::record::bench::Latency>| {
            l.map(|l| format!("{} (p99 {})", format_us(l.median_us), format_us(l.p99_us)))
                .unwrap_or_default()
        };
        rows.push((
            format!("{mech}: lock+unlock"),
            m.targets
                .iter()
                .map(|r| lat(of(r).as_ref().and_then(|b| b.uncontended.as_ref())))
                .collect(),
        ));
        rows.push((
            format!("{mech}: hand-off to a waiter"),
            m.targets
                .iter()
                .map(|r| lat(of(r).as_ref().and_then(|b| b.handoff.as_ref())))
                .collect(),
        ));
        rows.push((
            format!("{mech}: locks/s, processes contending"),
            m.targets
                .iter()
                .map(|r| {
                    of(r)
                        .and_then(|b| b.throughput)
                        .map(|t| format!("{} ({})", group(t.locks_per_s), t.processes))
                        .unwrap_or_default()
                })
                .collect(),
        ));
    }
    rows
}

/// The stress rows (`run --stress` in the reports): the outcome, the
/// requests made and how fast; none if no report has a stress phase.
pub(crate) fn stress_rows(m: &Matrix) -> Vec<(String, Vec<String>)> {
    use crate::render::bench::group;
    if m.targets.iter().all(|r| r.stress.is_none()) {
        return Vec::new();
    }
    let cell = |f: &dyn Fn(&crate::record::stress::Stress) -> String| -> Vec<String> {
        m.targets
            .iter()
            .map(|r| r.stress.as_ref().map(f).unwrap_or_default())
            .collect()
    };
    vec![
        (
            "outcome (findings)".to_string(),
            cell(&|s| {
                let n = s.findings.len() as u64 + s.findings_dropped;
                match s.verdict {
                    crate::record::stress::StressVerdict::Clean => "clean".to_string(),
                    v => format!("**{}** ({n})", v.as_str().to_uppercase()),
                }
            }),
        ),
        (
            "requests (seconds × processes × hosts)".to_string(),
            cell(&|s| {
                format!(
                    "{} ({:.0} s × {} × {})",
                    group(s.operations as f64),
                    s.elapsed_ms / 1000.0,
                    s.processes,
                    s.hosts.len()
                )
            }),
        ),
        (
            "requests/s".to_string(),
            cell(&|s| group(s.operations_per_s)),
        ),
    ]
}

const STRESS_NOTE: &str = "From `lockcheck run --stress`: worker processes hammer a few files with exclusive and shared, blocking and non-blocking requests; every grant is checked by oracles that do not trust the storage. Empty: not run.";

const LATENCY_NOTE: &str = "Medians (p99) from `lockcheck run --bench` on each target, actors on the machine running lockcheck: lock+unlock by one process; from a holder's unlock to a blocked waiter's return; locks granted per second with N processes contending. Empty: not measured.";

fn family_title(f: Family) -> String {
    let s = f.as_str().replace('-', " ");
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => s,
    }
}

/// Replace the text between `<!-- matrix: ... -->` and `<!-- end of matrix -->`
/// in `readme` with the matrix.
pub fn update_readme(readme: &Path, m: &Matrix) -> Result<()> {
    const START: &str = "<!-- matrix: generated by `lockcheck matrix`; do not edit by hand -->";
    const END: &str = "<!-- end of matrix -->";
    let text = std::fs::read_to_string(readme)
        .map_err(|e| Error::io(format!("reading {}", readme.display()), e))?;
    let (Some(a), Some(b)) = (text.find(START), text.find(END)) else {
        return Err(Error::usage(
            format!("{} has no matrix markers", readme.display()),
            Some("put the lines `<!-- matrix: generated by `lockcheck matrix`; do not edit by hand -->` and `<!-- end of matrix -->` where the matrix goes"),
        ));
    };
    if b < a {
        return Err(Error::usage(
            format!(
                "{}: the end marker comes before the start marker",
                readme.display()
            ),
            None,
        ));
    }
    let new = format!(
        "{}{START}\n{}{END}{}",
        &text[..a],
        markdown(m),
        &text[b + END.len()..]
    );
    std::fs::write(readme, new).map_err(|e| Error::io(format!("writing {}", readme.display()), e))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The data the matrix page's script shows on a click: every cell, the
/// application verdicts and the targets, as JSON that is safe inside a
/// `<script>` block.
fn page_data(m: &Matrix) -> String {
    #[derive(Serialize)]
    struct Data<'a> {
        cells: BTreeMap<String, &'a Cell>,
        apps: BTreeMap<String, MApp>,
        targets: Vec<TargetInfo>,
    }
    #[derive(Serialize)]
    struct TargetInfo {
        label: String,
        fs: String,
        options: String,
        kernel: String,
        generated: String,
    }
    let data = Data {
        cells: m
            .cells
            .iter()
            .map(|((t, s), c)| (format!("{t}/{s}"), c))
            .collect(),
        apps: m
            .targets
            .iter()
            .flat_map(|r| {
                r.applications
                    .iter()
                    .map(|a| (format!("{}/{}", r.target.label, a.app), a.clone()))
            })
            .collect(),
        targets: m
            .targets
            .iter()
            .map(|r| TargetInfo {
                label: r.target.label.clone(),
                fs: r.target.fs_type.clone(),
                options: r
                    .target
                    .mount
                    .as_ref()
                    .map(|x| x.super_options.clone())
                    .unwrap_or_default(),
                kernel: r.target.kernel.clone(),
                generated: r.generated_at.clone(),
            })
            .collect(),
    };
    // In a <script> block nothing may look like markup: `<`, `>` and `&`
    // are written as JSON escapes (`</script>` and `<!--` cannot occur).
    serde_json::to_string(&data)
        .unwrap_or_else(|_| "{}".into())
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// The matrix as one HTML page that needs nothing from the network: the
/// table, and a detail panel a cell fills (expected and observed for each
/// of its trials, reasons, measured times). `#cell=TARGET/SCENARIO` or
/// `#app=TARGET/APP` in the address opens that detail.
pub fn html(m: &Matrix) -> String {
    let json = page_data(m);
    let mut t = String::new();
    let labels: Vec<&str> = m.targets.iter().map(|r| r.target.label.as_str()).collect();
    let header = |t: &mut String, first: &str| {
        let _ = write!(t, "<tr><th class=\"row\">{first}</th>");
        for (l, r) in labels.iter().zip(&m.targets) {
            let _ = write!(
                t,
                "<th title=\"{}\">{}<br><small>{}</small></th>",
                html_escape(
                    &r.target
                        .mount
                        .as_ref()
                        .map(|x| x.super_options.clone())
                        .unwrap_or_default()
                ),
                html_escape(l),
                html_escape(&r.target.fs_type)
            );
        }
        t.push_str("</tr>\n");
    };
    let apps = m.apps();
    if !apps.is_empty() {
        t.push_str("<tbody class=\"group\"><tr><th class=\"family\" colspan=\"999\"><span>Applications</span></th></tr>\n");
        header(&mut t, "application");
        for (name, title) in &apps {
            let _ = write!(t, "<tr><th class=\"row\">{}</th>", html_escape(title));
            for r in &m.targets {
                match m.app(r, name) {
                    Some(a) => {
                        let _ = write!(
                            t,
                            "<td><button class=\"cell v-{v}\" data-kind=\"app\" data-key=\"{k}\">{text}</button></td>",
                            v = html_escape(&a.verdict),
                            k = html_escape(&format!("{}/{}", r.target.label, name)),
                            text = html_escape(&a.verdict.replace('-', " "))
                        );
                    }
                    None => t.push_str("<td></td>"),
                }
            }
            t.push_str("</tr>\n");
        }
        t.push_str("</tbody>\n");
    }
    if let Some(lab) = &m.lab {
        lab_rows(&mut t, lab, m);
    }
    for (title, note, rows) in [
        (
            "Lock latency (medians, p99 in brackets; hover for how)",
            LATENCY_NOTE,
            latency_rows(m),
        ),
        ("Stress (hover for how)", STRESS_NOTE, stress_rows(m)),
    ] {
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(
            t,
            "<tbody class=\"group\"><tr><th class=\"family\" colspan=\"999\" title=\"{}\"><span>{}</span></th></tr>",
            html_escape(&note.replace('`', "")),
            html_escape(title)
        );
        header(&mut t, "measurement");
        for (label, cells) in &rows {
            let _ = write!(t, "<tr><th class=\"row\">{}</th>", html_escape(label));
            for c in cells {
                let _ = write!(t, "<td class=\"figure\">{}</td>", html_escape(c));
            }
            t.push_str("</tr>\n");
        }
        t.push_str("</tbody>\n");
    }
    let mut family: Option<Family> = None;
    for (f, scenario) in &m.rows {
        if family != Some(*f) {
            if family.is_some() {
                t.push_str("</tbody>\n");
            }
            let _ = writeln!(
                t,
                "<tbody class=\"group\"><tr><th class=\"family\" colspan=\"999\"><span>{}</span></th></tr>",
                html_escape(&family_title(*f))
            );
            header(&mut t, "scenario");
            family = Some(*f);
        }
        let _ = write!(t, "<tr><th class=\"row\">{}</th>", html_escape(scenario));
        for r in &m.targets {
            match m.cell(&r.target.label, scenario) {
                Some(c) => {
                    let mut text = c.verdict.clone();
                    if !c.which.is_empty() {
                        text.push_str(&format!(" ({})", c.which.join(", ")));
                    }
                    if let Some(ms) = c.recovery_ms {
                        text.push_str(&format!(" · {}", secs(ms)));
                    }
                    let _ = write!(
                        t,
                        "<td><button class=\"cell v-{v}\" data-kind=\"cell\" data-key=\"{k}\">{text}</button></td>",
                        v = html_escape(&c.verdict),
                        k = html_escape(&format!("{}/{}", r.target.label, scenario)),
                        text = html_escape(&text)
                    );
                }
                None => t.push_str("<td></td>"),
            }
        }
        t.push_str("</tr>\n");
    }
    if family.is_some() {
        t.push_str("</tbody>\n");
    }
    fill(
        HTML_PAGE,
        &[
            ("{{TABLE}}", t.as_str()),
            ("{{DATA}}", json.as_str()),
            ("{{COUNT}}", m.targets.len().to_string().as_str()),
        ],
    )
}

/// The application lab's rows of the HTML page: per application and
/// configuration, whether the real application did what the verdict says;
/// the cell's title holds both in full.
fn lab_rows(t: &mut String, lab: &crate::record::applab::AppLab, m: &Matrix) {
    use crate::render::applab::{cell, cell_text, rows};
    let _ = writeln!(
        t,
        "<tbody class=\"group\"><tr><th class=\"family\" colspan=\"999\" title=\"{}\"><span>Applications, predicted and observed (the real applications, ci/app-lab; hover for details)</span></th></tr>",
        html_escape("✓: the application did what lockcheck's verdict says; ✗: it did not")
    );
    let _ = write!(t, "<tr><th class=\"row\">application</th>");
    for r in &m.targets {
        let _ = write!(t, "<th>{}</th>", html_escape(&r.target.label));
    }
    t.push_str("</tr>\n");
    for (app, variant, title) in rows(lab) {
        let _ = write!(
            t,
            "<tr><th class=\"row\">{} ({})</th>",
            html_escape(&title),
            html_escape(&variant)
        );
        for r in &m.targets {
            match cell(lab, &app, &variant, &r.target.label) {
                Some(c) => {
                    let predicted = match (&c.predicted, &c.note) {
                        (Some(p), _) => crate::render::applab::predicted_text(p),
                        (None, Some(n)) => format!("not predicted: {n}"),
                        (None, None) => "-".into(),
                    };
                    let class = match c.agreement {
                        crate::record::applab::Agreement::Agree => c.observed.verdict.as_str(),
                        crate::record::applab::Agreement::NotPredicted => "skip",
                        _ => "error",
                    };
                    let _ = write!(
                        t,
                        "<td class=\"figure v-{class}\" title=\"{}\">{}</td>",
                        html_escape(&format!(
                            "lockcheck predicted: {predicted}\nthe application: {}: {}",
                            c.observed.verdict.as_str(),
                            c.observed.summary
                        )),
                        html_escape(&cell_text(c))
                    );
                }
                None => t.push_str("<td></td>"),
            }
        }
        t.push_str("</tr>\n");
    }
    t.push_str("</tbody>\n");
}

/// The template with each placeholder replaced once, in one pass: text put
/// in is never searched for placeholders again.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    loop {
        let next = values
            .iter()
            .filter_map(|(k, v)| rest.find(k).map(|i| (i, *k, *v)))
            .min_by_key(|(i, _, _)| *i);
        match next {
            Some((i, k, v)) => {
                out.push_str(&rest[..i]);
                out.push_str(v);
                rest = &rest[i + k.len()..];
            }
            None => {
                out.push_str(rest);
                return out;
            }
        }
    }
}

const HTML_PAGE: &str = r##"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>lockcheck compatibility matrix</title>
<style>
  body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1f2328; }
  header { padding: 12px 16px; border-bottom: 1px solid #d0d7de; }
  h1 { font-size: 18px; margin: 0 0 4px; }
  .legend span { display: inline-block; margin-right: 10px; }
  main { display: flex; gap: 16px; padding: 12px 16px; align-items: flex-start; }
  .wrap { overflow: auto; max-height: calc(100vh - 120px); flex: 1 1 auto; }
  table { border-collapse: collapse; }
  th, td { border: 1px solid #d0d7de; padding: 0; text-align: left; }
  th { background: #f6f8fa; padding: 4px 6px; font-weight: 600; white-space: nowrap; }
  th.row { font-weight: 400; font-family: ui-monospace, monospace; font-size: 12px; position: sticky; left: 0; }
  th.family { background: #eaeef2; font-size: 13px; }
  th.family span { position: sticky; left: 6px; }
  button.cell { border: 0; width: 100%; padding: 4px 6px; font: inherit; font-size: 12px; cursor: pointer; text-align: left; white-space: nowrap; }
  button.cell:focus, button.cell.selected { outline: 2px solid #0969da; outline-offset: -2px; }
  .v-pass, .v-safe { background: #dafbe1; }
  .v-skip, .v-not-checked { background: #f6f8fa; color: #57606a; }
  .v-incomplete { background: #fff1e5; }
  td.figure { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; padding: 2px 6px; }
  .v-xfail, .v-info { background: #ddf4ff; }
  .v-divergent, .v-degraded { background: #fff8c5; }
  .v-unsafe { background: #ffebe9; color: #a40e26; font-weight: 700; }
  .v-error { background: #ffd8b5; }
  aside { flex: 0 0 36%; position: sticky; top: 12px; max-height: calc(100vh - 120px); overflow: auto; border: 1px solid #d0d7de; border-radius: 6px; padding: 10px 12px; }
  aside[hidden] { display: none; }
  aside h2 { font-size: 15px; margin: 0 0 6px; }
  aside dl { margin: 6px 0; }
  aside dt { font-weight: 600; margin-top: 6px; }
  aside dd { margin: 0 0 0 12px; white-space: pre-wrap; word-break: break-word; }
  .trial { border-top: 1px solid #d0d7de; padding-top: 6px; margin-top: 8px; }
</style>
</head>
<body>
<header>
  <h1>lockcheck compatibility matrix</h1>
  <div id="status">{{COUNT}} targets. Select a cell for what was expected and what was observed.</div>
  <div class="legend"><span class="v-pass">pass / safe</span><span class="v-divergent">divergent / degraded</span><span class="v-unsafe">UNSAFE</span><span class="v-info">info / expected failure</span><span class="v-skip">skip / not checked</span><span class="v-error">error</span></div>
</header>
<main>
  <div class="wrap"><table id="matrix">
{{TABLE}}</table></div>
  <aside id="detail" hidden></aside>
</main>
<script type="application/json" id="data">{{DATA}}</script>
<script>
(function () {
  var data = JSON.parse(document.getElementById("data").textContent);
  var detail = document.getElementById("detail");
  var status = document.getElementById("status");
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }
  function field(dl, name, value) {
    if (value === undefined || value === null || value === "") return;
    dl.appendChild(el("dt", name));
    dl.appendChild(el("dd", String(value)));
  }
  function show(kind, key) {
    var parts = key.split("/");
    var target = parts.shift(), name = parts.join("/");
    detail.textContent = "";
    if (kind === "app") {
      var a = data.apps[key];
      if (!a) return false;
      detail.appendChild(el("h2", a.title + " on " + target + ": " + a.verdict.replace("-", " ")));
      var dl = el("dl");
      (a.reasons || []).forEach(function (r) { field(dl, "why", r); });
      (a.unchecked || []).forEach(function (r) { field(dl, "not checked here", r); });
      if (!dl.childNodes.length) field(dl, "why", "every trial it relies on passes here");
      detail.appendChild(dl);
      status.textContent = a.title + " on " + target + ": " + a.verdict.replace("-", " ");
    } else {
      var c = data.cells[key];
      if (!c) return false;
      detail.appendChild(el("h2", name + " on " + target + ": " + c.verdict));
      if (c.trials.length && c.trials[0].summary) detail.appendChild(el("p", c.trials[0].summary));
      c.trials.forEach(function (t) {
        var box = el("div", undefined, "trial");
        box.appendChild(el("strong", t.mechanism + ": " + t.verdict));
        var dl = el("dl");
        if (t.failure) {
          field(dl, "step", t.failure.step);
          field(dl, "expected", t.failure.expected);
          field(dl, "observed", t.failure.observed);
        }
        field(dl, t.status === "skip" ? "skipped" : "reason", t.reason);
        (t.measurements || []).forEach(function (m) { field(dl, "measured", m.what + ": " + m.ms + " ms"); });
        box.appendChild(dl);
        detail.appendChild(box);
      });
      status.textContent = name + " on " + target + ": " + c.verdict;
    }
    detail.hidden = false;
    // Mark the cell, and bring it into view.
    Array.prototype.forEach.call(document.querySelectorAll("button.cell.selected"), function (b) {
      b.classList.remove("selected");
    });
    var sel = document.querySelector('button.cell[data-kind="' + kind + '"][data-key="' + key.replace(/"/g, '\\"') + '"]');
    if (sel) {
      sel.classList.add("selected");
      sel.scrollIntoView({ block: "center", inline: "center" });
    }
    // What a reader sees: the panel's rendered height, for checks.
    detail.setAttribute("data-height", String(detail.getBoundingClientRect().height));
    return true;
  }
  document.getElementById("matrix").addEventListener("click", function (ev) {
    var b = ev.target.closest("button.cell");
    if (!b) return;
    if (show(b.getAttribute("data-kind"), b.getAttribute("data-key"))) {
      history.replaceState(null, "", "#" + b.getAttribute("data-kind") + "=" + b.getAttribute("data-key"));
    }
  });
  function fromHash() {
    var m = /^#(cell|app)=(.+)$/.exec(decodeURIComponent(location.hash));
    if (m) show(m[1], m[2]);
  }
  window.addEventListener("hashchange", fromHash);
  fromHash();
})();
</script>
</body>
</html>
"##;

#[cfg(test)]
mod tests {
    use super::*;

    fn report(label: &str, verdicts: &[(&str, &str, &str)]) -> MReport {
        MReport {
            target: MTarget {
                label: label.into(),
                fs_type: "nfs".into(),
                mount: None,
                kernel: String::new(),
            },
            applications: vec![],
            generated_at: String::new(),
            catalog: None,
            benchmarks: None,
            stress: None,
            results: verdicts
                .iter()
                .map(|(s, m, v)| MResult {
                    scenario: (*s).into(),
                    mechanism: (*m).into(),
                    family: Family::Exclusion,
                    status: if *v == "pass" || *v == "skip" {
                        (*v).into()
                    } else {
                        "fail".into()
                    },
                    verdict: (*v).into(),
                    reason: None,
                    failure: None,
                    measurements: vec![],
                    summary: String::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn cells_show_the_worst_with_the_mechanisms_that_got_it() {
        let m = Matrix::build(vec![
            report(
                "a",
                &[
                    ("x", "flock", "pass"),
                    ("x", "posix", "unsafe"),
                    ("x", "ofd", "pass"),
                ],
            ),
            report(
                "b",
                &[
                    ("x", "flock", "pass"),
                    ("x", "posix", "pass"),
                    ("x", "ofd", "skip"),
                ],
            ),
        ])
        .expect("matrix");
        let md = markdown(&m);
        assert!(
            md.contains("| [`x`](../scenarios/x.yaml) | **UNSAFE** (posix) | pass |"),
            "{md}"
        );
        let page = html(&m);
        assert!(page.contains("data-key=\"a/x\""));
        assert!(
            !page.contains("https://"),
            "the page loads nothing from the network"
        );
        assert!(Matrix::build(vec![report("a", &[]), report("a", &[])]).is_err());
    }

    #[test]
    fn report_text_cannot_become_markup() {
        let mut r = report("x{{DATA}}", &[("s", "flock", "unsafe")]);
        r.results[0].reason = Some("<img src=x onerror=alert(1)> <!--<script> </script>".into());
        r.results[0].scenario = "s{{TABLE}}".into();
        let page = html(&Matrix::build(vec![r]).expect("matrix"));
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("<!--<script"), "{page}");
        assert_eq!(
            page.matches("<script").count(),
            2,
            "only the page's own scripts"
        );
        assert!(page.contains("x{{DATA}}"), "labels are shown as text");
    }

    #[test]
    fn latency_figures_line_up_by_target_and_say_nothing_when_missing() {
        let mut fast = report("local", &[("x", "flock", "pass")]);
        let slow = report("nfs", &[("x", "flock", "pass")]);
        assert!(latency_rows(&Matrix::build(vec![slow.clone()]).expect("m")).is_empty());
        fast.benchmarks = Some(crate::record::bench::Bench {
            budget_ms: 200.0,
            contenders: 4,
            results: vec![crate::record::bench::MechBench {
                mechanism: crate::spec::scenario::Mechanism::Flock,
                uncontended: crate::record::bench::Latency::of(&[700, 700, 900]),
                handoff: None,
                throughput: Some(crate::record::bench::Throughput {
                    processes: 4,
                    locks: 1000,
                    seconds: 0.001,
                    locks_per_s: 1_000_000.0,
                }),
                blocked_seen: None,
                io: None,
                problems: vec!["hand-off: no".into()],
            }],
        });
        let m = Matrix::build(vec![fast, slow]).expect("matrix");
        let rows = latency_rows(&m);
        assert_eq!(rows.len(), 9, "three rows per mechanism");
        assert_eq!(rows[0].0, "flock: lock+unlock");
        assert_eq!(
            rows[0].1,
            vec!["0.7 µs (p99 0.9 µs)".to_string(), String::new()]
        );
        assert_eq!(rows[1].1, vec![String::new(), String::new()]);
        assert_eq!(rows[2].1[0], "1,000,000 (4)");
        assert!(markdown(&m).contains("### Lock latency"));
        assert!(html(&m).contains("<td class=\"figure\">0.7 µs (p99 0.9 µs)</td>"));
    }

    #[test]
    fn the_differential_lists_every_trial_that_differs_and_only_those() {
        let m = Matrix::build(vec![
            report(
                "knfsd",
                &[
                    ("x", "flock", "pass"),
                    ("x", "posix", "pass"),
                    ("y", "posix", "skip"),
                ],
            ),
            report(
                "ganesha",
                &[
                    ("x", "flock", "pass"),
                    ("x", "posix", "unsafe"),
                    ("y", "posix", "skip"),
                ],
            ),
        ])
        .expect("matrix")
        .with_differential(vec![("knfsd".into(), "ganesha".into())])
        .expect("pair");
        let d = m.differences("knfsd", "ganesha");
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].0, d[0].1.mechanism.as_str()), ("x", "posix"));
        let md = markdown(&m);
        assert!(
            md.contains("#### `knfsd` and `ganesha`: 1 trial differs"),
            "{md}"
        );
        assert!(md.contains("| **pass** | **unsafe** |"), "{md}");
        // A pair naming a target without a report is bad usage.
        let m = Matrix::build(vec![report("knfsd", &[("x", "flock", "pass")])]).expect("matrix");
        assert!(m
            .with_differential(vec![("knfsd".into(), "smb".into())])
            .is_err());
    }

    #[test]
    fn an_error_is_not_hidden_by_a_milder_failure() {
        let m = Matrix::build(vec![report(
            "a",
            &[("x", "flock", "error"), ("x", "posix", "info")],
        )])
        .expect("matrix");
        assert!(
            markdown(&m).contains("**error** (flock)"),
            "{}",
            markdown(&m)
        );
    }

    #[test]
    fn stress_rows_show_the_outcome_and_the_requests() {
        let plain = report("plain", &[("exclusion", "shared-shared", "pass")]);
        assert!(stress_rows(&Matrix::build(vec![plain.clone()]).expect("m")).is_empty());
        let mut stressed = report("stressed", &[("exclusion", "shared-shared", "pass")]);
        let json = serde_json::json!({
            "duration_ms": 10000.0, "elapsed_ms": 10000.0, "processes": 4,
            "hosts": ["a", "b"], "mechanisms": ["posix"], "seed": 1, "wait_bound_ms": 60000,
            "operations": 15082, "operations_per_s": 1508.2, "results": [],
            "cells_checked": 32, "cell_writes": 100, "findings": [], "findings_dropped": 3,
            "verdict": "unsafe"
        });
        stressed.stress = Some(serde_json::from_value(json).expect("stress"));
        let m = Matrix::build(vec![plain, stressed]).expect("m");
        let rows = stress_rows(&m);
        assert_eq!(
            rows[0].1,
            vec!["".to_string(), "**UNSAFE** (3)".to_string()]
        );
        assert_eq!(rows[1].1[1], "15,082 (10 s × 4 × 2)");
        assert!(markdown(&m).contains("### Stress"));
        assert!(html(&m).contains("Stress (hover for how)"));
    }
}
