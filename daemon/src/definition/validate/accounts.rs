//! Rules for `users:` and `groups:`: names, ids, shells and homes, references between them,
//! and what may never be removed. Pure: reports problems, never looks at the host.

use std::collections::BTreeMap;

use super::super::parse::Problems;
use super::super::rules;
use super::super::{Definition, Seg};
use super::{is_account_name, key};

pub(super) fn check_accounts(def: &Definition, problems: &mut Problems<'_>) {
    let mut gids: BTreeMap<u32, &String> = BTreeMap::new();
    for (name, g) in &def.groups {
        let at = key(&["groups", name]);
        if !is_account_name(name) || name.chars().all(|c| c.is_ascii_digit()) {
            problems.at_key(
                &at,
                format!("{name:?} is not a group name (lowercase letters, digits, `_-`)"),
            );
        }
        if let Some(gid) = g.gid {
            if let Err(e) = rules::account_id(gid, "gid", name) {
                problems.at(&key(&["groups", name, "gid"]), e);
            } else if let Some(other) = gids.insert(gid, name) {
                problems.at(
                    &key(&["groups", name, "gid"]),
                    format!("gid {gid} is also the gid of group {other:?}"),
                );
            }
        }
    }
    let mut uids: BTreeMap<u32, &String> = BTreeMap::new();
    let mut homes: BTreeMap<String, &String> = BTreeMap::new();
    for (name, u) in &def.users {
        let at = |field: &str| key(&["users", name, field]);
        if !is_account_name(name) || name.chars().all(|c| c.is_ascii_digit()) {
            problems.at_key(
                &key(&["users", name]),
                format!("{name:?} is not a user name (lowercase letters, digits, `_-`)"),
            );
        }
        if let Some(uid) = u.uid {
            if let Err(e) = rules::account_id(uid, "uid", name) {
                problems.at(&at("uid"), e);
            } else if let Some(other) = uids.insert(uid, name) {
                problems.at(
                    &at("uid"),
                    format!("uid {uid} is also the uid of user {other:?}"),
                );
            }
        }
        if let Some(shell) = &u.shell {
            if let Err(e) = rules::absolute_path(shell) {
                problems.at(&at("shell"), e);
            }
        }
        if let Some(home) = &u.home {
            // root's home is /root; a database server's account lives in its data directory.
            let allowed: &[&str] = if name == "root" {
                &["/root"]
            } else {
                &["/var/lib/postgresql", "/var/lib/mysql"]
            };
            if let Err(e) = rules::own_tree(home, "a home", allowed) {
                problems.at(&at("home"), e);
            }
        }
        // Default homes count too (`/home/NAME`); system users without one share /nonexistent.
        let home = u.home_of(name);
        if home != "/nonexistent" {
            if let Some(other) = homes.insert(home.clone(), name) {
                problems.at(
                    &at("home"),
                    format!("{home} is also the home of user {other:?}: each user needs its own (strackt writes HOME/.ssh/authorized_keys)"),
                );
            }
        }
        if let Some(c) = &u.comment {
            if c.contains(':') || rules::one_line(c).is_err() {
                problems.at(
                    &at("comment"),
                    "cannot contain `:`, a newline or another control character",
                );
            }
        }
        for (i, g) in u.group.iter().chain(u.groups.iter()).enumerate() {
            if !is_account_name(g) || g.chars().all(|c| c.is_ascii_digit()) {
                let mut p = if u.group.is_some() && i == 0 {
                    at("group")
                } else {
                    at("groups")
                };
                if !(u.group.is_some() && i == 0) {
                    p.push(Seg::Index(i - usize::from(u.group.is_some())));
                }
                problems.at(&p, format!("{g:?} is not a group name"));
            }
        }
        for (i, k) in u.ssh_keys.iter().enumerate() {
            let kind = k.split_whitespace().next().unwrap_or("");
            if !(kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-"))
                || k.split_whitespace().count() < 2
                || rules::one_line(k).is_err()
            {
                let mut p = at("ssh_keys");
                p.push(Seg::Index(i));
                problems.at(
                    &p,
                    "not an SSH public key line (`ssh-ed25519 AAAA… comment`)",
                );
            }
        }
        if !u.ssh_keys.is_empty() {
            let ssh_dir = format!("{}/.ssh", u.home_of(name));
            if let Some(file) = def.files.keys().find(|f| rules::overlaps(f, &ssh_dir)) {
                problems.at(
                    &at(if u.home.is_some() { "home" } else { "ssh_keys" }),
                    format!("{ssh_dir}/authorized_keys is written from `ssh_keys:`, and {file} is a managed file there: one of them must go"),
                );
            }
        }
        if let Some(secret) = &u.password {
            if let Err(e) = rules::secret_name(&secret.secret) {
                problems.at(&key(&["users", name, "password", "secret"]), e);
            }
        }
        if name == "root" && u.remove_home {
            problems.at(&at("remove_home"), "root is never removed");
        }
    }
}
