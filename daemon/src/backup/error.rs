//! Why a backup, verify, restore or server bundle failed, told apart the way the user has to
//! act on it, with a class: whether the same work may succeed later without anyone acting.
//!
//! One type for the whole layer: every call path of `backup/` crosses several of these kinds
//! (`backup list` reads the definition, opens the repository and runs restic; a restore adds
//! the server's files and the deployer), and the layers above (the control socket, `rebuild`)
//! take it through one conversion. The kinds:
//! - restic's own failures: a key that does not open the repository, a destination that does
//!   not answer, no repository there yet, a lock another restic holds, restic not installed,
//!   a dump that failed under a backup, anything else restic said;
//! - opening the repository: no key, credentials that do not fit, a location not understood;
//! - the definition as backups read it, and a run of the app already going;
//! - the run's parts and the server bundle;
//! - a restore's refusals and its work on the app's files;
//! - the deployer's and the vault's failures, and the host's (strackt's private directories
//!   included), each carried with its class;
//! - a failed step of an operation, with its failure as the cause.
//!
//! Transient: an unreachable destination, a repository locked by another restic, a run of the
//! app already going, a host or file failure that passes, and a step that failed of one of
//! these. The rest is permanent.
//!
//! Owns the words of these failures (users and tests read them; they are the ones these
//! failures always had). It must not run anything nor decide what to do about a failure: the
//! layers above retry or report.

use std::path::PathBuf;

use crate::definition::DefinitionError;
use crate::host::HostError;

