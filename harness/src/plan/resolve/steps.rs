//! Lowering each kind of scenario step to a planned operation, checked against the process model; lab faults.

use super::*;

impl Resolver<'_> {
    /// The step's operation, checked against the state of its actors: the
    /// lowering of a scenario step, one method per kind of step.
    pub(super) fn lower(
        &mut self,
        step: &Located<Step>,
        c: &Common<'_>,
        actors: &[usize],
        pos: Pos,
    ) -> Result<Op, ScenarioError> {
        match &step.value {
            Step::Open(o) => self.lower_open(o, actors, pos),
            Step::Close(s) => Ok(Op::Close {
                fd: self.fd_for_all(actors, s.fd.as_ref(), pos)?,
            }),
            Step::Dup(s) => self.lower_dup(s, actors, pos),
            Step::Lock(s) => self.lower_lock(s, actors, pos),
            Step::Unlock(s) => self.lower_unlock(s, actors, pos),
            Step::Test(s) => self.lower_test(s, actors, pos),
            Step::Listed(s) => self.lower_listed(s, actors, pos),
            Step::Counter(s) => self.lower_counter(s, actors, pos),
            Step::Records(s) => self.lower_records(s, actors, pos),
            Step::Hold(s) => self.lower_hold(s, actors, pos),
            Step::ByteLocks(s) => self.lower_byte_locks(s, actors, pos),
            Step::Invalid(s) => self.lower_invalid(s, actors, pos),
            Step::Caught(s) => self.lower_caught(s, actors),
            Step::Write(s) => self.lower_write(s, actors, pos),
            Step::Read(s) => self.lower_read(s, actors, pos),
            Step::Fork(s) => Ok(Op::Fork {
                child: self.new_child(actors, &s.as_name, "fork", pos)?,
            }),
            Step::Thread(s) => Ok(Op::Thread {
                child: self.new_child(actors, &s.as_name, "thread", pos)?,
            }),
            Step::Exit(s) => Ok(Op::Exit { code: s.code }),
            Step::Exec(_) => Ok(Op::Exec),
            Step::Await(s) => self.lower_await(s, c, actors, pos),
            Step::Kill(s) => self.lower_kill(s, actors, pos),
            Step::Signal(s) => self.lower_signal(s, actors),
            Step::Handle(s) => self.lower_handle(s),
            Step::Unlink(s) => Ok(Op::Unlink {
                path: self.check_path(&s.path)?,
            }),
            Step::Rename(s) => Ok(Op::Rename {
                from: self.check_path(&s.from)?,
                to: self.check_path(&s.to)?,
            }),
            Step::Mkdir(s) => Ok(Op::Mkdir {
                path: self.check_path(&s.path)?,
            }),
            Step::Mkfifo(s) => Ok(Op::Mkfifo {
                path: self.check_path(&s.path)?,
            }),
            Step::Truncate(s) => Ok(Op::Truncate {
                path: self.check_path(&s.path)?,
                len: s.len,
            }),
            Step::Symlink(s) => Ok(Op::Symlink {
                target: s.target.value.clone(),
                path: self.check_path(&s.path)?,
            }),
            Step::Stop(_) => Ok(Op::Stop),
            Step::Continue(_) => Ok(Op::Continue),
            Step::CloseAll(_) => Ok(Op::CloseAll),
            Step::PidAlive(s) => Ok(Op::PidAlive {
                path: self.check_path(&s.path)?,
            }),
            Step::Spawn(s) => self.lower_spawn(s, actors, pos),
            Step::Disconnect(_)
            | Step::Reconnect(_)
            | Step::Crash(_)
            | Step::RestartServer(_)
            | Step::Net(_) => Err(self.err(pos, "internal: lab faults are planned separately")),
        }
    }

    /// An `open` step: the descriptor's name must be new to each actor.
    pub(super) fn lower_open(
        &mut self,
        o: &OpenStep,
        actors: &[usize],
        pos: Pos,
    ) -> Result<Op, ScenarioError> {
        let path = self.check_path(&o.path)?;
        let fd = o
            .as_name
            .as_ref()
            .map(|n| n.value.clone())
            .unwrap_or_else(|| path.clone());
        let name_pos = o.as_name.as_ref().map(|n| n.pos).unwrap_or(o.path.pos);
        check_fd_name(&fd).map_err(|m| self.err(name_pos, m))?;
        for &i in actors {
            if self.state[self.owner(i)].fds.contains_key(&fd) {
                return Err(self
                    .err(
                        name_pos,
                        format!(
                            "actor `{}` already has a descriptor named `{fd}`",
                            self.actors[i].name
                        ),
                    )
                    .with_hint("give this one another name with `as:`"));
            }
        }
        if o.excl && !o.create {
            return Err(self.err(
                pos,
                "`excl` needs `create` (O_EXCL only means something with O_CREAT)",
            ));
        }
        match o.via.as_ref().map(|v| v.value) {
            Some(Via::SecondMount) => self.second_mount = true,
            Some(Via::BackingStore) => {
                self.needs.insert(Need::BackingStore);
            }
            None => {}
        }
        Ok(Op::Open {
            path,
            access: o.mode,
            create: o.create,
            excl: o.excl,
            trunc: o.trunc,
            directory: o.directory,
            cloexec: o.cloexec,
            via: o.via.as_ref().map(|v| v.value),
            fd,
        })
    }

    /// A `dup` step: the new name must be new to each actor.
    pub(super) fn lower_dup(
        &self,
        s: &DupStep,
        actors: &[usize],
        pos: Pos,
    ) -> Result<Op, ScenarioError> {
        let fd = self.fd_for_all(actors, s.fd.as_ref(), pos)?;
        check_fd_name(&s.as_name).map_err(|m| self.err(s.as_name.pos, m))?;
        for &i in actors {
            if self.state[self.owner(i)].fds.contains_key(&s.as_name.value) {
                return Err(self.err(
                    s.as_name.pos,
                    format!(
                        "actor `{}` already has a descriptor named `{}`",
                        self.actors[i].name, s.as_name.value
                    ),
                ));
            }
        }
        Ok(Op::Dup {
            fd,
            new: s.as_name.value.clone(),
        })
    }

    /// A `lock` step, for the scenario's mechanism or its own.
    pub(super) fn lower_lock(
        &mut self,
        s: &LockStep,
        actors: &[usize],
        pos: Pos,
    ) -> Result<Op, ScenarioError> {
        let mech = self.mech_of(s.mechanism.as_ref());
        let (start, len, whence) = self.range(
            mech,
            s.start.as_ref(),
            s.len.as_ref(),
            s.whence.as_ref(),
            s.mechanism.as_ref(),
        )?;
        self.check_capability(
            mech,
            s.mechanism.as_ref(),
            pos,
            "waiting locks",
            !s.wait || mech.can_wait(),
        )?;
        self.check_capability(
            mech,
            s.mechanism.as_ref(),
            s.mode.pos,
            "shared locks",
            s.mode.value == LockMode::Exclusive || mech.has_shared(),
        )?;
        Ok(Op::Lock {
            fd: self.fd_for_all(actors, s.fd.as_ref(), pos)?,
            mech,
            kind: s.mode.value.into(),
            wait: s.wait,
            start,
            len,
            whence,
        })
    }

    /// An `unlock` step.
    pub(super) fn lower_unlock(
        &mut self,
        s: &UnlockStep,
        actors: &[usize],
        pos: Pos,
    ) -> Result<Op, ScenarioError> {
        let mech = self.mech_of(s.mechanism.as_ref());
        let (start, len, whence) = self.range(
            mech,
            s.start.as_ref(),
            s.len.as_ref(),
            s.whence.as_ref(),
            s.mechanism.as_ref(),
        )?;
        Ok(Op::Lock {
            fd: self.fd_for_all(actors, s.fd.as_ref(), pos)?,
            mech,
            kind: LockKind::Unlock,
            wait: false,
            start,
            len,
            whence,
        })
    }

    /// A `test` step (F_GETLK, F_OFD_GETLK, F_GETLEASE).
    pub(super) fn lower_test(
        &mut self,
        s: &TestStep,
        actors: &[usize],
        pos: Pos,
    ) -> Result<Op, ScenarioError> {
        let (fd, mech, mode, start, len, whence) = self.probe(
            Probe {
                fd: s.fd.as_ref(),
                mechanism: s.mechanism.as_ref(),
                mode: s.mode.as_ref(),
                start: s.start.as_ref(),
                len: s.len.as_ref(),
                whence: s.whence.as_ref(),
            },
            actors,
            pos,
            ("way to test for a lock (no F_GETLK)", Mechanism::has_test),
        )?;
        let pidns = s.pid_namespace.as_ref().is_some_and(|p| p.value);
        if let Some(p) = s.pid_namespace.as_ref().filter(|p| p.value) {
            self.check_capability(
                mech,
                s.mechanism.as_ref(),
                p.pos,
                "F_GETLK to make from a new PID namespace",
                mech.has_ranges(),
            )?;
        }
        Ok(Op::Test {
            fd,
            mech,
            mode,
            start,
            len,
            whence,
            pidns,
        })
    }

    /// A `listed` step: the lock as /proc/locks shows it.
    pub(super) fn lower_listed(
        &mut self,
        s: &ListedStep,
        actors: &[usize],
        pos: Pos,
    ) -> Result<Op, ScenarioError> {
        let (fd, mech, mode, start, len, _) = self.probe(
            Probe {
                fd: s.fd.as_ref(),
                mechanism: s.mechanism.as_ref(),
                mode: s.mode.as_ref(),
                start: s.start.as_ref(),
                len: s.len.as_ref(),
                whence: None,
            },
            actors,
            pos,
            ("entry in /proc/locks", |m| m != Mechanism::Pidfile),
        )?;
        Ok(Op::Listed {
            fd,
            mech,
            mode,
            start,
            len,
        })
    }

    /// What a step that looks for a lock names: its mechanism (which must
    /// have the capability `needs` names), byte range, descriptor and the
    /// mode looked for (exclusive by default), checked in that order.
    pub(super) fn probe(
        &mut self,
        p: Probe<'_>,
        actors: &[usize],
        pos: Pos,
        needs: (&str, fn(Mechanism) -> bool),
    ) -> Result<(String, Mechanism, LockMode, i64, i64, Whence), ScenarioError> {
        let mech = self.mech_of(p.mechanism);
        self.check_capability(mech, p.mechanism, pos, needs.0, needs.1(mech))?;
        let (start, len, whence) = self.range(mech, p.start, p.len, p.whence, p.mechanism)?;
        let fd = self.fd_for_all(actors, p.fd, pos)?;
        let mode = p.mode.map(|m| m.value).unwrap_or(LockMode::Exclusive);
        Ok((fd, mech, mode, start, len, whence))
    }

    /// A `counter` step: increments under the lock.
    pub(super) fn lower_counter(
        &mut self,
        s: &CounterStep,
        actors: &[usize],
        pos: Pos,
    ) -> Result<Op, ScenarioError> {
        let mech = self.mech;
        self.require(pos, "waiting locks", mech.can_wait())?;
        let times = self.check_count("times", &s.times, MAX_COUNTER)?;
        Ok(Op::Counter {
            fd: self.fd_for_all(actors, s.fd.as_ref(), pos)?,
            mech,
            times,
            offset: s.offset.as_ref().map(|o| o.value).unwrap_or(0),
        })
    }

    /// A `caught` step: SIGIO, or a signal the actor handles.
    pub(super) fn lower_caught(
        &self,
        s: &CaughtStep,
        actors: &[usize],
    ) -> Result<Op, ScenarioError> {
        let signal = parse_signal(&s.signal.value).map_err(|m| self.err(s.signal.pos, m))?;
        if signal != Signal::SIGIO {
            for &i in actors {
                if !self.state[i].handled.contains(&signal) {
                    return Err(self
                        .err(
                            s.signal.pos,
                            format!(
                                "actor `{}` has no handler for {}, so it cannot count it",
                                self.actors[i].name,
                                signal.as_str()
                            ),
                        )
                        .with_hint("add a `handle` step first (SIGIO is always counted)"));
                }
            }
        }
        let within = match &s.within {
            Some(d) => self.check_timeout(d)?,
            None => Duration::from_secs(2),
        };
        Ok(Op::Caught { signal, within })
    }

    /// An `invalid` step: a lock call with a wrong argument.
    pub(super) fn lower_invalid(
        &mut self,
        s: &InvalidStep,
        actors: &[usize],
        pos: Pos,
    ) -> Result<Op, ScenarioError> {
        let mech = self.mech;
        self.require(
            pos,
            "kernel lock call to get wrong",
            matches!(mech, Mechanism::Flock | Mechanism::Posix | Mechanism::Ofd),
        )?;
        if matches!(
            s.call.value,
            InvalidCall::NullPointer | InvalidCall::BadType
        ) {
            self.require(
                s.call.pos,
                "struct flock (it takes no pointer and no lock type)",
                mech.has_ranges(),
            )?;
        }
        if s.call.value == InvalidCall::NonblockAlone {
            self.require(
                s.call.pos,
                "flock(2) operation to leave out (nonblock-alone is flock only)",
                mech == Mechanism::Flock,
            )?;
        }
        Ok(Op::Invalid {
            fd: self.fd_for_all(actors, s.fd.as_ref(), pos)?,
            mech,
            call: s.call.value,
        })
    }

    /// A `byte-locks` step: many one-byte record locks.
    pub(super) fn lower_byte_locks(
        &mut self,
        s: &ByteLocksStep,
        actors: &[usize],
        pos: Pos,
    ) -> Result<Op, ScenarioError> {
        let mech = self.mech;
        self.require(pos, "byte ranges (it locks whole files)", mech.has_ranges())?;
        let count = self.check_count("count", &s.count, MAX_BYTE_LOCKS)?;
        let mode = s
            .mode
            .as_ref()
            .map(|m| m.value)
            .unwrap_or(LockMode::Exclusive);
        Ok(Op::ByteLocks {
            fd: self.fd_for_all(actors, s.fd.as_ref(), pos)?,
            mech,
            kind: mode.into(),
            count,
        })
    }

    /// A `hold` step: wait for the lock, hold it, release it.
    pub(super) fn lower_hold(
        &mut self,
        s: &HoldStep,
        actors: &[usize],
        pos: Pos,
    ) -> Result<Op, ScenarioError> {
        let mech = self.mech;
        self.require(pos, "waiting locks", mech.can_wait())?;
        let hold = match &s.for_ {
            Some(d) => self.check_timeout(d)?,
            None => Duration::from_millis(100),
        };
        Ok(Op::Hold {
            fd: self.fd_for_all(actors, s.fd.as_ref(), pos)?,
            mech,
            hold,
        })
    }

    /// A `records` step: interleaved writers, each record under its own lock.
    pub(super) fn lower_records(
        &mut self,
        s: &RecordsStep,
        actors: &[usize],
        pos: Pos,
    ) -> Result<Op, ScenarioError> {
        let mech = self.mech;
        self.require(pos, "waiting locks", mech.can_wait())?;
        if !(RECORD_SIZES.contains(&s.size.value)) {
            return Err(self.err(
                s.size.pos,
                format!(
                    "`size` must be between {} and {} bytes",
                    RECORD_SIZES.start(),
                    RECORD_SIZES.end()
                ),
            ));
        }
        let total = u64::from(s.count.value) * u64::from(s.size.value);
        if s.count.value == 0 || total > MAX_RECORDS_BYTES {
            return Err(self
                .err(
                    s.count.pos,
                    format!("`count` must be at least 1, and count × size at most {MAX_RECORDS_BYTES} bytes"),
                )
                .with_hint("a `read` step checks the records, and reads 64 KiB at most"));
        }
        Ok(Op::Records {
            fd: self.fd_for_all(actors, s.fd.as_ref(), pos)?,
            mech,
            count: s.count.value,
            size: s.size.value,
            writers: actors
                .iter()
                .map(|&i| self.actors[i].name.clone())
                .collect(),
        })
    }

    /// A `write` step.
    pub(super) fn lower_write(
        &mut self,
        s: &WriteStep,
        actors: &[usize],
        pos: Pos,
    ) -> Result<Op, ScenarioError> {
        if s.data.len() > MAX_DATA {
            return Err(self.err(pos, format!("`data` is longer than {MAX_DATA} bytes")));
        }
        if s.mapped && s.offset.is_none() {
            return Err(self
                .err(
                    pos,
                    "`mapped` needs `offset`: a mapping has no file position",
                )
                .with_hint("give `offset: N`"));
        }
        Ok(Op::Write {
            fd: self.fd_for_all(actors, s.fd.as_ref(), pos)?,
            data: s.data.clone(),
            offset: s.offset.as_ref().map(|o| o.value),
            sync: s.sync,
            mapped: s.mapped,
        })
    }

    /// A `read` step.
    pub(super) fn lower_read(
        &mut self,
        s: &ReadStep,
        actors: &[usize],
        pos: Pos,
    ) -> Result<Op, ScenarioError> {
        if s.len.value > MAX_DATA as u64 {
            return Err(self.err(s.len.pos, format!("`len` is larger than {MAX_DATA}")));
        }
        if s.mapped && s.offset.is_none() {
            return Err(self
                .err(
                    pos,
                    "`mapped` needs `offset`: a mapping has no file position",
                )
                .with_hint("give `offset: N`"));
        }
        Ok(Op::Read {
            fd: self.fd_for_all(actors, s.fd.as_ref(), pos)?,
            len: s.len.value,
            offset: s.offset.as_ref().map(|o| o.value),
            mapped: s.mapped,
        })
    }

    /// An `await` step: each actor has a blocked call.
    pub(super) fn lower_await(
        &mut self,
        s: &AwaitStep,
        c: &Common<'_>,
        actors: &[usize],
        pos: Pos,
    ) -> Result<Op, ScenarioError> {
        if let Some(f) = &s.for_ {
            let blocks = matches!(c.expect.map(|e| &e.value), Some(Expect::Blocks));
            if !blocks {
                return Err(self
                    .err(f.pos, "`for` needs `expect: blocks`")
                    .with_hint("`for` checks that the call keeps waiting that long; to bound how long it may take to complete, use `within`"));
            }
        }
        for &i in actors {
            if self.state[i].pending.is_none() {
                return Err(self
                    .err(
                        pos,
                        format!(
                            "actor `{}` has no blocked call to await",
                            self.actors[i].name
                        ),
                    )
                    .with_hint("`await` follows a call whose expectation is `blocks`"));
            }
        }
        if let (Some(w), Some(t)) = (&s.within, c.timeout) {
            return Err(self
                .err(w.pos, "give either `within` or `timeout`, not both")
                .with_hint(format!(
                    "`within` is the bound for the call to complete (timeout was at {})",
                    t.pos
                )));
        }
        Ok(Op::Await {
            hold: match &s.for_ {
                Some(f) => Some(self.check_timeout(f)?),
                None => None,
            },
        })
    }

    /// A `kill` step: the signal must end each actor.
    pub(super) fn lower_kill(
        &self,
        s: &KillStep,
        actors: &[usize],
        pos: Pos,
    ) -> Result<Op, ScenarioError> {
        let signal = match &s.signal {
            None => Signal::SIGKILL,
            Some(l) => parse_signal(&l.value).map_err(|m| self.err(l.pos, m))?,
        };
        let at = s.signal.as_ref().map(|l| l.pos).unwrap_or(pos);
        for &i in actors {
            if self.state[i].stopped && signal != Signal::SIGKILL {
                return Err(self
                    .err(
                        at,
                        format!(
                            "actor `{}` is stopped: {} would wait until it continues",
                            self.actors[i].name,
                            signal.as_str()
                        ),
                    )
                    .with_hint("kill a stopped actor with KILL, or `continue` it first"));
            }
            if !is_fatal_by_default(signal) || self.state[i].handled.contains(&signal) {
                return Err(self
                    .err(at, format!("{} does not end actor `{}`", signal.as_str(), self.actors[i].name))
                    .with_hint("`kill` sends a signal that ends the process, such as KILL or TERM; use a `signal` step for the others"));
            }
        }
        Ok(Op::Signal {
            signal,
            fatal: true,
        })
    }

    /// A `signal` step: the signal must not end an actor that does not handle it.
    pub(super) fn lower_signal(
        &self,
        s: &SignalStep,
        actors: &[usize],
    ) -> Result<Op, ScenarioError> {
        let signal = parse_signal(&s.signal.value).map_err(|m| self.err(s.signal.pos, m))?;
        for &i in actors {
            let st = &self.state[i];
            if is_fatal_by_default(signal) && !st.handled.contains(&signal) {
                return Err(self
                    .err(
                        s.signal.pos,
                        format!(
                            "{} would end actor `{}`: it has no handler for it",
                            signal.as_str(),
                            self.actors[i].name
                        ),
                    )
                    .with_hint("add a `handle` step first, or use `kill` to end the actor"));
            }
        }
        Ok(Op::Signal {
            signal,
            fatal: false,
        })
    }

    /// A `handle` step: a signal an actor can catch.
    pub(super) fn lower_handle(&self, s: &HandleStep) -> Result<Op, ScenarioError> {
        let signal = parse_signal(&s.signal.value).map_err(|m| self.err(s.signal.pos, m))?;
        if !handleable(signal) {
            return Err(self
                .err(
                    s.signal.pos,
                    format!("{} cannot be handled by an actor", signal.as_str()),
                )
                .with_hint(
                    "SIGKILL and SIGSTOP cannot be caught; SIGPIPE and SIGIO are the actor's own",
                ));
        }
        Ok(Op::Handle {
            signal,
            restart: s.restart,
        })
    }

    /// A `spawn` step, optionally reusing a dead actor's PID.
    pub(super) fn lower_spawn(
        &mut self,
        s: &SpawnStep,
        actors: &[usize],
        pos: Pos,
    ) -> Result<Op, ScenarioError> {
        let child = self.new_child(actors, &s.as_name, "spawn", pos)?;
        let pid_of = match &s.pid_of {
            None => None,
            Some(d) => {
                let dead = *self
                    .index
                    .get(&d.value)
                    .ok_or_else(|| self.err(d.pos, format!("unknown actor `{}`", d.value)))?;
                if !matches!(self.state[dead].life, Life::Dead { .. }) {
                    return Err(self
                        .err(
                            d.pos,
                            format!("actor `{}` is not dead here; its PID is not free", d.value),
                        )
                        .with_hint("kill or exit that actor in an earlier step"));
                }
                if self.actors[dead].thread_of.is_some() {
                    return Err(self.err(d.pos, "a thread's id is not a process id to reuse"));
                }
                self.needs.insert(Need::PidReuse);
                Some(dead)
            }
        };
        Ok(Op::Spawn { child, pid_of })
    }

    /// A lab fault: no actor performs it; the target must be able to inject it.
    pub(super) fn lab_step(
        &mut self,
        number: usize,
        step: &Located<Step>,
        s: &crate::spec::scenario::LabFaultStep,
        timeout: Duration,
    ) -> Result<PlannedStep, ScenarioError> {
        let fault = match &step.value {
            Step::Disconnect(_) => LabFault::Disconnect,
            Step::Reconnect(_) => LabFault::Reconnect,
            Step::Crash(_) => LabFault::Crash,
            Step::Net(_) => LabFault::Net,
            _ => LabFault::RestartServer,
        };
        let net = self.net_fault(step, s, fault)?;
        let host = match (&s.host, fault) {
            (Some(h), LabFault::RestartServer) => {
                return Err(self.err(h.pos, "`restart-server` takes no host"));
            }
            (None, LabFault::RestartServer) => None,
            (None, _) => {
                return Err(self
                    .err(step.pos, format!("`{}` needs `host:`", fault.as_str()))
                    .with_hint(
                        "name the host the fault happens to (a host actors are placed on)",
                    ));
            }
            (Some(h), _) => {
                if !self.actors.iter().any(|a| a.host == h.value) {
                    let hosts: BTreeSet<&str> =
                        self.actors.iter().map(|a| a.host.as_str()).collect();
                    return Err(self
                        .err(h.pos, format!("no actor is placed on host `{}`", h.value))
                        .with_hint(format!(
                            "hosts in this scenario: {}",
                            hosts.into_iter().collect::<Vec<_>>().join(", ")
                        )));
                }
                Some(h.value.clone())
            }
        };
        let expect = match &s.expect {
            Some(e) => self.expectation(e, false, &[])?,
            None => Expectation::Ok,
        };
        if !matches!(expect, Expectation::Ok | Expectation::Any) {
            return Err(self.err(step.pos, "a lab fault can only expect `ok`"));
        }
        self.needs.insert(Need::Lab(fault));
        if fault == LabFault::Crash {
            if let Some(h) = &host {
                let on: Vec<usize> = (0..self.actors.len())
                    .filter(|&i| self.actors[i].host == *h)
                    .collect();
                for i in on {
                    if matches!(self.state[i].life, Life::Alive) {
                        self.end_process(i, format!("host {h} crashed"), step.pos);
                    }
                }
            }
        }
        Ok(PlannedStep {
            number,
            pos: step.pos,
            actors: Vec::new(),
            op: Op::Lab { fault, host, net },
            expect,
            timeout,
            note: s.note.clone(),
            unsupported: Vec::new(),
            patient: false,
            leases: None,
        })
    }

    /// A `net` step's impairment; the other lab faults take none of its fields.
    fn net_fault(
        &self,
        step: &Located<Step>,
        s: &crate::spec::scenario::LabFaultStep,
        fault: LabFault,
    ) -> Result<Option<crate::plan::resolve::NetFault>, ScenarioError> {
        let given: Vec<(&str, crate::spec::loc::Pos)> = [
            ("for", s.for_.as_ref().map(|x| x.pos)),
            ("delay", s.delay.as_ref().map(|x| x.pos)),
            ("jitter", s.jitter.as_ref().map(|x| x.pos)),
            ("loss", s.loss.as_ref().map(|x| x.pos)),
            ("duplicate", s.duplicate.as_ref().map(|x| x.pos)),
            ("reorder", s.reorder.as_ref().map(|x| x.pos)),
        ]
        .into_iter()
        .filter_map(|(n, p)| p.map(|p| (n, p)))
        .collect();
        if fault != LabFault::Net {
            return match given.first() {
                Some((n, pos)) => Err(self
                    .err(*pos, format!("`{}` takes no `{n}`", fault.as_str()))
                    .with_hint("a slow or lossy link is a `net` step")),
                None => Ok(None),
            };
        }
        let Some(lasts) = &s.for_ else {
            return Err(self
                .err(
                    step.pos,
                    "`net` needs `for:` (how long the impairment lasts)",
                )
                .with_hint("such as `for: 10s` or `for: 2 leases`; the next steps run meanwhile"));
        };
        let mut leases = None;
        self.check_bound(lasts, &mut leases)?;
        let us = |d: &Located<crate::spec::scenario::Dur>| d.value.0.as_micros();
        let pct = |p: f64| {
            let t = format!("{p:.3}");
            format!("{}%", t.trim_end_matches('0').trim_end_matches('.'))
        };
        let mut netem = Vec::new();
        if let Some(d) = &s.delay {
            netem.push(format!("delay {}us", us(d)));
            if let Some(j) = &s.jitter {
                netem.push(format!("{}us", us(j)));
            }
        } else if let Some((n, pos)) = given
            .iter()
            .find(|(n, _)| *n == "jitter" || *n == "reorder")
        {
            return Err(self
                .err(*pos, format!("`{n}` needs `delay`"))
                .with_hint("netem varies and reorders delayed packets: give `delay` too"));
        }
        for (name, v) in [
            ("loss", &s.loss),
            ("duplicate", &s.duplicate),
            ("reorder", &s.reorder),
        ] {
            if let Some(p) = v {
                netem.push(format!("{name} {}", pct(p.value.0)));
            }
        }
        if netem.is_empty() {
            return Err(self.err(step.pos, "`net` needs an impairment").with_hint(
                "give `delay`, `loss`, `duplicate` or `reorder` (`loss: 100%` is a blackout)",
            ));
        }
        Ok(Some(crate::plan::resolve::NetFault {
            netem: netem.join(" "),
            lasts: lasts.value,
        }))
    }

    pub(super) fn check_path(&self, p: &Located<String>) -> Result<String, ScenarioError> {
        let path = std::path::Path::new(&p.value);
        let bad = |m: &str| {
            Err(self.err(p.pos, m.to_string()).with_hint(
                "paths are relative to the trial's scratch directory, such as `lock` or `data/db`",
            ))
        };
        if p.value.is_empty() {
            return bad("the path is empty");
        }
        if p.value.contains('\0') {
            return bad("the path contains a NUL byte");
        }
        if path.is_absolute() {
            return bad("the path is absolute; scenario paths stay inside the scratch directory");
        }
        for comp in path.components() {
            match comp {
                std::path::Component::Normal(_) | std::path::Component::CurDir => {}
                _ => return bad("the path leaves the scratch directory (`..`)"),
            }
        }
        if p.value.len() > 1024 {
            return bad("the path is longer than 1024 bytes");
        }
        Ok(p.value.clone())
    }
}
