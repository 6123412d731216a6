//! daemon/startup — what the daemon does once when it starts, before its first pass.
//!
//! Owns: cleaning the store's leftovers, backfilling generation records, recording the base
//! package set, restoring the hold, the pending confirmation and `/metrics` from the state
//! database, and the crash recovery: a switch cut off by a kill is finished (or undone)
//! through `apply`, as [`decide::recover`] rules. Then the startup pass applies the definition
//! file as it is *now*. Must not: decide the recovery rules itself, or skip that pass.

use std::time::Instant;

use super::decide::{self, Recovery};
use super::pass::Daemon;
use super::Trigger;
use crate::apply::Ownership;
use crate::definition::parse;
use crate::generation::Generation;
use crate::host::definition::DefinitionFile;
use crate::host::packages::Packages;
use crate::host::{Files, JobKind, Machine, Systemd};
use crate::ops::{StepOutcome, StepRecord};
use crate::state::GenerationState;

impl<M: Machine> Daemon<M> {
    /// Reconcile the database with `current` after a start (a crash may have interrupted a
    /// switch), then run the startup pass.
    pub async fn startup(&mut self) {
        self.store.clean_leftovers();
        self.backfill_records().await;
        // What the host had when strackt took it over is never removed as hand-installed.
        match (
            Ownership::load(Some(self.store.root())),
            self.machine.packages().installed(),
        ) {
            (Ok(mut owned), Ok(installed)) => {
                if let Err(e) = owned.record_base(installed.into_keys().collect()) {
                    tracing::error!("recording the base package set: {e}");
                }
            }
            (Err(e), _) | (_, Err(e)) => tracing::error!("recording the base package set: {e}"),
        }
        if let Ok(Some(text)) = self
            .db("reading the confirmation deadline", |s| {
                s.meta("pending_confirm")
            })
            .await
        {
            self.pending = serde_json::from_str(&text).ok();
            let pending = self.pending.clone();
            self.status.send_modify(|s| s.pending_confirm = pending);
        }
        self.restore_updates().await;
        if let Ok(Some(text)) = self.db("reading the hold", |s| s.meta("hold")).await {
            self.hold = serde_json::from_str(&text).ok();
            let hold = self.hold.clone();
            self.status.send_modify(|s| s.hold = hold);
        }
        self.recover().await;
        self.restore_metrics().await;
        // Whatever the interrupted switch left, the host converges on the definition file as it
        // is *now*: it may have been saved while the daemon was down, before the watcher ran.
        self.pass(Trigger::Startup, false).await;
    }

    /// Reconcile the generation rows with `current` (see [`decide::recover`]): rows a crash
    /// left mid-switch are failed, or their switch finished from the last active generation.
    /// The rows are read and written in one state call, so a timer never sees them half done.
    async fn recover(&mut self) {
        // Operations the stop left running are marked first, through `ops`. When that fails
        // (reported), the database is not to be trusted with the generation rows either:
        // nothing is recovered here, and the pass that follows still converges the host.
        if self.interrupt_running().await.is_err() {
            return;
        }
        let cur = self.store.current().ok().flatten();
        let t = self.now();
        let decided = self
            .db("recovering the generations after a start", move |s| {
                let recovery = decide::recover(&s.generations()?, cur);
                let why = "interrupted before the switch completed; the host stayed on the previous generation";
                for &id in &recovery.fail {
                    s.set_generation_state(id, GenerationState::Failed, Some(why), &t)?;
                }
                if let Some(id) = recovery.mark_active {
                    s.set_generation_state(id, GenerationState::Active, None, &t)?;
                }
                Ok(recovery)
            })
            .await;
        // Rows that cannot be read or written (reported by `db`) leave nothing to finish here:
        // the pass that follows still converges the host on the file from whatever `current`
        // names, a complete generation.
        if let Ok(Recovery {
            finish: Some(id),
            back_to,
            ..
        }) = decided
        {
            // `current` was flipped but the switch never verified: finish it now, or undo it
            // by switching back to the last active generation.
            self.finish_interrupted(id, back_to).await;
        }
    }

