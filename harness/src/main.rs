//! The `lockcheck` command.

use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand, ValueEnum};

use lockcheck::engine::runner::{self, Session};
use lockcheck::plan::catalog;
use lockcheck::plan::resolve::Applicability;
use lockcheck::record::report::{self, Status, TrialResult};
use lockcheck::spec::scenario::Mechanism;
use lockcheck::target::targets as target;
use lockcheck::Error;

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
    /// process, and throughput with several processes contending.
    /// `lockcheck run --bench` puts the same figures into the reports.
    Bench(BenchArgs),
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
    },
    /// Print a JSON Schema (draft-07): of scenario files (default), of
    /// reports, or of application profiles.
    Schema {
        #[arg(long, value_enum, default_value = "scenario")]
        of: SchemaOf,
    },
    /// Differential fuzzing: random lock programs run on a reference and a
    /// target; the first difference is shrunk and written as a scenario.
    Fuzz(FuzzArgs),
}

#[derive(Args)]
struct FuzzArgs {
    /// The directory whose behaviour is taken as correct (a local filesystem).
    #[arg(long, value_name = "LABEL=DIR")]
    reference: String,
    /// The directory under test.
    #[arg(long, value_name = "LABEL=DIR")]
    target: String,
    /// Seed of the random generator (printed at start, so any run can be repeated).
    #[arg(long)]
    seed: Option<u64>,
    /// Operations to run in all.
    #[arg(long, default_value_t = 2000)]
    ops: usize,
    /// Actors per program.
    #[arg(long, default_value_t = 3)]
    actors: usize,
    /// Mechanisms to fuzz (repeatable; default flock, posix and ofd).
    #[arg(long = "mechanism", value_name = "M")]
    mechanisms: Vec<Mech>,
    /// Operations per program (a fresh set of actors each).
    #[arg(long, default_value_t = 60)]
    program_len: usize,
    /// Where a found scenario is written.
    #[arg(long, value_name = "DIR", default_value = ".")]
    out: PathBuf,
    /// How long shrinking may take.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    shrink_time: std::time::Duration,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mech {
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

#[derive(Args, Clone)]
struct BenchArgs {
    /// A directory to measure, with a label (repeatable). Default: `local`
    /// (the current directory's filesystem) and `tmpfs`.
    #[arg(long = "target", value_name = "LABEL=DIR")]
    targets: Vec<String>,
    /// Also make these filesystems and measure them (xfs, btrfs, overlay, fuse, all).
    #[arg(long, value_name = "KIND")]
    provision: Vec<String>,
    /// Measure only these mechanisms (repeatable; default flock, posix, ofd).
    #[arg(long = "mechanism", value_name = "M")]
    mechanisms: Vec<Mech>,
    #[command(flatten)]
    bench: BenchSettings,
    /// `json`: print the figures as JSON on stdout.
    #[arg(long, value_enum, default_value = "text")]
    format: RunFormat,
}

#[derive(Args, Clone, Copy)]
struct BenchSettings {
    /// Time spent on each measurement (after a minimum number of rounds).
    #[arg(long, value_name = "DURATION", default_value = "200ms", value_parser = humantime::parse_duration)]
    bench_budget: std::time::Duration,
    /// Processes contending in the throughput measurement.
    #[arg(long, value_name = "N", default_value_t = 4)]
    contenders: u32,
}

impl BenchSettings {
    fn options(&self) -> Result<lockcheck::engine::bench::BenchOptions, Error> {
        if !(2..=64).contains(&self.contenders) {
            return Err(Error::usage("--contenders must be between 2 and 64", None));
        }
        if self.bench_budget.is_zero() || self.bench_budget > std::time::Duration::from_secs(60) {
            return Err(Error::usage(
                "--bench-budget must be more than 0 and at most 60s",
                Some("such as 200ms (the default) or 2s"),
            ));
        }
        Ok(lockcheck::engine::bench::BenchOptions {
            budget: self.bench_budget,
            contenders: self.contenders,
        })
    }
}

#[derive(Args, Clone)]
struct QualifyArgs {
    #[command(flatten)]
    run: RunArgs,
    /// The bundle's directory.
    #[arg(long, value_name = "DIR", default_value = "qualification")]
    bundle: PathBuf,
}

#[derive(Args, Clone)]
struct RunArgs {
    /// A directory to test, with a label naming its report (repeatable).
    /// Default: `local` (the current directory's filesystem) and `tmpfs`.
    #[arg(long = "target", value_name = "LABEL=DIR")]
    targets: Vec<String>,
    /// Directory of scenario files. Default: ./scenarios if present, else the built-in catalog.
    #[arg(long, value_name = "DIR")]
    scenarios: Option<PathBuf>,
    /// Directory of application profiles. Default: ./apps if present, else the built-in ones.
    #[arg(long, value_name = "DIR")]
    apps: Option<PathBuf>,
    /// Run only these mechanisms (repeatable).
    #[arg(long = "mechanism", value_name = "M")]
    mechanisms: Vec<Mech>,
    /// Also make these filesystems and test them (repeatable): xfs, btrfs
    /// (on loop devices), overlay, fuse (bindfs), or all. Needs root; what
    /// cannot be made here is left out, with the reason.
    #[arg(long, value_name = "KIND")]
    provision: Vec<String>,
    /// Where to write the reports (LABEL.json, LABEL.md, LABEL.junit.xml).
    #[arg(long, value_name = "DIR", default_value = "reports")]
    out: PathBuf,
    /// Also write one JUnit XML file with every target's results.
    #[arg(long, value_name = "PATH")]
    junit: Option<PathBuf>,
    /// `json`: print the reports as JSON on stdout, for scripts.
    #[arg(long, value_enum, default_value = "text")]
    format: RunFormat,
    /// Which results make the exit status 1: `unsafe` failures only,
    /// `divergent` and worse, `any` failure (the default), or `error`: only
    /// trials that could not run. Errors always do.
    #[arg(long, value_enum, default_value = "any")]
    fail_on: FailOn,
    /// Trials run in parallel. Default: the number of CPUs.
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Print nothing but failures and the summary.
    #[arg(long, short)]
    quiet: bool,
    /// Another host actors can be placed on (`host: b` in a scenario), started
    /// through a command prefix: `b='ip netns exec c2'`, `b='ssh box'`,
    /// `b='kubectl exec -i pod --'` (repeatable). This host is `a`.
    #[arg(long = "host", value_name = "NAME=COMMAND")]
    hosts: Vec<String>,
    /// The lockcheck binary as the other hosts name it (default: this one's path).
    #[arg(long, value_name = "PATH")]
    remote_exe: Option<PathBuf>,
    /// A lab fault the target can inject, with the shell command that does it
    /// (`{host}` and `{target}` are replaced): disconnect, reconnect, crash,
    /// restart-server (repeatable). A command naming `{target}` touches only
    /// that target's hosts; other lab faults run alone, after everything else.
    #[arg(long = "fault", value_name = "KIND=COMMAND")]
    faults: Vec<String>,
    /// The file server's lease and grace period: bounds on recovery after a
    /// crash, a partition or a restart are counted in leases (`3 leases`).
    #[arg(long, value_name = "DURATION", default_value = "90s", value_parser = parse_lease)]
    lease: std::time::Duration,
    /// Run the whole catalog N times (qualify: 3 by default). A trial whose
    /// outcome changes between the runs is flaky: it is listed, in the
    /// reports too, and makes the exit status 1. The reports are the last run's.
    #[arg(long, value_name = "N")]
    repeat: Option<usize>,
    /// Start the trials in a random order instead of longest first (to find
    /// trials that depend on what ran before them); the seed is printed and
    /// recorded in the reports. With --repeat, run K uses the seed plus K-1.
    #[arg(long)]
    shuffle: bool,
    /// Shuffle with this seed: the same seed gives the same order (implies
    /// --shuffle). Everything else lockcheck does is deterministic already.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// After the trials, measure lock latency on each target (as `lockcheck
    /// bench` does) and put the figures into its report.
    #[arg(long)]
    bench: bool,
    #[command(flatten)]
    bench_settings: BenchSettings,
    /// Run only trials whose id (`target::scenario::mechanism`) contains one of these texts.
    filters: Vec<String>,
}

#[derive(Args)]
struct ListArgs {
    /// Directory of scenario files. Default: ./scenarios if present, else the built-in catalog.
    #[arg(long, value_name = "DIR")]
    scenarios: Option<PathBuf>,
    /// `text` (a line per scenario) or `markdown` (tables by family, as in scenarios/README.md).
    #[arg(long, value_enum, default_value = "text")]
    format: ListFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum SchemaOf {
    /// scenario files (scenarios/scenario.schema.json)
    Scenario,
    /// reports, JSON (reports/report.schema.json)
    Report,
    /// application profiles (apps/app.schema.json)
    App,
}

/// Which failures make the exit status 1.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FailOn {
    /// only failures labelled unsafe (and errors)
    Unsafe,
    /// unsafe and divergent failures (and errors)
    Divergent,
    /// any failure or error
    Any,
    /// errors only: a trial that could not run (for scripts that publish
    /// findings rather than fail on them)
    Error,
}

/// Where the run's reports go besides the files.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RunFormat {
    /// the summary table on stdout
    Text,
    /// every report, as JSON, on stdout (`{"schema_version", "reports": [...]}`);
    /// the summary goes to stderr
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum ListFormat {
    Text,
    Markdown,
}

/// A seed for a random choice the user did not fix (short enough to type).
fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most 8 bytes into b.
    unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    u64::from_ne_bytes(b) % 1_000_000_000
}

