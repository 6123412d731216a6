//! daemon/error — what goes wrong in the driver: its own bookkeeping (a call to the state
//! database or a write to the operations log, each with what it was for), reading the
//! definition and the generation store, and the requests of the control socket it refuses or
//! fails (`strackt confirm`, `hold`, `rollback`, `plan`, `edit`'s save, `updates`, `upgrade`).
//!
//! Owns these error types and their class (transient: a busy database, a dead blocking task,
//! a host failure that passes — the next try may not meet it; permanent: the rest, which
//! someone has to act on), and their crossing into [`RequestFailed`], the type the loop's
//! replies carry. Must not change a message: these texts are in `/status` (`record_problem`,
//! `definition_problem`, `updates.error`), the control socket's answers, the journal and the
//! log, and users and tests read them.

use std::path::PathBuf;
use std::time::Duration;

use crate::definition::{DefinitionError, EditError};
use crate::host::HostError;
use crate::ops::OpsError;
use crate::state::{GenerationState, StateError};
use crate::status::RequestFailed;

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
    /// A generation's manifest could not be put in JSON for its record.
    #[error(transparent)]
    Encode(serde_json::Error),
}

impl RecordError {
    /// Whether trying again later may succeed (the next pass does; nothing retries here).
    pub fn is_transient(&self) -> bool {
        match self {
            RecordError::Db { error, .. } => crate::ops::state_is_transient(error),
            RecordError::Log(e) => e.is_transient(),
            RecordError::Encode(_) => false,
        }
    }
}

/// A duration asked for (`hold --for`, `apply --confirm-within`) out of its bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} must be between 1s and {}", humantime::format_duration(Duration::from_secs(*max)))]
pub struct OutOfRange {
    /// The flag it was given with.
    pub what: String,
    /// The longest allowed, in seconds.
    pub max: u64,
}

/// The definition file cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// It cannot be read.
    #[error("{}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It does not validate.
    #[error(transparent)]
    Invalid(#[from] DefinitionError),
}

/// The generation store cannot say or read what runs.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store itself (`current`, its list of generations).
    #[error(transparent)]
    Store(HostError),
    /// A generation's directory.
    #[error("generation {id}: {source}")]
    Generation {
        /// The generation.
        id: u64,
        /// Why.
        source: HostError,
    },
}

impl StoreError {
    /// Whether reading again later may succeed: as the host's failure is.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Store(e) | StoreError::Generation { source: e, .. } => e.is_transient(),
        }
    }
}

/// Why a pruned generation cannot be rebuilt from its record.
#[derive(Debug, thiserror::Error)]
pub enum Unrebuildable {
    /// There is no record.
    #[error("its directory was pruned before strackt kept records")]
    NoRecord,
    /// The recorded manifest is not JSON this strackt reads.
    #[error("its manifest is unreadable: {0}")]
    Manifest(serde_json::Error),
    /// The recorded definition does not render to what it was.
    #[error(transparent)]
    Render(crate::generation::GenerationError),
    /// Its packages cannot be fetched again.
    #[error("package {packages}: {source}")]
    Fetch {
        /// `name version`, comma-separated.
        packages: String,
        /// Why.
        source: HostError,
    },
    /// The directory cannot be built in the store.
    #[error(transparent)]
    Store(HostError),
}

