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
//! This module owns the layout and the order of strackt's own directories only; it does no
//! file work by path itself: every read, write, rename and removal goes through
//! [`crate::host::store`] (no link below the state root followed, a directory that is not
//! root's or that others can write refused) and the `current` swap through
//! [`crate::host::files::swap_symlink`]. It knows nothing of D-Bus or of the managed host
//! files.

pub mod diff;
mod error;
pub mod record;
pub mod render;
pub mod retention;

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

pub use error::GenerationError;
pub use render::{
    render, ManagedDatabase, ManagedFile, ManagedGroup, ManagedUnit, Manifest, PackageLock,
    Rendered,
};

use crate::definition::generation_relative;
use crate::host::files::swap_symlink;
use crate::host::store::OwnDir;
use crate::host::tree::Kind;
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

/// strackt's state directory. Every file operation goes through [`OwnDir`]: the root and
/// `generations/` must be root's and writable by nobody else, and no link below the root is
/// followed.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// Mode of the store's directories (`generations/`, each `<N>` and what is in it): what they
/// had when `create_dir_all` made them under the service's `UMask=0022`.
const DIR_MODE: u32 = 0o755;

impl Store {
    /// A store rooted at `root` (created if missing).
    ///
    /// # Errors
    /// When the directories cannot be created, or the root or `generations/` is a link, not
    /// root's, or writable by others.
    pub fn open(root: &Path) -> Result<Store, HostError> {
        let store = Store {
            root: root.to_path_buf(),
        };
        OwnDir::open_root(root, Some(DIR_MODE), "create directory")?.create_subdir(
            "generations",
            DIR_MODE,
            "create directory",
        )?;
        Ok(store)
    }

    /// The store at `root` as it is, for reading only (`strackt export`): nothing is created,
    /// and what is read is checked as [`Store::open`]'s store is.
    pub fn at(root: &Path) -> Store {
        Store {
            root: root.to_path_buf(),
        }
    }

