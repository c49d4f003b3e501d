//! `lockcheck bench`: what locking costs on a target, per mechanism.
//!
//! - **uncontended**: one process locks and unlocks, timed round by round
//!   inside the actor (no pipe or harness in the measurement);
//! - **hand-off**: a holder unlocks while another process waits in the
//!   kernel (seen waiting in /proc first); the time from the holder entering
//!   its unlock call to the waiter's lock call returning, both stamped by
//!   the actors on CLOCK_MONOTONIC;
//! - **throughput**: N processes lock and unlock as fast as they can, all on
//!   the same file; locks granted per second of wall time;
//! - **I/O**: one process writes 64 KiB blocks for the budget, fsyncs and
//!   reads them back, without a lock and then holding an exclusive lock on
//!   the whole file, both over blocks an unmeasured first pass wrote (Connectathon's test 14: NFS clients may stop caching a
//!   locked file).
//!
//! Each measurement stops at a time budget (at least a minimum number of
//! rounds), so a slow target (NFS: a round trip per call) takes about as
//! long as a fast one.

use crate::plan::mech::Span;
use std::time::{Duration, Instant};

use crate::actor::protocol::{Outcome, Reply, Request};
use crate::engine::driver::{ActorPool, Driver, TrialEnv};
use crate::plan::resolve::{Applicability, LockKind};
use crate::record::bench::{round3, IoRate, IoRates, Latency, MechBench, Throughput};
use crate::spec::scenario::Mechanism;
use crate::target::targets::HostEnv;

/// How much to measure.
#[derive(Debug, Clone, Copy)]
pub struct BenchOptions {
    /// Time spent on each measurement (after the minimum rounds).
    pub budget: Duration,
    /// Processes contending in the throughput measurement.
    pub contenders: u32,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            budget: Duration::from_millis(200),
            contenders: 4,
        }
    }
}

/// The generated scenario the benchmarks' actors come from: `n` actors
/// that each open the same file.
fn scenario(n: u32) -> Result<crate::plan::catalog::LoadedScenario, String> {
    let text = format!(
        "name: bench\nsummary: lock latency\nreference: lockcheck bench\nfamily: blocking\n\
         severity: info\nactors: ['p[1..{n}]']\nsteps:\n  - open: {{actors: all, path: bench, create: true}}\n"
    );
    crate::plan::catalog::parse_scenario("<bench>", text.as_bytes(), None)
        .map_err(|e| e.to_string())
}

/// Where a benchmark runs: the pieces of a trial environment.
pub(crate) struct BenchEnv<'a> {
    pub(crate) exe: &'a std::path::Path,
    /// A fresh scratch directory of the target (removed by the caller).
    pub(crate) scratch: &'a std::path::Path,
    pub(crate) lock_lists: bool,
    pub(crate) locks_dev: Option<String>,
    pub(crate) zygote: Option<&'a crate::actor::zygote::Zygote>,
}

/// Benchmark one mechanism on a target.
pub(crate) fn run_mechanism(env: &BenchEnv<'_>, mech: Mechanism, opts: &BenchOptions) -> MechBench {
    let n = opts.contenders.max(2);
    let fail = |e: String| MechBench {
        mechanism: mech,
        uncontended: None,
        handoff: None,
        throughput: None,
        blocked_seen: None,
        io: None,
        problems: vec![e],
    };
    let loaded = match scenario(n) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let Some(Applicability::Applies(plan)) = loaded.plans.get(&mech) else {
        return fail(format!("{mech} cannot be benchmarked"));
    };
    let hosts = [HostEnv::local(env.exe, env.scratch)];
    let no_faults = Default::default();
    let none_confined = Default::default();
    let tenv = TrialEnv {
        exe: env.exe,
        scratch: env.scratch,
        second_mount: None,
        backing: None,
        lock_lists: env.lock_lists,
        locks_dev: env.locks_dev.clone(),
        hosts: &hosts,
        faults: &no_faults,
        zygote: env.zygote,
        confined_faults: &none_confined,
        barrier: None,
        lease: crate::plan::resolve::DEFAULT_LEASE,
        slots: None,
        rounds: None,
    };
    let mut d = Driver::new(plan, &tenv);
    let opened = d.start().and_then(|()| {
        for step in &plan.steps {
            let (_, record, ok) = d.step(step)?;
            if !ok {
                return Err(format!("cannot open the file: {}", record.observed));
            }
        }
        Ok(())
    });
    let out = match opened {
        Err(e) => fail(e),
        Ok(()) => {
            let mut b = Bencher {
                d: d.pool(),
                mech,
                opts,
            };
            let uncontended = b.uncontended();
            let handoff = b.handoff();
            let per_round = uncontended
                .as_ref()
                .map(|l| Duration::from_nanos((l.median_us * 1000.0) as u64))
                .unwrap_or(Duration::from_millis(1));
            // After a failed hand-off a call may still be outstanding: the
            // actors are not used again.
            let throughput = match &handoff {
                Ok(_) => b.throughput(n, per_round),
                Err(_) => Err("not measured: the hand-off failed".to_string()),
            };
            let io = match &handoff {
                Ok(_) => b.io(),
                Err(_) => Err("not measured: the hand-off failed".to_string()),
            };
            MechBench::of(mech, uncontended, handoff, throughput, io)
        }
    };
    let mut out = out;
    out.problems
        .extend(d.finish().into_iter().map(|p| format!("teardown: {p}")));
    out
}

