//! status — what the reconcile loop shares with what watches and drives it (`api/`, `metrics`,
//! the CLI): the values it publishes on its status channel ([`Status`] and its parts), the
//! requests it takes ([`Request`]) and their answers, and why one was not done
//! ([`RequestFailed`]: the driver's error, boxed, with its class). Their serde form is the
//! wire format of `/status` and the control socket.
//!
//! Owns these types only, so that `daemon/`, `api/`, `metrics`, `backup/` and the CLI all
//! depend on it and not on each other. Must not: do anything (no I/O, no rules: those are
//! the daemon's), or import `daemon/`, `api/`, `metrics` or `backup/`, which sit above it.

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::generation::diff::GenerationDiff;
use crate::ops::{Operation, Outcome, StepRecord};

/// What `/status` and `strackt status` show.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    /// The generation `current` points at.
    pub current_generation: Option<u64>,
    /// The last pass (recorded or not).
    pub last_pass: Option<Operation>,
    /// When the timer fires next (RFC 3339).
    pub next_pass: Option<String>,
    /// ok, failed or unknown: the last verification.
    pub health: String,
    /// Drift repaired by the last pass.
    pub drift: Vec<String>,
    /// Why the last write to the state database (operations log, generation records, hold,
    /// confirmation) failed, until the next operation is started in the log.
    pub record_problem: Option<String>,
    /// Why the definition on disk is not applied, if it is not.
    pub definition_problem: Option<String>,
    /// Digest over what the current generation manages.
    pub digest: Option<String>,
    /// Experiment mode: drift repair paused until then.
    pub hold: Option<Hold>,
    /// A switch waiting for `strackt confirm`.
    pub pending_confirm: Option<PendingConfirm>,
    /// Backups per app: next run, last outcome.
    pub backups: std::collections::BTreeMap<String, BackupState>,
    /// The last check for package updates (`strackt updates`, the `strackt.updates` schedule).
    pub updates: Option<UpdatesReport>,
    /// Microseconds the last pass or rollback spent per phase (load, each observe, plan, each
    /// kind of step, the settle wait, record), for `tests/bench`; see `timing`.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub last_pass_phases_us: crate::timing::Phases,
}

/// Experiment mode: drift repair paused until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Hold {
    /// When drift repair resumes (RFC 3339).
    pub until: String,
    /// Why, as the operator said.
    pub reason: Option<String>,
}

/// A switch made by `apply --confirm-within`: reverted to `previous` at `deadline` unless
/// confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PendingConfirm {
    /// The generation that must be confirmed.
    pub generation: u64,
    /// Where to go back to.
    pub previous: u64,
    /// When (RFC 3339).
    pub deadline: String,
}

/// What `/status` shows per app with backups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupState {
    /// The next scheduled run (RFC 3339, UTC).
    pub next_run: Option<String>,
    /// The last run's operation.
    pub last_operation: Option<i64>,
    /// success or failed.
    pub last_outcome: Option<Outcome>,
    /// Why the last run failed.
    pub last_error: Option<String>,
    /// When the last successful run finished.
    pub last_success: Option<String>,
}

// What `strackt updates` found and `strackt upgrade` did.

/// A newer version and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// The version.
    pub version: String,
    /// The suites it is published in (`bookworm-security`).
    pub suites: Vec<String>,
    /// One of them is a security suite.
    pub security: bool,
}

/// One package the definition pins, and what apt offers beyond it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageUpdate {
    /// The package.
    pub name: String,
    /// As the definition writes it: an exact version or `latest`.
    pub pinned: String,
    /// The exact version that stands for (for `latest`: what the running generation locked).
    pub version: Option<String>,
    /// apt's candidate, when newer than `version`.
    pub newest: Option<Candidate>,
    /// The newest version from a security suite, when newer than `version`.
    pub security: Option<Candidate>,
}

/// The result of a check (`strackt updates`, `status.updates`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdatesReport {
    /// When it ran (RFC 3339).
    pub checked: String,
    /// apt's lists were refreshed (`apt-get update`) just before.
    pub refreshed: bool,
    /// Why the refresh failed, when it did: the versions below are from the lists as they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_problem: Option<String>,
    /// Why the check failed: nothing below is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Packages with a newer version.
    pub pending: usize,
    /// Of those, packages with a newer version from a security suite.
    pub security: usize,
    /// Every package the definition pins, by name.
    pub packages: Vec<PackageUpdate>,
}

/// One package an upgrade moves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upgrade {
    /// The package.
    pub name: String,
    /// The version it runs now.
    pub from: String,
    /// The version it is upgraded to.
    pub to: String,
    /// `to` comes from a security suite.
    pub security: bool,
    /// The definition writes it `latest`: its text is not rewritten, the rebuild moves it.
    pub latest: bool,
    /// Where `to` comes from.
    pub suites: Vec<String>,
}

