//! `lockcheck validate`: check scenario files without running them.

use std::path::PathBuf;
use std::process::ExitCode;

use lockcheck::plan::catalog;
use lockcheck::Error;

use super::emit;

pub(crate) fn validate(args: &[PathBuf]) -> Result<ExitCode, Error> {
    let mut errors = Vec::new();
    let mut files = Vec::new();
    for a in args {
        if a.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(a)
                .map_err(|e| Error::io(format!("reading {}", a.display()), e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            if found.is_empty() {
                return Err(Error::usage(
                    format!("{}: no scenario files (*.yaml) in it", a.display()),
                    Some("give scenario files or a directory holding them"),
                ));
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(a.clone());
        }
    }
    for f in &files {
        match catalog::load_file(f) {
            Ok(s) => {
                emit(&format!(
                    "ok: {} — {}: {}\n",
                    f.display(),
                    s.name(),
                    s.plans_summary()
                ));
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Error::Scenarios(errors))
    }
}
