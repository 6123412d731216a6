//! daemon/record — how the driver writes the operations log and its other state.
//!
//! Owns: starting, finishing and interrupting operation rows — only through `ops/`, the log's
//! one writer — the [`Operation`] value a pass returns, and [`Daemon::db`], the way the
//! driver calls the rest of the state database. A failed call or log write is
//! logged at error level with what it was for and shown in `/status`
//! (`record_problem`), and handed back for the caller to decide what it means (each call site
//! says). Must not: decide what a pass does, or touch the host.

use std::time::Instant;

use super::error::RecordError;
use super::pass::Daemon;
use super::Trigger;
use crate::host::clock::Clock;
use crate::host::Machine;
use crate::ops::{self, Operation, OpsError, Outcome};
use crate::state::{State, StateError};
use crate::timing;

impl<M: Machine> Daemon<M> {
    /// A call to the state database, `what` saying what for ("recording the hold"); a
    /// failure is reported (error log, `/status`) and returned.
    pub(super) async fn db<T: Send + 'static>(
        &self,
        what: &str,
        f: impl FnOnce(&mut State) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, RecordError> {
        self.state.call(f).await.map_err(|error| {
            let problem = RecordError::Db {
                what: what.to_string(),
                error,
            };
            tracing::error!("{problem}");
            let shown = problem.to_string();
            self.status.send_modify(|s| s.record_problem = Some(shown));
            problem
        })
    }

    /// Report a failed write to the operations log (`ops` logged it already) in `/status`; what
    /// it was, for the caller to decide what it means.
    fn reported(&self, e: OpsError) -> RecordError {
        let shown = e.to_string();
        self.status.send_modify(|s| s.record_problem = Some(shown));
        e.into()
    }

    /// Start an operation row, through `ops`; its id.
    ///
    /// # Errors
    /// The write failed (reported already).
    pub(super) async fn start_op(
        &self,
        kind: &'static str,
        trigger: Trigger,
        generation: Option<u64>,
    ) -> Result<i64, RecordError> {
        let at = self.machine.clock().now();
        let started = ops::start(&self.state, kind, trigger.as_str(), generation, at);
        let id = timing::time_async("record", started)
            .await
            .map_err(|e| self.reported(e))?;
        // A new operation is recorded: what failed before it no longer stands (what fails
        // during it is shown until the next one).
        self.status.send_modify(|s| s.record_problem = None);
        Ok(id)
    }

    /// Finish `op`'s row, through `ops`. A row that cannot be finished fails the operation
    /// (reported): what ran is in the journal, but history would not show it. A row that never
    /// started (id 0, reported then) has nothing to finish.
    pub(super) async fn write_op(&self, op: &mut Operation) {
        if op.id <= 0 {
            return;
        }
        let finished = ops::finish(&self.state, op);
        if let Err(e) = timing::time_async("record", finished).await {
            let why = self.reported(e);
            fail(op, why.to_string());
        }
    }

    /// Mark the operations a stop left running as interrupted, through `ops`; a failure is
    /// reported and returned.
    pub(super) async fn interrupt_running(&self) -> Result<usize, RecordError> {
        ops::interrupt_running(&self.state, self.machine.clock().now())
            .await
            .map_err(|e| self.reported(e))
    }

    /// Publish a finished operation (log, metrics, systemd status, `/status`) and, with
    /// `record`, finish its row ([`Self::write_op`]).
    pub(super) async fn finish_op(&self, mut op: Operation, record: bool) -> Operation {
        if record {
            self.write_op(&mut op).await;
        }
        self.metrics.pass_finished(&op);
        op.journal(None);
        // Best-effort: `systemctl status`'s line only; the journal and `/status` have the pass.
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&format!(
            "last pass: {} ({})",
            op.outcome, op.summary
        ))]);
        self.status.send_modify(|s| s.last_pass = Some(op.clone()));
        op
    }

    /// Give `op` the id its row was started with, or fail it when the row could not be
    /// started (the failure was reported; history will not show the operation).
    pub(super) fn numbered(&self, op: &mut Operation, id: Result<i64, RecordError>) {
        match id {
            Ok(id) => op.id = id,
            Err(e) => fail(op, e.to_string()),
        }
    }

    /// Now on the machine's clock, as the log writes times: every time the driver records
    /// (operations, generations) is on the clock its timers run on, so a test on the paused
    /// clock reads the times it waited for.
    pub(super) fn now(&self) -> String {
        ops::stamp(self.machine.clock().now())
    }

    /// A successful operation so far, started at `started`.
    pub(super) fn op(
        &self,
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
            outcome: Outcome::Success,
            reason: None,
            summary: String::new(),
            started: started_at.into(),
            finished: Some(self.now()),
            duration_ms: Some(started.elapsed().as_millis() as i64),
            steps: vec![],
        }
    }
}

/// Mark `op` failed for `why`, keeping an earlier reason: the first failure is the one to fix.
pub(super) fn fail(op: &mut Operation, why: impl std::fmt::Display) {
    let why = why.to_string();
    op.outcome = Outcome::Failed;
    op.reason = Some(match op.reason.take() {
        Some(first) => format!("{first}; {why}"),
        None => why,
    });
}
