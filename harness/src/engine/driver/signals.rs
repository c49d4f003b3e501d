//! Signals to actors: stop, continue, kill, handled signals, and waiting for an actor to end.

use super::*;

impl Driver<'_> {
    /// The state letter of actor `i`'s task (None: gone).
    pub(super) fn state_of(&mut self, i: usize) -> Result<Option<char>, Infra> {
        let a = &self.pool.actors[i];
        let tid = a.tid.or(a.pid).unwrap_or(0);
        if a.local_view {
            return Ok(observe::read_state(tid).ok());
        }
        let host = a.host;
        match self
            .pool
            .agent_call(host, Request::ReadProc { tid }, Duration::from_secs(5))?
        {
            Outcome::Proc { snapshot } => Ok(snapshot.state),
            other => Err(Infra(format!("the agent answered {other:?}"))),
        }
    }

    /// Wait until actor `i`'s process has ended; true once it has.
    pub(super) fn wait_gone(&mut self, i: usize, deadline: Instant) -> bool {
        self.wait_gone_seen(i, deadline) == Some(true)
    }

    /// Whether actor `i` has been killed and is on its way out (a local one only).
    pub(super) fn actor_dying(&self, i: usize) -> bool {
        let a = &self.pool.actors[i];
        a.local_view && a.pid.is_some_and(observe::is_dying)
    }

    /// Whether actor `i` is gone by the deadline; `None` when its host's agent
    /// cannot be asked (a crashed host takes its agent with it).
    pub(super) fn wait_gone_seen(&mut self, i: usize, deadline: Instant) -> Option<bool> {
        let a = &self.pool.actors[i];
        if a.local_view {
            return Some(match &a.pidfd {
                Some(fd) => fd
                    .wait_exit(deadline.saturating_duration_since(Instant::now()))
                    .unwrap_or(false),
                None => false,
            });
        }
        let (host, pid) = (a.host, a.pid.unwrap_or(0));
        let left = deadline.saturating_duration_since(Instant::now());
        let req = Request::WaitGone {
            pid,
            timeout_ms: left.as_millis() as u64,
        };
        match self
            .pool
            .agent_call(host, req, left + Duration::from_secs(2))
        {
            Ok(Outcome::Done { ret }) => Some(ret == 1),
            Ok(_) => Some(false),
            Err(_) => None,
        }
    }

    /// SIGSTOP or SIGCONT, then wait until the kernel shows the new state.
    pub(super) fn stop_or_continue(&mut self, i: usize, stop: bool, deadline: Instant) -> Observed {
        let pid = self.pool.actors[i].pid.unwrap_or(0);
        let sig = if stop {
            Signal::SIGSTOP
        } else {
            Signal::SIGCONT
        };
        if let Err(e) = self.pool.send_signal(i, sig) {
            return Observed::Died {
                detail: format!("kill({pid}, {}) failed: {e}", sig.as_str()),
            };
        }
        let reached = |s: char| {
            if stop {
                matches!(s, 'T' | 't')
            } else {
                !matches!(s, 'T' | 't')
            }
        };
        let mut pause = Duration::from_micros(10);
        loop {
            match self.state_of(i) {
                Ok(Some(s)) if reached(s) => {
                    return Observed::Returned(Outcome::Done { ret: 0 });
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Observed::Died {
                        detail: format!("pid {pid} is gone"),
                    }
                }
                Err(Infra(e)) => {
                    return Observed::Died {
                        detail: format!("cannot see pid {pid}: {e}"),
                    }
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Observed::Hung {
                    waited: Duration::ZERO,
                    process: format!(
                        "did not {}: {}",
                        if stop { "stop" } else { "continue" },
                        describe_process(pid)
                    ),
                };
            }
            // The state changes as soon as the signal is delivered: poll it
            // with a short, growing pause, bounded by the deadline.
            let _ = nix::poll::ppoll(
                &mut [],
                Some(nix::sys::time::TimeSpec::from_duration(
                    pause.min(deadline - now),
                )),
                None,
            );
            pause = (pause * 2).min(Duration::from_millis(1));
        }
    }

    pub(super) fn signal_call(&self, i: usize, signal: Signal) -> String {
        let a = &self.pool.actors[i];
        match (a.thread_of, a.pid, a.tid) {
            (Some(_), Some(pid), Some(tid)) => format!("tgkill({pid}, {tid}, {})", signal.as_str()),
            _ => format!("kill({}, {})", a.pid.unwrap_or(0), signal.as_str()),
        }
    }

    /// Send a signal; for a fatal one wait until the process is gone.
    pub(super) fn signal(
        &mut self,
        i: usize,
        signal: Signal,
        fatal: bool,
        deadline: Instant,
    ) -> Observed {
        if let Err(e) = self.pool.send_signal(i, signal) {
            return Observed::Died {
                detail: format!("{} failed: {e}", self.signal_call(i, signal)),
            };
        }
        if !fatal {
            return Observed::Returned(Outcome::Done { ret: 0 });
        }
        self.wait_end(i, deadline, &format!("killed by {}", signal.as_str()))
    }

    /// Wait until the actor's process has ended (its locks are then gone).
    pub(super) fn wait_end(&mut self, i: usize, deadline: Instant, how: &str) -> Observed {
        let pid = self.pool.actors[i].pid.unwrap_or(0);
        let ended = self.wait_gone(i, deadline);
        if !ended {
            return Observed::Hung {
                waited: Duration::ZERO,
                process: format!("did not end: {}", describe_process(pid)),
            };
        }
        // The process and its threads are gone.
        for t in 0..self.pool.actors.len() {
            if t == i || self.pool.actors[t].thread_of == Some(i) {
                let a = &mut self.pool.actors[t];
                a.alive = false;
                a.pending = None;
                a.chan = None;
            }
        }
        let status = self
            .pool
            .exit_status(i)
            .map(|s| format!(", {s}"))
            .unwrap_or_default();
        Observed::Ended {
            how: format!("{how}{status}"),
        }
    }
}
