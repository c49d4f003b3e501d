//! The application lab's results as data: what real applications did on a
//! mount (one [`Observation`] per application, configuration and mount, as
//! `ci/app-lab-cases` records it), and each next to lockcheck's verdict for
//! the same mount ([`AppLab`], written as `reports/app-lab.json`). How an
//! observation is judged and compared is [`crate::verdict::applab`]'s.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::apps::AppStatus;

/// What one application did on one mount, seen from two hosts: a second
/// instance started while the first held its lock, a clean stop, the data
/// afterwards, and a crash of the host holding the lock.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct Observation {
    /// The mount: the label of lockcheck's report for it (`nfs3`).
    pub label: String,
    /// The application profile (`prometheus`).
    pub app: String,
    /// How the application was configured (`upstream`: its own default).
    pub variant: String,
    /// The application's version.
    #[serde(default)]
    pub version: String,
    /// Why the case could not run (then nothing else is known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why the application could not do its work on this mount at all, even
    /// alone (its own first write failed): exclusion is not in question,
    /// the mount is of no use to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unusable: Option<String>,
    /// What a second instance on host a did while host b's held the lock:
    /// `refused` (the application's own "locked" answer), `ran` (a second
    /// writer), `waited`, or `failed` (it ended with an error that is not
    /// the application's answer to a held lock: the lock call's error was
    /// not the one it expects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second: Option<String>,
    /// What the second instance said (its error message or exit status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_message: Option<String>,
    /// After host b's instance stopped cleanly: `started` when the next one
    /// did, else what happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_stop: Option<String>,
    /// Updates or rows lost (written under the lock and missing after).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<u64>,
    /// What was lost, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_what: Option<String>,
    /// Seconds from host b's crash until host a's instance got in; null
    /// when it did not within `crash_limit_s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash_recovered_s: Option<f64>,
    /// Attempts host a made after the crash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash_tries: Option<u32>,
    /// How long host a kept trying (seconds); present when the crash was tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash_limit_s: Option<f64>,
    /// What else happened after the crash, besides the crash itself (`the
    /// stale PID 14644 taken by an unrelated process of the postgres user on
    /// host a`): the fault a verdict names, reproduced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash_fault: Option<String>,
    /// What host a's last refused attempt said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash_message: Option<String>,
    /// Whether the application waits for its lock (true) or gives up at
    /// once (false): how it recovers follows from that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash_waits: Option<bool>,
    /// Anything else the case recorded (rows, integrity check, counter).
    #[serde(flatten)]
    pub details: BTreeMap<String, serde_json::Value>,
}

/// What the application's behaviour means, judged like lockcheck's
/// application verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ObservedStatus {
    /// One instance at a time, nothing lost, back within the profile's
    /// recovery bound after a crash.
    Safe,
    /// Exclusion held, but recovery after a crash was slower than the bound,
    /// or never came, or a clean stop did not let the next instance in.
    Degraded,
    /// Two instances ran at once, or data was lost.
    Unsafe,
    /// The case could not run.
    Error,
}

impl ObservedStatus {
    /// The word used in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            ObservedStatus::Safe => "safe",
            ObservedStatus::Degraded => "degraded",
            ObservedStatus::Unsafe => "unsafe",
            ObservedStatus::Error => "error",
        }
    }
}

/// Whether lockcheck's verdict and the application agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Agreement {
    /// The same class.
    Agree,
    /// Different classes (or lockcheck's verdict was incomplete): lockcheck
    /// is wrong until shown otherwise.
    Disagree,
    /// The application was run in a configuration lockcheck's verdict does
    /// not cover; the profile says why.
    NotPredicted,
    /// The application's case could not run, or lockcheck has no report
    /// for the mount.
    Error,
}

impl Agreement {
    /// The word used in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Agreement::Agree => "agree",
            Agreement::Disagree => "disagree",
            Agreement::NotPredicted => "not predicted",
            Agreement::Error => "error",
        }
    }
}

/// lockcheck's verdict for the application on the mount, from its report.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Prediction {
    /// The verdict (`safe`, `degraded`, `unsafe`, ...).
    pub verdict: AppStatus,
    /// Its reasons, as the report gives them.
    pub reasons: Vec<String>,
}

/// What the application did, judged.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Observed {
    /// The class of what it did.
    pub verdict: ObservedStatus,
    /// What it did, in words a user of the application would recognise.
    pub summary: String,
}

/// One application in one configuration on one mount: lockcheck's verdict
/// next to what the application did.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LabCell {
    /// The mount (a report's target label).
    pub label: String,
    /// The application profile.
    pub app: String,
    /// The application's title (`Prometheus TSDB`).
    pub title: String,
    /// Its configuration in the lab.
    pub variant: String,
    /// lockcheck's verdict, when it covers this configuration.
    pub predicted: Option<Prediction>,
    /// What the application did.
    pub observed: Observed,
    /// Whether they agree.
    pub agreement: Agreement,
    /// Why there is no comparison (a configuration lockcheck does not
    /// judge, a missing report), when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The facts recorded in the lab.
    pub facts: Observation,
}

/// How many cells of each kind.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct LabSummary {
    /// Cells where lockcheck and the application agree.
    pub agree: usize,
    /// Cells where they disagree.
    pub disagree: usize,
    /// Cells of configurations lockcheck does not judge.
    pub not_predicted: usize,
    /// Cells that could not be compared.
    pub error: usize,
}

/// The application lab: every application verdict checked against the
/// application itself (`reports/app-lab.json`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AppLab {
    /// The version of this format.
    pub schema_version: u32,
    /// The lockcheck that compared them.
    pub lockcheck_version: String,
    /// When (UTC, RFC 3339).
    pub generated_at: String,
    /// The mounts, in the order given.
    pub labels: Vec<String>,
    /// One per application, configuration and mount.
    pub cells: Vec<LabCell>,
    /// Counts.
    pub summary: LabSummary,
}

/// The version of the application lab's format.
pub const LAB_SCHEMA_VERSION: u32 = 1;

/// The JSON Schema (draft-07) of `app-lab.json`.
pub fn json_schema() -> schemars::Schema {
    schemars::generate::SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<AppLab>()
}
