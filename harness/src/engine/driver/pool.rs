//! The actor pool: a trial's actor processes and the channels to them.
//! It starts actors (on this host or through a host's launcher), checks
//! their greetings, sends requests and receives replies, watches a call
//! that should block, keeps one agent per host that reads /proc and
//! signals for actors the harness cannot see, and kills and reaps
//! everything it started. It knows nothing of steps or judging: the
//! driver runs a plan through it, and the benchmarks drive it directly.

use super::*;

/// How long an actor may take to start and say hello: on a busy lab guest
/// (eight User-Mode Linux guests on two cores) starting one through another
/// host's launcher took more than 10 s now and then.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest pause between two looks at a waiting actor's kernel state.
const PROBE_MAX: Duration = Duration::from_millis(4);

/// A trial that has waited this long for a reply lends its job slot (see
/// `slots`) until the reply comes: it is not using the CPU.
const LEND_AFTER: Duration = Duration::from_millis(10);

/// What to do when the harness itself runs out of something.
fn resource_hint(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EMFILE) => {
            " (hint: this process's open-file limit is reached: raise it with `ulimit -n`, or run fewer trials at once with --jobs)"
        }
        Some(libc::ENFILE) => " (hint: the system's open-file table is full)",
        Some(libc::EAGAIN) | Some(libc::ENOMEM) => {
            " (hint: the process limit or memory is exhausted: run fewer trials at once with --jobs)"
        }
        _ => "",
    }
}

pub(super) struct ActorRt {
    pub(super) name: String,
    /// Process id (thread group id).
    pub(super) pid: Option<i32>,
    /// The task serving the channel: the thread id for thread actors.
    pub(super) tid: Option<i32>,
    /// For thread actors: the process actor's index.
    pub(super) thread_of: Option<usize>,
    pub(super) child: Option<Child>,
    pub(super) pidfd: Option<Pidfd>,
    pub(super) chan: Option<Channel>,
    pub(super) stderr: Option<OwnedFd>,
    pub(super) fds: HashMap<String, FdRt>,
    pub(super) pending: Option<Pending>,
    pub(super) alive: bool,
    /// When its last reply's call returned (CLOCK_MONOTONIC ns, from the actor).
    pub(super) last_reply_ns: u64,
    /// The host it runs on (index into the trial's hosts).
    pub(super) host: usize,
    /// Whether the harness sees its pids and /proc (same kernel and pid
    /// namespace); otherwise an agent on its host reads and signals for it.
    pub(super) local_view: bool,
    /// Whether it shares the harness's monotonic clock (same kernel).
    pub(super) shared_clock: bool,
    /// Forked by the zygote (which has its exit status), not our child.
    pub(super) zygote_child: bool,
    /// How it ended, once known.
    pub(super) exit: Option<String>,
    /// The reply to its pending call, found already waiting before step N
    /// began: the call returned before that step.
    pub(super) early: Option<(crate::actor::protocol::Reply, usize)>,
}

/// When the pool's replies said their calls ran (this host's monotonic clock).
#[derive(Debug, Default)]
pub(super) struct ReplyLog {
    /// The latest time a call returned, since it was last reset.
    pub(super) latest_ns: u64,
    /// When calls of actors on this host's clock ran (ns spans).
    pub(super) spans: Vec<(u64, u64)>,
}

/// A trial's actors, the channels to them and the hosts' agents.
pub(crate) struct ActorPool<'a> {
    pub(super) env: &'a TrialEnv<'a>,
    pub(super) actors: Vec<ActorRt>,
    seq: u64,
    /// Sends to actors give up at this time (the current step's deadline).
    pub(super) send_deadline: Instant,
    /// Per host: the agent that observes and signals for actors the harness
    /// cannot see directly (started on first use).
    agents: Vec<Option<ActorRt>>,
    /// This process's kernel and pid namespace, to compare actors' with.
    me: HelloBody,
    /// A private directory for the sockets new actors connect back on.
    sock_dir: Option<tempfile::TempDir>,
    /// When replies said their calls ran.
    pub(super) replies: ReplyLog,
}

