//! Judging: does what was observed satisfy what the scenario expects?
//! Also renders both sides in words for reports.

use std::time::Duration;

use crate::actor::observe::Evidence;
use crate::actor::protocol::{record_text, LockDesc, Outcome};
use crate::plan::mech::describe_lock;
use crate::plan::resolve::{Expectation, PidExpect};
use crate::spec::errno;
use crate::spec::scenario::{LockMode, RecordsSpec};

/// What happened when a step ran, for one actor.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Observed {
    /// The call returned.
    Returned(Outcome),
    /// The call is waiting in the kernel.
    Blocked(Evidence),
    /// No reply within the timeout, and not a recognised lock wait.
    Hung { waited: Duration, process: String },
    /// The process ended as the step asked (exit or a fatal signal).
    Ended { how: String },
    /// The actor ended by itself in the middle of a call.
    Died { detail: String },
    /// `listed`: /proc/locks shows the lock (the line).
    Listed(String),
    /// `listed`: /proc/locks does not show it (what it shows for the file).
    NotListed(String),
    /// A blocked call that returned too early: before the step that should
    /// have let it complete (its return time says so, whenever it was read).
    Early {
        outcome: Outcome,
        during: String,
        before_step: usize,
        ms_before: f64,
    },
}

/// Names and pids the judge needs to resolve `pid: actor`.
pub(crate) struct Actors<'a> {
    pub(crate) names: &'a [String],
    pub(crate) pids: &'a [Option<i32>],
}

fn lock_matches(
    l: &LockDesc,
    mode: Option<LockMode>,
    start: Option<i64>,
    len: Option<i64>,
    pid: &PidExpect,
    actors: &Actors<'_>,
) -> bool {
    if i32::from(l.l_type) == libc::F_UNLCK {
        return false;
    }
    let mode_ok = match mode {
        None => true,
        Some(LockMode::Exclusive) => i32::from(l.l_type) == libc::F_WRLCK,
        Some(LockMode::Shared) => i32::from(l.l_type) == libc::F_RDLCK,
    };
    let pid_ok = match pid {
        PidExpect::Any => true,
        PidExpect::Raw(n) => i64::from(l.pid) == *n,
        PidExpect::Actor(i) => actors.pids.get(*i).copied().flatten() == Some(l.pid),
    };
    mode_ok && pid_ok && start.is_none_or(|s| s == l.start) && len.is_none_or(|n| n == l.len)
}

/// F_GETLK found no conflict: fcntl(2) "returns F_UNLCK in the l_type
/// field of lock and leaves the other fields of the structure unchanged".
fn kept_fields(got: &LockDesc, asked: &LockDesc) -> bool {
    (got.l_whence, got.start, got.len, got.pid)
        == (asked.l_whence, asked.start, asked.len, asked.pid)
}

/// The file a `records` step should have left.
fn expected_records(r: &RecordsSpec) -> String {
    (0..r.count)
        .map(|j| record_text(j, j % r.writers.max(1), r.size))
        .collect()
}

/// The records of `data` that are not what their writer wrote.
fn lost_records(r: &RecordsSpec, data: &str) -> Vec<u32> {
    let bytes = data.as_bytes();
    let size = r.size as usize;
    (0..r.count)
        .filter(|&j| {
            let want = record_text(j, j % r.writers.max(1), r.size);
            let at = j as usize * size;
            bytes.get(at..at + size) != Some(want.as_bytes())
        })
        .collect()
}

/// A `records` file, against what it should be: which records are wrong,
/// and what the first of them holds.
fn describe_records(r: &RecordsSpec, data: &str) -> String {
    let lost = lost_records(r, data);
    let size = r.size as usize;
    let Some(&first) = lost.first() else {
        return format!(
            "all {} records intact ({} bytes, {} expected)",
            r.count,
            data.len(),
            expected_records(r).len()
        );
    };
    let at = first as usize * size;
    let got: String = data
        .get(at..(at + size).min(data.len()))
        .unwrap_or("")
        .chars()
        .take(24)
        .collect();
    let shown: Vec<String> = lost.iter().take(8).map(|j| j.to_string()).collect();
    format!(
        "{} of {} records wrong or missing (records {}{}); record {first} (writer {}) holds {got:?}, should start {:?}",
        lost.len(),
        r.count,
        shown.join(", "),
        if lost.len() > 8 { ", ..." } else { "" },
        first % r.writers.max(1),
        record_text(first, first % r.writers.max(1), r.size).chars().take(24).collect::<String>()
    )
}

