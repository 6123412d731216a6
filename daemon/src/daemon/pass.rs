//! daemon/pass — one pass: load → build → switch (through `apply`) → record.
//!
//! Owns: the [`Daemon`] value (its handles and what it remembers between passes), loading the
//! definition, and the pass itself: which course it takes ([`decide::course`]), a definition
//! that cannot be applied, and repairing drift. Must not: touch the host other than through
//! `apply`'s switch, nor decide a rule `decide` owns. Building a new generation is `build`;
//! recording what a switch did (and [`decide::after_failed_switch`] for a failure)
//! `conclude`; rollback, retention and records `generations`; hold and confirm-or-revert
//! `control`; the start `startup`; `strackt plan` `preview`; writes to the log `record`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::control::{Hold, PendingConfirm};
use super::decide::{self, Course};
use super::error::{LoadError, StoreError};
use super::record::fail;
use super::{Paths, Status, Trigger};
use crate::apply::switch::{switch, SwitchReport};
use crate::apply::{Apps, Ownership};
use crate::definition::{parse, ValidatedDefinition};
use crate::generation::{Generation, Store};
use crate::host::clock::Clock;
use crate::host::definition::DefinitionFile;
use crate::host::files::sha256_hex;
use crate::host::{Machine, RealMachine};
use crate::metrics::Metrics;
use crate::ops::{Operation, Outcome};
use crate::state::StateHandle;
use crate::timing;

/// Meta key: a definition (by SHA-256) not to re-apply on its own — it failed, or the user
/// rolled back away from it. Editing the file (a new hash) or `strackt apply` clears it.
pub(super) const PINNED: &str = "pinned_definition_sha256";

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
        machine: RealMachine,
        status: tokio::sync::watch::Sender<Status>,
        metrics: Arc<Metrics>,
    ) -> Daemon {
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

    pub(super) fn load_definition(&mut self) -> Result<ValidatedDefinition, LoadError> {
        let text = DefinitionFile::new(&self.paths.definition)
            .read_text()
            .map_err(|source| LoadError::Unreadable {
                path: self.paths.definition.clone(),
                source,
            })?;
        let def = match self.parsed.take() {
            Some(last) if last.source() == text => last,
            _ => parse(&text, &self.paths.definition)?,
        };
        self.parsed = Some(def.clone());
        self.interval = def.interval();
        self.settle = def.settle();
        self.keep = def.definition().strackt.keep_generations as usize;
        self.updates_policy = def.definition().strackt.updates.clone();
        self.apps = Apps::of(def.definition());
        Ok(def)
    }

    pub(super) fn current(&self) -> Result<Option<Generation>, StoreError> {
        match self.store.current().map_err(StoreError::Store)? {
            Some(id) => self
                .store
                .load(id)
                .map(Some)
                .map_err(|source| StoreError::Generation { id, source }),
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
        let started_at = self.now();
        // An ended hold is cleared: this pass puts back what was changed during it.
        self.end_hold_if_over().await;
        let def = match timing::time("load.definition", || self.load_definition()) {
            Ok(d) => d,
            Err(problem) => {
                return self
                    .definition_failed(trigger, started, &started_at, problem.to_string())
                    .await
            }
        };
        self.status.send_modify(|s| s.definition_problem = None);
        let unreadable = |e: String| {
            let mut op = self.op(None, "apply", trigger, None, started, &started_at);
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
            Err(e) => return self.finish_op(unreadable(e.to_string()), false).await,
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

    pub(super) async fn definition_failed(
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
        let mut op = self.op(None, "apply", trigger, None, started, started_at);
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
            let op = self.op(None, "drift", trigger, None, started, started_at);
            return self.finish_op(op, false).await;
        };
        let id = cur.manifest.id;
        let report = self.switch_to(Some(&cur), Some(&cur), self.settle).await;
        let changed = report
            .steps
            .iter()
            .any(|s| s.action != "verify" && s.action != "health");
        let mut op = self.op(None, "drift", trigger, Some(id), started, started_at);
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
}
