//! Sending requests and waiting for replies: watching a call that should block in /proc, early replies, lending the job slot while only waiting.

use super::*;

impl<'a> Driver<'a> {
    /// Place a completed call in time: it must have returned no earlier
    /// than the start of the step before the `await` (the step that should
    /// let it complete). Returns the observation and the hand-off latency
    /// from that step's release.
    pub(super) fn timed(&mut self, i: usize, obs: Observed) -> (Observed, Option<Duration>) {
        let Observed::Returned(outcome) = obs else {
            return (obs, None);
        };
        let t_done = self.pool.actors[i].last_reply_ns;
        let Some(prev) = self.time.step_times.last().copied() else {
            return (Observed::Returned(outcome), None);
        };
        if !self.pool.actors[i].shared_clock {
            // Another kernel's clock: its timestamps say nothing here.
            return (Observed::Returned(outcome), None);
        }
        if t_done < prev.start_ns {
            let during = match self
                .time
                .step_times
                .iter()
                .find(|s| s.start_ns <= t_done && t_done <= s.end_ns)
            {
                Some(s) => format!("during step {}", s.number),
                None => match self
                    .time
                    .step_times
                    .iter()
                    .rev()
                    .find(|s| s.end_ns < t_done)
                {
                    Some(s) => format!("after step {}", s.number),
                    None => "before any step".to_string(),
                },
            };
            return (
                Observed::Early {
                    outcome,
                    during,
                    before_step: prev.number,
                    ms_before: (prev.start_ns - t_done) as f64 / 1e6,
                },
                None,
            );
        }
        let handoff = Duration::from_nanos(t_done.saturating_sub(prev.release_ns));
        self.time.await_done_ns = self.time.await_done_ns.max(t_done);
        (Observed::Returned(outcome), Some(handoff))
    }

    /// Before a step: a pending call whose reply is already waiting returned
    /// before this step began. Its reply is kept for the `await`, which can
    /// then tell it returned too early even on another machine's clock.
    pub(super) fn collect_early_replies(&mut self, step: usize) -> Result<(), Infra> {
        let reply_ns = self.pool.replies.latest_ns;
        for i in 0..self.pool.actors.len() {
            let a = &self.pool.actors[i];
            let (Some(p), None, Some(chan)) = (&a.pending, &a.early, &a.chan) else {
                continue;
            };
            let seq = p.seq;
            // SAFETY: the descriptor is owned by the channel, alive for this call.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(chan.raw_read_fd()) };
            if !crate::actor::channel::wait_readable(fd, Duration::ZERO).unwrap_or(false) {
                continue;
            }
            if let Some(Ok(reply)) = self.pool.recv(i, Duration::ZERO)? {
                if reply.seq == seq {
                    self.pool.actors[i].early = Some((reply, step));
                }
            }
        }
        self.pool.replies.latest_ns = reply_ns;
        Ok(())
    }

    /// The outcome of actor `i`'s pending call if its reply came before
    /// step `step` (an `await`): too early when it came before the step
    /// right before this one (the step that should let it complete) began.
    pub(super) fn early_reply(&mut self, i: usize, step: usize) -> Option<Observed> {
        let (reply, seen_before) = self.pool.actors[i].early.take()?;
        let p = self.pool.actors[i].pending.take()?;
        let obs = Observed::Returned(reply.outcome.clone());
        self.after_call(i, &p.op, &obs);
        if seen_before < step {
            return Some(Observed::Early {
                outcome: reply.outcome,
                during: format!("before step {seen_before} began"),
                before_step: step.saturating_sub(1),
                ms_before: 0.0,
            });
        }
        Some(self.timed(i, obs).0)
    }

