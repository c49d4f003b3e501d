//! The application lab as Markdown (in `reports/README.md`, through
//! `lockcheck matrix --app-lab`, and printed by `lockcheck oracle`) and as
//! rows of the HTML matrix.

use std::fmt::Write as _;

use super::report::md_escape;
use crate::record::applab::{Agreement, AppLab, LabCell};
use crate::verdict::apps::clip;

/// What a cell shows: the agreement and the class the application showed.
pub(crate) fn cell_text(c: &LabCell) -> String {
    let observed = c.observed.verdict.as_str();
    match (c.agreement, &c.predicted) {
        (Agreement::Agree, _) => format!("✓ {observed}"),
        (Agreement::Disagree, Some(p)) => {
            format!("✗ predicted {}, observed {observed}", p.verdict.as_str())
        }
        (Agreement::NotPredicted, _) => format!("{observed} (not predicted)"),
        (Agreement::Error, _) if c.observed.verdict.as_str() == "error" => "error".to_string(),
        _ => format!("? observed {observed}"),
    }
}

/// The rows of the lab: (application, variant, title), in first-seen order.
pub(crate) fn rows(lab: &AppLab) -> Vec<(String, String, String)> {
    let mut rows: Vec<(String, String, String)> = Vec::new();
    for c in &lab.cells {
        if !rows.iter().any(|(a, v, _)| *a == c.app && *v == c.variant) {
            rows.push((c.app.clone(), c.variant.clone(), c.title.clone()));
        }
    }
    rows
}

/// The cell of an application, variant and mount.
pub(crate) fn cell<'a>(
    lab: &'a AppLab,
    app: &str,
    variant: &str,
    label: &str,
) -> Option<&'a LabCell> {
    lab.cells
        .iter()
        .find(|c| c.app == app && c.variant == variant && c.label == label)
}

/// A verdict and its reasons (which name their own class when they have one).
pub(crate) fn predicted_text(p: &crate::record::applab::Prediction) -> String {
    let v = p.verdict.as_str();
    let reasons = clip(&p.reasons.join("; "), 700);
    if reasons.is_empty() {
        v.to_string()
    } else if reasons.starts_with(&format!("{v}: ")) {
        reasons
    } else {
        format!("{v}: {reasons}")
    }
}

/// The lab as Markdown: the agreement per application and mount (columns in
/// `labels` order; mounts the lab did not run are left out), then every
/// cell's prediction next to what the application did.
pub fn markdown(lab: &AppLab, labels: &[String]) -> String {
    let labels: Vec<&String> = labels
        .iter()
        .filter(|l| lab.cells.iter().any(|c| &c.label == *l))
        .chain(lab.labels.iter().filter(|l| !labels.contains(l)))
        .collect();
    let mut t = String::new();
    let s = &lab.summary;
    let _ = writeln!(
        t,
        "### Applications, predicted and observed\n\n\
         The real applications run on the same mounts by the application lab \
         (`ci/app-lab`): two instances on two hosts, a crash of the host holding \
         the lock, the data afterwards. ✓: the application did what lockcheck's \
         verdict says; ✗: it did not. {} agree, {} disagree, {} not predicted, {} errors.\n",
        s.agree, s.disagree, s.not_predicted, s.error
    );
    let _ = write!(t, "| application |");
    for l in &labels {
        let _ = write!(t, " `{l}` |");
    }
    let _ = write!(t, "\n|---|");
    for _ in &labels {
        t.push_str("---|");
    }
    t.push('\n');
    let rows = rows(lab);
    for (app, variant, title) in &rows {
        let _ = write!(t, "| {} ({}) |", md_escape(title), md_escape(variant));
        for l in &labels {
            match cell(lab, app, variant, l) {
                Some(c) => {
                    let text = cell_text(c);
                    if c.agreement == Agreement::Disagree || c.agreement == Agreement::Error {
                        let _ = write!(t, " **{}** |", md_escape(&text));
                    } else {
                        let _ = write!(t, " {} |", md_escape(&text));
                    }
                }
                None => t.push_str(" |"),
            }
        }
        t.push('\n');
    }
    let _ = writeln!(
        t,
        "\n| application | mount | lockcheck predicted | the application did |\n|---|---|---|---|"
    );
    for (app, variant, title) in &rows {
        for l in &labels {
            let Some(c) = cell(lab, app, variant, l) else {
                continue;
            };
            let predicted = match (&c.predicted, &c.note) {
                (Some(p), _) => predicted_text(p),
                (None, Some(n)) => format!("not predicted: {}", clip(n, 300)),
                (None, None) => "—".to_string(),
            };
            let _ = writeln!(
                t,
                "| {} ({}) | `{}` | {} | {} {}: {} |",
                md_escape(title),
                md_escape(variant),
                l,
                md_escape(&predicted),
                match c.agreement {
                    Agreement::Agree => "✓",
                    Agreement::Disagree => "✗",
                    _ => "·",
                },
                c.observed.verdict.as_str(),
                md_escape(&c.observed.summary)
            );
        }
    }
    t
}
