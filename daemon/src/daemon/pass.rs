//! daemon/pass — one pass: load → build → switch (through `apply`) → record.
//!
//! Owns: the [`Daemon`] value (its handles and what it remembers between passes), loading the
//! definition, and the pass itself: which course it takes ([`decide::course`]), building a new
//! generation, repairing drift, and recording what a switch did ([`decide::after_failed_switch`]
//! for a failure). Must not: touch the host other than through `apply`'s switch, nor decide a
//! rule `decide` owns. Rollback, retention and records are `generations`; hold and
//! confirm-or-revert `control`; the start `startup`; `strackt plan` `preview`; writes to the
//! log `record`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::control::{Hold, PendingConfirm};
use super::decide::{self, Course};
use super::record::fail;
use super::{Paths, Status, Trigger};
use crate::apply::switch::{switch, SwitchReport};
use crate::apply::{Apps, Ownership};
use crate::definition::{parse, ValidatedDefinition};
use crate::generation::{render, Generation, Store};
use crate::host::clock::Clock;
use crate::host::files::sha256_hex;
use crate::host::systemd::DbusSystemd;
use crate::host::{Machine, RealMachine};
use crate::metrics::Metrics;
use crate::ops::{Operation, Outcome};
use crate::state::{GenerationRow, GenerationState, StateHandle};
use crate::timing;

/// Meta key: a definition (by SHA-256) not to re-apply on its own — it failed, or the user
/// rolled back away from it. Editing the file (a new hash) or `strackt apply` clears it.
pub(super) const PINNED: &str = "pinned_definition_sha256";

/// Now, as the log writes times.
pub(super) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The daemon's state and host handles, on the machine `M`: the real one in the daemon
/// (`run`), the in-memory fake in the component tests.
#[derive(Debug)]
pub struct Daemon<M: Machine = RealMachine> {
    pub(super) paths: Paths,
    pub(super) store: Store,
    pub(super) state: StateHandle,
    /// Shared with the blocking threads apt's slow work (refresh, candidates) runs on.
    pub(super) machine: Arc<M>,
    pub(super) status: tokio::sync::watch::Sender<Status>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) interval: Duration,
    pub(super) settle: Duration,
    pub(super) keep: usize,
    /// The definition's apps, as the last loaded definition has them (see `apply::apps`).
    pub(super) apps: Apps,
    pub(super) hold: Option<Hold>,
    pub(super) pending: Option<PendingConfirm>,
    /// The last switch, when the watcher made it from a save: `(generation, previous, when)`.
    pub(super) saved_switch: Option<(u64, u64, tokio::time::Instant)>,
    /// `strackt.updates` of the definition last loaded.
    pub(super) updates_policy: crate::definition::UpdatesPolicy,
    /// The scheduled update check has handled every slot up to this time.
    pub(super) updates_slot: Option<chrono::DateTime<chrono::Utc>>,
    /// The next pass builds a new generation even when the definition's text is the one
    /// running (an upgrade of packages written `latest`).
    pub(super) force_rebuild: bool,
    /// The definition last parsed. Parsing is a pure function of the text, so a file whose
    /// text is unchanged is not parsed and validated again (most of a no-op pass's load time).
    parsed: Option<ValidatedDefinition>,
}

impl Daemon {
    /// Assemble the daemon of the real machine from its parts.
    pub fn new(
        paths: Paths,
        store: Store,
        state: StateHandle,
        systemd: DbusSystemd,
        status: tokio::sync::watch::Sender<Status>,
        metrics: Arc<Metrics>,
    ) -> Daemon {
        let machine = RealMachine::new(systemd, &paths.cache.join("debs"));
        Daemon::on(Arc::new(machine), paths, store, state, status, metrics)
    }
}

impl<M: Machine> Daemon<M> {
    /// Assemble a daemon on `machine` from its parts.
    pub(super) fn on(
        machine: Arc<M>,
        paths: Paths,
        store: Store,
        state: StateHandle,
        status: tokio::sync::watch::Sender<Status>,
        metrics: Arc<Metrics>,
    ) -> Daemon<M> {
        Daemon {
            paths,
            store,
            state,
            machine,
            status,
            metrics,
            interval: Duration::from_secs(300),
            settle: Duration::from_secs(1),
            keep: 10,
            apps: Apps::default(),
            hold: None,
            pending: None,
            saved_switch: None,
            updates_policy: crate::definition::UpdatesPolicy::default(),
            updates_slot: None,
            force_rebuild: false,
            parsed: None,
        }
    }

    /// Switch through the ownership record; an unreadable record fails the switch before any
    /// change (guessing "owns nothing" would leak files it wrote).
    pub(super) async fn switch_to(
        &self,
        target: Option<&Generation>,
        from: Option<&Generation>,
        settle: Duration,
    ) -> SwitchReport {
        match timing::time("load.ownership", || {
            Ownership::load(Some(self.store.root()))
        }) {
            Ok(mut owned) => {
                switch(
                    self.machine(),
                    &self.store,
                    &mut owned,
                    target,
                    from,
                    settle,
                    !self.held(),
                    &self.apps,
                )
                .await
            }
            Err(e) => SwitchReport {
                failure: Some(format!("reading what strackt owns: {e}")),
                ..SwitchReport::default()
            },
        }
    }

