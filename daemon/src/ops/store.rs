//! The operations log's tables (`operations`, `steps`): every SQL statement that reads or
//! writes them. The schema and its migrations stay with the database in `state/`.

use rusqlite::{params, Connection};

use super::{AppOutcome, Operation, StepRecord};
use crate::state::{Redactor, State, StateError};

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
    /// Start an operation; returns its id.
    ///
    /// # Errors
    /// SQLite failures.
    pub(super) fn start_operation(
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
    pub(super) fn start_app_operation(
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
    pub(super) fn finish_operation(&mut self, op: &Operation) -> Result<(), StateError> {
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
    pub(super) fn interrupt_running(&self, now: &str) -> Result<usize, StateError> {
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

    /// Record step `seq` of a running operation (replacing an earlier record of it), so
    /// watchers see it advance.
    ///
    /// # Errors
    /// SQLite failures.
    pub(super) fn put_step(
        &self,
        operation: i64,
        seq: usize,
        step: &StepRecord,
    ) -> Result<(), StateError> {
        self.redact.prepare();
        put_step(&self.conn, &self.redact, operation, seq, step)
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::ops::{Outcome, StepOutcome};

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
            outcome: Outcome::Success,
            reason: None,
            summary: "1 change".into(),
            started: "t0".into(),
            finished: Some("t2".into()),
            duration_ms: Some(5),
            steps: vec![StepRecord::new(
                "write-file",
                "/etc/motd",
                StepOutcome::Ok,
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
        assert_eq!(ops[0].outcome, Outcome::Interrupted);
        assert_eq!(
            ops[0].duration_ms,
            Some(1500),
            "from start to the restart that found it"
        );
        assert_eq!(s.operations(10, Some(id)).expect("one")[0], op);
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
            StepOutcome::Failed,
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
            outcome: Outcome::Failed,
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
    fn unit_checks_are_the_verify_and_health_steps_of_recent_passes_oldest_first() {
        let mut s = State::open(Path::new(":memory:")).expect("open");
        let mut pass = |kind: &str, steps: Vec<StepRecord>| {
            let id = s.start_operation(kind, "cli", Some(1), "t").expect("start");
            let mut op = s.operations(1, Some(id)).expect("op").remove(0);
            op.outcome = Outcome::Success;
            op.steps = steps;
            s.finish_operation(&op).expect("finish");
        };
        let step = |action: &str, target: &str, outcome: StepOutcome| {
            StepRecord::new(action, target, outcome, "", false)
        };
        pass(
            "apply",
            vec![
                step("start", "a.service", StepOutcome::Ok),
                step("verify", "a.service", StepOutcome::Ok),
            ],
        );
        pass(
            "deploy",
            vec![step(
                "health",
                "http://127.0.0.1:8000/health",
                StepOutcome::Ok,
            )],
        );
        pass(
            "drift",
            vec![
                step("verify", "a.service", StepOutcome::Ok),
                step("health", "a.service", StepOutcome::Failed),
            ],
        );
        let got: Vec<(String, StepOutcome)> = s
            .unit_checks(10)
            .expect("checks")
            .into_iter()
            .map(|c| (c.action, c.outcome))
            .collect();
        let want = [
            ("verify", StepOutcome::Ok),
            ("verify", StepOutcome::Ok),
            ("health", StepOutcome::Failed),
        ];
        assert_eq!(got, want.map(|(a, o)| (a.to_string(), o)));
        assert_eq!(
            s.unit_checks(1).expect("checks").len(),
            2,
            "the newest pass only"
        );
    }

    #[test]
    fn each_apps_last_outcomes_come_from_the_log_also_for_deploys_recorded_before_apps_were() {
        // A deploy recorded before operations had an app (version 3): its release says.
        let (_dir, path) = crate::state::older_database(
            3,
            "INSERT INTO operations (id, kind, trigger, outcome, started, finished) VALUES (1, 'deploy', 'cli', 'success', 't0', 't1');
             INSERT INTO releases (app, id, branch, created, state, operation) VALUES ('shop', 1, 'main', 't0', 'live', 1);",
        );
        let mut s = State::open(&path).expect("migrate");
        let finish = |s: &mut State, id: i64, kind: &str, outcome: Outcome, at: &str| {
            let mut op = s.operations(1, Some(id)).expect("op").remove(0);
            assert_eq!(op.kind, kind);
            op.outcome = outcome;
            op.finished = Some(at.into());
            s.finish_operation(&op).expect("finish");
        };
        let d2 = s
            .start_app_operation("deploy", "cli", "shop", "t2")
            .expect("start");
        finish(&mut s, d2, "deploy", Outcome::Failed, "t3");
        let b1 = s
            .start_app_operation("backup", "schedule", "shop", "t4")
            .expect("start");
        finish(&mut s, b1, "backup", Outcome::Success, "t5");
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
                    outcome: Outcome::Failed,
                    finished: Some("t3".into()),
                    last_success: Some((1, "t1".into())),
                },
                AppOutcome {
                    app: "shop".into(),
                    kind: "backup".into(),
                    id: b1,
                    outcome: Outcome::Success,
                    finished: Some("t5".into()),
                    last_success: Some((b1, "t5".into())),
                },
            ]
        );
    }
}