    pub(super) fn await_pending(
        &mut self,
        i: usize,
        deadline: Instant,
        expect: &Expectation,
    ) -> Result<(Observed, Option<Duration>), Infra> {
        let Some(p) = self.pool.actors[i].pending.take() else {
            return Err(Infra(format!(
                "actor {} has no pending call",
                self.pool.actors[i].name
            )));
        };
        if allows_blocked(expect) {
            // Either it completes, or it is seen waiting again in the kernel
            // (a woken waiter that lost the race sleeps again, with a new
            // /proc/locks line; a waiter not yet woken is never mistaken for
            // one: wakeups happen inside the releasing call, which has returned).
            let obs = self.pool.wait_call(i, p.seq, deadline, p.sig, p.ino)?;
            if matches!(obs, Observed::Blocked(_)) {
                self.pool.actors[i].pending = Some(p);
                return Ok((obs, None));
            }
            self.after_call(i, &p.op, &obs);
            return Ok(self.timed(i, obs));
        }
        let mut interval = Duration::from_micros(20);
        let began = Instant::now();
        let mut lent = None;
        loop {
            match self.pool.recv(i, interval)? {
                Some(Ok(reply)) => {
                    if reply.seq != p.seq {
                        return Err(Infra(format!(
                            "actor {} answered request {} while {} was outstanding",
                            self.pool.actors[i].name, reply.seq, p.seq
                        )));
                    }
                    let obs = Observed::Returned(reply.outcome);
                    self.after_call(i, &p.op, &obs);
                    return Ok(self.timed(i, obs));
                }
                Some(Err(died)) => return Ok((died, None)),
                None => self.pool.lend_if_idle(began, &mut lent),
            }
            let now = Instant::now();
            if now >= deadline {
                // Say what it is doing instead of completing.
                let mut d = p.sig.map(|s| self.pool.detector(i, s, p.ino));
                let still = match d.as_mut() {
                    // Two reads make a stable observation.
                    Some(d) => {
                        self.pool.probe(i, d)?;
                        self.pool.probe(i, d)?
                    }
                    None => None,
                };
                let waited = now.duration_since(self.time.last_step_end);
                let task = self.pool.actors[i]
                    .tid
                    .or(self.pool.actors[i].pid)
                    .unwrap_or(0);
                let obs = match still {
                    Some(ev) => Observed::Blocked(Evidence {
                        text: format!("still waiting {} ms later: {}", waited.as_millis(), ev.text),
                    }),
                    None => Observed::Hung {
                        waited,
                        process: describe_process(task),
                    },
                };
                self.pool.actors[i].pending = Some(p);
                return Ok((obs, None));
            }
            // Replies wake the wait at once: the interval only bounds how
            // late the deadline is noticed.
            interval = (interval * 2).min(IDLE_MAX).min(deadline - now);
        }
    }

    /// The call must keep waiting for `hold` (a contender with a lock timeout
    /// behind a hung holder); then it is confirmed still blocked.
    pub(super) fn hold_pending(
        &mut self,
        i: usize,
        hold: Duration,
        deadline: Instant,
    ) -> Result<Observed, Infra> {
        let Some(p) = self.pool.actors[i].pending.take() else {
            return Err(Infra(format!(
                "actor {} has no pending call",
                self.pool.actors[i].name
            )));
        };
        let began = Instant::now();
        let until = began + hold;
        // Only watching: another trial may use the CPU meanwhile. A reply
        // still wakes the wait at once; taking the slot back can only make
        // the window longer, and the time it took extends the deadline.
        let lent = self.env.slots.map(|s| s.lend());
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.pool.recv(i, left)? {
                Some(Ok(reply)) => {
                    let obs = Observed::Returned(reply.outcome);
                    drop(lent);
                    self.after_call(i, &p.op, &obs);
                    return Ok(obs);
                }
                Some(Err(died)) => return Ok(died),
                None => {}
            }
        }
        let deadline = deadline + lent.map(|l| l.back()).unwrap_or_default();
        let obs = self.pool.wait_call(i, p.seq, deadline, p.sig, p.ino)?;
        Ok(match obs {
            Observed::Blocked(ev) => {
                self.pool.actors[i].pending = Some(p);
                Observed::Blocked(Evidence {
                    text: format!(
                        "kept waiting for {} ms; {}",
                        began.elapsed().as_millis(),
                        ev.text
                    ),
                })
            }
            other => {
                self.after_call(i, &p.op, &other);
                other
            }
        })
    }
}
