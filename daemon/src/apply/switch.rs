//! Switching generations: observe → plan → flip → run → verify, and on failure the same path
//! back to where the host was. A drift pass is a switch from a generation to itself.

use std::collections::BTreeMap;
use std::time::Duration;

use super::apps::{changed_files, check_apps, restart_users, to_restart, Apps};
use super::{observe, run, verify, Machine, Ownership};
use crate::generation::{Generation, Store};
use crate::ops::{StepOutcome, StepRecord};
use crate::plan::users::package_changes;
use crate::plan::{plan, state_digest, Action, PlannedStep};
use crate::timing;

/// What a switch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwitchReport {
    /// Every step, including those of a rollback.
    pub steps: Vec<StepRecord>,
    /// Why the switch failed (`None`: the host is on the target).
    pub failure: Option<String>,
    /// Whether the host was switched back to where it was.
    pub rolled_back: bool,
    /// Why switching back failed too, if it did.
    pub rollback_failure: Option<String>,
    /// Drift that was repaired (or, on hold, found), described.
    pub drift: Vec<String>,
    /// Digest of the managed state the host ended in, when the switch (or the way back)
    /// succeeded.
    pub digest: Option<String>,
}

#[derive(Default)]
struct Converged {
    steps: Vec<StepRecord>,
    failure: Option<String>,
    drift: Vec<String>,
    digest: Option<String>,
}

fn id_of(g: Option<&Generation>) -> Option<u64> {
    g.map(|g| g.manifest.id)
}

