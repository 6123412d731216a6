//! daemon/error — what goes wrong in the driver's own bookkeeping: a call to the state
//! database or a write to the operations log, each with what it was for.
//!
//! Owns the error type and its class (transient: a busy database or a dead blocking task,
//! which the next pass may not meet; permanent: a database this strackt cannot use). Must not
//! change a message: these texts are in `/status` (`record_problem`), the journal and the log.

use crate::ops::OpsError;
use crate::state::StateError;

/// The driver's bookkeeping failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// A call to the state database, for `what` ("recording the hold").
    #[error("{what}: {error}")]
    Db {
        /// What the call was for.
        what: String,
        /// What the database said.
        error: StateError,
    },
    /// A write to the operations log (logged by `ops` already).
    #[error(transparent)]
    Log(#[from] OpsError),
}

impl RecordError {
    /// Whether trying again later may succeed (the next pass does; nothing retries here).
    pub fn is_transient(&self) -> bool {
        match self {
            RecordError::Db { error, .. } => crate::ops::state_is_transient(error),
            RecordError::Log(e) => e.is_transient(),
        }
    }
}

/// The driver's requests (`strackt confirm`, `hold`, `rollback`, `plan`) still answer the
/// control socket with a message; a record error crosses them as exactly its message.
impl From<RecordError> for String {
    fn from(e: RecordError) -> String {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_as_before_and_a_busy_database_is_transient() {
        let busy = || {
            StateError::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                None,
            ))
        };
        let e = RecordError::Db {
            what: "recording the hold".into(),
            error: busy(),
        };
        assert_eq!(
            e.to_string(),
            "recording the hold: state database: Error code 5: database is locked"
        );
        assert!(e.is_transient());
        let e = RecordError::Log(OpsError::Write(7, busy()));
        assert_eq!(
            e.to_string(),
            "recording operation 7 in the operations log: state database: Error code 5: database is locked"
        );
        assert!(e.is_transient());
        let newer = RecordError::Db {
            what: "reading the hold".into(),
            error: StateError::TooNew { found: 9, known: 5 },
        };
        assert!(!newer.is_transient());
        assert!(!RecordError::Log(OpsError::Vanished(3)).is_transient());
    }
}
