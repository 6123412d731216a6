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
use serde::{Deserialize, Serialize};

use super::pass::Daemon;
use super::Trigger;
use crate::definition::{parse, set_package_versions, Definition, UpdatesApply};
use crate::host::files::sha256_hex;
use crate::host::packages::{compare_versions, Offer, Packages};
use crate::host::Machine;
use crate::ops::{self, Operation, StepRecord};

/// Meta key of the last check's report (survives restarts).
const REPORT: &str = "updates";
/// Meta key: the scheduled check has handled every slot up to this time (RFC 3339).
const SLOT: &str = "schedule:updates";
/// The schedule is looked at again at least this often (a definition edit, a clock jump).
const RECHECK: Duration = Duration::from_secs(15 * 60);

/// A newer version and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// The version.
    pub version: String,
    /// The suites it is published in (`bookworm-security`).
    pub suites: Vec<String>,
    /// One of them is a security suite.
    pub security: bool,
}

/// One package the definition pins, and what apt offers beyond it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageUpdate {
    /// The package.
    pub name: String,
    /// As the definition writes it: an exact version or `latest`.
    pub pinned: String,
    /// The exact version that stands for (for `latest`: what the running generation locked).
    pub version: Option<String>,
    /// apt's candidate, when newer than `version`.
    pub newest: Option<Candidate>,
    /// The newest version from a security suite, when newer than `version`.
    pub security: Option<Candidate>,
}

/// The result of a check (`strackt updates`, `status.updates`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdatesReport {
    /// When it ran (RFC 3339).
    pub checked: String,
    /// apt's lists were refreshed (`apt-get update`) just before.
    pub refreshed: bool,
    /// Why the refresh failed, when it did: the versions below are from the lists as they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_problem: Option<String>,
    /// Why the check failed: nothing below is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Packages with a newer version.
    pub pending: usize,
    /// Of those, packages with a newer version from a security suite.
    pub security: usize,
    /// Every package the definition pins, by name.
    pub packages: Vec<PackageUpdate>,
}

/// One package an upgrade moves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upgrade {
    /// The package.
    pub name: String,
    /// The version it runs now.
    pub from: String,
    /// The version it is upgraded to.
    pub to: String,
    /// `to` comes from a security suite.
    pub security: bool,
    /// The definition writes it `latest`: its text is not rewritten, the rebuild moves it.
    pub latest: bool,
    /// Where `to` comes from.
    pub suites: Vec<String>,
}

impl Upgrade {
    /// `strackt-demo 1.0 → 1.1 (bookworm-security)`.
    pub fn describe(&self) -> String {
        let latest = if self.latest { " [latest]" } else { "" };
        let from = if self.suites.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.suites.join(", "))
        };
        format!("{} {} → {}{from}{latest}", self.name, self.from, self.to)
    }
}

/// What `strackt upgrade` answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpgradeOutcome {
    /// What was (or would have been) upgraded.
    pub upgrades: Vec<Upgrade>,
    /// The pass that applied it; none when nothing was pending.
    pub operation: Option<Operation>,
    /// The definition file was put back to its previous bytes (the switch did not stay).
    pub definition_restored: bool,
    /// In words.
    pub message: String,
}

/// Compare what apt offers with the pins. `locked` holds the running generation's exact
/// versions, which `latest` stands for.
pub fn assess(
    pins: &BTreeMap<String, String>,
    locked: &BTreeMap<String, String>,
    offers: &BTreeMap<String, Offer>,
) -> Vec<PackageUpdate> {
    pins.iter()
        .map(|(name, pinned)| {
            let version = if pinned == "latest" {
                locked.get(name).cloned()
            } else {
                Some(pinned.clone())
            };
            let offer = offers.get(name);
            let newer = |v: &str| {
                version
                    .as_deref()
                    .is_some_and(|cur| compare_versions(v, cur).is_gt())
            };
            let candidate = |v: &str, offer: &Offer| {
                let suites = offer.suites_of(v);
                Candidate {
                    version: v.to_string(),
                    security: suites.iter().any(|s| s.ends_with("-security")),
                    suites,
                }
            };
            let newest = offer.and_then(|o| {
                o.candidate
                    .as_deref()
                    .filter(|c| newer(c))
                    .map(|c| candidate(c, o))
            });
            let security = offer.and_then(|o| {
                o.versions
                    .iter()
                    .filter(|v| v.security() && newer(&v.version))
                    .max_by(|a, b| compare_versions(&a.version, &b.version))
                    .map(|v| candidate(&v.version, o))
            });
            PackageUpdate {
                name: name.clone(),
                pinned: pinned.clone(),
                version,
                newest,
                security,
            }
        })
        .collect()
}

