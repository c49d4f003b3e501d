//! `lockcheck list`: the scenarios of the catalog.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use lockcheck::plan::catalog;
use lockcheck::Error;

use super::emit;

#[derive(Args)]
pub(crate) struct ListArgs {
    /// Directory of scenario files. Default: ./scenarios if present, else the built-in catalog.
    #[arg(long, value_name = "DIR")]
    pub(crate) scenarios: Option<PathBuf>,
    /// `text` (a line per scenario) or `markdown` (tables by family, as in scenarios/README.md).
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) format: ListFormat,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ListFormat {
    Text,
    Markdown,
}

pub(crate) fn list(a: ListArgs) -> Result<ExitCode, Error> {
    let cat = catalog::load(a.scenarios.as_deref())?;
    let mut scenarios: Vec<_> = cat.scenarios.iter().collect();
    scenarios.sort_by(|x, y| {
        (x.scenario.family.value, x.name()).cmp(&(y.scenario.family.value, y.name()))
    });
    if let ListFormat::Markdown = a.format {
        emit(&catalog::markdown_table(&cat));
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = format!("{} scenarios from {}\n\n", cat.scenarios.len(), cat.source);
    text.push_str(&format!(
        "{:<16} {:<44} {:<10} mechanisms\n",
        "family", "scenario", "severity"
    ));
    for s in scenarios {
        let mechs = s.applicable_mechanisms();
        text.push_str(&format!(
            "{:<16} {:<44} {:<10} {}\n",
            s.scenario.family.value.as_str(),
            s.name(),
            s.scenario.severity.as_str(),
            mechs.join(",")
        ));
    }
    emit(&text);
    Ok(ExitCode::SUCCESS)
}
