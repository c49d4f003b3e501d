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
        use crate::record::stress::StressVerdict;
        let s = &r.summary;
        // A stress phase: an unsafe finding fails like an unsafe trial,
        // another finding like a divergent one, a run that could not be
        // made like an error.
        let stress = r.stress.as_ref().map(|x| x.verdict);
        if stress == Some(StressVerdict::Error) {
            return true;
        }
        let stress_fails = match (self, stress) {
            (_, None | Some(StressVerdict::Clean)) | (FailOn::Error, _) => false,
            (FailOn::Unsafe, Some(v)) => v == StressVerdict::Unsafe,
            _ => true,
        };
        stress_fails
            || s.error > 0
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
    fn a_stress_finding_fails_like_a_trial_of_its_severity() {
        use crate::record::stress::{Stress, StressVerdict};
        let with = |v: StressVerdict| {
            let mut r = report(vec![]);
            r.stress = Some(Stress {
                duration_ms: 1.0,
                elapsed_ms: 1.0,
                processes: 1,
                hosts: vec!["a".into()],
                mechanisms: vec![Mechanism::Posix],
                seed: 1,
                wait_bound_ms: 1,
                operations: 1,
                operations_per_s: 1.0,
                results: vec![],
                cells_checked: 0,
                cell_writes: 0,
                findings: vec![],
                findings_dropped: 0,
                verdict: v,
                problems: vec![],
            });
            r
        };
        for (v, any, divergent, unsafe_, error) in [
            (StressVerdict::Clean, false, false, false, false),
            (StressVerdict::Fail, true, true, false, false),
            (StressVerdict::Unsafe, true, true, true, false),
            (StressVerdict::Error, true, true, true, true),
        ] {
            let r = with(v);
            assert_eq!(FailOn::Any.fails(&r), any, "{v:?}");
            assert_eq!(FailOn::Divergent.fails(&r), divergent, "{v:?}");
            assert_eq!(FailOn::Unsafe.fails(&r), unsafe_, "{v:?}");
            assert_eq!(FailOn::Error.fails(&r), error, "{v:?}");
        }
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
