//! Why restic failed, told apart the way the user has to act on it: a key that does not open
//! the repository, a destination that does not answer, no repository there yet, restic not
//! installed, a dump that failed under a backup, anything else restic said — and a class:
//! an unreachable destination (or a host failure that passes) is transient, the rest permanent.
//!
//! Owns the words of these failures (users and tests read them; they are those restic's
//! failures always had). It must not run anything nor decide what to do about a failure: the
//! layers above retry or report.

use crate::host::HostError;

/// A failure of a restic command (see [`super::restic::Repo`]).
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The key does not open the repository.
    #[error("the backup key does not open the repository at {location} (wrong key? `strackt backup key import` the team's key)")]
    WrongKey {
        /// The destination, without credentials.
        location: String,
    },
    /// The destination does not answer (refused, no such host, timed out, stalled).
    #[error("the backup destination {location} is unreachable: {line}")]
    Unreachable {
        /// The destination, without credentials.
        location: String,
        /// restic's line saying so.
        line: String,
    },
    /// Nothing was backed up there yet.
    #[error("no backup repository at {location} yet (nothing was backed up there)")]
    NoRepository {
        /// The destination, without credentials.
        location: String,
    },
    /// Anything else restic reported.
    #[error("restic at {location}: {line}")]
    Restic {
        /// The destination, without credentials.
        location: String,
        /// restic's line about it.
        line: String,
    },
    /// restic is not installed (or cannot be started).
    #[error("{0} (install the `restic` package)")]
    NoRestic(HostError),
    /// The command streamed into a backup (pg_dump) failed: restic wrote no snapshot.
    #[error("the dump failed ({failure}): {line}")]
    Dump {
        /// How it ended.
        failure: String,
        /// Its last line of errors.
        line: String,
    },
    /// Running restic failed on the host's side.
    #[error(transparent)]
    Host(#[from] HostError),
    /// restic answered something strackt cannot read.
    #[error("{0}")]
    Output(String),
}

impl BackupError {
    /// Whether the same command may succeed later without anyone acting: the destination did
    /// not answer, or the host failed in a way that passes. A wrong key, a missing repository
    /// or program, a failed dump and anything else restic said are permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            BackupError::Unreachable { .. } => true,
            BackupError::Host(e) => e.is_transient(),
            BackupError::WrongKey { .. }
            | BackupError::NoRepository { .. }
            | BackupError::Restic { .. }
            | BackupError::NoRestic(_)
            | BackupError::Dump { .. }
            | BackupError::Output(_) => false,
        }
    }
}

/// The layers above still speak text (`ops::Progress` steps, the CLI's answers): a failure
/// becomes its message there, unchanged.
impl From<BackupError> for String {
    fn from(e: BackupError) -> String {
        e.to_string()
    }
}