/// Bring the host to `target` (None: nothing managed), believing it is on `previous`. When
/// packages change, what uses them is restarted and every deployed app must pass its health
/// check too.
// Whole on purpose (~155 lines): one switch read top to bottom — observe, plan, run, restart
// what uses changed packages, verify, check apps, read the digest again — where each stage's
// failure returns what ran so far; the stages themselves live in `observe`, `run`, `verify`
// and `apps`.
#[allow(clippy::too_many_arguments)]
async fn converge<M: Machine>(
    m: &M,
    store: &Store,
    owned: &mut Ownership,
    target: Option<&Generation>,
    previous: Option<&Generation>,
    settle: Duration,
    repair_drift: bool,
    apps: &Apps,
) -> Converged {
    let empty = Generation::default();
    let desired = target.unwrap_or(&empty);
    let mut steps = Vec::new();
    let snapshot = match observe(m, desired, owned, store.root(), apps).await {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("observing the host: {e}");
            steps.push(StepRecord::new(
                "observe",
                "",
                StepOutcome::Failed,
                &msg,
                false,
            ));
            return Converged {
                steps,
                failure: Some(msg),
                ..Converged::default()
            };
        }
    };
    let mut plan = timing::time("plan", || plan(desired, previous, &snapshot));
    let drift = plan.drift();
    if !repair_drift {
        // On hold: what the definition changes still lands; what was changed by hand stays.
        plan.steps.retain(|s| !s.drift);
    }
    let changes = package_changes(&plan, &snapshot, &desired.manifest);
    // The file lists of the packages as they are now: a removed package's is gone afterwards.
    let mut files = BTreeMap::new();
    if !changes.is_empty() {
        match changed_files(m, &changes) {
            Ok(f) => files = f,
            Err(e) => {
                let msg = format!("listing the files of the packages to change: {e}");
                steps.push(StepRecord::new(
                    "observe",
                    "",
                    StepOutcome::Failed,
                    &msg,
                    false,
                ));
                return Converged {
                    steps,
                    failure: Some(msg),
                    drift,
                    digest: None,
                };
            }
        }
    }
    match store.current() {
        Ok(cur) if cur == id_of(target) => {}
        _ => {
            let label = id_of(target).map_or("none".to_string(), |i| format!("generation {i}"));
            if let Err(e) = store.flip(id_of(target)) {
                let msg = format!("flipping current to {label}: {e}");
                steps.push(StepRecord::new(
                    "flip",
                    &label,
                    StepOutcome::Failed,
                    &msg,
                    false,
                ));
                return Converged {
                    steps,
                    failure: Some(msg),
                    drift,
                    digest: None,
                };
            }
            steps.push(StepRecord::new(
                "flip",
                &label,
                StepOutcome::Ok,
                "current points here",
                false,
            ));
        }
    }
    let (records, failure) = run(m, &plan, store, target, owned).await;
    steps.extend(records);
    if failure.is_some() {
        return Converged {
            steps,
            failure,
            drift,
            digest: None,
        };
    }
    // A new generation is always verified (its health probes may be all that changed); a
    // drift pass that changed nothing has nothing to prove.
    if plan.is_empty() && id_of(target) == id_of(previous) {
        let digest = Some(timing::time("digest", || state_digest(desired, &snapshot)));
        return Converged {
            steps,
            failure: None,
            drift,
            digest,
        };
    }
    // Units restarted for a package change must prove they stay up, like those the plan
    // started.
    let mut checked = plan.clone();
    if !changes.is_empty() {
        match changed_files(m, &changes) {
            Ok(after) => {
                for (name, list) in after {
                    files.entry(name).or_default().extend(list);
                }
            }
            // The lists from before still name what was replaced or removed.
            Err(e) => tracing::warn!("listing the files of the changed packages: {e}"),
        }
        let started = plan.started_units();
        let todo = to_restart(m, desired, apps, (&changes, &files), &started).await;
        let (records, failure) = restart_users(m, apps, todo).await;
        checked
            .steps
            .extend(
                records
                    .iter()
                    .filter(|r| r.action == "restart")
                    .map(|r| PlannedStep {
                        action: Action::Restart {
                            unit: r.target.clone(),
                        },
                        why: r.detail.clone(),
                        drift: false,
                    }),
            );
        steps.extend(records);
        if failure.is_some() {
            return Converged {
                steps,
                failure,
                drift,
                digest: None,
            };
        }
    }
    let (records, mut failure) = verify(m, desired, &checked, settle, repair_drift).await;
    steps.extend(records);
    if failure.is_none() && !changes.is_empty() {
        let (records, apps_failure) = check_apps(m, apps).await;
        steps.extend(records);
        failure = apps_failure;
    }
    // The host changed: the digest is of what it is now, read again.
    let digest = match failure {
        None => observe(m, desired, owned, store.root(), apps)
            .await
            .ok()
            .map(|after| state_digest(desired, &after)),
        Some(_) => None,
    };
    Converged {
        steps,
        failure,
        drift,
        digest,
    }
}

/// Switch from `from` to `to`; if anything fails, switch back to `from` by the same code path.
/// With `repair_drift` false (a hold), steps that would only undo hand-made changes are skipped.
/// `apps` are the definition's apps: restarted when they use a changed package, and checked.
#[allow(clippy::too_many_arguments)]
pub async fn switch<M: Machine>(
    m: &M,
    store: &Store,
    owned: &mut Ownership,
    to: Option<&Generation>,
    from: Option<&Generation>,
    settle: Duration,
    repair_drift: bool,
    apps: &Apps,
) -> SwitchReport {
    let forward = converge(m, store, owned, to, from, settle, repair_drift, apps).await;
    let mut report = SwitchReport {
        steps: forward.steps,
        failure: forward.failure,
        drift: forward.drift,
        digest: forward.digest,
        ..SwitchReport::default()
    };
    // Nothing done (observing the host failed, or the flip itself): the host is exactly as it
    // was, so there is nothing to switch back from.
    let touched = report.steps.iter().any(|s| s.outcome == StepOutcome::Ok);
    if report.failure.is_none() || id_of(to) == id_of(from) || !touched {
        return report;
    }
    let back = converge(m, store, owned, from, to, settle, repair_drift, apps).await;
    report.steps.extend(back.steps);
    report.rolled_back = true;
    report.rollback_failure = back.failure;
    report.digest = back.digest;
    report
}
