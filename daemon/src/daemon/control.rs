//! daemon/control — experiment mode (`strackt hold`) and confirm-or-revert
//! (`strackt apply --confirm-within`, `strackt confirm`).
//!
//! Owns: the hold and the pending confirmation, kept in the state database so a restart
//! keeps them, and carrying out what [`super::decide`] rules about them: the revert of an
//! unconfirmed switch goes through [`Daemon::rollback`], like any switch back. Must not: decide
//! the rules itself, or switch the host other than through a pass or a rollback.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::decide::{self, Unconfirmed};
use super::error::{ControlError, OutOfRange, RecordError};
use super::pass::Daemon;
use super::record::fail;
use super::Trigger;
use crate::host::clock::Clock;
use crate::host::Machine;
use crate::ops::{Operation, Outcome};
pub use crate::status::{Held, Hold, HoldChange, PendingConfirm};

/// The longest `strackt hold --for`: a forgotten hold must still end, and drift repair with it.
pub const MAX_HOLD_SECS: u64 = 30 * 24 * 3600;
/// The longest `strackt apply --confirm-within`: the revert is a safety net, not a schedule.
pub const MAX_CONFIRM_SECS: u64 = 24 * 3600;
/// How recent a switch the watcher made from a save may be for `apply --confirm-within` to
/// take it as the change to confirm (the user saved, then ran the command).
const JUST_SAVED: Duration = Duration::from_secs(60);

/// The instant `seconds` from now, refused when it is 0 or above `max` (see
/// [`decide::deadline_after`]): the CLI's check of a flag before it asks the daemon, which
/// computes the deadline again from its machine's clock.
pub fn deadline_in(
    seconds: u64,
    max: u64,
    what: &str,
) -> Result<chrono::DateTime<chrono::Utc>, OutOfRange> {
    decide::deadline_after(chrono::Utc::now(), seconds, max, what)
}

impl<M: Machine> Daemon<M> {
    /// Whether drift repair is paused right now.
    pub(super) fn held(&self) -> bool {
        decide::held(self.hold.as_ref(), self.machine.clock().now())
    }

    /// Time until the next pass: the reconcile interval, or sooner when a hold ends or a
    /// confirmation deadline passes.
    pub fn next_wait(&self) -> Duration {
        decide::next_wait(
            self.interval,
            self.hold.as_ref(),
            self.pending.as_ref(),
            self.machine.clock().now(),
        )
    }

    /// Keep `value` (JSON; `None` deletes it) under the meta `key`, which survives restarts.
    async fn save_meta<T: Serialize>(
        &self,
        what: &str,
        key: &'static str,
        value: Option<&T>,
    ) -> Result<(), RecordError> {
        // These small structs always serialize.
        let stored = value.map(|v| serde_json::to_string(v).unwrap_or_default());
        self.db(what, move |s| s.set_meta(key, stored.as_deref()))
            .await
    }

    async fn save_pending(&mut self, pending: Option<PendingConfirm>) -> Result<(), RecordError> {
        let what = "recording the confirmation deadline";
        self.save_meta(what, "pending_confirm", pending.as_ref())
            .await?;
        self.status
            .send_modify(|s| s.pending_confirm = pending.clone());
        self.pending = pending;
        Ok(())
    }

    /// The deadline of `apply --confirm-within secs`, from the machine's clock.
    fn confirm_deadline(&self, secs: u64) -> Result<decide::Time, OutOfRange> {
        let now = self.machine.clock().now();
        decide::deadline_after(now, secs, MAX_CONFIRM_SECS, "--confirm-within")
    }

    /// `strackt apply [--confirm-within]`: a pass now; with a deadline, a switch to a new
    /// generation must be confirmed in time or it is reverted by the same path as a rollback.
    pub async fn apply(&mut self, confirm_within: Option<u64>) -> Operation {
        if let Some(Err(e)) = confirm_within.map(|s| self.confirm_deadline(s)) {
            let mut op = self.op(
                None,
                "apply",
                Trigger::Cli,
                None,
                Instant::now(),
                &self.now(),
            );
            fail(&mut op, e);
            return op;
        }
        let before = self.store.current().ok().flatten();
        // The watcher applies a save 150 ms after it: see `decide::to_confirm`.
        let saved = self
            .saved_switch
            .filter(|(_, _, at)| self.machine.clock().instant() - *at < JUST_SAVED)
            .map(|(generation, previous, _)| (generation, previous));
        let mut op = self.pass(Trigger::Cli, true).await;
        let after = self.store.current().ok().flatten();
        let Some(secs) = confirm_within else {
            return op;
        };
        let Some((generation, previous)) =
            decide::to_confirm(before, after, saved, op.outcome == Outcome::Success)
        else {
            return op;
        };
        // Checked above; the pass took a moment, so compute it again from now.
        let deadline = self
            .confirm_deadline(secs)
            .unwrap_or_else(|_| self.machine.clock().now())
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        op.summary = format!("{}; run `strackt confirm` before {deadline} or it is reverted to generation {previous}", op.summary);
        let pending = PendingConfirm {
            generation,
            previous,
            deadline,
        };
        if let Err(e) = self.save_pending(Some(pending)).await {
            fail(
                &mut op,
                format!("could not arm the confirmation deadline: {e}"),
            );
        }
        op
    }

