//! The fake host's users and groups, with the built-in root, adm, nobody and nogroup, and the
//! shadow tools' refusals (a primary group that does not exist, a user to modify that does
//! not). Only the model; arranging it is `FakeState`'s fields.

use std::collections::BTreeMap;

use super::FakeHost;
use crate::host::accounts::{Accounts, ManagedUser, UserState};
use crate::host::HostError;

impl Accounts for FakeHost {
    fn users(&self) -> Result<BTreeMap<String, UserState>, HostError> {
        Ok(self.state().users.clone())
    }
    fn groups(&self) -> Result<BTreeMap<String, u32>, HostError> {
        let mut g = self.state().groups.clone();
        g.extend([("root".to_string(), 0), ("adm".to_string(), 4)]);
        Ok(g)
    }
    fn password_hash(&self, user: &str) -> Result<Option<String>, HostError> {
        let s = self.state();
        Ok(s.users
            .contains_key(user)
            .then(|| s.shadow.get(user).cloned().unwrap_or_else(|| "!".into())))
    }
    fn create_group(&self, name: &str, gid: Option<u32>, _system: bool) -> Result<(), HostError> {
        let mut s = self.state();
        let gid = gid.unwrap_or(1000 + s.groups.len() as u32);
        s.groups.insert(name.into(), gid);
        Ok(())
    }
    fn set_gid(&self, name: &str, gid: u32) -> Result<(), HostError> {
        self.state().groups.insert(name.into(), gid);
        Ok(())
    }
    fn delete_group(&self, name: &str) -> Result<(), HostError> {
        self.state().groups.remove(name);
        Ok(())
    }
    fn create_user(&self, name: &str, spec: &ManagedUser) -> Result<(), HostError> {
        if spec.group == name && !self.groups()?.contains_key(name) {
            self.create_group(name, None, spec.system)?;
        }
        if !self.groups()?.contains_key(&spec.group) {
            return Err(HostError::Command {
                op: "useradd",
                message: format!("group '{}' does not exist", spec.group),
            });
        }
        let mut s = self.state();
        let uid = spec.uid.unwrap_or(2000 + s.users.len() as u32);
        s.users.insert(
            name.into(),
            UserState {
                uid,
                group: spec.group.clone(),
                groups: spec.groups.clone(),
                shell: spec.shell.clone(),
                home: spec.home.clone(),
                comment: spec.comment.clone(),
            },
        );
        Ok(())
    }
    fn modify_user(&self, name: &str, spec: &ManagedUser) -> Result<(), HostError> {
        let mut s = self.state();
        let u = s.users.get_mut(name).ok_or_else(|| HostError::Command {
            op: "usermod",
            message: format!("user '{name}' does not exist"),
        })?;
        *u = UserState {
            uid: spec.uid.unwrap_or(u.uid),
            group: spec.group.clone(),
            groups: spec.groups.clone(),
            shell: spec.shell.clone(),
            home: spec.home.clone(),
            comment: spec.comment.clone(),
        };
        Ok(())
    }
    fn set_password(&self, name: &str, hash: &str) -> Result<(), HostError> {
        self.state().shadow.insert(name.into(), hash.into());
        Ok(())
    }
    fn delete_user(&self, name: &str, _remove_home: bool) -> Result<(), HostError> {
        let mut s = self.state();
        s.users.remove(name);
        s.shadow.remove(name);
        if s.groups.contains_key(name) {
            s.groups.remove(name);
        }
        Ok(())
    }
}
