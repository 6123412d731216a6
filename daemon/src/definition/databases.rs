//! The `databases:` section: PostgreSQL databases (the Debian `postgresql` package) and the
//! login roles that own them. Types and their rules only; nothing here touches the host —
//! whether PostgreSQL runs, and what it already holds, is observed by `host/databases.rs`.
//!
//! strackt creates what is missing (role, database, owner, password) and never drops,
//! renames or empties anything: an entry that leaves the definition is only no longer managed.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::parse::Problems;
use super::{AppSpec, SecretRef, Seg};

/// One database and its owner, keyed by the database's name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatabaseEntry {
    /// The role owning the database, created (LOGIN) if missing; default: the database's name.
    #[serde(default)]
    #[schemars(regex(pattern = super::patterns::PG_NAME))]
    pub owner: Option<String>,
    /// The owner's password, kept in `/etc/strackt/secrets/NAME` (the same secret an app's
    /// `database.password` names). Set on the role as a SCRAM-SHA-256 verifier, so the
    /// password itself reaches neither a command line nor PostgreSQL's log; put back when
    /// changed by hand. Without it, the role has no password (peer login over the socket).
    #[serde(default)]
    pub password: Option<SecretRef>,
}

impl DatabaseEntry {
    /// The owning role of database `name`.
    pub fn owner_of<'a>(&'a self, name: &'a str) -> &'a str {
        self.owner.as_deref().unwrap_or(name)
    }
}

/// Whether `name` is a database or role name strackt manages: lowercase ASCII letters, digits
/// and `_`, starting with a letter or `_`, at most 63 bytes (PostgreSQL's limit). Such a name
/// needs no quoting rules beyond `"name"` and means the same to every client.
pub fn is_pg_name(name: &str) -> bool {
    name.len() <= 63
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn name_problem(name: &str, what: &str) -> Option<String> {
    if !is_pg_name(name) {
        return Some(format!(
            "{name:?} is not a {what} name strackt manages: lowercase letters, digits and _, starting with a letter or _, at most 63 bytes"
        ));
    }
    match what {
        "database" if ["postgres", "template0", "template1"].contains(&name) => Some(format!(
            "{name:?} is PostgreSQL's own database; declare a database of the app's own"
        )),
        "role" if name == "postgres" || name.starts_with("pg_") => Some(format!(
            "{name:?} is PostgreSQL's own role (superuser or reserved `pg_` prefix); declare a role of the app's own"
        )),
        _ => None,
    }
}

/// Check `databases:`; `apps` for agreement with the apps' `database:` (the same role's
/// password cannot come from two secrets).
pub(crate) fn check_databases(
    databases: &BTreeMap<String, DatabaseEntry>,
    apps: &BTreeMap<String, AppSpec>,
    problems: &mut Problems<'_>,
) {
    let at = |name: &str, field: &str| {
        let mut p = vec![Seg::Key("databases".into()), Seg::Key(name.into())];
        if !field.is_empty() {
            p.push(Seg::Key(field.into()));
        }
        p
    };
    // Role → (database declaring it first, its password secret).
    let mut roles: BTreeMap<&str, (&str, Option<&str>)> = BTreeMap::new();
    for (name, entry) in databases {
        if let Some(e) = name_problem(name, "database") {
            problems.at_key(&at(name, ""), e);
        }
        let owner = entry.owner_of(name);
        if let Some(e) = name_problem(owner, "role") {
            let field = if entry.owner.is_some() { "owner" } else { "" };
            problems.at(&at(name, field), e);
        }
        let secret = entry.password.as_ref().map(|p| p.secret.as_str());
        if let Some(s) = secret {
            if let Err(e) = super::rules::secret_name(s) {
                let mut path = at(name, "password");
                path.push(Seg::Key("secret".into()));
                problems.at(&path, e);
            }
        }
        match roles.get(owner) {
            Some((first, other)) if *other != secret => problems.at(
                &at(name, "password"),
                format!(
                    "role {owner:?} already gets its password from {} in databases.{first}; a role has one password",
                    other.map_or("no secret".to_string(), |s| format!("secret {s:?}"))
                ),
            ),
            Some(_) => {}
            None => {
                roles.insert(owner, (name, secret));
            }
        }
    }
    for (app, spec) in apps {
        let Some(db) = &spec.database else { continue };
        let Some(entry) = databases.get(&db.name) else {
            continue;
        };
        let local = db.host == "127.0.0.1" || db.host == "localhost" || db.host.starts_with('/');
        if !local || db.user != entry.owner_of(&db.name) {
            continue;
        }
        if let Some(p) = &entry.password {
            if p.secret != db.password.secret {
                problems.at(
                    &[
                        Seg::Key("apps".into()),
                        Seg::Key(app.clone()),
                        Seg::Key("database".into()),
                        Seg::Key("password".into()),
                    ],
                    format!(
                        "secret {:?}, but databases.{} sets role {:?}'s password from secret {:?}: the app could not log in; name the same secret",
                        db.password.secret, db.name, db.user, p.secret
                    ),
                );
            }
        }
    }
}