    pub(super) fn machine(&self) -> &M {
        &self.machine
    }

    /// Publish when the timer fires next.
    pub fn set_next_pass(&self, after: Duration) {
        let at = self.machine.clock().now() + chrono::Duration::from_std(after).unwrap_or_default();
        self.status.send_modify(|s| {
            s.next_pass = Some(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        });
    }

    pub(super) fn load_definition(&mut self) -> Result<ValidatedDefinition, String> {
        let text = std::fs::read_to_string(&self.paths.definition)
            .map_err(|e| format!("{}: {e}", self.paths.definition.display()))?;
        let def = match self.parsed.take() {
            Some(last) if last.source() == text => last,
            _ => parse(&text, &self.paths.definition).map_err(|e| e.to_string())?,
        };
        self.parsed = Some(def.clone());
        self.interval = def.interval();
        self.settle = def.settle();
        self.keep = def.definition().strackt.keep_generations as usize;
        self.updates_policy = def.definition().strackt.updates.clone();
        self.apps = Apps::of(def.definition());
        Ok(def)
    }

    pub(super) fn current(&self) -> Result<Option<Generation>, String> {
        match self.store.current().map_err(|e| e.to_string())? {
            Some(id) => self
                .store
                .load(id)
                .map(Some)
                .map_err(|e| format!("generation {id}: {e}")),
            None => Ok(None),
        }
    }

    /// Run one pass. `retry` re-applies a definition that failed or was rolled back from.
    pub async fn pass(&mut self, trigger: Trigger, retry: bool) -> Operation {
        let before = self.store.current().ok().flatten();
        let (op, phases) = timing::measure(self.pass_inner(trigger, retry)).await;
        self.status
            .send_modify(move |s| s.last_pass_phases_us = phases);
        let after = self.store.current().ok().flatten();
        if before != after {
            self.saved_switch = match (trigger, before, after) {
                (Trigger::FileChange, Some(previous), Some(generation)) => {
                    Some((generation, previous, self.machine.clock().instant()))
                }
                _ => None,
            };
            // The pins moved: what is pending is told anew.
            self.reassess_updates().await;
        }
        op
    }

    async fn pass_inner(&mut self, trigger: Trigger, retry: bool) -> Operation {
        if let Some(op) = self.revert_if_unconfirmed().await {
            return op;
        }
        let started = Instant::now();
        let started_at = now();
        // An ended hold is cleared: this pass puts back what was changed during it.
        self.end_hold_if_over().await;
        let def = match timing::time("load.definition", || self.load_definition()) {
            Ok(d) => d,
            Err(problem) => {
                return self
                    .definition_failed(trigger, started, &started_at, problem)
                    .await
            }
        };
        self.status.send_modify(|s| s.definition_problem = None);
        let unreadable = |e: String| {
            let mut op = Self::op(None, "apply", trigger, None, started, &started_at);
            fail(&mut op, e);
            op
        };
        let current = match timing::time("load.generation", || self.current()) {
            Ok(c) => c,
            Err(e) => {
                let op = unreadable(format!("reading the current generation: {e}"));
                return self.finish_op(op, false).await;
            }
        };
        let sha = sha256_hex(def.source().as_bytes());
        // Without the pin, a definition that failed would be retried on every pass: an
        // unreadable one fails the pass, the host untouched.
        let pinned = self.db("reading the pinned definition", |s| s.meta(PINNED));
        let pinned = match timing::time_async("state", pinned).await {
            Ok(p) => p,
            Err(e) => return self.finish_op(unreadable(e), false).await,
        };
        if retry {
            // A pin left by a failed write is cleared by the switch's own record, or the
            // pass after it: `retry` takes the new-generation course either way.
            let unpin = self.db("unpinning the definition", |s| s.set_meta(PINNED, None));
            let _reported = timing::time_async("state", unpin).await;
        }
        let current_sha = current
            .as_ref()
            .map(|c| c.manifest.definition_sha256.as_str());
        match decide::course(
            &sha,
            current_sha,
            pinned.as_deref(),
            retry,
            self.force_rebuild,
        ) {
            Course::Drift => {
                self.drift_pass(trigger, current, started, &started_at)
                    .await
            }
            Course::Pinned => {
                self.status.send_modify(|s| s.definition_problem = Some("the definition on disk failed or was rolled back from; edit it or run `strackt apply` to try it again".into()));
                self.drift_pass(trigger, current, started, &started_at)
                    .await
            }
            Course::NewGeneration => {
                self.new_generation(trigger, &def, current, started, &started_at)
                    .await
            }
        }
    }

    async fn definition_failed(
        &mut self,
        trigger: Trigger,
        started: Instant,
        started_at: &str,
        problem: String,
    ) -> Operation {
        // A broken definition is reported once per distinct text, not on every timer tick (an
        // unreadable memory of it reports it again: too often rather than never).
        let key = sha256_hex(problem.as_bytes());
        let seen = self
            .db("reading the last definition problem", |s| {
                s.meta("last_definition_problem")
            })
            .await
            .ok()
            .flatten();
        let record = trigger != Trigger::Timer || seen.as_deref() != Some(key.as_str());
        let remember = self.db("recording the last definition problem", move |s| {
            s.set_meta("last_definition_problem", Some(&key))
        });
        let _reported = remember.await;
        let id = match record {
            true => Some(self.start_op("apply", trigger, None).await),
            false => None,
        };
        let mut op = Self::op(None, "apply", trigger, None, started, started_at);
        fail(&mut op, problem.clone());
        op.summary = "definition not applied; host unchanged".into();
        if let Some(id) = id {
            self.numbered(&mut op, id);
        }
        self.status
            .send_modify(|s| s.definition_problem = Some(problem));
        self.finish_op(op, record).await
    }

    async fn drift_pass(
        &mut self,
        trigger: Trigger,
        current: Option<Generation>,
        started: Instant,
        started_at: &str,
    ) -> Operation {
        let Some(cur) = current else {
            let op = Self::op(None, "drift", trigger, None, started, started_at);
            return self.finish_op(op, false).await;
        };
        let id = cur.manifest.id;
        let report = self.switch_to(Some(&cur), Some(&cur), self.settle).await;
        let changed = report
            .steps
            .iter()
            .any(|s| s.action != "verify" && s.action != "health");
        let mut op = Self::op(None, "drift", trigger, Some(id), started, started_at);
        op.steps = report.steps;
        if !op.steps.is_empty() {
            self.metrics
                .services_checked(&op.steps, |u| cur.manifest.units.contains_key(u));
        }
        op.summary = decide::drift_summary(
            &report.drift,
            self.hold.as_ref(),
            self.machine.clock().now(),
        );
        if let Some(f) = report.failure {
            fail(&mut op, f);
            self.status.send_modify(|s| s.health = "failed".into());
        } else if changed {
            self.status.send_modify(|s| s.health = "ok".into());
        }
        self.status.send_modify(|s| {
            s.current_generation = Some(id);
            if report.digest.is_some() {
                s.digest = report.digest.clone();
            }
            s.drift = report.drift.clone();
        });
        let record = decide::record_drift(changed, op.outcome == Outcome::Success, trigger);
        if record {
            // The drift was repaired already: an operation that cannot be logged fails.
            let id = self.start_op("drift", trigger, Some(id)).await;
            self.numbered(&mut op, id);
        }
        self.finish_op(op, record).await
    }

    /// Build a new generation from `def` and switch to it. Nothing on the host changes
    /// until the generation's row, operation and record are written: a switch the state
    /// database cannot describe could be neither recovered after a crash nor shown.
    async fn new_generation(
        &mut self,
        trigger: Trigger,
        def: &ValidatedDefinition,
        current: Option<Generation>,
        started: Instant,
        started_at: &str,
    ) -> Operation {
        let failed = |generation: Option<u64>, why: String| {
            let mut op = Self::op(None, "apply", trigger, generation, started, started_at);
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
            Err(e) => return self.finish_op(failed(None, e), false).await,
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
            created: now(),
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
            return self.finish_op(failed(Some(id), e), false).await;
        }
        let op_id = match self.start_op("apply", trigger, Some(id)).await {
            Ok(op_id) => op_id,
            Err(e) => {
                return self
                    .build_failed(None, trigger, id, started, started_at, e)
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
                .build_failed(Some(op_id), trigger, id, started, started_at, e)
                .await;
        }
        // Unrecorded, the row still says "building", which the startup recovery treats as
        // "switching": the switch goes on (the failure is reported).
        let t = now();
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
        let mut op = Self::op(op_id, "apply", trigger, Some(id), started, started_at);
        op.summary = "build failed; host unchanged".into();
        fail(&mut op, reason.clone());
        let t = now();
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

    /// Record the result of switching to `id` from `from` (as [`decide::after_failed_switch`]
    /// rules for a failure), update generation states, collect garbage. The host has changed
    /// by now, so a record that cannot be written fails the operation, visibly, and nothing
    /// is undone: the host is on a complete generation either way.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn conclude_switch(
        &mut self,
        op_id: Result<i64, String>,
        kind: &str,
        trigger: Trigger,
        id: u64,
        from: Option<u64>,
        report: SwitchReport,
        started: Instant,
        sha: Option<String>,
    ) -> Operation {
        let started_at = now();
        let mut op = Self::op(None, kind, trigger, Some(id), started, &started_at);
        op.summary = decide::summarize(&report.steps);
        let digest = report.digest.clone();
        op.steps = report.steps;
        let t = now();
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
    ) -> Result<(), String> {
        if after.state == GenerationState::RolledBack {
            self.metrics.rolled_back();
        }
        op.outcome = after.outcome;
        op.reason = Some(after.reason.clone());
        op.summary = after.summary;
        let t = now();
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
