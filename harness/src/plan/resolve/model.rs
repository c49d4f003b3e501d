//! The process model the planner keeps while it walks a scenario: which actors exist, are alive, stopped or waiting in a call, which descriptors and signal handlers each has; a step that cannot be performed is an error at its position.

use super::*;

impl Resolver<'_> {
    pub(super) fn add_actor(
        &mut self,
        name: String,
        host: Option<String>,
        pos: Pos,
        life: Life,
    ) -> Result<(), ScenarioError> {
        if self.index.contains_key(&name) {
            return Err(self
                .err(pos, format!("actor `{name}` is declared twice"))
                .with_hint(
                "actor names are unique; a fork's or thread's `as` must not repeat another actor",
            ));
        }
        if self.actors.len() >= MAX_ACTORS {
            return Err(self.err(pos, format!("more than {MAX_ACTORS} actors")));
        }
        self.index.insert(name.clone(), self.actors.len());
        self.actors.push(ActorPlan {
            name,
            host: host.unwrap_or_else(|| DEFAULT_HOST.to_string()),
            forked_from: None,
            thread_of: None,
            spawned_by: None,
        });
        self.state.push(ActorState::new(life));
        Ok(())
    }

    /// The actor whose descriptor table actor `i` uses (a thread's process).
    pub(super) fn owner(&self, i: usize) -> usize {
        self.actors[i].thread_of.unwrap_or(i)
    }

    /// Resolve `actor:` / `actors:` to indices.
    pub(super) fn actors_of(
        &self,
        c: &Common<'_>,
        step_pos: Pos,
    ) -> Result<Vec<usize>, ScenarioError> {
        let names: Vec<Located<String>> = match (c.actor, c.actors) {
            (Some(a), None) => vec![a.clone()],
            (None, Some(set)) => match &set.value {
                ActorSet::All(_) => self
                    .scn
                    .actors
                    .iter()
                    .flat_map(|d| expand_actor_name(d.name()).unwrap_or_default())
                    .map(|n| Located::new(n, set.pos))
                    .collect(),
                ActorSet::List(list) => {
                    let mut out = Vec::new();
                    for n in list {
                        let expanded =
                            expand_actor_name(&n.value).map_err(|m| self.err(n.pos, m))?;
                        out.extend(expanded.into_iter().map(|e| Located::new(e, n.pos)));
                    }
                    if out.is_empty() {
                        return Err(self.err(set.pos, "`actors` is empty"));
                    }
                    out
                }
            },
            (Some(a), Some(_)) => {
                return Err(self.err(a.pos, "a step has either `actor` or `actors`, not both"))
            }
            (None, None) => {
                return Err(self
                    .err(step_pos, "the step does not say which actor performs it")
                    .with_hint("add `actor: NAME` (or `actors: [A, B]` for a race)"))
            }
        };
        let mut out = Vec::new();
        for n in &names {
            let i = *self.index.get(&n.value).ok_or_else(|| {
                let known: Vec<&str> = self.actors.iter().map(|a| a.name.as_str()).collect();
                self.err(n.pos, format!("unknown actor `{}`", n.value))
                    .with_hint(format!("declared actors: {}", known.join(", ")))
            })?;
            if out.contains(&i) {
                return Err(self.err(n.pos, format!("actor `{}` is named twice", n.value)));
            }
            out.push(i);
        }
        Ok(out)
    }

    /// The actor must exist and be alive; `allow_pending` for await/kill/signal/listed.
    pub(super) fn check_usable(
        &self,
        i: usize,
        pos: Pos,
        op: &str,
        allow_pending: bool,
    ) -> Result<(), ScenarioError> {
        let name = &self.actors[i].name;
        let st = &self.state[i];
        match &st.life {
            Life::Unborn => {
                return Err(self
                    .err(pos, format!("actor `{name}` does not exist yet"))
                    .with_hint(
                        "it is created by a later `fork` or `thread` step; move this step after it",
                    ))
            }
            Life::Dead { how, pos: at } => {
                return Err(self
                    .err(
                        pos,
                        format!("actor `{name}` is gone ({how} at line {})", at.line),
                    )
                    .with_hint(format!(
                        "a {op} step cannot address an actor that has ended"
                    )))
            }
            Life::Alive => {}
        }
        if let Some((n, at)) = st.ambiguous {
            if op != "kill" {
                return Err(self
                    .err(pos, format!("after the race of step {n} (line {}) it is not known whether `{name}` holds the lock or still waits", at.line))
                    .with_hint("only `kill` can address it now; give waiters separate steps when later steps need to know who holds the lock"));
            }
        }
        if let (Some(w), false) = (&st.pending, allow_pending) {
            return Err(self
                .err(
                    pos,
                    format!(
                        "actor `{name}` is still waiting in the blocked call of step {} (line {})",
                        w.number, w.pos.line
                    ),
                )
                .with_hint("an actor in a blocked call can only be awaited (`await`), signalled or killed; add an `await` step first"));
        }
        Ok(())
    }

    /// The descriptor a step uses: the one named, or the actor's only one.
    pub(super) fn fd_of(
        &self,
        i: usize,
        fd: Option<&Located<String>>,
        pos: Pos,
    ) -> Result<String, ScenarioError> {
        let st = &self.state[self.owner(i)];
        let name = &self.actors[i].name;
        let open = || {
            st.fds
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match fd {
            Some(f) => {
                if st.fds.contains_key(&f.value) {
                    Ok(f.value.clone())
                } else {
                    Err(self
                        .err(
                            f.pos,
                            format!("actor `{name}` has no descriptor `{}` open here", f.value),
                        )
                        .with_hint(if st.fds.is_empty() {
                            "it has no open descriptors; add an `open` step first".to_string()
                        } else {
                            format!("open descriptors of `{name}`: {}", open())
                        }))
                }
            }
            None => match st.fds.len() {
                1 => Ok(st.fds.keys().next().cloned().unwrap_or_default()),
                0 => Err(self
                    .err(pos, format!("actor `{name}` has no open descriptor"))
                    .with_hint("add an `open` step for it first")),
                _ => Err(self
                    .err(
                        pos,
                        format!(
                            "actor `{name}` has several descriptors open; say which with `fd:`"
                        ),
                    )
                    .with_hint(format!("open descriptors: {}", open()))),
            },
        }
    }

    /// The same descriptor name for every actor of a group step.
    pub(super) fn fd_for_all(
        &self,
        actors: &[usize],
        fd: Option<&Located<String>>,
        pos: Pos,
    ) -> Result<String, ScenarioError> {
        let mut chosen: Option<String> = None;
        for &i in actors {
            let f = self.fd_of(i, fd, pos)?;
            match &chosen {
                None => chosen = Some(f),
                Some(c) if *c != f => return Err(self
                    .err(
                        pos,
                        "the actors of this step have different descriptors open",
                    )
                    .with_hint(
                        "name the descriptor with `fd:` (each actor must have one of that name)",
                    )),
                Some(_) => {}
            }
        }
        chosen.ok_or_else(|| self.err(pos, "no actor"))
    }

    /// Whether each actor of the step can take part: alive, not stopped
    /// (unless the step continues, signals or kills it), a whole process
    /// where the step addresses one.
    pub(super) fn check_actors(
        &self,
        step: &Located<Step>,
        actors: &[usize],
        pos: Pos,
    ) -> Result<(), ScenarioError> {
        let op_name = step.op_name();
        let allow_pending = matches!(
            step.value,
            Step::Await(_)
                | Step::Kill(_)
                | Step::Signal(_)
                | Step::Listed(_)
                | Step::Stop(_)
                | Step::Continue(_)
        );
        for &i in actors {
            self.check_usable(i, pos, op_name, allow_pending)?;
            if self.state[i].stopped
                && !matches!(
                    step.value,
                    Step::Continue(_) | Step::Kill(_) | Step::Signal(_) | Step::Listed(_)
                )
            {
                return Err(self
                    .err(pos, format!("actor `{}` is stopped (SIGSTOP)", self.actors[i].name))
                    .with_hint("a stopped actor can only be continued, signalled, killed or looked up in /proc/locks"));
            }
            if matches!(step.value, Step::Continue(_)) && !self.state[i].stopped {
                return Err(self.err(
                    pos,
                    format!("actor `{}` is not stopped", self.actors[i].name),
                ));
            }
            if matches!(step.value, Step::Stop(_)) && self.state[i].stopped {
                return Err(self.err(
                    pos,
                    format!("actor `{}` is already stopped", self.actors[i].name),
                ));
            }
            if self.actors[i].thread_of.is_some()
                && matches!(
                    step.value,
                    Step::Kill(_)
                        | Step::Exit(_)
                        | Step::Exec(_)
                        | Step::Fork(_)
                        | Step::Thread(_)
                        | Step::Stop(_)
                        | Step::Continue(_)
                        | Step::Spawn(_)
                )
            {
                return Err(self
                    .err(
                        pos,
                        format!(
                            "`{}` is a thread; a {op_name} step addresses a whole process",
                            self.actors[i].name
                        ),
                    )
                    .with_hint("address the actor the thread was started in"));
            }
        }
        Ok(())
    }

    /// The one actor of a step that makes a new actor, and the new actor,
    /// which must not exist yet.
    pub(super) fn new_child(
        &self,
        actors: &[usize],
        name: &Located<String>,
        what: &str,
        pos: Pos,
    ) -> Result<usize, ScenarioError> {
        if actors.len() != 1 {
            return Err(self.err(pos, format!("a {what} step has one actor")));
        }
        let child = self.index[&name.value];
        if !matches!(self.state[child].life, Life::Unborn) {
            return Err(self.err(name.pos, format!("actor `{}` already exists", name.value)));
        }
        Ok(child)
    }

    /// Mark an actor and the threads of its process dead.
    pub(super) fn end_process(&mut self, i: usize, how: String, pos: Pos) {
        let threads: Vec<usize> = (0..self.actors.len())
            .filter(|&t| self.actors[t].thread_of == Some(i))
            .collect();
        for t in threads.into_iter().chain(std::iter::once(i)) {
            if matches!(self.state[t].life, Life::Alive) {
                self.state[t].life = Life::Dead {
                    how: how.clone(),
                    pos,
                };
            }
            self.state[t].pending = None;
            self.state[t].ambiguous = None;
        }
    }

    /// Update the simulated state after a step.
    pub(super) fn apply(
        &mut self,
        number: usize,
        pos: Pos,
        actors: &[usize],
        op: &Op,
        exp: &Expectation,
    ) {
        let succeeds = matches!(exp, Expectation::Ok);
        for &i in actors {
            let o = self.owner(i);
            match op {
                Op::Open { fd, cloexec, .. } => {
                    if succeeds {
                        self.state[o].fds.insert(fd.clone(), *cloexec);
                    } else if matches!(exp, Expectation::Blocks) {
                        self.state[i].pending = Some(Waiting {
                            number,
                            pos,
                            opens: Some((fd.clone(), *cloexec)),
                        });
                    }
                }
                Op::Close { fd } => {
                    self.state[o].fds.remove(fd);
                }
                Op::CloseAll => self.state[o].fds.clear(),
                Op::Stop => self.state[i].stopped = true,
                Op::Continue => self.state[i].stopped = false,
                Op::Spawn { child, .. } if succeeds => {
                    let host = self.actors[i].host.clone();
                    self.actors[*child].spawned_by = Some(i);
                    self.actors[*child].host = host;
                    self.state[*child].life = Life::Alive;
                }
                Op::Dup { new, .. } if succeeds => {
                    // dup(2) clears close-on-exec on the copy.
                    self.state[o].fds.insert(new.clone(), false);
                }
                Op::Fork { child } | Op::Thread { child } if succeeds => {
                    let host = self.actors[i].host.clone();
                    if matches!(op, Op::Fork { .. }) {
                        // The child gets copies of the descriptors (the same open
                        // file descriptions) and the signal dispositions.
                        self.actors[*child].forked_from = Some(i);
                        self.state[*child].fds = self.state[o].fds.clone();
                    } else {
                        // A thread shares its process's descriptor table.
                        self.actors[*child].thread_of = Some(i);
                    }
                    self.state[*child].handled = self.state[i].handled.clone();
                    self.actors[*child].host = host;
                    self.state[*child].life = Life::Alive;
                }
                Op::Exec if succeeds => {
                    self.state[o].fds.retain(|_, cloexec| !*cloexec);
                    self.state[i].handled.clear();
                    let threads: Vec<usize> = (0..self.actors.len())
                        .filter(|&t| self.actors[t].thread_of == Some(i))
                        .collect();
                    for t in threads {
                        self.state[t].life = Life::Dead {
                            how: "its process exec'd".into(),
                            pos,
                        };
                    }
                }
                Op::Handle { signal, .. } => {
                    // Handlers belong to the process: its threads share them.
                    let process = self.actors[i].thread_of.unwrap_or(i);
                    let members: Vec<usize> = (0..self.actors.len())
                        .filter(|&t| t == process || self.actors[t].thread_of == Some(process))
                        .collect();
                    for t in members {
                        self.state[t].handled.insert(*signal);
                    }
                }
                Op::Exit { .. } => self.end_process(i, "exited".into(), pos),
                Op::Signal {
                    signal,
                    fatal: true,
                } => self.end_process(i, format!("killed with {}", signal.as_str()), pos),
                Op::Lock { wait: true, .. }
                | Op::Hold { .. }
                | Op::Await { .. }
                | Op::Truncate { .. } => {
                    let was = self.state[i].pending.take();
                    match exp {
                        // Whether the call still waits is known only at run time
                        // (a race, or a target that may restart or interrupt):
                        // only `kill` may address the actor afterwards.
                        _ if exp.leaves_pending().is_none() => {
                            self.state[i].ambiguous = Some((number, pos));
                        }
                        _ if exp.leaves_pending() == Some(true) => {
                            self.state[i].pending = Some(was.unwrap_or(Waiting {
                                number,
                                pos,
                                opens: None,
                            }));
                        }
                        _ => {
                            if let (
                                Some(Waiting {
                                    opens: Some((fd, cloexec)),
                                    ..
                                }),
                                true,
                            ) = (was, succeeds)
                            {
                                self.state[o].fds.insert(fd, cloexec);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
}
