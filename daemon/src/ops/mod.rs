//! ops/ — the operations log: operations, their steps, and the only ways to write them.
//!
//! Owns the records ([`Operation`], [`StepRecord`]), every SQL statement on the log's tables
//! (`store`, on the database `state/` opens and migrates), the engine that runs an operation's
//! steps and writes them as they advance ([`Progress`], used by deploys, backups and
//! restores), and what running steps print (`live`). Reconcile passes build their steps in
//! `apply/` and record them with [`finish`].
//!
//! Sits just above `state/` (its storage) and below every layer that runs operations: it must
//! not import `apply`, `deploy`, `backup` or `daemon`. A write that fails is an [`OpsError`],
//! logged at error level here with the operation it was about and returned to the caller,
//! never dropped silently.

pub mod live;
mod progress;
mod record;
mod store;

pub(crate) use progress::{Progress, Step, StepResult};
pub use record::{AppOutcome, Operation, StepRecord};

use crate::state::{StateError, StateHandle};

/// A write to the operations log failed.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The operation could not be started.
    #[error("starting a {0} operation about {1} in the operations log: {2}")]
    Start(&'static str, String, StateError),
    /// Operation `0` could not be written.
    #[error("recording operation {0} in the operations log: {1}")]
    Write(i64, StateError),
    /// Operation `0` was started but cannot be read back.
    #[error("operation {0} is missing from the operations log")]
    Vanished(i64),
}

/// Log `e` at error level and give it back, for `map_err`.
fn failed(e: OpsError) -> OpsError {
    tracing::error!("{e}");
    e
}

/// Told when an operation about an app finishes (the metrics count them).
pub trait Watch: Send + Sync + std::fmt::Debug {
    /// `op` about `app` finished.
    fn app_finished(&self, app: &str, op: &Operation);
}

/// Now, as the log writes times (RFC 3339, milliseconds, UTC).
pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Record `op`'s end: its outcome and all its steps, in one transaction.
///
/// # Errors
/// The log could not be written (logged here too).
pub async fn finish(state: &StateHandle, op: &Operation) -> Result<(), OpsError> {
    let (saved, id) = (op.clone(), op.id);
    state
        .call(move |s| s.finish_operation(&saved))
        .await
        .map_err(|e| failed(OpsError::Write(id, e)))
}
