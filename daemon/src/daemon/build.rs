//! daemon/build — a new generation from the definition: numbered, its packages locked, built
//! in the store, recorded (row, operation, kept record), then switched to through `apply`.
//!
//! Owns the order of those writes: nothing on the host changes until the state database can
//! describe the switch. Must not: decide what a switch's result means (that is `conclude`),
//! or touch the host other than through [`Daemon::switch_to`].

use std::time::Instant;

use super::pass::Daemon;
use super::record::fail;
use super::Trigger;
use crate::definition::ValidatedDefinition;
use crate::generation::{render, Generation};
use crate::host::Machine;
use crate::ops::Operation;
use crate::state::{GenerationRow, GenerationState};

impl<M: Machine> Daemon<M> {
    /// Build a new generation from `def` and switch to it. Nothing on the host changes
    /// until the generation's row, operation and record are written: a switch the state
    /// database cannot describe could be neither recovered after a crash nor shown.
    pub(super) async fn new_generation(
        &mut self,
        trigger: Trigger,
        def: &ValidatedDefinition,
        current: Option<Generation>,
        started: Instant,
        started_at: &str,
    ) -> Operation {
        let failed = |generation: Option<u64>, why: String| {
            let mut op = self.op(None, "apply", trigger, generation, started, started_at);
            op.summary = "build failed; host unchanged".into();
            fail(&mut op, why);
            op
        };
        let on_disk = self
            .store
            .list()
            .ok()
            .and_then(|l| l.last().copied())
            .unwrap_or(0);
        let next = self.db("numbering the next generation", move |s| {
            s.next_generation_id(on_disk)
        });
        let id = match next.await {
            Ok(id) => id,
            Err(e) => return self.finish_op(failed(None, e.to_string()), false).await,
        };
        if let Some(problem) = self.lockout_problem(def) {
            return self
                .definition_failed(trigger, started, started_at, problem)
                .await;
        }
        let d = def.definition();
        self.metrics.keep_apps(
            |app| d.apps.contains_key(app),
            |app| d.backups.contains_key(app),
        );
        let mut rendered = render(def);
        // Build: every `latest` becomes an exact version and every .deb is fetched now, so a
        // version that does not exist (or cannot be downloaded) fails here, host untouched.
        if let Err(e) = self.lock_packages(def, &mut rendered, true) {
            let mut op = failed(None, format!("building the next generation: {e}"));
            let op_id = self.start_op("apply", trigger, None).await;
            self.numbered(&mut op, op_id);
            return self.finish_op(op, true).await;
        }
        let row = GenerationRow {
            id,
            created: self.now(),
            state: GenerationState::Building,
            trigger: trigger.as_str().into(),
            summary: String::new(),
            reason: None,
            definition_sha256: rendered.manifest.definition_sha256.clone(),
            pruned: false,
        };
        let r = row.clone();
        let what = format!("recording generation {id}");
        if let Err(e) = self.db(&what, move |s| s.insert_generation(&r)).await {
            return self.finish_op(failed(Some(id), e.to_string()), false).await;
        }
        let op_id = match self.start_op("apply", trigger, Some(id)).await {
            Ok(op_id) => op_id,
            Err(e) => {
                return self
                    .build_failed(None, trigger, id, started, started_at, e.to_string())
                    .await
            }
        };
        let from_id = current.as_ref().map(|c| c.manifest.id);
        let built = self
            .store
            .build(id, &rendered, &row.created)
            .and_then(|_| self.store.load(id));
        let target = match built {
            Ok(g) => g,
            Err(e) => {
                let reason = format!("building generation {id}: {e}");
                return self
                    .build_failed(Some(op_id), trigger, id, started, started_at, reason)
                    .await;
            }
        };
        // The record is kept for good, before anything on the host changes.
        let kept = self.keep_record(id, &rendered.definition, &target.manifest);
        if let Err(e) = kept.await {
            return self
                .build_failed(Some(op_id), trigger, id, started, started_at, e.to_string())
                .await;
        }
        // Unrecorded, the row still says "building", which the startup recovery treats as
        // "switching": the switch goes on (the failure is reported).
        let t = self.now();
        let what = format!("recording that generation {id} is switching");
        let switching = self.db(&what, move |s| {
            s.set_generation_state(id, GenerationState::Switching, None, &t)
        });
        let _reported = switching.await;
        let report = self
            .switch_to(Some(&target), current.as_ref(), self.settle)
            .await;
        let sha = rendered.manifest.definition_sha256.clone();
        self.conclude_switch(
            Ok(op_id),
            "apply",
            trigger,
            id,
            from_id,
            report,
            started,
            Some(sha),
        )
        .await
    }

    /// A generation that could not be built or recorded: failed, its directory dropped (its
    /// row says why), the host unchanged.
    async fn build_failed(
        &mut self,
        op_id: Option<i64>,
        trigger: Trigger,
        id: u64,
        started: Instant,
        started_at: &str,
        reason: String,
    ) -> Operation {
        let mut op = self.op(op_id, "apply", trigger, Some(id), started, started_at);
        op.summary = "build failed; host unchanged".into();
        fail(&mut op, reason.clone());
        let t = self.now();
        let what = format!("recording that generation {id} failed");
        let failed = self.db(&what, move |s| {
            s.set_generation_state(id, GenerationState::Failed, Some(&reason), &t)
        });
        if let Err(e) = failed.await {
            fail(&mut op, e);
        }
        if self.store.list().is_ok_and(|l| l.contains(&id)) {
            self.drop_directory(id).await;
        }
        self.finish_op(op, op_id.is_some()).await
    }
}
