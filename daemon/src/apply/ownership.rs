//! What strackt owns on the host: the files and unit files it wrote. Kept in
//! `<root>/owned.json`, rewritten atomically *before* strackt writes a file and *after* it
//! removes one, so the record is never smaller than reality.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::host::files::atomic_write;
use crate::host::private::read_private;
use crate::host::HostError;
use crate::plan::FirewallRecord;

/// The ownership record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ownership {
    /// Managed file paths.
    pub files: BTreeSet<String>,
    /// Unit files strackt wrote.
    pub units: BTreeSet<String>,
    /// Users strackt created.
    #[serde(default)]
    pub users: BTreeSet<String>,
    /// Groups strackt created.
    #[serde(default)]
    pub groups: BTreeSet<String>,
    /// Packages installed when strackt first took the host over.
    #[serde(default)]
    pub base_packages: Option<BTreeSet<String>>,
    /// The firewall strackt applied to its nftables table.
    #[serde(default)]
    pub firewall: Option<FirewallRecord>,
    #[serde(skip)]
    path: Option<PathBuf>,
}

impl Ownership {
    /// Load from `<root>/owned.json` (empty when absent, or not a regular file). `None` root: in
    /// memory only. Read as strackt's private files are: a link there is followed only when
    /// root alone could have put it.
    ///
    /// # Errors
    /// When the file exists but cannot be read (a refused link included) or parsed.
    pub fn load(root: Option<&Path>) -> Result<Ownership, HostError> {
        let Some(root) = root else {
            return Ok(Ownership::default());
        };
        let path = root.join("owned.json");
        let mut o: Ownership = match read_private(&path)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| HostError::Io {
                op: "parse",
                path: path.clone(),
                source: e.into(),
            })?,
            None => Ownership::default(),
        };
        o.path = Some(path);
        Ok(o)
    }

    fn save(&self) -> Result<(), HostError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let json = serde_json::to_vec_pretty(self).map_err(|e| HostError::Io {
            op: "serialize",
            path: path.clone(),
            source: e.into(),
        })?;
        atomic_write(path, &json, 0o600, 0, 0)
    }

    pub(crate) fn own_file(&mut self, path: &str) -> Result<(), HostError> {
        if self.files.insert(path.to_string()) {
            self.save()
        } else {
            Ok(())
        }
    }
    pub(crate) fn forget_file(&mut self, path: &str) -> Result<(), HostError> {
        if self.files.remove(path) {
            self.save()
        } else {
            Ok(())
        }
    }
    pub(crate) fn own_unit(&mut self, unit: &str) -> Result<(), HostError> {
        if self.units.insert(unit.to_string()) {
            self.save()
        } else {
            Ok(())
        }
    }
    fn accounts(&mut self, kind: &str) -> &mut BTreeSet<String> {
        if kind == "user" {
            &mut self.users
        } else {
            &mut self.groups
        }
    }
    pub(crate) fn own_account(&mut self, kind: &str, name: &str) -> Result<(), HostError> {
        if self.accounts(kind).insert(name.to_string()) {
            self.save()
        } else {
            Ok(())
        }
    }
    pub(crate) fn forget_account(&mut self, kind: &str, name: &str) -> Result<(), HostError> {
        if self.accounts(kind).remove(name) {
            self.save()
        } else {
            Ok(())
        }
    }
    /// Record the packages the host had when strackt took it over (once).
    ///
    /// # Errors
    /// When the record cannot be saved.
    pub fn record_base(&mut self, installed: BTreeSet<String>) -> Result<(), HostError> {
        if self.base_packages.is_some() {
            return Ok(());
        }
        self.base_packages = Some(installed);
        self.save()
    }
    pub(crate) fn record_firewall(
        &mut self,
        record: Option<FirewallRecord>,
    ) -> Result<(), HostError> {
        self.firewall = record;
        self.save()
    }
    pub(crate) fn forget_unit(&mut self, unit: &str) -> Result<(), HostError> {
        if self.units.remove(unit) {
            self.save()
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_linked_in_by_another_user_is_refused_not_read() {
        use std::os::unix::fs::{chown, symlink};
        let dir = tempfile::tempdir().expect("tempdir");
        let own = dir.path().join("own");
        std::fs::create_dir(&own).expect("mkdir");
        std::fs::write(
            own.join("owned.json"),
            r#"{"files":["/etc/motd"],"units":[]}"#,
        )
        .expect("write");
        let o = Ownership::load(Some(&own)).expect("strackt's own record");
        assert!(o.files.contains("/etc/motd"), "{o:?}");
        assert_eq!(
            Ownership::load(Some(&dir.path().join("none"))).expect("absent"),
            Ownership {
                path: Some(dir.path().join("none/owned.json")),
                ..Ownership::default()
            }
        );

        // A state root another user owns: the record they link in is not followed, so strackt
        // is not told it owns (and may remove) files it never wrote.
        let forged = dir.path().join("forged.json");
        std::fs::write(&forged, r#"{"files":["/etc/shadow"],"units":[]}"#).expect("write");
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).expect("mkdir");
        symlink(&forged, theirs.join("owned.json")).expect("link");
        chown(&theirs, Some(4242), Some(4242)).expect("chown");
        let e = Ownership::load(Some(&theirs)).expect_err("a planted link");
        assert!(e.to_string().contains("not followed"), "{e}");
    }
}
