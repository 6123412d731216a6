//! Package updates: what apt offers beyond the versions the definition pins (`strackt
//! updates`), the pins rewritten in the definition's own text (`strackt upgrade`), and the
//! `strackt.updates` policy that does both on a schedule.
//!
//! An upgrade is a definition edit made by strackt: the exact version strings are replaced in
//! `/etc/strackt/server.yaml` (every other byte kept, see `definition::set_package_versions`)
//! and the ordinary pass builds, switches, verifies and rolls back. It runs on the reconcile
//! loop, so it is serialized with passes; the watcher's event for the write finds the file
//! equal to the generation the pass built and makes no second one. When the switch does not
//! end on the new generation, the file is put back to its exact previous bytes: the file always
//! says what runs.
//!
//! A package written `latest` is never rewritten (it is a choice, not a pin): its "pinned"
//! version is what the running generation locked, and upgrading it rebuilds the generation from
//! the same text, which resolves `latest` to apt's candidate again (with `--security` too: a
//! security update selects it, `latest` then means the newest).
//!
//! "Security" is decided as unattended-upgrades' Debian defaults do: a version published in a
//! suite whose archive or codename ends in `-security` (`bookworm-security`,
//! `stable-security`), read from `apt-cache policy`'s source lines.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

mod assess;
mod upgrade;

pub use assess::{Candidate, PackageUpdate, UpdatesReport, Upgrade, UpgradeOutcome};

use super::error::{StoreError, UpdateError};
use super::pass::Daemon;
use super::Trigger;
use crate::definition::{parse, Definition, UpdatesApply};
use crate::host::clock::Clock;
use crate::host::definition::DefinitionFile;
use crate::host::packages::Packages;
use crate::host::Machine;
use crate::ops::Outcome;
use assess::{assess, report, stamp};

/// Meta key of the last check's report (survives restarts).
const REPORT: &str = "updates";
/// Meta key: the scheduled check has handled every slot up to this time (RFC 3339).
const SLOT: &str = "schedule:updates";
/// The schedule is looked at again at least this often (a definition edit, a clock jump).
const RECHECK: Duration = Duration::from_secs(15 * 60);

impl<M: Machine> Daemon<M> {
    /// The pins to check: the definition file's, or the running generation's when the file
    /// does not parse.
    fn pins(&self) -> Result<Definition, UpdateError> {
        let file = &self.paths.definition;
        let read = DefinitionFile::new(file).read_text().ok();
        if let Some(def) = read.and_then(|t| parse(&t, file).ok()) {
            return Ok(def.definition().clone());
        }
        let id = self
            .store
            .current()
            .map_err(StoreError::Store)?
            .ok_or_else(|| UpdateError::NoPins { file: file.clone() })?;
        let record = self
            .store
            .read_record(id)
            .map_err(|source| StoreError::Generation { id, source })?;
        parse(
            &record.definition,
            &self.store.dir(id).join("definition.yaml"),
        )
        .map(|d| d.definition().clone())
        .map_err(UpdateError::RunningInvalid)
    }

    /// Check for updates (with `refresh`, `apt-get update` first), keep the report (state
    /// database, status, metrics) and return it. The apt work runs off the async runtime.
    ///
    /// # Errors
    /// Why the check failed; the report kept says so too (`error`).
    pub async fn check_updates(&mut self, refresh: bool) -> Result<UpdatesReport, UpdateError> {
        let checked = stamp(self.machine.clock().now());
        let result = match self.pins() {
            Err(e) => Err(e),
            Ok(def) => {
                let locked: BTreeMap<String, String> = self
                    .current()
                    .ok()
                    .flatten()
                    .map(|g| {
                        g.manifest
                            .packages
                            .into_iter()
                            .map(|(n, l)| (n, l.version))
                            .collect()
                    })
                    .unwrap_or_default();
                let machine = self.machine.clone();
                let names: Vec<String> = def.packages.keys().cloned().collect();
                let work = tokio::task::spawn_blocking(move || {
                    let apt = machine.packages();
                    let problem = if refresh {
                        refresh_lists(apt, REFRESH_PAUSE)
                    } else {
                        None
                    };
                    apt.candidates(&names).map(|o| (problem, o))
                })
                .await;
                match work {
                    Ok(Ok((problem, offers))) => Ok(report(
                        &checked,
                        assess(&def.packages, &locked, &offers),
                        refresh && problem.is_none(),
                        problem,
                    )),
                    Ok(Err(e)) => Err(UpdateError::Apt(e)),
                    Err(e) => Err(UpdateError::AptTask(e)),
                }
            }
        };
        let report = match &result {
            Ok(report) => report.clone(),
            Err(error) => UpdatesReport {
                checked,
                error: Some(error.to_string()),
                ..UpdatesReport::default()
            },
        };
        if let Some(p) = &report.refresh_problem {
            tracing::warn!("refreshing apt's package lists: {p}");
        }
        self.keep_report(report).await;
        result
    }

    /// Store and publish a report.
    pub(super) async fn keep_report(&mut self, report: UpdatesReport) {
        let text = serde_json::to_string(&report).unwrap_or_default();
        // Unrecorded (reported by `db`), the report is still shown until a restart.
        let saved = self.db("recording the update check", move |s| {
            s.set_meta(REPORT, Some(&text))
        });
        let _reported = saved.await;
        self.publish_report(report);
    }

    fn publish_report(&self, report: UpdatesReport) {
        self.status.send_modify(|s| s.updates = Some(report));
    }

