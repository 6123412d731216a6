//! What goes wrong in the receiver before or beside serving: loading the `receiver:` section
//! with its secrets and TLS files, staging them for the receiver's user, and a retention pass.
//! Each message is the one the operator reads in the journal; the class says whether waiting
//! helps (a retention pass is tried again either way, a load is not).

use std::path::PathBuf;

use crate::backup::error::BackupError;
use crate::definition::DefinitionError;

/// A failure of the receiver's own work (serving errors are HTTP answers, see `rest/`).
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    /// A file's metadata could not be read.
    #[error("{}: {source}", path.display())]
    Stat {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The definition does not parse.
    #[error("{0}")]
    Definition(#[from] DefinitionError),
    /// The definition has no `receiver:` section.
    #[error("{} has no `receiver:` section", .0.display())]
    NoSection(PathBuf),
    /// A quota that is not a size (validation refuses it, so only a changed rule gets here).
    #[error("receiver quota {0:?} is not a size")]
    Quota(String),
    /// A reserve that is not a size or a percentage.
    #[error("receiver.reserve {0:?} is not a size")]
    Reserve(String),
    /// Retention is configured but the team key is not on this server.
    #[error("retention (`receiver.keep`) needs the team's backup key on this server: run `strackt backup key import`")]
    NoTeamKey,
    /// `retention_after` is not a duration.
    #[error("receiver.retention_after {text:?}: {source}")]
    RetentionAfter {
        /// As written.
        text: String,
        /// Why.
        #[source]
        source: humantime::DurationError,
    },
    /// A client's secret names another client.
    #[error("secret `{secret}` is for {user:?}, but it is listed as receiver.clients.{client}")]
    SecretOfOther {
        /// The secret's name.
        secret: String,
        /// The client it says it is for.
        user: String,
        /// The client it is listed under.
        client: String,
    },
    /// A client's secret is not `NAME:PASSWORD`.
    #[error("secret `{secret}` must be {client}:PASSWORD")]
    SecretForm {
        /// The secret's name.
        secret: String,
        /// The client.
        client: String,
    },
    /// A secret is missing or unreadable (the deploy preflight's words).
    #[error("{0}")]
    Secret(String),
    /// The certificate or key does not load.
    #[error("{0}")]
    Tls(String),
    /// Staging runs as root only.
    #[error("`strackt receiver --stage` runs as root (the unit's ExecStartPre=+)")]
    NotRoot,
    /// The receiver's system group cannot be looked up.
    #[error("looking up group {group}: {source}")]
    GroupLookup {
        /// The group.
        group: &'static str,
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// The receiver's system user is not installed.
    #[error("no system user {0}: install the package again, or run `systemd-sysusers strackt-receiver.conf`")]
    NoUser(&'static str),
    /// A staging directory exists but is not root's.
    #[error("{} is not a directory owned by root: remove it", .0.display())]
    NotRootsDirectory(PathBuf),
    /// Owner or mode of a staging directory could not be set ("chown DIR: …", "chmod DIR: …").
    #[error("{source}")]
    Ownership {
        /// The directory.
        path: PathBuf,
        /// Why, with the path.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be read, created, written or changed (what and where, as shown).
    #[error(transparent)]
    Host(#[from] crate::host::HostError),
    /// A client that a reload removed while its retention pass was due.
    #[error("unknown client")]
    UnknownClient,
    /// restic failed on a client's repository.
    #[error("{0}")]
    Restic(BackupError),
}

impl ReceiverError {
    /// Whether the same work may succeed later without anyone acting: restic on a repository
    /// as restic's own class says (a lock held by an upload in progress or a prune already
    /// running passes; a key that does not open it does not) and the host's own transient
    /// failures. Everything else — the definition, secrets, TLS files, the system user — fails
    /// the same way until someone changes it.
    pub fn is_transient(&self) -> bool {
        match self {
            ReceiverError::Restic(e) => e.is_transient(),
            ReceiverError::Host(e) => e.is_transient(),
            ReceiverError::Stat { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
            ),
            ReceiverError::Definition(_)
            | ReceiverError::NoSection(_)
            | ReceiverError::Quota(_)
            | ReceiverError::Reserve(_)
            | ReceiverError::NoTeamKey
            | ReceiverError::RetentionAfter { .. }
            | ReceiverError::SecretOfOther { .. }
            | ReceiverError::SecretForm { .. }
            | ReceiverError::Secret(_)
            | ReceiverError::Tls(_)
            | ReceiverError::NotRoot
            | ReceiverError::GroupLookup { .. }
            | ReceiverError::NoUser(_)
            | ReceiverError::NotRootsDirectory(_)
            | ReceiverError::Ownership { .. }
            | ReceiverError::UnknownClient => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::ReceiverError;
    use crate::backup::error::BackupError;

    /// The loads the operator reads in the journal keep their words, and none of them is
    /// worth waiting for.
    #[test]
    fn load_failures_read_as_before_and_are_permanent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("server.yaml");
        let e = super::super::receiver_spec(&missing).expect_err("missing");
        assert!(
            e.to_string()
                .starts_with(&format!("reading {}: ", missing.display())),
            "{e}"
        );
        assert!(!e.is_transient());
        let file = dir.path().join("plain.yaml");
        std::fs::write(&file, "version: 1\n").expect("write");
        let e = super::super::receiver_spec(&file).expect_err("no section");
        assert_eq!(
            e.to_string(),
            format!("{} has no `receiver:` section", file.display())
        );
        let e = super::super::tls::server_config(Path::new("/nonexistent.crt"), &missing)
            .expect_err("no certificate");
        assert!(
            e.to_string()
                .starts_with("TLS certificate /nonexistent.crt: "),
            "{e}"
        );
        let locked = ReceiverError::Restic(crate::backup::restic::explain(
            "/srv/r/web1",
            "Fatal: unable to create lock in backend: repository is already locked by PID 7\n",
        ));
        assert!(locked.is_transient());
        assert_eq!(
            locked.to_string(),
            "restic at /srv/r/web1: Fatal: unable to create lock in backend: repository is already locked by PID 7"
        );
        let damaged = ReceiverError::Restic(BackupError::Restic {
            location: "/srv/r/web1".into(),
            line: "Fatal: repository contains errors".into(),
        });
        assert!(!damaged.is_transient());
        let wrong_key = ReceiverError::Restic(BackupError::WrongKey {
            location: "/srv/r/web1".into(),
        });
        assert!(!wrong_key.is_transient());
    }
}
