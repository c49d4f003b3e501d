//! The command line. Each subcommand has its file here: it turns its
//! arguments into what its library entry point needs, calls it, prints the
//! outcome and chooses the exit status.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use lockcheck::spec::scenario::Mechanism;
use lockcheck::Error;

mod bench;
mod clean;
mod docs;
mod fuzz;
mod list;
mod matrix;
mod oracle;
mod progress;
mod qualify;
mod run;
mod schema;
mod stress;
mod validate;

use bench::BenchArgs;
use fuzz::FuzzArgs;
use list::ListArgs;
use oracle::OracleArgs;
use qualify::QualifyArgs;
use run::RunArgs;
use schema::SchemaOf;
use stress::StressArgs;

/// Tells, for any mounted directory, whether its file locking really works — with evidence.
///
/// With no subcommand, runs the scenario catalog (same as `lockcheck run`).
#[derive(Parser)]
#[command(name = "lockcheck", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the catalog against targets and write one report per target.
    Run(RunArgs),
    /// Qualify storage: run the catalog several times, flag trials whose
    /// outcome changes as flaky, and write one bundle (reports, summary,
    /// matrix page, JUnit) with an overall verdict and the command to
    /// reproduce it.
    Qualify(QualifyArgs),
    /// Measure what locking costs on targets, per mechanism: lock+unlock
    /// latency (median, p99), hand-off from an unlock to a waiting
    /// process, throughput with several processes contending, and one
    /// process's write and read rates without a lock and while it holds one.
    /// `lockcheck run --bench` puts the same figures into the reports.
    Bench(BenchArgs),
    /// Find rare faults: many processes (on every host given) hammer a few
    /// small files with exclusive and shared, blocking and non-blocking
    /// requests on overlapping and adjacent ranges for a given time, and
    /// oracles that do not trust the storage check every grant. Exit 1 on
    /// a finding; each overlap is written as a scenario that replays it.
    Stress(StressArgs),
    /// Remove what a lockcheck that was killed (SIGKILL, a crash) left
    /// behind: `.lockcheck-*` directories with lockcheck's marker whose
    /// process is gone. Nothing else is touched. A run does this in its
    /// targets by itself.
    Clean {
        /// Directories to look in (default: the current directory, TMPDIR and /dev/shm).
        dirs: Vec<PathBuf>,
    },
    /// List the scenarios of the catalog.
    List(ListArgs),
    /// Check scenario files without running them.
    Validate {
        /// Scenario files (YAML), or directories of them.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// The compatibility matrix of several JSON reports: Markdown (printed,
    /// or into a README between its matrix markers) and a self-contained
    /// HTML page.
    Matrix {
        /// JSON reports (LABEL.json), one column each, in this order.
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        /// Replace the matrix section of this Markdown file (between
        /// `<!-- matrix: ... -->` and `<!-- end of matrix -->`).
        #[arg(long, value_name = "FILE")]
        readme: Option<PathBuf>,
        /// Write the HTML page here.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Also show the application lab's comparison (`lockcheck oracle
        /// --json`): the real applications next to the verdicts.
        #[arg(long, value_name = "FILE")]
        app_lab: Option<PathBuf>,
        /// Add a server differential for targets A and B (repeatable): every
        /// trial whose outcome differs, with both reports' evidence, such as
        /// `--differ nfs3=ganesha-nfs3`.
        #[arg(long, value_name = "A=B", value_parser = parse_pair)]
        differ: Vec<(String, String)>,
    },
    /// Check the application verdicts against the real applications: the
    /// application lab's observations (`ci/app-lab`) next to the verdicts
    /// of the reports for the same mounts. Exit 1 when an application did
    /// not do what its verdict says.
    Oracle(OracleArgs),
    /// Print a JSON Schema (draft-07): of scenario files (default), of
    /// reports, of application profiles, or of the application lab's
    /// comparison (`lockcheck oracle --json`).
    Schema {
        #[arg(long, value_enum, default_value = "scenario")]
        of: SchemaOf,
    },
    /// Differential fuzzing: random lock programs run on a reference and a
    /// target; the first difference is shrunk and written as a scenario.
    Fuzz(FuzzArgs),
    /// Print a shell completion script: `lockcheck completions bash >
    /// /etc/bash_completion.d/lockcheck` (zsh: a `_lockcheck` file in
    /// `$fpath`; fish: `~/.config/fish/completions/lockcheck.fish`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: docs::Shell,
    },
    /// Print lockcheck's man page (roff), or write one page per command
    /// into a directory: `lockcheck man --out /usr/local/share/man/man1`.
    Man {
        /// Write lockcheck.1 and lockcheck-COMMAND.1 here instead.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Mech {
    Flock,
    Posix,
    Ofd,
    Lease,
    Pidfile,
}

