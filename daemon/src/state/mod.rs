//! state/ — SQLite (WAL): the database, its schema and migrations; generations, releases and a
//! few settings. The operations log's tables are read and written by `ops/` only.
//!
//! Synchronous by design (rusqlite); async callers go through [`StateHandle`], which moves each
//! call onto a blocking thread. Schema changes are migrations keyed by `PRAGMA user_version`,
//! applied in one transaction; a database from a newer strackt is refused, not guessed at.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

pub mod redact;
mod releases;
pub use redact::Redactor;
pub use releases::ReleaseRow;

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

/// Where a generation is in its life. Stored in `generations.state` and serialized as the
/// kebab-case strings below, exactly as when the state was a plain string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GenerationState {
    /// Its row exists, its directory is being built.
    Building,
    /// The host is being switched to it.
    Switching,
    /// The host runs it (at most one at a time).
    Active,
    /// It ran successfully and another became active since.
    Superseded,
    /// Its switch failed before the host changed, or a switch back failed too.
    Failed,
    /// Its switch failed and the host went back to where it was.
    RolledBack,
}

impl GenerationState {
    /// Every state, to read the stored spelling back.
    pub const ALL: [GenerationState; 6] = [
        GenerationState::Building,
        GenerationState::Switching,
        GenerationState::Active,
        GenerationState::Superseded,
        GenerationState::Failed,
        GenerationState::RolledBack,
    ];

    /// The stored and shown spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            GenerationState::Building => "building",
            GenerationState::Switching => "switching",
            GenerationState::Active => "active",
            GenerationState::Superseded => "superseded",
            GenerationState::Failed => "failed",
            GenerationState::RolledBack => "rolled-back",
        }
    }

    /// Whether it ran: only these are rollback targets and count as kept by retention.
    pub fn ran(self) -> bool {
        matches!(self, GenerationState::Active | GenerationState::Superseded)
    }

    /// Whether an operation on it was under way (what startup recovery finishes or fails).
    pub fn in_progress(self) -> bool {
        matches!(self, GenerationState::Building | GenerationState::Switching)
    }
}

impl std::fmt::Display for GenerationState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, not `write_str`: `strackt generations` lays the column out with `{:<11}`.
        f.pad(self.as_str())
    }
}

impl rusqlite::types::ToSql for GenerationState {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl rusqlite::types::FromSql for GenerationState {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = v.as_str()?;
        GenerationState::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            // A row no strackt writes (migration 3 turned the old `deleted` into `superseded`).
            .ok_or_else(|| {
                rusqlite::types::FromSqlError::Other(
                    format!("unknown generation state {text:?}").into(),
                )
            })
    }
}

/// A generation as listed to users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationRow {
    /// Id.
    pub id: u64,
    /// Build time (RFC 3339).
    pub created: String,
    /// Where it is in its life (building/switching only mid-operation).
    pub state: GenerationState,
    /// What caused it.
    pub trigger: String,
    /// One line of what it changed.
    pub summary: String,
    /// Why it failed or was rolled back.
    pub reason: Option<String>,
    /// SHA-256 of its definition.
    pub definition_sha256: String,
    /// Its directory was removed by retention (its record stays; a rollback rebuilds it).
    #[serde(default)]
    pub pruned: bool,
}

