//! The units part of a plan (pure), in the switch's phases: units strackt wrote that left the
//! definition stopped, disabled and removed first; unit files written (and one daemon-reload);
//! enablement; then reload, restart and start last, once files, settings and the firewall are
//! in place. What a changed unit file means for its running unit is [`super::classify`]'s.

use std::collections::BTreeSet;

use super::{classify, step, Action, HostSnapshot, PlannedStep, UnitChange};
use crate::generation::Generation;
use crate::host::UnitState;

/// Running units whose unit file changes: which get a reload, which a restart.
#[derive(Debug, Default)]
pub(super) struct Bounces {
    reload: BTreeSet<String>,
    restart: BTreeSet<String>,
}

/// Phase 1: units that left the definition (only those strackt wrote are stopped/removed).
pub(super) fn plan_removed_units(
    desired: &Generation,
    observed: &HostSnapshot,
    steps: &mut Vec<PlannedStep>,
) {
    let why = "no longer in the definition";
    for unit in &observed.owned_units {
        if desired
            .manifest
            .units
            .get(unit)
            .is_some_and(|u| u.sha256.is_some())
        {
            continue;
        }
        let state = observed.units.get(unit);
        if state.is_some_and(UnitState::is_active) {
            steps.push(step(Action::Stop { unit: unit.clone() }, why, false));
        }
        if state.is_some_and(|s| s.unit_file_state == "enabled") {
            steps.push(step(Action::Disable { unit: unit.clone() }, why, false));
        }
        steps.push(step(Action::RemoveUnit { unit: unit.clone() }, why, false));
    }
}

/// Phase 4: unit files strackt writes, and one daemon-reload when any changed or was removed.
/// Returns what their changes mean for the running units.
pub(super) fn plan_unit_files(
    desired: &Generation,
    previous: Option<&Generation>,
    observed: &HostSnapshot,
    steps: &mut Vec<PlannedStep>,
) -> Bounces {
    let mut bounces = Bounces::default();
    let mut changed = steps
        .iter()
        .any(|s| matches!(s.action, Action::RemoveUnit { .. }));
    for (unit, spec) in &desired.manifest.units {
        let Some(text) = desired.unit_texts.get(unit) else {
            continue;
        };
        let have = observed.unit_files.get(unit).cloned().flatten();
        if have.as_deref() == Some(text.as_str()) {
            continue;
        }
        let drift = previous.is_some_and(|g| g.unit_texts.get(unit) == Some(text));
        let active = observed.units.get(unit).is_some_and(UnitState::is_active);
        let (why, change) = match &have {
            None => ("unit file missing", UnitChange::Equal),
            Some(old) => ("unit file differs", classify(old, text)),
        };
        steps.push(step(Action::WriteUnit { unit: unit.clone() }, why, drift));
        changed = true;
        if active && spec.restart_on_change {
            match change {
                UnitChange::Restart => {
                    bounces.restart.insert(unit.clone());
                }
                UnitChange::Reload => {
                    bounces.reload.insert(unit.clone());
                }
                UnitChange::Equal | UnitChange::Cosmetic => {}
            }
        }
    }
    if changed {
        steps.push(step(Action::DaemonReload, "unit files changed", false));
    }
    bounces
}

/// Phase 7: enablement.
pub(super) fn plan_enablement(
    desired: &Generation,
    previous: Option<&Generation>,
    observed: &HostSnapshot,
    steps: &mut Vec<PlannedStep>,
) {
    for (unit, spec) in &desired.manifest.units {
        let state = observed.units.get(unit);
        if spec.enabled && !state.is_some_and(UnitState::is_enabled) {
            let drift =
                previous.is_some_and(|g| g.manifest.units.get(unit).is_some_and(|u| u.enabled));
            steps.push(step(
                Action::Enable { unit: unit.clone() },
                "not enabled",
                drift,
            ));
        }
        if !spec.enabled && state.is_some_and(|s| s.unit_file_state == "enabled") {
            steps.push(step(
                Action::Disable { unit: unit.clone() },
                "enabled, want disabled",
                false,
            ));
        }
    }
}

/// Phase 8: reload, restart, start — a running unit whose unit file or `restart_on` file
/// changed is bounced; a unit not running is started.
pub(super) fn plan_activation(
    desired: &Generation,
    previous: Option<&Generation>,
    observed: &HostSnapshot,
    mut bounces: Bounces,
    changed_files: &BTreeSet<String>,
    steps: &mut Vec<PlannedStep>,
) {
    let units = &desired.manifest.units;
    for (unit, spec) in units {
        if spec.restart_on_change
            && spec.restart_on.iter().any(|f| changed_files.contains(f))
            && observed.units.get(unit).is_some_and(UnitState::is_active)
        {
            bounces.restart.insert(unit.clone());
        }
    }
    for unit in bounces.reload.difference(&bounces.restart) {
        steps.push(step(
            Action::Reload { unit: unit.clone() },
            "only ExecReload changed",
            false,
        ));
    }
    for unit in &bounces.restart {
        steps.push(step(
            Action::Restart { unit: unit.clone() },
            "its unit or a file it depends on changed",
            false,
        ));
    }
    for unit in units.keys() {
        let active = observed.units.get(unit).is_some_and(UnitState::is_active);
        if active || bounces.restart.contains(unit) {
            continue;
        }
        let drift = previous.is_some_and(|g| g.manifest.units.contains_key(unit));
        let state = observed
            .units
            .get(unit)
            .map_or("absent", |s| s.active_state.as_str());
        steps.push(step(
            Action::Start { unit: unit.clone() },
            format!("{state}, want active"),
            drift,
        ));
    }
}
