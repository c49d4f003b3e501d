//! `lockcheck qualify`: repeated runs, flaky trials, one bundle with a
//! verdict.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use lockcheck::engine::runner::Session;
use lockcheck::record::report::Report;
use lockcheck::tools::qualify::{assess, write_bundle, Verdict};
use lockcheck::verdict::policy::FailOn;
use lockcheck::Error;

use super::emit;
use super::run::{warn_cleanup, RunArgs, RunFormat};

#[derive(Args, Clone)]
pub(crate) struct QualifyArgs {
    #[command(flatten)]
    pub(crate) run: RunArgs,
    /// The bundle's directory.
    #[arg(long, value_name = "DIR", default_value = "qualification")]
    pub(crate) bundle: PathBuf,
}

pub(crate) fn qualify(q: QualifyArgs) -> Result<ExitCode, Error> {
    let repeat = q.run.repeat.unwrap_or(3);
    // The bundle holds everything: options that write elsewhere do not apply.
    if q.run.format != RunFormat::Text
        || q.run.junit.is_some()
        || q.run.out != std::path::Path::new("reports")
    {
        return Err(Error::usage(
            "qualify writes its bundle only: --format, --junit and --out do not apply",
            Some("give --bundle DIR; it gets the reports, JUnit and the summary"),
        ));
    }
    if q.run
        .targets
        .iter()
        .any(|t| t.starts_with("qualification="))
    {
        return Err(Error::usage(
            "the label `qualification` is the bundle's own summary",
            Some("label the target otherwise"),
        ));
    }
    match std::fs::read_dir(&q.bundle) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::usage(
                    format!(
                        "--bundle {}: the directory is not empty",
                        q.bundle.display()
                    ),
                    Some("give a new or empty directory, so the bundle holds this run only"),
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::usage(
                format!("--bundle {}: {e}", q.bundle.display()),
                Some("give a directory to write the bundle into"),
            ))
        }
    }
    super::run::run(q.run, Some((repeat, q.bundle)))
}

/// After the runs: assesses them, writes the bundle, prints the verdict and
/// chooses the exit status (0 only for a pass).
pub(crate) fn finish(
    session: Session,
    passes: &[Vec<Report>],
    fail_on: FailOn,
    repeats: usize,
    bundle: &Path,
) -> Result<ExitCode, Error> {
    let q = assess(passes, &|r: &Report| fail_on.fails(r));
    let written = write_bundle(bundle, passes, &q)?;
    let problems = session.close();
    let mut text = lockcheck::render::report::console_summary(
        passes.first().map(Vec::as_slice).unwrap_or(&[]),
    );
    for t in &q.targets {
        for f in &t.flaky {
            text.push_str(&format!("flaky: {} ({})\n", f.id, f.outcomes.join(" -> ")));
        }
    }
    text.push_str(&format!(
        "qualification: {} ({} runs); bundle: {} ({} files)\n",
        match q.verdict {
            Verdict::Pass => "pass",
            Verdict::Flaky => "flaky",
            Verdict::Fail => "fail",
        },
        repeats,
        bundle.display(),
        written.len()
    ));
    emit(&text);
    warn_cleanup(&problems);
    Ok(if q.verdict == Verdict::Pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