impl From<Mech> for Mechanism {
    fn from(m: Mech) -> Self {
        match m {
            Mech::Flock => Mechanism::Flock,
            Mech::Posix => Mechanism::Posix,
            Mech::Ofd => Mechanism::Ofd,
            Mech::Lease => Mechanism::Lease,
            Mech::Pidfile => Mechanism::Pidfile,
        }
    }
}

/// Parses the command line, runs the subcommand, and reports an error.
pub(crate) fn main() -> ExitCode {
    // `--version` also names the built-in catalog (`-V` is the short form);
    // its hash is read only when it is asked for.
    let mut cmd = command();
    if std::env::args_os().any(|a| a == "--version") {
        cmd = cmd.long_version(docs::version_text());
    }
    let matches = cmd.get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    lockcheck::actor::interrupt::install();
    let result = match cli.command {
        None => run::run(cli.run, None),
        Some(Command::Run(a)) => run::run(a, None),
        Some(Command::Qualify(q)) => qualify::qualify(q),
        Some(Command::Bench(b)) => bench::bench(b),
        Some(Command::Stress(a)) => stress::stress(a),
        Some(Command::Clean { dirs }) => clean::clean(dirs),
        Some(Command::List(a)) => list::list(a),
        Some(Command::Validate { files }) => validate::validate(&files),
        Some(Command::Schema { of }) => schema::schema(of),
        Some(Command::Matrix {
            reports,
            readme,
            html,
            app_lab,
            differ,
        }) => matrix::matrix(
            &reports,
            readme.as_deref(),
            html.as_deref(),
            app_lab.as_deref(),
            differ,
        ),
        Some(Command::Oracle(a)) => oracle::oracle(a),
        Some(Command::Fuzz(a)) => fuzz::fuzz(a),
        Some(Command::Completions { shell }) => docs::completions(shell),
        Some(Command::Man { out }) => docs::man(out.as_deref()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lockcheck: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// `A=B`: two target labels.
fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((a, b)) if !a.trim().is_empty() && !b.trim().is_empty() => {
            Ok((a.trim().to_string(), b.trim().to_string()))
        }
        _ => Err(format!(
            "expected two target labels as A=B (such as nfs3=ganesha-nfs3), got {s:?}"
        )),
    }
}

/// The command line's definition: the derived one, with the adjustments a
/// derive cannot express. Help, man pages and completions all use it.
pub(crate) fn command() -> clap::Command {
    qualify::adjust_help(Cli::command())
}

/// Where reports go when `--out` is not given: `reports/` in the current
/// directory, except in a lockcheck checkout, whose `reports/` holds the
/// published reports (only `ci/regenerate-reports` writes them, with
/// `--out reports`): there `target/lockcheck-reports/`, which git ignores.
pub(crate) fn default_out() -> PathBuf {
    let checkout = std::path::Path::new("reports/report.schema.json").is_file()
        && std::path::Path::new("scenarios/scenario.schema.json").is_file()
        && std::path::Path::new("harness/Cargo.toml").is_file();
    PathBuf::from(if checkout {
        "target/lockcheck-reports"
    } else {
        "reports"
    })
}

/// A seed for a random choice the user did not fix (short enough to type).
pub(crate) fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom(2) writes at most 8 bytes into b (the system call,
    // as in the engine: the portable binary links against glibc 2.17).
    unsafe { libc::syscall(libc::SYS_getrandom, b.as_mut_ptr(), b.len(), 0) };
    u64::from_ne_bytes(b) % 1_000_000_000
}

/// Write to stdout; a closed pipe (`lockcheck list | head`) ends the output
/// quietly instead of failing.
pub(crate) fn emit(text: &str) -> bool {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_ok()
}

/// Print `doc` as JSON on stdout; an output closed before the end is an error.
pub(crate) fn emit_json(doc: &serde_json::Value, what: &str) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(doc)
        .map_err(|e| Error::usage(format!("cannot render {what}: {e}"), None))?;
    if !emit(&format!("{text}\n")) {
        return Err(Error::io(
            format!("writing {what} as JSON to stdout"),
            std::io::Error::other("the output was closed before the end"),
        ));
    }
    Ok(())
}

/// `--lease`: a duration from 1 s to 1 h.
pub(crate) fn parse_lease(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e}; write for example 90s"))?;
    if d < std::time::Duration::from_secs(1) || d > std::time::Duration::from_secs(3600) {
        return Err("give a lease between 1s and 1h".into());
    }
    Ok(d)
}

#[cfg(test)]
mod help_tests;
