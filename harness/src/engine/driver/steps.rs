//! Performing a planned step: lowering it, one method per kind of operation, timing it and judging what each actor saw.

use super::*;

impl Driver<'_> {
    /// The request actor `i` makes for an operation (see [`lower`]).
    pub(super) fn request_for(
        &self,
        i: usize,
        op: &Op,
    ) -> Result<(Request, Option<WaitSignature>, Option<u64>), Infra> {
        let l = lower(op, &DriverView { d: self, i }).map_err(|e| Infra(e.0))?;
        Ok((l.request, l.waits_as, l.ino))
    }

    pub(super) fn run_step(
        &mut self,
        step: &PlannedStep,
    ) -> Result<(StepRecord, Option<Stop>, Vec<Observed>), Infra> {
        self.collect_early_replies(step.number)?;
        let start = Instant::now();
        let start_ns = crate::actor::protocol::monotonic_ns();
        let step_timeout = step.timeout_for(self.env.lease);
        self.pool.send_deadline = start + step_timeout;
        self.time.begin_step();
        self.pool.replies.latest_ns = 0;
        let deadline = start + step_timeout;
        let mut calls = Vec::new();
        let mut latency: Option<Duration> = None;
        let observed = self.perform_op(step, deadline, &mut calls, &mut latency)?;
        let end = Instant::now();
        self.time.last_step_end = end;
        let (step_time, after_fault) = self.time.end_step(
            step,
            (start_ns, self.pool.replies.latest_ns),
            latency,
            &observed,
            step_timeout,
            &self.plan.actors,
        );
        let (mut record, stop) = self.judge_step(step, start, end, calls, latency, &observed);
        self.time.step_times.push(step_time);
        record.after_fault_ms = after_fault.map(|(ms, _)| ms);
        record.fault_step = after_fault.map(|(_, n)| n);
        Ok((record, stop, observed))
    }

    /// Performs `act` with each actor of the step in turn: what each saw,
    /// and the call each made into `calls`.
    pub(super) fn each_actor(
        &mut self,
        step: &PlannedStep,
        calls: &mut Vec<String>,
        mut act: impl FnMut(&mut Self, usize) -> Result<(String, Observed), Infra>,
    ) -> Result<Vec<Observed>, Infra> {
        let mut out = Vec::new();
        for &i in &step.actors {
            let (call, obs) = act(self, i)?;
            calls.push(call);
            out.push(obs);
        }
        Ok(out)
    }

    /// Performs a step's operation with each of its actors: what each saw.
    pub(super) fn perform_op(
        &mut self,
        step: &PlannedStep,
        deadline: Instant,
        calls: &mut Vec<String>,
        latency: &mut Option<Duration>,
    ) -> Result<Vec<Observed>, Infra> {
        match &step.op {
            Op::Await { hold } => self.await_step(step, hold, deadline, calls, latency),
            Op::Stop | Op::Continue => {
                let stop = matches!(step.op, Op::Stop);
                let sig = if stop {
                    Signal::SIGSTOP
                } else {
                    Signal::SIGCONT
                };
                self.each_actor(step, calls, |d, i| {
                    Ok((d.signal_call(i, sig), d.stop_or_continue(i, stop, deadline)))
                })
            }
            Op::CloseAll => self.close_all_step(step, deadline, calls),
            Op::Spawn { child, pid_of } => self.spawn_step(step, *child, *pid_of, deadline, calls),
            Op::Lab { fault, host, net } => {
                self.lab_step(*fault, host.as_deref(), net.as_ref(), deadline, calls)
            }
            Op::Signal { signal, fatal } => self.each_actor(step, calls, |d, i| {
                Ok((
                    d.signal_call(i, *signal),
                    d.signal(i, *signal, *fatal, deadline),
                ))
            }),
            Op::Exit { .. } => self.each_actor(step, calls, |d, i| {
                let (req, _, _) = d.request_for(i, &step.op)?;
                let call = mech::describe_request(&req);
                let seq = d.pool.next_seq();
                d.pool.send(i, seq, req)?;
                Ok((call, d.wait_end(i, deadline, "exited")))
            }),
            Op::Exec => self.each_actor(step, calls, |d, i| {
                Ok((mech::describe_request(&Request::Exec), d.exec(i, deadline)?))
            }),
            Op::Fork { child } | Op::Thread { child } => {
                self.fork_step(step, *child, deadline, calls)
            }
            Op::Listed {
                fd,
                mech,
                mode,
                start: s,
                len,
            } => self.each_actor(step, calls, |d, i| {
                let obs = d.listed(i, fd, *mech, *mode, *s, *len)?;
                Ok(("read /proc/locks".into(), obs))
            }),
            op => self.requests_step(step, op, deadline, calls),
        }
    }

    pub(super) fn await_step(
        &mut self,
        step: &PlannedStep,
        hold: &Option<Duration>,
        deadline: Instant,
        calls: &mut Vec<String>,
        latency: &mut Option<Duration>,
    ) -> Result<Vec<Observed>, Infra> {
        let mut out = Vec::new();
        for &i in &step.actors {
            calls.push(
                self.pool.actors[i]
                    .pending
                    .as_ref()
                    .map(|p| p.call.clone())
                    .unwrap_or_default(),
            );
            let (obs, after) = match (self.early_reply(i, step.number), hold) {
                (Some(early), _) => (early, None),
                (None, Some(d)) => (self.hold_pending(i, *d, deadline)?, None),
                (None, None) => self.await_pending(i, deadline, &step.expect)?,
            };
            *latency = (*latency).max(after);
            out.push(obs);
        }
        Ok(out)
    }

    pub(super) fn close_all_step(
        &mut self,
        step: &PlannedStep,
        deadline: Instant,
        calls: &mut Vec<String>,
    ) -> Result<Vec<Observed>, Infra> {
        let mut out = Vec::new();
        for &i in &step.actors {
            let mut names: Vec<String> = self.pool.actors[self.pool.owner(i)]
                .fds
                .keys()
                .cloned()
                .collect();
            names.sort();
            let mut worst = Observed::Returned(Outcome::Done { ret: 0 });
            for name in names {
                let n = self.pool.fd(i, &name)?.n;
                let req = Request::Close { fd: n };
                calls.push(mech::describe_request(&req));
                let seq = self.pool.next_seq();
                self.pool.send(i, seq, req)?;
                let obs = self.pool.wait_call(i, seq, deadline, None, None)?;
                self.after_call(i, &Op::Close { fd: name }, &obs);
                if !matches!(obs, Observed::Returned(Outcome::Done { .. })) {
                    worst = obs;
                }
            }
            out.push(worst);
        }
        Ok(out)
    }

    pub(super) fn spawn_step(
        &mut self,
        step: &PlannedStep,
        child: usize,
        pid_of: Option<usize>,
        deadline: Instant,
        calls: &mut Vec<String>,
    ) -> Result<Vec<Observed>, Infra> {
        let parent = step.actors[0];
        let set_tid = match pid_of {
            Some(dead) => Some(self.pool.actors[dead].pid.ok_or_else(|| {
                Infra(format!(
                    "actor {} never had a pid",
                    self.pool.actors[dead].name
                ))
            })?),
            None => None,
        };
        calls.push(mech::describe_request(&Request::Spawn {
            socket: String::new(),
            set_tid,
        }));
        Ok(vec![self.pool.new_actor(
            parent,
            child,
            NewActor::Spawn(set_tid),
            deadline,
        )?])
    }

    pub(super) fn lab_step(
        &mut self,
        fault: LabFault,
        host: Option<&str>,
        net: Option<&crate::plan::resolve::NetFault>,
        deadline: Instant,
        calls: &mut Vec<String>,
    ) -> Result<Vec<Observed>, Infra> {
        let (call, obs) = self.lab_fault(fault, host, net, deadline)?;
        calls.push(call);
        Ok(vec![obs])
    }

    pub(super) fn fork_step(
        &mut self,
        step: &PlannedStep,
        child: usize,
        deadline: Instant,
        calls: &mut Vec<String>,
    ) -> Result<Vec<Observed>, Infra> {
        let parent = step.actors[0];
        let thread = matches!(step.op, Op::Thread { .. });
        calls.push(if thread { "pthread_create()" } else { "fork()" }.into());
        let kind = if thread {
            NewActor::Thread
        } else {
            NewActor::Fork
        };
        Ok(vec![self.pool.new_actor(parent, child, kind, deadline)?])
    }

    pub(super) fn requests_step(
        &mut self,
        step: &PlannedStep,
        op: &Op,
        deadline: Instant,
        calls: &mut Vec<String>,
    ) -> Result<Vec<Observed>, Infra> {
        // Send to every actor first, so that a group step is a race.
        let mut sent = Vec::new();
        for &i in &step.actors {
            let (req, sig, ino) = self.request_for(i, op)?;
            let call = mech::describe_request(&req);
            calls.push(call.clone());
            let seq = self.pool.next_seq();
            self.pool.send(i, seq, req)?;
            sent.push((i, seq, sig, ino, call));
        }
        let mut out = Vec::new();
        for (i, seq, sig, ino, call) in sent {
            let obs = if step.patient {
                self.pool.wait_patiently(i, seq, deadline, sig, ino)?
            } else {
                self.pool.wait_call(i, seq, deadline, sig, ino)?
            };
            if matches!(obs, Observed::Blocked(_)) {
                self.pool.actors[i].pending = Some(Pending {
                    seq,
                    sig,
                    ino,
                    call,
                    op: op.clone(),
                });
            }
            self.after_call(i, op, &obs);
            out.push(obs);
        }
        Ok(out)
    }

    /// Judge a step's observations and make its record.
    pub(super) fn judge_step(
        &self,
        step: &PlannedStep,
        start: Instant,
        end: Instant,
        calls: Vec<String>,
        latency: Option<Duration>,
        observed: &[Observed],
    ) -> (StepRecord, Option<Stop>) {
        let names: Vec<String> = self.pool.actors.iter().map(|a| a.name.clone()).collect();
        let pids: Vec<Option<i32>> = self.pool.actors.iter().map(|a| a.pid).collect();
        let who = Actors {
            names: &names,
            pids: &pids,
        };
        let verdict = judge::judge(&step.expect, observed, &who);
        let step_actors: Vec<String> = step.actors.iter().map(|&i| names[i].clone()).collect();
        let observed_text: Vec<String> = observed
            .iter()
            .map(|o| judge::describe_observed_for(&step.expect, o))
            .collect();
        let observed_joined = if step_actors.len() == 1 {
            observed_text.join("")
        } else {
            step_actors
                .iter()
                .zip(&observed_text)
                .map(|(a, o)| format!("{a}: {o}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let expected = judge::describe_expectation(&step.expect, &who);
        let op_text = step.op.describe(&self.plan.actors);
        // A call the target does not support skips the trial instead of failing it.
        let unsupported = observed.iter().zip(&calls).find_map(|(o, call)| match o {
            Observed::Returned(Outcome::Failed { errno })
                if step.unsupported.contains(errno) && verdict.is_err() =>
            {
                Some(format!(
                    "not supported here: {call} returned {} (step {}, line {})",
                    crate::spec::errno::name(*errno),
                    step.number,
                    step.pos.line
                ))
            }
            _ => None,
        });
        // Out of space, descriptors or memory: not a locking result — if
        // the step would pass whatever those calls had returned (otherwise
        // the others' results are a failure in their own right).
        let ran_out = |o: &Observed| match o {
            Observed::Returned(Outcome::Failed { errno }) => {
                EXHAUSTED.iter().find(|(e, _)| e == errno)
            }
            _ => None,
        };
        let exhausted = observed
            .iter()
            .zip(&calls)
            .find_map(|(o, call)| {
                ran_out(o).map(|(errno, what)| {
                    format!(
                        "step {} (line {}): {call} returned {}: {what} — not a locking result",
                        step.number,
                        step.pos.line,
                        crate::spec::errno::name(*errno),
                    )
                })
            })
            .filter(|_| {
                verdict.is_err()
                    && judge::passes_without(&step.expect, observed, &who, |o| ran_out(o).is_some())
            });
        // An open refused by permissions where the step expected it to
        // succeed: the user an actor runs as (on another host, the one its
        // launcher logs in as) cannot reach the files lockcheck made. The
        // trial cannot run there; that says nothing about locking.
        let denied_errno = |o: &Observed| match o {
            Observed::Returned(Outcome::Failed { errno })
                if *errno == libc::EACCES || *errno == libc::EPERM =>
            {
                Some(*errno)
            }
            _ => None,
        };
        let denied = (matches!(step.op, Op::Open { .. })
            && verdict.is_err()
            && judge::passes_without(&step.expect, observed, &who, |o| {
                denied_errno(o).is_some()
            }))
        .then(|| {
            observed
                .iter()
                .zip(&calls)
                .zip(&step.actors)
                .find_map(|((o, call), &a)| {
                    let errno = denied_errno(o)?;
                    let host = self.pool.actors[a].host;
                    let remote = self
                        .env
                        .hosts
                        .get(host)
                        .is_some_and(|h| h.launcher.is_some());
                    Some(format!(
                        "step {} (line {}): {call} by actor {} on host {} returned {}: the user it runs as {} cannot open the files lockcheck makes — not a locking result{}",
                        step.number,
                        step.pos.line,
                        names[a],
                        self.pool.host_name(host),
                        crate::spec::errno::name(errno),
                        if remote { "there" } else { "here" },
                        if remote {
                            " (actors on other hosts must run as the same user as lockcheck, or as root)"
                        } else {
                            ""
                        },
                    ))
                })
        })
        .flatten();
        let record = StepRecord {
            step: step.number,
            line: step.pos.line,
            col: step.pos.col,
            actors: step_actors.clone(),
            op: op_text.clone(),
            calls,
            expected: expected.clone(),
            observed: observed_joined.clone(),
            passed: verdict.is_ok(),
            start_ms: crate::record::report::ms(start.duration_since(self.time.t0)),
            elapsed_ms: crate::record::report::ms(end.duration_since(start)),
            completed_after_ms: latency.map(crate::record::report::ms),
            after_fault_ms: None,
            fault_step: None,
        };
        let stop = match (unsupported, verdict) {
            (Some(why), _) => Some(Stop::Skip(why)),
            (None, Err(_)) if exhausted.is_some() => exhausted.map(Stop::Error),
            (None, Err(_)) if denied.is_some() => denied.map(Stop::Error),
            (None, Ok(())) => None,
            (None, Err(why)) => Some(Stop::Fail(Failure {
                step: step.number,
                line: step.pos.line,
                col: step.pos.col,
                actors: step_actors,
                op: op_text,
                expected,
                observed: if step.actors.len() > 1 {
                    format!("{why}: {observed_joined}")
                } else {
                    observed_joined
                },
                note: step.note.clone(),
                timed_out: only_timed_out(step, observed, &who),
                owner_only: judge::only_owner_differs(&step.expect, observed, &who),
                refused_only: judge::only_refused(&step.expect, observed, &who),
            })),
        };
        (record, stop)
    }

    /// Bookkeeping after a call returned: descriptor tables.
    pub(super) fn after_call(&mut self, i: usize, op: &Op, obs: &Observed) {
        let Observed::Returned(outcome) = obs else {
            return;
        };
        match (op, outcome) {
            (
                Op::Open {
                    fd,
                    path,
                    cloexec,
                    via,
                    ..
                },
                Outcome::Opened { fd: n, ino, .. },
            ) => {
                let full = self
                    .pool
                    .open_path(i, path, *via)
                    .unwrap_or_else(|| self.pool.path(i, path));
                let o = self.pool.owner(i);
                self.pool.actors[o].fds.insert(
                    fd.clone(),
                    FdRt {
                        n: *n,
                        ino: *ino,
                        path: full,
                        cloexec: *cloexec,
                    },
                );
            }
            (Op::Dup { fd, new }, Outcome::Opened { fd: n, ino, .. }) => {
                let path = self.pool.actors[self.pool.owner(i)]
                    .fds
                    .get(fd)
                    .map(|f| f.path.clone())
                    .unwrap_or_default();
                let o = self.pool.owner(i);
                self.pool.actors[o].fds.insert(
                    new.clone(),
                    FdRt {
                        n: *n,
                        ino: *ino,
                        path,
                        cloexec: false,
                    },
                );
            }
            (Op::Close { fd }, _) => {
                let o = self.pool.owner(i);
                self.pool.actors[o].fds.remove(fd);
            }
            _ => {}
        }
    }
}
