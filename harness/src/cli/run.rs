//! `lockcheck run` (and `lockcheck` alone): the catalog on targets, one
//! report per target.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, ValueEnum};

use lockcheck::engine::passes::Passes;
use lockcheck::engine::runner::{self, Session, TrialSpec};
use lockcheck::engine::session::TargetOptions;
use lockcheck::plan::catalog::{self, Catalog};
use lockcheck::record::bench::{Bench, MECHANISMS};
use lockcheck::record::report::{Report, Status, TrialResult};
use lockcheck::spec::scenario::Mechanism;
use lockcheck::verdict::apps::Apps;
use lockcheck::verdict::policy::FailOn;
use lockcheck::verdict::tally::Tally;
use lockcheck::Error;

use super::progress::Console;

use super::{emit, emit_json, parse_lease, random_seed, Mech};

#[derive(Args, Clone)]
pub(crate) struct RunArgs {
    /// A directory to test, with a label naming its report (repeatable).
    /// A bare DIR is labelled after its last component (/mnt/nfs: `nfs`).
    /// Default: `local` (the current directory's filesystem) and `tmpfs`.
    #[arg(long = "target", value_name = "[LABEL=]DIR")]
    pub(crate) targets: Vec<String>,
    /// Directory of scenario files. Default: ./scenarios if present, else the built-in catalog.
    #[arg(long, value_name = "DIR")]
    pub(crate) scenarios: Option<PathBuf>,
    /// Directory of application profiles. Default: ./apps if present, else the built-in ones.
    #[arg(long, value_name = "DIR")]
    pub(crate) apps: Option<PathBuf>,
    /// Run only these mechanisms (repeatable).
    #[arg(long = "mechanism", value_name = "M")]
    pub(crate) mechanisms: Vec<Mech>,
    /// Also make these filesystems and test them (repeatable): xfs, btrfs
    /// (on loop devices), overlay, fuse (bindfs), or all. Needs root; what
    /// cannot be made here is left out, with the reason.
    #[arg(long, value_name = "KIND")]
    pub(crate) provision: Vec<String>,
    /// Where to write the reports (LABEL.json, LABEL.md, LABEL.junit.xml).
    /// Default: reports/; in a lockcheck checkout, whose reports/ holds the
    /// published reports, target/lockcheck-reports/.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
    /// Also write one JUnit XML file with every target's results.
    #[arg(long, value_name = "PATH")]
    pub(crate) junit: Option<PathBuf>,
    /// `json`: print the reports as JSON on stdout, for scripts.
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) format: RunFormat,
    /// Which results make the exit status 1: `unsafe` failures only,
    /// `divergent` and worse, `any` failure (the default), or `error`: only
    /// trials that could not run. Errors always do.
    #[arg(long, value_enum, default_value = "any")]
    pub(crate) fail_on: FailOn,
    /// Trials run in parallel. Default: the number of CPUs.
    #[arg(long, value_name = "N")]
    pub(crate) jobs: Option<usize>,
    /// Print nothing but failures and the summary.
    #[arg(long, short)]
    pub(crate) quiet: bool,
    /// Another host actors can be placed on (`host: b` in a scenario), started
    /// through a command prefix: `b='ip netns exec c2'`, `b='ssh box'`,
    /// `b='kubectl exec -i pod --'` (repeatable). This host is `a`.
    #[arg(long = "host", value_name = "NAME=COMMAND")]
    pub(crate) hosts: Vec<String>,
    /// The lockcheck binary as the other hosts name it (default: this one's path).
    #[arg(long, value_name = "PATH")]
    pub(crate) remote_exe: Option<PathBuf>,
    /// A lab fault the target can inject, with the shell command that does it
    /// (`{host}` and `{target}` are replaced): disconnect, reconnect, crash,
    /// restart-server (repeatable). A command naming `{target}` touches only
    /// that target's hosts; other lab faults run alone, after everything else.
    #[arg(long = "fault", value_name = "KIND=COMMAND")]
    pub(crate) faults: Vec<String>,
    /// The file server's lease and grace period: bounds on recovery after a
    /// crash, a partition or a restart are counted in leases (`3 leases`).
    #[arg(long, value_name = "DURATION", default_value = "90s", value_parser = parse_lease)]
    pub(crate) lease: std::time::Duration,
    /// Run the whole catalog N times (qualify: 3 by default). A trial whose
    /// outcome changes between the runs is flaky: it is listed, in the
    /// reports too, and makes the exit status 1. The reports are the last run's.
    #[arg(long, value_name = "N")]
    pub(crate) repeat: Option<usize>,
    /// Start the trials in a random order instead of longest first (to find
    /// trials that depend on what ran before them); the seed is printed and
    /// recorded in the reports. With --repeat, run K uses the seed plus K-1.
    #[arg(long)]
    pub(crate) shuffle: bool,
    /// Shuffle with this seed: the same seed gives the same order (implies
    /// --shuffle). Everything else lockcheck does is deterministic already.
    #[arg(long, value_name = "N")]
    pub(crate) seed: Option<u64>,
    /// After the trials, measure lock latency on each target (as `lockcheck
    /// bench` does) and put the figures into its report.
    #[arg(long)]
    pub(crate) bench: bool,
    #[command(flatten)]
    pub(crate) bench_settings: BenchSettings,
    /// A trial of a scenario run in `rounds` starts no new round after this
    /// long, and passes with the rounds that ran (its report says how many).
    /// Default: every round.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub(crate) rounds_budget: Option<std::time::Duration>,
    /// After the trials, stress each target for this long (as `lockcheck
    /// stress` does, with its defaults and this run's mechanisms) and put the
    /// figures and findings into its report; a finding fails the run.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub(crate) stress: Option<std::time::Duration>,
    /// Run only trials whose id (`target::scenario::mechanism`) contains one of these texts.
    pub(crate) filters: Vec<String>,
}

