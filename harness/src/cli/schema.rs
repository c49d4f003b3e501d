//! `lockcheck schema`: the JSON Schemas of scenario files, reports and
//! application profiles.

use std::process::ExitCode;

use clap::ValueEnum;

use lockcheck::Error;

use super::emit;

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum SchemaOf {
    /// scenario files (scenarios/scenario.schema.json)
    Scenario,
    /// reports, JSON (reports/report.schema.json)
    Report,
    /// application profiles (apps/app.schema.json)
    App,
    /// the application lab's comparison (reports/app-lab.schema.json)
    AppLab,
}

pub(crate) fn schema(of: SchemaOf) -> Result<ExitCode, Error> {
    let schema = match of {
        SchemaOf::Scenario => lockcheck::spec::scenario::json_schema(),
        SchemaOf::Report => lockcheck::record::report::json_schema(),
        SchemaOf::App => lockcheck::verdict::apps::json_schema(),
        SchemaOf::AppLab => lockcheck::record::applab::json_schema(),
    };
    let s = serde_json::to_string_pretty(&schema)
        .map_err(|e| Error::usage(format!("cannot render the schema: {e}"), None))?;
    emit(&format!("{s}\n"));
    Ok(ExitCode::SUCCESS)
}