/// The observation in words, where the expectation gives a better view of
/// it than the bare outcome (a `records` file: which records are wrong).
pub(crate) fn describe_observed_for(exp: &Expectation, obs: &Observed) -> String {
    match (exp, obs) {
        (Expectation::Records(r), Observed::Returned(Outcome::Data { data })) => {
            describe_records(r, data)
        }
        _ => describe_observed(obs),
    }
}

/// Whether one observation satisfies one expectation.
pub(crate) fn satisfies(exp: &Expectation, obs: &Observed, actors: &Actors<'_>) -> bool {
    use Expectation as E;
    match (exp, obs) {
        (E::Any, _) => !matches!(obs, Observed::Died { .. } | Observed::Hung { .. }),
        (E::OneOf(list), _) => list.iter().any(|e| satisfies(e, obs, actors)),
        (E::Blocks, Observed::Blocked(_)) => true,
        (E::Ok, Observed::Ended { .. }) => true,
        (E::Ok, Observed::Returned(o)) => !o.is_failure(),
        (E::Conflict(errnos), Observed::Returned(Outcome::Failed { errno })) => {
            errnos.contains(errno)
        }
        (E::Ok, Observed::Listed(_)) => true,
        (E::Unlocked, Observed::NotListed(_)) => true,
        (E::Lease(mode), Observed::Returned(Outcome::Leased { l_type })) => {
            *l_type == mode.l_type()
        }
        (E::Errno { value, .. }, Observed::Returned(Outcome::Failed { errno })) => errno == value,
        (E::Unlocked, Observed::Returned(Outcome::Lock { lock, asked })) => {
            i32::from(lock.l_type) == libc::F_UNLCK && asked.is_none_or(|a| kept_fields(lock, &a))
        }
        (
            E::Holder {
                mode,
                start,
                len,
                pid,
            },
            Observed::Returned(Outcome::Lock { lock, .. }),
        ) => lock_matches(lock, *mode, *start, *len, pid, actors),
        (E::Data(d), Observed::Returned(Outcome::Data { data })) => d == data,
        (E::Records(r), Observed::Returned(Outcome::Data { data })) => {
            lost_records(r, data).is_empty() && data.len() == expected_records(r).len()
        }
        _ => false,
    }
}

/// Whether every observation that fails `exp` would pass if the lock owner's
/// pid were not checked: F_GETLK found the right lock and reported another
/// owner (NFSv3 reports OFD locks with a pid, not -1).
pub(crate) fn only_owner_differs(exp: &Expectation, obs: &[Observed], actors: &Actors<'_>) -> bool {
    let Expectation::Holder {
        mode,
        start,
        len,
        pid,
    } = exp
    else {
        return false;
    };
    if matches!(pid, PidExpect::Any) {
        return false;
    }
    let relaxed = Expectation::Holder {
        mode: *mode,
        start: *start,
        len: *len,
        pid: PidExpect::Any,
    };
    obs.iter()
        .all(|o| satisfies(exp, o, actors) || satisfies(&relaxed, o, actors))
}

/// Whether every observation that fails `exp` only gave *less* than expected:
/// a lock refused (EAGAIN, EACCES, EDEADLK) or still waiting where it should
/// have been granted, a deadlock waited on instead of reported, or F_GETLK
/// reporting a lock where none should be. None of these grants a lock that
/// should have been refused or loses data; a filesystem family that refuses
/// by design (`divergent-on`) is divergent there, not unsafe.
pub(crate) fn only_refused(exp: &Expectation, obs: &[Observed], actors: &Actors<'_>) -> bool {
    // A race with too few winners: the rest were refused or still wait,
    // nobody was granted beside the winners.
    if let Expectation::Winners { count, .. } = exp {
        let won = |o: &&Observed| satisfies(&Expectation::Ok, o, actors);
        let winners = obs.iter().filter(won).count();
        let lost_only = obs.iter().filter(|o| !won(o)).all(|o| {
            matches!(
                o,
                Observed::Blocked(_)
                    | Observed::Hung { .. }
                    | Observed::Returned(Outcome::Failed {
                        errno: libc::EAGAIN | libc::EACCES | libc::EDEADLK
                    })
            )
        });
        return winners < *count as usize && lost_only;
    }
    let granted = matches!(exp, Expectation::Ok);
    let refusal = |o: &Observed| match o {
        Observed::Blocked(_) | Observed::Hung { .. } => granted || deadlock_expected(exp),
        Observed::Returned(Outcome::Failed { errno }) => {
            granted && matches!(*errno, libc::EAGAIN | libc::EACCES | libc::EDEADLK)
        }
        Observed::Returned(Outcome::Lock { lock, .. }) => {
            matches!(exp, Expectation::Unlocked) && i32::from(lock.l_type) != libc::F_UNLCK
        }
        _ => false,
    };
    let failing: Vec<&Observed> = obs.iter().filter(|o| !satisfies(exp, o, actors)).collect();
    !failing.is_empty() && failing.into_iter().all(refusal)
}

