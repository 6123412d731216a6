//! apply/verify — after a switch: every unit active and not restarted behind strackt's back,
//! then every health probe passing. Must not: change the host (the caller switches back).

use std::time::Duration;

use crate::generation::Generation;
use crate::host::health::Health;
use crate::host::Machine;
use crate::host::{Systemd, UnitState};
use crate::ops::{StepOutcome, StepRecord};
use crate::plan::Plan;
use crate::timing;

/// Check that every unit of `desired` (or, with `all_units` false, every unit the plan
/// started) is active and its health probe passes. Waits `settle` first when the plan started
/// anything, so a unit that dies right after starting is caught (a zero `settle` waits for
/// nothing and looks once). Returns the records and the first failure.
pub async fn verify<M: Machine>(
    m: &M,
    desired: &Generation,
    plan: &Plan,
    settle: Duration,
    all_units: bool,
) -> (Vec<StepRecord>, Option<String>) {
    let mut records = Vec::new();
    let mut failure = None;
    // Normally every unit of the generation must be up; on hold, a unit stopped by hand is the
    // operator's experiment, so only what this plan started has to prove itself.
    let started = plan.started_units();
    let units: Vec<&String> = desired
        .manifest
        .units
        .keys()
        .filter(|u| all_units || started.contains(*u))
        .collect();
    // A unit that dies at once may already be back up by systemd's Restart= when we look;
    // its restart counter, read before and after settling, gives it away. All units are read
    // in one request each time (not one round trip per unit).
    let names: Vec<String> = units.iter().map(|u| (*u).clone()).collect();
    let mut restarts_before = std::collections::BTreeMap::new();
    if !started.is_empty() && !settle.is_zero() {
        if let Ok(states) = m.systemd().unit_states(&names).await {
            for (unit, s) in names.iter().zip(states) {
                restarts_before.insert(unit.clone(), s.n_restarts);
            }
        }
        timing::time_async("settle", tokio::time::sleep(settle)).await;
    }
    let states: Vec<Result<UnitState, String>> =
        match timing::time_async("verify", m.systemd().unit_states(&names)).await {
            Ok(states) => states.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e.to_string()); names.len()],
        };
    for (unit, state) in names.iter().zip(states) {
        let before = restarts_before.get(unit).copied();
        match state {
            Ok(s) if s.is_active() && before.is_none_or(|b| s.n_restarts <= b) => {
                records.push(StepRecord::new(
                    "verify",
                    unit,
                    StepOutcome::Ok,
                    format!("{} ({})", s.active_state, s.sub_state),
                    false,
                ))
            }
            Ok(s) => {
                let msg = if s.is_active() {
                    format!(
                        "{unit} crashed and was restarted by systemd {} time(s) after the switch",
                        s.n_restarts - before.unwrap_or(0)
                    )
                } else {
                    format!(
                        "{unit} is {} ({}) after the switch",
                        s.active_state, s.sub_state
                    )
                };
                records.push(StepRecord::new(
                    "verify",
                    unit,
                    StepOutcome::Failed,
                    &msg,
                    false,
                ));
                failure.get_or_insert(msg);
            }
            Err(e) => {
                records.push(StepRecord::new(
                    "verify",
                    unit,
                    StepOutcome::Failed,
                    &e,
                    false,
                ));
                failure.get_or_insert(e);
            }
        }
    }
    if failure.is_some() {
        return (records, failure);
    }
    // Health probes run side by side: the switch waits for the slowest, not for their sum.
    let probes = desired
        .manifest
        .units
        .iter()
        .filter(|(u, _)| units.contains(u))
        .filter_map(|(unit, spec)| Some((unit, spec.health.as_ref()?)))
        .map(|(unit, health)| async move {
            let within =
                crate::definition::duration_or(health.within.as_deref().unwrap_or("10s"), 10);
            (unit, m.health().check(health, within).await)
        });
    let checked = timing::time_async("health", futures_util::future::join_all(probes)).await;
    for (unit, result) in checked {
        match result {
            Ok(()) => records.push(StepRecord::new(
                "health",
                unit,
                StepOutcome::Ok,
                "healthy",
                false,
            )),
            Err(e) => {
                let msg = format!("health check of {unit} failed: {e}");
                records.push(StepRecord::new(
                    "health",
                    unit,
                    StepOutcome::Failed,
                    &msg,
                    false,
                ));
                failure.get_or_insert(msg);
            }
        }
    }
    (records, failure)
}