impl<'a> ActorPool<'a> {
    /// A pool for the plan's actors, none started yet.
    pub(super) fn new(plan: &TrialPlan, env: &'a TrialEnv<'a>) -> Self {
        ActorPool {
            env,
            actors: plan
                .actors
                .iter()
                .map(|a| {
                    let mut rt = ActorRt::new(&a.name, a.thread_of);
                    rt.host = env
                        .hosts
                        .iter()
                        .position(|h| h.name == a.host)
                        .unwrap_or(usize::MAX);
                    rt
                })
                .collect(),
            seq: 0,
            send_deadline: Instant::now() + crate::plan::resolve::DEFAULT_TIMEOUT,
            agents: (0..env.hosts.len().max(1)).map(|_| None).collect(),
            me: HelloBody::here(std::process::id() as i32, 0),
            sock_dir: None,
            replies: ReplyLog::default(),
        }
    }

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

    /// Start the actors `initial` (in parallel) and collect their greetings.
    pub(super) fn start(&mut self, initial: &[usize]) -> Result<(), Infra> {
        for &i in initial {
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
        // Where it was started, for the messages: "host b, through `ssh
        // client2`" names what to look at when a remote side is missing.
        let place = match self.env.hosts.get(self.actors[i].host) {
            Some(h) => match &h.launcher {
                Some(l) => format!(" on host {} (started through `{}`)", h.name, l.join(" ")),
                None => format!(" on host {}", h.name),
            },
            None => String::new(),
        };
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
                "actor {}{place} did not start within {} s",
                a.name,
                START_TIMEOUT.as_secs()
            ))),
            Err(e) => {
                let err = a.stderr_text();
                Err(Infra(format!(
                    "actor {}{place} failed to start: {e} {err}",
                    a.name
                )))
            }
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
                    self.replies.spans.push((r.start_ns, r.t_ns));
                }
                self.replies.latest_ns = self.replies.latest_ns.max(t);
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

    /// The trial directory reached another way (`via:`).
    pub(super) fn via_dir(&self, via: crate::spec::scenario::Via) -> Option<&'a Path> {
        match via {
            crate::spec::scenario::Via::SecondMount => self.env.second_mount,
            crate::spec::scenario::Via::BackingStore => self.env.backing,
        }
    }

    pub(super) fn host_name(&self, host: usize) -> String {
        self.env
            .hosts
            .get(host)
            .map(|h| h.name.clone())
            .unwrap_or_else(|| "?".into())
    }

    /// Start the agent of a host if it is not running yet.
    pub(super) fn ensure_agent(&mut self, host: usize, wait: Duration) -> Result<(), Infra> {
        if self
            .agents
            .get(host)
            .is_some_and(|a| a.as_ref().is_some_and(|a| a.alive))
        {
            return Ok(());
        }
        let mut rt = ActorRt::new(&format!("agent on host {}", self.host_name(host)), None);
        self.launch(host, &mut rt)?;
        let deadline = Instant::now() + wait;
        let chan = rt
            .chan
            .as_mut()
            .ok_or_else(|| Infra("agent without a channel".into()))?;
        match chan.recv_until::<FromActor>(deadline)? {
            Some(FromActor::Hello { hello }) => rt.pid = Some(hello.pid),
            _ => {
                return Err(Infra(format!(
                    "the agent on host {} did not start",
                    self.host_name(host)
                )))
            }
        }
        if host >= self.agents.len() {
            self.agents.resize_with(host + 1, || None);
        }
        self.agents[host] = Some(rt);
        Ok(())
    }

    /// A request to a host's agent and its answer.
    pub(super) fn agent_call(
        &mut self,
        host: usize,
        req: Request,
        wait: Duration,
    ) -> Result<Outcome, Infra> {
        self.ensure_agent(host, START_TIMEOUT)?;
        self.seq += 1;
        let seq = self.seq;
        let deadline = Instant::now() + wait;
        let name = self.host_name(host);
        let Some(Some(agent)) = self.agents.get_mut(host) else {
            return Err(Infra(format!("no agent on host {name}")));
        };
        let chan = agent
            .chan
            .as_mut()
            .ok_or_else(|| Infra(format!("the agent on host {name} has no channel")))?;
        chan.send(&Envelope { seq, req }, deadline)?;
        loop {
            match chan.recv_until::<FromActor>(deadline)? {
                Some(FromActor::Reply(r)) if r.seq == seq => return Ok(r.outcome),
                Some(_) => continue,
                None => return Err(Infra(format!("the agent on host {name} did not answer"))),
            }
        }
    }

    /// Actor pids by index (None for actors not started).
    pub(crate) fn pids(&self) -> Vec<Option<i32>> {
        self.actors.iter().map(|a| a.pid).collect()
    }

    /// For benchmarks, which time calls themselves: the descriptor actor
    /// `i` opened as `handle`, and the inode of its file.
    pub(crate) fn descriptor(&self, i: usize, handle: &str) -> Option<(i32, u64)> {
        self.actors.get(i)?.fds.get(handle).map(|f| (f.n, f.ino))
    }

    /// For benchmarks: send `req` to actor `i` without waiting for the
    /// answer; returns the request's sequence number.
    pub(crate) fn submit(
        &mut self,
        i: usize,
        req: Request,
        timeout: Duration,
    ) -> Result<u64, String> {
        let seq = self.next_seq();
        self.send_deadline = Instant::now() + timeout;
        self.send(i, seq, req).map_err(|Infra(e)| e)?;
        Ok(seq)
    }

    /// For benchmarks: the answer to request `seq` of actor `i`.
    pub(crate) fn reply(&mut self, i: usize, seq: u64, timeout: Duration) -> Result<Reply, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Some(r) = self.recv_answer(i, seq, left)? {
                return Ok(r);
            }
            if left.is_zero() {
                return Err(format!(
                    "actor {} did not answer within {} ms",
                    self.actors[i].name,
                    timeout.as_millis()
                ));
            }
        }
    }

    /// For benchmarks: wait until request `seq` of actor `i` is seen waiting
    /// in the kernel (`None`), or what happened instead (it returned, or the
    /// actor died).
    pub(crate) fn until_blocked(
        &mut self,
        i: usize,
        seq: u64,
        sig: WaitSignature,
        ino: Option<u64>,
        timeout: Duration,
    ) -> Result<Option<Observed>, String> {
        let deadline = Instant::now() + timeout;
        match self
            .wait_call(i, seq, deadline, Some(sig), ino)
            .map_err(|Infra(e)| e)?
        {
            Observed::Blocked(_) => Ok(None),
            Observed::Hung { .. } => Err(format!(
                "actor {} neither returned nor was seen waiting within {} ms",
                self.actors[i].name,
                timeout.as_millis()
            )),
            other => Ok(Some(other)),
        }
    }

    pub(super) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// The actor whose descriptor table actor `i` uses (a thread's process).
    pub(super) fn owner(&self, i: usize) -> usize {
        self.actors[i].thread_of.unwrap_or(i)
    }

    pub(super) fn fd(&self, i: usize, name: &str) -> Result<&FdRt, Infra> {
        self.actors[self.owner(i)].fds.get(name).ok_or_else(|| {
            Infra(format!(
                "actor {} has no descriptor {name}",
                self.actors[i].name
            ))
        })
    }

    /// The trial directory as actor `i`'s host names it.
    pub(super) fn dir_of(&self, i: usize) -> &Path {
        self.env
            .hosts
            .get(self.actors[i].host)
            .map(|h| h.dir.as_path())
            .unwrap_or(self.env.scratch)
    }

    pub(super) fn path(&self, i: usize, rel: &str) -> Beneath {
        Beneath::new(self.dir_of(i), rel)
    }

    /// The path an `open` step names: in actor `i`'s trial directory, or
    /// through another view of it (`via`); `None` if this target has none.
    pub(super) fn open_path(
        &self,
        i: usize,
        rel: &str,
        via: Option<crate::spec::scenario::Via>,
    ) -> Option<Beneath> {
        match via {
            Some(v) => self.via_dir(v).map(|d| Beneath::new(d, rel)),
            None => Some(self.path(i, rel)),
        }
    }

    /// Kill every actor and agent the pool started, through pidfds (exactly
    /// these processes, never a reused pid), and wait up to `reap_within`
    /// for them to be gone; returns what would not end.
    pub(super) fn end_all(&mut self, reap_within: Duration) -> Vec<String> {
        let mut problems = Vec::new();
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
        let deadline = Instant::now() + reap_within;
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

    /// Send a signal to actor `i` (to its thread, for a thread actor).
    pub(super) fn send_signal(&mut self, i: usize, signal: Signal) -> Result<(), String> {
        let a = &self.actors[i];
        let pid = a.pid.unwrap_or(0);
        let tid = a.thread_of.and(a.tid);
        if !a.local_view {
            let host = a.host;
            let req = Request::SignalPid {
                pid,
                tid,
                signal: signal as i32,
            };
            return match self.agent_call(host, req, Duration::from_secs(5)) {
                Ok(Outcome::Done { .. }) => Ok(()),
                Ok(Outcome::Failed { errno }) => Err(crate::spec::errno::name(errno)),
                Ok(other) => Err(format!("{other:?}")),
                Err(Infra(e)) => Err(e),
            };
        }
        match tid {
            Some(t) => {
                // SAFETY: tgkill with plain integers.
                let r = unsafe { libc::syscall(libc::SYS_tgkill, pid, t, signal as i32) };
                if r < 0 {
                    Err(std::io::Error::last_os_error().to_string())
                } else {
                    Ok(())
                }
            }
            None => kill(Pid::from_raw(pid), signal).map_err(|e| e.to_string()),
        }
    }
}