fn deadlock_expected(exp: &Expectation) -> bool {
    matches!(exp, Expectation::Errno { value, .. } if *value == libc::EDEADLK)
}

/// Judge a step's observations (one per actor). `Err` explains the mismatch.
pub(crate) fn judge(
    exp: &Expectation,
    obs: &[Observed],
    actors: &Actors<'_>,
) -> Result<(), String> {
    if let Expectation::Winners { count, others } = exp {
        let (winners, others_ok) = race(others, obs.iter(), actors);
        if winners == *count as usize && others_ok {
            return Ok(());
        }
        return Err(format!(
            "{winners} of {} succeeded{}",
            obs.len(),
            if others_ok {
                String::new()
            } else {
                format!(
                    ", and not all others observed {}",
                    describe_expectation(others, actors)
                )
            }
        ));
    }
    let bad: Vec<usize> = (0..obs.len())
        .filter(|&i| !satisfies(exp, &obs[i], actors))
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!("{} of {} actors did not", bad.len(), obs.len()))
    }
}

/// A race's observations: how many succeeded, and whether all the others
/// observed what `others` expects.
fn race<'o>(
    others: &Expectation,
    obs: impl Iterator<Item = &'o Observed> + Clone,
    actors: &Actors<'_>,
) -> (usize, bool) {
    let won = |o: &&Observed| satisfies(&Expectation::Ok, o, actors);
    let winners = obs.clone().filter(won).count();
    let others_ok = obs
        .filter(|o| !won(o))
        .all(|o| satisfies(others, o, actors));
    (winners, others_ok)
}

/// Whether the step would pass if each observation `unknown` picks had been
/// whatever the expectation wanted: a call that ran out of space or
/// descriptors says nothing, but the others still must fit (two winners of
/// an exclusive race fail the step whatever a third actor saw).
pub(crate) fn passes_without(
    exp: &Expectation,
    obs: &[Observed],
    actors: &Actors<'_>,
    unknown: impl Fn(&Observed) -> bool,
) -> bool {
    let known: Vec<&Observed> = obs.iter().filter(|o| !unknown(o)).collect();
    let skipped = obs.len() - known.len();
    if let Expectation::Winners { count, others } = exp {
        let (winners, others_ok) = race(others, known.iter().copied(), actors);
        let count = *count as usize;
        return others_ok && winners <= count && winners + skipped >= count;
    }
    known.iter().all(|o| satisfies(exp, o, actors))
}

fn pid_text(pid: &PidExpect, actors: &Actors<'_>) -> String {
    match pid {
        PidExpect::Any => String::new(),
        PidExpect::Raw(n) => format!(" pid {n}"),
        PidExpect::Actor(i) => {
            let name = actors.names.get(*i).map(String::as_str).unwrap_or("?");
            match actors.pids.get(*i).copied().flatten() {
                Some(p) => format!(" pid {p} ({name})"),
                None => format!(" pid of {name}"),
            }
        }
    }
}