/// A request the driver refuses or fails: `strackt confirm`, `hold`, `rollback`, `plan`, and
/// `edit`'s save. Refusals leave everything as it was.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A duration out of its bounds.
    #[error(transparent)]
    OutOfRange(#[from] OutOfRange),
    /// `strackt confirm` with no switch to confirm.
    #[error("nothing is waiting for confirmation")]
    NothingToConfirm,
    /// `strackt rollback` without an id, and no generation ran before the current one.
    #[error("there is no previous generation to roll back to")]
    NoPrevious,
    /// `strackt rollback` to the generation that runs.
    #[error("generation {0} is already the current one")]
    AlreadyCurrent(u64),
    /// `strackt rollback` to a generation that never ran.
    #[error(
        "generation {id} is {state}; only generations that ran successfully can be rolled back to"
    )]
    NeverRan {
        /// The generation.
        id: u64,
        /// Its state.
        state: GenerationState,
    },
    /// `strackt rollback` to an id with no generation.
    #[error("there is no generation {0} (see `strackt generations`)")]
    NoGeneration(u64),
    /// A pruned generation that cannot come back.
    #[error("generation {id} cannot be rebuilt from its record: {why}")]
    NotRebuilt {
        /// The generation.
        id: u64,
        /// Why.
        why: Unrebuildable,
    },
    /// The generation store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A read of the state database (not a bookkeeping write: nothing is shown in `/status`).
    #[error(transparent)]
    State(#[from] StateError),
    /// The driver's bookkeeping (reported in `/status` already).
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The definition file.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A definition text sent to `strackt plan` does not validate.
    #[error(transparent)]
    Invalid(DefinitionError),
    /// The firewall change would lock out a connected SSH client, or that cannot be told
    /// (the lock-out guard's words).
    #[error("{0}")]
    Lockout(String),
    /// apt cannot resolve the definition's packages.
    #[error("resolving packages: {0}")]
    Packages(HostError),
    /// The running generation cannot be read for the diff.
    #[error(transparent)]
    Running(crate::generation::GenerationError),
    /// What strackt owns cannot be read.
    #[error(transparent)]
    Ownership(HostError),
    /// The host cannot be observed.
    #[error("observing the host: {0}")]
    Observe(HostError),
    /// `strackt edit`'s file changed since the edit began: the other save wins.
    #[error("{} changed since the edit began (saved by someone else?); nothing was written: run `strackt edit` again", .0.display())]
    EditedMeanwhile(PathBuf),
    /// `strackt edit`'s text does not validate.
    #[error("the definition does not validate; nothing was written:\n{0}")]
    NotSaved(DefinitionError),
    /// `strackt edit`'s text cannot be written.
    #[error("writing {}: {source}; nothing was written", path.display())]
    Write {
        /// The definition file.
        path: PathBuf,
        /// Why.
        source: HostError,
    },
}

impl ControlError {
    /// Whether the same request may succeed later without anyone acting: the state database
    /// was busy, the host failed in a way that passes. Refusals and invalid input are
    /// permanent: someone has to change something first.
    pub fn is_transient(&self) -> bool {
        match self {
            ControlError::Store(e) => e.is_transient(),
            ControlError::State(e) => crate::ops::state_is_transient(e),
            ControlError::Record(e) => e.is_transient(),
            ControlError::NotRebuilt {
                why: Unrebuildable::Fetch { source: e, .. } | Unrebuildable::Store(e),
                ..
            }
            | ControlError::Packages(e)
            | ControlError::Ownership(e)
            | ControlError::Observe(e)
            | ControlError::Write { source: e, .. } => e.is_transient(),
            ControlError::NotRebuilt {
                why: Unrebuildable::Render(e),
                ..
            }
            | ControlError::Running(e) => e.is_transient(),
            ControlError::OutOfRange(_)
            | ControlError::NothingToConfirm
            | ControlError::NoPrevious
            | ControlError::AlreadyCurrent(_)
            | ControlError::NeverRan { .. }
            | ControlError::NoGeneration(_)
            | ControlError::NotRebuilt { .. }
            | ControlError::Load(_)
            | ControlError::Invalid(_)
            | ControlError::Lockout(_)
            | ControlError::EditedMeanwhile(_)
            | ControlError::NotSaved(_) => false,
        }
    }
}

impl From<ControlError> for RequestFailed {
    fn from(e: ControlError) -> RequestFailed {
        let transient = e.is_transient();
        RequestFailed::new(e, transient)
    }
}

