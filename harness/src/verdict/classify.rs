//! Classifying a trial once it has run: what its status, reason and
//! severity are, from what the driver saw. This is policy, kept in one place:
//!
//! - a trial that passed but whose teardown had problems is an **error**;
//! - a failure of one of the mechanism's own lock operations, where the
//!   scenario declares that failure inherent to the mechanism (a PID file
//!   cannot tell a reused PID from its holder), is an **xfail**: the method
//!   fails, not the target;
//! - an *unsafe* failure that only timed out, or only named the wrong lock
//!   owner, showed no lost exclusion or data: it is **divergent**;
//! - while the target stopped answering, a failure that is only a step that
//!   did not complete becomes an **error** (a failure built from answers the
//!   target gave stands), and an error says the target stalled.

use crate::record::report::{Failure, Status};
use crate::spec::scenario::Severity;

/// What the driver saw of a trial, as classification needs it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen<'a> {
    /// The driver's status: pass, fail, error or skip.
    pub(crate) status: Status,
    /// For an error or a skip: why.
    pub(crate) reason: Option<&'a str>,
    pub(crate) failure: Option<&'a Failure>,
    /// Problems during teardown.
    pub(crate) teardown: &'a [String],
    /// The scenario's known failure of this mechanism, given only when the
    /// failing step is one of the mechanism's own lock operations.
    pub(crate) known_failure: Option<&'a str>,
    /// Why the target counts as stalled, if it stopped answering.
    pub(crate) stalled: Option<&'a str>,
    /// The scenario's `divergent-on` entry for the target's filesystem
    /// family (the family's name, and why), given only when the failing step
    /// is one of the mechanism's own lock operations.
    pub(crate) divergent_on: Option<(&'a str, &'a str)>,
}

/// A trial's classification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Classified {
    pub(crate) status: Status,
    pub(crate) reason: Option<String>,
    pub(crate) severity: Severity,
}

