//! A fault shared by trials that run together: a server restart touches
//! every target of the server, so the trials of one scenario on all targets
//! run at once and the restart happens once, when each of them has reached
//! it. A trial that ends before it gets there leaves, and the others go on.

use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// What the shared fault came to: `Ok(true)` done, `Ok(false)` the command
/// did not finish in time, `Err` it failed.
pub(crate) type FaultResult = Result<bool, String>;

pub(crate) struct FaultBarrier {
    state: Mutex<State>,
    changed: Condvar,
}

struct State {
    /// Trials still taking part.
    participants: usize,
    /// Trials waiting at the current fault.
    arrived: usize,
    /// Bumped each time a fault has been injected.
    generation: u64,
    /// Someone is injecting the fault now.
    running: bool,
    /// The outcome of the last fault.
    last: Option<FaultResult>,
    /// What the participants waiting now inject (fault and command): all
    /// must be at the same fault.
    key: Option<String>,
}

impl FaultBarrier {
    pub(crate) fn new(participants: usize) -> Self {
        FaultBarrier {
            state: Mutex::new(State {
                participants,
                arrived: 0,
                generation: 0,
                running: false,
                last: None,
                key: None,
            }),
            changed: Condvar::new(),
        }
    }

    /// Wait until every participant has arrived at the fault `key` (its
    /// kind and command); the last one to arrive (or to find everyone else
    /// there) runs `inject`, and all get its result. `None` if the deadline
    /// passes before the fault is being injected; an error if another
    /// participant waits at a different fault.
    pub(crate) fn arrive(
        &self,
        key: &str,
        deadline: Instant,
        inject: &mut dyn FnMut() -> FaultResult,
    ) -> Option<FaultResult> {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match &g.key {
            Some(k) if g.arrived > 0 && k != key => {
                return Some(Err(format!(
                    "the trials sharing this fault reached different ones (`{k}` and `{key}`)"
                )))
            }
            _ => g.key = Some(key.to_string()),
        }
        g.arrived += 1;
        let generation = g.generation;
        loop {
            if g.generation != generation {
                return g.last.clone();
            }
            if !g.running && g.arrived >= g.participants {
                g.running = true;
                drop(g);
                let r = inject();
                let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
                g.last = Some(r.clone());
                g.arrived = 0;
                g.running = false;
                g.generation += 1;
                self.changed.notify_all();
                return Some(r);
            }
            let now = Instant::now();
            if g.running {
                // Being injected: its result is coming, whatever the deadline.
                g = self.changed.wait(g).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            if now >= deadline {
                g.arrived -= 1;
                self.changed.notify_all();
                return None;
            }
            g = self
                .changed
                .wait_timeout(g, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// A trial that is done takes no further part.
    pub(crate) fn leave(&self) {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        g.participants = g.participants.saturating_sub(1);
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn injects_once_for_all_and_copes_with_leavers() {
        let b = FaultBarrier::new(3);
        let runs = AtomicUsize::new(0);
        let deadline = Instant::now() + Duration::from_secs(10);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    let r = b.arrive("restart", deadline, &mut || {
                        runs.fetch_add(1, Ordering::SeqCst);
                        Ok(true)
                    });
                    assert_eq!(r, Some(Ok(true)));
                    b.leave();
                });
            }
            // The third trial ends without reaching the fault.
            s.spawn(|| b.leave());
        });
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Alone now: no wait.
        let b = FaultBarrier::new(1);
        assert_eq!(
            b.arrive("restart", deadline, &mut || Err("x".into())),
            Some(Err("x".into()))
        );
        // Nobody else comes: the deadline ends the wait.
        let b = FaultBarrier::new(2);
        let soon = Instant::now() + Duration::from_millis(50);
        assert_eq!(b.arrive("restart", soon, &mut || Ok(true)), None);
        // Two participants at different faults: refused, not paired.
        let b = FaultBarrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                let r = b.arrive("restart", deadline, &mut || Ok(true));
                b.leave();
                r
            });
            // Let the first one arrive, then come with another fault.
            while b.state.lock().map(|g| g.arrived).unwrap_or(1) == 0 {
                std::thread::yield_now();
            }
            let r = b.arrive("disconnect", deadline, &mut || Ok(true));
            assert!(matches!(r, Some(Err(_))), "{r:?}");
            b.leave();
        });
    }
}
