//! The files part of a plan (pure): owned files that left the definition removed (their
//! pre-strackt original put back), managed files written — keeping an original before
//! first overwriting it. Owners are compared by id, and an owner created in this very switch
//! has none yet, so its file is written.

use std::collections::BTreeSet;

use super::{step, Action, HostSnapshot, PlannedStep};
use crate::generation::{Generation, Manifest};

/// Phase 2: files strackt wrote that left the definition.
pub(super) fn plan_removed_files(
    want: &Manifest,
    observed: &HostSnapshot,
    steps: &mut Vec<PlannedStep>,
) {
    for path in &observed.owned_files {
        if want.files.contains_key(path) {
            continue;
        }
        let restore = observed.originals_kept.contains(path);
        let why = if restore {
            "no longer in the definition; original restored"
        } else {
            "no longer in the definition"
        };
        let action = Action::RemoveFile {
            path: path.clone(),
            restore_original: restore,
        };
        steps.push(step(action, why, false));
    }
}

/// Phase 3: managed files. Returns the paths whose content changes (units that
/// `restart_on` them are restarted).
pub(super) fn plan_files(
    want: &Manifest,
    previous: Option<&Generation>,
    observed: &HostSnapshot,
    steps: &mut Vec<PlannedStep>,
) -> BTreeSet<String> {
    let mut changed_files = BTreeSet::new();
    for (path, spec) in &want.files {
        // An owner that does not exist yet (created in this switch) has no id: write.
        let uid = observed.ids.get(&format!("user:{}", spec.owner)).copied();
        let gid = observed.ids.get(&format!("group:{}", spec.group)).copied();
        let have = observed.files.get(path).cloned().flatten();
        let why = match &have {
            None => "missing".to_string(),
            Some(h) if h.sha256 != spec.sha256 => "content differs".into(),
            Some(h) if h.mode != spec.mode => {
                format!("mode {:04o}, want {:04o}", h.mode, spec.mode)
            }
            Some(h) if Some(h.uid) != uid || Some(h.gid) != gid => {
                format!(
                    "owner {}:{}, want {}:{}",
                    h.uid, h.gid, spec.owner, spec.group
                )
            }
            Some(_) => continue,
        };
        let drift = previous.is_some_and(|g| g.manifest.files.get(path) == Some(spec));
        if have.is_some()
            && !observed.owned_files.contains(path)
            && !observed.originals_kept.contains(path)
        {
            steps.push(step(
                Action::KeepOriginal { path: path.clone() },
                "existed before strackt managed it",
                false,
            ));
        }
        if have.as_ref().is_none_or(|h| h.sha256 != spec.sha256) {
            changed_files.insert(path.clone());
        }
        let action = Action::WriteFile {
            path: path.clone(),
            mode: spec.mode,
            owner: spec.owner.clone(),
            group: spec.group.clone(),
        };
        steps.push(step(action, why, drift));
    }
    changed_files
}
