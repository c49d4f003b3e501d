//! The scenario catalog as `cargo test` trials: one per target × scenario ×
//! mechanism, named `target::scenario::mechanism`, on the default targets
//! (the local filesystem and tmpfs). Works under `cargo nextest run` too.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use lockcheck::engine::runner::Session;
use lockcheck::record::report::{Status, TrialResult};
use lockcheck::target::targets::{self as target, TargetSpec};

fn explain(r: &TrialResult) -> String {
    let mut s = format!("{} ({})\n", r.verdict.to_uppercase(), r.file);
    if let Some(f) = &r.failure {
        s.push_str(&format!(
            "step {} (line {}) {}: {}\n  expected: {}\n  observed: {}\n",
            f.step,
            f.line,
            f.actors.join(", "),
            f.op,
            f.expected,
            f.observed
        ));
    }
    if let Some(reason) = &r.reason {
        s.push_str(&format!("  reason: {reason}\n"));
    }
    s.push_str(&format!("  why it matters: {}\n  steps:\n", r.summary));
    for st in &r.steps {
        s.push_str(&format!(
            "    {}{} {} {} [{}] -> {}\n",
            st.step,
            if st.passed { " " } else { "✗" },
            st.actors.join(","),
            st.op,
            st.calls.join("; "),
            st.observed
        ));
    }
    s
}

fn main() -> ExitCode {
    if lockcheck::actor::process::is_actor_invocation() {
        lockcheck::actor::process::main();
    }
    // The zygote is this binary too (it forks actors faster than exec).
    if lockcheck::actor::zygote::is_zygote_invocation() {
        lockcheck::actor::zygote::main();
    }
    let mut args = Arguments::from_args();
    // nextest runs each test in its own process: one thread is enough there.
    if std::env::var_os("NEXTEST_EXECUTION_MODE").is_some_and(|m| m == "process-per-test") {
        args.test_threads = Some(1);
    }
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let catalog = match lockcheck::plan::catalog::load(Some(&scenarios)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // The local target lives under cargo's scratch area, not in the source tree.
    let namespace = target::enter_private_namespace();
    let mut defaults = target::default_targets(&namespace);
    for spec in &mut defaults.specs {
        if spec.label == "local" {
            *spec = TargetSpec {
                label: "local".into(),
                dir: Path::new(env!("CARGO_TARGET_TMPDIR")).to_path_buf(),
                provision: "cargo's target tmp directory (local filesystem)".into(),
                host_dirs: Vec::new(),
                lower: None,
                backing: None,
            };
        }
    }
    for n in &defaults.notes {
        eprintln!("note: {n}");
    }
    let session = match Session::open(&defaults.specs, namespace, defaults.tmpfs, defaults.notes) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let trials: Vec<Trial> = session
        .plan(&catalog, &[])
        .into_iter()
        .map(|spec| {
            let s = Arc::clone(&session);
            let kind = spec.mechanism.as_str();
            Trial::ignorable_test(spec.id.clone(), move || {
                if let Some(reason) = &spec.skip {
                    return Ok(Completion::ignored_with(reason));
                }
                let r = s.run_trial(&spec);
                match r.status {
                    Status::Pass => Ok(Completion::Completed),
                    Status::Skip => Ok(Completion::ignored_with(r.reason.unwrap_or_default())),
                    Status::Xfail => Ok(Completion::ignored_with(format!(
                        "expected failure of the {} method: {}",
                        r.mechanism,
                        r.reason.unwrap_or_default()
                    ))),
                    Status::Fail | Status::Error => Err(Failed::from(explain(&r))),
                }
            })
            .with_kind(kind)
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    match Arc::try_unwrap(session) {
        Ok(s) => {
            for p in s.close() {
                eprintln!("warning: cleanup: {p}");
            }
        }
        Err(_) => eprintln!("warning: trials still hold the session; scratch directories are left"),
    }
    conclusion.exit_code()
}
