//! `lockcheck fuzz`: differential fuzzing of a target against a reference.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;

use lockcheck::engine::runner::Session;
use lockcheck::spec::scenario::Mechanism;
use lockcheck::target::targets as target;
use lockcheck::Error;

use super::{emit, random_seed, Mech};

#[derive(Args)]
pub(crate) struct FuzzArgs {
    /// The directory whose behaviour is taken as correct (a local
    /// filesystem); without `LABEL=`, labelled after the directory.
    #[arg(long, value_name = "[LABEL=]DIR")]
    pub(crate) reference: String,
    /// The directory under test; without `LABEL=`, labelled after the
    /// directory.
    #[arg(long, value_name = "[LABEL=]DIR")]
    pub(crate) target: String,
    /// Seed of the random generator (printed at start, so any run can be repeated).
    #[arg(long, value_name = "N")]
    pub(crate) seed: Option<u64>,
    /// Operations to run in all.
    #[arg(long, default_value_t = 2000)]
    pub(crate) ops: usize,
    /// Actors per program.
    #[arg(long, default_value_t = 3)]
    pub(crate) actors: usize,
    /// Mechanisms to fuzz (repeatable; default flock, posix and ofd).
    #[arg(long = "mechanism", value_name = "M")]
    pub(crate) mechanisms: Vec<Mech>,
    /// Operations per program (a fresh set of actors each).
    #[arg(long, default_value_t = 60)]
    pub(crate) program_len: usize,
    /// Where a found scenario is written.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub(crate) out: PathBuf,
    /// How long shrinking may take.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub(crate) shrink_time: std::time::Duration,
}

pub(crate) fn fuzz(a: FuzzArgs) -> Result<ExitCode, Error> {
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
    super::run::warn_cleanup(&problems);
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