impl Upgrade {
    /// `strackt-demo 1.0 → 1.1 (bookworm-security)`.
    pub fn describe(&self) -> String {
        let latest = if self.latest { " [latest]" } else { "" };
        let from = if self.suites.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.suites.join(", "))
        };
        format!("{} {} → {}{from}{latest}", self.name, self.from, self.to)
    }
}

/// What `strackt upgrade` answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpgradeOutcome {
    /// What was (or would have been) upgraded.
    pub upgrades: Vec<Upgrade>,
    /// The pass that applied it; none when nothing was pending.
    pub operation: Option<Operation>,
    /// The definition file was put back to its previous bytes (the switch did not stay).
    pub definition_restored: bool,
    /// In words.
    pub message: String,
}

// What the control socket asks of the loop, and the answers only the loop gives.

/// Where the loop sends a request's answer: what was asked, or why it was not done.
pub type Reply<T> = oneshot::Sender<Result<T, RequestFailed>>;

/// A request from the control socket to the loop.
#[derive(Debug)]
pub enum Request {
    /// Run a pass now (retrying a definition that failed before), optionally to be confirmed
    /// within that many seconds. A pass always answers with its operation: what went wrong
    /// is in it.
    Apply(Option<u64>, oneshot::Sender<Operation>),
    /// Confirm a switch made with a confirmation deadline; the generation confirmed.
    Confirm(Reply<u64>),
    /// Switch to an earlier generation.
    Rollback(Option<u64>, Reply<Operation>),
    /// Compute what the next pass would do (with a definition text: what applying it would).
    Plan(Option<DefinitionText>, Reply<PlanView>),
    /// Save an edited definition (unless the file changed since the edit began) and run a
    /// pass on it.
    Save {
        /// The new text.
        definition: DefinitionText,
        /// SHA-256 of the file when the edit began (`None`: there was none).
        base_sha256: Option<String>,
        /// The pass's operation.
        reply: Reply<Operation>,
    },
    /// Start or end experiment mode.
    Hold(HoldChange, Reply<Held>),
    /// Refresh apt's lists and compare the pinned packages with what apt offers.
    Updates(Reply<UpdatesReport>),
    /// Upgrade pinned packages (all, or the named ones; only to security versions with the
    /// flag) by rewriting their versions in the definition and applying it.
    Upgrade {
        /// Only versions from a security suite.
        security: bool,
        /// The packages (none: every pinned one with an update).
        packages: Vec<String>,
        /// The answer.
        reply: Reply<UpgradeOutcome>,
    },
}

/// Why the loop did not do what a request asked: the driver's own error, carried as it is
/// (its types sit above this module, so it crosses boxed; `error()` downcasts to them), and
/// its class, decided by the driver. Its message is the driver's error's, unchanged.
#[derive(Debug)]
pub struct RequestFailed {
    error: Box<dyn std::error::Error + Send + Sync + 'static>,
    transient: bool,
}

impl RequestFailed {
    /// `error`, transient (may succeed later without anyone acting) or not.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static, transient: bool) -> Self {
        RequestFailed {
            error: Box::new(error),
            transient,
        }
    }

    /// Whether asking again later may succeed without anyone acting.
    pub fn is_transient(&self) -> bool {
        self.transient
    }

    /// The driver's error (`downcast_ref` gives its type back).
    pub fn error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.error
    }
}

impl std::fmt::Display for RequestFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

/// Transparent: the driver's error's own source, not the error again.
impl std::error::Error for RequestFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

/// What `strackt hold` answers: the hold started, or the pass that ended it (serialized as
/// the one or the other, as the CLI reads them).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Held {
    /// Drift repair paused until then.
    Until(Hold),
    /// The hold was ended; the pass that followed at once.
    Released(Operation),
}

/// What `strackt hold` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum HoldChange {
    /// Pause drift repair for this long.
    For {
        /// Seconds.
        seconds: u64,
        /// Why.
        reason: Option<String>,
    },
    /// End the hold now (the pass that follows restores everything).
    Release,
}

/// A definition's text sent over the socket, with the name its messages use.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DefinitionText {
    /// The file it came from (for `FILE:LINE:COL` in messages).
    pub file: String,
    /// The text.
    pub text: String,
}

/// What `strackt plan` shows.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PlanView {
    /// The generation the plan leads to: "current" (drift only) or "new".
    pub target: String,
    /// The steps.
    pub steps: Vec<StepRecord>,
    /// The plan as text.
    pub text: String,
    /// Hand-installed packages kept because apps or strackt need them: name → why.
    #[serde(default)]
    pub kept: std::collections::BTreeMap<String, String>,
    /// What differs between the running generation and the one the plan builds (empty when
    /// the plan stays on the current generation).
    #[serde(default)]
    pub changes: GenerationDiff,
}