/// The report of a check made at `checked`.
pub fn report(
    checked: &str,
    packages: Vec<PackageUpdate>,
    refreshed: bool,
    refresh_problem: Option<String>,
) -> UpdatesReport {
    UpdatesReport {
        checked: checked.to_string(),
        refreshed,
        refresh_problem,
        error: None,
        pending: packages
            .iter()
            .filter(|p| p.newest.is_some() || p.security.is_some())
            .count(),
        security: packages.iter().filter(|p| p.security.is_some()).count(),
        packages,
    }
}

/// What an upgrade moves: the named packages (all pinned ones when none are named) to their
/// newest version, or with `security_only` to their newest security version.
///
/// # Errors
/// Names that the definition does not pin, all of them.
pub fn select(
    packages: &[PackageUpdate],
    security_only: bool,
    names: &[String],
) -> Result<Vec<Upgrade>, String> {
    let unknown: Vec<&str> = names
        .iter()
        .filter(|n| !packages.iter().any(|p| &p.name == *n))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "not in the definition's `packages:`: {}; nothing was changed (a package is added by writing it there)",
            unknown.join(", ")
        ));
    }
    Ok(packages
        .iter()
        .filter(|p| names.is_empty() || names.contains(&p.name))
        .filter_map(|p| {
            let to = if security_only {
                p.security.as_ref()
            } else {
                p.newest.as_ref().or(p.security.as_ref())
            }?;
            Some(Upgrade {
                name: p.name.clone(),
                from: p.version.clone().unwrap_or_default(),
                to: to.version.clone(),
                security: to.security,
                latest: p.pinned == "latest",
                suites: to.suites.clone(),
            })
        })
        .collect())
}

