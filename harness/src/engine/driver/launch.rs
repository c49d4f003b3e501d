//! Starting actors (the first ones, forked and spawned ones, after exec) and tearing them down.

use super::*;

impl Driver<'_> {
    /// The actor replaces itself with a fresh image; close-on-exec descriptors go.
    pub(super) fn exec(&mut self, i: usize, deadline: Instant) -> Result<Observed, Infra> {
        let seq = self.pool.next_seq();
        self.pool.send(i, seq, Request::Exec)?;
        let pid = self.pool.actors[i].pid;
        let msg = {
            let a = &mut self.pool.actors[i];
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
                        self.pool.actors[i].name, hello.pid
                    )));
                }
                let a = &mut self.pool.actors[i];
                a.fds.retain(|_, f| !f.cloexec);
                for t in 0..self.pool.actors.len() {
                    if self.pool.actors[t].thread_of == Some(i) {
                        let th = &mut self.pool.actors[t];
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
                detail: self.pool.death_detail(i),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Kill everything the trial started and wait for it to be gone.
    pub(super) fn teardown(&mut self) -> Vec<String> {
        self.torn_down = true;
        let mut problems = Vec::new();
        // Impaired links first: a `net` step's impairment may outlive the
        // steps (it ends by itself after `for`); taken off now.
        for h in std::mem::take(&mut self.impaired) {
            let deadline = Instant::now() + Duration::from_secs(60);
            let Some(cmd) = self.env.faults.get(&crate::plan::resolve::LabFault::Net) else {
                continue;
            };
            let cmd = cmd
                .replace("{host}", &h)
                .replace("{for}", "0")
                .replace("{netem}", "off");
            match run_fault_command(&cmd, deadline) {
                Ok(true) => {}
                Ok(false) => problems.push(format!("restoring host {h}'s link: `{cmd}` hung")),
                Err(e) => problems.push(format!("restoring host {h}'s link: {e}")),
            }
        }
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
        let reap_within = if self.lab_faulted {
            LAB_REAP_TIMEOUT
        } else {
            REAP_TIMEOUT
        };
        problems.extend(self.pool.end_all(reap_within));
        problems
    }
}