/// The longest one call may take before the benchmark gives up.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a waiter may take to be seen waiting.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(10);
/// Rounds measured at least, whatever the budget.
const MIN_ROUNDS: u32 = 20;
const MIN_HANDOFFS: u32 = 5;
/// Rounds measured at most.
const MAX_ROUNDS: u32 = 100_000;
const MAX_HANDOFFS: u32 = 2_000;
/// Bytes per write and read in the I/O measurement, and blocks at least.
const IO_BLOCK: u32 = 64 * 1024;
const MIN_IO_BLOCKS: u32 = 4;

struct Bencher<'d, 'a> {
    d: &'d mut ActorPool<'a>,
    mech: Mechanism,
    opts: &'d BenchOptions,
}

impl Bencher<'_, '_> {
    fn fd(&self, i: usize) -> Result<(i32, u64), String> {
        self.d
            .descriptor(i, "bench")
            .ok_or_else(|| "the benchmark file is not open".to_string())
    }

    fn lock(&self, i: usize, kind: LockKind, wait: bool) -> Result<Request, String> {
        let (fd, _) = self.fd(i)?;
        Ok(
            crate::plan::mech::lock_request(self.mech, fd, &bench_file(), kind, wait, Span::WHOLE)
                .0,
        )
    }

    fn call(&mut self, i: usize, req: Request) -> Result<Reply, String> {
        let seq = self.d.submit(i, req, CALL_TIMEOUT)?;
        let r = self.d.reply(i, seq, CALL_TIMEOUT)?;
        match &r.outcome {
            Outcome::Failed { errno } => Err(format!(
                "the call failed: {}",
                crate::spec::errno::name(*errno)
            )),
            Outcome::BadRequest { message } => Err(message.clone()),
            _ => Ok(r),
        }
    }

