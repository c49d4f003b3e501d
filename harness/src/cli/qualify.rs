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
    /// The bundle's directory: the same as --out (the name before --out
    /// meant the same thing for every command).
    #[arg(long, value_name = "DIR", hide = true)]
    pub(crate) bundle: Option<PathBuf>,
}

/// `qualify`'s options in its help: `--out` is where the bundle goes;
/// `--format` and `--junit` are not shown (the bundle holds the JUnit file
/// and the summary), and refused with that reason if given.
pub(crate) fn adjust_help(cmd: clap::Command) -> clap::Command {
    cmd.mut_subcommand("qualify", |s| {
        s.mut_arg("out", |a| {
            a.help("Where to write the bundle: every report, the JUnit file, the summary and the matrix page [default: qualification]")
        })
        .mut_arg("format", |a| a.hide(true))
        .mut_arg("junit", |a| a.hide(true))
    })
}

/// The options `qualify` shares with `run` but refuses (its help hides
/// them): the bundle holds everything, so options that write elsewhere do
/// not apply.
pub(crate) fn check_options(q: &QualifyArgs) -> Result<(), Error> {
    if q.run.format != RunFormat::Text || q.run.junit.is_some() {
        return Err(Error::usage(
            "qualify writes its bundle only: --format and --junit do not apply",
            Some("give --out DIR for the bundle; it gets the reports, the JUnit file and the summary"),
        ));
    }
    Ok(())
}

pub(crate) fn qualify(q: QualifyArgs) -> Result<ExitCode, Error> {
    let repeat = q.run.repeat.unwrap_or(3);
    check_options(&q)?;
    let mut q = q;
    let bundle = match (q.run.out.take(), q.bundle.take()) {
        (Some(_), Some(_)) => {
            return Err(Error::usage(
                "--out and --bundle name the same directory; give one",
                Some("--out DIR"),
            ))
        }
        (Some(d), None) | (None, Some(d)) => d,
        (None, None) => PathBuf::from("qualification"),
    };
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
    match std::fs::read_dir(&bundle) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::usage(
                    format!("--out {}: the directory is not empty", bundle.display()),
                    Some("give a new or empty directory, so the bundle holds this run only"),
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::usage(
                format!("--out {}: {e}", bundle.display()),
                Some("give a directory to write the bundle into"),
            ))
        }
    }
    super::run::run(q.run, Some((repeat, bundle)))
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
