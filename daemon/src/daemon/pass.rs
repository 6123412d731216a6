//! One pass: load → build → observe → plan → switch → verify → record; and rollback.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{Paths, Status, Trigger};
use crate::apply::apps::predicted_restarts;
use crate::apply::switch::{switch, SwitchReport};
use crate::apply::{observe, Apps, Ownership};
use crate::definition::{parse, ValidatedDefinition};
use crate::generation::diff::{diff, stored, GenerationDiff, Sides};
use crate::generation::{render, retention, Generation, Store};
use crate::host::files::sha256_hex;
use crate::host::firewall::Firewall;
use crate::host::packages::Packages;
use crate::host::systemd::DbusSystemd;
use crate::host::{Files, JobKind, Machine, RealMachine, Systemd};
use crate::metrics::Metrics;
use crate::ops::{Operation, StepRecord};
use crate::plan::{lockout, plan, Plan};
use crate::state::{GenerationRecord, GenerationRow, StateHandle};
use crate::timing;

/// Meta key: a definition (by SHA-256) not to re-apply on its own — it failed, or the user
/// rolled back away from it. Editing the file (a new hash) or `strackt apply` clears it.
const PINNED: &str = "pinned_definition_sha256";

/// The longest `strackt hold --for`: a forgotten hold must still end, and drift repair with it.
pub const MAX_HOLD_SECS: u64 = 30 * 24 * 3600;
/// The longest `strackt apply --confirm-within`: the revert is a safety net, not a schedule.
pub const MAX_CONFIRM_SECS: u64 = 24 * 3600;
/// How recent a switch the watcher made from a save may be for `apply --confirm-within` to
/// take it as the change to confirm (the user saved, then ran the command).
const JUST_SAVED: Duration = Duration::from_secs(60);

/// The instant `seconds` from now, refused when it is 0 or above `max` (which also keeps the
/// chrono arithmetic far from overflow: a request from the control socket is not trusted to be
/// sane).
pub fn deadline_in(
    seconds: u64,
    max: u64,
    what: &str,
) -> Result<chrono::DateTime<chrono::Utc>, String> {
    let too_long = || {
        format!(
            "{what} must be between 1s and {}",
            humantime::format_duration(Duration::from_secs(max))
        )
    };
    if seconds == 0 || seconds > max {
        return Err(too_long());
    }
    i64::try_from(seconds)
        .ok()
        .and_then(chrono::Duration::try_seconds)
        .and_then(|d| chrono::Utc::now().checked_add_signed(d))
        .ok_or_else(too_long)
}

/// What `strackt plan` shows.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PlanView {
    /// The generation the plan leads to: "current" (drift only) or "new".
    pub target: String,
    /// The steps.
    pub steps: Vec<StepRecord>,
    /// The plan as text.
    pub text: String,
    /// Hand-installed packages kept because apps or strackt need them: name → why.
    #[serde(default)]
    pub kept: std::collections::BTreeMap<String, String>,
    /// What differs between the running generation and the one the plan builds (empty when
    /// the plan stays on the current generation).
    #[serde(default)]
    pub changes: GenerationDiff,
}

/// The daemon's state and host handles.
#[derive(Debug)]
pub struct Daemon {
    pub(super) paths: Paths,
    store: Store,
    pub(super) state: StateHandle,
    pub(super) machine: RealMachine,
    pub(super) status: tokio::sync::watch::Sender<Status>,
    pub(super) metrics: Arc<Metrics>,
    interval: Duration,
    settle: Duration,
    keep: usize,
    /// The definition's apps, as the last loaded definition has them (see `apply::apps`).
    apps: Apps,
    hold: Option<Hold>,
    pending: Option<PendingConfirm>,
    /// The last switch, when the watcher made it from a save: `(generation, previous, when)`.
    saved_switch: Option<(u64, u64, Instant)>,
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

/// Experiment mode: drift repair paused until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Hold {
    /// When drift repair resumes (RFC 3339).
    pub until: String,
    /// Why, as the operator said.
    pub reason: Option<String>,
}

/// A switch made by `apply --confirm-within`: reverted to `previous` at `deadline` unless
/// confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PendingConfirm {
    /// The generation that must be confirmed.
    pub generation: u64,
    /// Where to go back to.
    pub previous: u64,
    /// When (RFC 3339).
    pub deadline: String,
}

/// What `strackt hold` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum HoldChange {
    /// Pause drift repair for this long.
    For {
        /// Seconds.
        seconds: u64,
        /// Why.
        reason: Option<String>,
    },
    /// End the hold now (the pass that follows restores everything).
    Release,
}

