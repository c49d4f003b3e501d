//! Driving one trial: start the actors, perform each planned step through
//! them, observe and judge what happens, and tear everything down.
//!
//! Nothing here sleeps to "give it time": replies are awaited with poll(2)
//! against a deadline, and a call that should block is recognised from the
//! kernel's own state (see `observe`). Every wait ends at the step's
//! timeout, so a hung call is a failure that names the step, never a hang.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use crate::channel::{wait_readable, Channel, ChannelError};
use crate::judge::{self, Actors, Observed};
use crate::mech::{self, WaitSignature};
use crate::observe::{describe_process, BlockDetector, Evidence, Pidfd};
use crate::plan::{Op, PlannedStep, TrialPlan};
use crate::protocol::{Envelope, Hello, Outcome, Reply, Request, ACTOR_ARG, VERSION};
use crate::report::{Failure, StepRecord};

/// How long an actor may take to start and say hello.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long teardown waits for killed actors to disappear.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// What a trial needs from its surroundings.
pub struct TrialEnv<'a> {
    /// The executable to start actors from (this binary).
    pub exe: &'a Path,
    /// The trial's own scratch directory (exists, empty).
    pub scratch: &'a Path,
    /// Whether the target's locks are listed in /proc/locks with waiters.
    pub lock_lists: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    Error,
}

/// The result of driving one trial.
#[derive(Debug, Clone)]
pub struct TrialOutcome {
    pub status: Status,
    pub failure: Option<Failure>,
    /// For `Error`: what kept the trial from running.
    pub error: Option<String>,
    pub steps: Vec<StepRecord>,
    pub duration: Duration,
    /// Actor names and pids, for the record.
    pub actors: Vec<(String, Option<i32>)>,
    /// Problems during teardown (an actor that would not die).
    pub teardown: Vec<String>,
}

/// An error of lockcheck itself (not of the target) that stops the trial.
#[derive(Debug)]
struct Infra(String);

impl From<ChannelError> for Infra {
    fn from(e: ChannelError) -> Self {
        Infra(e.to_string())
    }
}

struct Pending {
    seq: u64,
    sig: Option<WaitSignature>,
    ino: Option<u64>,
    call: String,
}

struct ActorRt {
    name: String,
    pid: Option<i32>,
    child: Option<Child>,
    pidfd: Option<Pidfd>,
    chan: Option<Channel>,
    stderr: Option<OwnedFd>,
    /// Descriptor name → (number in the actor, inode of its file).
    fds: HashMap<String, (i32, u64)>,
    pending: Option<Pending>,
    alive: bool,
}

impl ActorRt {
    fn new(name: &str) -> Self {
        ActorRt {
            name: name.to_string(),
            pid: None,
            child: None,
            pidfd: None,
            chan: None,
            stderr: None,
            fds: HashMap::new(),
            pending: None,
            alive: false,
        }
    }

    /// What the actor printed on stderr, if anything (non-blocking).
    fn stderr_text(&mut self) -> String {
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

pub struct Driver<'a> {
    plan: &'a TrialPlan,
    env: &'a TrialEnv<'a>,
    actors: Vec<ActorRt>,
    pgid: Option<i32>,
    seq: u64,
    t0: Instant,
    /// When the previous step ended: completion latencies are measured from it.
    last_step_end: Instant,
}

impl<'a> Driver<'a> {
    pub fn new(plan: &'a TrialPlan, env: &'a TrialEnv<'a>) -> Self {
        let now = Instant::now();
        Driver {
            plan,
            env,
            actors: plan.actors.iter().map(|a| ActorRt::new(&a.name)).collect(),
            pgid: None,
            seq: 0,
            t0: now,
            last_step_end: now,
        }
    }

    /// Run the trial to its end and clean up.
    pub fn run(mut self) -> TrialOutcome {
        let mut steps = Vec::new();
        let mut failure = None;
        let mut error = None;
        match self.spawn_initial() {
            Err(Infra(e)) => error = Some(format!("could not start the actors: {e}")),
            Ok(()) => {
                for step in &self.plan.steps {
                    match self.run_step(step) {
                        Ok((record, fail)) => {
                            steps.push(record);
                            if fail.is_some() {
                                failure = fail;
                                break;
                            }
                        }
                        Err(Infra(e)) => {
                            error = Some(format!(
                                "step {} (line {}): {e}",
                                step.number, step.pos.line
                            ));
                            break;
                        }
                    }
                }
            }
        }
        let teardown = self.teardown();
        let status = if error.is_some() {
            Status::Error
        } else if failure.is_some() {
            Status::Fail
        } else {
            Status::Pass
        };
        TrialOutcome {
            status,
            failure,
            error,
            steps,
            duration: self.t0.elapsed(),
            actors: self
                .actors
                .iter()
                .map(|a| (a.name.clone(), a.pid))
                .collect(),
            teardown,
        }
    }

