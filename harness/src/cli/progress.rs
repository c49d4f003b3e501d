//! What a run prints while it goes: a line for each failed or errored
//! trial, "run K of N" between repeats, and on a terminal a counter that
//! rewrites itself.

use std::io::{IsTerminal, Write as _};

use lockcheck::engine::runner::Progress;
use lockcheck::record::report::{Status, TrialResult};

/// Progress on stderr.
pub(crate) struct Console {
    total: usize,
    quiet: bool,
    /// Whether the counter is shown (stderr is a terminal and not quiet).
    tty: bool,
}

impl Console {
    pub(crate) fn new(total: usize, quiet: bool) -> Self {
        Console {
            total,
            quiet,
            tty: std::io::stderr().is_terminal() && !quiet,
        }
    }
}

impl Progress for Console {
    fn run_started(&self, k: usize, of: usize) {
        if of > 1 && !self.quiet {
            eprintln!("run {k} of {of}");
        }
    }

    fn trial_done(&self, n: usize, r: &TrialResult) {
        let mut err = std::io::stderr().lock();
        // Once interrupted, trials end because their actors were killed:
        // nothing to report.
        if lockcheck::actor::interrupt::interrupted().is_some() {
            return;
        }
        if matches!(r.status, Status::Fail | Status::Error) {
            if self.tty {
                let _ = write!(err, "\r\x1b[K");
            }
            let _ = writeln!(err, "{}", failure_line(r));
        }
        if self.tty {
            let _ = write!(err, "\r\x1b[K[{n}/{}] {}", self.total, r.id);
            let _ = err.flush();
        }
    }

    fn run_ended(&self) {
        if self.tty {
            eprint!("\r\x1b[K");
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
