//! The users-and-groups part of a plan (pure): groups and users created or brought to their
//! specification, passwords set from their secrets, and the users and groups strackt created
//! that left the definition removed (a user's home only when the definition said so). It runs
//! before files, since a file may belong to a user created here.

use super::{step, Action, HostSnapshot, PlannedStep};
use crate::generation::{Generation, Manifest};

/// Phase 2b: accounts — groups first (users join them), users, then groups that left.
pub(super) fn plan_accounts(
    want: &Manifest,
    previous: Option<&Generation>,
    observed: &HostSnapshot,
    steps: &mut Vec<PlannedStep>,
) {
    plan_groups(want, previous, observed, steps);
    plan_removed_users(want, previous, observed, steps);
    plan_users(want, previous, observed, steps);
    for name in &observed.owned_groups {
        if !want.groups.contains_key(name) && observed.groups.get(name).is_some_and(Option::is_some)
        {
            steps.push(step(
                Action::RemoveGroup { name: name.clone() },
                "no longer in the definition",
                false,
            ));
        }
    }
}

fn plan_groups(
    want: &Manifest,
    previous: Option<&Generation>,
    observed: &HostSnapshot,
    steps: &mut Vec<PlannedStep>,
) {
    for (name, g) in &want.groups {
        let drift = previous.is_some_and(|p| p.manifest.groups.get(name) == Some(g));
        match observed.groups.get(name).copied().flatten() {
            None => steps.push(step(
                Action::CreateGroup { name: name.clone() },
                "missing",
                drift,
            )),
            Some(have) => {
                if let Some(gid) = g.gid.filter(|gid| *gid != have) {
                    let action = Action::SetGid {
                        name: name.clone(),
                        gid,
                    };
                    steps.push(step(action, format!("gid {have}, want {gid}"), drift));
                }
            }
        }
    }
}

fn plan_removed_users(
    want: &Manifest,
    previous: Option<&Generation>,
    observed: &HostSnapshot,
    steps: &mut Vec<PlannedStep>,
) {
    for name in &observed.owned_users {
        if want.users.contains_key(name) || !observed.users.get(name).is_some_and(Option::is_some) {
            continue;
        }
        let remove_home = previous
            .and_then(|p| p.manifest.users.get(name))
            .is_some_and(|u| u.remove_home);
        let why = if remove_home {
            "no longer in the definition; home removed"
        } else {
            "no longer in the definition; home kept"
        };
        let action = Action::RemoveUser {
            name: name.clone(),
            remove_home,
        };
        steps.push(step(action, why, false));
    }
}

fn plan_users(
    want: &Manifest,
    previous: Option<&Generation>,
    observed: &HostSnapshot,
    steps: &mut Vec<PlannedStep>,
) {
    for (name, u) in &want.users {
        let drift = previous.is_some_and(|p| p.manifest.users.get(name) == Some(u));
        match observed.users.get(name).cloned().flatten() {
            None => steps.push(step(
                Action::CreateUser { name: name.clone() },
                "missing",
                drift,
            )),
            Some(have) => {
                let mut differs = Vec::new();
                if u.uid.is_some_and(|uid| uid != have.uid) {
                    differs.push(format!("uid {}", have.uid));
                }
                for (what, has, wants) in [
                    ("group", &have.group, &u.group),
                    ("shell", &have.shell, &u.shell),
                    ("home", &have.home, &u.home),
                    ("comment", &have.comment, &u.comment),
                ] {
                    if has != wants {
                        differs.push(format!("{what} {has:?}"));
                    }
                }
                if have.groups != u.groups {
                    differs.push(format!("groups {:?}", have.groups));
                }
                if !differs.is_empty() {
                    steps.push(step(
                        Action::ModifyUser { name: name.clone() },
                        format!("{} differ", differs.join(", ")),
                        drift,
                    ));
                }
            }
        }
        if u.password_secret.is_some() && observed.password_ok.get(name) != Some(&true) {
            steps.push(step(
                Action::SetPassword { name: name.clone() },
                "password differs from its secret",
                drift,
            ));
        }
    }
}
