//! `lockcheck bench`: lock latency and throughput on targets.

use std::process::ExitCode;

use clap::Args;

use lockcheck::engine::runner::Session;
use lockcheck::engine::session::TargetOptions;
use lockcheck::record::report;
use lockcheck::spec::scenario::Mechanism;
use lockcheck::Error;

use super::run::{warn_cleanup, BenchSettings, RunFormat};
use super::{emit, emit_json, Mech};

#[derive(Args, Clone)]
pub(crate) struct BenchArgs {
    /// A directory to measure, with a label (repeatable). Default: `local`
    /// (the current directory's filesystem) and `tmpfs`.
    #[arg(long = "target", value_name = "[LABEL=]DIR")]
    pub(crate) targets: Vec<String>,
    /// Also make these filesystems and measure them (xfs, btrfs, overlay, fuse, all).
    #[arg(long, value_name = "KIND")]
    pub(crate) provision: Vec<String>,
    /// Measure only these mechanisms (repeatable; default flock, posix, ofd).
    #[arg(long = "mechanism", value_name = "M")]
    pub(crate) mechanisms: Vec<Mech>,
    #[command(flatten)]
    pub(crate) bench: BenchSettings,
    /// `json`: print the figures as JSON on stdout.
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) format: RunFormat,
    /// Also write each target's figures to DIR: LABEL.bench.json and
    /// LABEL.bench.md (`lockcheck run --bench` puts them into the reports).
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<std::path::PathBuf>,
}

/// The mechanisms to benchmark: the given ones (flock, posix, ofd only).
pub(crate) fn bench_mechanisms(given: &[Mech]) -> Result<Vec<Mechanism>, Error> {
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

/// LABEL.bench.json and LABEL.bench.md in `dir`.
fn write_figures(
    dir: &std::path::Path,
    label: &str,
    doc: &serde_json::Value,
    markdown: &str,
) -> Result<(), Error> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let json = serde_json::to_string_pretty(doc)
        .map_err(|e| Error::io("the figures as JSON", std::io::Error::other(e)))?;
    for (name, text) in [
        (format!("{label}.bench.json"), json + "\n"),
        (
            format!("{label}.bench.md"),
            format!("# Lock latency: {label}\n\n{markdown}"),
        ),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

pub(crate) fn bench(b: BenchArgs) -> Result<ExitCode, Error> {
    let opts = b.bench.options()?;
    let mechanisms = bench_mechanisms(&b.mechanisms)?;
    let session = Session::open_targets(&TargetOptions {
        targets: b.targets,
        provision: b.provision,
        ..TargetOptions::default()
    })?;
    for n in &session.notes {
        eprintln!("note: {n}");
    }
    let mut all = Vec::new();
    let mut text = String::new();
    // A figure that could not be measured fails the command.
    let mut incomplete = false;
    for (i, t) in session.targets.iter().enumerate() {
        eprintln!(
            "benchmarking {} ({}, {})",
            t.label,
            t.identity.fs_type,
            t.root.display()
        );
        let r = session.bench(i, &mechanisms, &opts);
        incomplete |= r.results.iter().any(|m| !m.problems.is_empty());
        text.push_str(&format!(
            "\n{} ({}, {})\n{}",
            t.label,
            t.identity.fs_type,
            t.root.display(),
            lockcheck::render::bench::markdown(&r)
        ));
        let doc = serde_json::json!({
            "target": t.label,
            "fs_type": t.identity.fs_type,
            "dir": t.root,
            "benchmarks": r,
        });
        if let Some(dir) = &b.out {
            write_figures(dir, &t.label, &doc, &lockcheck::render::bench::markdown(&r))?;
        }
        all.push(doc);
    }
    let problems = session.close();
    if b.format == RunFormat::Json {
        let doc = serde_json::json!({
            "schema_version": report::SCHEMA_VERSION,
            "targets": all,
        });
        emit_json(&doc, "the figures")?;
        eprint!("{text}");
    } else {
        emit(&text);
    }
    warn_cleanup(&problems);
    Ok(if incomplete {
        eprintln!("lockcheck bench: some figures could not be measured (see above)");
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