/// What the state database keeps of a generation to rebuild its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationRecord {
    /// The definition text it was built from.
    pub definition: String,
    /// Its `manifest.json` (with the package lock).
    pub manifest: String,
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
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if path.as_os_str() == ":memory:" {
        return Ok(());
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(DB_MODE)
        .open(path)?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::set_permissions(&p, std::fs::Permissions::from_mode(DB_MODE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
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

    /// The next free generation id (never reuses one, even of a deleted generation).
    ///
    /// # Errors
    /// SQLite failures.
    pub fn next_generation_id(&self, on_disk_max: u64) -> Result<u64, StateError> {
        let max: Option<i64> = self
            .conn
            .query_row("SELECT MAX(id) FROM generations", [], |r| r.get(0))?;
        Ok(max.map_or(0, |m| m as u64).max(on_disk_max) + 1)
    }

    /// Record a new generation.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn insert_generation(&self, g: &GenerationRow) -> Result<(), StateError> {
        self.conn.execute(
            // An upsert, not a replace: the record and the pruned mark of an existing row stay.
            "INSERT INTO generations (id, created, state, trigger, summary, definition_sha256, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (id) DO UPDATE SET created = ?2, state = ?3, trigger = ?4, summary = ?5, definition_sha256 = ?6, reason = ?7",
            params![g.id as i64, g.created, g.state, g.trigger, g.summary, g.definition_sha256, g.reason],
        )?;
        Ok(())
    }

    /// Keep generation `id`'s record (when it is built, or backfilled from its directory).
    ///
    /// # Errors
    /// SQLite failures.
    pub fn put_record(&self, id: u64, record: &GenerationRecord) -> Result<(), StateError> {
        self.conn.execute(
            "UPDATE generations SET definition = ?2, manifest = ?3 WHERE id = ?1",
            params![id as i64, record.definition, record.manifest],
        )?;
        Ok(())
    }

    /// Generation `id`'s record, if it has one.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn record(&self, id: u64) -> Result<Option<GenerationRecord>, StateError> {
        Ok(self
            .conn
            .query_row(
                "SELECT definition, manifest FROM generations WHERE id = ?1 AND definition IS NOT NULL AND manifest IS NOT NULL",
                params![id as i64],
                |r| {
                    Ok(GenerationRecord {
                        definition: r.get(0)?,
                        manifest: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    /// Ids of generations without a record (rows from before records were kept).
    ///
    /// # Errors
    /// SQLite failures.
    pub fn without_record(&self) -> Result<Vec<u64>, StateError> {
        let mut stmt = self.conn.prepare(
            "SELECT id FROM generations WHERE definition IS NULL OR manifest IS NULL ORDER BY id",
        )?;
        let ids = stmt
            .query_map([], |r| r.get::<_, i64>(0))?
            .map(|id| id.map(|i| i as u64))
            .collect::<Result<_, _>>()?;
        Ok(ids)
    }

    /// Mark whether generation `id`'s directory is pruned.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn set_pruned(&self, id: u64, pruned: bool) -> Result<(), StateError> {
        self.conn.execute(
            "UPDATE generations SET pruned = ?2 WHERE id = ?1",
            params![id as i64, pruned],
        )?;
        Ok(())
    }

    /// Set a generation's state (and reason). Making one `active` supersedes any other active.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn set_generation_state(
        &self,
        id: u64,
        state: GenerationState,
        reason: Option<&str>,
        now: &str,
    ) -> Result<(), StateError> {
        if state == GenerationState::Active {
            self.conn.execute(
                "UPDATE generations SET state = 'superseded' WHERE state = 'active' AND id != ?1",
                params![id as i64],
            )?;
            self.conn.execute("UPDATE generations SET state = 'active', reason = NULL, activated = ?2 WHERE id = ?1", params![id as i64, now])?;
        } else {
            self.conn.execute(
                "UPDATE generations SET state = ?2, reason = COALESCE(?3, reason) WHERE id = ?1",
                params![id as i64, state, reason],
            )?;
        }
        Ok(())
    }

    /// All generations, newest first.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn generations(&self) -> Result<Vec<GenerationRow>, StateError> {
        let mut stmt = self.conn.prepare("SELECT id, created, state, trigger, summary, reason, definition_sha256, pruned FROM generations ORDER BY id DESC")?;
        let rows = stmt.query_map([], |r| {
            Ok(GenerationRow {
                id: r.get::<_, i64>(0)? as u64,
                created: r.get(1)?,
                state: r.get(2)?,
                trigger: r.get(3)?,
                summary: r.get(4)?,
                reason: r.get(5)?,
                definition_sha256: r.get(6)?,
                pruned: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The generation that was active most recently before `current` (the rollback target).
    ///
    /// # Errors
    /// SQLite failures.
    pub fn previous_generation(&self, current: Option<u64>) -> Result<Option<u64>, StateError> {
        let id: Option<i64> = self
            .conn
            .query_row(
                "SELECT id FROM generations WHERE state = 'superseded' AND id != ?1 ORDER BY activated DESC, id DESC LIMIT 1",
                params![current.map_or(-1, |c| c as i64)],
                |r| r.get(0),
            )
            .optional()?;
        Ok(id.map(|i| i as u64))
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

    fn row(id: u64, state: GenerationState) -> GenerationRow {
        GenerationRow {
            id,
            created: "t".into(),
            state,
            trigger: "cli".into(),
            summary: "s".into(),
            reason: None,
            definition_sha256: "x".into(),
            pruned: false,
        }
    }

    /// The enum changed no stored or serialized byte: each state reads back from SQLite and
    /// JSON as the string it always was.
    #[test]
    fn generation_states_keep_their_spelling() {
        let s = State::open(Path::new(":memory:")).expect("open");
        for (id, state) in (1..).zip(GenerationState::ALL) {
            s.insert_generation(&row(id, state)).expect("insert");
            let stored: String = s
                .conn
                .query_row(
                    "SELECT state FROM generations WHERE id = ?1",
                    params![id as i64],
                    |r| r.get(0),
                )
                .expect("stored");
            assert_eq!(stored, state.as_str());
            assert_eq!(
                serde_json::to_value(state).expect("serializes"),
                serde_json::json!(state.as_str())
            );
            assert_eq!(format!("{state:<11}|"), format!("{:<11}|", state.as_str()));
        }
        let read: Vec<GenerationState> = s
            .generations()
            .expect("list")
            .into_iter()
            .rev()
            .map(|g| g.state)
            .collect();
        assert_eq!(read, GenerationState::ALL);
        assert_eq!(GenerationState::RolledBack.as_str(), "rolled-back");
    }

    #[test]
    fn generations_supersede_and_previous_is_the_last_active() {
        let s = State::open(Path::new(":memory:")).expect("open");
        assert_eq!(s.next_generation_id(0).expect("id"), 1);
        for id in 1..=3 {
            s.insert_generation(&row(id, GenerationState::Switching))
                .expect("insert");
            s.set_generation_state(id, GenerationState::Active, None, &format!("2026-01-0{id}"))
                .expect("activate");
        }
        let states: Vec<&str> = s
            .generations()
            .expect("list")
            .into_iter()
            .map(|g| g.state.as_str())
            .collect();
        assert_eq!(states, ["active", "superseded", "superseded"]);
        assert_eq!(s.previous_generation(Some(3)).expect("prev"), Some(2));
        // Roll back to 1: now the previous is 3, the one just left.
        s.set_generation_state(1, GenerationState::Active, None, "2026-01-04")
            .expect("rollback");
        assert_eq!(s.previous_generation(Some(1)).expect("prev"), Some(3));
        assert_eq!(s.next_generation_id(7).expect("id"), 8);
    }

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
    fn records_are_kept_through_updates_and_pruning() {
        let s = State::open(Path::new(":memory:")).expect("open");
        s.insert_generation(&row(1, GenerationState::Building))
            .expect("insert");
        assert_eq!(s.without_record().expect("missing"), vec![1]);
        let record = GenerationRecord {
            definition: "version: 1\n".into(),
            manifest: "{}".into(),
        };
        s.put_record(1, &record).expect("record");
        s.set_pruned(1, true).expect("prune");
        // Rewriting the row (as the summary update does) keeps the record and the mark.
        let mut r = row(1, GenerationState::Superseded);
        r.summary = "1 change".into();
        s.insert_generation(&r).expect("update");
        assert_eq!(s.record(1).expect("read"), Some(record));
        assert!(s.without_record().expect("missing").is_empty());
        let listed = &s.generations().expect("list")[0];
        assert!(listed.pruned);
        assert_eq!(listed.state, GenerationState::Superseded);
    }

    #[test]
    fn generations_retention_deleted_before_records_become_pruned_successful_ones() {
        // A database of the schema before records (version 2).
        let (_dir, path) = older_database(
            2,
            "INSERT INTO generations (id, created, state, trigger, summary, definition_sha256, reason)
             VALUES (1, 't1', 'deleted', 'cli', 's', 'x', 'beyond the retention policy'),
                    (2, 't2', 'active', 'cli', 's', 'y', NULL);",
        );
        let s = State::open(&path).expect("migrate");
        let gens = s.generations().expect("list");
        assert_eq!(
            gens.iter()
                .map(|g| (g.id, g.state.as_str(), g.pruned))
                .collect::<Vec<_>>(),
            [(2, "active", false), (1, "superseded", true)]
        );
        assert_eq!(s.record(1).expect("read"), None);
        assert_eq!(s.without_record().expect("missing"), vec![1, 2]);
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