/// `a 1.0 → 1.1, b 2 → 3`.
fn listed(picks: &[Upgrade]) -> String {
    picks
        .iter()
        .map(|u| format!("{} {} → {}", u.name, u.from, u.to))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Write the upgrade into the pass's operation: one `upgrade` step per package (old → new,
/// security or not, from which suite) before the pass's steps, a `restore-definition` step
/// when the file was put back, the versions (and why, for a scheduled one) in the summary.
/// A pass that succeeded without landing on the upgrade's generation is a failed upgrade.
fn record(
    op: &mut Operation,
    picks: &[Upgrade],
    landed: bool,
    restored: Option<&std::path::Path>,
    why: Option<&str>,
) {
    let mut steps: Vec<StepRecord> = picks
        .iter()
        .map(|u| {
            let kind = if u.security {
                "security update"
            } else {
                "update"
            };
            let from = if u.suites.is_empty() {
                String::new()
            } else {
                format!(" from {}", u.suites.join(", "))
            };
            StepRecord::new(
                "upgrade",
                &u.name,
                if landed { "ok" } else { "failed" },
                format!("{} → {} ({kind}{from})", u.from, u.to),
                false,
            )
        })
        .collect();
    steps.append(&mut op.steps);
    if let Some(path) = restored {
        steps.push(StepRecord::new(
            "restore-definition",
            &path.display().to_string(),
            "ok",
            "put back to its previous bytes: the file says what runs",
            false,
        ));
    }
    op.steps = steps;
    op.summary = format!(
        "{}{}: {}{}",
        why.map(|w| format!("{w}: ")).unwrap_or_default(),
        listed(picks),
        op.summary,
        if restored.is_some() {
            "; definition file put back"
        } else {
            ""
        }
    );
    if !landed && op.outcome == "success" {
        // The pass ran but did not end on the upgrade's generation.
        op.outcome = "failed".into();
        op.reason
            .get_or_insert_with(|| "the upgrade's generation is not the one running".into());
    }
}

fn stamp() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Daemon {
    /// The pins to check: the definition file's, or the running generation's when the file
    /// does not parse.
    fn pins(&self) -> Result<Definition, String> {
        let file = &self.paths.definition;
        if let Ok(def) = std::fs::read_to_string(file)
            .map_err(|e| e.to_string())
            .and_then(|t| parse(&t, file).map_err(|e| e.to_string()))
        {
            return Ok(def.definition().clone());
        }
        let running = self.paths.root.join("current").join("definition.yaml");
        let text = std::fs::read_to_string(&running).map_err(|e| {
            format!(
                "{} does not parse and no generation runs ({e})",
                file.display()
            )
        })?;
        parse(&text, &running)
            .map(|d| d.definition().clone())
            .map_err(|e| e.to_string())
    }

    /// Check for updates (with `refresh`, `apt-get update` first), keep the report (state
    /// database, status, metrics) and return it. The apt work runs off the async runtime.
    pub async fn check_updates(&mut self, refresh: bool) -> UpdatesReport {
        let checked = stamp();
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
                let apt = self.machine.packages().clone();
                let names: Vec<String> = def.packages.keys().cloned().collect();
                let work = tokio::task::spawn_blocking(move || {
                    let problem = if refresh {
                        apt.refresh().err().map(|e| e.to_string())
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
                    Ok(Err(e)) => Err(format!("asking apt: {e}")),
                    Err(e) => Err(format!("the apt task ended: {e}")),
                }
            }
        };
        let report = result.unwrap_or_else(|error| UpdatesReport {
            checked,
            error: Some(error),
            ..UpdatesReport::default()
        });
        if let Some(p) = &report.refresh_problem {
            tracing::warn!("refreshing apt's package lists: {p}");
        }
        self.keep_report(report.clone()).await;
        report
    }

    /// Store and publish a report.
    pub(super) async fn keep_report(&mut self, report: UpdatesReport) {
        let text = serde_json::to_string(&report).unwrap_or_default();
        if let Err(e) = self
            .state
            .call(move |s| s.set_meta(REPORT, Some(&text)))
            .await
        {
            tracing::error!("recording the update check: {e}");
        }
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
            None => self.set_slot(Utc::now()).await,
        }
    }

    async fn set_slot(&mut self, at: DateTime<Utc>) {
        let text = at.to_rfc3339();
        let _ = self
            .state
            .call(move |s| s.set_meta(SLOT, Some(&text)))
            .await;
        self.updates_slot = Some(at);
    }

    /// After a switch to another generation: the pins moved, so the report is redone from
    /// apt's lists as they are (no refresh), when there is one.
    pub(super) async fn reassess_updates(&mut self) {
        let has_report = self.status.borrow().updates.is_some();
        if has_report {
            let _ = self.check_updates(false).await;
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
                (due - Utc::now()).to_std().unwrap_or_default().min(RECHECK)
                    + Duration::from_millis(200)
            }
            None => RECHECK,
        }
    }

    /// Run the scheduled check if it is due (a check missed while the daemon was down runs
    /// once), and with `apply: security | all` the upgrade it calls for.
    pub async fn scheduled_updates(&mut self) {
        let now = Utc::now();
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
        let report = self.check_updates(true).await;
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
            let started_at = stamp();
            let id = self.start_op("upgrade", trigger, None).await;
            let mut op = Self::op(id, "upgrade", trigger, None, started, &started_at);
            op.outcome = "failed".into();
            op.reason = Some(e);
            op.summary = format!("{why}: nothing was changed");
            if op.id > 0 {
                // A failed write is logged by `ops::finish`; the refusal stands either way.
                let _logged = ops::finish(&self.state, &op).await;
            }
        }
    }

    /// `strackt upgrade [--security] [PKG…]`.
    ///
    /// # Errors
    /// Refusals before anything changed: a definition that does not parse or is not what
    /// runs, a package the definition does not pin, apt that cannot be asked.
    pub async fn upgrade(
        &mut self,
        security_only: bool,
        names: Vec<String>,
    ) -> Result<UpgradeOutcome, String> {
        let trigger = if security_only {
            Trigger::Security
        } else {
            Trigger::Upgrade
        };
        self.upgrade_with(security_only, names, trigger, None, true)
            .await
    }

    async fn upgrade_with(
        &mut self,
        security_only: bool,
        names: Vec<String>,
        trigger: Trigger,
        why: Option<&str>,
        refresh: bool,
    ) -> Result<UpgradeOutcome, String> {
        let path = self.paths.definition.clone();
        let before = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let text = String::from_utf8(before.clone())
            .map_err(|_| format!("{}: not UTF-8 text; nothing was changed", path.display()))?;
        let def = parse(&text, &path)
            .map_err(|e| format!("the definition does not parse; nothing was changed:\n{e}"))?;
        // Cheap refusals before apt is asked.
        let unknown: Vec<&str> = names
            .iter()
            .filter(|n| !def.definition().packages.contains_key(*n))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(format!(
                "not in the definition's `packages:` ({}): {}; nothing was changed",
                path.display(),
                unknown.join(", ")
            ));
        }
        let current = self.current()?;
        let Some(current) = current else {
            return Err("no generation runs yet: `strackt apply` the definition first".into());
        };
        let sha = sha256_hex(text.as_bytes());
        if current.manifest.definition_sha256 != sha {
            return Err(format!(
                "{} is not what runs (generation {} was built from other text: an edit that failed, was rolled back from or is not applied yet); `strackt apply` or undo it first — nothing was changed",
                path.display(),
                current.manifest.id
            ));
        }
        let report = self.check_updates(refresh).await;
        if let Some(e) = report.error {
            return Err(format!("checking for updates: {e}"));
        }
        let picks = select(&report.packages, security_only, &names)?;
        let what = if security_only {
            "security updates"
        } else {
            "updates"
        };
        if picks.is_empty() {
            let scope = if names.is_empty() {
                "the pinned packages".to_string()
            } else {
                names.join(", ")
            };
            return Ok(UpgradeOutcome {
                upgrades: picks,
                operation: None,
                definition_restored: false,
                message: format!(
                    "no {what} pending for {scope}; {} untouched",
                    path.display()
                ),
            });
        }
        let edits: Vec<(&str, &str)> = picks
            .iter()
            .filter(|u| !u.latest)
            .map(|u| (u.name.as_str(), u.to.as_str()))
            .collect();
        let new_text = if edits.is_empty() {
            text.clone()
        } else {
            set_package_versions(&text, &edits)
                .map_err(|e| format!("{}: {e}; nothing was changed", path.display()))?
        };
        // The edited text must be the same definition but for these versions, and apt must
        // have each of them: `upgrade` never writes a file `strackt check` would refuse.
        let edited = parse(&new_text, &path).map_err(|e| {
            format!("the edited definition does not parse (a bug; nothing was changed):\n{e}")
        })?;
        let mut expected = def.definition().clone();
        for (name, version) in &edits {
            expected
                .packages
                .insert((*name).to_string(), (*version).to_string());
        }
        if edited.definition() != &expected {
            return Err(
                "the edit changed more than the versions (a bug); nothing was changed".into(),
            );
        }
        let apt = self.machine.packages().clone();
        let wanted: std::collections::BTreeMap<String, String> = edits
            .iter()
            .map(|(n, v)| ((*n).to_string(), (*v).to_string()))
            .collect();
        let checked: Vec<(String, String)> =
            tokio::task::spawn_blocking(move || apt.resolve(&wanted))
                .await
                .map_err(|e| format!("the apt task ended: {e}"))?
                .map_err(|e| format!("asking apt: {e}; nothing was changed"))?
                .into_iter()
                .filter_map(|(n, v)| v.err().map(|e| (n, e.to_string())))
                .collect();
        if !checked.is_empty() {
            let problems = checked
                .into_iter()
                .map(|(n, e)| crate::definition::problem_at(&new_text, &["packages", &n], e))
                .collect();
            let err = crate::definition::DefinitionError {
                file: path.clone(),
                problems,
            };
            return Err(format!("{err}\nnothing was changed"));
        }

        let (mode, uid, gid) = {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            (m.mode() & 0o7777, m.uid(), m.gid())
        };
        let write = |bytes: &[u8]| {
            crate::host::files::atomic_write(&path, bytes, mode, uid, gid)
                .map_err(|e| format!("writing {}: {e}", path.display()))
        };
        // apt took a while: a save made meanwhile is the user's, and wins.
        let unchanged_since = |bytes: &[u8]| std::fs::read(&path).is_ok_and(|now| now == bytes);
        if !edits.is_empty() {
            if !unchanged_since(&before) {
                return Err(format!(
                    "{} changed while the updates were checked; nothing was written, run the upgrade again",
                    path.display()
                ));
            }
            write(new_text.as_bytes())?;
            tracing::info!(
                "upgrade: {} rewritten: {}",
                path.display(),
                picks
                    .iter()
                    .map(Upgrade::describe)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        // Only `latest` packages: the text stays, the generation is rebuilt to move them.
        self.force_rebuild = edits.is_empty();
        let mut op = self.pass(trigger, true).await;
        self.force_rebuild = false;
        let new_sha = sha256_hex(new_text.as_bytes());
        let running = self
            .current()
            .ok()
            .flatten()
            .map(|g| (g.manifest.id, g.manifest.definition_sha256));
        let landed = op.outcome == "success"
            && running
                .as_ref()
                .is_some_and(|(id, s)| *s == new_sha && *id != current.manifest.id);
        let mut restored = false;
        if !landed && !edits.is_empty() && unchanged_since(new_text.as_bytes()) {
            // The file says what runs: back to the exact bytes it had.
            match write(&before) {
                Ok(()) => restored = true,
                Err(e) => tracing::error!("putting the definition back: {e}"),
            }
        }
        record(
            &mut op,
            &picks,
            landed,
            restored.then_some(path.as_path()),
            why,
        );
        if op.id > 0 {
            // A failed write is logged by `ops::finish`; the upgrade's outcome stands either way.
            let _logged = ops::finish(&self.state, &op).await;
        }
        self.status.send_modify(|s| {
            if s.last_pass.as_ref().is_some_and(|p| p.id == op.id) {
                s.last_pass = Some(op.clone());
            }
        });
        let list = listed(&picks);
        let message = if landed {
            format!("upgraded {list}")
        } else {
            format!(
                "upgrade of {list} did not stay: {}{}",
                op.reason.as_deref().unwrap_or("?"),
                if restored {
                    format!("; {} is back to its previous text", path.display())
                } else {
                    String::new()
                }
            )
        };
        Ok(UpgradeOutcome {
            upgrades: picks,
            operation: Some(op),
            definition_restored: restored,
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::FakeHost;

    fn pins(list: &[(&str, &str)]) -> BTreeMap<String, String> {
        list.iter()
            .map(|(a, b)| ((*a).to_string(), (*b).to_string()))
            .collect()
    }

    /// `strackt-demo` 1.0 (pinned), 1.1 in the security suite, 2.0 in the normal one;
    /// `tool` written `latest`, locked at 3, with 4 out; `calm` has nothing newer.
    fn host() -> FakeHost {
        let host = FakeHost::default();
        {
            let mut s = host.state();
            for (name, versions) in [
                ("strackt-demo", vec!["1.0", "1.1", "2.0"]),
                ("tool", vec!["3", "4"]),
                ("calm", vec!["1"]),
            ] {
                s.repository.insert(
                    name.into(),
                    versions.into_iter().map(String::from).collect(),
                );
            }
            s.security.insert(("strackt-demo".into(), "1.1".into()));
        }
        host
    }

    #[test]
    fn security_and_newest_candidates_are_told_apart() {
        let host = host();
        let names: Vec<String> = ["strackt-demo", "tool", "calm", "gone"]
            .map(String::from)
            .to_vec();
        let offers = host.candidates(&names).expect("offers");
        let got = assess(
            &pins(&[
                ("strackt-demo", "1.0"),
                ("tool", "latest"),
                ("calm", "1"),
                ("gone", "5"),
            ]),
            &pins(&[("tool", "3")]),
            &offers,
        );
        let demo = &got[2];
        assert_eq!(demo.name, "strackt-demo");
        assert_eq!(
            demo.newest,
            Some(Candidate {
                version: "2.0".into(),
                suites: vec!["bookworm".into()],
                security: false
            })
        );
        assert_eq!(
            demo.security,
            Some(Candidate {
                version: "1.1".into(),
                suites: vec!["bookworm-security".into()],
                security: true
            })
        );
        let tool = &got[3];
        assert_eq!(
            (tool.pinned.as_str(), tool.version.as_deref()),
            ("latest", Some("3"))
        );
        assert_eq!(tool.newest.as_ref().map(|c| c.version.as_str()), Some("4"));
        assert!(got[0].newest.is_none() && got[0].security.is_none(), "calm");
        assert!(got[1].newest.is_none(), "a package apt does not know");
        let r = report("2026-01-01T00:00:00Z", got.clone(), true, None);
        assert_eq!((r.pending, r.security), (2, 1));

        // Pinned at the security version: only the non-security 2.0 is left.
        let after = assess(&pins(&[("strackt-demo", "1.1")]), &BTreeMap::new(), &offers);
        assert!(after[0].security.is_none());
        assert_eq!(
            after[0].newest.as_ref().map(|c| c.version.as_str()),
            Some("2.0")
        );
        let r = report("t", after, true, None);
        assert_eq!((r.pending, r.security), (1, 0));
    }

    #[test]
    fn selection_follows_security_names_and_refuses_unknown_ones() {
        let host = host();
        let names: Vec<String> = ["strackt-demo", "tool", "calm"].map(String::from).to_vec();
        let offers = host.candidates(&names).expect("offers");
        let got = assess(
            &pins(&[("strackt-demo", "1.0"), ("tool", "latest"), ("calm", "1")]),
            &pins(&[("tool", "3")]),
            &offers,
        );
        let security = select(&got, true, &[]).expect("select");
        assert_eq!(security.len(), 1);
        assert_eq!(
            security[0].describe(),
            "strackt-demo 1.0 → 1.1 (bookworm-security)"
        );
        assert!(security[0].security && !security[0].latest);
        let all = select(&got, false, &[]).expect("select");
        let described: Vec<String> = all.iter().map(Upgrade::describe).collect();
        assert_eq!(
            described,
            [
                "strackt-demo 1.0 → 2.0 (bookworm)",
                "tool 3 → 4 (bookworm) [latest]"
            ]
        );
        let named = select(&got, false, &["tool".into()]).expect("select");
        assert_eq!(named.len(), 1);
        assert!(select(&got, false, &["calm".into()])
            .expect("select")
            .is_empty());
        let e =
            select(&got, false, &["nginx".into(), "tool".into(), "x".into()]).expect_err("unknown");
        assert!(
            e.contains("nginx, x") && e.contains("nothing was changed"),
            "{e}"
        );
    }

    #[test]
    fn the_operation_tells_old_and_new_and_the_file_put_back() {
        let pick = Upgrade {
            name: "strackt-demo".into(),
            from: "1.1".into(),
            to: "3.0".into(),
            security: true,
            latest: false,
            suites: vec!["bookworm-security".into()],
        };
        let pass = Operation {
            id: 7,
            kind: "apply".into(),
            trigger: "security".into(),
            generation: Some(4),
            outcome: "rolled-back".into(),
            reason: Some("installing packages: unmet dependencies".into()),
            summary: "rolled back to generation 3".into(),
            started: String::new(),
            finished: None,
            duration_ms: None,
            steps: vec![StepRecord::new("flip", "generation 4", "ok", "", false)],
        };
        let mut op = pass.clone();
        let file = std::path::Path::new("/etc/strackt/server.yaml");
        record(
            &mut op,
            std::slice::from_ref(&pick),
            false,
            Some(file),
            Some("scheduled"),
        );
        let steps: Vec<(&str, &str, &str)> = op
            .steps
            .iter()
            .map(|s| (s.action.as_str(), s.outcome.as_str(), s.detail.as_str()))
            .collect();
        assert_eq!(
            steps,
            [
                (
                    "upgrade",
                    "failed",
                    "1.1 → 3.0 (security update from bookworm-security)"
                ),
                ("flip", "ok", ""),
                (
                    "restore-definition",
                    "ok",
                    "put back to its previous bytes: the file says what runs"
                ),
            ]
        );
        assert_eq!(
            op.summary,
            "scheduled: strackt-demo 1.1 → 3.0: rolled back to generation 3; definition file put back"
        );
        assert_eq!(op.outcome, "rolled-back");

        // A pass that succeeded elsewhere than on the upgrade's generation is no upgrade.
        let mut op = Operation {
            outcome: "success".into(),
            reason: None,
            ..pass
        };
        record(&mut op, &[pick], false, None, None);
        assert_eq!(op.outcome, "failed");
        assert!(op.reason.is_some());
    }
}