/// The expectation in words.
pub(crate) fn describe_expectation(exp: &Expectation, actors: &Actors<'_>) -> String {
    use Expectation as E;
    match exp {
        E::Ok => "ok".into(),
        E::Conflict(errnos) => format!(
            "conflict ({})",
            errnos
                .iter()
                .map(|e| errno::name(*e))
                .collect::<Vec<_>>()
                .join(" or ")
        ),
        E::Lease(mode) => format!("lease {}", mode.as_str()),
        E::Errno { value, name } => {
            let canonical = errno::name(*value);
            if canonical == *name {
                name.clone()
            } else {
                format!("{name} ({canonical})")
            }
        }
        E::Blocks => "the call blocks (seen waiting in the kernel)".into(),
        E::Unlocked => "no conflicting lock (F_UNLCK)".into(),
        E::Holder {
            mode,
            start,
            len,
            pid,
        } => {
            let mut s = "a conflicting ".to_string();
            s.push_str(match mode {
                Some(LockMode::Exclusive) => "F_WRLCK",
                Some(LockMode::Shared) => "F_RDLCK",
                None => "lock",
            });
            match (start, len) {
                (Some(s0), Some(0)) => s.push_str(&format!(" {s0}..EOF")),
                (Some(s0), Some(l)) => s.push_str(&format!(" {s0}+{l}")),
                (Some(s0), None) => s.push_str(&format!(" from {s0}")),
                (None, Some(l)) => s.push_str(&format!(" of length {l}")),
                (None, None) => {}
            }
            s.push_str(&pid_text(pid, actors));
            s
        }
        E::Data(d) => format!("data {d:?}"),
        E::Records(r) => format!(
            "all {} records of {} bytes, interleaved among {} writers",
            r.count, r.size, r.writers
        ),
        E::Any => "anything (recorded)".into(),
        E::OneOf(list) => list
            .iter()
            .map(|e| describe_expectation(e, actors))
            .collect::<Vec<_>>()
            .join(" or "),
        E::Winners { count, others } => format!(
            "exactly {count} succeed{}, the others: {}",
            if *count == 1 { "s" } else { "" },
            describe_expectation(others, actors)
        ),
    }
}