    /// `strackt confirm`: the generation confirmed.
    ///
    /// # Errors
    /// When nothing waits for confirmation, or the confirmation cannot be recorded (a restart
    /// would then revert the confirmed switch).
    pub async fn confirm(&mut self) -> Result<u64, ControlError> {
        let pending = self.pending.clone().ok_or(ControlError::NothingToConfirm)?;
        self.save_pending(None).await?;
        tracing::info!("generation {} confirmed", pending.generation);
        Ok(pending.generation)
    }

    /// Revert an unconfirmed switch whose deadline passed; `None` when there is none.
    pub(super) async fn revert_if_unconfirmed(&mut self) -> Option<Operation> {
        let current = self.store.current().ok().flatten();
        let pending = self.pending.clone()?;
        let to = match decide::unconfirmed(Some(&pending), current, self.machine.clock().now())? {
            Unconfirmed::Wait => return None,
            Unconfirmed::Forget => None,
            Unconfirmed::Revert { to } => Some(to),
        };
        // Forgotten whatever the write says: the revert is done once (a stale record is
        // forgotten after a restart, the host being off that generation by then).
        if self.save_pending(None).await.is_err() {
            self.status.send_modify(|s| s.pending_confirm = None);
            self.pending = None;
        }
        let to = to?;
        let not_confirmed = format!(
            "generation {} not confirmed by {}",
            pending.generation, pending.deadline
        );
        let mut op = match self.rollback(Some(to)).await {
            Ok(op) => op,
            Err(e) => {
                // Nothing changed on the host: say so as a failed operation of its own.
                let started = Instant::now();
                let id = self.start_op("rollback", Trigger::Timer, Some(to)).await;
                let mut op = self.op(
                    id.ok(),
                    "rollback",
                    Trigger::Timer,
                    Some(to),
                    started,
                    &self.now(),
                );
                op.summary = format!("{not_confirmed}; it could not be reverted");
                fail(&mut op, e);
                return Some(self.finish_op(op, true).await);
            }
        };
        op.summary = format!("{not_confirmed}: {}", op.summary);
        self.write_op(&mut op).await;
        Some(op)
    }

    async fn save_hold(&mut self, hold: Option<Hold>) -> Result<(), RecordError> {
        self.save_meta("recording the hold", "hold", hold.as_ref())
            .await?;
        self.status.send_modify(|s| s.hold = hold.clone());
        self.hold = hold;
        Ok(())
    }

    /// The pass that finds the hold over clears it (what was changed during it is put back
    /// by that pass). A failed write keeps it in memory, and the next pass tries again.
    pub(super) async fn end_hold_if_over(&mut self) {
        if decide::hold_over(self.hold.as_ref(), self.machine.clock().now()) {
            let _reported = self.save_hold(None).await;
        }
    }

    /// Start or end experiment mode. Ending it runs a pass at once and returns it.
    ///
    /// # Errors
    /// When the state cannot be saved.
    pub async fn set_hold(&mut self, change: HoldChange) -> Result<Held, ControlError> {
        match change {
            HoldChange::For { seconds, reason } => {
                let now = self.machine.clock().now();
                let until = decide::deadline_after(now, seconds, MAX_HOLD_SECS, "--for")?;
                let hold = Hold {
                    until: until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    reason,
                };
                self.save_hold(Some(hold.clone())).await?;
                tracing::info!("hold: drift repair paused until {}", hold.until);
                Ok(Held::Until(hold))
            }
            HoldChange::Release => {
                self.save_hold(None).await?;
                Ok(Held::Released(self.pass(Trigger::Cli, false).await))
            }
        }
    }
}
