//! The `users:` and `groups:` sections and secret references: the shape of local accounts
//! as the user writes them. Only types and their defaults live here; the rules are in
//! `validate/accounts.rs`, and nothing here looks at the host's account database.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::patterns;

/// A local group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// Fixed gid (default: chosen by groupadd).
    #[serde(default)]
    #[schemars(extend("not" = { "enum": [65535, 4_294_967_295_u32] }))]
    pub gid: Option<u32>,
    /// A system group (gid from the system range).
    #[serde(default)]
    pub system: bool,
}

/// A local user. strackt creates it if missing and keeps these fields; a user strackt created
/// is removed when it leaves the definition (its home is kept unless `remove_home`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    /// Fixed uid (default: chosen by useradd).
    #[serde(default)]
    #[schemars(extend("not" = { "enum": [65535, 4_294_967_295_u32] }))]
    pub uid: Option<u32>,
    /// Primary group (default: a group named like the user).
    #[serde(default)]
    #[schemars(regex(pattern = patterns::ACCOUNT_KEY))]
    pub group: Option<String>,
    /// Supplementary groups, exactly.
    #[serde(default)]
    #[schemars(inner(regex(pattern = patterns::ACCOUNT_KEY)))]
    pub groups: Vec<String>,
    /// Login shell (default `/bin/bash`, `/usr/sbin/nologin` for system users).
    #[serde(default)]
    #[schemars(regex(pattern = patterns::ABSOLUTE_PATH))]
    pub shell: Option<String>,
    /// Home directory (default `/home/NAME`).
    #[serde(default)]
    #[schemars(regex(pattern = patterns::ABSOLUTE_PATH))]
    pub home: Option<String>,
    /// The GECOS comment.
    #[serde(default)]
    #[schemars(regex(pattern = patterns::COMMENT))]
    pub comment: Option<String>,
    /// A system user (uid from the system range, no home created).
    #[serde(default)]
    pub system: bool,
    /// SSH public keys, written to `HOME/.ssh/authorized_keys` (a file strackt owns).
    #[serde(default)]
    pub ssh_keys: Vec<String>,
    /// The password hash, by reference to `/etc/strackt/secrets/NAME` (never inline).
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// When the user leaves the definition, delete its home too (default: keep it).
    #[serde(default)]
    pub remove_home: bool,
}

impl UserSpec {
    /// The home directory.
    pub fn home_of(&self, name: &str) -> String {
        self.home.clone().unwrap_or_else(|| {
            if self.system {
                "/nonexistent".into()
            } else {
                format!("/home/{name}")
            }
        })
    }
    /// The primary group.
    pub fn group_of(&self, name: &str) -> String {
        self.group.clone().unwrap_or_else(|| name.to_string())
    }
    /// The login shell.
    pub fn shell_of(&self) -> String {
        self.shell.clone().unwrap_or_else(|| {
            if self.system {
                "/usr/sbin/nologin".into()
            } else {
                "/bin/bash".into()
            }
        })
    }
}

/// A value kept in `/etc/strackt/secrets/NAME` (root-only), never in the definition, a
/// generation or a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// The secret's file name.
    #[schemars(regex(pattern = patterns::SECRET))]
    pub secret: String,
}

/// Where secrets live.
pub const SECRETS_DIR: &str = "/etc/strackt/secrets";