/// Classifies a trial of a scenario of `severity`.
pub(crate) fn classify(seen: &Seen<'_>, severity: Severity) -> Classified {
    let mut reason = None;
    let mut status = match seen.status {
        Status::Pass if !seen.teardown.is_empty() => {
            reason = Some(format!("teardown: {}", seen.teardown.join("; ")));
            Status::Error
        }
        Status::Fail => match seen.known_failure {
            Some(why) => {
                reason = Some(why.trim().to_string());
                Status::Xfail
            }
            None => Status::Fail,
        },
        Status::Skip | Status::Error => {
            reason = seen.reason.map(str::to_string);
            seen.status
        }
        other => other,
    };
    // Unsafe means exclusion or data was seen lost. A step that only did not
    // complete in time (NFSv4.0 clients poll for contended locks, for one),
    // or an F_GETLK that found the right lock but named another owner, shows
    // neither: such failures are divergent.
    let severity = if status == Status::Fail
        && severity == Severity::Unsafe
        && seen.failure.is_some_and(|f| f.timed_out || f.owner_only)
    {
        Severity::Divergent
    } else {
        severity
    };
    // Nor does a lock call that only got less than expected -- refused, or
    // still waiting, where it should have been granted (an NLM server whose
    // GRANTED callbacks come seconds late): the application waits or fails,
    // it does not write beside another. Liveness, not exclusion: divergent,
    // with that said.
    let severity = if status == Status::Fail
        && severity == Severity::Unsafe
        && seen.divergent_on.is_none()
        && seen.failure.is_some_and(|f| f.refused_only)
    {
        reason.get_or_insert_with(|| {
            "less than expected, not a lost exclusion: a lock refused or not yet granted where it should have been granted; nothing was granted wrongly and no data was lost".to_string()
        });
        Severity::Divergent
    } else {
        severity
    };
    // A filesystem family that legally refuses what local Linux grants
    // (SMB's Windows byte-range semantics): a failure that only refused,
    // delayed or over-reported a lock is divergent there, with the reason.
    // A lock granted that should have been refused stays as it was.
    let severity = match seen.divergent_on {
        Some((family, why))
            if status == Status::Fail
                && severity != Severity::Info
                && seen.failure.is_some_and(|f| f.refused_only) =>
        {
            reason = Some(format!("divergent on {family}: {}", why.trim()));
            Severity::Divergent
        }
        _ => severity,
    };
    // The target stopped answering while this trial ran: a step that failed
    // only by not completing in time says nothing about locking (its record
    // stays as evidence). A failure built from answers the target gave (two
    // winners, a lost update) stands.
    if let Some(why) = seen.stalled {
        let only_timed_out = seen.failure.is_some_and(|f| f.timed_out);
        reason = match (status, reason) {
            (Status::Error, Some(r)) if r.contains("stopped answering") => Some(r),
            (Status::Error, r) => Some(format!(
                "the target stopped answering during this trial ({why}): {}",
                r.unwrap_or_default()
            )),
            (Status::Fail, _) if only_timed_out => {
                status = Status::Error;
                Some(format!(
                    "the target stopped answering during this trial ({why}); its step that did not complete is evidence of that, not a locking result"
                ))
            }
            (_, r) => r,
        };
    }
    Classified {
        status,
        reason,
        severity,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(timed_out: bool, owner_only: bool) -> Failure {
        Failure {
            step: 3,
            line: 10,
            col: 5,
            actors: vec!["b".into()],
            op: "lock exclusive".into(),
            expected: "EAGAIN".into(),
            observed: "ok".into(),
            note: None,
            timed_out,
            owner_only,
            refused_only: false,
        }
    }

    fn seen(status: Status) -> Seen<'static> {
        Seen {
            status,
            reason: None,
            failure: None,
            teardown: &[],
            known_failure: None,
            stalled: None,
            divergent_on: None,
        }
    }

    #[test]
    fn passes_and_failures_keep_their_status_and_severity() {
        let c = classify(&seen(Status::Pass), Severity::Unsafe);
        assert_eq!(
            (c.status, c.reason, c.severity),
            (Status::Pass, None, Severity::Unsafe)
        );
        let f = failure(false, false);
        let c = classify(
            &Seen {
                failure: Some(&f),
                ..seen(Status::Fail)
            },
            Severity::Unsafe,
        );
        assert_eq!((c.status, c.severity), (Status::Fail, Severity::Unsafe));
    }

    #[test]
    fn a_pass_with_teardown_problems_is_an_error() {
        let problems = ["actor b would not die".to_string()];
        let c = classify(
            &Seen {
                teardown: &problems,
                ..seen(Status::Pass)
            },
            Severity::Info,
        );
        assert_eq!(c.status, Status::Error);
        assert_eq!(c.reason.as_deref(), Some("teardown: actor b would not die"));
    }

    #[test]
    fn a_known_failure_of_the_mechanism_is_an_xfail() {
        let f = failure(false, false);
        let s = Seen {
            failure: Some(&f),
            known_failure: Some("  a PID file cannot tell a reused PID  \n"),
            ..seen(Status::Fail)
        };
        let c = classify(&s, Severity::Unsafe);
        assert_eq!(c.status, Status::Xfail);
        assert_eq!(
            c.reason.as_deref(),
            Some("a PID file cannot tell a reused PID")
        );
    }

    #[test]
    fn only_a_timeout_or_a_wrong_owner_is_divergent_not_unsafe() {
        for (timed_out, owner_only, want) in [
            (true, false, Severity::Divergent),
            (false, true, Severity::Divergent),
            (false, false, Severity::Unsafe),
        ] {
            let f = failure(timed_out, owner_only);
            let c = classify(
                &Seen {
                    failure: Some(&f),
                    ..seen(Status::Fail)
                },
                Severity::Unsafe,
            );
            assert_eq!(
                c.severity, want,
                "timed_out {timed_out} owner_only {owner_only}"
            );
        }
        // An info scenario stays info.
        let f = failure(true, false);
        let c = classify(
            &Seen {
                failure: Some(&f),
                ..seen(Status::Fail)
            },
            Severity::Info,
        );
        assert_eq!(c.severity, Severity::Info);
    }

    #[test]
    fn a_familys_divergence_excuses_only_refusals() {
        let why = Some(("smb", "locks belong to the handle (MS-FSA 2.1.5.7)"));
        let refused = Failure {
            refused_only: true,
            ..failure(false, false)
        };
        let c = classify(
            &Seen {
                failure: Some(&refused),
                divergent_on: why,
                ..seen(Status::Fail)
            },
            Severity::Unsafe,
        );
        assert_eq!((c.status, c.severity), (Status::Fail, Severity::Divergent));
        assert_eq!(
            c.reason.as_deref(),
            Some("divergent on smb: locks belong to the handle (MS-FSA 2.1.5.7)")
        );
        // A lock granted that should have been refused stays unsafe.
        let granted = failure(false, false);
        let c = classify(
            &Seen {
                failure: Some(&granted),
                divergent_on: why,
                ..seen(Status::Fail)
            },
            Severity::Unsafe,
        );
        assert_eq!((c.severity, c.reason), (Severity::Unsafe, None));
        // Elsewhere (no entry for the target's family) a refusal is
        // divergent too, with the general reason: nothing was granted
        // wrongly (Ganesha's NLM waiters woken seconds late; the real
        // applications there waited, they did not write beside another).
        let c = classify(
            &Seen {
                failure: Some(&refused),
                ..seen(Status::Fail)
            },
            Severity::Unsafe,
        );
        assert_eq!(c.severity, Severity::Divergent);
        assert!(c
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("nothing was granted wrongly")));
        // A wrongful grant without a family entry stays unsafe.
        let c = classify(
            &Seen {
                failure: Some(&granted),
                ..seen(Status::Fail)
            },
            Severity::Unsafe,
        );
        assert_eq!((c.severity, c.reason), (Severity::Unsafe, None));
    }

    #[test]
    fn skips_and_errors_carry_the_drivers_reason() {
        let c = classify(
            &Seen {
                reason: Some("no leases"),
                ..seen(Status::Skip)
            },
            Severity::Info,
        );
        assert_eq!(
            (c.status, c.reason.as_deref()),
            (Status::Skip, Some("no leases"))
        );
        let c = classify(
            &Seen {
                reason: Some("spawn"),
                ..seen(Status::Error)
            },
            Severity::Info,
        );
        assert_eq!(
            (c.status, c.reason.as_deref()),
            (Status::Error, Some("spawn"))
        );
    }

    #[test]
    fn a_stalled_target_turns_only_timeouts_into_errors() {
        let stalled = Some("no answer in 20 s");
        // A step that did not complete: an error, not a locking result.
        let f = failure(true, false);
        let c = classify(
            &Seen {
                failure: Some(&f),
                stalled,
                ..seen(Status::Fail)
            },
            Severity::Unsafe,
        );
        assert_eq!(c.status, Status::Error);
        assert!(
            c.reason
                .as_deref()
                .is_some_and(|r| r.contains("no answer in 20 s")),
            "{c:?}"
        );
        // Two winners: the target's own answers, the failure stands.
        let f = failure(false, false);
        let c = classify(
            &Seen {
                failure: Some(&f),
                stalled,
                ..seen(Status::Fail)
            },
            Severity::Unsafe,
        );
        assert_eq!((c.status, c.severity), (Status::Fail, Severity::Unsafe));
        // An error says the target stalled, once.
        let c = classify(
            &Seen {
                reason: Some("EIO"),
                stalled,
                ..seen(Status::Error)
            },
            Severity::Info,
        );
        assert_eq!(
            c.reason.as_deref(),
            Some("the target stopped answering during this trial (no answer in 20 s): EIO")
        );
        let said = "not run: the target stopped answering (x)";
        let c = classify(
            &Seen {
                reason: Some(said),
                stalled,
                ..seen(Status::Error)
            },
            Severity::Info,
        );
        assert_eq!(c.reason.as_deref(), Some(said));
    }
}
