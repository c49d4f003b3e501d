//! `lockcheck oracle`: the application lab's comparison of lockcheck's
//! application verdicts with what the real applications did.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use lockcheck::plan::catalog;
use lockcheck::Error;

use super::emit;

#[derive(Args)]
pub(crate) struct OracleArgs {
    /// What the applications did: JSON lines written by `ci/app-lab-cases`
    /// (repeatable).
    #[arg(long, value_name = "FILE", required = true)]
    pub(crate) observed: Vec<PathBuf>,
    /// lockcheck's JSON reports for the same mounts (LABEL.json), one per
    /// label, in the order the columns should have.
    #[arg(required = true)]
    pub(crate) reports: Vec<PathBuf>,
    /// Write the comparison here as JSON (`lockcheck schema --of app-lab`).
    #[arg(long, value_name = "FILE")]
    pub(crate) json: Option<PathBuf>,
    /// Application profiles. Default: ./apps if present, else the built-in ones.
    #[arg(long, value_name = "DIR")]
    pub(crate) apps: Option<PathBuf>,
    /// Directory of scenario files the profiles name. Default: ./scenarios if present, else the built-in catalog.
    #[arg(long, value_name = "DIR")]
    pub(crate) scenarios: Option<PathBuf>,
}

/// Exit 0 when every application did what its verdict says (or ran in a
/// configuration its profile says the verdict does not cover); 1 when one
/// did not, or a case could not run; 2 on bad input.
pub(crate) fn oracle(a: OracleArgs) -> Result<ExitCode, Error> {
    let cat = catalog::load(a.scenarios.as_deref())?;
    let apps = lockcheck::verdict::apps::load(a.apps.as_deref(), &cat)?;
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let lab = lockcheck::tools::oracle::compare(&a.observed, &a.reports, &apps, now)?;
    if let Some(p) = &a.json {
        let text = serde_json::to_string_pretty(&lab)
            .map_err(|e| Error::usage(format!("cannot render the comparison: {e}"), None))?;
        std::fs::write(p, format!("{text}\n"))
            .map_err(|e| Error::io(format!("writing {}", p.display()), e))?;
    }
    emit(&lockcheck::render::applab::markdown(&lab, &lab.labels));
    Ok(if lab.summary.disagree == 0 && lab.summary.error == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