/// `strackt updates` and `strackt upgrade` (and the `strackt.updates` schedule) refused or
/// failed. Refusals before the file is written leave everything as it was.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// Neither the definition file nor the running generation gives the pins.
    #[error("{} does not parse and no generation runs", file.display())]
    NoPins {
        /// The definition file.
        file: PathBuf,
    },
    /// The running generation's definition does not validate.
    #[error(transparent)]
    RunningInvalid(DefinitionError),
    /// apt cannot be asked.
    #[error("asking apt: {0}")]
    Apt(HostError),
    /// The blocking task that asked apt died.
    #[error("the apt task ended: {0}")]
    AptTask(tokio::task::JoinError),
    /// The definition file cannot be read (or its metadata).
    #[error("{}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The definition file is not text.
    #[error("{}: not UTF-8 text; nothing was changed", .0.display())]
    NotText(PathBuf),
    /// The definition file does not validate.
    #[error("the definition does not parse; nothing was changed:\n{0}")]
    DoesNotParse(DefinitionError),
    /// Packages named that the definition does not pin.
    #[error("not in the definition's `packages:` ({}): {}; nothing was changed", path.display(), names.join(", "))]
    NotPinned {
        /// The definition file.
        path: PathBuf,
        /// The packages.
        names: Vec<String>,
    },
    /// Packages named that the check did not report on.
    #[error("not in the definition's `packages:`: {}; nothing was changed (a package is added by writing it there)", .0.join(", "))]
    NotChecked(Vec<String>),
    /// The generation store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Nothing runs to upgrade.
    #[error("no generation runs yet: `strackt apply` the definition first")]
    NothingRuns,
    /// The file is not the text the running generation was built from.
    #[error("{} is not what runs (generation {id} was built from other text: an edit that failed, was rolled back from or is not applied yet); `strackt apply` or undo it first — nothing was changed", path.display())]
    NotRunning {
        /// The definition file.
        path: PathBuf,
        /// The running generation.
        id: u64,
    },
    /// The check before the upgrade failed.
    #[error("checking for updates: {0}")]
    Check(Box<UpdateError>),
    /// The versions cannot be written into the text.
    #[error("{}: {source}; nothing was changed", path.display())]
    Edit {
        /// The definition file.
        path: PathBuf,
        /// Why.
        source: EditError,
    },
    /// The edited text does not validate (a bug).
    #[error("the edited definition does not parse (a bug; nothing was changed):\n{0}")]
    EditInvalid(DefinitionError),
    /// The edit changed more than the versions (a bug).
    #[error("the edit changed more than the versions (a bug); nothing was changed")]
    EditTooWide,
    /// apt cannot be asked about the new versions.
    #[error("asking apt: {0}; nothing was changed")]
    AptRefused(HostError),
    /// apt does not have some of the new versions (each at its line in the edited text).
    #[error("{0}\nnothing was changed")]
    Unavailable(DefinitionError),
    /// The file was saved while apt was asked: that save wins.
    #[error("{} changed while the updates were checked; nothing was written, run the upgrade again", .0.display())]
    ChangedMeanwhile(PathBuf),
    /// The file cannot be written.
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The definition file.
        path: PathBuf,
        /// Why.
        source: HostError,
    },
}

impl UpdateError {
    /// Whether the same check or upgrade may succeed later without anyone acting: apt or the
    /// host failed in a way that passes, apt's task died. A file that does not parse, a
    /// package not pinned, a file saved meanwhile (the user runs it again) are permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            UpdateError::Apt(e)
            | UpdateError::AptRefused(e)
            | UpdateError::Write { source: e, .. } => e.is_transient(),
            UpdateError::AptTask(_) => true,
            UpdateError::Store(e) => e.is_transient(),
            UpdateError::Check(e) => e.is_transient(),
            UpdateError::NoPins { .. }
            | UpdateError::RunningInvalid(_)
            | UpdateError::Unreadable { .. }
            | UpdateError::NotText(_)
            | UpdateError::DoesNotParse(_)
            | UpdateError::NotPinned { .. }
            | UpdateError::NotChecked(_)
            | UpdateError::NothingRuns
            | UpdateError::NotRunning { .. }
            | UpdateError::Edit { .. }
            | UpdateError::EditInvalid(_)
            | UpdateError::EditTooWide
            | UpdateError::Unavailable(_)
            | UpdateError::ChangedMeanwhile(_) => false,
        }
    }
}

