//! Local users and groups: read from /etc/passwd, /etc/group and /etc/shadow, changed with the
//! shadow tools (useradd, usermod, userdel, groupadd, groupmod, groupdel, chpasswd), which keep
//! the databases, nscd and the locks consistent.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::processes::{run_blocking, Cmd};
use super::HostError;

/// A user as a generation wants it (every default resolved).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedUser {
    /// Fixed uid, if any.
    pub uid: Option<u32>,
    /// Primary group.
    pub group: String,
    /// Supplementary groups, sorted.
    pub groups: Vec<String>,
    /// Login shell.
    pub shell: String,
    /// Home directory.
    pub home: String,
    /// GECOS comment.
    pub comment: String,
    /// System user.
    pub system: bool,
    /// Name of the secret holding the password hash (the hash itself is never stored).
    pub password_secret: Option<String>,
    /// Delete the home directory when the user is removed.
    pub remove_home: bool,
}

/// A user as the host has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserState {
    /// uid.
    pub uid: u32,
    /// Primary group name (the gid if no group has it).
    pub group: String,
    /// Supplementary groups, sorted.
    pub groups: Vec<String>,
    /// Login shell.
    pub shell: String,
    /// Home directory.
    pub home: String,
    /// GECOS comment.
    pub comment: String,
}

/// The account databases. Real implementation: [`ShadowTools`].
pub trait Accounts: Send + Sync {
    /// Every user, by name.
    fn users(&self) -> Result<BTreeMap<String, UserState>, HostError>;
    /// Every group, name → gid.
    fn groups(&self) -> Result<BTreeMap<String, u32>, HostError>;
    /// The password hash of `user` (`None`: no such user).
    fn password_hash(&self, user: &str) -> Result<Option<String>, HostError>;
    /// Create a group.
    fn create_group(&self, name: &str, gid: Option<u32>, system: bool) -> Result<(), HostError>;
    /// Change a group's gid.
    fn set_gid(&self, name: &str, gid: u32) -> Result<(), HostError>;
    /// Delete a group.
    fn delete_group(&self, name: &str) -> Result<(), HostError>;
    /// Create a user as specified.
    fn create_user(&self, name: &str, spec: &ManagedUser) -> Result<(), HostError>;
    /// Bring an existing user to the specification.
    fn modify_user(&self, name: &str, spec: &ManagedUser) -> Result<(), HostError>;
    /// Set a user's password hash.
    fn set_password(&self, name: &str, hash: &str) -> Result<(), HostError>;
    /// Delete a user (and its home with `remove_home`).
    fn delete_user(&self, name: &str, remove_home: bool) -> Result<(), HostError>;
}

/// The machine's account databases and the shadow tools.
#[derive(Debug, Default, Clone, Copy)]
pub struct ShadowTools;

fn read(path: &str) -> Result<String, HostError> {
    std::fs::read_to_string(path).map_err(|source| HostError::Io {
        op: "read",
        path: path.into(),
        source,
    })
}

/// Parse /etc/group: name → (gid, members).
pub fn parse_group(text: &str) -> BTreeMap<String, (u32, Vec<String>)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let gid = f.get(2)?.parse().ok()?;
            let members = f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            Some((f[0].to_string(), (gid, members)))
        })
        .collect()
}

/// Parse /etc/passwd with /etc/group into users.
pub fn parse_users(passwd: &str, group: &str) -> BTreeMap<String, UserState> {
    let groups = parse_group(group);
    passwd
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 7 {
                return None;
            }
            let (uid, gid): (u32, u32) = (f[2].parse().ok()?, f[3].parse().ok()?);
            let primary = groups
                .iter()
                .find(|(_, (g, _))| *g == gid)
                .map_or(gid.to_string(), |(n, _)| n.clone());
            let supplementary = groups
                .iter()
                .filter(|(_, (_, m))| m.iter().any(|x| x == f[0]))
                .map(|(n, _)| n.clone())
                .collect();
            Some((
                f[0].to_string(),
                UserState {
                    uid,
                    group: primary,
                    groups: supplementary,
                    shell: f[6].into(),
                    home: f[5].into(),
                    comment: f[4].into(),
                },
            ))
        })
        .collect()
}

/// How long one shadow tool call may take.
const LIMIT: Duration = Duration::from_secs(120);

