//! Lab faults (a host cut off, crashed, a server restarted) and the agents that act for other hosts.

use super::*;

impl<'a> Driver<'a> {
    /// Inject a lab fault with the target's command for it; after a crash,
    /// the host's actors are gone (their locks are not released by them).
    pub(super) fn lab_fault(
        &mut self,
        fault: crate::plan::resolve::LabFault,
        host: Option<&str>,
        net: Option<&crate::plan::resolve::NetFault>,
        deadline: Instant,
    ) -> Result<(String, Observed), Infra> {
        let mut cmd = self
            .env
            .faults
            .get(&fault)
            .ok_or_else(|| Infra(format!("this target cannot inject `{}`", fault.as_str())))?
            .replace("{host}", host.unwrap_or(""));
        if let Some(n) = net {
            let lasts = match n.lasts {
                crate::spec::scenario::Bound::Fixed(d) => d,
                crate::spec::scenario::Bound::Leases(x) => self.env.lease.mul_f64(x),
            };
            cmd = cmd
                .replace("{for}", &format!("{:.3}", lasts.as_secs_f64()))
                .replace("{netem}", &n.netem);
            // Impaired from now on, whatever the command does next: teardown
            // takes the impairment off (`{netem}` is `off`).
            if let Some(h) = host {
                self.impaired.insert(h.to_string());
            }
        }
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
            let on: Vec<usize> = (0..self.pool.actors.len())
                .filter(|&i| {
                    self.pool.actors[i].alive
                        && self
                            .env
                            .hosts
                            .get(self.pool.actors[i].host)
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
                    let a = &self.pool.actors[i];
                    return Err(Infra(format!(
                        "actor {} (pid {}) on host {h} survived the crash fault `{cmd}`",
                        a.name,
                        a.pid.unwrap_or(0)
                    )));
                }
                let a = &mut self.pool.actors[i];
                a.alive = false;
                a.chan = None;
                a.pending = None;
            }
        }
        Ok((cmd, Observed::Returned(Outcome::Done { ret: 0 })))
    }
}
