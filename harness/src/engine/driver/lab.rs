//! Lab faults (a host cut off, crashed, a server restarted) and the agents that act for other hosts.

use super::*;

impl<'a> Driver<'a> {
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

    /// Inject a lab fault with the target's command for it; after a crash,
    /// the host's actors are gone (their locks are not released by them).
    pub(super) fn lab_fault(
        &mut self,
        fault: crate::plan::resolve::LabFault,
        host: Option<&str>,
        deadline: Instant,
    ) -> Result<(String, Observed), Infra> {
        let cmd = self
            .env
            .faults
            .get(&fault)
            .ok_or_else(|| Infra(format!("this target cannot inject `{}`", fault.as_str())))?
            .replace("{host}", host.unwrap_or(""));
        // A host being cut off counts as cut off from now on, whatever the
        // command does next (it may finish after its deadline): teardown
        // reconnects it.
        self.lab_faulted = true;
        if let (
            Some(h),
            crate::plan::resolve::LabFault::Disconnect | crate::plan::resolve::LabFault::Crash,
        ) = (host, fault)
        {
            self.severed.insert(h.to_string());
        }
        // A fault shared with the other targets' trials (a server restart)
        // is injected once, when all of them have reached it.
        let shared = !self.env.confined_faults.contains(&fault);
        let key = format!("{} {cmd}", fault.as_str());
        let result = match (self.env.barrier, shared) {
            (Some(b), true) => b
                .arrive(&key, deadline, &mut || run_fault_command(&cmd, deadline))
                .ok_or_else(|| {
                    Infra(format!(
                        "the other trials sharing `{cmd}` did not reach it in time"
                    ))
                })?,
            _ => run_fault_command(&cmd, deadline),
        };
        match result {
            Ok(true) => {}
            Ok(false) => {
                return Ok((
                    cmd,
                    Observed::Hung {
                        waited: Duration::ZERO,
                        process: "the fault command did not finish".into(),
                    },
                ))
            }
            Err(e) => return Err(Infra(e)),
        }
        if let (Some(h), crate::plan::resolve::LabFault::Reconnect) = (host, fault) {
            self.severed.remove(h);
        }
        if let (crate::plan::resolve::LabFault::Crash, Some(h)) = (fault, host) {
            let on: Vec<usize> = (0..self.actors.len())
                .filter(|&i| {
                    self.actors[i].alive
                        && self
                            .env
                            .hosts
                            .get(self.actors[i].host)
                            .is_some_and(|x| x.name == h)
                })
                .collect();
            for i in on {
                // A crash takes the whole host with it, its agent too: an actor
                // seen alive afterwards means the fault did not do what it
                // says. A killed process may take long to go (an NFS client
                // finishes its unlock once the network is back): killed is
                // enough. Without a view of the host (its agent went down
                // with it), the fault command's word is taken.
                let settle = deadline.min(Instant::now() + CRASH_SETTLE);
                if !self.actor_dying(i)
                    && self.wait_gone_seen(i, settle) == Some(false)
                    && !self.actor_dying(i)
                {
                    let a = &self.actors[i];
                    return Err(Infra(format!(
                        "actor {} (pid {}) on host {h} survived the crash fault `{cmd}`",
                        a.name,
                        a.pid.unwrap_or(0)
                    )));
                }
                let a = &mut self.actors[i];
                a.alive = false;
                a.chan = None;
                a.pending = None;
            }
        }
        Ok((cmd, Observed::Returned(Outcome::Done { ret: 0 })))
    }
}
