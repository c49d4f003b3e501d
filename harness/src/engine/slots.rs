//! Job slots: how many trials may use the CPU at once (`--jobs`).
//!
//! A trial holds a slot while it runs, except while it only watches a
//! blocked call keep waiting for a fixed window (`await ... for: 250ms`) or
//! waits more than a few milliseconds for a reply: then it lends its slot to
//! the next trial and takes one back when the wait is over. Taking a slot
//! back goes before starting a new trial, but still waits until some running
//! trial ends or lends; that only makes a watched window longer, and replies
//! are timed by the actors' own clocks.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Debug)]
struct State {
    free: usize,
    /// Trials waiting to take back a slot they lent (they go first).
    returning: usize,
    /// New trials start in the order of their tickets.
    next_ticket: u64,
    serving: u64,
}

/// A place in the queue for a slot ([`JobSlots::ticket`]).
#[derive(Debug)]
pub(crate) struct Ticket(u64);

/// A counting semaphore with priority for returning lenders.
#[derive(Debug)]
pub(crate) struct JobSlots {
    state: Mutex<State>,
    changed: Condvar,
}

impl JobSlots {
    pub(crate) fn new(jobs: usize) -> JobSlots {
        JobSlots {
            state: Mutex::new(State {
                free: jobs.max(1),
                returning: 0,
                next_ticket: 0,
                serving: 0,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place in the queue: trials start in the order they took tickets
    /// (so a fixed trial order, `--seed`, is the order trials start in).
    pub(crate) fn ticket(&self) -> Ticket {
        let mut g = self.lock();
        g.next_ticket += 1;
        Ticket(g.next_ticket - 1)
    }

    /// Take a slot to start a trial, in ticket order (waits while none is
    /// free, a lender is waiting to take one back, or an earlier ticket
    /// has not been served).
    pub(crate) fn acquire(&self, ticket: Ticket) {
        let mut g = self.lock();
        while g.free == 0 || g.returning > 0 || g.serving != ticket.0 {
            g = self.changed.wait(g).unwrap_or_else(|e| e.into_inner());
        }
        g.free -= 1;
        g.serving += 1;
        drop(g);
        self.changed.notify_all();
    }

    /// Give a slot back.
    pub(crate) fn release(&self) {
        self.lock().free += 1;
        self.changed.notify_all();
    }

    /// Lend this trial's slot until the guard is dropped (or `back()` is
    /// called, which says how long taking it back waited).
    pub(crate) fn lend(&self) -> Lent<'_> {
        self.release();
        Lent { slots: Some(self) }
    }

    fn take_back(&self) -> Duration {
        let began = Instant::now();
        let mut g = self.lock();
        g.returning += 1;
        while g.free == 0 {
            g = self.changed.wait(g).unwrap_or_else(|e| e.into_inner());
        }
        g.free -= 1;
        g.returning -= 1;
        drop(g);
        self.changed.notify_all();
        began.elapsed()
    }
}

/// A slot lent by a trial that is only watching; dropping it takes the slot back.
#[must_use]
pub(crate) struct Lent<'a> {
    slots: Option<&'a JobSlots>,
}

impl Lent<'_> {
    /// Take the slot back now; returns how long that waited.
    pub(crate) fn back(mut self) -> Duration {
        self.slots
            .take()
            .map(JobSlots::take_back)
            .unwrap_or_default()
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.slots.take() {
            s.take_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn never_more_running_than_slots_and_lenders_come_back_first() {
        let slots = JobSlots::new(2);
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let enter = || {
            let n = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(n, Ordering::SeqCst);
        };
        let leave = || {
            running.fetch_sub(1, Ordering::SeqCst);
        };
        std::thread::scope(|s| {
            for k in 0..8 {
                let (slots, enter, leave) = (&slots, &enter, &leave);
                s.spawn(move || {
                    let t = slots.ticket();
                    slots.acquire(t);
                    enter();
                    if k % 2 == 0 {
                        leave();
                        let lent = slots.lend();
                        std::thread::yield_now();
                        let _ = lent.back();
                        enter();
                    }
                    leave();
                    slots.release();
                });
            }
        });
        assert_eq!(running.load(Ordering::SeqCst), 0);
        assert!(most.load(Ordering::SeqCst) <= 2, "{most:?}");
        assert_eq!(slots.lock().free, 2);
    }

    #[test]
    fn trials_start_in_ticket_order() {
        let slots = JobSlots::new(1);
        let order = Mutex::new(Vec::new());
        let tickets: Vec<Ticket> = (0..6).map(|_| slots.ticket()).collect();
        std::thread::scope(|s| {
            // Threads reach acquire in reverse order; tickets decide.
            for (k, t) in tickets.into_iter().enumerate().rev() {
                let (slots, order) = (&slots, &order);
                s.spawn(move || {
                    slots.acquire(t);
                    order.lock().unwrap_or_else(|e| e.into_inner()).push(k);
                    slots.release();
                });
            }
        });
        assert_eq!(
            *order.lock().unwrap_or_else(|e| e.into_inner()),
            vec![0, 1, 2, 3, 4, 5]
        );
    }
}
