//! state/ — SQLite (WAL): generations, operations and their steps, and a few settings.
//!
//! Synchronous by design (rusqlite); async callers go through [`StateHandle`], which moves each
//! call onto a blocking thread. Schema changes are migrations keyed by `PRAGMA user_version`,
//! applied in one transaction; a database from a newer strackt is refused, not guessed at.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::apply::StepRecord;

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

/// A generation as listed to users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationRow {
    /// Id.
    pub id: u64,
    /// Build time (RFC 3339).
    pub created: String,
    /// active, superseded, failed, rolled-back (building/switching only mid-operation).
    pub state: String,
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

/// An operation with its steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Id.
    pub id: i64,
    /// apply, drift, rollback, startup.
    pub kind: String,
    /// file-change, timer, cli, signal, startup.
    pub trigger: String,
    /// The generation it targeted.
    pub generation: Option<u64>,
    /// running, success, failed, rolled-back, interrupted.
    pub outcome: String,
    /// Why it failed.
    pub reason: Option<String>,
    /// One line of what happened (e.g. "drift repaired: …").
    pub summary: String,
    /// Start (RFC 3339).
    pub started: String,
    /// End (RFC 3339).
    pub finished: Option<String>,
    /// Duration.
    pub duration_ms: Option<i64>,
    /// Steps in order.
    pub steps: Vec<StepRecord>,
}

/// The newest finished operation of one kind of one app, and its newest successful one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppOutcome {
    /// The app.
    pub app: String,
    /// deploy, backup, …
    pub kind: String,
    /// The newest finished operation.
    pub id: i64,
    /// Its outcome.
    pub outcome: String,
    /// When it finished (RFC 3339).
    pub finished: Option<String>,
    /// The newest successful one: id and when it finished.
    pub last_success: Option<(i64, String)>,
}

