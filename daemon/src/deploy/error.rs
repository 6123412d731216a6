//! Why a deploy, a release rollback or one of their look-ups fails, told apart the way the
//! user (or the caller) acts on them: the definition or the app, another operation on the app,
//! what preflight found missing, a secret, the repository, a release to go back to, a file of
//! a release made before that is not taken over, a step that failed and what the switch did
//! about it — and a class: another operation running on the app, a busy state database and a
//! host failure that passes are transient, the rest permanent.
//!
//! Owns the words of these failures (users and tests read them; they are those deploys always
//! had). It must not run anything nor decide what to do about a failure. What the layers below
//! report as text (`ops::Progress` steps, `host::private`) is carried as that text.

use std::io;
use std::path::PathBuf;

use crate::definition::DefinitionError;
use crate::host::HostError;
use crate::ops::OpsError;
use crate::state::StateError;

/// A failure of a deploy, a release rollback or their look-ups (see [`super::Deployer`]).
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The definition file cannot be read.
    #[error("reading {}: {source}", path.display())]
    ReadDefinition {
        /// The definition file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The definition does not validate.
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    /// The definition has no such app.
    #[error("no app `{app}` in the definition (apps: {known:?})")]
    UnknownApp {
        /// The app asked for.
        app: String,
        /// The apps it has.
        known: Vec<String>,
    },
    /// Another deploy, rollback or restore of the app runs; it ends by itself.
    #[error("{kind} {operation} of app {app} is in progress; wait for it (strackt history --operation {operation})")]
    Busy {
        /// Its kind ("deploy", "rollback-release", "restore").
        kind: &'static str,
        /// Its operation (0 until recorded).
        operation: i64,
        /// The app.
        app: String,
    },
    /// Preflight found things missing: the step's reason, then every problem with the field
    /// that fixes it (the step's output).
    #[error("{reason}\n{details}")]
    Preflight {
        /// The step's reason.
        reason: String,
        /// The problems, one per line.
        details: String,
    },
    /// A deploy did not start (preflight failed): recorded as its operation's reason.
    #[error("deploy of {app} did not start: {source}\n(operation {operation})")]
    NotStarted {
        /// The app.
        app: String,
        /// The operation that records it.
        operation: i64,
        /// Why.
        source: Box<DeployError>,
    },
    /// A secret the definition names has no file.
    #[error("secret `{name}` is missing: create {} (mode 0600)", path.display())]
    SecretMissing {
        /// The secret's name.
        name: String,
        /// The file to create.
        path: PathBuf,
    },
    /// A secret's file is empty.
    #[error("secret file {} is empty", .0.display())]
    SecretEmpty(PathBuf),
    /// A secret's file cannot be read.
    #[error("secret file {}: {source}", path.display())]
    SecretUnreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The app's `user:` is not on this server.
    #[error("user `{0}` does not exist on this server")]
    NoUser(String),
    /// No scratch directory for reading the repository (`mktemp -d` failed: how).
    #[error("a scratch directory for git: {0}")]
    GitScratch(String),
    /// The app's branch cannot be read from its repository.
    #[error("reading branch {branch} of {repo}: {why}")]
    GitRead {
        /// The branch.
        branch: String,
        /// The repository.
        repo: String,
        /// How git ended.
        why: String,
    },
    /// The commit asked for is not one of the branch's.
    #[error("commit {commit} is not on branch {branch} of {repo} (rewritten history?); `strackt restore --latest` deploys the branch tip")]
    NotOnBranch {
        /// The commit.
        commit: String,
        /// The branch.
        branch: String,
        /// The repository.
        repo: String,
    },
    /// The app has no live release to roll back from.
    #[error("{0} has no live release")]
    NoLiveRelease(String),
    /// The release asked for is not one of the app's kept releases on this server.
    #[error("release {id} of {app} is not on this server (see strackt releases {app})")]
    ReleaseNotFound {
        /// The app.
        app: String,
        /// The release.
        id: u64,
    },
    /// No kept release before the live one.
    #[error("{0} has no earlier release to go back to")]
    NoEarlierRelease(String),
    /// The release asked for is the live one.
    #[error("release {id} of {app} is already live")]
    AlreadyLive {
        /// The app.
        app: String,
        /// The release.
        id: u64,
    },
    /// Going back to release `0` with its database: no pre-migrate dump for it is kept.
    #[error("no database dump is kept for going back to release {0} (releases after it ran no migration, or were pruned)")]
    NoDump(u64),
    /// A rollback with its database of an app that has none.
    #[error("app {0} has no `database:`")]
    NoDatabase(String),
    /// The environment file of a release made before strackt kept them in its state is not
    /// taken over.
    #[error("release {id} was made before strackt kept environment files in {}, and its old one cannot be taken over safely: {source}; deploy the app instead", dir.display())]
    OldEnvFile {
        /// The release.
        id: u64,
        /// Where strackt keeps them now.
        dir: PathBuf,
        /// Why.
        source: Box<DeployError>,
    },
    /// The pre-migrate dump of a release made before strackt kept them in its state is not
    /// taken over.
    #[error("the dump of release {id} was taken before strackt kept dumps in its own state, and cannot be taken over safely: {source}")]
    OldDump {
        /// The release.
        id: u64,
        /// Why.
        source: Box<DeployError>,
    },
    /// A file in the app user's tree is not taken over: not there, a link on the way, not
    /// written by strackt, or not readable.
    #[error("{}: {why}", path.display())]
    Refused {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// Copying a file taken over failed (the copy is not left behind).
    #[error("copying {} to {}: {source}", from.display(), to.display())]
    Copy {
        /// The old file.
        from: PathBuf,
        /// The copy in strackt's state.
        to: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A step failed: its reason as the operations log records it.
    #[error("{0}")]
    Step(String),
    /// The pre-migrate dump could not be recorded, so the migration was not started.
    #[error("recording the dump of release {id} before its migration: {source}; the migration was not started")]
    RecordDump {
        /// The release.
        id: u64,
        /// Why.
        #[source]
        source: StateError,
    },
    /// The switch or the health check after it failed, and the previous release is back.
    #[error("{why}; switched back to {back}")]
    SwitchedBack {
        /// What failed.
        why: String,
        /// What serves again ("release 3", "no release").
        back: String,
    },
    /// The switch or the health check after it failed, and so did going back: the failed
    /// release may still be what `current` names.
    #[error("{why}; and switching back failed: {error}")]
    SwitchBackFailed {
        /// What failed.
        why: String,
        /// Why going back failed.
        error: String,
    },
    /// A deploy failed after its migration started: the reason says what became of the
    /// database (put back from the pre-migrate dump, left migrated, or how to put it back by
    /// hand).
    #[error("{0}")]
    Migrated(String),
    /// A proxy-mode app without its two ports (the definition's validation refuses it).
    #[error("`mode: proxy` without `ports`")]
    NoPorts,
    /// A rendered unit has a line a systemd transient unit cannot take (a setting with no
    /// transient equivalent, a value systemd would not parse, an `ExecStart=` that does not
    /// split): what and where.
    #[error("{0}")]
    UnitSetting(String),
    /// The host failed (systemd, a file strackt writes, an app directory's link).
    #[error(transparent)]
    Host(#[from] HostError),
    /// The operations log could not be written.
    #[error(transparent)]
    Ops(#[from] OpsError),
    /// The state database failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// A blocking task (file work off the daemon's thread) died.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

impl DeployError {
    /// Whether the same request may succeed later without anyone acting: another operation on
    /// the app was running (it ends by itself), the state database was busy, the operations
    /// log's write may pass, the host failed in a way that passes, a file read timed out. What
    /// preflight found missing, a secret, a user, the repository, the releases there are, a
    /// file not taken over, the definition and what a step or the switch reported are
    /// permanent (a step's reason is text, not classified); a blocking task that died is a
    /// bug, permanent too.
    pub fn is_transient(&self) -> bool {
        match self {
            DeployError::Busy { .. } => true,
            DeployError::Host(e) => e.is_transient(),
            DeployError::Ops(e) => e.is_transient(),
            DeployError::State(e) | DeployError::RecordDump { source: e, .. } => {
                crate::ops::state_is_transient(e)
            }
            DeployError::ReadDefinition { source, .. }
            | DeployError::SecretUnreadable { source, .. }
            | DeployError::Copy { source, .. } => {
                matches!(
                    source.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                )
            }
            DeployError::NotStarted { source, .. }
            | DeployError::OldEnvFile { source, .. }
            | DeployError::OldDump { source, .. } => source.is_transient(),
            DeployError::Definition(_)
            | DeployError::UnknownApp { .. }
            | DeployError::Preflight { .. }
            | DeployError::SecretMissing { .. }
            | DeployError::SecretEmpty(_)
            | DeployError::NoUser(_)
            | DeployError::GitScratch(_)
            | DeployError::GitRead { .. }
            | DeployError::NotOnBranch { .. }
            | DeployError::NoLiveRelease(_)
            | DeployError::ReleaseNotFound { .. }
            | DeployError::NoEarlierRelease(_)
            | DeployError::AlreadyLive { .. }
            | DeployError::NoDump(_)
            | DeployError::NoDatabase(_)
            | DeployError::Refused { .. }
            | DeployError::Step(_)
            | DeployError::SwitchedBack { .. }
            | DeployError::SwitchBackFailed { .. }
            | DeployError::Migrated(_)
            | DeployError::NoPorts
            | DeployError::UnitSetting(_)
            | DeployError::Task(_) => false,
        }
    }
}

/// The layers above still speak text (`ops::Progress` steps and results, the control socket's
/// answers, backups and restores): a failure becomes its message there, unchanged.
impl From<DeployError> for String {
    fn from(e: DeployError) -> String {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy_database() -> StateError {
        StateError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        ))
    }

    #[test]
    fn what_passes_by_itself_is_transient_and_the_rest_is_not() {
        let transient = [
            DeployError::Busy {
                kind: "deploy",
                operation: 7,
                app: "shop".into(),
            },
            DeployError::State(busy_database()),
            DeployError::RecordDump {
                id: 2,
                source: busy_database(),
            },
            DeployError::Ops(OpsError::Write(3, busy_database())),
            DeployError::Host(HostError::Timeout {
                what: "nginx.service".into(),
                secs: 10,
            }),
            DeployError::SecretUnreadable {
                path: "/etc/strackt/secrets/db".into(),
                source: io::Error::from(io::ErrorKind::TimedOut),
            },
            DeployError::OldDump {
                id: 1,
                source: Box::new(DeployError::Copy {
                    from: "/srv/shop/releases/1/.strackt/pre-migrate.dump".into(),
                    to: "/var/lib/strackt/apps/shop/releases/1/pre-migrate.dump".into(),
                    source: io::Error::from(io::ErrorKind::Interrupted),
                }),
            },
        ];
        for e in &transient {
            assert!(e.is_transient(), "{e:?}");
        }
        let permanent = [
            DeployError::State(StateError::TooNew { found: 9, known: 8 }),
            DeployError::Ops(OpsError::Vanished(3)),
            DeployError::Host(HostError::Systemd {
                op: "start",
                unit: "strackt-app-shop.service".into(),
                message: "Unit not found".into(),
            }),
            DeployError::SecretMissing {
                name: "db".into(),
                path: "/etc/strackt/secrets/db".into(),
            },
            DeployError::SecretUnreadable {
                path: "/etc/strackt/secrets/db".into(),
                source: io::Error::from(io::ErrorKind::PermissionDenied),
            },
            DeployError::NotStarted {
                app: "shop".into(),
                operation: 4,
                source: Box::new(DeployError::Preflight {
                    reason: "preflight failed: 1 thing(s) missing, nothing was started".into(),
                    details: "server.yaml:3:5: apps.shop.repo: …".into(),
                }),
            },
            DeployError::ReleaseNotFound {
                app: "shop".into(),
                id: 9,
            },
            DeployError::Step("migrate failed: exited with status 3".into()),
            DeployError::SwitchBackFailed {
                why: "health failed: timed out".into(),
                error: "switch-back failed: link".into(),
            },
            DeployError::Migrated("migrate failed; the database was put back".into()),
        ];
        for e in &permanent {
            assert!(!e.is_transient(), "{e:?}");
        }
    }

    #[test]
    fn messages_read_as_before() {
        let e = DeployError::Busy {
            kind: "deploy",
            operation: 7,
            app: "shop".into(),
        };
        assert_eq!(
            e.to_string(),
            "deploy 7 of app shop is in progress; wait for it (strackt history --operation 7)"
        );
        let e = DeployError::UnknownApp {
            app: "blog".into(),
            known: vec!["shop".into(), "wiki".into()],
        };
        assert_eq!(
            e.to_string(),
            r#"no app `blog` in the definition (apps: ["shop", "wiki"])"#
        );
        let e = DeployError::NotStarted {
            app: "shop".into(),
            operation: 4,
            source: Box::new(DeployError::Preflight {
                reason: "preflight failed: 1 thing(s) missing, nothing was started".into(),
                details: "a problem".into(),
            }),
        };
        assert_eq!(
            String::from(e),
            "deploy of shop did not start: preflight failed: 1 thing(s) missing, nothing was started\na problem\n(operation 4)"
        );
    }
}
