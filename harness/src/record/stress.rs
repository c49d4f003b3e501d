//! A stress run's results as a report carries them (`lockcheck stress`,
//! `lockcheck run --stress`): operations, grants and waits per mechanism,
//! and the findings of the oracles, each with the scenario that replays it.

use serde::{Deserialize, Serialize};

use crate::actor::stress::{Finding, FindingKind, MechCounts, BUCKETS};
use crate::spec::scenario::{Mechanism, Severity};

/// A stress run on one target.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Stress {
    /// How long the workers ran, as asked, in milliseconds.
    pub duration_ms: f64,
    /// How long they really ran (the longest worker), in milliseconds.
    pub elapsed_ms: f64,
    /// Worker processes on each host.
    pub processes: u32,
    /// The hosts that had workers (`a` is the one running lockcheck).
    pub hosts: Vec<String>,
    /// The mechanisms the requests used.
    pub mechanisms: Vec<Mechanism>,
    /// The seed of the workers' choices (`--seed` repeats them).
    pub seed: u64,
    /// A blocking request not granted within this bound was a finding, in milliseconds.
    pub wait_bound_ms: u64,
    /// Lock requests made, all mechanisms and hosts.
    pub operations: u64,
    /// Lock requests per second.
    pub operations_per_s: f64,
    /// Per mechanism.
    pub results: Vec<StressMech>,
    /// Cells the data oracle checked after the run, and writes made to them.
    pub cells_checked: usize,
    /// Writes the exclusive holders made to the cells.
    pub cell_writes: u64,
    /// What the oracles caught, first found first.
    pub findings: Vec<StressFinding>,
    /// Findings beyond those kept (each worker keeps its first 20).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub findings_dropped: u64,
    /// The outcome: `clean`, or the worst finding's severity, or `error`
    /// when the run itself failed.
    pub verdict: StressVerdict,
    /// What went wrong with the run (not the storage).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The outcome of a stress run.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum StressVerdict {
    /// No finding.
    Clean,
    /// Only findings that are not a loss of exclusion (a wait beyond the
    /// bound, an unexpected error).
    Fail,
    /// Exclusion or data was lost.
    Unsafe,
    /// The run could not be made (an agent did not start, a worker died).
    Error,
}

impl StressVerdict {
    /// Its name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            StressVerdict::Clean => "clean",
            StressVerdict::Fail => "fail",
            StressVerdict::Unsafe => "unsafe",
            StressVerdict::Error => "error",
        }
    }
}

/// One mechanism's figures.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StressMech {
    /// The counts, summed over workers and hosts.
    #[serde(flatten)]
    pub counts: MechCounts,
    /// Requests per second.
    pub requests_per_s: f64,
    /// Blocking requests: how long they took (upper bounds of power-of-two buckets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waits: Option<WaitLatency>,
}

/// Percentiles of blocking requests' durations, in µs: each is the upper
/// bound of the power-of-two bucket it falls in.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WaitLatency {
    /// Blocking requests.
    pub samples: u64,
    /// Median, at most.
    pub p50_us: u64,
    /// 99th percentile, at most.
    pub p99_us: u64,
    /// 99.9th percentile, at most.
    pub p999_us: u64,
    /// The longest.
    pub max_us: u64,
}

impl WaitLatency {
    /// Percentiles from a histogram whose bucket `b` holds values below 2^b.
    pub fn of(hist: &[u64], max_us: u64) -> Option<WaitLatency> {
        let samples: u64 = hist.iter().sum();
        if samples == 0 {
            return None;
        }
        let at = |q: f64| -> u64 {
            let want = ((samples as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (b, n) in hist.iter().enumerate().take(BUCKETS) {
                seen += n;
                if seen >= want {
                    return (1u64 << b).min(max_us.max(1));
                }
            }
            max_us
        };
        Some(WaitLatency {
            samples,
            p50_us: at(0.5),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us,
        })
    }
}

/// A finding, its severity, and the scenario that replays it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StressFinding {
    /// What was caught, by whom, when.
    #[serde(flatten)]
    pub finding: Finding,
    /// `unsafe` for lost exclusion or data; `divergent` for a wait beyond
    /// the bound or an unexpected error (a failure, with the number, but
    /// not a loss of exclusion).
    pub severity: Severity,
    /// A scenario file replaying the two requests (written next to the report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<String>,
}

impl StressFinding {
    /// The severity of a kind of finding.
    pub fn severity_of(kind: FindingKind) -> Severity {
        match kind {
            FindingKind::Overlap | FindingKind::ChangedUnderLock | FindingKind::LostUpdate => {
                Severity::Unsafe
            }
            FindingKind::WaitBound | FindingKind::Stuck | FindingKind::Error => Severity::Divergent,
        }
    }
}

impl Stress {
    /// The verdict these findings and problems make.
    pub fn judge(findings: &[StressFinding], problems: &[String]) -> StressVerdict {
        if findings.iter().any(|f| f.severity == Severity::Unsafe) {
            StressVerdict::Unsafe
        } else if !findings.is_empty() {
            StressVerdict::Fail
        } else if !problems.is_empty() {
            StressVerdict::Error
        } else {
            StressVerdict::Clean
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_bucket_bounds() {
        let mut h = vec![0; BUCKETS];
        h[3] = 98; // below 8 µs
        h[10] = 2; // below 1024 µs
        let w = WaitLatency::of(&h, 900).expect("samples");
        assert_eq!(w.samples, 100);
        assert_eq!(w.p50_us, 8);
        assert_eq!(w.p99_us, 900, "capped by the longest");
        assert_eq!(
            WaitLatency::of(&vec![0; BUCKETS], 0).map(|w| w.samples),
            None
        );
    }
}
