//! generation/ — immutable generation directories, the atomic `current` flip, which
//! directories retention prunes, and rebuilding a pruned one from its record (the record itself
//! lives in the state database and is never deleted).
//!
//! Layout under the state root (default `/var/lib/strackt`):
//! `generations/<N>/{definition.yaml, manifest.json, files/…, units/…}` and
//! `current -> generations/<N>` (a relative symlink). A generation is built in
//! `generations/.staging-<N>` and renamed into place, so a directory named `<N>` is always
//! complete. `current` is replaced by renaming a fresh symlink over it and fsyncing the
//! directory: at every instant it names a complete generation (or is absent before the first).
//!
//! This module owns strackt's own directories only; it knows nothing of D-Bus or of the
//! managed host files.

pub mod diff;
mod error;
pub mod record;
pub mod render;
pub mod retention;

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

pub use error::GenerationError;
pub use render::{
    render, ManagedDatabase, ManagedFile, ManagedGroup, ManagedUnit, Manifest, PackageLock,
    Rendered,
};

use crate::definition::generation_relative;
use crate::host::files::{atomic_write, fsync_dir, swap_symlink};
use crate::host::HostError;

/// A generation loaded from disk: its manifest and the unit texts the planner compares.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Generation {
    /// The manifest.
    pub manifest: Manifest,
    /// Texts of the units strackt writes, by unit name.
    pub unit_texts: std::collections::BTreeMap<String, String>,
    /// The nftables ruleset, when the generation has a firewall.
    pub firewall: Option<String>,
}

/// strackt's state directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

use crate::host::io_err as io;

impl Store {
    /// A store rooted at `root` (created if missing).
    ///
    /// # Errors
    /// When the directories cannot be created.
    pub fn open(root: &Path) -> Result<Store, HostError> {
        let gens = root.join("generations");
        fs::create_dir_all(&gens).map_err(io("create directory", &gens))?;
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    /// The state root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn generations(&self) -> PathBuf {
        self.root.join("generations")
    }

    /// Directory of generation `id`.
    pub fn dir(&self, id: u64) -> PathBuf {
        self.generations().join(id.to_string())
    }

    /// Write `rendered` as generation `id`. The directory appears complete or not at all.
    ///
    /// # Errors
    /// Any I/O failure; the staging directory is removed and `current` is untouched.
    pub fn build(
        &self,
        id: u64,
        rendered: &Rendered,
        created: &str,
    ) -> Result<Manifest, HostError> {
        let staging = self.generations().join(format!(".staging-{id}"));
        let _ = fs::remove_dir_all(&staging);
        let mut manifest = rendered.manifest.clone();
        manifest.id = id;
        manifest.created = created.to_string();
        let result = (|| {
            fs::create_dir_all(&staging).map_err(io("create directory", &staging))?;
            atomic_write(
                &staging.join("definition.yaml"),
                rendered.definition.as_bytes(),
                0o600,
                0,
                0,
            )?;
            for (path, content) in &rendered.files {
                atomic_write(
                    &staging.join(generation_relative(path)),
                    content,
                    0o600,
                    0,
                    0,
                )?;
            }
            if !manifest.packages.is_empty() {
                let lock = serde_json::to_vec_pretty(&manifest.packages)
                    .map_err(|e| io("serialize", &staging)(e.into()))?;
                atomic_write(&staging.join("lock.json"), &lock, 0o644, 0, 0)?;
            }
            if let Some(rules) = &rendered.firewall {
                atomic_write(&staging.join("firewall.nft"), rules.as_bytes(), 0o644, 0, 0)?;
            }
            for (unit, text) in &rendered.units {
                atomic_write(
                    &staging.join("units").join(unit),
                    text.as_bytes(),
                    0o644,
                    0,
                    0,
                )?;
            }
            let json = serde_json::to_vec_pretty(&manifest)
                .map_err(|e| io("serialize", &staging)(e.into()))?;
            // The manifest goes last: a staging dir without one was never finished.
            atomic_write(&staging.join("manifest.json"), &json, 0o644, 0, 0)?;
            let dest = self.dir(id);
            fs::rename(&staging, &dest).map_err(io("rename", &dest))?;
            fsync_dir(&self.generations())
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&staging);
        }
        result.map(|()| manifest)
    }

    /// The generation `current` points at, if any.
    ///
    /// # Errors
    /// When `current` exists but is not a link to `generations/<N>`.
    pub fn current(&self) -> Result<Option<u64>, HostError> {
        let link = self.root.join("current");
        match fs::read_link(&link) {
            Ok(target) => target
                .strip_prefix("generations")
                .ok()
                .and_then(|p| p.to_str())
                .and_then(|s| s.parse().ok())
                .map(Some)
                .ok_or_else(|| {
                    io("read link", &link)(std::io::Error::new(
                        ErrorKind::InvalidData,
                        format!("unexpected target {}", target.display()),
                    ))
                }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read link", &link)(e)),
        }
    }

    /// Point `current` at generation `id` (or remove it for "no generation") in one step.
    ///
    /// # Errors
    /// I/O failures; `current` is then unchanged.
    pub fn flip(&self, id: Option<u64>) -> Result<(), HostError> {
        let target = id.map(|id| Path::new("generations").join(id.to_string()));
        swap_symlink(&self.root.join("current"), target.as_deref())
    }

    /// Load generation `id`.
    ///
    /// # Errors
    /// When the directory or its manifest is missing or unreadable.
    pub fn load(&self, id: u64) -> Result<Generation, HostError> {
        let dir = self.dir(id);
        let path = dir.join("manifest.json");
        let bytes = fs::read(&path).map_err(io("read", &path))?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| io("parse", &path)(e.into()))?;
        let mut unit_texts = std::collections::BTreeMap::new();
        for (unit, spec) in &manifest.units {
            if spec.sha256.is_some() {
                let p = dir.join("units").join(unit);
                unit_texts.insert(
                    unit.clone(),
                    fs::read_to_string(&p).map_err(io("read", &p))?,
                );
            }
        }
        let firewall = match &manifest.firewall {
            Some(_) => {
                let p = dir.join("firewall.nft");
                Some(fs::read_to_string(&p).map_err(io("read", &p))?)
            }
            None => None,
        };
        Ok(Generation {
            manifest,
            unit_texts,
            firewall,
        })
    }

