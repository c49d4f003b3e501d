//! `lockcheck stress`: many processes hammer a few files of each target
//! with lock requests for a given time, and oracles that do not trust the
//! storage check every grant.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use lockcheck::engine::runner::Session;
use lockcheck::engine::session::TargetOptions;
use lockcheck::engine::stress::StressOptions;
use lockcheck::record::stress::StressVerdict;
use lockcheck::spec::scenario::Mechanism;
use lockcheck::Error;

use super::run::{warn_cleanup, RunFormat};
use super::{emit_json, random_seed, Mech};

/// The mechanisms a stress run requests with.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum StressMech {
    Flock,
    Posix,
    Ofd,
}

impl From<StressMech> for Mechanism {
    fn from(m: StressMech) -> Self {
        match m {
            StressMech::Flock => Mechanism::Flock,
            StressMech::Posix => Mechanism::Posix,
            StressMech::Ofd => Mechanism::Ofd,
        }
    }
}

impl StressMech {
    /// The run's own mechanism, if a stress run can use it.
    pub(crate) fn of(m: Mech) -> Option<StressMech> {
        match m {
            Mech::Flock => Some(StressMech::Flock),
            Mech::Posix => Some(StressMech::Posix),
            Mech::Ofd => Some(StressMech::Ofd),
            Mech::Lease | Mech::Pidfile => None,
        }
    }
}

#[derive(Args, Clone)]
pub(crate) struct StressArgs {
    /// A directory to stress, with a label (repeatable). Default: `local`
    /// (the current directory's filesystem) and `tmpfs`.
    #[arg(long = "target", value_name = "[LABEL=]DIR")]
    pub(crate) targets: Vec<String>,
    /// Also make these filesystems and stress them (xfs, btrfs, overlay, fuse, all).
    #[arg(long, value_name = "KIND")]
    pub(crate) provision: Vec<String>,
    #[command(flatten)]
    pub(crate) settings: StressSettings,
    /// Another host whose workers join in (`b='ip netns exec c2'`,
    /// `b='ssh box'`; repeatable). The cells oracle checks across hosts.
    #[arg(long = "host", value_name = "NAME=COMMAND")]
    pub(crate) hosts: Vec<String>,
    /// The lockcheck binary as the other hosts name it (default: this one's path).
    #[arg(long, value_name = "PATH")]
    pub(crate) remote_exe: Option<PathBuf>,
    /// Where to write LABEL.stress.json, LABEL.stress.md and, for the first
    /// overlapping locks found, scenarios replaying them
    /// (stress-finding-LABEL-N.yaml; run them with `lockcheck run --scenarios`).
    /// Default: as for `lockcheck run`.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
    /// `json`: print the results as JSON on stdout (files are written too).
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) format: RunFormat,
}

/// What a stress run does, shared by `stress`, `run --stress` and `qualify --stress`.
#[derive(Args, Clone)]
pub(crate) struct StressSettings {
    /// How long the workers run on each target (1s to 24h).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub(crate) duration: std::time::Duration,
    /// Worker processes on each host (1 to 64). Default: twice the CPUs, at
    /// least 4 and at most 16.
    #[arg(long, value_name = "N")]
    pub(crate) processes: Option<u32>,
    /// Request only with these mechanisms (repeatable; default all three).
    #[arg(long = "mechanism", value_name = "M")]
    pub(crate) mechanisms: Vec<StressMech>,
    /// Seed of the workers' choices (default: random, printed).
    #[arg(long, value_name = "N")]
    pub(crate) seed: Option<u64>,
    /// A blocking request not granted within this is a finding (1s to 1h).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub(crate) wait_bound: std::time::Duration,
}

impl StressSettings {
    /// Checks the settings (exit status 2 on a bad one).
    pub(crate) fn options(&self, duration: std::time::Duration) -> Result<StressOptions, Error> {
        use std::time::Duration;
        if duration < Duration::from_secs(1) || duration > Duration::from_secs(24 * 3600) {
            return Err(Error::usage(
                "--duration must be between 1s and 24h",
                Some("such as 10s or 60s (the default)"),
            ));
        }
        if self.wait_bound < Duration::from_secs(1) || self.wait_bound > Duration::from_secs(3600) {
            return Err(Error::usage(
                "--wait-bound must be between 1s and 1h",
                Some("such as 60s (the default)"),
            ));
        }
        let processes = self
            .processes
            .unwrap_or_else(|| (2 * lockcheck::engine::runner::default_jobs() as u32).clamp(4, 16));
        if !(1..=lockcheck::actor::stress::MAX_PROCESSES).contains(&processes) {
            return Err(Error::usage(
                format!(
                    "--processes must be between 1 and {}",
                    lockcheck::actor::stress::MAX_PROCESSES
                ),
                None,
            ));
        }
        let mut mechanisms = Vec::new();
        for m in &self.mechanisms {
            let m = Mechanism::from(*m);
            if !mechanisms.contains(&m) {
                mechanisms.push(m);
            }
        }
        if mechanisms.is_empty() {
            mechanisms = lockcheck::record::bench::MECHANISMS.to_vec();
        }
        let seed = self.seed.unwrap_or_else(random_seed);
        Ok(StressOptions {
            duration,
            processes,
            mechanisms,
            seed,
            wait_bound: self.wait_bound,
        })
    }
}

pub(crate) fn stress(a: StressArgs) -> Result<ExitCode, Error> {
    let opts = a.settings.options(a.settings.duration)?;
    let out = a.out.clone().unwrap_or_else(super::default_out);
    let session = Session::open_targets(&TargetOptions {
        targets: a.targets,
        provision: a.provision,
        hosts: a.hosts,
        remote_exe: a.remote_exe,
        ..TargetOptions::default()
    })?;
    for n in &session.notes {
        eprintln!("note: {n}");
    }
    let mut worst = StressVerdict::Clean;
    let mut all = Vec::new();
    for (i, t) in session.targets.iter().enumerate() {
        eprintln!(
            "stressing {} ({}, {}) for {} with {} processes on each host, seed {}",
            t.label,
            t.identity.fs_type,
            t.root.display(),
            humantime::format_duration(opts.duration),
            opts.processes,
            opts.seed
        );
        let mut s = session.stress(i, &opts);
        if let Some(sig) = lockcheck::actor::interrupt::interrupted() {
            warn_cleanup(&session.close());
            eprintln!("lockcheck: interrupted; nothing written");
            return Ok(ExitCode::from((128 + sig).clamp(0, 255) as u8));
        }
        let written = lockcheck::render::stress::write(&mut s, &t.label, &out)?;
        eprintln!("{}: {}", t.label, lockcheck::render::stress::headline(&s));
        for f in s.findings.iter().take(5) {
            eprintln!(
                "  {} after {:.3} s: {}",
                f.severity.as_str().to_uppercase(),
                f.finding.after_ms / 1000.0,
                f.finding.detail
            );
        }
        for p in &s.problems {
            eprintln!("  problem: {p}");
        }
        for w in &written {
            eprintln!("  wrote {}", w.display());
        }
        worst = worst.max(s.verdict);
        all.push((t.label.clone(), s));
    }
    warn_cleanup(&session.close());
    if a.format == RunFormat::Json {
        let doc = serde_json::json!(all
            .iter()
            .map(|(l, s)| serde_json::json!({"target": l, "stress": s}))
            .collect::<Vec<_>>());
        emit_json(&doc, "the stress results")?;
    }
    Ok(match worst {
        StressVerdict::Clean => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    })
}
