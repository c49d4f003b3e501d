//! `lockcheck matrix`: the compatibility matrix of several reports.

use std::path::PathBuf;
use std::process::ExitCode;

use lockcheck::Error;

use super::emit;

pub(crate) fn matrix(
    paths: &[PathBuf],
    readme: Option<&std::path::Path>,
    html: Option<&std::path::Path>,
) -> Result<ExitCode, Error> {
    use lockcheck::render::matrix;
    let reports = paths
        .iter()
        .map(|p| matrix::read_report(p))
        .collect::<Result<Vec<_>, _>>()?;
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
    let m = matrix::Matrix::build(reports)?;
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
