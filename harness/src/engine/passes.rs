//! Running a run's trials once or several times over (`--repeat`,
//! qualification), each complete run becoming one report per target.

use std::time::Instant;

use crate::engine::runner::{Progress, Session, TrialSpec};
use crate::plan::catalog::Catalog;
use crate::record::report::Report;
use crate::verdict::apps::Apps;

/// How a run's trials are repeated and ordered.
#[derive(Debug, Clone, Copy)]
pub struct Passes {
    /// Trials in parallel.
    pub jobs: usize,
    /// How many times the whole set runs.
    pub repeats: usize,
    /// Start the trials in the order this seed draws (plus the run's index,
    /// from 0); `None`: longest first.
    pub order_seed: Option<u64>,
}

impl Session {
    /// Runs `trials` `p.repeats` times and hands each run's reports (one per
    /// target, with their application verdicts and order seed) to `pass`, in
    /// order. Once interrupted (Ctrl-C), no further run starts; the caller
    /// tells a run cut short by [`crate::actor::interrupt::interrupted`].
    pub fn run_passes(
        &self,
        catalog: &Catalog,
        apps: &Apps,
        trials: &[TrialSpec],
        p: Passes,
        progress: &dyn Progress,
        pass: &mut dyn FnMut(Vec<Report>),
    ) {
        for k in 0..p.repeats {
            if crate::actor::interrupt::interrupted().is_some() {
                break;
            }
            progress.run_started(k + 1, p.repeats);
            let began = Instant::now();
            let seed = p.order_seed.map(|s| s.wrapping_add(k as u64));
            let results = self.run_all(trials, p.jobs, seed, progress);
            progress.run_ended();
            let wall_ms = began.elapsed().as_secs_f64() * 1000.0;
            pass(
                self.reports(catalog, results, wall_ms)
                    .into_iter()
                    .map(|r| r.with_apps(apps))
                    .map(|mut r| {
                        r.order_seed = seed;
                        r
                    })
                    .collect(),
            );
        }
    }
}
