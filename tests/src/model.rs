//! The `--json` answers of the CLI (and the HTTP API), as the contract describes them. Unknown
//! fields are ignored; a missing or mistyped field is a contract violation and fails the test.

use serde::Deserialize;

/// One entry of `strackt generations --json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Generation {
    /// Generation number, 1 for the first.
    pub id: u64,
    /// RFC 3339 time of creation.
    pub created: String,
    /// `active`, `superseded`, `failed` or `rolled-back`.
    pub state: String,
    /// What made the pass that built it.
    pub trigger: String,
    /// Human summary.
    pub summary: String,
}

/// One step of an operation.
#[derive(Debug, Clone, Deserialize)]
pub struct Step {
    /// `write-file`, `start`, `restart`, `verify`, `health`, …
    pub action: String,
    /// The file or unit.
    pub target: String,
    /// `ok`, `failed` or `skipped`.
    pub outcome: String,
    /// Free text.
    #[serde(default)]
    pub detail: Option<String>,
    /// Whether this step repaired drift.
    #[serde(default)]
    pub drift: bool,
}

/// One entry of `strackt history --json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Operation {
    /// Operation number.
    pub id: u64,
    /// `apply`, `drift`, `rollback` or `startup`.
    pub kind: String,
    /// `file-change`, `timer`, `cli`, `signal` or `startup`.
    pub trigger: String,
    /// The generation it produced or switched to.
    pub generation: Option<u64>,
    /// `success`, `failed`, `rolled-back` or `running`.
    pub outcome: String,
    /// Why it failed.
    pub reason: Option<String>,
    /// What it did (e.g. "drift repaired: …").
    #[serde(default)]
    pub summary: Option<String>,
    /// RFC 3339 start time.
    pub started: String,
    /// RFC 3339 end time (absent while running).
    #[serde(default)]
    pub finished: Option<String>,
    /// The daemon's own measure of the pass.
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// What it did.
    #[serde(default)]
    pub steps: Vec<Step>,
}

impl Operation {
    /// reason + summary, what the user is told about the operation.
    pub fn told(&self) -> String {
        format!(
            "{}\n{}",
            self.reason.as_deref().unwrap_or(""),
            self.summary.as_deref().unwrap_or("")
        )
    }

    /// reason + summary + step details, for searching a word in what the user is told.
    pub fn text(&self) -> String {
        let mut s = self.told();
        for step in &self.steps {
            s.push('\n');
            s.push_str(&format!(
                "{} {} {} {}",
                step.action,
                step.target,
                step.outcome,
                step.detail.as_deref().unwrap_or("")
            ));
        }
        s
    }
}

/// `strackt status --json` and `GET /status`.
#[derive(Debug, Clone, Deserialize)]
pub struct Status {
    /// The generation the host is on.
    pub current_generation: Option<u64>,
    /// The last finished (or running) pass.
    pub last_pass: Option<Operation>,
    /// When the timer runs the next pass.
    #[serde(default)]
    pub next_pass: Option<String>,
    /// `ok`, `failed` or `unknown`.
    pub health: String,
    /// Drift found by the last pass.
    #[serde(default)]
    pub drift: Vec<String>,
    /// Digest of the current definition.
    pub digest: String,
    /// The last pass (or rollback) timed phase by phase, in µs (`settle` is the wait).
    #[serde(default)]
    pub last_pass_phases_us: std::collections::BTreeMap<String, u64>,
}
