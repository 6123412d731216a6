//! state/ — SQLite (WAL): the database, its schema and migrations; generations, releases and a
//! few settings. The operations log's tables are read and written by `ops/` only.
//!
//! Synchronous by design (rusqlite); async callers go through [`StateHandle`], which moves each
//! call onto a blocking thread. Schema changes are migrations keyed by `PRAGMA user_version`,
//! applied in one transaction; a database from a newer strackt is refused, not guessed at.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};

mod generations;
pub mod redact;
mod releases;
mod spelled;
pub use generations::{GenerationRecord, GenerationRow, GenerationState};
pub use redact::Redactor;
pub use releases::{ReleaseRow, ReleaseState};
pub(crate) use spelled::spelled;

/// Migrations, in order; entry `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE generations (
    id INTEGER PRIMARY KEY,
    created TEXT NOT NULL,
    state TEXT NOT NULL,          -- building, switching, active, superseded, failed, rolled-back
    trigger TEXT NOT NULL,
    summary TEXT NOT NULL,
    definition_sha256 TEXT NOT NULL,
    reason TEXT,
    activated TEXT                -- when it last became active
);
CREATE TABLE operations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,           -- apply, drift, rollback, startup
    trigger TEXT NOT NULL,
    generation INTEGER,
    outcome TEXT NOT NULL,        -- running, success, failed, rolled-back, interrupted
    reason TEXT,
    summary TEXT NOT NULL DEFAULT '',
    started TEXT NOT NULL,
    finished TEXT,
    duration_ms INTEGER
);
CREATE TABLE steps (
    operation INTEGER NOT NULL REFERENCES operations(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    drift INTEGER NOT NULL,
    PRIMARY KEY (operation, seq)
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
",
    "
ALTER TABLE steps ADD COLUMN duration_ms INTEGER;
ALTER TABLE steps ADD COLUMN output TEXT;
CREATE TABLE releases (
    app TEXT NOT NULL,
    id INTEGER NOT NULL,
    branch TEXT NOT NULL,
    commit_id TEXT,               -- known once fetched
    created TEXT NOT NULL,
    state TEXT NOT NULL,          -- building, failed, live, previous, removed
    operation INTEGER NOT NULL,
    dump TEXT,                    -- database dump taken before this release's migration
    reason TEXT,                  -- why it failed
    PRIMARY KEY (app, id)
);
",
    // Every version is kept: a generation's record (definition text and manifest, which holds
    // the package lock) lives here for good; retention only prunes its directory. Rows that
    // retention used to mark `deleted` ran successfully: they become `superseded` and pruned
    // (without a record, they cannot be rebuilt).
    "
ALTER TABLE generations ADD COLUMN definition TEXT;
ALTER TABLE generations ADD COLUMN manifest TEXT;
ALTER TABLE generations ADD COLUMN pruned INTEGER NOT NULL DEFAULT 0;
UPDATE generations SET state = 'superseded', pruned = 1 WHERE state = 'deleted';
",
    // The app an operation was about (deploys, release rollbacks, restores, backups, verifies):
    // `/metrics` tells each app's last deploy and backup after a restart from here. Deploys
    // recorded before know their app from their release.
    "
ALTER TABLE operations ADD COLUMN app TEXT;
UPDATE operations SET app = (SELECT r.app FROM releases r WHERE r.operation = operations.id LIMIT 1)
    WHERE kind = 'deploy';
CREATE INDEX operations_app ON operations (app, kind, outcome) WHERE app IS NOT NULL;
",
];

/// A state-store failure.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// SQLite said no.
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database was written by a newer strackt.
    #[error(
        "state database has schema version {found}, newer than this strackt understands ({known})"
    )]
    TooNew {
        /// Version on disk.
        found: i64,
        /// Newest version known here.
        known: i64,
    },
    /// The blocking task died.
    #[error("state database task failed: {0}")]
    Task(String),
    /// The database files could not be made root-only.
    #[error("state database {0}: setting mode 0600: {1}")]
    Private(String, std::io::Error),
}

/// The open database.
#[derive(Debug)]
pub struct State {
    pub(crate) conn: Connection,
    /// Masks secrets in every text written to the operations log.
    pub(crate) redact: Redactor,
}

/// `state.db`, `state.db-wal` and `state.db-shm` are root's alone: the operations log is not for
/// other users (step output is redacted, but reasons and targets name the server's inner
/// workings).
const DB_MODE: u32 = 0o600;

