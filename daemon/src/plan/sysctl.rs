//! The kernel settings part of a plan (pure): each desired parameter whose live value differs
//! is set live. The `sysctl.d` file that makes them last is an ordinary managed file.

use super::{step, Action, HostSnapshot, PlannedStep};
use crate::generation::{Generation, Manifest};

/// Phase 6: settings, live.
pub(super) fn plan_sysctl(
    want: &Manifest,
    previous: Option<&Generation>,
    observed: &HostSnapshot,
    steps: &mut Vec<PlannedStep>,
) {
    for (key, value) in &want.sysctl {
        let have = observed.sysctl.get(key);
        if have == Some(value) {
            continue;
        }
        let drift = previous.is_some_and(|g| g.manifest.sysctl.get(key) == Some(value));
        let why = format!(
            "live value {}, want {value}",
            have.map_or("unknown", String::as_str)
        );
        let action = Action::SetSysctl {
            key: key.clone(),
            value: value.clone(),
        };
        steps.push(step(action, why, drift));
    }
}
