//! Lock latency and throughput figures of one target, as a report carries
//! them (measured by [`crate::engine::bench`]).

use serde::{Deserialize, Serialize};

use crate::spec::scenario::Mechanism;

/// The mechanisms benchmarked: the lock calls applications make.
pub const MECHANISMS: [Mechanism; 3] = [Mechanism::Flock, Mechanism::Posix, Mechanism::Ofd];

/// The benchmarks of one target.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Bench {
    /// Time budget per measurement, in milliseconds.
    pub(crate) budget_ms: f64,
    /// Processes in the throughput measurement.
    pub(crate) contenders: u32,
    /// The figures of each mechanism benchmarked.
    pub results: Vec<MechBench>,
}

/// One mechanism's figures; a measurement that could not be made is
/// missing, and `problems` says why.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MechBench {
    pub(crate) mechanism: Mechanism,
    /// Lock + unlock by one process, no contention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) uncontended: Option<Latency>,
    /// From the holder entering its unlock call to the blocked waiter's
    /// lock call returning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) handoff: Option<Latency>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) throughput: Option<Throughput>,
    /// lockcheck's own blocked detection, measured during the hand-offs:
    /// from the waiter entering its lock call to lockcheck deciding, from
    /// /proc, that it waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) blocked_seen: Option<Latency>,
    /// Write and read rates of one process, without a lock and while it
    /// holds an exclusive lock on the whole file (network filesystems may
    /// stop caching a locked file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) io: Option<IoRates>,
    /// Each measurement that could not be made, and why (`hand-off: ...`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

impl MechBench {
    pub(crate) fn of(
        mechanism: Mechanism,
        uncontended: Result<Latency, String>,
        handoff: Result<(Latency, Option<Latency>), String>,
        throughput: Result<Throughput, String>,
        io: Result<IoRates, String>,
    ) -> MechBench {
        let mut problems = Vec::new();
        let mut keep = |what: &str, e: Option<String>| {
            if let Some(e) = e {
                problems.push(format!("{what}: {e}"));
            }
        };
        keep("uncontended", uncontended.as_ref().err().cloned());
        keep("hand-off", handoff.as_ref().err().cloned());
        keep("throughput", throughput.as_ref().err().cloned());
        keep("I/O", io.as_ref().err().cloned());
        let (handoff, blocked_seen) = match handoff {
            Ok((h, seen)) => (Some(h), seen),
            Err(_) => (None, None),
        };
        MechBench {
            mechanism,
            uncontended: uncontended.ok(),
            handoff,
            throughput: throughput.ok(),
            blocked_seen,
            io: io.ok(),
            problems,
        }
    }
}

/// A latency distribution in microseconds.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub(crate) struct Latency {
    pub(crate) samples: usize,
    pub(crate) median_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) min_us: f64,
    pub(crate) max_us: f64,
}

impl Latency {
    /// From samples in nanoseconds (`None` if there are none).
    pub(crate) fn of(ns: &[u64]) -> Option<Latency> {
        if ns.is_empty() {
            return None;
        }
        let mut v = ns.to_vec();
        v.sort_unstable();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
        Some(Latency {
            samples: v.len(),
            median_us: round3(at(0.5)),
            p99_us: round3(at(0.99)),
            min_us: round3(v[0] as f64 / 1000.0),
            max_us: round3(v[v.len() - 1] as f64 / 1000.0),
        })
    }
}

/// Locks granted per second with several processes contending.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub(crate) struct Throughput {
    pub(crate) processes: u32,
    pub(crate) locks: u64,
    pub(crate) seconds: f64,
    pub(crate) locks_per_s: f64,
}

/// One process's I/O on the benchmark file: pwrite of fixed-size blocks
/// for the time budget, then fsync, then pread of the same blocks; once
/// without a lock, once holding an exclusive whole-file lock, both over
/// blocks a first, unmeasured pass wrote. Rates in MiB/s.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub(crate) struct IoRates {
    /// Bytes per write and read call.
    pub(crate) block: u32,
    pub(crate) unlocked: IoRate,
    pub(crate) locked: IoRate,
}

/// Write (with the closing fsync) and read rates of one pass.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub(crate) struct IoRate {
    pub(crate) bytes: u64,
    pub(crate) write_mib_s: f64,
    pub(crate) read_mib_s: f64,
}

impl IoRate {
    pub(crate) fn of(bytes: u64, write_ns: u64, read_ns: u64) -> IoRate {
        let rate = |ns: u64| {
            if ns == 0 {
                0.0
            } else {
                round3(bytes as f64 / (1 << 20) as f64 / (ns as f64 / 1e9))
            }
        };
        IoRate {
            bytes,
            write_mib_s: rate(write_ns),
            read_mib_s: rate(read_ns),
        }
    }
}

pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let ns: Vec<u64> = (1..=100).map(|k| k * 1000).collect();
        let l = Latency::of(&ns).expect("samples");
        assert_eq!(l.samples, 100);
        assert_eq!(l.median_us, 51.0);
        assert_eq!(l.p99_us, 99.0);
        assert_eq!(l.min_us, 1.0);
        assert_eq!(l.max_us, 100.0);
        assert!(Latency::of(&[]).is_none());
    }
}