fn parse_time(t: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|d| d.with_timezone(&chrono::Utc))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One line describing what changed.
fn summarize(steps: &[StepRecord]) -> String {
    let changed: Vec<String> = steps
        .iter()
        .filter(|s| {
            s.outcome == "ok"
                && !matches!(
                    s.action.as_str(),
                    "verify" | "health" | "flip" | "daemon-reload"
                )
        })
        .map(|s| format!("{} {}", s.action, s.target))
        .collect();
    match changed.len() {
        0 => "no changes".into(),
        n if n <= 4 => changed.join(", "),
        n => format!("{}, … ({n} steps)", changed[..3].join(", ")),
    }
}

impl Daemon {
    /// Assemble a daemon from its parts.
    pub fn new(
        paths: Paths,
        store: Store,
        state: StateHandle,
        systemd: DbusSystemd,
        status: tokio::sync::watch::Sender<Status>,
        metrics: Arc<Metrics>,
    ) -> Daemon {
        let debs = paths.cache.join("debs");
        Daemon {
            paths,
            store,
            state,
            machine: RealMachine::new(systemd, &debs),
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

    /// Whether drift repair is paused right now.
    fn held(&self) -> bool {
        self.hold
            .as_ref()
            .and_then(|h| parse_time(&h.until))
            .is_some_and(|until| until > chrono::Utc::now())
    }

    /// Time until the next pass: the reconcile interval, or sooner when a hold ends, so what was
    /// changed during the experiment is put back as soon as it is over.
    pub fn next_wait(&self) -> Duration {
        let hold_left = self
            .hold
            .as_ref()
            .and_then(|h| parse_time(&h.until))
            .and_then(|until| (until - chrono::Utc::now()).to_std().ok());
        let confirm_left = self
            .pending
            .as_ref()
            .and_then(|p| parse_time(&p.deadline))
            .map(|d| (d - chrono::Utc::now()).to_std().unwrap_or_default());
        [hold_left, confirm_left]
            .into_iter()
            .flatten()
            .map(|left| left + Duration::from_millis(50))
            .fold(self.interval, Duration::min)
    }

    async fn save_pending(&mut self, pending: Option<PendingConfirm>) -> Result<(), String> {
        let stored = pending
            .as_ref()
            .map(|p| serde_json::to_string(p).unwrap_or_default());
        self.state
            .call(move |s| s.set_meta("pending_confirm", stored.as_deref()))
            .await
            .map_err(|e| e.to_string())?;
        self.status
            .send_modify(|s| s.pending_confirm = pending.clone());
        self.pending = pending;
        Ok(())
    }

    /// `strackt apply [--confirm-within]`: a pass now; with a deadline, a switch to a new
    /// generation must be confirmed in time or it is reverted by the same path as a rollback.
    pub async fn apply(&mut self, confirm_within: Option<u64>) -> Operation {
        if let Some(Err(e)) =
            confirm_within.map(|s| deadline_in(s, MAX_CONFIRM_SECS, "--confirm-within"))
        {
            let mut op = Self::op(
                None,
                "apply",
                super::Trigger::Cli,
                None,
                Instant::now(),
                &now(),
            );
            op.outcome = "failed".into();
            op.reason = Some(e);
            return op;
        }
        let mut before = self.store.current().ok().flatten();
        // The watcher applies a save 150 ms after it: a user who saved and then ran
        // `apply --confirm-within` finds the change already live. That switch is the one they
        // mean to confirm, so it gets the deadline, reverting to what ran before the save.
        if let Some((generation, previous, at)) = self.saved_switch {
            if before == Some(generation) && at.elapsed() < JUST_SAVED && confirm_within.is_some() {
                before = Some(previous);
            }
        }
        let mut op = self.pass(super::Trigger::Cli, true).await;
        let after = self.store.current().ok().flatten();
        if let (Some(secs), "success", Some(previous), Some(generation)) =
            (confirm_within, op.outcome.as_str(), before, after)
        {
            if previous != generation {
                // Checked above; the pass took a moment, so compute it again from now.
                let deadline = deadline_in(secs, MAX_CONFIRM_SECS, "--confirm-within")
                    .unwrap_or_else(|_| chrono::Utc::now())
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                op.summary = format!("{}; run `strackt confirm` before {deadline} or it is reverted to generation {previous}", op.summary);
                if let Err(e) = self
                    .save_pending(Some(PendingConfirm {
                        generation,
                        previous,
                        deadline,
                    }))
                    .await
                {
                    op.outcome = "failed".into();
                    op.reason = Some(format!("could not arm the confirmation deadline: {e}"));
                }
            }
        }
        op
    }

    /// `strackt confirm`.
    ///
    /// # Errors
    /// When nothing waits for confirmation.
    pub async fn confirm(&mut self) -> Result<serde_json::Value, String> {
        let pending = self
            .pending
            .clone()
            .ok_or("nothing is waiting for confirmation")?;
        self.save_pending(None).await?;
        tracing::info!("generation {} confirmed", pending.generation);
        Ok(serde_json::json!({ "confirmed": pending.generation }))
    }

    /// Revert an unconfirmed switch whose deadline passed; `None` when there is none.
    async fn revert_if_unconfirmed(&mut self) -> Option<Operation> {
        let pending = self.pending.clone()?;
        if parse_time(&pending.deadline).is_some_and(|d| d > chrono::Utc::now()) {
            return None;
        }
        let _ = self.save_pending(None).await;
        if self.store.current().ok().flatten() != Some(pending.generation) {
            return None; // the host already moved on (a rollback or another change)
        }
        let mut op = match self.rollback(Some(pending.previous)).await {
            Ok(op) => op,
            Err(e) => {
                tracing::error!(
                    "reverting unconfirmed generation {}: {e}",
                    pending.generation
                );
                return None;
            }
        };
        op.summary = format!(
            "generation {} not confirmed by {}: {}",
            pending.generation, pending.deadline, op.summary
        );
        let saved = op.clone();
        let _ = self.state.call(move |s| s.finish_operation(&saved)).await;
        Some(op)
    }

    async fn save_hold(&mut self, hold: Option<Hold>) -> Result<(), String> {
        let stored = hold
            .as_ref()
            .map(|h| serde_json::to_string(h).unwrap_or_default());
        self.state
            .call(move |s| s.set_meta("hold", stored.as_deref()))
            .await
            .map_err(|e| e.to_string())?;
        self.status.send_modify(|s| s.hold = hold.clone());
        self.hold = hold;
        Ok(())
    }

    /// Start or end experiment mode. Ending it runs a pass at once and returns it.
    ///
    /// # Errors
    /// When the state cannot be saved.
    pub async fn set_hold(&mut self, change: HoldChange) -> Result<serde_json::Value, String> {
        match change {
            HoldChange::For { seconds, reason } => {
                let until = deadline_in(seconds, MAX_HOLD_SECS, "--for")?;
                let hold = Hold {
                    until: until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    reason,
                };
                self.save_hold(Some(hold.clone())).await?;
                tracing::info!("hold: drift repair paused until {}", hold.until);
                serde_json::to_value(hold).map_err(|e| e.to_string())
            }
            HoldChange::Release => {
                self.save_hold(None).await?;
                let op = self.pass(super::Trigger::Cli, false).await;
                serde_json::to_value(op).map_err(|e| e.to_string())
            }
        }
    }

    /// Switch through the ownership record; an unreadable record fails the switch before any
    /// change (guessing "owns nothing" would leak files it wrote).
    async fn switch_to(
        &self,
        target: Option<&Generation>,
        from: Option<&Generation>,
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
                    self.settle,
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

    fn machine(&self) -> &RealMachine {
        &self.machine
    }

    /// Publish when the timer fires next.
    pub fn set_next_pass(&self, after: Duration) {
        let at = chrono::Utc::now() + chrono::Duration::from_std(after).unwrap_or_default();
        self.status.send_modify(|s| {
            s.next_pass = Some(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        });
    }

    fn load_definition(&mut self) -> Result<ValidatedDefinition, String> {
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
        if let Ok(Some(text)) = self.state.call(|s| s.meta("pending_confirm")).await {
            self.pending = serde_json::from_str(&text).ok();
            let pending = self.pending.clone();
            self.status.send_modify(|s| s.pending_confirm = pending);
        }
        self.restore_updates().await;
        if let Ok(Some(text)) = self.state.call(|s| s.meta("hold")).await {
            self.hold = serde_json::from_str(&text).ok();
            let hold = self.hold.clone();
            self.status.send_modify(|s| s.hold = hold);
        }
        let cur = self.store.current().ok().flatten();
        let t = now();
        let unfinished = self
            .state
            .call(move |s| {
                s.interrupt_running(&t)?;
                let mut unfinished = None;
                for g in s.generations()? {
                    if g.state == "switching" || g.state == "building" {
                        if Some(g.id) == cur {
                            unfinished = Some(g.id);
                        } else {
                            s.set_generation_state(g.id, "failed", Some("interrupted before the switch completed; the host stayed on the previous generation"), &t)?;
                        }
                    }
                }
                Ok(unfinished)
            })
            .await;
        match unfinished {
            Ok(Some(id)) => {
                // `current` was flipped but the switch never verified: finish it now, or
                // undo it by switching back to the last active generation.
                let prev = self
                    .state
                    .call(|s| {
                        Ok(s.generations()?
                            .into_iter()
                            .find(|g| g.state == "active")
                            .map(|g| g.id))
                    })
                    .await
                    .ok()
                    .flatten();
                self.finish_interrupted(id, prev).await;
            }
            _ => {
                if let Some(id) = cur {
                    let t = now();
                    let _ = self
                        .state
                        .call(move |s| {
                            if s.generations()?
                                .iter()
                                .any(|g| g.id == id && g.state != "active")
                            {
                                s.set_generation_state(id, "active", None, &t)?;
                            }
                            Ok(())
                        })
                        .await;
                }
            }
        }
        self.restore_metrics().await;
        // Whatever the interrupted switch left, the host converges on the definition file as it
        // is *now*: it may have been saved while the daemon was down, before the watcher ran.
        self.pass(Trigger::Startup, false).await;
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
        let def = std::fs::read_to_string(&self.paths.definition)
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
        let _ = self.load_definition();
        let started = Instant::now();
        let target = self.store.load(id).ok();
        let from = prev.and_then(|p| self.store.load(p).ok());
        let op_id = self.start_op("startup", Trigger::Startup, Some(id)).await;
        let bounced = match (target.as_ref(), from.as_ref()) {
            (Some(target), Some(from)) => self.finish_cut_off_restarts(from, target).await,
            _ => vec![],
        };
        let mut report = self.switch_to(target.as_ref(), from.as_ref()).await;
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
                "failed",
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
                Ok(()) => ("ok", why.to_string()),
                Err(e) => ("failed", format!("{why}: {e}")),
            };
            steps.push(StepRecord::new(kind.verb(), &unit, outcome, &detail, false));
        }
        steps
    }

    pub(super) async fn start_op(
        &self,
        kind: &'static str,
        trigger: Trigger,
        generation: Option<u64>,
    ) -> Option<i64> {
        let t = now();
        let started = self
            .state
            .call(move |s| s.start_operation(kind, trigger.as_str(), generation, &t));
        timing::time_async("record", started).await.ok()
    }

    async fn finish_op(&self, op: Operation, record: bool) -> Operation {
        self.metrics.pass_finished(&op);
        if record && op.id > 0 {
            let saved = op.clone();
            let finished = self.state.call(move |s| s.finish_operation(&saved));
            if let Err(e) = timing::time_async("record", finished).await {
                tracing::error!("recording operation {}: {e}", op.id);
            }
        }
        op.journal(None);
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&format!(
            "last pass: {} ({})",
            op.outcome, op.summary
        ))]);
        self.status.send_modify(|s| s.last_pass = Some(op.clone()));
        op
    }

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
                    Some((generation, previous, Instant::now()))
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
        if self.hold.is_some() && !self.held() {
            // The hold is over: this pass puts back what was changed during it.
            if let Err(e) = self.save_hold(None).await {
                tracing::error!("ending the hold: {e}");
            }
        }
        let def = match timing::time("load.definition", || self.load_definition()) {
            Ok(d) => d,
            Err(problem) => {
                return self
                    .definition_failed(trigger, started, &started_at, problem)
                    .await
            }
        };
        self.status.send_modify(|s| s.definition_problem = None);
        let current = match timing::time("load.generation", || self.current()) {
            Ok(c) => c,
            Err(e) => {
                let mut op = Self::op(None, "apply", trigger, None, started, &started_at);
                op.outcome = "failed".into();
                op.reason = Some(format!("reading the current generation: {e}"));
                return self.finish_op(op, false).await;
            }
        };
        let sha = sha256_hex(def.source().as_bytes());
        let pinned = timing::time_async("state", self.state.call(|s| s.meta(PINNED)))
            .await
            .ok()
            .flatten();
        if retry {
            let unpin = self.state.call(|s| s.set_meta(PINNED, None));
            let _ = timing::time_async("state", unpin).await;
        }
        let same = !self.force_rebuild
            && current
                .as_ref()
                .is_some_and(|c| c.manifest.definition_sha256 == sha);
        if same || (!retry && pinned.as_deref() == Some(sha.as_str())) {
            if !same {
                self.status.send_modify(|s| s.definition_problem = Some("the definition on disk failed or was rolled back from; edit it or run `strackt apply` to try it again".into()));
            }
            return self
                .drift_pass(trigger, current, started, &started_at)
                .await;
        }
        self.new_generation(trigger, &def, current, started, &started_at)
            .await
    }

    async fn definition_failed(
        &mut self,
        trigger: Trigger,
        started: Instant,
        started_at: &str,
        problem: String,
    ) -> Operation {
        // A broken definition is reported once per distinct text, not on every timer tick.
        let key = sha256_hex(problem.as_bytes());
        let seen = self
            .state
            .call(|s| s.meta("last_definition_problem"))
            .await
            .ok()
            .flatten();
        let record = trigger != Trigger::Timer || seen.as_deref() != Some(key.as_str());
        let k = key.clone();
        let _ = self
            .state
            .call(move |s| s.set_meta("last_definition_problem", Some(&k)))
            .await;
        let id = if record {
            self.start_op("apply", trigger, None).await
        } else {
            None
        };
        let mut op = Self::op(id, "apply", trigger, None, started, started_at);
        op.outcome = "failed".into();
        op.summary = "definition not applied; host unchanged".into();
        op.reason = Some(problem.clone());
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
        let report = self.switch_to(Some(&cur), Some(&cur)).await;
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
        op.summary = match (report.drift.is_empty(), &self.hold) {
            (true, _) => "no drift".into(),
            (false, Some(h)) if self.held() => {
                format!(
                    "on hold until {}: drift left in place: {}",
                    h.until,
                    report.drift.join("; ")
                )
            }
            (false, _) => format!("drift repaired: {}", report.drift.join("; ")),
        };
        if let Some(f) = report.failure {
            op.outcome = "failed".into();
            op.reason = Some(f);
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
        // Passes that found nothing are not worth a row in the log unless a user asked.
        let record = changed
            || op.outcome != "success"
            || matches!(trigger, Trigger::Cli | Trigger::Startup);
        if record {
            op.id = self.start_op("drift", trigger, Some(id)).await.unwrap_or(0);
        }
        self.finish_op(op, record).await
    }

    async fn new_generation(
        &mut self,
        trigger: Trigger,
        def: &ValidatedDefinition,
        current: Option<Generation>,
        started: Instant,
        started_at: &str,
    ) -> Operation {
        let on_disk = self
            .store
            .list()
            .ok()
            .and_then(|l| l.last().copied())
            .unwrap_or(0);
        let id = match self
            .state
            .call(move |s| s.next_generation_id(on_disk))
            .await
        {
            Ok(id) => id,
            Err(e) => {
                let mut op = Self::op(None, "apply", trigger, None, started, started_at);
                op.outcome = "failed".into();
                op.reason = Some(e.to_string());
                return self.finish_op(op, false).await;
            }
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
            let mut op = Self::op(None, "apply", trigger, None, started, started_at);
            op.id = self.start_op("apply", trigger, None).await.unwrap_or(0);
            op.outcome = "failed".into();
            op.summary = "build failed; host unchanged".into();
            op.reason = Some(format!("building the next generation: {e}"));
            return self.finish_op(op, true).await;
        }
        let row = GenerationRow {
            id,
            created: now(),
            state: "building".into(),
            trigger: trigger.as_str().into(),
            summary: String::new(),
            reason: None,
            definition_sha256: rendered.manifest.definition_sha256.clone(),
            pruned: false,
        };
        let r = row.clone();
        let _ = self.state.call(move |s| s.insert_generation(&r)).await;
        let op_id = self.start_op("apply", trigger, Some(id)).await;
        let from_id = current.as_ref().map(|c| c.manifest.id);
        let built = self
            .store
            .build(id, &rendered, &row.created)
            .and_then(|_| self.store.load(id));
        let target = match built {
            Ok(g) => g,
            Err(e) => {
                let reason = format!("building generation {id}: {e}");
                let r = reason.clone();
                let t = now();
                let _ = self
                    .state
                    .call(move |s| s.set_generation_state(id, "failed", Some(&r), &t))
                    .await;
                let mut op = Self::op(op_id, "apply", trigger, Some(id), started, started_at);
                op.outcome = "failed".into();
                op.reason = Some(reason);
                op.summary = "build failed; host unchanged".into();
                return self.finish_op(op, true).await;
            }
        };
        // The record is kept for good, before anything on the host changes.
        if let Err(e) = self
            .keep_record(id, &rendered.definition, &target.manifest)
            .await
        {
            tracing::error!("keeping the record of generation {id}: {e}");
        }
        let t = now();
        let _ = self
            .state
            .call(move |s| s.set_generation_state(id, "switching", None, &t))
            .await;
        let report = self.switch_to(Some(&target), current.as_ref()).await;
        let sha = rendered.manifest.definition_sha256.clone();
        self.conclude_switch(
            op_id,
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

    /// Record the result of switching to `id` from `from`, update generation states, collect
    /// garbage.
    #[allow(clippy::too_many_arguments)]
    async fn conclude_switch(
        &mut self,
        op_id: Option<i64>,
        kind: &str,
        trigger: Trigger,
        id: u64,
        from: Option<u64>,
        report: SwitchReport,
        started: Instant,
        sha: Option<String>,
    ) -> Operation {
        let started_at = now();
        let mut op = Self::op(op_id, kind, trigger, Some(id), started, &started_at);
        op.summary = summarize(&report.steps);
        let digest = report.digest.clone();
        op.steps = report.steps;
        let t = now();
        match (&report.failure, report.rolled_back) {
            (None, _) => {
                let summary = op.summary.clone();
                let _ = self
                    .state
                    .call(move |s| {
                        s.set_generation_state(id, "active", None, &t)?;
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
                    })
                    .await;
                self.status.send_modify(|s| s.health = "ok".into());
                self.collect_garbage(Some(id), from).await;
            }
            (Some(failure), rolled_back) => {
                if rolled_back {
                    self.metrics.rolled_back();
                }
                let mut reason = failure.clone();
                if let Some(back) = &report.rollback_failure {
                    reason = format!("{reason}; switching back also failed: {back}");
                }
                op.outcome = if rolled_back && report.rollback_failure.is_none() {
                    "rolled-back"
                } else {
                    "failed"
                }
                .into();
                op.reason = Some(reason.clone());
                op.summary = if rolled_back {
                    format!(
                        "rolled back to {}",
                        from.map_or("no generation".into(), |f| format!("generation {f}"))
                    )
                } else {
                    "switch failed before changing the host".into()
                };
                let state = if rolled_back { "rolled-back" } else { "failed" };
                let back_to = from;
                let from_the_file = sha.is_some();
                let told = reason.clone();
                let _ = self
                    .state
                    .call(move |s| {
                        s.set_generation_state(id, state, Some(&reason), &t)?;
                        if let Some(sha) = sha {
                            s.set_meta(PINNED, Some(&sha))?;
                        }
                        if let Some(b) = back_to {
                            s.set_generation_state(b, "active", None, &t)?;
                        }
                        Ok(())
                    })
                    .await;
                self.status.send_modify(|s| {
                    s.health = "failed".into();
                    // The file says something the host does not run: monitoring must see it
                    // now, not after the next pass.
                    if from_the_file {
                        s.definition_problem = Some(format!("the definition on disk failed ({told}); edit it or run `strackt apply` to try it again"));
                    }
                });
                if self.store.current().ok().flatten() != Some(id) {
                    // A generation the host is not on after a failed switch (rolled back, or
                    // never reached) is never a rollback target: drop its directory (its record
                    // stays).
                    if self.store.remove(id).is_ok() {
                        let _ = self.state.call(move |s| s.set_pruned(id, true)).await;
                    }
                }
            }
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

    /// Prune generation directories beyond the retention policy, and cached .debs no kept
    /// directory needs. Records are never deleted: a pruned generation is marked so, and a
    /// rollback rebuilds it from its record.
    async fn collect_garbage(&self, current: Option<u64>, previous: Option<u64>) {
        let keep = self.keep;
        let (Ok(rows), Ok(dirs)) = (
            self.state.call(|s| s.generations()).await,
            self.store.list(),
        ) else {
            return;
        };
        let on_disk: Vec<retention::OnDisk> = dirs
            .iter()
            .map(|&id| retention::OnDisk {
                id,
                successful: rows
                    .iter()
                    .any(|g| g.id == id && (g.state == "active" || g.state == "superseded")),
            })
            .collect();
        for id in retention::to_prune(&on_disk, current, previous, keep) {
            if self.store.remove(id).is_ok() {
                let _ = self.state.call(move |s| s.set_pruned(id, true)).await;
            }
        }
        // Keep the .deb files of retained generations only: a rollback to one of them needs no
        // network (a pruned one fetches its packages again when it is rebuilt).
        if let Ok(on_disk) = self.store.list() {
            let keep: std::collections::BTreeSet<String> = on_disk
                .iter()
                .filter_map(|id| self.store.load(*id).ok())
                .flat_map(|g| g.manifest.packages.into_values().map(|l| l.deb))
                .collect();
            if let Err(e) = self.machine.packages().prune_cache(&keep) {
                tracing::warn!("pruning the package cache: {e}");
            }
        }
    }

    /// Store generation `id`'s record (its definition text and manifest) in the state database.
    async fn keep_record(
        &self,
        id: u64,
        definition: &str,
        manifest: &crate::generation::Manifest,
    ) -> Result<(), String> {
        let record = GenerationRecord {
            definition: definition.to_string(),
            manifest: serde_json::to_string(manifest).map_err(|e| e.to_string())?,
        };
        self.state
            .call(move |s| s.put_record(id, &record))
            .await
            .map_err(|e| e.to_string())
    }

    /// Give every generation directory on disk without a record in the state database one,
    /// read from the directory (generations built before records were kept there).
    async fn backfill_records(&self) {
        let Ok(missing) = self.state.call(|s| s.without_record()).await else {
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

    /// Rebuild generation `id`'s pruned directory from its record (same id, through
    /// [`Store::build`]), fetching .debs the cache no longer has. Returns the generation and
    /// the step that says so.
    ///
    /// # Errors
    /// Why it cannot be rebuilt; nothing on the host has changed then.
    async fn rebuild_from_record(&self, id: u64) -> Result<(Generation, StepRecord), String> {
        let refused =
            |why: String| format!("generation {id} cannot be rebuilt from its record: {why}");
        let record = self
            .state
            .call(move |s| s.record(id))
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                refused("its directory was pruned before strackt kept records".into())
            })?;
        let manifest: crate::generation::Manifest = serde_json::from_str(&record.manifest)
            .map_err(|e| refused(format!("its manifest is unreadable: {e}")))?;
        let mut rendered =
            crate::generation::record::rebuild(&record.definition, &manifest).map_err(refused)?;
        let started = Instant::now();
        let uncached: BTreeMap<String, String> = rendered
            .manifest
            .packages
            .iter()
            .filter(|(_, lock)| !self.machine.packages().is_cached(&lock.deb))
            .map(|(name, lock)| (name.clone(), lock.version.clone()))
            .collect();
        let fetched: Vec<String> = uncached
            .iter()
            .map(|(name, version)| format!("{name} {version}"))
            .collect();
        let mut debs = self
            .machine
            .packages()
            .fetch(&uncached)
            .map_err(|e| refused(format!("package {}: {e}", fetched.join(", "))))?;
        for (name, lock) in &mut rendered.manifest.packages {
            if let Some(deb) = debs.remove(name) {
                lock.deb = deb;
            }
        }
        let target = self
            .store
            .build(id, &rendered, &manifest.created)
            .and_then(|_| self.store.load(id))
            .map_err(|e| refused(e.to_string()))?;
        let _ = self.state.call(move |s| s.set_pruned(id, false)).await;
        let detail = if fetched.is_empty() {
            "its packages were still cached".to_string()
        } else {
            format!("fetched again: {}", fetched.join(", "))
        };
        let mut step = StepRecord::new(
            "rebuild",
            &format!("generation {id} from its record"),
            "ok",
            detail,
            false,
        );
        step.duration_ms = Some(started.elapsed().as_millis() as i64);
        Ok((target, step))
    }

    /// Switch to an earlier generation (default: the previous one). One whose directory was
    /// pruned is rebuilt from its record first (and the operation says so).
    ///
    /// # Errors
    /// When there is no such generation to switch to, or a pruned one cannot be rebuilt from
    /// its record (the host unchanged then); a failed switch is an `Ok` operation with outcome
    /// `failed`/`rolled-back`.
    pub async fn rollback(&mut self, target: Option<u64>) -> Result<Operation, String> {
        // Timed phase by phase like a pass (each step kind, the settle wait), for `tests/bench`.
        let (op, phases) = timing::measure(self.rollback_inner(target)).await;
        self.status
            .send_modify(move |s| s.last_pass_phases_us = phases);
        op
    }

    async fn rollback_inner(&mut self, target: Option<u64>) -> Result<Operation, String> {
        let started = Instant::now();
        self.saved_switch = None;
        let _ = self.load_definition();
        let current = self.current()?;
        let cur_id = current.as_ref().map(|c| c.manifest.id);
        let id = match target {
            Some(id) => id,
            None => self
                .state
                .call(move |s| s.previous_generation(cur_id))
                .await
                .map_err(|e| e.to_string())?
                .ok_or("there is no previous generation to roll back to")?,
        };
        if Some(id) == cur_id {
            return Err(format!("generation {id} is already the current one"));
        }
        let rows = self
            .state
            .call(|s| s.generations())
            .await
            .map_err(|e| e.to_string())?;
        match rows.iter().find(|g| g.id == id) {
            Some(g) if g.state == "superseded" || g.state == "active" => {}
            Some(g) => return Err(format!("generation {id} is {}; only generations that ran successfully can be rolled back to", g.state)),
            None => return Err(format!("there is no generation {id} (see `strackt generations`)")),
        }
        // A directory retention pruned comes back from the generation's record first.
        let (target, rebuilt) = if self.store.list().map_err(|e| e.to_string())?.contains(&id) {
            let target = self
                .store
                .load(id)
                .map_err(|e| format!("generation {id}: {e}"))?;
            (target, None)
        } else {
            let (target, step) = self.rebuild_from_record(id).await?;
            (target, Some(step))
        };
        let op_id = self.start_op("rollback", Trigger::Cli, Some(id)).await;
        let mut report = self.switch_to(Some(&target), current.as_ref()).await;
        if let Some(step) = rebuilt {
            report.steps.insert(0, step);
        }
        let ok = report.failure.is_none();
        let op = self
            .conclude_switch(
                op_id,
                "rollback",
                Trigger::Cli,
                id,
                cur_id,
                report,
                started,
                None,
            )
            .await;
        if ok {
            self.metrics.rolled_back();
            // Keep the host here: the definition on disk (which built the generation we left)
            // is not re-applied until it is edited or `strackt apply` is run.
            if let Ok(text) = std::fs::read_to_string(&self.paths.definition) {
                let sha = sha256_hex(text.as_bytes());
                if Some(&sha) != Some(&target.manifest.definition_sha256) {
                    let _ = self
                        .state
                        .call(move |s| s.set_meta(PINNED, Some(&sha)))
                        .await;
                }
            }
        }
        Ok(op)
    }

    /// Resolve the definition's packages to exact versions (and, with `fetch`, put their
    /// `.deb` files in the cache).
    fn lock_packages(
        &self,
        def: &ValidatedDefinition,
        rendered: &mut crate::generation::Rendered,
        fetch: bool,
    ) -> Result<(), crate::host::HostError> {
        // An exact version the current generation already locked (and whose .deb is cached)
        // needs no apt look-up: saving an unrelated edit must not cost 50 of them.
        let current = self.current().ok().flatten();
        let mut todo = BTreeMap::new();
        for (name, want) in &def.definition().packages {
            if want != "latest" {
                if let Some(lock) = current
                    .as_ref()
                    .and_then(|c| c.manifest.packages.get(name))
                    .filter(|l| &l.version == want)
                {
                    if !fetch || self.machine.packages().is_cached(&lock.deb) {
                        rendered
                            .manifest
                            .packages
                            .insert(name.clone(), lock.clone());
                        continue;
                    }
                }
            }
            todo.insert(name.clone(), want.clone());
        }
        // One apt look-up and one download for all of them, not one of each per package.
        let versions =
            crate::host::packages::all_resolved(self.machine.packages().resolve(&todo)?)?;
        let mut debs = if fetch {
            self.machine.packages().fetch(&versions)?
        } else {
            BTreeMap::new()
        };
        for (name, version) in versions {
            let deb = debs.remove(&name).unwrap_or_default();
            rendered
                .manifest
                .packages
                .insert(name, crate::generation::PackageLock { version, deb });
        }
        Ok(())
    }

    /// The lock-out guard for a new definition's firewall (see `plan::lockout`).
    fn lockout_problem(&self, def: &ValidatedDefinition) -> Option<String> {
        let fw = def.definition().firewall.as_ref()?;
        match self.machine().firewall().ssh_sessions() {
            Ok(sessions) => lockout(fw, &sessions),
            Err(e) => Some(format!(
                "cannot tell which SSH clients are connected ({e}); refusing a firewall change"
            )),
        }
    }

    /// What the next pass would do, computed by the same code as a pass (without building);
    /// with `input`, what applying that definition text would do instead of the file's (the
    /// daemon's settings and the file stay as they are). The content diff compares the running
    /// generation with the one the definition builds.
    ///
    /// # Errors
    /// An invalid definition or an unreadable host.
    pub async fn plan(
        &mut self,
        input: Option<crate::api::DefinitionText>,
    ) -> Result<PlanView, String> {
        let def = match &input {
            None => self.load_definition()?,
            Some(d) => parse(&d.text, std::path::Path::new(&d.file)).map_err(|e| e.to_string())?,
        };
        let apps = Apps::of(def.definition());
        let current = self.current()?;
        let sha = sha256_hex(def.source().as_bytes());
        // A pinned definition is one the daemon will not apply on its own; a text given to
        // plan is planned as if applied (`strackt apply` clears the pin too).
        let pinned = match input {
            None => self.state.call(|s| s.meta(PINNED)).await.ok().flatten(),
            Some(_) => None,
        };
        let same = current
            .as_ref()
            .is_some_and(|c| c.manifest.definition_sha256 == sha)
            || pinned.as_deref() == Some(sha.as_str());
        let (target, label, changes) = match (&current, same) {
            (Some(c), true) => (c.clone(), "current", GenerationDiff::default()),
            _ => {
                if let Some(problem) = self.lockout_problem(&def) {
                    return Err(problem);
                }
                let mut r = render(&def);
                self.lock_packages(&def, &mut r, false)
                    .map_err(|e| format!("resolving packages: {e}"))?;
                let mut notes = Vec::new();
                let running = current
                    .as_ref()
                    .map(|c| {
                        let id = c.manifest.id;
                        stored(&self.store, id, None, &mut notes).map(|g| (id, g))
                    })
                    .transpose()?;
                let old_side = running
                    .as_ref()
                    .map_or("no generation".to_string(), |(id, _)| {
                        format!("generation {id}")
                    });
                let mut changes = diff(
                    running.as_ref().map(|(_, g)| g),
                    &r,
                    Sides {
                        old: &old_side,
                        new: "new generation",
                    },
                );
                changes.notes.extend(notes);
                (r.generation(), "new", changes)
            }
        };
        let owned = Ownership::load(Some(self.store.root())).map_err(|e| e.to_string())?;
        let snapshot = observe(self.machine(), &target, &owned, self.store.root(), &apps)
            .await
            .map_err(|e| format!("observing the host: {e}"))?;
        let mut p: Plan = plan(&target, current.as_ref(), &snapshot);
        let restarts = predicted_restarts(self.machine(), &target, &apps, &p, &snapshot);
        p.steps.extend(restarts.await);
        let steps = p
            .steps
            .iter()
            .map(|s| {
                StepRecord::new(
                    s.action.name(),
                    &s.action.target(),
                    "planned",
                    &s.why,
                    s.drift,
                )
            })
            .collect();
        let text = match (&current, changes.is_empty()) {
            (_, true) => p.to_string(),
            (Some(c), false) => format!(
                "changes from generation {} (running) to the new generation:\n{}\nsteps:\n{p}",
                c.manifest.id,
                changes.render()
            ),
            (None, false) => format!("the first generation:\n{}\nsteps:\n{p}", changes.render()),
        };
        Ok(PlanView {
            target: label.into(),
            steps,
            text,
            kept: p.kept,
            changes,
        })
    }
}