    /// At start: the last report and the schedule's progress, as stored.
    pub(super) async fn restore_updates(&mut self) {
        if let Ok(Some(text)) = self.state.call(|s| s.meta(REPORT)).await {
            if let Ok(report) = serde_json::from_str::<UpdatesReport>(&text) {
                self.publish_report(report);
            }
        }
        let slot = self
            .state
            .call(|s| s.meta(SLOT))
            .await
            .ok()
            .flatten()
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc));
        match slot {
            Some(t) => self.updates_slot = Some(t),
            // First sight: the schedule counts from now (as backups' do).
            None => self.set_slot(self.machine.clock().now()).await,
        }
    }

    async fn set_slot(&mut self, at: DateTime<Utc>) {
        let text = at.to_rfc3339();
        // Unrecorded (reported by `db`), the slot holds in memory; a restart may check again.
        let saved = self.db("recording the updates schedule", move |s| {
            s.set_meta(SLOT, Some(&text))
        });
        let _reported = saved.await;
        self.updates_slot = Some(at);
    }

    /// After a switch to another generation: the pins moved, so the report is redone from
    /// apt's lists as they are (no refresh), when there is one.
    pub(super) async fn reassess_updates(&mut self) {
        let has_report = self.status.borrow().updates.is_some();
        if has_report {
            // A failed check is kept and shown as the report (`updates.error` in `/status`);
            // nobody waits for this one.
            let _shown = self.check_updates(false).await;
        }
    }

    /// How long until the scheduled check is due (at most [`RECHECK`]).
    pub fn updates_wait(&self) -> Duration {
        let due = self
            .updates_policy
            .schedule()
            .zip(self.updates_slot)
            .and_then(|(s, last)| s.next_after(last));
        match due {
            Some(due) => {
                (due - self.machine.clock().now())
                    .to_std()
                    .unwrap_or_default()
                    .min(RECHECK)
                    + Duration::from_millis(200)
            }
            None => RECHECK,
        }
    }

    /// Run the scheduled check if it is due (a check missed while the daemon was down runs
    /// once), and with `apply: security | all` the upgrade it calls for.
    pub async fn scheduled_updates(&mut self) {
        let now = self.machine.clock().now();
        let Some(schedule) = self.updates_policy.schedule() else {
            return;
        };
        let Some(last) = self.updates_slot else {
            self.set_slot(now).await;
            return;
        };
        if schedule.next_after(last).is_none_or(|due| due > now) {
            return;
        }
        self.set_slot(now).await;
        if self.pins().is_ok_and(|d| d.packages.is_empty()) {
            // Nothing is pinned: apt's lists are none of strackt's business.
            return;
        }
        // A failed check is kept and shown as the report (`updates.error`): nothing pending.
        let report = self.check_updates(true).await.unwrap_or_default();
        let apply = self.updates_policy.apply;
        tracing::info!(
            "scheduled update check: {} pending ({} security); apply: {}",
            report.pending,
            report.security,
            apply.as_str()
        );
        let (security_only, trigger) = match apply {
            UpdatesApply::Security if report.security > 0 => (true, Trigger::Security),
            UpdatesApply::All if report.pending > 0 => (false, Trigger::Upgrade),
            _ => return,
        };
        let why = format!(
            "scheduled (strackt.updates: check {:?}, apply {})",
            self.updates_policy.check,
            apply.as_str()
        );
        if let Err(e) = self
            .upgrade_with(security_only, Vec::new(), trigger, Some(&why), false)
            .await
        {
            // Refused before anything changed: the log says so, or nobody would know.
            tracing::error!("{why}: upgrade refused: {e}");
            let started = Instant::now();
            let started_at = self.now();
            // A row that cannot be written is reported by `start_op`: the journal has the refusal.
            if let Ok(id) = self.start_op("upgrade", trigger, None).await {
                let mut op = self.op(Some(id), "upgrade", trigger, None, started, &started_at);
                op.outcome = Outcome::Failed;
                op.reason = Some(e.to_string());
                op.summary = format!("{why}: nothing was changed");
                self.write_op(&mut op).await;
            }
        }
    }
}

/// How many times a refresh is tried while it fails for a reason that passes, and the pause
/// between tries (another apt, often the system's own daily `apt-get update`, holds the lists
/// for a minute or so).
const REFRESH_TRIES: u32 = 3;
const REFRESH_PAUSE: Duration = Duration::from_secs(20);

/// `apt-get update` (on a blocking thread): a failure that passes by itself (the lists lock
/// held by another apt, a mirror that does not answer) is tried again after `pause`, a
/// permanent one (a broken sources list) is not. `None` when the lists were refreshed, else why
/// not: the check then goes on with the lists as they were.
fn refresh_lists(apt: &impl Packages, pause: Duration) -> Option<String> {
    let mut tries = 1;
    loop {
        match apt.refresh() {
            Ok(()) => return None,
            Err(e) if e.is_transient() && tries < REFRESH_TRIES => {
                tracing::info!("refreshing apt's lists: {e}; trying again in {pause:?}");
                std::thread::sleep(pause);
                tries += 1;
            }
            Err(e) => return Some(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::FakeHost;

    #[test]
    fn a_refresh_is_tried_again_only_while_it_fails_for_a_reason_that_passes() {
        let host = FakeHost::default();
        assert_eq!(refresh_lists(&host, Duration::ZERO), None);
        assert_eq!(host.state().refreshes, 1);
        host.state().offline = true;
        let offline = refresh_lists(&host, Duration::ZERO).expect("fails");
        assert!(offline.contains("could not connect"), "{offline}");
        assert_eq!(host.state().refreshes, 1 + REFRESH_TRIES as usize);
        host.state().sources_broken = true;
        assert!(refresh_lists(&host, Duration::ZERO).is_some());
        assert_eq!(
            host.state().refreshes,
            2 + REFRESH_TRIES as usize,
            "not tried again"
        );
    }
}