    fn spawn_initial(&mut self) -> Result<(), Infra> {
        let me = std::process::id().to_string();
        for (i, plan) in self.plan.actors.iter().enumerate() {
            if plan.forked_from.is_some() {
                continue;
            }
            let mut cmd = Command::new(self.env.exe);
            cmd.arg(ACTOR_ARG)
                .arg(&me)
                .current_dir(self.env.scratch)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(self.pgid.unwrap_or(0));
            let mut child = cmd
                .spawn()
                .map_err(|e| Infra(format!("spawning {}: {e}", self.env.exe.display())))?;
            let pid = child.id() as i32;
            if self.pgid.is_none() {
                self.pgid = Some(pid);
            }
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
            let a = &mut self.actors[i];
            a.chan = Some(
                Channel::new(stdout.into(), stdin.into())
                    .map_err(|e| Infra(format!("actor channel: {e}")))?,
            );
            a.pid = Some(pid);
            a.stderr = Some(stderr);
            a.pidfd = Pidfd::open(pid).ok();
            a.child = Some(child);
            a.alive = true;
        }
        // All actors start in parallel; now collect their greetings.
        let deadline = Instant::now() + START_TIMEOUT;
        for i in 0..self.actors.len() {
            if !self.actors[i].alive {
                continue;
            }
            self.expect_hello(i, deadline)?;
        }
        Ok(())
    }

