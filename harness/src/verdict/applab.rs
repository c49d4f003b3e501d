//! Judging what a real application did in the application lab, with the
//! same classes as lockcheck's application verdicts, and comparing the two
//! (see [`crate::record::applab`]). The application is the judge: where they
//! differ, lockcheck is wrong until shown otherwise.
//!
//! - Two instances running at once, or data written under the lock and
//!   missing afterwards: **unsafe**.
//! - The application could not work on the mount even alone; or exclusion
//!   held, but a second instance failed with an error where it
//!   should have waited or said the lock is held; or after the lock holder's host crashed the next
//!   instance got in later than the profile's recovery bound, or never
//!   within the lab's limit; or a clean stop did not let the next one in:
//!   **degraded**.
//! - Otherwise **safe**.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::record::applab::{
    Agreement, AppLab, LabCell, LabSummary, Observation, Observed, ObservedStatus, Prediction,
    LAB_SCHEMA_VERSION,
};
use crate::record::apps::AppStatus;
use crate::verdict::apps::{AppProfile, Apps};

/// The recovery bound used when a profile gives none.
const DEFAULT_RECOVERY_BOUND: Duration = Duration::from_secs(30);

/// What an application did, judged; `bound` is how long a recovery after a
/// crash may take before the application counts as degraded.
pub fn judge(o: &Observation, bound: Duration) -> Observed {
    if let Some(e) = &o.error {
        return Observed {
            verdict: ObservedStatus::Error,
            summary: format!("the case could not run: {e}"),
        };
    }
    let mut parts = Vec::new();
    let mut status = ObservedStatus::Safe;
    if let Some(why) = o.unusable.as_deref() {
        status = ObservedStatus::Degraded;
        parts.push(format!(
            "it could not do its work on this mount even alone: {}",
            why.trim()
        ));
    }
    let said = |m: &Option<String>| match m.as_deref().map(str::trim) {
        Some(m) if !m.is_empty() => format!(" (\"{m}\")"),
        _ => String::new(),
    };
    match o.second.as_deref() {
        Some("ran") => {
            status = ObservedStatus::Unsafe;
            parts.push(
                "a second instance on host a ran while host b's held the lock (two writers)"
                    .to_string(),
            );
        }
        Some("refused") => parts.push(format!(
            "a second instance on host a was refused{}",
            said(&o.second_message)
        )),
        Some("waited") => parts.push("a second instance on host a waited for the lock".into()),
        Some("failed") => {
            status = ObservedStatus::Degraded;
            parts.push(format!(
                "a second instance on host a failed with an error instead of waiting or saying the lock is held{}",
                said(&o.second_message)
            ));
        }
        Some(other) => {
            return Observed {
                verdict: ObservedStatus::Error,
                summary: format!("the second instance's outcome is unknown: {other}"),
            }
        }
        None => {}
    }
    if let Some(n) = o.lost.filter(|n| *n > 0) {
        status = ObservedStatus::Unsafe;
        let what = o.lost_what.as_deref().unwrap_or("updates");
        parts.push(format!("data lost: {what} ({n})"));
    }
    if let Some(next) = o.after_stop.as_deref().filter(|s| *s != "started") {
        status = status.max_with(ObservedStatus::Degraded);
        parts.push(format!(
            "after a clean stop the next instance did not start: {next}"
        ));
    }
    if let Some(limit) = o.crash_limit_s {
        let crashed = match o.crash_fault.as_deref().map(str::trim) {
            Some(f) if !f.is_empty() => format!("after host b crashed holding the lock and {f}"),
            _ => "after host b crashed holding the lock".to_string(),
        };
        let how = if o.crash_waits == Some(true) {
            "waited"
        } else {
            "was refused"
        };
        match o.crash_recovered_s {
            Some(s) if s <= bound.as_secs_f64() => {
                parts.push(format!("{crashed}, host a got in after {s:.1} s"))
            }
            Some(s) => {
                status = status.max_with(ObservedStatus::Degraded);
                parts.push(format!(
                    "{crashed}, host a got in only after {s:.1} s (over {} s)",
                    bound.as_secs()
                ));
            }
            None => {
                status = status.max_with(ObservedStatus::Degraded);
                let tries = o
                    .crash_tries
                    .map(|t| format!(", {t} tries"))
                    .unwrap_or_default();
                parts.push(format!(
                    "{crashed}, host a {how} for {limit:.0} s{tries}, until the lab gave up{}",
                    said(&o.crash_message)
                ));
            }
        }
    }
    Observed {
        verdict: status,
        summary: parts.join("; "),
    }
}

