//! What changed between repeated runs of the same trials: the one tally
//! behind `lockcheck run --repeat N` (flaky trials in the reports) and
//! `lockcheck qualify` (the bundle's flaky list and verdict).
//!
//! **The outcome compared.** A trial's outcome in one run is its verdict
//! (pass, skip, error, xfail, or for a failure its severity: unsafe,
//! divergent, info) and, for a failure, the step it failed at: `unsafe at
//! step 4`. A trial that fails at step 4 in one run and at step 7 in
//! another behaved differently, and different behaviour of the same trial
//! on the same storage is what flaky means here; timings are not compared.
//! An application's outcome is its verdict (a measured recovery just under
//! its limit one time and over it the next changes it). A trial or an
//! application missing from a run counts as changed ("not run").

use std::collections::BTreeMap;

use crate::record::report::{FlakyTrial, OutcomeRuns, Repeat, Report, TrialResult};

/// The outcome of one trial in one run (see the module's doc).
pub(crate) fn outcome(x: &TrialResult) -> String {
    match &x.failure {
        Some(f) => format!("{} at step {}", x.verdict, f.step),
        None => x.verdict.clone(),
    }
}

/// What an application's verdict is tallied under, within its target.
fn application(app: &str) -> String {
    format!("application {app}")
}

/// Outcomes of every trial and application over repeated runs, per target.
#[derive(Debug, Default)]
pub struct Tally {
    runs: usize,
    /// Per target label: per trial id (or `application NAME`), the runs
    /// (from 1) and their outcomes.
    seen: BTreeMap<String, BTreeMap<String, Vec<(usize, String)>>>,
}

impl Tally {
    /// Counts one run's reports.
    pub fn add(&mut self, pass: &[Report]) {
        self.runs += 1;
        for r in pass {
            let t = self.seen.entry(r.target.label.clone()).or_default();
            for x in &r.results {
                t.entry(x.id.clone())
                    .or_default()
                    .push((self.runs, outcome(x)));
            }
            for a in &r.applications {
                t.entry(application(&a.app))
                    .or_default()
                    .push((self.runs, a.verdict.as_str().to_string()));
            }
        }
    }

    /// A tally of these runs.
    pub(crate) fn of(passes: &[Vec<Report>]) -> Tally {
        let mut t = Tally::default();
        for p in passes {
            t.add(p);
        }
        t
    }

    /// The trials and applications of one target whose outcome changed:
    /// trials first, then applications, each in name order, with the outcome
    /// of every run (`not run` where it was missing).
    pub(crate) fn changed(&self, label: &str) -> Vec<(String, Vec<String>)> {
        let (apps, trials): (Vec<_>, Vec<_>) = self
            .seen
            .get(label)
            .into_iter()
            .flatten()
            .filter(|(_, outs)| {
                outs.len() != self.runs || outs.windows(2).any(|w| w[0].1 != w[1].1)
            })
            .map(|(id, outs)| {
                let per_run = (1..=self.runs)
                    .map(|k| {
                        outs.iter()
                            .find(|(run, _)| *run == k)
                            .map_or_else(|| "not run".to_string(), |(_, o)| o.clone())
                    })
                    .collect();
                (id.clone(), per_run)
            })
            .partition(|(id, _)| id.starts_with("application "));
        trials.into_iter().chain(apps).collect()
    }

    /// `--repeat`: what changed on one target, each outcome with the runs
    /// that had it; an application is named after its target
    /// (`nfs3::application prometheus`), as trial ids are.
    pub fn repeat_of(&self, label: &str) -> Repeat {
        let mut flaky: Vec<FlakyTrial> = self
            .changed(label)
            .into_iter()
            .map(|(id, per_run)| {
                let mut by: Vec<OutcomeRuns> = Vec::new();
                for (k, o) in per_run.into_iter().enumerate() {
                    match by.iter_mut().find(|b| b.outcome == o) {
                        Some(b) => b.runs.push(k + 1),
                        None => by.push(OutcomeRuns {
                            outcome: o,
                            runs: vec![k + 1],
                        }),
                    }
                }
                let id = match id.strip_prefix("application ") {
                    Some(app) => format!("{label}::application {app}"),
                    None => id,
                };
                FlakyTrial { id, outcomes: by }
            })
            .collect();
        flaky.sort_by(|a, b| a.id.cmp(&b.id));
        Repeat {
            runs: self.runs,
            flaky,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::report::fixtures::{catalog, identity, result};
    use crate::record::report::{Failure, Status};
    use crate::spec::scenario::{Mechanism, Severity};

    fn run(outcomes: &[(&str, Status, Option<usize>)]) -> Vec<Report> {
        let results = outcomes
            .iter()
            .map(|(s, st, step)| {
                let mut r = result(s, Mechanism::Posix, *st, Severity::Unsafe);
                r.failure = step.map(|n| Failure {
                    step: n,
                    line: 1,
                    col: 1,
                    actors: vec![],
                    op: "lock".into(),
                    expected: "EAGAIN".into(),
                    observed: "ok".into(),
                    note: None,
                    timed_out: false,
                    owner_only: false,
                    refused_only: false,
                });
                r
            })
            .collect();
        vec![Report::new(identity(), catalog(), results, 1.0)]
    }

    #[test]
    fn a_steady_trial_is_not_flaky_a_changing_one_is() {
        let t = Tally::of(&[
            run(&[("a", Status::Pass, None), ("b", Status::Pass, None)]),
            run(&[("a", Status::Pass, None), ("b", Status::Fail, Some(4))]),
            run(&[("a", Status::Pass, None), ("b", Status::Pass, None)]),
        ]);
        assert_eq!(t.repeat_of("t").runs, 3);
        let changed = t.changed("t");
        assert_eq!(
            changed,
            vec![(
                "t::b::posix".to_string(),
                vec!["pass".into(), "unsafe at step 4".into(), "pass".into()]
            )]
        );
        let rep = t.repeat_of("t");
        assert_eq!(rep.flaky.len(), 1);
        assert_eq!(
            rep.flaky[0].describe(),
            "pass ×2 (runs 1, 3); unsafe at step 4 ×1 (run 2)"
        );
    }

    #[test]
    fn failing_at_another_step_is_a_change_failing_alike_is_not() {
        let t = Tally::of(&[
            run(&[("a", Status::Fail, Some(4)), ("b", Status::Fail, Some(2))]),
            run(&[("a", Status::Fail, Some(7)), ("b", Status::Fail, Some(2))]),
        ]);
        let ids: Vec<String> = t.changed("t").into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, vec!["t::a::posix".to_string()]);
    }

    #[test]
    fn a_trial_missing_from_a_run_is_not_run_there() {
        let t = Tally::of(&[run(&[("a", Status::Pass, None)]), run(&[])]);
        assert_eq!(
            t.changed("t"),
            vec![(
                "t::a::posix".to_string(),
                vec!["pass".into(), "not run".into()]
            )]
        );
        assert_eq!(
            t.repeat_of("t").flaky[0].describe(),
            "pass ×1 (run 1); not run ×1 (run 2)"
        );
    }
}