/// The observation in words.
pub(crate) fn describe_observed(obs: &Observed) -> String {
    match obs {
        Observed::Returned(o) => match o {
            Outcome::Failed { errno: e } => {
                let text = std::io::Error::from_raw_os_error(*e).to_string();
                let text = text.split(" (os error").next().unwrap_or(&text).to_string();
                format!("{} ({text})", errno::name(*e))
            }
            Outcome::Samples { ns } => format!("{} rounds timed", ns.len()),
            Outcome::Io { bytes, .. } => format!("{bytes} bytes written and read"),
            Outcome::Done { ret } => {
                if *ret == 0 {
                    "ok".into()
                } else {
                    format!("ok ({ret})")
                }
            }
            Outcome::Opened { fd, .. } => format!("ok (fd {fd})"),
            Outcome::Lock { lock, asked } => match asked {
                Some(a)
                    if i32::from(lock.l_type) == libc::F_UNLCK && !kept_fields(lock, a) =>
                {
                    format!(
                        "F_UNLCK, but the other fields changed: asked l_whence {} start {} len {} pid {}, got l_whence {} start {} len {} pid {}",
                        a.l_whence, a.start, a.len, a.pid, lock.l_whence, lock.start, lock.len, lock.pid
                    )
                }
                _ => describe_lock(lock),
            },
            Outcome::Data { data } => format!("data {data:?}"),
            Outcome::Forked { pid } => format!("ok (child pid {pid})"),
            Outcome::Threaded { tid } => format!("ok (thread {tid})"),
            Outcome::Spawned { pid } => format!("ok (new process, pid {pid})"),
            Outcome::Proc { snapshot } => format!("proc state {:?}", snapshot.state),
            Outcome::Leased { l_type } => match i32::try_from(*l_type).unwrap_or(-1) {
                libc::F_RDLCK => "lease F_RDLCK (read)".into(),
                libc::F_WRLCK => "lease F_WRLCK (write)".into(),
                libc::F_UNLCK => "lease F_UNLCK (none)".into(),
                other => format!("lease type {other}"),
            },
            Outcome::BadRequest { message } => format!("the actor rejected the request: {message}"),
            Outcome::Refused { message } => format!("refused: {message}"),
        },
        Observed::Blocked(e) => format!("blocked: {}", e.text),
        Observed::Hung { waited, process } => format!(
            "no reply after {} ms, and not recognised as waiting for a lock ({process})",
            waited.as_millis()
        ),
        Observed::Ended { how } => format!("ended ({how})"),
        Observed::Died { detail } => format!("the actor died: {detail}"),
        Observed::Listed(line) => format!("listed: `{line}`"),
        Observed::Early {
            outcome,
            during,
            before_step,
            ms_before,
        } if *ms_before > 0.0 => format!(
            "returned {} {during}, {ms_before:.3} ms before step {before_step} (which should have let it complete): it did not wait",
            describe_observed(&Observed::Returned(outcome.clone()))
        ),
        Observed::Early {
            outcome,
            during,
            before_step,
            ..
        } => format!(
            "returned {} {during}, so before step {before_step} (which should have let it complete): it did not wait",
            describe_observed(&Observed::Returned(outcome.clone()))
        ),
        Observed::NotListed(what) => format!("not listed ({what})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::scenario::LeaseMode;

    fn actors() -> (Vec<String>, Vec<Option<i32>>) {
        (vec!["a".into(), "b".into()], vec![Some(100), Some(200)])
    }

    fn ret(o: Outcome) -> Observed {
        Observed::Returned(o)
    }

    #[test]
    fn only_refusals_count_as_refused() {
        let (n, p) = actors();
        let a = Actors {
            names: &n,
            pids: &p,
        };
        let failed = |errno| ret(Outcome::Failed { errno });
        let ok = || ret(Outcome::Done { ret: 0 });
        let lock = |l_type: i32| {
            ret(Outcome::Lock {
                lock: LockDesc {
                    l_type: l_type as i16,
                    l_whence: 0,
                    start: 0,
                    len: 0,
                    pid: 100,
                },
                asked: None,
            })
        };
        // Granting was expected: a refusal or a wait got less.
        assert!(only_refused(&Expectation::Ok, &[failed(libc::EACCES)], &a));
        assert!(only_refused(
            &Expectation::Ok,
            &[ok(), failed(libc::EAGAIN)],
            &a
        ));
        assert!(!only_refused(&Expectation::Ok, &[failed(libc::EIO)], &a));
        // A conflict was expected: a grant is never a refusal.
        let conflict = Expectation::Conflict(vec![libc::EAGAIN, libc::EACCES]);
        assert!(!only_refused(&conflict, &[ok()], &a));
        // F_GETLK: reporting a lock where none is gets less; reporting none
        // where one is does not.
        assert!(only_refused(
            &Expectation::Unlocked,
            &[lock(libc::F_WRLCK)],
            &a
        ));
        let holder = Expectation::Holder {
            mode: None,
            start: None,
            len: None,
            pid: PidExpect::Any,
        };
        assert!(!only_refused(&holder, &[lock(libc::F_UNLCK)], &a));
        // Nothing failed: nothing to excuse.
        assert!(!only_refused(&Expectation::Ok, &[ok()], &a));
        // A race: too few winners, the others refused, is less; two
        // winners of one is not.
        let one = Expectation::Winners {
            count: 1,
            others: Box::new(conflict.clone()),
        };
        assert!(only_refused(
            &one,
            &[failed(libc::EAGAIN), failed(libc::EAGAIN)],
            &a
        ));
        assert!(!only_refused(&one, &[ok(), ok()], &a));
        assert!(!only_refused(
            &one,
            &[failed(libc::EIO), failed(libc::EAGAIN)],
            &a
        ));
    }

    #[test]
    fn running_out_excuses_only_what_it_could_have_hidden() {
        let (n, p) = actors();
        let a = Actors {
            names: &n,
            pids: &p,
        };
        let race = Expectation::Winners {
            count: 1,
            others: Box::new(Expectation::Conflict(vec![libc::EAGAIN])),
        };
        let ok = || ret(Outcome::Done { ret: 0 });
        let busy = || {
            ret(Outcome::Failed {
                errno: libc::EAGAIN,
            })
        };
        let out = || {
            ret(Outcome::Failed {
                errno: libc::EMFILE,
            })
        };
        let ran_out = |o: &Observed| matches!(o, Observed::Returned(Outcome::Failed { errno }) if *errno == libc::EMFILE);
        // Two winners: unsafe whatever the third saw.
        assert!(!passes_without(&race, &[ok(), ok(), out()], &a, ran_out));
        // One winner, or none where the missing one may have won: unknown.
        assert!(passes_without(&race, &[ok(), busy(), out()], &a, ran_out));
        assert!(passes_without(&race, &[busy(), busy(), out()], &a, ran_out));
        // Nothing ran out: the step stands as judged.
        assert!(!passes_without(&race, &[busy(), busy()], &a, ran_out));
        // Every actor must succeed: only the one that ran out is excused.
        assert!(passes_without(
            &Expectation::Ok,
            &[ok(), out()],
            &a,
            ran_out
        ));
        assert!(!passes_without(
            &Expectation::Ok,
            &[busy(), out()],
            &a,
            ran_out
        ));
    }

    #[test]
    fn conflict_accepts_both_errnos() {
        let (n, p) = actors();
        let a = Actors {
            names: &n,
            pids: &p,
        };
        let conflict = Expectation::Conflict(vec![libc::EAGAIN, libc::EACCES]);
        for e in [libc::EAGAIN, libc::EACCES] {
            assert!(satisfies(&conflict, &ret(Outcome::Failed { errno: e }), &a));
        }
        assert!(!satisfies(
            &conflict,
            &ret(Outcome::Failed { errno: libc::EBADF }),
            &a
        ));
        assert!(!satisfies(&conflict, &ret(Outcome::Done { ret: 0 }), &a));
        let pidfile = Expectation::Conflict(vec![libc::EEXIST]);
        assert!(satisfies(
            &pidfile,
            &ret(Outcome::Failed {
                errno: libc::EEXIST
            }),
            &a
        ));
        assert!(!satisfies(
            &pidfile,
            &ret(Outcome::Failed {
                errno: libc::EAGAIN
            }),
            &a
        ));
        assert_eq!(describe_expectation(&pidfile, &a), "conflict (EEXIST)");
        assert!(!satisfies(
            &Expectation::Ok,
            &ret(Outcome::Failed {
                errno: libc::EAGAIN
            }),
            &a
        ));
    }

    #[test]
    fn blocks_needs_a_blocked_observation() {
        let (n, p) = actors();
        let a = Actors {
            names: &n,
            pids: &p,
        };
        assert!(!satisfies(
            &Expectation::Blocks,
            &ret(Outcome::Done { ret: 0 }),
            &a
        ));
        assert!(satisfies(
            &Expectation::Blocks,
            &Observed::Blocked(Evidence { text: "x".into() }),
            &a
        ));
        assert!(!satisfies(
            &Expectation::Ok,
            &Observed::Blocked(Evidence { text: "x".into() }),
            &a
        ));
    }

    #[test]
    fn holder_checks_type_range_and_pid() {
        let (n, p) = actors();
        let a = Actors {
            names: &n,
            pids: &p,
        };
        let lock = LockDesc {
            l_type: libc::F_WRLCK as i16,
            l_whence: 0,
            start: 0,
            len: 0,
            pid: 200,
        };
        let exp = Expectation::Holder {
            mode: Some(LockMode::Exclusive),
            start: Some(0),
            len: Some(0),
            pid: PidExpect::Actor(1),
        };
        assert!(satisfies(
            &exp,
            &ret(Outcome::Lock { lock, asked: None }),
            &a
        ));
        let wrong_pid = Expectation::Holder {
            mode: None,
            start: None,
            len: None,
            pid: PidExpect::Actor(0),
        };
        assert!(!satisfies(
            &wrong_pid,
            &ret(Outcome::Lock { lock, asked: None }),
            &a
        ));
        let unl = LockDesc {
            l_type: libc::F_UNLCK as i16,
            ..lock
        };
        assert!(satisfies(
            &Expectation::Unlocked,
            &ret(Outcome::Lock {
                lock: unl,
                asked: None
            }),
            &a
        ));
        assert!(!satisfies(
            &exp,
            &ret(Outcome::Lock {
                lock: unl,
                asked: None
            }),
            &a
        ));
        // No conflict: only l_type may change (fcntl(2)).
        let asked = LockDesc {
            l_type: libc::F_WRLCK as i16,
            l_whence: libc::SEEK_CUR as i16,
            start: -3,
            len: 2,
            pid: 0,
        };
        let kept = LockDesc {
            l_type: libc::F_UNLCK as i16,
            ..asked
        };
        let kept = ret(Outcome::Lock {
            lock: kept,
            asked: Some(asked),
        });
        assert!(satisfies(&Expectation::Unlocked, &kept, &a));
        let moved = Observed::Returned(Outcome::Lock {
            lock: LockDesc {
                l_type: libc::F_UNLCK as i16,
                l_whence: 0,
                start: 7,
                len: 2,
                pid: 0,
            },
            asked: Some(asked),
        });
        assert!(!satisfies(&Expectation::Unlocked, &moved, &a));
        let said = describe_observed(&moved);
        assert!(said.contains("the other fields changed"), "{said}");
        assert!(describe_expectation(&exp, &a).contains("pid 200 (b)"));
        // Right lock, wrong owner: a reporting error only.
        let ofd = Expectation::Holder {
            mode: Some(LockMode::Exclusive),
            start: Some(0),
            len: Some(0),
            pid: PidExpect::Raw(-1),
        };
        assert!(only_owner_differs(
            &ofd,
            &[ret(Outcome::Lock { lock, asked: None })],
            &a
        ));
        // Wrong range as well, or no lock at all: not only the owner.
        let narrow = Expectation::Holder {
            mode: Some(LockMode::Exclusive),
            start: Some(5),
            len: Some(1),
            pid: PidExpect::Raw(-1),
        };
        assert!(!only_owner_differs(
            &narrow,
            &[ret(Outcome::Lock { lock, asked: None })],
            &a
        ));
        assert!(!only_owner_differs(
            &ofd,
            &[ret(Outcome::Lock {
                lock: unl,
                asked: None
            })],
            &a
        ));
    }

    #[test]
    fn records_are_checked_one_by_one() {
        let (n, p) = actors();
        let a = Actors {
            names: &n,
            pids: &p,
        };
        let spec = RecordsSpec {
            count: 10,
            size: 20,
            writers: 2,
        };
        let exp = Expectation::Records(spec);
        let good = expected_records(&spec);
        assert_eq!(good.len(), 200);
        assert!(good.starts_with("0:000000 aaaaaaaaaa"));
        assert_eq!(&good[20..29], "1:000001 ");
        let data = |d: &str| ret(Outcome::Data { data: d.into() });
        assert!(satisfies(&exp, &data(&good), &a));
        // Record 3 (writer 1) lost: zeros where it should be.
        let mut lost = good.clone();
        lost.replace_range(60..80, &"\0".repeat(20));
        assert!(!satisfies(&exp, &data(&lost), &a));
        let said = describe_observed_for(&exp, &data(&lost));
        assert!(
            said.starts_with("1 of 10 records wrong or missing (records 3)"),
            "{said}"
        );
        assert!(said.contains("record 3 (writer 1)"), "{said}");
        // Short files lose the tail.
        assert!(!satisfies(&exp, &data(&good[..180]), &a));
        assert!(describe_observed_for(&exp, &data(&good)).starts_with("all 10 records intact"));
    }

    #[test]
    fn leases_and_listings() {
        let (n, p) = actors();
        let a = Actors {
            names: &n,
            pids: &p,
        };
        let read = i64::from(libc::F_RDLCK);
        let leased = ret(Outcome::Leased { l_type: read });
        assert!(satisfies(&Expectation::Lease(LeaseMode::Read), &leased, &a));
        assert!(!satisfies(
            &Expectation::Lease(LeaseMode::None),
            &leased,
            &a
        ));
        assert!(!satisfies(
            &Expectation::Lease(LeaseMode::Read),
            &ret(Outcome::Done { ret: read }),
            &a
        ));
        assert!(satisfies(
            &Expectation::Ok,
            &Observed::Listed("x".into()),
            &a
        ));
        assert!(!satisfies(
            &Expectation::Ok,
            &Observed::NotListed("x".into()),
            &a
        ));
        assert!(satisfies(
            &Expectation::Unlocked,
            &Observed::NotListed("x".into()),
            &a
        ));
    }

    #[test]
    fn winners_count_exactly() {
        let (n, p) = actors();
        let a = Actors {
            names: &n,
            pids: &p,
        };
        let exp = Expectation::Winners {
            count: 1,
            others: Box::new(Expectation::Conflict(vec![libc::EAGAIN])),
        };
        let ok = ret(Outcome::Done { ret: 0 });
        let no = ret(Outcome::Failed {
            errno: libc::EAGAIN,
        });
        assert!(judge(&exp, &[ok.clone(), no.clone()], &a).is_ok());
        assert!(judge(&exp, &[ok.clone(), ok.clone()], &a).is_err());
        assert!(judge(&exp, &[no.clone(), no], &a).is_err());
        assert!(judge(&Expectation::Ok, &[ok.clone(), ok], &a).is_ok());
    }
}
