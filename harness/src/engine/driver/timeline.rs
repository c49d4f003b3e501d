//! A trial's timeline: when each step ran on the monotonic clock the
//! actors stamp their replies with, the last fault, when replies came, and
//! the measurements made from them (a wait granted after a fault or after
//! the previous step, how long a contender was kept waiting, the time
//! actors spent inside calls).

use super::*;
use crate::plan::resolve::ActorPlan;

/// When a step ran, on the monotonic clock actors stamp their replies with.
#[derive(Debug, Clone, Copy)]
pub(super) struct StepTime {
    pub(super) number: usize,
    pub(super) start_ns: u64,
    pub(super) end_ns: u64,
    /// When the step's last call returned (its release, for an unlock).
    pub(super) release_ns: u64,
}

/// When steps ran and replies came, and what was measured from them.
pub(super) struct Timeline {
    pub(super) t0: Instant,
    /// When the previous step ended: completion latencies are measured from it.
    pub(super) last_step_end: Instant,
    /// The last fault (kill, stop, close-all, exit, lab fault): when (ns) and which step.
    pub(super) last_fault: Option<(u64, usize, String)>,
    /// When the calls completed by the current `await` returned (ns).
    pub(super) await_done_ns: u64,
    /// Values measured during the trial, for the report.
    pub(super) measurements: Vec<Measurement>,
    /// When each executed step ran.
    pub(super) step_times: Vec<StepTime>,
}

impl Timeline {
    pub(super) fn new(now: Instant) -> Self {
        Timeline {
            t0: now,
            last_step_end: now,
            last_fault: None,
            await_done_ns: 0,
            measurements: Vec::new(),
            step_times: Vec::new(),
        }
    }

    /// A step begins: no awaited call seen yet.
    pub(super) fn begin_step(&mut self) {
        self.await_done_ns = 0;
    }

    /// A step's times: when it started and ended, when its release was seen,
    /// whether it was a fault (the next granted wait is measured from it), and
    /// the measurements it makes (a wait granted after a fault or after the
    /// previous step; how long a contender was kept waiting). `at` is when
    /// the step started and when its last reply said its call returned
    /// (0: no reply came), in ns.
    /// Returns the
    /// step's time and, for a wait granted after a fault, how long after
    /// (ms) and the fault's step.
    pub(super) fn end_step(
        &mut self,
        step: &PlannedStep,
        at: (u64, u64),
        latency: Option<Duration>,
        observed: &[Observed],
        bound: Duration,
        actors: &[ActorPlan],
    ) -> (StepTime, Option<(f64, usize)>) {
        let (start_ns, reply_ns) = at;
        let end_ns = crate::actor::protocol::monotonic_ns();
        let step_time = StepTime {
            number: step.number,
            start_ns,
            end_ns,
            release_ns: if reply_ns > 0 { reply_ns } else { end_ns },
        };
        if matches!(
            step.op,
            Op::Signal { fatal: true, .. }
                | Op::Stop
                | Op::CloseAll
                | Op::Exit { .. }
                | Op::Lab { .. }
        ) {
            self.last_fault = Some((step_time.release_ns, step.number, step.op.describe(actors)));
        }
        // When a waiting call was granted: an awaited call, or a waiting
        // lock step with `within` that succeeded (a crashed holder's lock).
        let granted_ns = match (&step.op, latency) {
            (Op::Await { .. }, Some(_)) => Some(self.await_done_ns),
            (Op::Lock { wait: true, .. }, _)
                if !observed.is_empty()
                    && observed
                        .iter()
                        .all(|o| matches!(o, Observed::Returned(Outcome::Done { .. }))) =>
            {
                Some(reply_ns)
            }
            _ => None,
        };
        let bound_ms = Some(crate::record::report::ms(bound));
        // How long after the last fault a waiting call was granted.
        let after_fault = match (granted_ns, &self.last_fault) {
            (Some(done), Some((at, n, what))) => {
                let ms = done.saturating_sub(*at) as f64 / 1e6;
                let ms = (ms * 1000.0).round() / 1000.0;
                self.measurements.push(Measurement {
                    step: step.number,
                    what: format!("lock granted after the fault of step {n} ({what})"),
                    ms,
                    bound_ms,
                });
                Some((ms, *n))
            }
            _ => None,
        };
        if let (None, Op::Await { .. }, Some(l)) = (&after_fault, &step.op, latency) {
            self.measurements.push(Measurement {
                step: step.number,
                what: "blocked call completed after the previous step".into(),
                ms: crate::record::report::ms(l),
                bound_ms,
            });
        }
        if let Op::Await { hold: Some(d) } = step.op {
            self.measurements.push(Measurement {
                step: step.number,
                what: "contender kept waiting (its timeout)".into(),
                ms: crate::record::report::ms(d),
                bound_ms: None,
            });
        }
        (step_time, after_fault)
    }
}
