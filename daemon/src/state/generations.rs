//! state/generations — the `generations` table: a generation's life ([`GenerationState`]), its
//! row as users see it, and the record kept to rebuild its directory. Must not: decide which
//! generation to switch to or prune (the driver's rules do), or touch the generation store.

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::{State, StateError};

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

crate::state::spelled!(GenerationState, "generation state", {
    Building => "building",
    Switching => "switching",
    Active => "active",
    Superseded => "superseded",
    Failed => "failed",
    RolledBack => "rolled-back",
});

impl GenerationState {
    /// Whether it ran: only these are rollback targets and count as kept by retention.
    pub fn ran(self) -> bool {
        matches!(self, GenerationState::Active | GenerationState::Superseded)
    }

    /// Whether an operation on it was under way (what startup recovery finishes or fails).
    pub fn in_progress(self) -> bool {
        matches!(self, GenerationState::Building | GenerationState::Switching)
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

impl State {
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
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::state::older_database;

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
        for (id, &state) in (1..).zip(GenerationState::ALL) {
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
}
