//! Which results make a run fail: its exit status 1 (`--fail-on`). A trial
//! that could not run (an error) always does.

use crate::record::report::Report;

/// Which failures make the exit status 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
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

impl FailOn {
    /// Whether this report fails the run.
    pub fn fails(self, r: &Report) -> bool {
        let s = &r.summary;
        s.error > 0
            || match self {
                FailOn::Any => s.fail > 0,
                FailOn::Divergent => s.unsafe_failures + s.divergent_failures > 0,
                FailOn::Unsafe => s.unsafe_failures > 0,
                FailOn::Error => false,
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::report::fixtures::{catalog, identity, result};
    use crate::record::report::Status;
    use crate::spec::scenario::{Mechanism, Severity};

    fn report(results: Vec<crate::record::report::TrialResult>) -> Report {
        Report::new(identity(), catalog(), results, 1.0)
    }

    #[test]
    fn each_setting_fails_on_what_it_names_and_errors_always() {
        let divergent = report(vec![result(
            "a",
            Mechanism::Flock,
            Status::Fail,
            Severity::Divergent,
        )]);
        let unsafe_ = report(vec![result(
            "a",
            Mechanism::Flock,
            Status::Fail,
            Severity::Unsafe,
        )]);
        let info = report(vec![result(
            "a",
            Mechanism::Flock,
            Status::Fail,
            Severity::Info,
        )]);
        let error = report(vec![result(
            "a",
            Mechanism::Flock,
            Status::Error,
            Severity::Info,
        )]);
        let pass = report(vec![result(
            "a",
            Mechanism::Flock,
            Status::Pass,
            Severity::Unsafe,
        )]);
        for (f, want) in [
            (FailOn::Any, [true, true, true, true, false]),
            (FailOn::Divergent, [true, true, false, true, false]),
            (FailOn::Unsafe, [false, true, false, true, false]),
            (FailOn::Error, [false, false, false, true, false]),
        ] {
            let got = [&divergent, &unsafe_, &info, &error, &pass].map(|r| f.fails(r));
            assert_eq!(got, want, "{f:?}");
        }
    }
}
