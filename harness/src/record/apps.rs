//! What a report's results mean for the applications of `apps/`: the data
//! a report carries. The verdicts are reached in [`crate::verdict::apps`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a report's results mean for one application.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum AppStatus {
    /// Every trial it needs passed, and recoveries were within their bounds.
    Safe,
    /// What ran passed, but a trial it relies on errored or was not run
    /// (left out by a filter): not enough to call it safe.
    Incomplete,
    /// It works, with a cost: a slow or missing recovery, or a known
    /// weakness of its locking method.
    Degraded,
    /// A trial it needs lost exclusion or data.
    Unsafe,
    /// None of the trials it needs ran here.
    NotChecked,
}

impl AppStatus {
    /// The word used in reports and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            AppStatus::Safe => "safe",
            AppStatus::Incomplete => "incomplete",
            AppStatus::Degraded => "degraded",
            AppStatus::Unsafe => "unsafe",
            AppStatus::NotChecked => "not checked",
        }
    }
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct AppVerdict {
    pub(crate) app: String,
    pub(crate) title: String,
    pub(crate) verdict: AppStatus,
    /// Why: each failing or degrading trial, and measured recoveries.
    pub(crate) reasons: Vec<String>,
    /// Trials it relies on that did not run here, each with the reason
    /// (`cross-client-exclusion::flock: needs another client ...`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) unchecked: Vec<String>,
    /// Trials it needs that ran here, of all it needs.
    pub(crate) checked: usize,
    pub(crate) needed: usize,
    pub(crate) reference: String,
}
