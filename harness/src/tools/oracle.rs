//! The application lab's comparison (`lockcheck oracle`): what real
//! applications did on each mount (`ci/app-lab-cases`' observations) next
//! to lockcheck's application verdicts in the reports for the same mounts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::record::applab::{AppLab, Observation, Prediction};
use crate::record::apps::AppStatus;
use crate::render::matrix::read_report;
use crate::spec::error::{Error, Result};
use crate::verdict::apps::Apps;

/// Read observations: JSON lines, one per application, configuration and mount.
pub fn read_observations(path: &Path) -> Result<Vec<Observation>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let o: Observation = serde_json::from_str(line).map_err(|e| {
            Error::usage(
                format!("{}:{}:{}: {e}", path.display(), n + 1, e.column()),
                Some("each line must be one JSON object as ci/app-lab-cases writes it"),
            )
        })?;
        out.push(o);
    }
    Ok(out)
}

/// Compare the observations in `observed` (files of JSON lines) with the
/// application verdicts of `reports` (JSON reports, one per mount).
pub fn compare(
    observed: &[PathBuf],
    reports: &[PathBuf],
    apps: &Apps,
    generated_at: String,
) -> Result<AppLab> {
    let mut observations = Vec::new();
    for p in observed {
        observations.extend(read_observations(p)?);
    }
    if observations.is_empty() {
        return Err(Error::usage(
            "no observations: the files given with --observed are empty",
            Some("run ci/app-lab (or ci/app-lab-cases) first"),
        ));
    }
    let mut predictions = BTreeMap::new();
    let mut labels = Vec::new();
    for p in reports {
        let r = read_report(p)?;
        for a in &r.applications {
            let verdict: AppStatus = serde_json::from_value(serde_json::Value::String(
                a.verdict.clone(),
            ))
            .map_err(|e| {
                Error::usage(
                    format!(
                        "{}: application {}: unknown verdict `{}`: {e}",
                        p.display(),
                        a.app,
                        a.verdict
                    ),
                    None,
                )
            })?;
            predictions.insert(
                (r.target.label.clone(), a.app.clone()),
                Prediction {
                    verdict,
                    reasons: a.reasons.clone(),
                },
            );
        }
        labels.push(r.target.label.clone());
    }
    Ok(crate::verdict::applab::compare(
        observations,
        &predictions,
        &labels,
        apps,
        generated_at,
    ))
}