    fn expect_hello(&mut self, i: usize, deadline: Instant) -> Result<(), Infra> {
        let a = &mut self.actors[i];
        let Some(chan) = a.chan.as_mut() else {
            return Err(Infra(format!("actor {} has no channel", a.name)));
        };
        match chan.recv_until::<Hello>(deadline) {
            Ok(Some(h)) => {
                if h.hello.version != VERSION {
                    return Err(Infra(format!(
                        "actor {} speaks protocol {} (expected {VERSION})",
                        a.name, h.hello.version
                    )));
                }
                if a.pid.is_some_and(|p| p != h.hello.pid) {
                    return Err(Infra(format!(
                        "actor {} says it is pid {}, expected {:?}",
                        a.name, h.hello.pid, a.pid
                    )));
                }
                a.pid = Some(h.hello.pid);
                Ok(())
            }
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

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn fd(&self, i: usize, name: &str) -> Result<(i32, u64), Infra> {
        self.actors[i].fds.get(name).copied().ok_or_else(|| {
            Infra(format!(
                "actor {} has no descriptor {name}",
                self.actors[i].name
            ))
        })
    }

    /// The request an actor makes for an operation, and how it looks while waiting.
    fn request_for(
        &self,
        i: usize,
        op: &Op,
    ) -> Result<(Request, Option<WaitSignature>, Option<u64>), Infra> {
        Ok(match op {
            Op::Open {
                path,
                access,
                create,
                excl,
                trunc,
                ..
            } => {
                let mut flags = match access {
                    crate::scenario::Access::Read => libc::O_RDONLY,
                    crate::scenario::Access::Write => libc::O_WRONLY,
                    crate::scenario::Access::ReadWrite => libc::O_RDWR,
                };
                if *create {
                    flags |= libc::O_CREAT;
                }
                if *excl {
                    flags |= libc::O_EXCL;
                }
                if *trunc {
                    flags |= libc::O_TRUNC;
                }
                let full = self.env.scratch.join(path);
                (
                    Request::Open {
                        path: full.to_string_lossy().into_owned(),
                        flags,
                    },
                    None,
                    None,
                )
            }
            Op::Close { fd } => (
                Request::Close {
                    fd: self.fd(i, fd)?.0,
                },
                None,
                None,
            ),
            Op::Dup { fd, .. } => (
                Request::Dup {
                    fd: self.fd(i, fd)?.0,
                },
                None,
                None,
            ),
            Op::Lock {
                fd,
                mech,
                kind,
                wait,
                start,
                len,
            } => {
                let (n, ino) = self.fd(i, fd)?;
                let (req, sig) = mech::lock_request(*mech, n, *kind, *wait, *start, *len);
                (req, sig, Some(ino))
            }
            Op::Test {
                fd,
                mech,
                mode,
                start,
                len,
            } => {
                let (n, _) = self.fd(i, fd)?;
                (
                    mech::test_request(*mech, n, *mode, *start, *len),
                    None,
                    None,
                )
            }
            Op::Write { fd, data, offset } => (
                Request::Write {
                    fd: self.fd(i, fd)?.0,
                    data: data.clone(),
                    offset: *offset,
                },
                None,
                None,
            ),
            Op::Read { fd, len, offset } => (
                Request::Read {
                    fd: self.fd(i, fd)?.0,
                    len: *len,
                    offset: *offset,
                },
                None,
                None,
            ),
            Op::Exit { code } => (Request::Exit { code: *code }, None, None),
            Op::Fork { .. } | Op::Await | Op::Signal { .. } => {
                return Err(Infra("not a plain request".into()))
            }
        })
    }

    fn run_step(&mut self, step: &PlannedStep) -> Result<(StepRecord, Option<Failure>), Infra> {
        let start = Instant::now();
        let deadline = start + step.timeout;
        let mut calls = Vec::new();
        let mut latency: Option<Duration> = None;
        let observed: Vec<Observed> = match &step.op {
            Op::Await => {
                let mut out = Vec::new();
                for &i in &step.actors {
                    calls.push(
                        self.actors[i]
                            .pending
                            .as_ref()
                            .map(|p| p.call.clone())
                            .unwrap_or_default(),
                    );
                    let (obs, after) = self.await_pending(i, deadline, &step.expect)?;
                    latency = latency.max(after);
                    out.push(obs);
                }
                out
            }
            Op::Signal { signal } => {
                let mut out = Vec::new();
                for &i in &step.actors {
                    calls.push(format!(
                        "kill({}, {})",
                        self.actors[i].pid.unwrap_or(0),
                        signal.as_str()
                    ));
                    out.push(self.signal_and_reap(i, *signal, deadline));
                }
                out
            }
            Op::Exit { .. } => {
                let mut out = Vec::new();
                for &i in &step.actors {
                    let (req, _, _) = self.request_for(i, &step.op)?;
                    calls.push(mech::describe_request(&req));
                    let seq = self.next_seq();
                    self.send(i, seq, req)?;
                    out.push(self.wait_end(i, deadline, "exited"));
                }
                out
            }
            Op::Fork { child } => {
                let parent = step.actors[0];
                calls.push("fork()".into());
                vec![self.fork(parent, *child, deadline)?]
            }
            op => {
                // Send to every actor first, so that a group step is a race.
                let mut sent = Vec::new();
                for &i in &step.actors {
                    let (req, sig, ino) = self.request_for(i, op)?;
                    let call = mech::describe_request(&req);
                    calls.push(call.clone());
                    let seq = self.next_seq();
                    self.send(i, seq, req)?;
                    sent.push((i, seq, sig, ino, call));
                }
                let mut out = Vec::new();
                for (i, seq, sig, ino, call) in sent {
                    let obs = self.wait_call(i, seq, deadline, sig, ino)?;
                    if matches!(obs, Observed::Blocked(_)) {
                        self.actors[i].pending = Some(Pending {
                            seq,
                            sig,
                            ino,
                            call,
                        });
                    }
                    self.after_call(i, op, &obs);
                    out.push(obs);
                }
                out
            }
        };
        let end = Instant::now();
        self.last_step_end = end;
        let names: Vec<String> = self.actors.iter().map(|a| a.name.clone()).collect();
        let pids: Vec<Option<i32>> = self.actors.iter().map(|a| a.pid).collect();
        let who = Actors {
            names: &names,
            pids: &pids,
        };
        let verdict = judge::judge(&step.expect, &observed, &who);
        let step_actors: Vec<String> = step.actors.iter().map(|&i| names[i].clone()).collect();
        let observed_text: Vec<String> = observed.iter().map(judge::describe_observed).collect();
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
            start_ms: crate::report::ms(start.duration_since(self.t0)),
            elapsed_ms: crate::report::ms(end.duration_since(start)),
            completed_after_ms: latency.map(crate::report::ms),
        };
        let failure = verdict.err().map(|why| Failure {
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
        });
        Ok((record, failure))
    }

    fn send(&mut self, i: usize, seq: u64, req: Request) -> Result<(), Infra> {
        let a = &mut self.actors[i];
        let chan = a
            .chan
            .as_mut()
            .ok_or_else(|| Infra(format!("actor {} has no channel", a.name)))?;
        match chan.send(&Envelope { seq, req }) {
            Ok(()) | Err(ChannelError::Closed) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Wait for the reply to `seq`, watching for the call to block.
    fn wait_call(
        &mut self,
        i: usize,
        seq: u64,
        deadline: Instant,
        sig: Option<WaitSignature>,
        ino: Option<u64>,
    ) -> Result<Observed, Infra> {
        let pid = self.actors[i].pid.unwrap_or(0);
        let mut detector = sig.map(|s| BlockDetector::new(pid, s, ino, self.env.lock_lists));
        let began = Instant::now();
        let mut interval = Duration::from_micros(20);
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
                None => {}
            }
            if let Some(d) = detector.as_mut() {
                if let Some(ev) = d.probe() {
                    return Ok(Observed::Blocked(ev));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Observed::Hung {
                    waited: now.duration_since(began),
                    process: describe_process(pid),
                });
            }
            interval = (interval * 2)
                .min(Duration::from_millis(1))
                .min(deadline - now);
        }
    }

    /// One receive attempt: `Some(Ok(reply))`, `Some(Err(observation))` if the actor died, `None` if nothing came.
    fn recv(&mut self, i: usize, wait: Duration) -> Result<Option<Result<Reply, Observed>>, Infra> {
        let a = &mut self.actors[i];
        let Some(chan) = a.chan.as_mut() else {
            return Err(Infra(format!("actor {} has no channel", a.name)));
        };
        match chan.recv_within::<Reply>(wait) {
            Ok(Some(r)) => Ok(Some(Ok(r))),
            Ok(None) => Ok(None),
            Err(ChannelError::Closed) => {
                let detail = self.death_detail(i);
                Ok(Some(Err(Observed::Died { detail })))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// How an actor ended, with what it printed, after its channel closed.
    fn death_detail(&mut self, i: usize) -> String {
        let a = &mut self.actors[i];
        a.alive = false;
        a.pending = None;
        if let Some(fd) = &a.pidfd {
            let _ = fd.wait_exit(Duration::from_millis(500));
        }
        let status = a
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
            .map(|s| s.to_string())
            .unwrap_or_else(|| "ended".into());
        let err = a.stderr_text();
        if err.is_empty() {
            status
        } else {
            format!("{status}; stderr: {err}")
        }
    }

    /// Bookkeeping after a call returned: descriptor tables.
    fn after_call(&mut self, i: usize, op: &Op, obs: &Observed) {
        let a = &mut self.actors[i];
        match (op, obs) {
            (Op::Open { fd, .. }, Observed::Returned(Outcome::Opened { fd: n, ino, .. }))
            | (Op::Dup { new: fd, .. }, Observed::Returned(Outcome::Opened { fd: n, ino, .. })) => {
                a.fds.insert(fd.clone(), (*n, *ino));
            }
            (Op::Close { fd }, Observed::Returned(_)) => {
                a.fds.remove(fd);
            }
            _ => {}
        }
    }

    fn await_pending(
        &mut self,
        i: usize,
        deadline: Instant,
        expect: &crate::plan::Expectation,
    ) -> Result<(Observed, Option<Duration>), Infra> {
        let Some(p) = self.actors[i].pending.take() else {
            return Err(Infra(format!(
                "actor {} has no pending call",
                self.actors[i].name
            )));
        };
        let released_at = self.last_step_end;
        let pid = self.actors[i].pid.unwrap_or(0);
        if matches!(expect, crate::plan::Expectation::Blocks) {
            // Still waiting? Observe it again from the kernel's state.
            let obs = self.wait_call(i, p.seq, deadline, p.sig, p.ino)?;
            if matches!(obs, Observed::Blocked(_)) {
                self.actors[i].pending = Some(p);
            }
            return Ok((obs, None));
        }
        let mut interval = Duration::from_micros(20);
        loop {
            match self.recv(i, interval)? {
                Some(Ok(reply)) => {
                    if reply.seq != p.seq {
                        return Err(Infra(format!(
                            "actor {} answered request {} while {} was outstanding",
                            self.actors[i].name, reply.seq, p.seq
                        )));
                    }
                    return Ok((
                        Observed::Returned(reply.outcome),
                        Some(released_at.elapsed()),
                    ));
                }
                Some(Err(died)) => return Ok((died, None)),
                None => {}
            }
            let now = Instant::now();
            if now >= deadline {
                // Say what it is doing instead of completing.
                let mut d = p
                    .sig
                    .map(|s| BlockDetector::new(pid, s, p.ino, self.env.lock_lists));
                let still = d.as_mut().and_then(|d| {
                    // Two reads make a stable observation.
                    d.probe();
                    d.probe()
                });
                let waited = now.duration_since(released_at);
                let obs = match still {
                    Some(ev) => Observed::Blocked(Evidence {
                        text: format!("still waiting {} ms later: {}", waited.as_millis(), ev.text),
                    }),
                    None => Observed::Hung {
                        waited,
                        process: describe_process(pid),
                    },
                };
                self.actors[i].pending = Some(p);
                return Ok((obs, None));
            }
            interval = (interval * 2)
                .min(Duration::from_millis(1))
                .min(deadline - now);
        }
    }

    fn signal_and_reap(&mut self, i: usize, signal: Signal, deadline: Instant) -> Observed {
        let pid = self.actors[i].pid.unwrap_or(0);
        if let Err(e) = kill(Pid::from_raw(pid), signal) {
            return Observed::Died {
                detail: format!("kill({pid}, {}) failed: {e}", signal.as_str()),
            };
        }
        self.actors[i].pending = None;
        self.wait_end(i, deadline, &format!("killed by {}", signal.as_str()))
    }

    /// Wait until the actor's process has ended (its locks are then gone).
    fn wait_end(&mut self, i: usize, deadline: Instant, how: &str) -> Observed {
        let a = &mut self.actors[i];
        let pid = a.pid.unwrap_or(0);
        let ended = match &a.pidfd {
            Some(fd) => fd
                .wait_exit(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or(false),
            None => false,
        };
        if !ended {
            return Observed::Hung {
                waited: Duration::ZERO,
                process: format!("did not end: {}", describe_process(pid)),
            };
        }
        a.alive = false;
        a.pending = None;
        a.chan = None;
        let status = a
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
            .map(|s| format!(", {s}"))
            .unwrap_or_default();
        Observed::Ended {
            how: format!("{how}{status}"),
        }
    }

    fn fork(&mut self, parent: usize, child: usize, deadline: Instant) -> Result<Observed, Infra> {
        let name = format!(
            "lockcheck.{}.{}.{}",
            std::process::id(),
            SOCKET_COUNTER.fetch_add(1, Ordering::Relaxed),
            rand_suffix()
        );
        let addr = SocketAddr::from_abstract_name(name.as_bytes())
            .map_err(|e| Infra(format!("socket name: {e}")))?;
        let listener =
            UnixListener::bind_addr(&addr).map_err(|e| Infra(format!("binding {name}: {e}")))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Infra(format!("listener: {e}")))?;
        let seq = self.next_seq();
        self.send(parent, seq, Request::Fork { socket: name })?;
        let obs = self.wait_call(parent, seq, deadline, None, None)?;
        let child_pid = match &obs {
            Observed::Returned(Outcome::Forked { pid }) => *pid,
            _ => return Ok(obs),
        };
        // The child connects back; only that process may take the channel.
        let stream = loop {
            match listener.accept() {
                Ok((s, _)) => {
                    if peer_pid(&s) == Some(child_pid) {
                        break s;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(Observed::Hung {
                            waited: Duration::ZERO,
                            process: format!(
                                "forked child did not connect: {}",
                                describe_process(child_pid)
                            ),
                        });
                    }
                    wait_readable(listener.as_fd(), left)
                        .map_err(|e| Infra(format!("waiting for the forked child: {e}")))?;
                }
                Err(e) => return Err(Infra(format!("accepting the forked child: {e}"))),
            }
        };
        let write_half = stream
            .try_clone()
            .map_err(|e| Infra(format!("socket: {e}")))?;
        let inherited = self.actors[parent].fds.clone();
        let c = &mut self.actors[child];
        c.chan = Some(
            Channel::new(OwnedFd::from(stream), OwnedFd::from(write_half))
                .map_err(|e| Infra(format!("child channel: {e}")))?,
        );
        c.pid = Some(child_pid);
        c.pidfd = Pidfd::open(child_pid).ok();
        c.alive = true;
        c.fds = inherited;
        self.expect_hello(child, deadline)?;
        Ok(obs)
    }

    /// Kill everything the trial started and wait for it to be gone.
    fn teardown(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(pg) = self.pgid {
            let _ = killpg(Pid::from_raw(pg), Signal::SIGKILL);
        }
        for a in &mut self.actors {
            a.chan = None;
            if let (true, Some(pid)) = (a.alive, a.pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        let deadline = Instant::now() + REAP_TIMEOUT;
        for a in &mut self.actors {
            let gone = match &a.pidfd {
                Some(fd) => fd
                    .wait_exit(deadline.saturating_duration_since(Instant::now()))
                    .unwrap_or(true),
                None => true,
            };
            if let Some(child) = a.child.as_mut() {
                if gone {
                    let _ = child.wait();
                } else {
                    let _ = child.try_wait();
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
        problems
    }
}

fn rand_suffix() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most b.len() bytes into b.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == 8 {
        u64::from_ne_bytes(b)
    } else {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0)
    }
}

fn peer_pid(s: &std::os::unix::net::UnixStream) -> Option<i32> {
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
