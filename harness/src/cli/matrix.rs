//! `lockcheck matrix`: the compatibility matrix of several reports.

use std::path::PathBuf;
use std::process::ExitCode;

use lockcheck::Error;

use super::emit;

pub(crate) fn matrix(
    paths: &[PathBuf],
    readme: Option<&std::path::Path>,
    html: Option<&std::path::Path>,
    app_lab: Option<&std::path::Path>,
    differ: Vec<(String, String)>,
) -> Result<ExitCode, Error> {
    use lockcheck::render::matrix;
    // `reports/*.json` holds the application lab's results too: taken as
    // --app-lab rather than refused as a report.
    let mut reports = Vec::new();
    let mut found_lab = None;
    for p in paths {
        match matrix::read_report(p) {
            Ok(r) => reports.push(r),
            Err(e) => match read_lab(p) {
                Ok(lab) if app_lab.is_none() && found_lab.is_none() => found_lab = Some(lab),
                _ => return Err(e),
            },
        }
    }
    let hashes: std::collections::BTreeSet<&str> = reports
        .iter()
        .filter_map(|r| r.catalog.as_ref().map(|c| c.hash.as_str()))
        .collect();
    if hashes.len() > 1 {
        eprintln!(
            "note: the reports come from {} different catalogs; scenarios missing from some show as empty cells",
            hashes.len()
        );
    }
    let mut m = matrix::Matrix::build(reports)?.with_differential(differ)?;
    if let Some(p) = app_lab {
        found_lab = Some(read_lab(p)?);
    }
    if let Some(lab) = found_lab {
        m = m.with_lab(lab);
    }
    if let Some(p) = readme {
        matrix::update_readme(p, &m)?;
    }
    if let Some(p) = html {
        std::fs::write(p, matrix::html(&m))
            .map_err(|e| Error::io(format!("writing {}", p.display()), e))?;
    }
    if readme.is_none() && html.is_none() {
        emit(&matrix::markdown(&m));
    }
    Ok(ExitCode::SUCCESS)
}

/// The application lab's results (`lockcheck oracle --json`).
fn read_lab(p: &std::path::Path) -> Result<lockcheck::record::applab::AppLab, Error> {
    let text =
        std::fs::read_to_string(p).map_err(|e| Error::io(format!("reading {}", p.display()), e))?;
    serde_json::from_str(&text).map_err(|e| {
        Error::usage(
            format!("{}:{}:{}: {e}", p.display(), e.line(), e.column()),
            Some("give the file `lockcheck oracle --json` wrote"),
        )
    })
}