/// Create `path` (and its `-wal`/`-shm`) with mode 0600, or set that mode on existing ones (an
/// install from before this rule made them 0644). SQLite gives new `-wal`/`-shm` files the mode
/// of the database file.
fn make_private(path: &Path) -> std::io::Result<()> {
    if path.as_os_str() == ":memory:" {
        return Ok(());
    }
    crate::host::private::private_files(path, &["", "-wal", "-shm", "-journal"], DB_MODE)
}

impl State {
    /// Open (creating and migrating) the database at `path`; `:memory:` for tests.
    ///
    /// # Errors
    /// SQLite failures, or a schema newer than this binary.
    pub fn open(path: &Path) -> Result<State, StateError> {
        make_private(path).map_err(|e| StateError::Private(path.display().to_string(), e))?;
        let mut conn = Connection::open(path)?;
        // WAL and synchronous=NORMAL: a commit is one append, durable at the next checkpoint;
        // the flip of `current` (fsynced) is the source of truth after a power cut.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StateError::TooNew {
                found: version,
                known,
            });
        }
        if version < known {
            let tx = conn.transaction()?;
            for m in &MIGRATIONS[version as usize..] {
                tx.execute_batch(m)?;
            }
            tx.pragma_update(None, "user_version", known)?;
            tx.commit()?;
        }
        Ok(State {
            conn,
            redact: Redactor::default(),
        })
    }

    /// A second connection to the database at `path` (opened and migrated by [`State::open`])
    /// that only reads: the HTTP endpoint's, so its readers never wait for (or hold up) the
    /// daemon's writes; WAL lets both run at once.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn open_reader(path: &Path) -> Result<State, StateError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "query_only", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(State {
            conn,
            redact: Redactor::default(),
        })
    }

    /// Mask these secrets in everything written from now on.
    pub fn set_redactor(&mut self, redact: Redactor) {
        self.redact = redact;
    }

    /// A setting.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn meta(&self, key: &str) -> Result<Option<String>, StateError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Set (or clear, with `None`) a setting.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn set_meta(&self, key: &str, value: Option<&str>) -> Result<(), StateError> {
        match value {
            Some(v) => self.conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                params![key, v],
            )?,
            None => self
                .conn
                .execute("DELETE FROM meta WHERE key = ?1", params![key])?,
        };
        Ok(())
    }
}

/// Shared handle for async code: every call runs on a blocking thread.
#[derive(Debug, Clone)]
pub struct StateHandle(Arc<Mutex<State>>);

impl StateHandle {
    /// Wrap an open state.
    pub fn new(state: State) -> StateHandle {
        StateHandle(Arc::new(Mutex::new(state)))
    }

    /// Run `f` with the database on a blocking thread.
    ///
    /// # Errors
    /// `f`'s error, or the blocking task failing.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, StateError> {
        let inner = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut guard)
        })
        .await
        .map_err(|e| StateError::Task(e.to_string()))?
    }

    /// A write its caller goes on without when it fails (each call site says why): the
    /// failure is logged at error level with `what` the write was for, never dropped silently.
    pub async fn write_or_log(
        &self,
        what: impl std::fmt::Display,
        f: impl FnOnce(&mut State) -> Result<(), StateError> + Send + 'static,
    ) {
        if let Err(e) = self.call(f).await {
            tracing::error!("{what}: {e}");
        }
    }
}

#[cfg(test)]
/// A database of schema `version` with `rows` in it (in a directory removed on drop).
pub(crate) fn older_database(
    version: usize,
    rows: &str,
) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    let conn = Connection::open(&path).expect("raw");
    for m in &MIGRATIONS[..version] {
        conn.execute_batch(m).expect("old schema");
    }
    conn.pragma_update(None, "user_version", version as i64)
        .expect("version");
    conn.execute_batch(rows).expect("rows");
    (dir, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_files_are_root_only_also_on_existing_installs() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        {
            let s = State::open(&path).expect("create");
            s.set_meta("k", Some("v")).expect("write");
            for f in ["state.db", "state.db-wal", "state.db-shm"] {
                assert_eq!(mode(&dir.path().join(f)), 0o600, "{f}");
            }
        }
        // An install from before: 0644 files.
        let open_to_all = std::fs::Permissions::from_mode(0o644);
        std::fs::set_permissions(&path, open_to_all.clone()).expect("chmod");
        let wal = dir.path().join("state.db-wal");
        std::fs::write(&wal, b"").expect("wal");
        std::fs::set_permissions(&wal, open_to_all).expect("chmod");
        let _s = State::open(&path).expect("reopen");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&wal), 0o600);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        State::open(&path).expect("create");
        Connection::open(&path)
            .expect("raw")
            .pragma_update(None, "user_version", 99)
            .expect("bump");
        assert!(matches!(
            State::open(&path),
            Err(StateError::TooNew { found: 99, .. })
        ));
    }
}