    /// What `/metrics` tells of each app's deploys and backups and of each service's health,
    /// as the operations log has it (operations interrupted by the restart are marked by now).
    async fn restore_metrics(&self) {
        // Enough recorded passes to have verified every unit of the current generation.
        const RECENT_PASSES: usize = 200;
        let found = self
            .state
            .call(|s| Ok((s.app_outcomes()?, s.unit_checks(RECENT_PASSES)?)))
            .await;
        let (outcomes, checks) = match found {
            Ok(f) => f,
            Err(e) => return tracing::error!("reading the operations log for /metrics: {e}"),
        };
        let cur = self.current().ok().flatten();
        self.metrics.restore(&outcomes, &checks, |u| {
            cur.as_ref()
                .is_some_and(|g| g.manifest.units.contains_key(u))
        });
        let def = DefinitionFile::new(&self.paths.definition)
            .read_text()
            .ok()
            .and_then(|t| parse(&t, &self.paths.definition).ok());
        if let Some(def) = def {
            let d = def.definition();
            self.metrics.keep_apps(
                |app| d.apps.contains_key(app),
                |app| d.backups.contains_key(app),
            );
        }
    }

    async fn finish_interrupted(&mut self, id: u64, prev: Option<u64>) {
        // The settings (settle time, apps) come from the definition when it loads; a broken
        // one does not stop the host from ending on a complete generation.
        let _ = self.load_definition();
        let started = Instant::now();
        let target = self.store.load(id).ok();
        let from = prev.and_then(|p| self.store.load(p).ok());
        // An unrecorded start still finishes the switch: the host must end on a complete
        // generation (the failed write is reported, and the operation fails when finished).
        let op_id = self.start_op("startup", Trigger::Startup, Some(id)).await;
        let bounced = match (target.as_ref(), from.as_ref()) {
            (Some(target), Some(from)) => self.finish_cut_off_restarts(from, target).await,
            _ => vec![],
        };
        let mut report = self
            .switch_to(target.as_ref(), from.as_ref(), self.settle)
            .await;
        report.steps.splice(0..0, bounced);
        self.conclude_switch(
            op_id,
            "startup",
            Trigger::Startup,
            id,
            prev,
            report,
            started,
            None,
        )
        .await;
    }

    /// The restarts (and reloads) a cut-off switch owed to units whose new file it had already
    /// written: the planner sees those files converged and would never restart them.
    async fn finish_cut_off_restarts(
        &self,
        from: &Generation,
        target: &Generation,
    ) -> Vec<StepRecord> {
        let m = self.machine();
        let on_disk = target
            .unit_texts
            .keys()
            .map(|unit| {
                let text = m
                    .files()
                    .read(&std::path::Path::new(crate::plan::UNIT_DIR).join(unit))
                    .ok()
                    .flatten()
                    .map(|b| String::from_utf8_lossy(&b).into_owned());
                (unit.clone(), text)
            })
            .collect();
        let owed = crate::plan::units::interrupted_changes(from, target, &on_disk);
        if owed.is_empty() {
            return vec![];
        }
        let mut steps = vec![];
        if let Err(e) = m.systemd().daemon_reload().await {
            steps.push(StepRecord::new(
                "daemon-reload",
                "",
                StepOutcome::Failed,
                e.to_string(),
                false,
            ));
            return steps;
        }
        for (unit, change) in owed {
            let active = m
                .systemd()
                .unit_state(&unit)
                .await
                .is_ok_and(|s| s.is_active());
            if !active {
                continue; // the switch starts it from the new file
            }
            let kind = match change {
                crate::plan::units::UnitChange::Reload => JobKind::Reload,
                _ => JobKind::Restart,
            };
            let why = "the switch was cut off after writing its unit file";
            let (outcome, detail) = match m.systemd().run_job(kind, &unit).await {
                Ok(()) => (StepOutcome::Ok, why.to_string()),
                Err(e) => (StepOutcome::Failed, format!("{why}: {e}")),
            };
            steps.push(StepRecord::new(kind.verb(), &unit, outcome, &detail, false));
        }
        steps
    }

    /// Give every generation directory on disk without a record in the state database one,
    /// read from the directory (generations built before records were kept there).
    async fn backfill_records(&self) {
        let Ok(missing) = self
            .db("reading which generations lack a record", |s| {
                s.without_record()
            })
            .await
        else {
            return;
        };
        let on_disk = self.store.list().unwrap_or_default();
        for id in missing.into_iter().filter(|id| on_disk.contains(id)) {
            let result = match self.store.read_record(id) {
                Ok(record) => self
                    .state
                    .call(move |s| s.put_record(id, &record))
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = result {
                tracing::error!("keeping the record of generation {id}: {e}");
            }
        }
    }
}