/// A failure of the backup layer.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    // restic (see [`super::restic::Repo`]).
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
    /// Another restic holds the repository's lock (a run of another app, a receiver's prune):
    /// said as [`BackupError::Restic`] is, told apart for its class.
    #[error("restic at {location}: {line}")]
    Locked {
        /// The destination, without credentials.
        location: String,
        /// restic's line about it.
        line: String,
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
    /// Running a program or reading or writing a file failed on the host's side (what and
    /// where, as shown).
    #[error(transparent)]
    Host(#[from] HostError),
    /// restic answered something strackt cannot read.
    #[error("{0}")]
    Output(String),

    // Opening the repository.
    /// The vault has no team key.
    #[error("this server has no backup key: run `strackt backup key init` (first server of the team) or `strackt backup key import`")]
    NoKey,
    /// An S3 credentials secret lacks a line.
    #[error("secret `{secret}` has no {key}=… line")]
    CredentialsLine {
        /// The secret's name.
        secret: String,
        /// The variable it lacks.
        key: &'static str,
    },
    /// A receiver's credentials secret is not `USER:PASSWORD`.
    #[error("secret `{0}` must be USER:PASSWORD")]
    CredentialsForm(String),
    /// A receiver's credentials file (a rebuild's) is not `USER:PASSWORD`.
    #[error("the receiver's credentials file holds USER:PASSWORD")]
    CredentialsFile,
    /// The backup spec names no destination (validation refuses that).
    #[error("no destination")]
    NoDestination,
    /// A `rest:` location without a scheme.
    #[error("{0}: expected rest:https://HOST:PORT/NAME/")]
    RestLocation(String),
    /// A location that is neither `s3:` nor `rest:`.
    #[error(
        "{0}: the repository is s3:https://ENDPOINT/BUCKET/PREFIX or rest:https://HOST:PORT/NAME/"
    )]
    Location(String),

    // The definition as backups read it; runs.
    /// The app has no `backups:` entry.
    #[error("no `backups:` entry for app `{0}` in the definition")]
    NotBackedUp(String),
    /// No such app.
    #[error("no app `{0}` in the definition")]
    NoApp(String),
    /// `database: true` for an app without a database.
    #[error("app `{0}` has no database")]
    NoDatabase(String),
    /// A backup or verify of the app is running (it ends by itself).
    #[error("a backup of {0} is already running")]
    AlreadyRunning(String),

    // The run's parts.
    /// A backed-up path is not there.
    #[error("{0} does not exist (deploy the app first)")]
    PathMissing(String),
    /// A path that names no file or directory (`/`).
    #[error("{}: not a path to a file or directory", .0.display())]
    NotAPath(PathBuf),
    /// Reaching or changing a tree the app's user can change failed (a link on the way is
    /// refused, see [`crate::host::tree`]).
    #[error("{0}")]
    Tree(std::io::Error),

    // The server bundle.
    /// A bundle that is not JSON of a bundle.
    #[error("the server bundle does not read: {0}")]
    BundleRead(serde_json::Error),
    /// A bundle of a newer format.
    #[error("the server bundle is of format {0} (this strackt reads {reads}): upgrade strackt", reads = super::server::FORMAT)]
    BundleFormat(u32),
    /// The bundle does not serialize.
    #[error("{0}")]
    BundleWrite(serde_json::Error),
    /// No generation is live: nothing to bundle yet.
    #[error("no generation is live yet (has strackt applied one?)")]
    NothingLive,
    /// The live generation's manifest does not read.
    #[error("the live manifest: {0}")]
    LiveManifest(serde_json::Error),
    /// A definition (the live one, a bundle's) does not parse.
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    /// A pinned definition does not serialize.
    #[error("{0}")]
    Yaml(serde_yaml::Error),

    // A restore.
    /// The repository has no such run of the app.
    #[error("no backup `{run}` of {app} at {location} (see `strackt backup list {app}`)")]
    NoRun {
        /// The run asked for.
        run: String,
        /// The app.
        app: String,
        /// The destination, without credentials.
        location: String,
    },
    /// The run's database snapshot does not hold the dump as a file (a link, a directory).
    #[error("{file} is not a file in snapshot {snapshot}")]
    NotAFile {
        /// The dump's path in the snapshot.
        file: String,
        /// The snapshot's short id.
        snapshot: String,
    },
    /// The app's `shared/` has no parent directory.
    #[error("{} has no parent directory", .0.display())]
    NoParent(PathBuf),
    /// A backed-up path that does not stay inside `shared/`.
    #[error("{0}: not a path inside shared/")]
    NotInShared(String),
    /// The current content of a path could not be moved aside.
    #[error("moving {rel} aside: {source}")]
    MoveAside {
        /// The path, relative to `shared/`.
        rel: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The restored content could not be moved in.
    #[error("moving the restored {rel} in: {source}")]
    MoveIn {
        /// The path, relative to `shared/`.
        rel: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// One of the app's units did not stop.
    #[error("stopping {unit}: {source}")]
    Stop {
        /// The unit.
        unit: String,
        /// Why.
        #[source]
        source: HostError,
    },

    // What the layers below say as text.
    /// The deployer's failure (the definition, secrets, the app's claim, its commit, a
    /// redeploy), with its class.
    #[error(transparent)]
    Deploy(#[from] crate::deploy::DeployError),
    /// The vault refused or failed, with its class.
    #[error(transparent)]
    Vault(#[from] crate::vault::VaultError),
    /// The blocking task doing file work died.
    #[error("file work: {0}")]
    Task(#[from] tokio::task::JoinError),

    /// A step of the operation failed: the words the operations log recorded, and the failure
    /// itself when it was one of these (a deploy's or a parallel step's is text only).
    #[error("{text}")]
    Step {
        /// "ACTION failed: WHY", as recorded.
        text: String,
        /// What failed.
        #[source]
        cause: Option<Box<BackupError>>,
    },
}

impl BackupError {
    /// Whether the same work may succeed later without anyone acting: the destination did
    /// not answer, another restic holds the repository's lock, a run of the app is going, the
    /// host or a file failed in a way that passes, or a step failed of one of these. A wrong
    /// key, a missing repository or program, a failed dump, the definition, the bundle, a
    /// restore's refusals, what the layers below say as text and anything else restic said
    /// are permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            BackupError::Unreachable { .. }
            | BackupError::Locked { .. }
            | BackupError::AlreadyRunning(_) => true,
            BackupError::Host(e) | BackupError::Stop { source: e, .. } => e.is_transient(),
            BackupError::Tree(e)
            | BackupError::MoveAside { source: e, .. }
            | BackupError::MoveIn { source: e, .. } => matches!(
                e.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
            ),
            BackupError::Step { cause, .. } => cause.as_ref().is_some_and(|c| c.is_transient()),
            BackupError::Deploy(e) => e.is_transient(),
            BackupError::Vault(e) => e.is_transient(),
            BackupError::WrongKey { .. }
            | BackupError::NoRepository { .. }
            | BackupError::Restic { .. }
            | BackupError::NoRestic(_)
            | BackupError::Dump { .. }
            | BackupError::Output(_)
            | BackupError::NoKey
            | BackupError::CredentialsLine { .. }
            | BackupError::CredentialsForm(_)
            | BackupError::CredentialsFile
            | BackupError::NoDestination
            | BackupError::RestLocation(_)
            | BackupError::Location(_)
            | BackupError::NotBackedUp(_)
            | BackupError::NoApp(_)
            | BackupError::NoDatabase(_)
            | BackupError::PathMissing(_)
            | BackupError::NotAPath(_)
            | BackupError::BundleRead(_)
            | BackupError::BundleFormat(_)
            | BackupError::BundleWrite(_)
            | BackupError::NothingLive
            | BackupError::LiveManifest(_)
            | BackupError::Definition(_)
            | BackupError::Yaml(_)
            | BackupError::NoRun { .. }
            | BackupError::NotAFile { .. }
            | BackupError::NoParent(_)
            | BackupError::NotInShared(_)
            | BackupError::Task(_) => false,
        }
    }

    /// A failed step whose work spoke text (`text` as the operations log recorded it).
    pub(crate) fn recorded(text: String) -> BackupError {
        BackupError::Step { text, cause: None }
    }
}

/// The layers above still speak text (`ops::Progress` steps, the CLI's answers): a failure
/// becomes its message there, unchanged.
impl From<BackupError> for String {
    fn from(e: BackupError) -> String {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;
    use std::path::PathBuf;

    use super::BackupError;
    use crate::deploy::DeployError;
    use crate::host::HostError;

    fn restic(line: &str) -> BackupError {
        BackupError::Restic {
            location: "s3:x/b".into(),
            line: line.into(),
        }
    }

    fn io(kind: ErrorKind) -> std::io::Error {
        std::io::Error::new(kind, "it")
    }

    fn step(cause: Option<BackupError>) -> BackupError {
        BackupError::Step {
            text: "check failed: it".into(),
            cause: cause.map(Box::new),
        }
    }

    /// What passes by itself is transient — directly or as the cause of a failed step — and
    /// nothing else.
    #[test]
    fn only_what_passes_by_itself_is_transient() {
        let unreachable = || BackupError::Unreachable {
            location: "s3:x/b".into(),
            line: "dial tcp: i/o timeout".into(),
        };
        let timeout = || HostError::Timeout {
            secs: 60,
            what: "restic".into(),
        };
        for e in [
            unreachable(),
            BackupError::AlreadyRunning("shop".into()),
            BackupError::Locked {
                location: "s3:x/b".into(),
                line: "Fatal: unable to create lock in backend: repository is already locked"
                    .into(),
            },
            BackupError::Host(timeout()),
            BackupError::Stop {
                unit: "strackt-app-shop.service".into(),
                source: timeout(),
            },
            BackupError::Tree(io(ErrorKind::TimedOut)),
            BackupError::MoveIn {
                rel: "storage".into(),
                source: io(ErrorKind::Interrupted),
            },
            step(Some(unreachable())),
            // The deployer's class carries through: another operation on the app passes.
            BackupError::Deploy(DeployError::Busy {
                kind: "deploy",
                operation: 7,
                app: "shop".into(),
            }),
        ] {
            assert!(e.is_transient(), "{e:?}");
        }
        for e in [
            BackupError::WrongKey {
                location: "s3:x/b".into(),
            },
            restic("Fatal: repository contains errors"),
            BackupError::NoKey,
            BackupError::NotBackedUp("shop".into()),
            BackupError::Deploy(DeployError::UnknownApp {
                app: "shop".into(),
                known: vec![],
            }),
            BackupError::Tree(io(ErrorKind::NotFound)),
            BackupError::MoveAside {
                rel: "storage".into(),
                source: io(ErrorKind::PermissionDenied),
            },
            BackupError::BundleFormat(2),
            BackupError::NoRun {
                run: "r".into(),
                app: "shop".into(),
                location: "s3:x/b".into(),
            },
            step(None),
            step(Some(BackupError::NoKey)),
        ] {
            assert!(!e.is_transient(), "{e:?}");
        }
    }

    /// The new kinds say what the text they replace said, byte for byte.
    #[test]
    fn the_typed_failures_read_as_their_text_did() {
        for (e, said) in [
            (
                BackupError::NotBackedUp("shop".into()),
                "no `backups:` entry for app `shop` in the definition",
            ),
            (
                BackupError::CredentialsLine {
                    secret: "s3".into(),
                    key: "AWS_ACCESS_KEY_ID",
                },
                "secret `s3` has no AWS_ACCESS_KEY_ID=… line",
            ),
            (
                BackupError::CredentialsForm("rcv".into()),
                "secret `rcv` must be USER:PASSWORD",
            ),
            (
                BackupError::Location("ftp://x".into()),
                "ftp://x: the repository is s3:https://ENDPOINT/BUCKET/PREFIX or rest:https://HOST:PORT/NAME/",
            ),
            (
                BackupError::PathMissing("/srv/shop/shared/storage".into()),
                "/srv/shop/shared/storage does not exist (deploy the app first)",
            ),
            (
                BackupError::NotAPath(PathBuf::from("/")),
                "/: not a path to a file or directory",
            ),
            (
                BackupError::NoParent(PathBuf::from("shared")),
                "shared has no parent directory",
            ),
            (
                BackupError::NotAFile {
                    file: "/shop.pgdump".into(),
                    snapshot: "1a2b3c4d".into(),
                },
                "/shop.pgdump is not a file in snapshot 1a2b3c4d",
            ),
            (
                BackupError::MoveAside {
                    rel: "storage".into(),
                    source: io(ErrorKind::PermissionDenied),
                },
                "moving storage aside: it",
            ),
            (
                BackupError::Host(crate::host::io_err(
                    "chmod",
                    std::path::Path::new("/x"),
                )(io(ErrorKind::PermissionDenied))),
                "chmod /x: it",
            ),
        ] {
            assert_eq!(e.to_string(), said);
        }
    }
}
