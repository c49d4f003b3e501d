//! Starting actors (the first ones, forked and spawned ones, after exec) and tearing them down.

use super::*;

impl Driver<'_> {
    /// Start an actor process on a host: this binary directly, or through
    /// the host's launcher (`ip netns exec NS`, `ssh HOST`, ...), speaking
    /// the protocol over its stdin and stdout.
    pub(super) fn launch(&self, host: usize, into: &mut ActorRt) -> Result<(), Infra> {
        if let Some(sig) = crate::actor::interrupt::interrupted() {
            return Err(Infra(format!("lockcheck was interrupted (signal {sig})")));
        }
        let h = self.env.hosts.get(host).ok_or_else(|| {
            Infra(format!(
                "actor {} is placed on a host this target does not have",
                into.name
            ))
        })?;
        if let (None, Some(z)) = (&h.launcher, self.env.zygote) {
            // Forked by the zygote; if it cannot, started by exec below.
            if let Ok(s) = z.spawn(&h.dir) {
                let _ = nix::fcntl::fcntl(
                    &s.stderr,
                    nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
                );
                into.chan = Some(
                    Channel::new(s.chan_read, s.chan_write)
                        .map_err(|e| Infra(format!("actor channel: {e}")))?,
                );
                into.pid = Some(s.pid);
                into.pidfd = Pidfd::open(s.pid).ok();
                into.stderr = Some(s.stderr);
                into.child = None;
                into.zygote_child = true;
                into.host = host;
                into.alive = true;
                return Ok(());
            }
        }
        let mut cmd = match &h.launcher {
            None => {
                let mut c = Command::new(self.env.exe);
                // Not current_dir: spawn would wait for the child's chdir,
                // which sleeps on a server that stopped answering.
                c.arg(ACTOR_ARG)
                    .arg(std::process::id().to_string())
                    .env(crate::actor::process::CWD_ENV, &h.dir);
                c
            }
            Some(prefix) => {
                let (first, rest) = prefix
                    .split_first()
                    .ok_or_else(|| Infra(format!("host {} has an empty launcher", h.name)))?;
                let mut c = Command::new(first);
                c.args(rest).arg(&h.exe).arg(ACTOR_ARG).arg("0");
                c
            }
        };
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a terminal's Ctrl-C reaches the harness, not actors.
            .process_group(0);
        let mut child = cmd.spawn().map_err(|e| {
            Infra(format!(
                "starting an actor on host {}: {e}{}",
                h.name,
                resource_hint(&e)
            ))
        })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(Infra("actor pipes missing".into()));
        };
        let stderr: OwnedFd = stderr.into();
        let _ = nix::fcntl::fcntl(
            stderr.as_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        );
        into.chan = Some(
            Channel::new(stdout.into(), stdin.into())
                .map_err(|e| Infra(format!("actor channel: {e}")))?,
        );
        if h.launcher.is_none() {
            let pid = child.id() as i32;
            into.pid = Some(pid);
            into.pidfd = Pidfd::open(pid).ok();
        }
        into.stderr = Some(stderr);
        into.child = Some(child);
        into.host = host;
        into.alive = true;
        Ok(())
    }

    pub(super) fn spawn_initial(&mut self) -> Result<(), Infra> {
        for i in 0..self.actors.len() {
            let plan = &self.plan.actors[i];
            if plan.forked_from.is_some() || plan.thread_of.is_some() || plan.spawned_by.is_some() {
                continue;
            }
            let mut rt = std::mem::replace(&mut self.actors[i], ActorRt::new("", None));
            let host = rt.host;
            let launched = self.launch(host, &mut rt);
            self.actors[i] = rt;
            launched?;
        }
        // All actors start in parallel; now collect their greetings.
        let deadline = Instant::now() + START_TIMEOUT;
        for i in 0..self.actors.len() {
            if self.actors[i].alive {
                self.expect_hello(i, deadline)?;
            }
        }
        Ok(())
    }

    /// Wait for an actor's greeting; checks it is who we think it is.
    pub(super) fn expect_hello(&mut self, i: usize, deadline: Instant) -> Result<(), Infra> {
        // Started here (forked or exec'd by us): this kernel, whatever it says.
        let here = self
            .env
            .hosts
            .get(self.actors[i].host)
            .is_some_and(|h| h.launcher.is_none());
        let a = &mut self.actors[i];
        let Some(chan) = a.chan.as_mut() else {
            return Err(Infra(format!("actor {} has no channel", a.name)));
        };
        match chan.recv_until::<FromActor>(deadline) {
            Ok(Some(FromActor::Hello { hello: h })) => {
                if h.version != VERSION {
                    return Err(Infra(format!(
                        "actor {} speaks protocol {} (expected {VERSION})",
                        a.name, h.version
                    )));
                }
                if a.pid.is_some_and(|p| p != h.pid) {
                    return Err(Infra(format!(
                        "actor {} says it is pid {}, expected {:?}",
                        a.name, h.pid, a.pid
                    )));
                }
                // Only what is known to be the same kernel and PID namespace
                // is watched directly; unreadable identities count as foreign
                // (pid numbers of another machine must never be signalled here).
                let known = !h.boot_id.is_empty() && h.pidns != 0;
                a.shared_clock = here || (known && h.boot_id == self.me.boot_id);
                a.local_view = here || (a.shared_clock && h.pidns == self.me.pidns);
                if a.local_view && a.pidfd.is_none() {
                    // Started through a launcher that exec'd it (ip netns exec):
                    // a process the harness can see and watch.
                    a.pidfd = Pidfd::open(h.pid).ok();
                }
                a.pid = Some(h.pid);
                a.tid = Some(if h.tid > 0 { h.tid } else { h.pid });
                Ok(())
            }
            Ok(Some(FromActor::Reply(r))) => Err(Infra(format!(
                "actor {} sent a reply ({:?}) instead of a greeting",
                a.name, r.outcome
            ))),
            Ok(None) => Err(Infra(format!(
                "actor {} did not start within {} s",
                a.name,
                START_TIMEOUT.as_secs()
            ))),
            Err(e) => {
                let err = a.stderr_text();
                Err(Infra(format!(
                    "actor {} failed to start: {e} {err}",
                    a.name
                )))
            }
        }
    }

    /// The actor replaces itself with a fresh image; close-on-exec descriptors go.
    pub(super) fn exec(&mut self, i: usize, deadline: Instant) -> Result<Observed, Infra> {
        let seq = self.next_seq();
        self.send(i, seq, Request::Exec)?;
        let pid = self.actors[i].pid;
        let msg = {
            let a = &mut self.actors[i];
            let Some(chan) = a.chan.as_mut() else {
                return Err(Infra(format!("actor {} has no channel", a.name)));
            };
            chan.recv_until::<FromActor>(deadline)
        };
        match msg {
            Ok(Some(FromActor::Hello { hello })) => {
                if Some(hello.pid) != pid {
                    return Err(Infra(format!(
                        "after exec, actor {} says it is pid {}",
                        self.actors[i].name, hello.pid
                    )));
                }
                let a = &mut self.actors[i];
                a.fds.retain(|_, f| !f.cloexec);
                for t in 0..self.actors.len() {
                    if self.actors[t].thread_of == Some(i) {
                        let th = &mut self.actors[t];
                        th.alive = false;
                        th.chan = None;
                        th.pending = None;
                    }
                }
                Ok(Observed::Returned(Outcome::Done { ret: 0 }))
            }
            Ok(Some(FromActor::Reply(r))) => Ok(Observed::Returned(r.outcome)),
            Ok(None) => Ok(Observed::Hung {
                waited: Duration::ZERO,
                process: describe_process(pid.unwrap_or(0)),
            }),
            Err(ChannelError::Closed) => Ok(Observed::Died {
                detail: self.death_detail(i),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// A new actor: a forked child, a thread or a spawned process of
    /// `parent`, connected back through an abstract Unix socket only that
    /// process may use.
    pub(super) fn new_actor(
        &mut self,
        parent: usize,
        child: usize,
        kind: NewActor,
        deadline: Instant,
    ) -> Result<Observed, Infra> {
        if !self.actors[parent].local_view {
            return Err(Infra(format!(
                "a new actor on host {} could not reach lockcheck's socket (another machine); fork, thread and spawn work on hosts that share this one's kernel",
                self.host_name(self.actors[parent].host)
            )));
        }
        // A socket path in a private directory: reachable from actors in
        // other network namespaces (abstract names are per namespace).
        if self.sock_dir.is_none() {
            self.sock_dir = Some(
                tempfile::Builder::new()
                    .prefix("lockcheck-sock-")
                    .tempdir()
                    .map_err(|e| Infra(format!("socket directory: {e}")))?,
            );
        }
        let dir = self
            .sock_dir
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .unwrap_or_default();
        let path = dir.join(format!(
            "{}.{}.sock",
            SOCKET_COUNTER.fetch_add(1, Ordering::Relaxed),
            rand_suffix() % 1_000_000
        ));
        let name = path.to_string_lossy().into_owned();
        let listener =
            UnixListener::bind(&path).map_err(|e| Infra(format!("binding {name}: {e}")))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Infra(format!("listener: {e}")))?;
        let seq = self.next_seq();
        let req = match kind {
            NewActor::Thread => Request::Thread { socket: name },
            NewActor::Fork => Request::Fork { socket: name },
            NewActor::Spawn(set_tid) => Request::Spawn {
                socket: name,
                set_tid,
            },
        };
        self.send(parent, seq, req)?;
        let obs = self.wait_call(parent, seq, deadline, None, None)?;
        let peer = match &obs {
            Observed::Returned(Outcome::Forked { pid } | Outcome::Spawned { pid }) => *pid,
            Observed::Returned(Outcome::Threaded { .. }) => self.actors[parent].pid.unwrap_or(0),
            _ => return Ok(obs),
        };
        if let NewActor::Spawn(Some(want)) = kind {
            if peer != want {
                return Err(Infra(format!(
                    "clone3 asked for pid {want} but gave {peer}"
                )));
            }
        }
        let Some(stream) = accept_from(&listener, peer, deadline)? else {
            return Ok(Observed::Hung {
                waited: Duration::ZERO,
                process: format!("the new actor did not connect: {}", describe_process(peer)),
            });
        };
        let write_half = stream
            .try_clone()
            .map_err(|e| Infra(format!("socket: {e}")))?;
        let inherited = match kind {
            NewActor::Spawn(_) => HashMap::new(),
            NewActor::Fork => self.actors[self.owner(parent)].fds.clone(),
            NewActor::Thread => HashMap::new(),
        };
        let c = &mut self.actors[child];
        c.chan = Some(
            Channel::new(OwnedFd::from(stream), OwnedFd::from(write_half))
                .map_err(|e| Infra(format!("new actor's channel: {e}")))?,
        );
        c.pid = Some(peer);
        if !matches!(kind, NewActor::Thread) {
            c.pidfd = Pidfd::open(peer).ok();
        }
        let (host, view, clock) = {
            let p = &self.actors[parent];
            (p.host, p.local_view, p.shared_clock)
        };
        let c = &mut self.actors[child];
        c.host = host;
        c.local_view = view;
        c.shared_clock = clock;
        c.alive = true;
        c.fds = inherited;
        self.expect_hello(child, deadline)?;
        Ok(obs)
    }

    /// Kill everything the trial started and wait for it to be gone.
    pub(super) fn teardown(&mut self) -> Vec<String> {
        self.torn_down = true;
        let mut problems = Vec::new();
        // Hosts left cut off come back first: their killed actors may be
        // waiting for the network to finish dying.
        // Never through the fault barrier: this host is this trial's own.
        for h in std::mem::take(&mut self.severed) {
            let deadline = Instant::now() + Duration::from_secs(60);
            let Some(cmd) = self
                .env
                .faults
                .get(&crate::plan::resolve::LabFault::Reconnect)
            else {
                problems.push(format!("host {h} was left cut off: no reconnect command"));
                continue;
            };
            let cmd = cmd.replace("{host}", &h);
            match run_fault_command(&cmd, deadline) {
                Ok(true) => {}
                Ok(false) => problems.push(format!("reconnecting host {h}: `{cmd}` hung")),
                Err(e) => problems.push(format!("reconnecting host {h}: {e}")),
            }
        }
        // Actors the harness cannot see are killed by their host's agent.
        for i in 0..self.actors.len() {
            let a = &self.actors[i];
            if !a.local_view && a.alive && a.thread_of.is_none() {
                let _ = self.send_signal(i, Signal::SIGKILL);
            }
        }
        // Kill through pidfds: exactly the processes this trial started,
        // never a reused pid or process group of someone else.
        for a in &mut self.actors {
            a.chan = None;
            if a.thread_of.is_some() {
                continue;
            }
            if !a.local_view {
                // Its launcher (ssh, kubectl, ...) is our child: end it too.
                if let Some(c) = a.child.as_mut() {
                    let _ = c.kill();
                }
                continue;
            }
            match (&a.pidfd, a.pid) {
                (Some(fd), _) => fd.kill(),
                // No pidfd (an old kernel): a direct child not yet reaped
                // still owns its pid, so kill() cannot hit another process.
                (None, Some(pid)) => {
                    if a.child
                        .as_mut()
                        .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
                    {
                        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    }
                }
                (None, None) => {}
            }
        }
        let deadline = Instant::now()
            + if self.lab_faulted {
                LAB_REAP_TIMEOUT
            } else {
                REAP_TIMEOUT
            };
        for a in &mut self.actors {
            let gone = match (&a.pidfd, a.local_view) {
                (Some(fd), true) => fd
                    .wait_exit(deadline.saturating_duration_since(Instant::now()))
                    .unwrap_or(true),
                _ => true,
            };
            if let Some(child) = a.child.as_mut() {
                reap(child, deadline);
            }
            // The zygote reaps it now, so no zombie outlives the trial.
            if let (true, true, Some(z), Some(pid)) = (gone, a.zygote_child, self.env.zygote, a.pid)
            {
                if a.exit.is_none() {
                    a.exit = z.status(pid);
                }
            }
            if !gone {
                problems.push(format!(
                    "actor {} did not end after SIGKILL: {}",
                    a.name,
                    describe_process(a.pid.unwrap_or(0))
                ));
            }
        }
        // The hosts' agents last: they killed the actors the harness cannot see.
        for agent in self.agents.iter_mut().flatten() {
            agent.chan = None;
            if let Some(child) = agent.child.as_mut() {
                let _ = child.kill();
                reap(child, deadline);
            }
        }
        problems
    }
}