    /// Lock-loop rounds in actor `i`: their times in ns.
    fn rounds(&mut self, i: usize, times: u32, wait: bool) -> Result<(Vec<u64>, Reply), String> {
        let req = Request::LockLoop {
            lock: Box::new(self.lock(i, LockKind::Exclusive, wait)?),
            unlock: Box::new(self.lock(i, LockKind::Unlock, false)?),
            times,
        };
        let r = self.call(i, req)?;
        match &r.outcome {
            Outcome::Samples { ns } => Ok((ns.clone(), r.clone())),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }

    fn uncontended(&mut self) -> Result<Latency, String> {
        let began = Instant::now();
        let (mut ns, _) = self.rounds(0, MIN_ROUNDS, false)?;
        let per = began.elapsed() / MIN_ROUNDS;
        let more = rounds_for(self.opts.budget, per, MAX_ROUNDS - MIN_ROUNDS);
        if more > 0 {
            ns.extend(self.rounds(0, more, false)?.0);
        }
        Latency::of(&ns).ok_or_else(|| "no samples".into())
    }

    fn handoff(&mut self) -> Result<(Latency, Option<Latency>), String> {
        let (holder0, waiter0) = (0, 1);
        self.call(holder0, self.lock(holder0, LockKind::Exclusive, false)?)?;
        let began = Instant::now();
        let mut samples = Vec::new();
        let mut seen = Vec::new();
        let (mut h, mut w) = (holder0, waiter0);
        let result = (|| {
            while samples.len() < MAX_HANDOFFS as usize
                && (samples.len() < MIN_HANDOFFS as usize || began.elapsed() < self.opts.budget)
            {
                let (fd, ino) = self.fd(w)?;
                let (req, sig) = crate::plan::mech::lock_request(
                    self.mech,
                    fd,
                    &bench_file(),
                    LockKind::Exclusive,
                    true,
                    Span::WHOLE,
                );
                let sig = sig.ok_or("this lock call cannot wait")?;
                let seq = self.d.submit(w, req, CALL_TIMEOUT)?;
                if let Some(o) = self
                    .d
                    .until_blocked(w, seq, sig, Some(ino), BLOCK_TIMEOUT)?
                {
                    return Err(format!(
                        "the waiter was not made to wait: {} while another process held the lock",
                        crate::verdict::judge::describe_observed(&o)
                    ));
                }
                let seen_ns = crate::actor::protocol::monotonic_ns();
                let unlocked = self.call(h, self.lock(h, LockKind::Unlock, false)?)?;
                let got = self.d.reply(w, seq, CALL_TIMEOUT)?;
                if let Outcome::Failed { errno } = got.outcome {
                    return Err(format!(
                        "the waiter's lock failed: {}",
                        crate::spec::errno::name(errno)
                    ));
                }
                if unlocked.start_ns == 0 || got.t_ns == 0 {
                    return Err("the actors did not stamp their calls".into());
                }
                samples.push(got.t_ns.saturating_sub(unlocked.start_ns));
                if got.start_ns > 0 {
                    seen.push(seen_ns.saturating_sub(got.start_ns));
                }
                std::mem::swap(&mut h, &mut w);
            }
            Ok(())
        })();
        // Whoever holds the lock lets go (best effort: the actors end next).
        if let Ok(req) = self.lock(h, LockKind::Unlock, false) {
            let _ = self.call(h, req);
        }
        result?;
        let h = Latency::of(&samples).ok_or("no samples")?;
        Ok((h, Latency::of(&seen)))
    }

    /// Actor 0's write and read rates, without a lock, then holding one.
    fn io(&mut self) -> Result<IoRates, String> {
        let (fd, _) = self.fd(0)?;
        let mut pass = |locked: bool| -> Result<IoRate, String> {
            let (lock, unlock) = if locked {
                (
                    Some(Box::new(self.lock(0, LockKind::Exclusive, true)?)),
                    Some(Box::new(self.lock(0, LockKind::Unlock, false)?)),
                )
            } else {
                (None, None)
            };
            let req = Request::IoLoop {
                fd,
                chunk: IO_BLOCK,
                budget_ms: self.opts.budget.as_millis() as u64,
                min_chunks: MIN_IO_BLOCKS,
                lock,
                unlock,
            };
            match self.call(0, req)?.outcome {
                Outcome::Io {
                    bytes,
                    write_ns,
                    read_ns,
                } => Ok(IoRate::of(bytes, write_ns, read_ns)),
                other => Err(format!("unexpected answer {other:?}")),
            }
        };
        // A first pass writes the blocks into the empty file; the measured
        // passes both overwrite them, so that allocation is in neither.
        pass(false)?;
        let unlocked = pass(false)?;
        let locked = pass(true)?;
        Ok(IoRates {
            block: IO_BLOCK,
            unlocked,
            locked,
        })
    }

    fn throughput(&mut self, n: u32, per_round: Duration) -> Result<Throughput, String> {
        // Each process gets rounds for the whole budget as if it ran alone;
        // contention makes the run take longer, not shorter.
        let times = (rounds_for(self.opts.budget, per_round, MAX_ROUNDS) / n).max(MIN_ROUNDS);
        let mut seqs = Vec::new();
        for i in 0..n as usize {
            let req = Request::LockLoop {
                lock: Box::new(self.lock(i, LockKind::Exclusive, true)?),
                unlock: Box::new(self.lock(i, LockKind::Unlock, false)?),
                times,
            };
            seqs.push((i, self.d.submit(i, req, CALL_TIMEOUT)?));
        }
        let (mut first, mut last) = (u64::MAX, 0u64);
        for (i, seq) in seqs {
            let r = self.d.reply(i, seq, CALL_TIMEOUT)?;
            match r.outcome {
                Outcome::Samples { .. } => {}
                Outcome::Failed { errno } => {
                    return Err(format!(
                        "a contender failed: {}",
                        crate::spec::errno::name(errno)
                    ))
                }
                other => return Err(format!("unexpected answer {other:?}")),
            }
            first = first.min(r.start_ns);
            last = last.max(r.t_ns);
        }
        let seconds = last.saturating_sub(first) as f64 / 1e9;
        if seconds <= 0.0 {
            return Err("the contenders did not stamp their calls".into());
        }
        let locks = u64::from(times) * u64::from(n);
        Ok(Throughput {
            processes: n,
            locks,
            seconds: round3(seconds * 1000.0) / 1000.0,
            locks_per_s: (locks as f64 / seconds).round(),
        })
    }
}

/// How many rounds of `per` fit in `budget` (at most `max`).
fn rounds_for(budget: Duration, per: Duration, max: u32) -> u32 {
    let per = per.as_nanos().max(1);
    (budget.as_nanos() / per).min(u128::from(max)) as u32
}

/// The benchmark's file, for a lock request (a lock-file mechanism would
/// need its directory; the benchmarks measure kernel locks only).
fn bench_file() -> crate::actor::protocol::Beneath {
    crate::actor::protocol::Beneath::new(std::path::Path::new(""), "bench")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::bench::MECHANISMS;

    #[test]
    fn rounds_fit_the_budget() {
        assert_eq!(
            rounds_for(Duration::from_millis(100), Duration::from_micros(10), 5),
            5
        );
        assert_eq!(
            rounds_for(Duration::from_millis(1), Duration::from_micros(10), 1000),
            100
        );
    }

    #[test]
    fn the_generated_scenario_plans_for_every_mechanism() {
        let l = scenario(4).expect("scenario");
        for m in MECHANISMS {
            assert!(
                matches!(l.plans.get(&m), Some(Applicability::Applies(_))),
                "{m}"
            );
        }
    }
}
