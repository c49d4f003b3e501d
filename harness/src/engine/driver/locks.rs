//! What /proc/locks shows for an actor's lock (`listed` steps).

use super::*;

impl Driver<'_> {
    /// /proc/locks of the actor's own host (its agent reads it elsewhere),
    /// with the device name this target's locks carry there when known.
    pub(super) fn proc_locks_of(
        &mut self,
        i: usize,
    ) -> Result<(Vec<observe::LockLine>, Option<String>), Infra> {
        if self.pool.actors[i].local_view {
            return Ok((
                observe::read_proc_locks().unwrap_or_default(),
                self.env.locks_dev.clone(),
            ));
        }
        let host = self.pool.actors[i].host;
        let tid = self.pool.actors[i].pid.unwrap_or(0);
        match self
            .pool
            .agent_call(host, Request::ReadProc { tid }, Duration::from_secs(5))?
        {
            Outcome::Proc { mut snapshot } => {
                use crate::actor::observe::ProcView;
                Ok((snapshot.locks(), None))
            }
            other => Err(Infra(format!("the agent answered {other:?}"))),
        }
    }

    /// Look for the actor's lock on a descriptor's file in /proc/locks.
    pub(super) fn listed(
        &mut self,
        i: usize,
        fd: &str,
        mech: Mechanism,
        mode: LockMode,
        start: i64,
        len: i64,
    ) -> Result<Observed, Infra> {
        let f = self.pool.fd(i, fd)?.clone();
        let (kind, pid) = match mech {
            Mechanism::Flock => ("FLOCK", i64::from(self.pool.actors[i].pid.unwrap_or(0))),
            Mechanism::Posix => ("POSIX", i64::from(self.pool.actors[i].pid.unwrap_or(0))),
            Mechanism::Ofd => ("OFDLCK", -1),
            Mechanism::Lease => ("LEASE", i64::from(self.pool.actors[i].pid.unwrap_or(0))),
            Mechanism::Pidfile | Mechanism::Lockfile => {
                return Err(Infra("lock files are not in /proc/locks".into()))
            }
        };
        let access = match mode {
            LockMode::Exclusive => "WRITE",
            LockMode::Shared => "READ",
        };
        // The range as the kernel stores it (a negative length locks the
        // bytes before `start`); an impossible range cannot be listed.
        let Some((want_start, want_end)) = listed_range(start, len) else {
            return Ok(Observed::NotListed(format!(
                "start {start} len {len} is not a lockable range"
            )));
        };
        // /proc/locks is printed a page per read() and walked by position, so
        // a line can be skipped when locks ahead of it go away between pages
        // (other trials run in parallel). A line seen once was there; one not
        // seen is only reported missing after several complete readings.
        let mut all_lines = Vec::new();
        let mut found = None;
        for _ in 0..observe::LISTING_READS {
            let (lines, dev) = self.proc_locks_of(i)?;
            found = lines
                .iter()
                .find(|l| {
                    !l.blocked
                        && l.ino == f.ino
                        && dev.as_ref().is_none_or(|d| *d == l.dev)
                        && l.kind == kind
                        && l.pid == pid
                        && l.access == access
                        && (!mech.has_ranges() || (l.start == want_start && l.end == want_end))
                })
                .cloned();
            all_lines = lines;
            if found.is_some() {
                break;
            }
            std::thread::yield_now();
        }
        Ok(match found {
            Some(l) => Observed::Listed(l.raw.clone()),
            None => {
                let all: Vec<String> = all_lines
                    .into_iter()
                    .filter(|l| l.ino == f.ino)
                    .map(|l| l.raw)
                    .collect();
                Observed::NotListed(if all.is_empty() {
                    format!("no line for inode {}", f.ino)
                } else {
                    format!("lines for inode {}: {}", f.ino, all.join(" | "))
                })
            }
        })
    }
}
