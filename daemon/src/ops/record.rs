//! The records of the operations log: an operation and its steps, as stored and as shown.

use serde::{Deserialize, Serialize};

use super::{Outcome, StepOutcome};

/// One executed (or skipped) step, as the operations log stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StepRecord {
    /// Verb: write-file, start, flip, verify, health, …
    pub action: String,
    /// What it acted on.
    pub target: String,
    /// How it ended, or that it is running.
    pub outcome: StepOutcome,
    /// Why it ran, or how it failed.
    pub detail: String,
    /// Whether it repaired drift.
    pub drift: bool,
    /// How long it took (deploy steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    /// The tail of its output (deploy steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

impl StepRecord {
    /// A record with the given fields.
    pub fn new(
        action: &str,
        target: &str,
        outcome: StepOutcome,
        detail: impl Into<String>,
        drift: bool,
    ) -> StepRecord {
        StepRecord {
            action: action.into(),
            target: target.into(),
            outcome,
            detail: detail.into(),
            drift,
            duration_ms: None,
            output: None,
        }
    }
}

/// An operation with its steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Id.
    pub id: i64,
    /// apply, drift, rollback, startup.
    pub kind: String,
    /// file-change, timer, cli, signal, startup.
    pub trigger: String,
    /// The generation it targeted.
    pub generation: Option<u64>,
    /// How it ended, or that it is running.
    pub outcome: Outcome,
    /// Why it failed.
    pub reason: Option<String>,
    /// One line of what happened (e.g. "drift repaired: …").
    pub summary: String,
    /// Start (RFC 3339).
    pub started: String,
    /// End (RFC 3339).
    pub finished: Option<String>,
    /// Duration.
    pub duration_ms: Option<i64>,
    /// Steps in order.
    pub steps: Vec<StepRecord>,
}

impl Operation {
    /// One log line for a finished operation: an error when it failed or was rolled back, a notice
    /// when it changed something, debug when a pass found nothing to do (the timer's every five
    /// minutes would otherwise fill the journal). Fields: `OPERATION_ID`, `KIND`, `TRIGGER`,
    /// `GENERATION` (0 when none), `OUTCOME`, and `APP` for an operation on one app (deploys,
    /// release rollbacks, restores).
    pub fn journal(&self, app: Option<&str>) {
        let generation = self.generation.unwrap_or(0);
        let (id, kind, trigger, outcome) = (self.id, &self.kind, &self.trigger, &self.outcome);
        if self.outcome == Outcome::Success {
            let quiet = self.steps.iter().all(|s| {
                s.outcome != StepOutcome::Ok || matches!(s.action.as_str(), "verify" | "health")
            }) && !matches!(self.kind.as_str(), "rollback" | "startup");
            if quiet {
                tracing::debug!(operation_id = id, kind = %kind, trigger = %trigger, generation, outcome = %outcome, app, "{kind} #{id}: {}", self.summary);
            } else {
                tracing::info!(operation_id = id, kind = %kind, trigger = %trigger, generation, outcome = %outcome, app, "{kind} #{id}: {}", self.summary);
            }
        } else {
            let reason = self.reason.as_deref().unwrap_or("no reason recorded");
            tracing::error!(operation_id = id, kind = %kind, trigger = %trigger, generation, outcome = %outcome, app, "{kind} #{id} {outcome}: {reason}");
        }
    }
}

/// The newest finished operation of one kind of one app, and its newest successful one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppOutcome {
    /// The app.
    pub app: String,
    /// deploy, backup, …
    pub kind: String,
    /// The newest finished operation.
    pub id: i64,
    /// Its outcome.
    pub outcome: Outcome,
    /// When it finished (RFC 3339).
    pub finished: Option<String>,
    /// The newest successful one: id and when it finished.
    pub last_success: Option<(i64, String)>,
}