impl From<UpdateError> for RequestFailed {
    fn from(e: UpdateError) -> RequestFailed {
        let transient = e.is_transient();
        RequestFailed::new(e, transient)
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

    fn timeout() -> HostError {
        HostError::Timeout {
            what: "apt".into(),
            secs: 5,
        }
    }

    fn refused() -> HostError {
        HostError::Command {
            op: "nft",
            message: "syntax error".into(),
        }
    }

    #[test]
    fn control_errors_are_transient_only_where_the_host_or_database_may_pass() {
        assert!(ControlError::Observe(timeout()).is_transient());
        assert!(!ControlError::Observe(refused()).is_transient());
        let store = StoreError::Generation {
            id: 3,
            source: timeout(),
        };
        assert!(ControlError::Store(store).is_transient());
        let busy = StateError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        ));
        assert!(ControlError::State(busy).is_transient());
        let offline = Unrebuildable::Fetch {
            packages: "demo-lib 1.0".into(),
            source: timeout(),
        };
        assert!(ControlError::NotRebuilt {
            id: 1,
            why: offline
        }
        .is_transient());
        let never = ControlError::NotRebuilt {
            id: 1,
            why: Unrebuildable::NoRecord,
        };
        assert!(!never.is_transient());
        assert_eq!(
            never.to_string(),
            "generation 1 cannot be rebuilt from its record: its directory was pruned before strackt kept records"
        );
        for permanent in [
            ControlError::NothingToConfirm,
            ControlError::NoPrevious,
            ControlError::AlreadyCurrent(2),
            ControlError::NoGeneration(9),
            ControlError::Lockout("it would lock out 10.0.0.7".into()),
            ControlError::EditedMeanwhile("/etc/strackt/server.yaml".into()),
        ] {
            assert!(!permanent.is_transient(), "{permanent}");
        }
        let never_ran = ControlError::NeverRan {
            id: 4,
            state: GenerationState::Failed,
        };
        assert_eq!(
            never_ran.to_string(),
            "generation 4 is failed; only generations that ran successfully can be rolled back to"
        );
        let range = OutOfRange {
            what: "--confirm-within".into(),
            max: 24 * 3600,
        };
        assert_eq!(
            range.to_string(),
            "--confirm-within must be between 1s and 1day"
        );
        assert!(!ControlError::from(range).is_transient());
    }

    #[test]
    fn update_errors_are_transient_only_where_apt_or_the_host_may_pass() {
        assert!(UpdateError::Apt(timeout()).is_transient());
        assert!(!UpdateError::Apt(refused()).is_transient());
        let check = UpdateError::Check(Box::new(UpdateError::Apt(timeout())));
        assert!(check.is_transient(), "as the check's own failure");
        assert!(!UpdateError::Check(Box::new(UpdateError::NothingRuns)).is_transient());
        let write = UpdateError::Write {
            path: "/etc/strackt/server.yaml".into(),
            source: timeout(),
        };
        assert!(write.is_transient());
        for permanent in [
            UpdateError::NothingRuns,
            UpdateError::NotText("/etc/strackt/server.yaml".into()),
            UpdateError::NotChecked(vec!["nginx".into()]),
            UpdateError::EditTooWide,
            UpdateError::ChangedMeanwhile("/etc/strackt/server.yaml".into()),
        ] {
            assert!(!permanent.is_transient(), "{permanent}");
        }
        let refused = UpdateError::Check(Box::new(UpdateError::Apt(refused())));
        assert_eq!(
            refused.to_string(),
            "checking for updates: asking apt: nft: syntax error"
        );
        let not_pinned = UpdateError::NotPinned {
            path: "/etc/strackt/server.yaml".into(),
            names: vec!["nginx".into(), "x".into()],
        };
        assert_eq!(
            not_pinned.to_string(),
            "not in the definition's `packages:` (/etc/strackt/server.yaml): nginx, x; nothing was changed"
        );
    }

    #[test]
    fn a_reply_carries_the_drivers_error_its_message_and_its_class() {
        let failed = RequestFailed::from(ControlError::Observe(timeout()));
        assert!(failed.is_transient());
        assert_eq!(
            failed.to_string(),
            "observing the host: timed out after 5s waiting for apt"
        );
        assert!(matches!(
            failed.error().downcast_ref::<ControlError>(),
            Some(ControlError::Observe(_))
        ));
        let failed = RequestFailed::from(UpdateError::NothingRuns);
        assert!(!failed.is_transient());
        assert_eq!(
            failed.to_string(),
            "no generation runs yet: `strackt apply` the definition first"
        );
    }
}
