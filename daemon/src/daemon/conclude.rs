//! daemon/conclude — what a switch did, recorded: the generation's state, the pin on a failed
//! definition, `/status` health, garbage collection, and the operation with its steps.
//!
//! Owns carrying out [`decide::after_failed_switch`]'s answer. Must not: decide those rules
//! itself, or touch the host (the switch is over by the time this runs).

use std::time::Instant;

use super::decide;
use super::error::RecordError;
use super::pass::{Daemon, PINNED};
use super::record::fail;
use super::Trigger;
use crate::apply::switch::SwitchReport;
use crate::host::Machine;
use crate::ops::Operation;
use crate::state::GenerationState;

impl<M: Machine> Daemon<M> {
    /// Record the result of switching to `id` from `from` (as [`decide::after_failed_switch`]
    /// rules for a failure), update generation states, collect garbage. The host has changed
    /// by now, so a record that cannot be written fails the operation, visibly, and nothing
    /// is undone: the host is on a complete generation either way.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn conclude_switch(
        &mut self,
        op_id: Result<i64, RecordError>,
        kind: &str,
        trigger: Trigger,
        id: u64,
        from: Option<u64>,
        report: SwitchReport,
        started: Instant,
        sha: Option<String>,
    ) -> Operation {
        let started_at = self.now();
        let mut op = self.op(None, kind, trigger, Some(id), started, &started_at);
        op.summary = decide::summarize(&report.steps);
        let digest = report.digest.clone();
        op.steps = report.steps;
        let t = self.now();
        let recorded = match &report.failure {
            None => {
                let summary = op.summary.clone();
                let what = format!("recording that generation {id} is active");
                let recorded = self.db(&what, move |s| {
                    s.set_generation_state(id, GenerationState::Active, None, &t)?;
                    s.set_meta(PINNED, None)?;
                    // The summary of a generation is what switching to it changed.
                    let mut rows = s.generations()?;
                    if let Some(row) = rows.iter_mut().find(|g| g.id == id) {
                        if row.summary.is_empty() {
                            row.summary = summary;
                            s.insert_generation(row)?;
                        }
                    }
                    Ok(())
                });
                let recorded = recorded.await;
                self.status.send_modify(|s| s.health = "ok".into());
                self.collect_garbage(Some(id), from).await;
                recorded
            }
            Some(failure) => {
                let on_target = self.store.current().ok().flatten() == Some(id);
                let after = decide::after_failed_switch(
                    failure,
                    report.rolled_back,
                    report.rollback_failure.as_deref(),
                    from,
                    sha,
                    on_target,
                );
                self.failed_switch(&mut op, id, after).await
            }
        };
        self.numbered(&mut op, op_id);
        if let Err(e) = recorded {
            fail(
                &mut op,
                format!("generation {id}'s state is not recorded: {e}"),
            );
        }
        let cur = self.current().ok().flatten();
        self.metrics.services_checked(&op.steps, |u| {
            cur.as_ref()
                .is_some_and(|g| g.manifest.units.contains_key(u))
        });
        self.status.send_modify(|s| {
            s.current_generation = cur.as_ref().map(|g| g.manifest.id);
            s.digest = digest;
            s.drift.clear();
        });
        self.finish_op(op, true).await
    }

    /// Carry out what a failed switch leaves behind.
    async fn failed_switch(
        &mut self,
        op: &mut Operation,
        id: u64,
        after: decide::AfterFailure,
    ) -> Result<(), RecordError> {
        if after.state == GenerationState::RolledBack {
            self.metrics.rolled_back();
        }
        op.outcome = after.outcome;
        op.reason = Some(after.reason.clone());
        op.summary = after.summary;
        let t = self.now();
        let (state, reason, pin, back_to) =
            (after.state, after.reason, after.pin, after.reactivate);
        let what = format!("recording that generation {id} is {state}");
        let recorded = self.db(&what, move |s| {
            s.set_generation_state(id, state, Some(&reason), &t)?;
            if let Some(sha) = pin {
                s.set_meta(PINNED, Some(&sha))?;
            }
            if let Some(b) = back_to {
                s.set_generation_state(b, GenerationState::Active, None, &t)?;
            }
            Ok(())
        });
        let recorded = recorded.await;
        let problem = after.definition_problem;
        self.status.send_modify(|s| {
            s.health = "failed".into();
            if problem.is_some() {
                s.definition_problem = problem;
            }
        });
        if after.drop_directory {
            self.drop_directory(id).await;
        }
        recorded
    }
}
