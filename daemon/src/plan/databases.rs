//! The `databases:` part of a plan (pure): roles and databases to create or complete, last in
//! the switch, once packages are installed and units started (PostgreSQL may arrive in the
//! same switch). Nothing is ever dropped, renamed or emptied: an entry that left the
//! definition is listed as released, no longer managed, and left exactly as it is.

use std::collections::BTreeMap;

use super::{Action, HostSnapshot, PlannedStep};
use crate::generation::{Generation, Manifest};

/// Add the steps that create what `want.databases` declares and the host lacks; return the
/// databases that left the definition since `previous` (name → why they are left alone).
pub(super) fn plan_databases(
    want: &Manifest,
    previous: Option<&Generation>,
    observed: &HostSnapshot,
    steps: &mut Vec<PlannedStep>,
) -> BTreeMap<String, String> {
    let before = previous.map(|p| &p.manifest.databases);
    // A cluster that could not be read: what the running generation already had was created
    // then and is left for a pass that can see it (a stopped PostgreSQL must not fail every
    // pass, nor the switch back); a new entry gets its step, which creates only what is
    // missing (PostgreSQL may be installed earlier in this very switch) and fails naming the
    // entry when PostgreSQL still does not answer.
    let unread = observed
        .postgres_unreadable
        .as_ref()
        .map(|why| format!("PostgreSQL could not be read ({why}); created if missing"));
    let mut roles: BTreeMap<&str, Option<&str>> = BTreeMap::new();
    for db in want.databases.values() {
        roles
            .entry(db.owner.as_str())
            .or_insert(db.password_secret.as_deref());
    }
    for (role, secret) in roles {
        // Drift: the running generation already wanted this role as it is now.
        let drift = before.is_some_and(|b| {
            b.values()
                .any(|d| d.owner == role && d.password_secret.as_deref() == secret)
        });
        let name = role.to_string();
        let (action, why) = match (&unread, observed.db_roles.get(role)) {
            (Some(_), _) if drift => continue,
            (Some(why), _) => (Action::CreateRole { name }, why.clone()),
            (None, None) => (Action::CreateRole { name }, "missing".to_string()),
            (None, Some(r)) if !r.login => (
                Action::SetRolePassword { name },
                "cannot log in".to_string(),
            ),
            (None, Some(r)) if secret.is_some() && !r.password_ok => (
                Action::SetRolePassword { name },
                "password differs from its secret".to_string(),
            ),
            (None, Some(_)) => continue,
        };
        steps.push(PlannedStep { action, why, drift });
    }
    for (name, db) in &want.databases {
        let drift = before.is_some_and(|b| b.get(name) == Some(db));
        let (action, why) = match (&unread, observed.databases.get(name)) {
            (Some(_), _) if drift => continue,
            (Some(why), _) => (Action::CreateDatabase { name: name.clone() }, why.clone()),
            (None, None) => (
                Action::CreateDatabase { name: name.clone() },
                format!("missing (owner {})", db.owner),
            ),
            (None, Some(owner)) if *owner != db.owner => (
                Action::SetDatabaseOwner { name: name.clone() },
                format!("owner {owner}, want {}", db.owner),
            ),
            (None, Some(_)) => continue,
        };
        steps.push(PlannedStep { action, why, drift });
    }
    before
        .into_iter()
        .flat_map(|b| b.keys())
        .filter(|name| !want.databases.contains_key(*name))
        .map(|name| {
            (
                name.clone(),
                "no longer in the definition: kept with its data and owner, no longer managed"
                    .to_string(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generation::ManagedDatabase;
    use crate::plan::RoleObserved;

    fn manifest(dbs: &[(&str, &str, Option<&str>)]) -> Manifest {
        let mut m = Manifest::default();
        for (name, owner, secret) in dbs {
            m.databases.insert(
                (*name).into(),
                ManagedDatabase {
                    owner: (*owner).into(),
                    password_secret: secret.map(str::to_string),
                },
            );
        }
        m
    }

    fn steps(want: &Manifest, observed: &HostSnapshot) -> Vec<String> {
        let mut steps = Vec::new();
        plan_databases(want, None, observed, &mut steps);
        steps
            .iter()
            .map(|s| format!("{} {}: {}", s.action.name(), s.action.target(), s.why))
            .collect()
    }

    #[test]
    fn what_is_missing_or_differs_is_planned_and_nothing_else() {
        let want = manifest(&[
            ("shop", "shop", Some("db")),
            ("shop_log", "shop", Some("db")),
            ("blog", "writer", None),
        ]);
        let mut seen = HostSnapshot::default();
        assert_eq!(
            steps(&want, &seen),
            vec![
                "create-role shop: missing",
                "create-role writer: missing",
                "create-database blog: missing (owner writer)",
                "create-database shop: missing (owner shop)",
                "create-database shop_log: missing (owner shop)",
            ]
        );
        let ok = RoleObserved {
            login: true,
            password_ok: true,
        };
        seen.db_roles.insert("shop".into(), ok.clone());
        seen.db_roles.insert(
            "writer".into(),
            RoleObserved {
                password_ok: false,
                ..ok.clone()
            },
        );
        for db in ["shop", "shop_log", "blog"] {
            seen.databases.insert(db.into(), "shop".into());
        }
        assert_eq!(
            steps(&want, &seen),
            vec!["set-database-owner blog: owner shop, want writer"],
            "a role without a secret keeps whatever password it has"
        );
        seen.db_roles.insert(
            "shop".into(),
            RoleObserved {
                password_ok: false,
                ..ok
            },
        );
        seen.databases.insert("blog".into(), "writer".into());
        assert_eq!(
            steps(&want, &seen),
            vec!["set-role-password shop: password differs from its secret"]
        );
        seen.postgres_unreadable = Some("connection refused".into());
        assert_eq!(
            steps(&want, &seen).len(),
            5,
            "unread: every entry is ensured"
        );
    }

    #[test]
    fn a_removed_entry_is_released_not_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::generation::Store::open(dir.path()).expect("store");
        let def = crate::definition::parse(
            "version: 1\ndatabases:\n  shop: {}\n  old: {}\n",
            std::path::Path::new("t.yaml"),
        )
        .expect("valid");
        store
            .build(1, &crate::generation::render(&def), "now")
            .expect("build");
        let previous = store.load(1).expect("load");
        let want = manifest(&[("shop", "shop", None)]);
        let mut seen = HostSnapshot::default();
        seen.db_roles.insert(
            "shop".into(),
            RoleObserved {
                login: true,
                password_ok: false,
            },
        );
        seen.databases.insert("shop".into(), "shop".into());
        let mut steps = Vec::new();
        let released = plan_databases(&want, Some(&previous), &seen, &mut steps);
        assert!(steps.is_empty(), "{steps:?}");
        assert_eq!(released.keys().collect::<Vec<_>>(), vec!["old"]);
        // PostgreSQL stopped: what the running generation had is left for a later pass, a
        // new entry is still ensured.
        seen.postgres_unreadable = Some("connection refused".into());
        let want = manifest(&[("shop", "shop", None), ("blog", "writer", None)]);
        plan_databases(&want, Some(&previous), &seen, &mut steps);
        let targets: Vec<String> = steps.iter().map(|s| s.action.target()).collect();
        assert_eq!(targets, vec!["writer", "blog"]);
    }
}
