//! Sending requests and waiting for replies: watching a call that should block in /proc, early replies, lending the job slot while only waiting.

use super::*;

impl<'a> Driver<'a> {
    /// For benchmarks: one receive attempt for the answer to request `seq`.
    pub(super) fn recv_answer(
        &mut self,
        i: usize,
        seq: u64,
        wait: Duration,
    ) -> Result<Option<Reply>, String> {
        match self.recv(i, wait).map_err(|Infra(e)| e)? {
            Some(Ok(r)) if r.seq == seq => Ok(Some(r)),
            Some(Ok(r)) => Err(format!(
                "actor {} answered request {} while {seq} was outstanding",
                self.actors[i].name, r.seq
            )),
            Some(Err(ended)) => Err(format!("actor {}: {ended:?}", self.actors[i].name)),
            None => Ok(None),
        }
    }

    pub(super) fn send(&mut self, i: usize, seq: u64, req: Request) -> Result<(), Infra> {
        let a = &mut self.actors[i];
        let chan = a
            .chan
            .as_mut()
            .ok_or_else(|| Infra(format!("actor {} has no channel", a.name)))?;
        match chan.send(&Envelope { seq, req }, self.send_deadline) {
            Ok(()) | Err(ChannelError::Closed) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) fn detector(&self, i: usize, sig: WaitSignature, ino: Option<u64>) -> BlockDetector {
        let a = &self.actors[i];
        let pid = a.pid.unwrap_or(0);
        BlockDetector::new(
            a.tid.unwrap_or(pid),
            pid,
            sig,
            ino,
            // The device name is this host's; another kernel numbers differently.
            if a.local_view {
                self.env.locks_dev.clone()
            } else {
                None
            },
            self.env.lock_lists,
        )
    }

    /// One observation of actor `i`'s task: from /proc here, or from a
    /// snapshot its host's agent takes.
    pub(super) fn probe(
        &mut self,
        i: usize,
        d: &mut BlockDetector,
    ) -> Result<Option<Evidence>, Infra> {
        if self.actors[i].local_view {
            return Ok(d.probe(&mut crate::actor::observe::LocalProc));
        }
        let a = &self.actors[i];
        let tid = a.tid.or(a.pid).unwrap_or(0);
        let host = a.host;
        match self.agent_call(host, Request::ReadProc { tid }, Duration::from_secs(5))? {
            Outcome::Proc { mut snapshot } => Ok(d.probe(&mut snapshot)),
            other => Err(Infra(format!(
                "the agent on host {} answered {other:?}",
                self.host_name(host)
            ))),
        }
    }

    /// Wait for the reply to `seq` until the deadline even if the call is
    /// seen waiting for a lock: still waiting at the deadline is reported
    /// as blocked, with the evidence and how long it waited.
    pub(super) fn wait_patiently(
        &mut self,
        i: usize,
        seq: u64,
        deadline: Instant,
        sig: Option<WaitSignature>,
        ino: Option<u64>,
    ) -> Result<Observed, Infra> {
        let began = Instant::now();
        let first = self.wait_call(i, seq, deadline, sig, ino)?;
        let Observed::Blocked(ev) = first else {
            return Ok(first);
        };
        match self.wait_call(i, seq, deadline, None, None)? {
            Observed::Hung { waited, .. } => Ok(Observed::Blocked(Evidence {
                text: format!(
                    "{}; still waiting after {} ms",
                    ev.text,
                    (began.elapsed().max(waited)).as_millis()
                ),
            })),
            other => Ok(other),
        }
    }

    /// Wait for the reply to `seq`, watching for the call to block.
    pub(super) fn wait_call(
        &mut self,
        i: usize,
        seq: u64,
        deadline: Instant,
        sig: Option<WaitSignature>,
        ino: Option<u64>,
    ) -> Result<Observed, Infra> {
        let mut detector = sig.map(|s| self.detector(i, s, ino));
        let began = Instant::now();
        let mut interval = Duration::from_micros(20);
        let mut lent = None;
        loop {
            match self.recv(i, interval)? {
                Some(Ok(reply)) => {
                    if reply.seq != seq {
                        return Err(Infra(format!(
                            "actor {} answered request {} while {seq} was outstanding",
                            self.actors[i].name, reply.seq
                        )));
                    }
                    return Ok(Observed::Returned(reply.outcome));
                }
                Some(Err(died)) => return Ok(died),
                None => self.lend_if_idle(began, &mut lent),
            }
            if let Some(d) = detector.as_mut() {
                if let Some(ev) = self.probe(i, d)? {
                    return Ok(Observed::Blocked(ev));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                let task = self.actors[i].tid.or(self.actors[i].pid).unwrap_or(0);
                return Ok(Observed::Hung {
                    waited: now.duration_since(began),
                    process: describe_process(task),
                });
            }
            // Replies wake the wait at once; only the kernel probes are
            // paced: quickly at first, then at most every PROBE_MAX.
            interval = (interval * 2)
                .min(if detector.is_some() {
                    PROBE_MAX
                } else {
                    IDLE_MAX
                })
                .min(deadline - now);
        }
    }

    /// While a wait for a reply goes on past `LEND_AFTER`, the trial's job
    /// slot goes to another trial (`lent` takes it back when dropped: when
    /// the wait ends).
    pub(super) fn lend_if_idle(
        &self,
        began: Instant,
        lent: &mut Option<crate::engine::slots::Lent<'a>>,
    ) {
        if lent.is_none() && began.elapsed() >= LEND_AFTER {
            *lent = self.env.slots.map(|s| s.lend());
        }
    }

    /// One receive attempt: `Some(Ok(reply))`, `Some(Err(observation))` if
    /// the actor died, `None` if nothing came.
    pub(super) fn recv(
        &mut self,
        i: usize,
        wait: Duration,
    ) -> Result<Option<Result<Reply, Observed>>, Infra> {
        let a = &mut self.actors[i];
        let Some(chan) = a.chan.as_mut() else {
            return Err(Infra(format!("actor {} has no channel", a.name)));
        };
        match chan.recv_within::<FromActor>(wait) {
            Ok(Some(FromActor::Reply(r))) => {
                if let Outcome::Refused { message } = &r.outcome {
                    return Err(Infra(format!("refused: {message}")));
                }
                // Another kernel's clock says nothing here: the time it
                // arrived is the best bound then.
                let t = if r.t_ns > 0 && a.shared_clock {
                    r.t_ns
                } else {
                    crate::actor::protocol::monotonic_ns()
                };
                a.last_reply_ns = t;
                if a.shared_clock && r.start_ns > 0 && r.t_ns >= r.start_ns {
                    self.time.call_spans.push((r.start_ns, r.t_ns));
                }
                self.time.step_reply_ns = self.time.step_reply_ns.max(t);
                Ok(Some(Ok(r)))
            }
            Ok(Some(FromActor::Hello { .. })) => Err(Infra(format!(
                "actor {} greeted again in the middle of a call",
                a.name
            ))),
            Ok(None) => Ok(None),
            Err(ChannelError::Closed) => {
                let detail = self.death_detail(i);
                Ok(Some(Err(Observed::Died { detail })))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// How an ended actor ended (`exit status: 0`), if known; for an actor
    /// the zygote forked, asking also has it reaped (its pid is then free).
    pub(super) fn exit_status(&mut self, i: usize) -> Option<String> {
        let zygote = self.env.zygote;
        let a = &mut self.actors[i];
        if a.exit.is_none() {
            a.exit = match (a.child.as_mut(), zygote, a.pid) {
                (Some(c), _, _) => c.try_wait().ok().flatten().map(|s| s.to_string()),
                (None, Some(z), Some(pid)) if a.zygote_child => z.status(pid),
                _ => None,
            };
        }
        a.exit.clone()
    }

    /// How an actor ended, with what it printed, after its channel closed.
    pub(super) fn death_detail(&mut self, i: usize) -> String {
        let a = &mut self.actors[i];
        a.alive = false;
        a.pending = None;
        if let Some(fd) = &a.pidfd {
            let _ = fd.wait_exit(Duration::from_millis(500));
        }
        let status = self.exit_status(i).unwrap_or_else(|| "ended".into());
        let a = &mut self.actors[i];
        let err = a.stderr_text();
        if err.is_empty() {
            status
        } else {
            format!("{status}; stderr: {err}")
        }
    }

    /// Place a completed call in time: it must have returned no earlier
    /// than the start of the step before the `await` (the step that should
    /// let it complete). Returns the observation and the hand-off latency
    /// from that step's release.
    pub(super) fn timed(&mut self, i: usize, obs: Observed) -> (Observed, Option<Duration>) {
        let Observed::Returned(outcome) = obs else {
            return (obs, None);
        };
        let t_done = self.actors[i].last_reply_ns;
        let Some(prev) = self.time.step_times.last().copied() else {
            return (Observed::Returned(outcome), None);
        };
        if !self.actors[i].shared_clock {
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
        let reply_ns = self.time.step_reply_ns;
        for i in 0..self.actors.len() {
            let a = &self.actors[i];
            let (Some(p), None, Some(chan)) = (&a.pending, &a.early, &a.chan) else {
                continue;
            };
            let seq = p.seq;
            // SAFETY: the descriptor is owned by the channel, alive for this call.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(chan.raw_read_fd()) };
            if !crate::actor::channel::wait_readable(fd, Duration::ZERO).unwrap_or(false) {
                continue;
            }
            if let Some(Ok(reply)) = self.recv(i, Duration::ZERO)? {
                if reply.seq == seq {
                    self.actors[i].early = Some((reply, step));
                }
            }
        }
        self.time.step_reply_ns = reply_ns;
        Ok(())
    }

    /// The outcome of actor `i`'s pending call if its reply came before
    /// step `step` (an `await`): too early when it came before the step
    /// right before this one (the step that should let it complete) began.
    pub(super) fn early_reply(&mut self, i: usize, step: usize) -> Option<Observed> {
        let (reply, seen_before) = self.actors[i].early.take()?;
        let p = self.actors[i].pending.take()?;
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
        let Some(p) = self.actors[i].pending.take() else {
            return Err(Infra(format!(
                "actor {} has no pending call",
                self.actors[i].name
            )));
        };
        if allows_blocked(expect) {
            // Either it completes, or it is seen waiting again in the kernel
            // (a woken waiter that lost the race sleeps again, with a new
            // /proc/locks line; a waiter not yet woken is never mistaken for
            // one: wakeups happen inside the releasing call, which has returned).
            let obs = self.wait_call(i, p.seq, deadline, p.sig, p.ino)?;
            if matches!(obs, Observed::Blocked(_)) {
                self.actors[i].pending = Some(p);
                return Ok((obs, None));
            }
            self.after_call(i, &p.op, &obs);
            return Ok(self.timed(i, obs));
        }
        let mut interval = Duration::from_micros(20);
        let began = Instant::now();
        let mut lent = None;
        loop {
            match self.recv(i, interval)? {
                Some(Ok(reply)) => {
                    if reply.seq != p.seq {
                        return Err(Infra(format!(
                            "actor {} answered request {} while {} was outstanding",
                            self.actors[i].name, reply.seq, p.seq
                        )));
                    }
                    let obs = Observed::Returned(reply.outcome);
                    self.after_call(i, &p.op, &obs);
                    return Ok(self.timed(i, obs));
                }
                Some(Err(died)) => return Ok((died, None)),
                None => self.lend_if_idle(began, &mut lent),
            }
            let now = Instant::now();
            if now >= deadline {
                // Say what it is doing instead of completing.
                let mut d = p.sig.map(|s| self.detector(i, s, p.ino));
                let still = match d.as_mut() {
                    // Two reads make a stable observation.
                    Some(d) => {
                        self.probe(i, d)?;
                        self.probe(i, d)?
                    }
                    None => None,
                };
                let waited = now.duration_since(self.time.last_step_end);
                let task = self.actors[i].tid.or(self.actors[i].pid).unwrap_or(0);
                let obs = match still {
                    Some(ev) => Observed::Blocked(Evidence {
                        text: format!("still waiting {} ms later: {}", waited.as_millis(), ev.text),
                    }),
                    None => Observed::Hung {
                        waited,
                        process: describe_process(task),
                    },
                };
                self.actors[i].pending = Some(p);
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
        let Some(p) = self.actors[i].pending.take() else {
            return Err(Infra(format!(
                "actor {} has no pending call",
                self.actors[i].name
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
            match self.recv(i, left)? {
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
        let obs = self.wait_call(i, p.seq, deadline, p.sig, p.ino)?;
        Ok(match obs {
            Observed::Blocked(ev) => {
                self.actors[i].pending = Some(p);
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
