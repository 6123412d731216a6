//! The firewall part of a plan (pure): strackt's nftables table replaced as one transaction
//! when the ruleset changed or the live table no longer lists what was applied, deleted when
//! the firewall left the definition. Whether the new ruleset locks the operator out is
//! [`super::lockout`]'s question, asked before a generation is built.

use super::{step, Action, HostSnapshot, PlannedStep};
use crate::generation::Manifest;

/// Phase 5: the firewall.
pub(super) fn plan_firewall(
    want: &Manifest,
    observed: &HostSnapshot,
    steps: &mut Vec<PlannedStep>,
) {
    match (&want.firewall, &observed.firewall_applied) {
        (Some(ruleset), Some(applied)) if &applied.ruleset == ruleset => {
            if observed.firewall_live.as_ref() != Some(&applied.listing) {
                let why = if observed.firewall_live.is_none() {
                    "table deleted"
                } else {
                    "rules changed by hand"
                };
                steps.push(step(Action::ApplyFirewall, why, true));
            }
        }
        (Some(_), _) => steps.push(step(Action::ApplyFirewall, "ruleset changed", false)),
        (None, Some(_)) => steps.push(step(
            Action::RemoveFirewall,
            "no longer in the definition",
            false,
        )),
        (None, None) => {}
    }
}