fn main() -> ExitCode {
    if lockcheck::actor::process::is_actor_invocation() {
        lockcheck::actor::process::main();
    }
    if lockcheck::actor::zygote::is_zygote_invocation() {
        lockcheck::actor::zygote::main();
    }
    let cli = Cli::parse();
    lockcheck::actor::interrupt::install();
    let result = match cli.command {
        None => run(cli.run, None),
        Some(Command::Run(a)) => run(a, None),
        Some(Command::Qualify(q)) => qualify(q),
        Some(Command::Bench(b)) => bench(b),
        Some(Command::Clean { dirs }) => clean(dirs),
        Some(Command::List(a)) => list(a),
        Some(Command::Validate { files }) => validate(&files),
        Some(Command::Schema { of }) => schema(of),
        Some(Command::Matrix {
            reports,
            readme,
            html,
        }) => matrix(&reports, readme.as_deref(), html.as_deref()),
        Some(Command::Fuzz(a)) => fuzz(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lockcheck: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn matrix(
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

fn schema(of: SchemaOf) -> Result<ExitCode, Error> {
    let schema = match of {
        SchemaOf::Scenario => lockcheck::spec::scenario::json_schema(),
        SchemaOf::Report => report::json_schema(),
        SchemaOf::App => lockcheck::verdict::apps::json_schema(),
    };
    let s = serde_json::to_string_pretty(&schema)
        .map_err(|e| Error::usage(format!("cannot render the schema: {e}"), None))?;
    emit(&format!("{s}\n"));
    Ok(ExitCode::SUCCESS)
}

fn validate(args: &[PathBuf]) -> Result<ExitCode, Error> {
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

/// Write to stdout; a closed pipe (`lockcheck list | head`) ends the output
/// quietly instead of failing.
fn emit(text: &str) -> bool {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_ok()
}

fn list(a: ListArgs) -> Result<ExitCode, Error> {
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
        let mechs: Vec<&str> = s
            .plans
            .iter()
            .filter(|(_, a)| matches!(a, Applicability::Applies(_)))
            .map(|(m, _)| m.as_str())
            .collect();
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

/// `--lease`: a duration from 1 s to 1 h.
fn parse_lease(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e}; write for example 90s"))?;
    if d < std::time::Duration::from_secs(1) || d > std::time::Duration::from_secs(3600) {
        return Err("give a lease between 1s and 1h".into());
    }
    Ok(d)
}

/// Print `doc` as JSON on stdout; an output closed before the end is an error.
fn emit_json(doc: &serde_json::Value, what: &str) -> Result<(), Error> {
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

fn clean(dirs: Vec<PathBuf>) -> Result<ExitCode, Error> {
    let given = !dirs.is_empty();
    let dirs = if given {
        dirs
    } else {
        let mut d = vec![PathBuf::from("."), std::env::temp_dir()];
        if std::path::Path::new("/dev/shm").is_dir() {
            d.push(PathBuf::from("/dev/shm"));
        }
        d.dedup();
        d
    };
    let mut text = String::new();
    let mut removed = 0;
    for d in &dirs {
        let found = match lockcheck::target::targets::clean_stale(d) {
            Ok(f) => f,
            Err(e) if given => {
                return Err(Error::usage(
                    format!("clean {}: {e}", d.display()),
                    Some("give directories that exist (targets lockcheck ran on, TMPDIR)"),
                ))
            }
            Err(_) => continue,
        };
        for c in found {
            match c {
                lockcheck::target::targets::Cleaned::Removed(p) => {
                    removed += 1;
                    text.push_str(&format!(
                        "removed {}
",
                        p.display()
                    ));
                }
                lockcheck::target::targets::Cleaned::Kept(p, why) => {
                    text.push_str(&format!(
                        "kept {}: {why}
",
                        p.display()
                    ));
                }
            }
        }
    }
    text.push_str(&format!(
        "{removed} left-over director{} removed
",
        if removed == 1 { "y" } else { "ies" }
    ));
    emit(&text);
    Ok(ExitCode::SUCCESS)
}

/// The mechanisms to benchmark: the given ones (flock, posix, ofd only).
fn bench_mechanisms(given: &[Mech]) -> Result<Vec<Mechanism>, Error> {
    if given.is_empty() {
        return Ok(lockcheck::record::bench::MECHANISMS.to_vec());
    }
    given
        .iter()
        .map(|m| Mechanism::from(*m))
        .map(|m| {
            if lockcheck::record::bench::MECHANISMS.contains(&m) {
                Ok(m)
            } else {
                Err(Error::usage(
                    format!("{m} is not benchmarked"),
                    Some("benchmarks cover flock, posix and ofd"),
                ))
            }
        })
        .collect()
}

fn bench(b: BenchArgs) -> Result<ExitCode, Error> {
    let opts = b.bench.options()?;
    let mechanisms = bench_mechanisms(&b.mechanisms)?;
    let a = RunArgs {
        targets: b.targets,
        scenarios: None,
        apps: None,
        mechanisms: Vec::new(),
        provision: b.provision,
        out: PathBuf::from("reports"),
        junit: None,
        format: b.format,
        fail_on: FailOn::Any,
        jobs: None,
        quiet: false,
        hosts: Vec::new(),
        remote_exe: None,
        faults: Vec::new(),
        lease: lockcheck::plan::resolve::DEFAULT_LEASE,
        repeat: None,
        shuffle: false,
        seed: None,
        bench: true,
        bench_settings: b.bench,
        filters: Vec::new(),
    };
    let session = open_session(&a)?;
    for n in &session.notes {
        eprintln!("note: {n}");
    }
    let mut all = Vec::new();
    let mut text = String::new();
    for (i, t) in session.targets.iter().enumerate() {
        eprintln!(
            "benchmarking {} ({}, {})",
            t.label,
            t.identity.fs_type,
            t.root.display()
        );
        let r = session.bench(i, &mechanisms, &opts);
        text.push_str(&format!(
            "\n{} ({}, {})\n{}",
            t.label,
            t.identity.fs_type,
            t.root.display(),
            lockcheck::render::bench::markdown(&r)
        ));
        all.push(serde_json::json!({
            "target": t.label,
            "fs_type": t.identity.fs_type,
            "dir": t.root,
            "benchmarks": r,
        }));
    }
    let problems = session.close();
    if a.format == RunFormat::Json {
        let doc = serde_json::json!({
            "schema_version": report::SCHEMA_VERSION,
            "targets": all,
        });
        emit_json(&doc, "the figures")?;
        eprint!("{text}");
    } else {
        emit(&text);
    }
    for p in &problems {
        eprintln!("warning: cleanup: {p}");
    }
    // A figure that could not be measured fails the command.
    let incomplete = all.iter().any(|t| {
        t["benchmarks"]["results"]
            .as_array()
            .is_none_or(|rs| rs.iter().any(|r| r.get("problems").is_some()))
    });
    Ok(if incomplete {
        eprintln!("lockcheck bench: some figures could not be measured (see above)");
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn qualify(q: QualifyArgs) -> Result<ExitCode, Error> {
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
    run(q.run, Some((repeat, q.bundle)))
}

/// Where results will be written must be usable before anything runs.
fn check_outputs(a: &RunArgs, bundle: Option<&std::path::Path>) -> Result<(), Error> {
    // Checked, not created: nothing is written before the run is known to go ahead.
    let dir = bundle.unwrap_or(&a.out);
    let unwritable = |why: String| {
        Error::usage(
            format!("cannot write results into {}: {why}", dir.display()),
            Some("give a directory lockcheck may create or write to"),
        )
    };
    let mut existing = Some(dir);
    while let Some(d) = existing {
        if d.as_os_str().is_empty() {
            existing = Some(std::path::Path::new("."));
            continue;
        }
        match std::fs::metadata(d) {
            Ok(m) if !m.is_dir() => {
                return Err(unwritable(format!("{} is not a directory", d.display())))
            }
            Ok(_) => {
                if nix::unistd::access(d, nix::unistd::AccessFlags::W_OK).is_err() {
                    return Err(unwritable(format!("{} is not writable", d.display())));
                }
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => existing = d.parent(),
            Err(e) => return Err(unwritable(e.to_string())),
        }
    }
    if let Some(j) = &a.junit {
        if j.is_dir() {
            return Err(Error::usage(
                format!("--junit {}: that is a directory", j.display()),
                Some("give a file name, such as results.xml"),
            ));
        }
        if let Some(parent) = j.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.is_dir() {
                return Err(Error::usage(
                    format!("--junit {}: no directory {}", j.display(), parent.display()),
                    Some("give a file in an existing directory"),
                ));
            }
        }
    }
    if let Some(d) = &a.apps {
        if !d.is_dir() {
            return Err(Error::usage(
                format!("--apps {}: not a directory", d.display()),
                Some("give the directory of application profiles (apps/)"),
            ));
        }
    }
    Ok(())
}

/// Open the run's targets: the given ones (or the defaults), plus the
/// filesystems `--provision` makes, with hosts and lab faults.
fn open_session(a: &RunArgs) -> Result<Session, Error> {
    // Still single-threaded: the namespace covers every thread and actor.
    let namespace = target::enter_private_namespace();
    let (mut specs, tmpfs, mut notes) = if a.targets.is_empty() {
        let d = target::default_targets(&namespace);
        (d.specs, d.tmpfs, d.notes)
    } else {
        let specs = a
            .targets
            .iter()
            .map(|t| target::parse_target_arg(t))
            .collect::<Result<Vec<_>, _>>()?;
        (specs, None, Vec::new())
    };
    // Everything that can be wrong with the arguments is found before any
    // filesystem is made.
    let mut kinds = Vec::new();
    let mut named = std::collections::BTreeSet::new();
    for p in &a.provision {
        match lockcheck::target::provision::Kind::parse(p) {
            Some(k) => {
                if p != "all" {
                    named.extend(k.iter().copied());
                }
                kinds.extend(k);
            }
            None => {
                return Err(Error::usage(
                    format!("--provision {p:?}: unknown filesystem"),
                    Some("give xfs, btrfs, overlay, fuse or all"),
                ))
            }
        }
    }
    kinds.sort();
    kinds.dedup();
    for k in &kinds {
        if specs.iter().any(|s| s.label == k.label()) {
            return Err(Error::usage(
                format!("target label {:?} is given twice", k.label()),
                Some("--provision names its targets after the filesystem; pick another --target label"),
            ));
        }
    }
    let mut hosts = a
        .hosts
        .iter()
        .map(|h| target::parse_host_arg(h))
        .collect::<Result<Vec<_>, _>>()?;
    for h in &mut hosts {
        h.exe.clone_from(&a.remote_exe);
    }
    let faults = target::parse_fault_args(&a.faults)?;
    // Layers and images go next to the `local` target when it is tested,
    // else into TMPDIR.
    let local_dir = specs
        .iter()
        .find(|s| s.label == "local" && a.targets.is_empty())
        .map(|s| s.dir.clone());
    let mut provisioned = Vec::new();
    for k in kinds {
        match lockcheck::target::provision::provision(k, &namespace, local_dir.as_deref()) {
            Ok(p) => {
                specs.push(p.spec.clone());
                provisioned.push(p);
            }
            // Asked for by name: not having it is an error. Part of `all`:
            // the run goes on without it and says why.
            Err(why) if named.contains(&k) => {
                return Err(Error::Target {
                    label: k.label().into(),
                    path: PathBuf::new(),
                    message: format!("cannot be made here: {why}"),
                    hint: Some("run as root, with the filesystem's tools installed".into()),
                })
            }
            Err(why) => notes.push(format!("{}: not made here: {why}", k.label())),
        }
    }
    let mut session =
        Session::open_with(&specs, namespace, tmpfs, notes, &hosts, &faults, a.lease)?;
    session.provisioned = provisioned;
    Ok(session)
}

fn run(a: RunArgs, qualify: Option<(usize, PathBuf)>) -> Result<ExitCode, Error> {
    let started = Instant::now();
    if a.repeat == Some(0) {
        return Err(Error::usage("--repeat must be at least 1", None));
    }
    check_outputs(&a, qualify.as_ref().map(|(_, b)| b.as_path()))?;
    if a.bench {
        a.bench_settings.options()?;
    }
    let cat = catalog::load(a.scenarios.as_deref())?;
    let apps = match (&a.apps, &a.scenarios) {
        // A catalog of one's own may lack what the built-in profiles name:
        // then the reports go without application verdicts, and say why here.
        (None, Some(_)) => lockcheck::verdict::apps::load(None, &cat).unwrap_or_else(|_| {
            eprintln!(
                "note: no application verdicts: the profiles name scenarios this catalog lacks (give --apps DIR)"
            );
            lockcheck::verdict::apps::Apps::none()
        }),
        (dir, _) => lockcheck::verdict::apps::load(dir.as_deref(), &cat)?,
    };
    let mechanisms: Vec<Mechanism> = a.mechanisms.iter().map(|m| (*m).into()).collect();
    if let Some(0) = a.jobs {
        return Err(Error::usage("--jobs must be at least 1", None));
    }
    let session = open_session(&a)?;
    let mut trials = session.plan(&cat, &mechanisms);
    if !a.filters.is_empty() {
        trials.retain(|t| a.filters.iter().any(|f| t.id.contains(f.as_str())));
        if trials.is_empty() {
            session.close();
            return Err(Error::usage(
                format!("no trial id contains {}", a.filters.join(" or ")),
                Some("trial ids are TARGET::SCENARIO::MECHANISM; `lockcheck list` shows the scenarios"),
            ));
        }
    }
    let jobs = a.jobs.unwrap_or_else(runner::default_jobs);
    let tty = std::io::stderr().is_terminal() && !a.quiet;
    let total = trials.len();
    if !a.quiet {
        eprintln!(
            "lockcheck {}: {} trials ({} scenarios from {}) on {}, {} jobs",
            env!("CARGO_PKG_VERSION"),
            total,
            cat.scenarios.len(),
            cat.source,
            session
                .targets
                .iter()
                .map(|t| format!("{} ({}, {})", t.label, t.identity.fs_type, t.root.display()))
                .collect::<Vec<_>>()
                .join(", "),
            jobs
        );
    }
    // Notes say what was left out: printed even with -q.
    for n in &session.notes {
        eprintln!("note: {n}");
    }
    let progress = |n: usize, r: &TrialResult| {
        let mut err = std::io::stderr().lock();
        // Once interrupted, trials end because their actors were killed:
        // nothing to report.
        if lockcheck::actor::interrupt::interrupted().is_some() {
            return;
        }
        if matches!(r.status, Status::Fail | Status::Error) {
            if tty {
                let _ = write!(err, "\r\x1b[K");
            }
            let _ = writeln!(err, "{}", failure_line(r));
        }
        if tty {
            let _ = write!(err, "\r\x1b[K[{n}/{total}] {}", r.id);
            let _ = err.flush();
        }
    };
    let repeats = qualify.as_ref().map_or(a.repeat.unwrap_or(1), |(n, _)| *n);
    let order_seed = match (a.seed, a.shuffle) {
        (Some(s), _) => Some(s),
        (None, true) => Some(random_seed()),
        (None, false) => None,
    };
    if let Some(s) = order_seed {
        eprintln!("trial order: shuffled with seed {s} (the same order again: --seed {s})");
    }
    let mut passes: Vec<Vec<report::Report>> = Vec::new();
    // `--repeat`: every run's outcomes, but only the last run's reports.
    let mut tally = report::Tally::default();
    for k in 0..repeats {
        if lockcheck::actor::interrupt::interrupted().is_some() {
            break;
        }
        if repeats > 1 && !a.quiet {
            eprintln!("run {} of {repeats}", k + 1);
        }
        let began = Instant::now();
        let seed = order_seed.map(|s| s.wrapping_add(k as u64));
        let results = session.run_all(&trials, jobs, seed, &progress);
        if tty {
            eprint!("\r\x1b[K");
        }
        let wall_ms = began.elapsed().as_secs_f64() * 1000.0;
        let pass: Vec<report::Report> = session
            .reports(&cat, results, wall_ms)
            .into_iter()
            .map(|r| r.with_apps(&apps))
            .map(|mut r| {
                r.order_seed = seed;
                r
            })
            .collect();
        if qualify.is_none() {
            tally.add(&pass);
            passes.clear();
        }
        passes.push(pass);
    }
    if let Some(sig) = lockcheck::actor::interrupt::interrupted() {
        // Reports of a run cut short would say less than they seem to.
        let problems = session.close();
        for p in &problems {
            eprintln!("warning: cleanup: {p}");
        }
        eprintln!("lockcheck: interrupted; no reports written; scratch directories removed");
        return Ok(ExitCode::from((128 + sig).clamp(0, 255) as u8));
    }
    let mut any_flaky = false;
    if qualify.is_none() && repeats > 1 {
        for r in passes.iter_mut().flatten() {
            let rep = tally.repeat_of(&r.target.label);
            for f in &rep.flaky {
                eprintln!("FLAKY {}: {}", f.id, f.describe());
            }
            any_flaky |= !rep.flaky.is_empty();
            r.repeat = Some(rep);
        }
        if !any_flaky {
            eprintln!("{repeats} runs: no trial changed its outcome");
        }
    }
    let failed = |r: &report::Report| {
        let s = &r.summary;
        s.error > 0
            || match a.fail_on {
                FailOn::Any => s.fail > 0,
                FailOn::Divergent => s.unsafe_failures + s.divergent_failures > 0,
                FailOn::Unsafe => s.unsafe_failures > 0,
                FailOn::Error => false,
            }
    };
    let benchmarks: Vec<(String, lockcheck::record::bench::Bench)> = if a.bench {
        let opts = a.bench_settings.options()?;
        session
            .targets
            .iter()
            .enumerate()
            .filter(|(_, t)| passes.iter().flatten().any(|r| r.target.label == t.label))
            .map(|(i, t)| {
                if !a.quiet {
                    eprintln!("benchmarking {}", t.label);
                }
                (
                    t.label.clone(),
                    session.bench(i, &lockcheck::record::bench::MECHANISMS, &opts),
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    for r in passes.iter_mut().flatten() {
        r.benchmarks = benchmarks
            .iter()
            .find(|(l, _)| *l == r.target.label)
            .map(|(_, b)| b.clone());
    }
    if let Some((_, bundle)) = &qualify {
        let q = lockcheck::tools::qualify::assess(&passes, &failed);
        let written = lockcheck::tools::qualify::write_bundle(bundle, &passes, &q)?;
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
                lockcheck::tools::qualify::Verdict::Pass => "pass",
                lockcheck::tools::qualify::Verdict::Flaky => "flaky",
                lockcheck::tools::qualify::Verdict::Fail => "fail",
            },
            repeats,
            bundle.display(),
            written.len()
        ));
        emit(&text);
        for p in &problems {
            eprintln!("warning: cleanup: {p}");
        }
        return Ok(if q.verdict == lockcheck::tools::qualify::Verdict::Pass {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let reports = passes.pop().unwrap_or_default();
    let mut written = Vec::new();
    for r in &reports {
        written.extend(r.write(&a.out)?);
    }
    if let Some(path) = &a.junit {
        written.push(lockcheck::render::report::write_junit(&reports, path)?);
    }
    let problems = session.close();
    if a.format == RunFormat::Json {
        let doc = serde_json::json!({
            "schema_version": report::SCHEMA_VERSION,
            "reports": reports,
        });
        emit_json(&doc, "the reports")?;
    }
    let mut text = lockcheck::render::report::console_summary(&reports);
    if !a.quiet {
        let paths: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        text.push_str(&format!(
            "reports: {}\nwall time: {:.0} ms\n",
            paths.join(" "),
            started.elapsed().as_secs_f64() * 1000.0
        ));
    }
    if a.format == RunFormat::Json {
        eprint!("{text}");
    } else {
        emit(&text);
    }
    for p in &problems {
        eprintln!("warning: cleanup: {p}");
    }
    // A path that led out of the trial directory (a symlink planted during
    // the run) was refused: the run is not trustworthy, as bad input is not.
    let refused: Vec<&report::TrialResult> = reports
        .iter()
        .flat_map(|r| &r.results)
        .filter(|t| {
            t.status == report::Status::Error
                && t.reason
                    .as_deref()
                    .is_some_and(|r| r.contains(lockcheck::actor::beneath::LEADS_OUT))
        })
        .collect();
    if !refused.is_empty() {
        let ids: Vec<&str> = refused.iter().map(|t| t.id.as_str()).collect();
        eprintln!(
            "lockcheck: {} trial(s) refused to follow a path out of the trial directory: {}\nhint: a scenario's symlink, or one planted in lockcheck's scratch directory during the run, points out of it; the reports name the step",
            refused.len(),
            ids.join(", ")
        );
        return Ok(ExitCode::from(2));
    }
    let ok = !reports.iter().any(failed) && !any_flaky;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn fuzz(a: FuzzArgs) -> Result<ExitCode, Error> {
    let mechanisms: Vec<Mechanism> = if a.mechanisms.is_empty() {
        Mechanism::DEFAULT.to_vec()
    } else {
        a.mechanisms.iter().map(|m| (*m).into()).collect()
    };
    if let Some(m) = mechanisms.iter().find(|m| !m.is_default()) {
        return Err(Error::usage(
            format!("fuzzing covers flock, posix and ofd, not {m}"),
            None,
        ));
    }
    if a.actors == 0 || a.actors > 16 {
        return Err(Error::usage("--actors must be between 1 and 16", None));
    }
    if a.program_len == 0 {
        return Err(Error::usage("--program-len must be at least 1", None));
    }
    let seed = a.seed.unwrap_or_else(random_seed);
    let specs = [
        target::parse_target_arg(&a.reference)?,
        target::parse_target_arg(&a.target)?,
    ];
    let namespace = target::enter_private_namespace();
    let session = Session::open(&specs, namespace, None, Vec::new())?;
    eprintln!(
        "lockcheck fuzz: seed {seed}; reference {} ({}), target {} ({}); {} operations, {} actors, mechanisms {}",
        session.targets[0].label,
        session.targets[0].identity.fs_type,
        session.targets[1].label,
        session.targets[1].identity.fs_type,
        a.ops,
        a.actors,
        mechanisms.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")
    );
    let config = lockcheck::tools::fuzz::FuzzConfig {
        seed,
        ops: a.ops,
        actors: a.actors,
        mechanisms,
        program_len: a.program_len,
        out: a.out,
        shrink_budget: a.shrink_time,
    };
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut progress = |ops: usize, programs: usize| {
        if tty {
            eprint!("\r\x1b[K{ops} operations in {programs} programs");
        }
    };
    let result = lockcheck::tools::fuzz::run(
        &config,
        &session.targets[0],
        &session.targets[1],
        &session.exe,
        &mut progress,
    );
    if tty {
        eprint!("\r\x1b[K");
    }
    let problems = session.close();
    for p in &problems {
        eprintln!("warning: cleanup: {p}");
    }
    let r = result.map_err(|e| Error::usage(format!("fuzzing stopped: {e}"), None))?;
    let secs = started.elapsed().as_secs_f64();
    match r.found {
        None => {
            emit(&format!(
                "no difference in {} operations ({} programs) in {secs:.1} s; seed {seed}\n",
                r.ops_run, r.programs
            ));
            Ok(ExitCode::SUCCESS)
        }
        Some(f) => {
            emit(&format!(
                "difference found after {:.1} s ({} operations, {} programs; mechanism {}): at step {} the reference observed {}, the target observed {}\nshrunk from {} to {} steps; scenario written to {}\nreproduce with: lockcheck run --scenarios {} --target {}\nseed {seed}\n",
                f.elapsed_to_find.as_secs_f64(),
                r.ops_run,
                r.programs,
                f.mechanism,
                f.mismatch.index + 1,
                f.mismatch.reference,
                f.mismatch.target,
                f.original_len,
                f.shrunk_len,
                f.file.display(),
                f.file.parent().map(|p| p.display().to_string()).unwrap_or_default(),
                a.target
            ));
            Ok(ExitCode::from(1))
        }
    }
}

fn failure_line(r: &TrialResult) -> String {
    match (&r.failure, &r.reason) {
        (Some(f), _) => format!(
            "{} {}: step {} (line {}) {} {}: expected {}, observed {}",
            r.verdict.to_uppercase(),
            r.id,
            f.step,
            f.line,
            f.actors.join(","),
            f.op,
            f.expected,
            f.observed
        ),
        (None, Some(reason)) => format!("ERROR {}: {reason}", r.id),
        (None, None) => format!("{} {}", r.verdict.to_uppercase(), r.id),
    }
}