    /// The stored content of a managed file of generation `id`.
    ///
    /// # Errors
    /// When it cannot be read.
    pub fn file_content(&self, id: u64, path: &str) -> Result<Vec<u8>, HostError> {
        let p = self.dir(id).join(generation_relative(path));
        fs::read(&p).map_err(io("read", &p))
    }

    /// The record of generation `id` as its directory holds it (to backfill the state
    /// database for generations built before records were kept there).
    ///
    /// # Errors
    /// When its definition or manifest cannot be read.
    pub fn read_record(&self, id: u64) -> Result<crate::state::GenerationRecord, HostError> {
        let dir = self.dir(id);
        let read = |name: &str| {
            let p = dir.join(name);
            fs::read_to_string(&p).map_err(io("read", &p))
        };
        Ok(crate::state::GenerationRecord {
            definition: read("definition.yaml")?,
            manifest: read("manifest.json")?,
        })
    }

    /// Path of the stored unit file of generation `id`.
    pub fn unit_path(&self, id: u64, unit: &str) -> PathBuf {
        self.dir(id).join("units").join(unit)
    }

    /// Ids of complete generation directories on disk.
    ///
    /// # Errors
    /// When the directory cannot be listed.
    pub fn list(&self) -> Result<Vec<u64>, HostError> {
        let dir = self.generations();
        let mut ids: Vec<u64> = fs::read_dir(&dir)
            .map_err(io("list", &dir))?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Delete generation `id`: renamed aside first, so no half-deleted `<N>` is ever seen.
    ///
    /// # Errors
    /// When it cannot be renamed.
    pub fn remove(&self, id: u64) -> Result<(), HostError> {
        let dir = self.dir(id);
        let trash = self.generations().join(format!(".trash-{id}"));
        match fs::rename(&dir, &trash) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io("rename", &dir)(e)),
        }
        let _ = fs::remove_dir_all(&trash);
        Ok(())
    }

    /// Remove leftovers of interrupted builds, deletions and flips (`.staging-*`, `.trash-*`,
    /// the temporary link of `current`).
    pub fn clean_leftovers(&self) {
        if let Ok(entries) = fs::read_dir(self.generations()) {
            for e in entries.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.starts_with(".staging-") || name.starts_with(".trash-") {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        // The link a flip cut off by a crash left (`.current.<random>.strackt-tmp`; before: the
        // fixed `.current.tmp`).
        if let Ok(entries) = fs::read_dir(&self.root) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name == ".current.tmp"
                    || (name.starts_with(".current.") && name.ends_with(".strackt-tmp"))
                {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::parse;

    fn rendered(content: &str) -> Rendered {
        let src = format!("version: 1\nfiles:\n  /etc/motd: {{ content: {content:?} }}\nservices:\n  a: {{ exec: /bin/sleep 1 }}\n");
        render(&parse(&src, Path::new("t")).expect("valid"))
    }

    #[test]
    fn build_flip_load_and_remove() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        assert_eq!(store.current().expect("current"), None);
        let m1 = store.build(1, &rendered("one"), "t1").expect("build 1");
        let m2 = store.build(2, &rendered("two"), "t2").expect("build 2");
        assert_eq!(m1.id, 1);
        store.flip(Some(1)).expect("flip 1");
        assert_eq!(store.current().expect("current"), Some(1));
        assert_eq!(
            fs::read_link(dir.path().join("current")).expect("link"),
            Path::new("generations/1")
        );
        store.flip(Some(2)).expect("flip 2");
        assert_eq!(store.current().expect("current"), Some(2));
        let g = store.load(2).expect("load");
        assert_eq!(g.manifest, m2);
        assert!(g.unit_texts["a.service"].contains("ExecStart=/bin/sleep 1"));
        assert_eq!(store.file_content(2, "/etc/motd").expect("content"), b"two");
        assert_eq!(store.list().expect("list"), vec![1, 2]);
        let record = store.read_record(1).expect("record");
        assert!(record.definition.contains("one"));
        store.remove(1).expect("remove");
        assert_eq!(store.list().expect("list"), vec![2]);
        // A pruned generation comes back from its record, identical.
        let rebuilt = record::rebuild(
            &record.definition,
            &serde_json::from_str(&record.manifest).expect("manifest"),
        )
        .expect("rebuilds");
        assert_eq!(store.build(1, &rebuilt, "t1").expect("rebuild"), m1);
        assert_eq!(store.load(1).expect("load").manifest, m1);
        assert_eq!(store.file_content(1, "/etc/motd").expect("content"), b"one");
        store.flip(None).expect("flip none");
        assert_eq!(store.current().expect("current"), None);
    }

    #[test]
    fn leftovers_of_an_interrupted_build_are_not_generations() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        fs::create_dir_all(dir.path().join("generations/.staging-3/files")).expect("mkdir");
        assert_eq!(store.list().expect("list"), Vec::<u64>::new());
        store.clean_leftovers();
        assert!(!dir.path().join("generations/.staging-3").exists());
    }
}