impl ActorRt {
    pub(super) fn new(name: &str, thread_of: Option<usize>) -> Self {
        ActorRt {
            name: name.to_string(),
            pid: None,
            tid: None,
            thread_of,
            child: None,
            pidfd: None,
            chan: None,
            stderr: None,
            fds: HashMap::new(),
            pending: None,
            alive: false,
            last_reply_ns: 0,
            host: 0,
            local_view: true,
            shared_clock: true,
            zygote_child: false,
            exit: None,
            early: None,
        }
    }

    /// What the actor printed on stderr, if anything (non-blocking).
    pub(super) fn stderr_text(&mut self) -> String {
        let Some(fd) = &self.stderr else {
            return String::new();
        };
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        while out.len() < 16 * 1024 {
            match nix::unistd::read(fd.as_fd(), &mut chunk) {
                Ok(n) if n > 0 => out.extend_from_slice(&chunk[..n]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&out).trim().to_string()
    }
}

static SOCKET_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Wait (bounded) for a child process the harness started, and reap it.
pub(super) fn reap(child: &mut Child, deadline: Instant) {
    if let Ok(fd) = Pidfd::open(child.id() as i32) {
        let _ = fd.wait_exit(deadline.saturating_duration_since(Instant::now()));
    }
    let _ = child.try_wait();
}

/// Accept the connection of process `peer` (checked with SO_PEERCRED).
fn accept_from(
    listener: &UnixListener,
    peer: i32,
    deadline: Instant,
) -> Result<Option<UnixStream>, Infra> {
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                if peer_pid(&s) == Some(peer) {
                    return Ok(Some(s));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                wait_readable(listener.as_fd(), left)
                    .map_err(|e| Infra(format!("waiting for the new actor: {e}")))?;
            }
            Err(e) => return Err(Infra(format!("accepting the new actor: {e}"))),
        }
    }
}

fn rand_suffix() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom(2) writes at most b.len() bytes into b (the system
    // call: glibc's wrapper is 2.25, the portable binary links against 2.17).
    let n = unsafe { libc::syscall(libc::SYS_getrandom, b.as_mut_ptr(), b.len(), 0) };
    if n == 8 {
        u64::from_ne_bytes(b)
    } else {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::from(d.subsec_nanos()))
            .unwrap_or(0)
    }
}

fn peer_pid(s: &UnixStream) -> Option<i32> {
    use std::os::fd::AsRawFd;
    let mut cred: libc::ucred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(cred.pid)
}