/// The open database.
#[derive(Debug)]
pub struct State {
    conn: Connection,
    /// Masks secrets in every text written to the operations log.
    redact: Redactor,
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

/// A step from `SELECT action, target, outcome, detail, drift, duration_ms, output`.
fn step_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StepRecord> {
    Ok(StepRecord {
        action: r.get(0)?,
        target: r.get(1)?,
        outcome: r.get(2)?,
        detail: r.get(3)?,
        drift: r.get(4)?,
        duration_ms: r.get(5)?,
        output: r.get(6)?,
    })
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
        state: &str,
        reason: Option<&str>,
        now: &str,
    ) -> Result<(), StateError> {
        if state == "active" {
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

    /// Start an operation; returns its id.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn start_operation(
        &self,
        kind: &str,
        trigger: &str,
        generation: Option<u64>,
        now: &str,
    ) -> Result<i64, StateError> {
        self.insert_operation(kind, trigger, generation, None, now)
    }

    fn insert_operation(
        &self,
        kind: &str,
        trigger: &str,
        generation: Option<u64>,
        app: Option<&str>,
        now: &str,
    ) -> Result<i64, StateError> {
        self.conn.execute(
            "INSERT INTO operations (kind, trigger, generation, app, outcome, started) VALUES (?1, ?2, ?3, ?4, 'running', ?5)",
            params![kind, trigger, generation.map(|g| g as i64), app, now],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Start an operation about `app`; returns its id.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn start_app_operation(
        &self,
        kind: &str,
        trigger: &str,
        app: &str,
        now: &str,
    ) -> Result<i64, StateError> {
        self.insert_operation(kind, trigger, None, Some(app), now)
    }

    /// For every app and kind of operation about an app: the newest finished one and the
    /// newest successful one.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn app_outcomes(&self) -> Result<Vec<AppOutcome>, StateError> {
        let success = "FROM operations s WHERE s.app = o.app AND s.kind = o.kind AND s.outcome = 'success' ORDER BY s.id DESC LIMIT 1";
        let mut stmt = self.conn.prepare(&format!(
            "SELECT o.app, o.kind, o.id, o.outcome, o.finished, (SELECT s.id {success}), (SELECT s.finished {success})
             FROM operations o
             JOIN (SELECT MAX(id) AS id FROM operations WHERE app IS NOT NULL AND outcome != 'running' GROUP BY app, kind) n
               ON o.id = n.id"
        ))?;
        let rows = stmt
            .query_map([], |r| {
                let success: (Option<i64>, Option<String>) = (r.get(5)?, r.get(6)?);
                Ok(AppOutcome {
                    app: r.get(0)?,
                    kind: r.get(1)?,
                    id: r.get(2)?,
                    outcome: r.get(3)?,
                    finished: r.get(4)?,
                    last_success: success.0.zip(success.1),
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// The `verify` and `health` steps of the newest `limit` finished reconcile operations
    /// (apply, drift, rollback, startup), oldest first.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn unit_checks(&self, limit: usize) -> Result<Vec<StepRecord>, StateError> {
        let mut stmt = self.conn.prepare(
            "SELECT action, target, outcome, detail, drift, duration_ms, output FROM steps
             WHERE action IN ('verify', 'health') AND operation IN
                 (SELECT id FROM operations WHERE kind IN ('apply', 'drift', 'rollback', 'startup')
                  AND outcome != 'running' ORDER BY id DESC LIMIT ?1)
             ORDER BY operation, seq",
        )?;
        let steps = stmt
            .query_map(params![limit as i64], step_row)?
            .collect::<Result<_, _>>()?;
        Ok(steps)
    }

    /// Finish an operation with its outcome and steps, in one transaction.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn finish_operation(&mut self, op: &Operation) -> Result<(), StateError> {
        let redact = &self.redact;
        redact.prepare();
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE operations SET outcome = ?2, reason = ?3, summary = ?4, finished = ?5, duration_ms = ?6, generation = ?7 WHERE id = ?1",
            params![op.id, op.outcome, redact.apply_opt(op.reason.as_deref()), redact.apply_known(&op.summary), op.finished, op.duration_ms, op.generation.map(|g| g as i64)],
        )?;
        tx.execute("DELETE FROM steps WHERE operation = ?1", params![op.id])?;
        for (i, s) in op.steps.iter().enumerate() {
            put_step(&tx, redact, op.id, i, s)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Mark operations left `running` by a crash as interrupted; returns how many.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn interrupt_running(&self, now: &str) -> Result<usize, StateError> {
        Ok(self.conn.execute(
            "UPDATE operations SET outcome = 'interrupted', reason = 'strackt stopped during this operation', finished = ?1,
                 duration_ms = CAST((julianday(?1) - julianday(started)) * 86400000 AS INTEGER) WHERE outcome = 'running'",
            params![now],
        )?)
    }

    /// Recent operations with their steps, newest first.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn operations(
        &self,
        limit: usize,
        only: Option<i64>,
    ) -> Result<Vec<Operation>, StateError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, kind, trigger, generation, outcome, reason, summary, started, finished, duration_ms FROM operations
             WHERE ?1 IS NULL OR id = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let mut ops: Vec<Operation> = stmt
            .query_map(params![only, limit as i64], |r| {
                Ok(Operation {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    trigger: r.get(2)?,
                    generation: r.get::<_, Option<i64>>(3)?.map(|g| g as u64),
                    outcome: r.get(4)?,
                    reason: r.get(5)?,
                    summary: r.get(6)?,
                    started: r.get(7)?,
                    finished: r.get(8)?,
                    duration_ms: r.get(9)?,
                    steps: Vec::new(),
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut steps = self.conn.prepare("SELECT action, target, outcome, detail, drift, duration_ms, output FROM steps WHERE operation = ?1 ORDER BY seq")?;
        for op in &mut ops {
            op.steps = steps
                .query_map(params![op.id], step_row)?
                .collect::<Result<_, _>>()?;
        }
        Ok(ops)
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

/// Store step `seq`, its texts redacted (`redact` prepared by the caller).
fn put_step(
    conn: &Connection,
    redact: &Redactor,
    operation: i64,
    seq: usize,
    s: &StepRecord,
) -> Result<(), StateError> {
    conn.execute(
        "INSERT OR REPLACE INTO steps (operation, seq, action, target, outcome, detail, drift, duration_ms, output) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![operation, seq as i64, s.action, redact.apply_known(&s.target), s.outcome, redact.apply_known(&s.detail), s.drift, s.duration_ms, redact.apply_opt(s.output.as_deref())],
    )?;
    Ok(())
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u64, state: &str) -> GenerationRow {
        GenerationRow {
            id,
            created: "t".into(),
            state: state.into(),
            trigger: "cli".into(),
            summary: "s".into(),
            reason: None,
            definition_sha256: "x".into(),
            pruned: false,
        }
    }

    #[test]
    fn generations_supersede_and_previous_is_the_last_active() {
        let s = State::open(Path::new(":memory:")).expect("open");
        assert_eq!(s.next_generation_id(0).expect("id"), 1);
        for id in 1..=3 {
            s.insert_generation(&row(id, "switching")).expect("insert");
            s.set_generation_state(id, "active", None, &format!("2026-01-0{id}"))
                .expect("activate");
        }
        let states: Vec<String> = s
            .generations()
            .expect("list")
            .into_iter()
            .map(|g| g.state)
            .collect();
        assert_eq!(states, ["active", "superseded", "superseded"]);
        assert_eq!(s.previous_generation(Some(3)).expect("prev"), Some(2));
        // Roll back to 1: now the previous is 3, the one just left.
        s.set_generation_state(1, "active", None, "2026-01-04")
            .expect("rollback");
        assert_eq!(s.previous_generation(Some(1)).expect("prev"), Some(3));
        assert_eq!(s.next_generation_id(7).expect("id"), 8);
    }

    #[test]
    fn operations_keep_their_steps_and_crashes_are_marked() {
        let mut s = State::open(Path::new(":memory:")).expect("open");
        let id = s
            .start_operation("apply", "cli", Some(1), "t0")
            .expect("start");
        let dangling = s
            .start_operation("drift", "timer", Some(1), "2026-01-01T00:00:00.000Z")
            .expect("start");
        let op = Operation {
            id,
            kind: "apply".into(),
            trigger: "cli".into(),
            generation: Some(1),
            outcome: "success".into(),
            reason: None,
            summary: "1 change".into(),
            started: "t0".into(),
            finished: Some("t2".into()),
            duration_ms: Some(5),
            steps: vec![StepRecord::new(
                "write-file",
                "/etc/motd",
                "ok",
                "missing",
                false,
            )],
        };
        s.finish_operation(&op).expect("finish");
        assert_eq!(
            s.interrupt_running("2026-01-01T00:00:01.500Z")
                .expect("interrupt"),
            1
        );
        let ops = s.operations(10, None).expect("ops");
        assert_eq!(ops[0].id, dangling);
        assert_eq!(ops[0].outcome, "interrupted");
        assert_eq!(
            ops[0].duration_ms,
            Some(1500),
            "from start to the restart that found it"
        );
        assert_eq!(s.operations(10, Some(id)).expect("one")[0], op);
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
    fn secrets_never_reach_the_steps_table() {
        let mut s = State::open(Path::new(":memory:")).expect("open");
        let r = Redactor::default();
        r.add_values(["sesame-42"]);
        s.set_redactor(r);
        let id = s
            .start_operation("deploy", "cli", None, "t0")
            .expect("start");
        let mut step = StepRecord::new(
            "fetch",
            "https://bot:tok-9@git.example.com/shop.git",
            "failed",
            "key sesame-42 refused",
            false,
        );
        step.output = Some("APP_KEY=sesame-42\nhttps://bot:tok-9@git.example.com\n".into());
        s.put_step(id, 0, &step).expect("put");
        let got = &s.operations(1, Some(id)).expect("ops")[0].steps[0];
        assert_eq!(got.target, "https://***@git.example.com/shop.git");
        assert_eq!(got.detail, "key *** refused");
        assert_eq!(
            got.output.as_deref(),
            Some("APP_KEY=***\nhttps://***@git.example.com\n")
        );
        let op = Operation {
            id,
            kind: "deploy".into(),
            trigger: "cli".into(),
            generation: None,
            outcome: "failed".into(),
            reason: Some("fetch failed: sesame-42".into()),
            summary: "fetch failed: sesame-42".into(),
            started: "t0".into(),
            finished: Some("t1".into()),
            duration_ms: Some(1),
            steps: vec![step],
        };
        s.finish_operation(&op).expect("finish");
        let got = &s.operations(1, Some(id)).expect("ops")[0];
        assert_eq!(got.reason.as_deref(), Some("fetch failed: ***"));
        assert_eq!(got.summary, "fetch failed: ***");
        assert_eq!(got.steps[0].detail, "key *** refused");
    }

    #[test]
    fn records_are_kept_through_updates_and_pruning() {
        let s = State::open(Path::new(":memory:")).expect("open");
        s.insert_generation(&row(1, "building")).expect("insert");
        assert_eq!(s.without_record().expect("missing"), vec![1]);
        let record = GenerationRecord {
            definition: "version: 1\n".into(),
            manifest: "{}".into(),
        };
        s.put_record(1, &record).expect("record");
        s.set_pruned(1, true).expect("prune");
        // Rewriting the row (as the summary update does) keeps the record and the mark.
        let mut r = row(1, "superseded");
        r.summary = "1 change".into();
        s.insert_generation(&r).expect("update");
        assert_eq!(s.record(1).expect("read"), Some(record));
        assert!(s.without_record().expect("missing").is_empty());
        let listed = &s.generations().expect("list")[0];
        assert!(listed.pruned);
        assert_eq!(listed.state, "superseded");
    }

    /// A database of schema `version` with `rows` in it (in a directory removed on drop).
    fn older_database(version: usize, rows: &str) -> (tempfile::TempDir, std::path::PathBuf) {
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
    fn each_apps_last_outcomes_come_from_the_log_also_for_deploys_recorded_before_apps_were() {
        // A deploy recorded before operations had an app (version 3): its release says.
        let (_dir, path) = older_database(
            3,
            "INSERT INTO operations (id, kind, trigger, outcome, started, finished) VALUES (1, 'deploy', 'cli', 'success', 't0', 't1');
             INSERT INTO releases (app, id, branch, created, state, operation) VALUES ('shop', 1, 'main', 't0', 'live', 1);",
        );
        let mut s = State::open(&path).expect("migrate");
        let finish = |s: &mut State, id: i64, kind: &str, outcome: &str, at: &str| {
            let mut op = s.operations(1, Some(id)).expect("op").remove(0);
            assert_eq!(op.kind, kind);
            op.outcome = outcome.into();
            op.finished = Some(at.into());
            s.finish_operation(&op).expect("finish");
        };
        let d2 = s
            .start_app_operation("deploy", "cli", "shop", "t2")
            .expect("start");
        finish(&mut s, d2, "deploy", "failed", "t3");
        let b1 = s
            .start_app_operation("backup", "schedule", "shop", "t4")
            .expect("start");
        finish(&mut s, b1, "backup", "success", "t5");
        // Running: not an outcome yet.
        s.start_app_operation("backup", "cli", "shop", "t6")
            .expect("start");
        s.start_app_operation("deploy", "cli", "blog", "t7")
            .expect("start");
        s.start_operation("apply", "cli", Some(1), "t8")
            .expect("start");
        let mut got = s.app_outcomes().expect("outcomes");
        got.sort_by_key(|o| o.id);
        assert_eq!(
            got,
            [
                AppOutcome {
                    app: "shop".into(),
                    kind: "deploy".into(),
                    id: d2,
                    outcome: "failed".into(),
                    finished: Some("t3".into()),
                    last_success: Some((1, "t1".into())),
                },
                AppOutcome {
                    app: "shop".into(),
                    kind: "backup".into(),
                    id: b1,
                    outcome: "success".into(),
                    finished: Some("t5".into()),
                    last_success: Some((b1, "t5".into())),
                },
            ]
        );
    }

    #[test]
    fn unit_checks_are_the_verify_and_health_steps_of_recent_passes_oldest_first() {
        let mut s = State::open(Path::new(":memory:")).expect("open");
        let mut pass = |kind: &str, steps: Vec<StepRecord>| {
            let id = s.start_operation(kind, "cli", Some(1), "t").expect("start");
            let mut op = s.operations(1, Some(id)).expect("op").remove(0);
            op.outcome = "success".into();
            op.steps = steps;
            s.finish_operation(&op).expect("finish");
        };
        let step = |action: &str, target: &str, outcome: &str| {
            StepRecord::new(action, target, outcome, "", false)
        };
        pass(
            "apply",
            vec![
                step("start", "a.service", "ok"),
                step("verify", "a.service", "ok"),
            ],
        );
        pass(
            "deploy",
            vec![step("health", "http://127.0.0.1:8000/health", "ok")],
        );
        pass(
            "drift",
            vec![
                step("verify", "a.service", "ok"),
                step("health", "a.service", "failed"),
            ],
        );
        let got: Vec<(String, String)> = s
            .unit_checks(10)
            .expect("checks")
            .into_iter()
            .map(|c| (c.action, c.outcome))
            .collect();
        let want = [("verify", "ok"), ("verify", "ok"), ("health", "failed")];
        assert_eq!(got, want.map(|(a, o)| (a.to_string(), o.to_string())));
        assert_eq!(
            s.unit_checks(1).expect("checks").len(),
            2,
            "the newest pass only"
        );
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