    /// The state root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn generations(&self) -> PathBuf {
        self.root.join("generations")
    }

    /// The state root, open and checked.
    fn root_dir(&self) -> Result<OwnDir, HostError> {
        OwnDir::open_root(&self.root, None, "open")
    }

    /// `generations/`, open and checked (made when missing, as [`Store::open`] does).
    fn generations_dir(&self) -> Result<OwnDir, HostError> {
        self.root_dir()?
            .create_subdir("generations", DIR_MODE, "create directory")
    }

    /// Directory of generation `id`.
    pub fn dir(&self, id: u64) -> PathBuf {
        self.generations().join(id.to_string())
    }

    /// Generation `id`'s directory, open and checked; `None` when it is not on disk.
    fn generation_dir(&self, id: u64) -> Result<Option<OwnDir>, HostError> {
        self.generations_dir()?.subdir(id.to_string())
    }

    /// Generation `id`'s directory, which must be there (for reading it).
    fn existing(&self, id: u64, first: &str) -> Result<OwnDir, HostError> {
        self.generation_dir(id)?.ok_or_else(|| HostError::Io {
            op: "read",
            path: self.dir(id).join(first),
            source: std::io::Error::from_raw_os_error(nix::libc::ENOENT),
        })
    }

    /// Whether generation `id`'s directory is on disk (a link in its place is not).
    ///
    /// # Errors
    /// When `generations/` cannot be read.
    pub fn has(&self, id: u64) -> Result<bool, HostError> {
        Ok(self.generations_dir()?.kind(id.to_string())? == Some(Kind::Dir))
    }

    /// Whether generation `id`'s directory has its manifest (it was built completely).
    ///
    /// # Errors
    /// When `generations/` cannot be read, or `<id>` is a link or not root's.
    pub fn has_manifest(&self, id: u64) -> Result<bool, HostError> {
        match self.generation_dir(id)? {
            Some(dir) => Ok(dir.kind("manifest.json")?.is_some()),
            None => Ok(false),
        }
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
        let gens = self.generations_dir()?;
        let staging_name = format!(".staging-{id}");
        let staging = self.generations().join(&staging_name);
        let _ = gens.remove(&staging_name);
        let mut manifest = rendered.manifest.clone();
        manifest.id = id;
        manifest.created = created.to_string();
        let result = (|| {
            let dir = gens.create_subdir(&staging_name, DIR_MODE, "create directory")?;
            let write =
                |rel: &Path, content: &[u8], mode: u32| dir.write(rel, content, mode, DIR_MODE);
            write(
                Path::new("definition.yaml"),
                rendered.definition.as_bytes(),
                0o600,
            )?;
            for (path, content) in &rendered.files {
                write(&generation_relative(path), content, 0o600)?;
            }
            if !manifest.packages.is_empty() {
                let lock = serde_json::to_vec_pretty(&manifest.packages)
                    .map_err(|e| crate::host::io_err("serialize", &staging)(e.into()))?;
                write(Path::new("lock.json"), &lock, 0o644)?;
            }
            if let Some(rules) = &rendered.firewall {
                write(Path::new("firewall.nft"), rules.as_bytes(), 0o644)?;
            }
            for (unit, text) in &rendered.units {
                write(&Path::new("units").join(unit), text.as_bytes(), 0o644)?;
            }
            let json = serde_json::to_vec_pretty(&manifest)
                .map_err(|e| crate::host::io_err("serialize", &staging)(e.into()))?;
            // The manifest goes last: a staging dir without one was never finished.
            write(Path::new("manifest.json"), &json, 0o644)?;
            // One rename puts the complete directory in place; fsynced so it survives a power
            // cut.
            let name = id.to_string();
            if !gens.rename(&staging_name, &name, &self.dir(id))? {
                return Err(crate::host::io_err("rename", &self.dir(id))(
                    std::io::Error::from_raw_os_error(nix::libc::ENOENT),
                ));
            }
            gens.sync()
        })();
        if result.is_err() {
            let _ = gens.remove(&staging_name);
        }
        result.map(|()| manifest)
    }

    /// The generation `current` points at, if any.
    ///
    /// # Errors
    /// When `current` exists but is not a link to `generations/<N>`.
    pub fn current(&self) -> Result<Option<u64>, HostError> {
        let link = self.root.join("current");
        match self.root_dir()?.read_link("current")? {
            Some(target) => target
                .strip_prefix("generations")
                .ok()
                .and_then(|p| p.to_str())
                .and_then(|s| s.parse().ok())
                .map(Some)
                .ok_or_else(|| {
                    crate::host::io_err("read link", &link)(std::io::Error::new(
                        ErrorKind::InvalidData,
                        format!("unexpected target {}", target.display()),
                    ))
                }),
            None => Ok(None),
        }
    }

    /// Point `current` at generation `id` (or remove it for "no generation") in one step.
    ///
    /// # Errors
    /// I/O failures; `current` is then unchanged.
    pub fn flip(&self, id: Option<u64>) -> Result<(), HostError> {
        // The root is checked first: the link is only ever swapped in a directory of root's.
        self.root_dir()?;
        let target = id.map(|id| Path::new("generations").join(id.to_string()));
        swap_symlink(&self.root.join("current"), target.as_deref())
    }

    /// Load generation `id`.
    ///
    /// # Errors
    /// When the directory or its manifest is missing or unreadable.
    pub fn load(&self, id: u64) -> Result<Generation, HostError> {
        let dir = self.existing(id, "manifest.json")?;
        let path = dir.path().join("manifest.json");
        let bytes = dir.read("manifest.json")?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| crate::host::io_err("parse", &path)(e.into()))?;
        let mut unit_texts = std::collections::BTreeMap::new();
        for (unit, spec) in &manifest.units {
            if spec.sha256.is_some() {
                unit_texts.insert(
                    unit.clone(),
                    dir.read_string(Path::new("units").join(unit))?,
                );
            }
        }
        let firewall = match &manifest.firewall {
            Some(_) => Some(dir.read_string("firewall.nft")?),
            None => None,
        };
        Ok(Generation {
            manifest,
            unit_texts,
            firewall,
        })
    }

    /// The current generation's definition text and manifest; `None` when no generation is
    /// current. `current` must point at `generations/<N>`, and every directory on the way is
    /// root's and writable by nobody else.
    ///
    /// # Errors
    /// The root is missing or refused, `current` is no such link, or the files cannot be read.
    pub fn read_current(&self) -> Result<Option<(String, Manifest)>, HostError> {
        let Some(id) = self.current()? else {
            return Ok(None);
        };
        let dir = self.existing(id, "definition.yaml")?;
        let text = dir.read_string("definition.yaml")?;
        let path = dir.path().join("manifest.json");
        let manifest = serde_json::from_slice(&dir.read("manifest.json")?)
            .map_err(|e| crate::host::io_err("parse", &path)(e.into()))?;
        Ok(Some((text, manifest)))
    }

    /// The stored content of a managed file of generation `id`.
    ///
    /// # Errors
    /// When it cannot be read.
    pub fn file_content(&self, id: u64, path: &str) -> Result<Vec<u8>, HostError> {
        let rel = generation_relative(path);
        self.existing(id, &rel.to_string_lossy())?.read(&rel)
    }

    /// The record of generation `id` as its directory holds it (to backfill the state
    /// database for generations built before records were kept there).
    ///
    /// # Errors
    /// When its definition or manifest cannot be read.
    pub fn read_record(&self, id: u64) -> Result<crate::state::GenerationRecord, HostError> {
        let dir = self.existing(id, "definition.yaml")?;
        Ok(crate::state::GenerationRecord {
            definition: dir.read_string("definition.yaml")?,
            manifest: dir.read_string("manifest.json")?,
        })
    }

    /// Path of the stored unit file of generation `id`.
    pub fn unit_path(&self, id: u64, unit: &str) -> PathBuf {
        self.dir(id).join("units").join(unit)
    }

    /// Ids of complete generation directories on disk (a link named like one is none).
    ///
    /// # Errors
    /// When the directory cannot be listed.
    pub fn list(&self) -> Result<Vec<u64>, HostError> {
        let mut ids: Vec<u64> = self
            .generations_dir()?
            .subdirs()?
            .into_iter()
            .filter_map(|name| name.to_str()?.parse().ok())
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Delete generation `id`: renamed aside first, so no half-deleted `<N>` is ever seen.
    ///
    /// # Errors
    /// When it cannot be renamed.
    pub fn remove(&self, id: u64) -> Result<(), HostError> {
        let gens = self.generations_dir()?;
        let trash = format!(".trash-{id}");
        if gens.rename(id.to_string(), &trash, &self.dir(id))? {
            let _ = gens.remove(&trash);
        }
        Ok(())
    }

    /// Remove leftovers of interrupted builds, deletions and flips (`.staging-*`, `.trash-*`,
    /// the temporary link of `current`).
    pub fn clean_leftovers(&self) {
        let Ok(root) = self.root_dir() else {
            return;
        };
        if let Ok(Some(gens)) = root.subdir("generations") {
            for name in gens.entries().unwrap_or_default() {
                let text = name.to_string_lossy();
                if text.starts_with(".staging-") || text.starts_with(".trash-") {
                    let _ = gens.remove(&name);
                }
            }
        }
        // The link a flip cut off by a crash left (`.current.<random>.strackt-tmp`; before: the
        // fixed `.current.tmp`). Removed as what it is (a link, never its target).
        for name in root.entries().unwrap_or_default() {
            let text = name.to_string_lossy();
            if (text == ".current.tmp"
                || (text.starts_with(".current.") && text.ends_with(".strackt-tmp")))
                && matches!(root.kind(&name), Ok(Some(Kind::Symlink | Kind::File)))
            {
                let _ = root.remove(&name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

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
        let rebuilt = record::render_again(
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

    /// Everything under `dir`, sorted (what an attacker's target holds).
    fn tree(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = walk(dir)
            .into_iter()
            .map(|p| p.strip_prefix(dir).expect("below").display().to_string())
            .collect();
        names.sort();
        names
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir).expect("ls").map(|e| e.expect("entry")) {
            out.push(e.path());
            if e.file_type().expect("type").is_dir() {
                out.extend(walk(&e.path()));
            }
        }
        out
    }

    #[test]
    fn a_link_in_place_of_generations_is_refused_not_written_through() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("state");
        let elsewhere = dir.path().join("etc");
        fs::create_dir_all(&root).expect("mkdir");
        fs::create_dir_all(&elsewhere).expect("mkdir");
        std::os::unix::fs::symlink(&elsewhere, root.join("generations")).expect("symlink");
        let e = Store::open(&root).expect_err("a link is no store directory");
        assert!(e.to_string().contains("not followed"), "{e}");
        let store = Store { root: root.clone() };
        assert!(store.build(1, &rendered("one"), "t1").is_err());
        assert!(store.list().is_err());
        assert_eq!(tree(&elsewhere), Vec::<String>::new());
    }

    #[test]
    fn a_link_in_place_of_a_generation_is_not_read_listed_or_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("state")).expect("open");
        store.build(1, &rendered("one"), "t1").expect("build 1");
        // A directory that looks like generation 2, and a link to it in its place.
        let planted = dir.path().join("planted");
        fs::create_dir_all(planted.join("units")).expect("mkdir");
        let mut manifest = store.load(1).expect("load").manifest;
        manifest.id = 2;
        fs::write(
            planted.join("manifest.json"),
            serde_json::to_vec(&manifest).expect("json"),
        )
        .expect("write");
        fs::write(
            planted.join("units/a.service"),
            "[Service]\nExecStart=/bin/evil\n",
        )
        .expect("write");
        std::os::unix::fs::symlink(&planted, store.dir(2)).expect("symlink");
        let e = store.load(2).expect_err("refused");
        assert!(e.to_string().contains("not followed"), "{e}");
        assert!(store.file_content(2, "/etc/motd").is_err());
        assert!(store.read_record(2).is_err());
        assert_eq!(store.list().expect("list"), vec![1]);
        assert!(!store.has(2).expect("has"));
        // A staging directory planted as a link: building removes the link, not its target.
        std::os::unix::fs::symlink(&planted, store.generations().join(".staging-3"))
            .expect("symlink");
        store.build(3, &rendered("three"), "t3").expect("build 3");
        store.remove(2).expect("remove the link");
        store.clean_leftovers();
        assert_eq!(
            tree(&planted),
            ["manifest.json", "units", "units/a.service"]
        );
        assert_eq!(store.list().expect("list"), vec![1, 3]);
    }

    #[test]
    fn a_store_directory_of_another_user_or_open_to_all_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let gens = dir.path().join("generations");
        fs::set_permissions(&gens, fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(store.build(1, &rendered("one"), "t1").is_err());
        assert!(Store::open(dir.path()).is_err());
        fs::set_permissions(&gens, fs::Permissions::from_mode(0o755)).expect("chmod");
        store.build(1, &rendered("one"), "t1").expect("build");
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(store.dir(1), Some(4242), Some(4242)).expect("chown");
            let e = store.load(1).expect_err("refused");
            assert!(e.to_string().contains("belongs to uid 4242"), "{e}");
        }
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
