//! Releases of deployed apps: their rows and where each is in its life ([`ReleaseState`]).

use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::{State, StateError};

/// Where a release is in its life. Stored in `releases.state` and serialized as the strings
/// below, exactly as when the state was a plain string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReleaseState {
    /// Its deploy is fetching, building, validating or migrating it.
    Building,
    /// Its deploy failed (or was cut off by a crash); it never went live, or was put back.
    Failed,
    /// `current` points at it.
    Live,
    /// It was live before the live one: a rollback target while its directory is kept.
    Previous,
    /// Pruned: its directory is gone, its row kept for history.
    Removed,
}

super::spelled!(ReleaseState, "release state", {
    Building => "building",
    Failed => "failed",
    Live => "live",
    Previous => "previous",
    Removed => "removed",
});

impl ReleaseState {
    /// Whether its directory is kept to go back to: the live release and those before it.
    pub fn kept(self) -> bool {
        matches!(self, ReleaseState::Live | ReleaseState::Previous)
    }
}

/// A release as listed to users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRow {
    /// The app.
    pub app: String,
    /// Id (directory `releases/<id>`), increasing per app.
    pub id: u64,
    /// Branch deployed.
    pub branch: String,
    /// Commit deployed, once fetched.
    pub commit: Option<String>,
    /// When the deploy started (RFC 3339).
    pub created: String,
    /// Where it is in its life.
    pub state: ReleaseState,
    /// The deploy operation.
    pub operation: i64,
    /// Database dump taken before this release's migration.
    pub dump: Option<String>,
    /// Why it failed.
    pub reason: Option<String>,
}

impl State {
    /// Start a release of `app` in state `building`; returns its id (never reused).
    ///
    /// # Errors
    /// SQLite failures.
    pub fn insert_release(
        &self,
        app: &str,
        branch: &str,
        operation: i64,
        now: &str,
    ) -> Result<u64, StateError> {
        let max: Option<i64> = self.conn.query_row(
            "SELECT MAX(id) FROM releases WHERE app = ?1",
            params![app],
            |r| r.get(0),
        )?;
        let id = max.unwrap_or(0) + 1;
        self.conn.execute(
            "INSERT INTO releases (app, id, branch, created, state, operation) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![app, id, branch, now, ReleaseState::Building, operation],
        )?;
        Ok(id as u64)
    }

    /// Update a release: its state (making one `live` makes the live one `previous`), and
    /// optionally why, its commit and its dump.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn set_release(
        &self,
        app: &str,
        id: u64,
        state: ReleaseState,
        reason: Option<&str>,
    ) -> Result<(), StateError> {
        if state == ReleaseState::Live {
            self.conn.execute(
                "UPDATE releases SET state = ?3 WHERE app = ?1 AND state = ?4 AND id != ?2",
                params![app, id as i64, ReleaseState::Previous, ReleaseState::Live],
            )?;
        }
        let reason = reason.map(|r| self.redact.apply(r));
        self.conn.execute(
            "UPDATE releases SET state = ?3, reason = COALESCE(?4, reason) WHERE app = ?1 AND id = ?2",
            params![app, id as i64, state, reason],
        )?;
        Ok(())
    }

    /// Record what a release was built from, and its dump.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn set_release_facts(
        &self,
        app: &str,
        id: u64,
        commit: Option<&str>,
        dump: Option<&str>,
    ) -> Result<(), StateError> {
        self.conn.execute(
            "UPDATE releases SET commit_id = COALESCE(?3, commit_id), dump = COALESCE(?4, dump) WHERE app = ?1 AND id = ?2",
            params![app, id as i64, commit, dump],
        )?;
        Ok(())
    }

    /// The releases of `app`, newest first.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn releases(&self, app: &str) -> Result<Vec<ReleaseRow>, StateError> {
        let mut stmt = self.conn.prepare(
            "SELECT app, id, branch, commit_id, created, state, operation, dump, reason FROM releases WHERE app = ?1 ORDER BY id DESC",
        )?;
        let rows = stmt.query_map(params![app], |r| {
            Ok(ReleaseRow {
                app: r.get(0)?,
                id: r.get::<_, i64>(1)? as u64,
                branch: r.get(2)?,
                commit: r.get(3)?,
                created: r.get(4)?,
                state: r.get(5)?,
                operation: r.get(6)?,
                dump: r.get(7)?,
                reason: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Releases left `building` by a crash: marked failed and returned, so their directories
    /// can be removed.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn interrupt_building(&self) -> Result<Vec<(String, u64)>, StateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT app, id FROM releases WHERE state = ?1 ORDER BY app, id")?;
        let rows: Vec<(String, u64)> = stmt
            .query_map([ReleaseState::Building], |r| {
                Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
            })?
            .collect::<Result<_, _>>()?;
        self.conn.execute(
            "UPDATE releases SET state = ?1, reason = 'strackt stopped during the deploy' WHERE state = ?2",
            [ReleaseState::Failed, ReleaseState::Building],
        )?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn one_release_is_live_and_a_crash_leaves_none_building() {
        let s = State::open(Path::new(":memory:")).expect("open");
        // The operation that built them (the column has no foreign key; `ops/` writes that log).
        let op = 1;
        let first = s.insert_release("shop", "main", op, "t1").expect("1");
        let second = s.insert_release("shop", "main", op, "t2").expect("2");
        assert_eq!((first, second), (1, 2));
        assert_eq!(
            s.insert_release("blog", "main", op, "t")
                .expect("other app"),
            1
        );
        s.set_release("shop", 1, ReleaseState::Live, None)
            .expect("live");
        s.set_release_facts("shop", 1, Some("abc"), None)
            .expect("facts");
        s.set_release_facts("shop", 1, None, Some("/d"))
            .expect("dump");
        s.set_release("shop", 2, ReleaseState::Live, None)
            .expect("live");
        let rows = s.releases("shop").expect("rows");
        let states: Vec<(u64, &str)> = rows.iter().map(|r| (r.id, r.state.as_str())).collect();
        assert_eq!(states, [(2, "live"), (1, "previous")]);
        assert_eq!(
            (rows[1].commit.as_deref(), rows[1].dump.as_deref()),
            (Some("abc"), Some("/d"))
        );
        s.insert_release("shop", "main", op, "t3").expect("3");
        assert_eq!(
            s.interrupt_building().expect("interrupt"),
            [("blog".to_string(), 1), ("shop".to_string(), 3)]
        );
        assert_eq!(
            s.releases("shop").expect("rows")[0].state,
            ReleaseState::Failed
        );
        // The enum changed no stored or serialized byte.
        let spelled: Vec<(String, String)> = ReleaseState::ALL
            .iter()
            .map(|&r| (r.to_string(), serde_json::to_string(&r).expect("json")))
            .collect();
        let want = ["building", "failed", "live", "previous", "removed"];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|w| (w.to_string(), format!("\"{w}\"")))
            .collect();
        assert_eq!(spelled, want);
        let stored: String = s
            .conn
            .query_row(
                "SELECT state FROM releases WHERE app = 'shop' AND id = 1",
                [],
                |r| r.get(0),
            )
            .expect("stored");
        assert_eq!(stored, "previous");
    }
}
