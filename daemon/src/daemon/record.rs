//! daemon/record — how the driver writes the operations log and its other state.
//!
//! Owns: starting and finishing an operation row, the [`Operation`] value a pass returns, and
//! [`Daemon::db`], the way the driver calls the state database: a failed call is
//! logged at error level with what it was for and shown in `/status`
//! (`record_problem`), and handed back for the caller to decide what it means (each call site
//! says). Must not: decide what a pass does, or touch the host.

use std::time::Instant;

use super::pass::{now, Daemon};
use super::Trigger;
use crate::ops::Operation;
use crate::state::{State, StateError};
use crate::timing;

impl Daemon {
    /// A call to the state database, `what` saying what for ("recording the hold"); a
    /// failure is reported (error log, `/status`) and returned.
    pub(super) async fn db<T: Send + 'static>(
        &self,
        what: &str,
        f: impl FnOnce(&mut State) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, String> {
        self.state.call(f).await.map_err(|e| {
            let problem = format!("{what}: {e}");
            tracing::error!("{problem}");
            let shown = problem.clone();
            self.status.send_modify(|s| s.record_problem = Some(shown));
            problem
        })
    }

    /// Start an operation row; its id.
    ///
    /// # Errors
    /// The write failed (reported already).
    pub(super) async fn start_op(
        &self,
        kind: &'static str,
        trigger: Trigger,
        generation: Option<u64>,
    ) -> Result<i64, String> {
        let t = now();
        let what = format!("recording the start of a {kind} operation");
        let started = self.db(&what, move |s| {
            s.start_operation(kind, trigger.as_str(), generation, &t)
        });
        let id = timing::time_async("record", started).await?;
        // A new operation is recorded: what failed before it no longer stands (what fails
        // during it is shown until the next one).
        self.status.send_modify(|s| s.record_problem = None);
        Ok(id)
    }

    /// Publish a finished operation (log, metrics, systemd status, `/status`) and, with
    /// `record`, finish its row. A row that cannot be finished fails the operation: what ran
    /// is in the journal, but history would not show it.
    pub(super) async fn finish_op(&self, mut op: Operation, record: bool) -> Operation {
        if record && op.id > 0 {
            let saved = op.clone();
            let what = format!("recording operation {}", op.id);
            let finished = self.db(&what, move |s| s.finish_operation(&saved));
            if let Err(e) = timing::time_async("record", finished).await {
                fail(&mut op, e);
            }
        }
        self.metrics.pass_finished(&op);
        op.journal(None);
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&format!(
            "last pass: {} ({})",
            op.outcome, op.summary
        ))]);
        self.status.send_modify(|s| s.last_pass = Some(op.clone()));
        op
    }

    /// Give `op` the id its row was started with, or fail it when the row could not be
    /// started (the failure was reported; history will not show the operation).
    pub(super) fn numbered(&self, op: &mut Operation, id: Result<i64, String>) {
        match id {
            Ok(id) => op.id = id,
            Err(e) => fail(op, e),
        }
    }

    /// A successful operation so far, started at `started`.
    pub(super) fn op(
        id: Option<i64>,
        kind: &str,
        trigger: Trigger,
        generation: Option<u64>,
        started: Instant,
        started_at: &str,
    ) -> Operation {
        Operation {
            id: id.unwrap_or(0),
            kind: kind.into(),
            trigger: trigger.as_str().into(),
            generation,
            outcome: "success".into(),
            reason: None,
            summary: String::new(),
            started: started_at.into(),
            finished: Some(now()),
            duration_ms: Some(started.elapsed().as_millis() as i64),
            steps: vec![],
        }
    }
}

/// Mark `op` failed for `why`, keeping an earlier reason: the first failure is the one to fix.
pub(super) fn fail(op: &mut Operation, why: String) {
    op.outcome = "failed".into();
    op.reason = Some(match op.reason.take() {
        Some(first) => format!("{first}; {why}"),
        None => why,
    });
}
