//! ops/ — the operations log: operations, their steps, and the only ways to write them.
//!
//! Owns the records ([`Operation`], [`StepRecord`]) and how they ended ([`Outcome`],
//! [`StepOutcome`], each with its one stored spelling), every SQL statement on the log's tables
//! (`store`, on the database `state/` opens and migrates), the engine that runs an operation's
//! steps and writes them as they advance ([`Progress`], used by deploys, backups and
//! restores), and what running steps print (`live`). The driver starts its operations with
//! [`start`], records them (steps built in `apply/`) with [`finish`], and marks those a stop
//! left running with [`interrupt_running`]. `State`'s writes to these tables are private to
//! this module, so nothing above can write the log any other way.
//!
//! Sits just above `state/` (its storage) and below every layer that runs operations: it must
//! not import `apply`, `deploy`, `backup` or `daemon`. A write that fails is an [`OpsError`],
//! logged at error level here with the operation it was about and returned to the caller,
//! never dropped silently.

pub mod live;
mod outcome;
mod progress;
mod record;
mod store;

pub use outcome::{Outcome, StepOutcome};
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
    /// Operations left running by a crash could not be marked interrupted.
    #[error("marking the operations a stop interrupted in the operations log: {0}")]
    Interrupt(StateError),
    /// Operation `0` was started but cannot be read back.
    #[error("operation {0} is missing from the operations log")]
    Vanished(i64),
}

impl OpsError {
    /// Whether writing again later may succeed: the database was busy or its task died, not
    /// refused for good.
    pub fn is_transient(&self) -> bool {
        match self {
            OpsError::Start(_, _, e) | OpsError::Write(_, e) | OpsError::Interrupt(e) => {
                state_is_transient(e)
            }
            OpsError::Vanished(_) => false,
        }
    }
}

/// Whether a state-database failure may pass: SQLite busy or locked (another writer, a
/// backup), or the blocking task that runs the call died. A database that is too new, not
/// private or otherwise refuses stays that way.
pub(crate) fn state_is_transient(e: &StateError) -> bool {
    use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
    match e {
        StateError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => {
            matches!(f.code, DatabaseBusy | DatabaseLocked)
        }
        StateError::Task(_) => true,
        _ => false,
    }
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

/// `at` as the log writes times (RFC 3339, milliseconds, UTC).
pub(crate) fn stamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Start a `kind` operation (about the host, not one app) caused by `trigger`, applying
/// `generation` when it is known, at `at`; its id.
///
/// # Errors
/// The log could not be written (logged here too).
pub async fn start(
    state: &StateHandle,
    kind: &'static str,
    trigger: &'static str,
    generation: Option<u64>,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<i64, OpsError> {
    let t = stamp(at);
    state
        .call(move |s| s.start_operation(kind, trigger, generation, &t))
        .await
        .map_err(|e| failed(OpsError::Start(kind, "the host".into(), e)))
}

/// Mark the operations a stop left `running` as interrupted at `at` (at start, before any new
/// one); how many there were.
///
/// # Errors
/// The log could not be written (logged here too).
pub async fn interrupt_running(
    state: &StateHandle,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<usize, OpsError> {
    let t = stamp(at);
    state
        .call(move |s| s.interrupt_running(&t))
        .await
        .map_err(|e| failed(OpsError::Interrupt(e)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::State;

    #[tokio::test]
    async fn a_write_the_database_refuses_is_an_error_for_every_way_of_writing_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        let state = StateHandle::new(State::open(&path).expect("state"));
        let id = start(&state, "apply", "cli", Some(1), chrono::Utc::now())
            .await
            .expect("a writable log");
        // The same database through a connection that may only read: every write fails.
        let refusing = StateHandle::new(State::open_reader(&path).expect("reader"));
        let started = start(&refusing, "apply", "cli", None, chrono::Utc::now()).await;
        assert!(
            matches!(started, Err(OpsError::Start("apply", _, _))),
            "{started:?}"
        );
        let op = Operation {
            id,
            kind: "apply".into(),
            trigger: "cli".into(),
            generation: Some(1),
            outcome: Outcome::Success,
            reason: None,
            summary: String::new(),
            started: stamp(chrono::Utc::now()),
            finished: Some(stamp(chrono::Utc::now())),
            duration_ms: Some(1),
            steps: vec![],
        };
        let finished = finish(&refusing, &op).await;
        assert!(
            matches!(finished, Err(OpsError::Write(i, _)) if i == id),
            "{finished:?}"
        );
        let interrupted = interrupt_running(&refusing, chrono::Utc::now()).await;
        assert!(
            matches!(interrupted, Err(OpsError::Interrupt(_))),
            "{interrupted:?}"
        );
        // Nothing was written behind the error: the operation is still running.
        assert_eq!(
            interrupt_running(&state, chrono::Utc::now())
                .await
                .expect("writable"),
            1
        );
    }
}