fn run(tool: &'static str, args: &[String], stdin: Option<&str>) -> Result<(), HostError> {
    let cmd = Cmd::new(tool, LIMIT)
        .args(args)
        .stdin(stdin.unwrap_or_default());
    run_blocking(tool, cmd)?.checked(tool).map(|_| ())
}

/// Options shared by useradd and usermod.
fn user_args(spec: &ManagedUser, primary: bool) -> Vec<String> {
    let mut a = vec![
        "-G".into(),
        spec.groups.join(","),
        "-s".into(),
        spec.shell.clone(),
        "-d".into(),
        spec.home.clone(),
        "-c".into(),
        spec.comment.clone(),
    ];
    if primary {
        a.extend(["-g".into(), spec.group.clone()]);
    }
    if let Some(uid) = spec.uid {
        a.extend(["-u".into(), uid.to_string()]);
    }
    a
}

impl Accounts for ShadowTools {
    fn users(&self) -> Result<BTreeMap<String, UserState>, HostError> {
        Ok(parse_users(&read("/etc/passwd")?, &read("/etc/group")?))
    }

    fn groups(&self) -> Result<BTreeMap<String, u32>, HostError> {
        Ok(parse_group(&read("/etc/group")?)
            .into_iter()
            .map(|(n, (g, _))| (n, g))
            .collect())
    }

    fn password_hash(&self, user: &str) -> Result<Option<String>, HostError> {
        Ok(read("/etc/shadow")?.lines().find_map(|l| {
            let mut f = l.split(':');
            (f.next() == Some(user)).then(|| f.next().unwrap_or_default().to_string())
        }))
    }

    fn create_group(&self, name: &str, gid: Option<u32>, system: bool) -> Result<(), HostError> {
        let mut a: Vec<String> = Vec::new();
        if let Some(gid) = gid {
            a.extend(["-g".into(), gid.to_string()]);
        }
        if system {
            a.push("-r".into());
        }
        a.push(name.into());
        run("groupadd", &a, None)
    }

    fn set_gid(&self, name: &str, gid: u32) -> Result<(), HostError> {
        run(
            "groupmod",
            &["-g".into(), gid.to_string(), name.into()],
            None,
        )
    }

    fn delete_group(&self, name: &str) -> Result<(), HostError> {
        run("groupdel", &[name.into()], None)
    }

    fn create_user(&self, name: &str, spec: &ManagedUser) -> Result<(), HostError> {
        // No primary group given and none named like the user yet: useradd makes the
        // user-private group (-U), as on any Debian system.
        let private = spec.group == name && !self.groups()?.contains_key(name);
        let mut a = user_args(spec, !private);
        if private {
            a.push("-U".into());
        }
        a.push(if spec.system {
            "-r".into()
        } else {
            "-m".into()
        });
        a.push(name.into());
        run("useradd", &a, None)
    }

    fn modify_user(&self, name: &str, spec: &ManagedUser) -> Result<(), HostError> {
        let mut a = user_args(spec, true);
        a.push(name.into());
        run("usermod", &a, None)
    }

    fn set_password(&self, name: &str, hash: &str) -> Result<(), HostError> {
        // On stdin, never on a command line other users could read in /proc.
        run(
            "chpasswd",
            &["-e".into()],
            Some(&format!("{name}:{hash}\n")),
        )
    }

    fn delete_user(&self, name: &str, remove_home: bool) -> Result<(), HostError> {
        let mut a: Vec<String> = Vec::new();
        if remove_home {
            a.push("-r".into());
        }
        a.push(name.into());
        run("userdel", &a, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_with_primary_and_supplementary_groups() {
        let passwd =
            "root:x:0:0:root:/root:/bin/bash\nalice:x:2001:2000:Alice:/home/alice:/bin/sh\n";
        let group = "root:x:0:\nadm:x:4:syslog,alice\ndeploy:x:2000:\n";
        let users = parse_users(passwd, group);
        let alice = &users["alice"];
        assert_eq!(
            (alice.uid, alice.group.as_str(), alice.groups.clone()),
            (2001, "deploy", vec!["adm".to_string()])
        );
        assert_eq!(
            (
                alice.shell.as_str(),
                alice.home.as_str(),
                alice.comment.as_str()
            ),
            ("/bin/sh", "/home/alice", "Alice")
        );
        assert_eq!(
            parse_group(group)["adm"],
            (4, vec!["syslog".to_string(), "alice".to_string()])
        );
    }
}
