//! What goes wrong reading generations back: a record that no longer renders to what it was,
//! a generation that does not exist or cannot be read, the store or the state database
//! failing underneath. Building and flipping generations are host work and fail with
//! [`HostError`]; this is the error of the pure and read-only parts above them.

use crate::definition::DefinitionError;
use crate::host::HostError;
use crate::state::StateError;

/// Why a generation cannot be read back, compared or rebuilt from its record.
#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    /// The recorded definition is refused by this strackt's validation.
    #[error("its definition no longer validates: {0}")]
    NoLongerValid(DefinitionError),
    /// Rendering the recorded definition again gives different content (named parts).
    #[error(
        "rendering its definition again gives different {} than it had (this strackt \
         renders differently from the one that built it)",
        .0.join(", ")
    )]
    RendersDifferently(Vec<&'static str>),
    /// The generation store failed.
    #[error(transparent)]
    Store(HostError),
    /// The state database failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// No generation is current, so there is nothing to compare with.
    #[error("no generation runs yet: nothing to compare")]
    NothingRuns,
    /// No generation was active before the one compared.
    #[error("there is no previous generation to compare with; name two: `strackt diff A B` (`strackt generations` lists them)")]
    NoPrevious,
    /// No directory and no record of this id.
    #[error("there is no generation {0}; `strackt generations --all` lists them")]
    Unknown(u64),
    /// The generation's directory is there but does not read.
    #[error("generation {id}: {source}")]
    Directory {
        /// The generation.
        id: u64,
        /// Why.
        #[source]
        source: HostError,
    },
    /// Pruned before records were kept.
    #[error("generation {0} has neither a directory nor a record (it was pruned by a strackt from before records were kept)")]
    NoRecord(u64),
    /// The recorded manifest is not JSON this strackt reads.
    #[error("generation {id}: its recorded manifest does not parse: {source}")]
    Manifest {
        /// The generation.
        id: u64,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

impl GenerationError {
    /// Whether reading again later may succeed without anyone acting: the store's transient
    /// host failures and a state database busy with another writer. A record that does not
    /// render, a generation that does not exist and a manifest that does not parse stay so.
    pub fn is_transient(&self) -> bool {
        match self {
            GenerationError::Store(e) | GenerationError::Directory { source: e, .. } => {
                e.is_transient()
            }
            GenerationError::State(StateError::Sqlite(rusqlite::Error::SqliteFailure(e, _))) => {
                matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                )
            }
            GenerationError::State(_)
            | GenerationError::NoLongerValid(_)
            | GenerationError::RendersDifferently(_)
            | GenerationError::NothingRuns
            | GenerationError::NoPrevious
            | GenerationError::Unknown(_)
            | GenerationError::NoRecord(_)
            | GenerationError::Manifest { .. } => false,
        }
    }
}