impl ObservedStatus {
    /// The worse of the two.
    fn max_with(self, other: ObservedStatus) -> ObservedStatus {
        let rank = |s: ObservedStatus| match s {
            ObservedStatus::Safe => 0,
            ObservedStatus::Degraded => 1,
            ObservedStatus::Unsafe => 2,
            ObservedStatus::Error => 3,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

/// Whether a verdict and an observation agree.
fn agreement(p: &Prediction, o: &Observed) -> Agreement {
    let same = matches!(
        (p.verdict, o.verdict),
        (AppStatus::Safe, ObservedStatus::Safe)
            | (AppStatus::Degraded, ObservedStatus::Degraded)
            | (AppStatus::Unsafe, ObservedStatus::Unsafe)
    );
    if o.verdict == ObservedStatus::Error {
        Agreement::Error
    } else if same {
        Agreement::Agree
    } else {
        Agreement::Disagree
    }
}

/// Where the verdict rests on a target fact whose `or-observed` is what was
/// observed: the profile's explanation of that other outcome.
fn other_outcome(profile: &AppProfile, p: &Prediction, o: &Observed) -> Option<String> {
    profile.target_facts.iter().find_map(|f| {
        let alt = f.or_observed.as_ref()?;
        let applied = p.verdict == f.verdict.status()
            && p.reasons.iter().any(|r| r.starts_with(&f.reason_prefix()));
        let seen = matches!(
            (alt.verdict.status(), o.verdict),
            (AppStatus::Degraded, ObservedStatus::Degraded)
                | (AppStatus::Unsafe, ObservedStatus::Unsafe)
        );
        (applied && seen).then(|| {
            format!(
                "the other outcome the profile documents for this cause ({}): {}",
                alt.verdict.status().as_str(),
                alt.why.trim()
            )
        })
    })
}

/// The recovery bound of a profile: its first recovery's `degraded-after`.
fn bound_of(p: Option<&AppProfile>) -> Duration {
    p.and_then(|p| p.recovery.first())
        .map(|r| r.value.degraded_after.value.0)
        .unwrap_or(DEFAULT_RECOVERY_BOUND)
}

/// Each observation next to lockcheck's verdict for the same application
/// and mount (`predictions`, by label and application, from the reports).
pub fn compare(
    observations: Vec<Observation>,
    predictions: &BTreeMap<(String, String), Prediction>,
    labels_with_reports: &[String],
    apps: &Apps,
    generated_at: String,
) -> AppLab {
    let mut labels: Vec<String> = Vec::new();
    let mut cells = Vec::new();
    let mut summary = LabSummary::default();
    for o in observations {
        if !labels.contains(&o.label) {
            labels.push(o.label.clone());
        }
        let profile = apps.profiles.iter().find(|p| p.name.value == o.app);
        let observed = judge(&o, bound_of(profile));
        let title = profile.map_or_else(|| o.app.clone(), |p| p.title.clone());
        let unjudged = profile.and_then(|p| p.unjudged.iter().find(|u| u.variant == o.variant));
        let prediction = predictions.get(&(o.label.clone(), o.app.clone())).cloned();
        let (agreement, note) = if profile.is_none() {
            (
                Agreement::Error,
                Some(format!("no application profile `{}`", o.app)),
            )
        } else if let Some(u) = unjudged {
            (Agreement::NotPredicted, Some(u.why.trim().to_string()))
        } else if !labels_with_reports.contains(&o.label) {
            (
                Agreement::Error,
                Some(format!("no lockcheck report for `{}`", o.label)),
            )
        } else {
            match &prediction {
                // No verdict to check: the trials it rests on errored or did
                // not run there (a server that crashed under the catalog).
                Some(p) if matches!(p.verdict, AppStatus::Incomplete | AppStatus::NotChecked) => (
                    Agreement::NotPredicted,
                    Some(format!(
                        "lockcheck's verdict for `{}` is {}: trials it rests on errored or did not run there",
                        o.label,
                        p.verdict.as_str()
                    )),
                ),
                Some(p) => match (agreement(p, &observed), profile.and_then(|f| other_outcome(f, p, &observed))) {
                    (Agreement::Disagree, Some(why)) => (Agreement::Agree, Some(why)),
                    (a, _) => (a, None),
                },
                None => (
                    Agreement::Error,
                    Some(format!(
                        "the report for `{}` has no verdict for `{}`",
                        o.label, o.app
                    )),
                ),
            }
        };
        match agreement {
            Agreement::Agree => summary.agree += 1,
            Agreement::Disagree => summary.disagree += 1,
            Agreement::NotPredicted => summary.not_predicted += 1,
            Agreement::Error => summary.error += 1,
        }
        cells.push(LabCell {
            label: o.label.clone(),
            app: o.app.clone(),
            title,
            variant: o.variant.clone(),
            predicted: if unjudged.is_some() { None } else { prediction },
            observed,
            agreement,
            note,
            facts: o,
        });
    }
    AppLab {
        schema_version: LAB_SCHEMA_VERSION,
        lockcheck_version: env!("CARGO_PKG_VERSION").to_string(),
        generated_at,
        labels,
        cells,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(json: &str) -> Observation {
        serde_json::from_str(json).expect("observation")
    }

    const BOUND: Duration = Duration::from_secs(30);

    #[test]
    fn a_second_writer_is_unsafe() {
        let o = obs(
            r#"{"label":"nfs3-nolock","app":"prometheus","variant":"upstream","second":"ran","after_stop":"started","crash_recovered_s":0.4,"crash_tries":1,"crash_limit_s":45}"#,
        );
        let j = judge(&o, BOUND);
        assert_eq!(j.verdict, ObservedStatus::Unsafe);
        assert!(j.summary.contains("two writers"), "{}", j.summary);
    }

    #[test]
    fn refused_and_never_recovered_is_degraded_with_the_message() {
        let o = obs(
            r#"{"label":"nfs3","app":"prometheus","variant":"upstream","second":"refused","second_message":"opening storage failed: lock DB directory: resource temporarily unavailable","after_stop":"started","crash_recovered_s":null,"crash_tries":11,"crash_limit_s":45,"crash_message":"opening storage failed: lock DB directory: resource temporarily unavailable","crash_waits":false}"#,
        );
        let j = judge(&o, BOUND);
        assert_eq!(j.verdict, ObservedStatus::Degraded);
        assert!(
            j.summary.contains("was refused for 45 s, 11 tries")
                && j.summary
                    .contains("lock DB directory: resource temporarily unavailable"),
            "{}",
            j.summary
        );
    }

    #[test]
    fn recovery_within_the_bound_is_safe_and_beyond_it_degraded() {
        let o = obs(
            r#"{"label":"nfs4.2","app":"sqlite","variant":"rollback-journal","second":"refused","lost":0,"crash_recovered_s":15.2,"crash_tries":20,"crash_limit_s":45}"#,
        );
        assert_eq!(judge(&o, BOUND).verdict, ObservedStatus::Safe);
        assert_eq!(
            judge(&o, Duration::from_secs(10)).verdict,
            ObservedStatus::Degraded
        );
    }

    #[test]
    fn lost_data_is_unsafe_and_errors_are_errors() {
        let o = obs(
            r#"{"label":"x","app":"flock","variant":"util-linux","second":"refused","lost":7,"lost_what":"7 of 80 increments"}"#,
        );
        let j = judge(&o, BOUND);
        assert_eq!(j.verdict, ObservedStatus::Unsafe);
        assert!(j.summary.contains("7 of 80 increments"), "{}", j.summary);
        let e = obs(
            r#"{"label":"x","app":"flock","variant":"v","error":"host b did not get the lock"}"#,
        );
        assert_eq!(judge(&e, BOUND).verdict, ObservedStatus::Error);
    }

    #[test]
    fn a_second_instance_failing_with_an_error_is_degraded_not_refused() {
        let o = obs(
            r#"{"label":"smb3","app":"cargo","variant":"default","second":"failed","second_message":"exit 101: Permission denied (os error 13)","after_stop":"started","crash_recovered_s":5.1,"crash_tries":1,"crash_limit_s":35}"#,
        );
        let j = judge(&o, BOUND);
        assert_eq!(j.verdict, ObservedStatus::Degraded);
        assert!(j.summary.contains("Permission denied"), "{}", j.summary);
        // Data lost on top of it is still unsafe.
        let lost = obs(
            r#"{"label":"x","app":"cargo","variant":"default","second":"failed","lost":1,"lost_what":"the build's output"}"#,
        );
        assert_eq!(judge(&lost, BOUND).verdict, ObservedStatus::Unsafe);
    }

    #[test]
    fn an_application_that_cannot_work_alone_is_degraded() {
        let o = obs(
            r#"{"label":"smb3","app":"sqlite","variant":"wal","unusable":"creating the database: Error: stepping, database is locked (5)"}"#,
        );
        let j = judge(&o, BOUND);
        assert_eq!(j.verdict, ObservedStatus::Degraded);
        assert!(j.summary.contains("database is locked"), "{}", j.summary);
    }

    #[test]
    fn a_verdict_and_an_observation_compare_by_class() {
        let p = |v| Prediction {
            verdict: v,
            reasons: vec![],
        };
        let o = |v| Observed {
            verdict: v,
            summary: String::new(),
        };
        assert_eq!(
            agreement(&p(AppStatus::Unsafe), &o(ObservedStatus::Unsafe)),
            Agreement::Agree
        );
        assert_eq!(
            agreement(&p(AppStatus::Safe), &o(ObservedStatus::Degraded)),
            Agreement::Disagree
        );
        // An incomplete verdict is not a prediction the application can
        // confirm (compare() says so: not predicted, with the reason).
        assert_eq!(
            agreement(&p(AppStatus::Incomplete), &o(ObservedStatus::Safe)),
            Agreement::Disagree
        );
        assert_eq!(
            agreement(&p(AppStatus::Safe), &o(ObservedStatus::Error)),
            Agreement::Error
        );
    }

    #[test]
    fn an_incomplete_verdict_is_not_predicted_with_the_reason() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let c = crate::plan::catalog::load_dir(&dir.join("../scenarios")).expect("catalog");
        let apps = crate::verdict::apps::load(Some(&dir.join("../apps")), &c).expect("apps");
        let o = obs(
            r#"{"label":"ganesha-nfs4.2","app":"prometheus","variant":"upstream","second":"refused","after_stop":"started","crash_recovered_s":12.0,"crash_tries":9,"crash_limit_s":35}"#,
        );
        let mut predictions = BTreeMap::new();
        predictions.insert(
            ("ganesha-nfs4.2".to_string(), "prometheus".to_string()),
            Prediction {
                verdict: AppStatus::Incomplete,
                reasons: vec![],
            },
        );
        let lab = compare(
            vec![o],
            &predictions,
            &["ganesha-nfs4.2".to_string()],
            &apps,
            String::new(),
        );
        assert_eq!(lab.cells[0].agreement, Agreement::NotPredicted);
        let note = lab.cells[0].note.as_deref().unwrap_or("");
        assert!(note.contains("incomplete"), "{note}");
        assert_eq!(lab.summary.disagree, 0);
        assert_eq!(lab.summary.not_predicted, 1);
    }
}