#[derive(Args, Clone, Copy)]
pub(crate) struct BenchSettings {
    /// Time spent on each measurement (after a minimum number of rounds).
    #[arg(long, value_name = "DURATION", default_value = "200ms", value_parser = humantime::parse_duration)]
    pub(crate) bench_budget: std::time::Duration,
    /// Processes contending in the throughput measurement.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub(crate) contenders: u32,
}

impl BenchSettings {
    pub(crate) fn options(&self) -> Result<lockcheck::engine::bench::BenchOptions, Error> {
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

impl RunArgs {
    /// `--out`, or the default (see [`super::default_out`]).
    pub(crate) fn out_dir(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(super::default_out)
    }

    /// The targets, hosts and faults these arguments name.
    pub(crate) fn target_options(&self) -> TargetOptions {
        TargetOptions {
            targets: self.targets.clone(),
            provision: self.provision.clone(),
            hosts: self.hosts.clone(),
            remote_exe: self.remote_exe.clone(),
            faults: self.faults.clone(),
            lease: self.lease,
        }
    }
}

/// Where the run's reports go besides the files.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum RunFormat {
    /// the summary table on stdout
    Text,
    /// every report, as JSON, on stdout (`{"schema_version", "reports": [...]}`);
    /// the summary goes to stderr
    Json,
}

/// Where results will be written must be usable before anything runs.
pub(crate) fn check_outputs(a: &RunArgs, bundle: Option<&std::path::Path>) -> Result<(), Error> {
    // Checked, not created: nothing is written before the run is known to go ahead.
    let default_dir = a.out_dir();
    let dir = bundle.unwrap_or(&default_dir);
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

/// What a run needs once its arguments are checked: the catalog, the
/// application profiles, the open targets and the trials to run.
struct Prepared {
    cat: Catalog,
    apps: Apps,
    session: Session,
    trials: Vec<TrialSpec>,
    jobs: usize,
}

pub(crate) fn run(a: RunArgs, qualify: Option<(usize, PathBuf)>) -> Result<ExitCode, Error> {
    let started = Instant::now();
    let p = prepare(&a, qualify.as_ref().map(|(_, b)| b.as_path()))?;
    let repeats = qualify.as_ref().map_or(a.repeat.unwrap_or(1), |(n, _)| *n);
    let order_seed = match (a.seed, a.shuffle) {
        (Some(s), _) => Some(s),
        (None, true) => Some(random_seed()),
        (None, false) => None,
    };
    if let Some(s) = order_seed {
        eprintln!("trial order: shuffled with seed {s} (the same order again: --seed {s})");
    }
    let progress = Console::new(p.trials.len(), a.quiet);
    let mut passes: Vec<Vec<Report>> = Vec::new();
    // `--repeat`: every run's outcomes, but only the last run's reports.
    let mut tally = Tally::default();
    let plan = Passes {
        jobs: p.jobs,
        repeats,
        order_seed,
    };
    p.session
        .run_passes(&p.cat, &p.apps, &p.trials, plan, &progress, &mut |pass| {
            if qualify.is_none() {
                tally.add(&pass);
                passes.clear();
            }
            passes.push(pass);
        });
    if let Some(sig) = lockcheck::actor::interrupt::interrupted() {
        // Reports of a run cut short would say less than they seem to.
        warn_cleanup(&p.session.close());
        eprintln!("lockcheck: interrupted; no reports written; scratch directories removed");
        return Ok(ExitCode::from((128 + sig).clamp(0, 255) as u8));
    }
    let any_flaky = qualify.is_none() && repeats > 1 && mark_flaky(&mut passes, &tally, repeats);
    add_benchmarks(&a, &p.session, &mut passes)?;
    let replays = qualify
        .as_ref()
        .map_or(a.out_dir(), |(_, bundle)| bundle.clone());
    add_stress(&a, &p.session, &mut passes, &replays, order_seed)?;
    if let Some((_, bundle)) = &qualify {
        return super::qualify::finish(p.session, &passes, a.fail_on, repeats, bundle);
    }
    let reports = passes.pop().unwrap_or_default();
    finish(&a, p.session, &reports, any_flaky, started)
}

/// Checks the arguments, loads the catalog and profiles, opens the targets
/// and chooses the trials; prints what will run.
fn prepare(a: &RunArgs, bundle: Option<&Path>) -> Result<Prepared, Error> {
    if a.repeat == Some(0) {
        return Err(Error::usage("--repeat must be at least 1", None));
    }
    check_outputs(a, bundle)?;
    if a.bench {
        a.bench_settings.options()?;
    }
    if let Some(d) = a.stress {
        stress_options(a, d, Some(0))?;
    }
    let cat = catalog::load(a.scenarios.as_deref())?;
    let apps = match (&a.apps, &a.scenarios) {
        // A catalog of one's own may lack what the built-in profiles name:
        // then the reports go without application verdicts, and say why here.
        (None, Some(_)) => lockcheck::verdict::apps::load(None, &cat).unwrap_or_else(|_| {
            eprintln!(
                "note: no application verdicts: the profiles name scenarios this catalog lacks (give --apps DIR)"
            );
            Apps::none()
        }),
        (dir, _) => lockcheck::verdict::apps::load(dir.as_deref(), &cat)?,
    };
    let mechanisms: Vec<Mechanism> = a.mechanisms.iter().map(|m| (*m).into()).collect();
    if let Some(0) = a.jobs {
        return Err(Error::usage("--jobs must be at least 1", None));
    }
    let mut session = Session::open_targets(&a.target_options())?;
    session.rounds_budget = a.rounds_budget;
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
    if !a.quiet {
        eprintln!(
            "lockcheck {}: {} trials ({} scenarios from {}) on {}, {} jobs",
            env!("CARGO_PKG_VERSION"),
            trials.len(),
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
    Ok(Prepared {
        cat,
        apps,
        session,
        trials,
        jobs,
    })
}

/// `--repeat`: puts each target's flaky trials into its report and prints
/// them; whether any trial was flaky.
fn mark_flaky(passes: &mut [Vec<Report>], tally: &Tally, repeats: usize) -> bool {
    let mut any_flaky = false;
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
    any_flaky
}

/// `--bench`: measures each target that has a report and puts the figures
/// into its reports.
fn add_benchmarks(a: &RunArgs, session: &Session, passes: &mut [Vec<Report>]) -> Result<(), Error> {
    if !a.bench {
        return Ok(());
    }
    let opts = a.bench_settings.options()?;
    let benchmarks: Vec<(String, Bench)> = session
        .targets
        .iter()
        .enumerate()
        .filter(|(_, t)| passes.iter().flatten().any(|r| r.target.label == t.label))
        .map(|(i, t)| {
            if !a.quiet {
                eprintln!("benchmarking {}", t.label);
            }
            (t.label.clone(), session.bench(i, &MECHANISMS, &opts))
        })
        .collect();
    for r in passes.iter_mut().flatten() {
        r.benchmarks = benchmarks
            .iter()
            .find(|(l, _)| *l == r.target.label)
            .map(|(_, b)| b.clone());
    }
    Ok(())
}

/// `--stress`: stresses each target that has a report and puts the figures
/// and findings into its reports; replay scenarios go into `dir`.
fn add_stress(
    a: &RunArgs,
    session: &Session,
    passes: &mut [Vec<Report>],
    dir: &Path,
    seed: Option<u64>,
) -> Result<(), Error> {
    let Some(duration) = a.stress else {
        return Ok(());
    };
    let opts = stress_options(a, duration, seed)?;
    for (i, t) in session.targets.iter().enumerate() {
        if !passes.iter().flatten().any(|r| r.target.label == t.label) {
            continue;
        }
        if !a.quiet {
            eprintln!(
                "stressing {} for {} ({} processes, seed {})",
                t.label,
                humantime::format_duration(duration),
                opts.processes,
                opts.seed
            );
        }
        let mut s = session.stress(i, &opts);
        lockcheck::render::stress::write_replays(&mut s, &t.label, dir)?;
        eprintln!(
            "{}: stress: {}",
            t.label,
            lockcheck::render::stress::headline(&s)
        );
        for r in passes.iter_mut().flatten() {
            if r.target.label == t.label {
                r.stress = Some(s.clone());
            }
        }
    }
    Ok(())
}

/// The stress phase's options: the defaults of `lockcheck stress`, this
/// run's mechanisms (those a stress run uses) and seed.
fn stress_options(
    a: &RunArgs,
    duration: std::time::Duration,
    seed: Option<u64>,
) -> Result<lockcheck::engine::stress::StressOptions, Error> {
    let settings = super::stress::StressSettings {
        duration,
        processes: None,
        mechanisms: a
            .mechanisms
            .iter()
            .filter_map(|m| super::stress::StressMech::of(*m))
            .collect(),
        seed: seed.or(a.seed),
        wait_bound: std::time::Duration::from_secs(60),
    };
    if !a.mechanisms.is_empty() && settings.mechanisms.is_empty() {
        return Err(Error::usage(
            "--stress: none of this run's mechanisms is one a stress run uses",
            Some("stress runs use flock, posix and ofd"),
        ));
    }
    settings.options(duration)
}

/// Writes the reports, prints the summary, and chooses the exit status.
fn finish(
    a: &RunArgs,
    session: Session,
    reports: &[Report],
    any_flaky: bool,
    started: Instant,
) -> Result<ExitCode, Error> {
    let mut written = Vec::new();
    for r in reports {
        written.extend(r.write(&a.out_dir())?);
    }
    if let Some(path) = &a.junit {
        written.push(lockcheck::render::report::write_junit(reports, path)?);
    }
    let problems = session.close();
    if a.format == RunFormat::Json {
        let doc = serde_json::json!({
            "schema_version": lockcheck::record::report::SCHEMA_VERSION,
            "reports": reports,
        });
        emit_json(&doc, "the reports")?;
    }
    let mut text = lockcheck::render::report::console_summary(reports);
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
    warn_cleanup(&problems);
    // A path that led out of the trial directory (a symlink planted during
    // the run) was refused: the run is not trustworthy, as bad input is not.
    let refused: Vec<&TrialResult> = reports
        .iter()
        .flat_map(|r| &r.results)
        .filter(|t| {
            t.status == Status::Error
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
    let ok = !reports.iter().any(|r| a.fail_on.fails(r)) && !any_flaky;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Problems removing lockcheck's own scratch directories, as warnings.
pub(crate) fn warn_cleanup(problems: &[String]) {
    for p in problems {
        eprintln!("warning: cleanup: {p}");
    }
}
