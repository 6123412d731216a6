//! Why a rebuild stops: its own refusals (a definition already there, a key that does not
//! fit, a server or run the repository does not have, a pass that failed), each with the words
//! the operations log shows, and a class; the backup layer's and the deployer's failures are
//! carried with theirs.

use std::path::PathBuf;

/// Why a rebuild stops: its own refusals, and the failures of the layers it drives.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// The server already has a definition and `--force` was not given.
    #[error("this server already has a definition ({}): a rebuild replaces it, the server's secrets and its apps' data; run it with --force to do that", .0.display())]
    DefinitionExists(PathBuf),
    /// The key file does not hold one key on one line.
    #[error("{} must hold the team key on one line, as `strackt backup key init` printed it", .0.display())]
    KeyForm(PathBuf),
    /// This server's vault holds another key.
    #[error("this server already has a different backup key; it is not replaced")]
    DifferentKey,
    /// No bundle of that server (or run): what the repository has instead.
    #[error("{0}")]
    NotFound(String),
    /// The bundle found is another server's.
    #[error("snapshot {snapshot} holds server {found}, not {wanted}")]
    OtherServer {
        /// The snapshot's short id.
        snapshot: String,
        /// The server in the bundle.
        found: String,
        /// The server asked for.
        wanted: String,
    },
    /// The bundle names a secret that is a path, not a file name.
    #[error("the bundle names a secret `{0}` that is not a file name")]
    SecretName(String),
    /// A file could not be read or written (the key, the credentials, a secret, the
    /// definition or its directory; what and where, as shown).
    #[error(transparent)]
    Host(#[from] crate::host::HostError),
    /// The blocking task that writes the files died.
    #[error("writing the definition: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The daemon stopped while the rebuild waited for a pass.
    #[error("the daemon is shutting down")]
    ShuttingDown,
    /// A pass ended other than in success.
    #[error("the pass ended {outcome}: {reason} (strackt history --operation {id})")]
    PassEnded {
        /// Its outcome.
        outcome: String,
        /// Its reason, or its summary.
        reason: String,
        /// Its operation.
        id: i64,
    },
    /// No backup run of an app to restore from.
    #[error("no backup of {app} by {server} at or before run {run}")]
    NoRun {
        /// The app.
        app: String,
        /// The lost server.
        server: String,
        /// The bundle's run.
        run: String,
    },
    /// restic failed (reading the bundle, the run's snapshots).
    #[error(transparent)]
    Backup(#[from] crate::backup::error::BackupError),
    /// The deployer failed (starting the operation's record).
    #[error(transparent)]
    Deploy(#[from] crate::deploy::DeployError),
}

impl RebuildError {
    /// Whether running the same rebuild again later may succeed without anyone acting: the
    /// daemon was stopping, the backup destination did not answer, or the host failed in a way
    /// that passes (a backup's or the deployer's failure as that layer classes it). A missing
    /// or wrong key, an unknown server or run and a failed pass are permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            RebuildError::ShuttingDown => true,
            RebuildError::Host(e) => e.is_transient(),
            RebuildError::Backup(e) => e.is_transient(),
            RebuildError::Deploy(e) => e.is_transient(),
            RebuildError::DefinitionExists(_)
            | RebuildError::KeyForm(_)
            | RebuildError::DifferentKey
            | RebuildError::NotFound(_)
            | RebuildError::OtherServer { .. }
            | RebuildError::SecretName(_)
            | RebuildError::Task(_)
            | RebuildError::PassEnded { .. }
            | RebuildError::NoRun { .. } => false,
        }
    }
}
