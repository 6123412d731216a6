//! host/repository.rs — the receiver's storage tree (`receiver.storage`, by default
//! `/var/lib/strackt-receiver`): the file work its REST server does there, as the receiver's
//! own user (`strackt-receiver`) over a tree that user owns.
//!
//! What this module owns:
//! - Preparing the storage directory ([`Repository::prepare`]) and a repository's directories
//!   ([`Repository::create_dirs`]).
//! - Reading: a file open for reading with its size ([`Repository::open_read`]), a directory's
//!   finished files with their sizes ([`Repository::list`]), a file's time of last change
//!   ([`Repository::modified`]), whether something is there ([`Repository::exists`]), the
//!   bytes under a directory ([`Repository::size`]) and the filesystem's space
//!   ([`Repository::space`]).
//! - Storing a new file ([`Repository::upload`]): written under a dot-name in its directory
//!   (`.NAME.PID.N`, created `O_EXCL`), fsynced, hard-linked to its name — which fails when
//!   something is there, so nothing is ever replaced, even by a race — the directory fsynced,
//!   and the dot-name removed. Dot-names are therefore never listed, and
//!   [`Repository::sweep`] removes the ones an upload cut off by a crash left behind.
//! - Removing one file ([`Repository::remove`]).
//!
//! What it must not do:
//! - Decide: which names exist (restic's layout), who may read, write or delete what (the
//!   append-only rules), quotas and the disk reserve are `receiver/rest/`'s. The names it is
//!   given are checked there first (a client name, a kind, 64 hex digits); here a name with
//!   `..`, `/` at its start or `.` is refused anyway, never joined.
//! - Run as root over another user's tree: it serves the receiver's own tree as the receiver's
//!   own user, so it uses plain paths (a link there could only have been made by that user).
//!   [`Repository::prepare`] refuses a storage directory that is not root's when run as root
//!   (`strackt receiver` by hand). Root's file work in other users' trees goes through
//!   [`super::tree`].
//!
//! Errors are the kernel's `io::Error`s; where a listing or a preparation can fail at more than
//! one path, [`Failure`] says which, so the REST answers ("… not found") read as they always
//! did.

use std::io::{self, ErrorKind};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use tokio::io::AsyncWriteExt;

/// A failure at one path of the storage tree.
#[derive(Debug)]
pub struct Failure {
    /// Where (absolute).
    pub path: PathBuf,
    /// What the kernel said.
    pub error: io::Error,
}

/// The receiver's storage tree.
#[derive(Debug)]
pub struct Repository {
    root: PathBuf,
    /// Numbers the dot-names of uploads in progress.
    uploads: AtomicU64,
}

impl Repository {
    /// The storage tree at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Repository {
        Repository {
            root: root.into(),
            uploads: AtomicU64::new(0),
        }
    }

    /// The storage directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The absolute path of `rel` (for messages, and for restic on this server).
    pub fn path(&self, rel: &Path) -> PathBuf {
        self.root.join(rel)
    }

    /// `rel` under the root; `InvalidInput` for anything but plain names.
    fn at(&self, rel: &Path) -> io::Result<PathBuf> {
        if rel.components().all(|c| matches!(c, Component::Normal(_))) {
            Ok(self.root.join(rel))
        } else {
            Err(io::Error::new(
                ErrorKind::InvalidInput,
                format!("{} is not a path inside the storage", rel.display()),
            ))
        }
    }

    /// Create the storage directory (and its parents) when missing, and check that this
    /// process can create files in it. Blocking.
    ///
    /// # Errors
    /// It cannot be created, or this user cannot write it; run as root, it is another user's
    /// (whose links root would then follow: the unit runs the receiver as its own user).
    pub fn prepare(&self) -> io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        std::fs::create_dir_all(&self.root)?;
        // The directory served, wherever a link of root's at `storage` leads.
        let owner = std::fs::metadata(&self.root)?.uid();
        if nix::unistd::geteuid().is_root() && owner != 0 {
            return Err(io::Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "{} belongs to uid {owner}: run as root, the receiver serves only a storage tree of root's (run it as its own user: systemctl start strackt-receiver)",
                    self.root.display()
                ),
            ));
        }
        nix::unistd::access(
            &self.root,
            nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
        )
        .map_err(io::Error::from)
    }

    /// Create each of `dirs` (and their parents) that is missing, in order.
    ///
    /// # Errors
    /// The first directory that could not be created.
    pub async fn create_dirs(&self, dirs: &[PathBuf]) -> Result<(), Failure> {
        for rel in dirs {
            let path = self.path(rel);
            let made = match self.at(rel) {
                Ok(p) => tokio::fs::create_dir_all(&p).await,
                Err(e) => Err(e),
            };
            made.map_err(|error| Failure { path, error })?;
        }
        Ok(())
    }

    /// Whether anything is at `rel` (`false` when that cannot be told).
    pub async fn exists(&self, rel: &Path) -> bool {
        match self.at(rel) {
            Ok(p) => tokio::fs::try_exists(&p).await.unwrap_or(false),
            Err(_) => false,
        }
    }

    /// The file `rel` open for reading, and its size.
    ///
    /// # Errors
    /// `NotFound` when it is not there; other I/O failures.
    pub async fn open_read(&self, rel: &Path) -> io::Result<(tokio::fs::File, u64)> {
        let file = tokio::fs::File::open(self.at(rel)?).await?;
        let size = file.metadata().await?.len();
        Ok((file, size))
    }

    /// The finished regular files in the directory `rel` — with `nested`, in each directory in
    /// it instead (restic's `data/xx/`) — by name with their sizes, sorted. Uploads in
    /// progress (dot-names) are left out.
    ///
    /// # Errors
    /// A directory or file that could not be read, with its path (`NotFound` when one went
    /// away meanwhile).
    pub async fn list(&self, rel: &Path, nested: bool) -> Result<Vec<(String, u64)>, Failure> {
        let top = self.path(rel);
        let top_abs = self.at(rel).map_err(|error| Failure {
            path: top.clone(),
            error,
        })?;
        let dirs = if nested {
            let mut subs = Vec::new();
            let mut rd = tokio::fs::read_dir(&top_abs)
                .await
                .map_err(|error| Failure {
                    path: top.clone(),
                    error,
                })?;
            while let Some(e) = rd.next_entry().await.map_err(|error| Failure {
                path: top.clone(),
                error,
            })? {
                subs.push(e.path());
            }
            subs
        } else {
            vec![top_abs]
        };
        let mut files: Vec<(String, u64)> = Vec::new();
        for d in dirs {
            let failed = |error| Failure {
                path: d.clone(),
                error,
            };
            let mut rd = tokio::fs::read_dir(&d).await.map_err(failed)?;
            while let Some(e) = rd.next_entry().await.map_err(failed)? {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let meta = e.metadata().await.map_err(|error| Failure {
                    path: e.path(),
                    error,
                })?;
                if meta.is_file() {
                    files.push((name, meta.len()));
                }
            }
        }
        files.sort();
        Ok(files)
    }

    /// When the file `rel` last changed (for retention: when the receiver stored it).
    ///
    /// # Errors
    /// `NotFound` when it is not there; other I/O failures.
    pub async fn modified(&self, rel: &Path) -> io::Result<SystemTime> {
        tokio::fs::metadata(self.at(rel)?).await?.modified()
    }

    /// Remove the file `rel`; returns the bytes it held.
    ///
    /// # Errors
    /// `NotFound` when it is not there; other I/O failures.
    pub async fn remove(&self, rel: &Path) -> io::Result<u64> {
        let path = self.at(rel)?;
        let size = tokio::fs::metadata(&path).await?.len();
        tokio::fs::remove_file(&path).await?;
        Ok(size)
    }

    /// Start storing the new file `rel`: an empty file under a fresh dot-name in its
    /// directory.
    ///
    /// # Errors
    /// `NotFound` when the directory is missing; other I/O failures.
    pub async fn upload(&self, rel: &Path) -> io::Result<Upload> {
        let path = self.at(rel)?;
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(io::Error::new(ErrorKind::InvalidInput, "no directory"));
        };
        let temp = dir.join(format!(
            ".{}.{}.{}",
            name.to_string_lossy(),
            std::process::id(),
            self.uploads.fetch_add(1, Ordering::Relaxed)
        ));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .await?;
        Ok(Upload {
            file: Some(file),
            temp: Some(temp),
            path,
        })
    }

    /// Remove what uploads cut off by a crash or a restart left (dot-names) in each of `dirs`;
    /// returns how many. What cannot be read or removed is left. Blocking.
    pub fn sweep(&self, dirs: &[PathBuf]) -> usize {
        let mut removed = 0;
        for rel in dirs {
            let Ok(dir) = self.at(rel) else {
                continue;
            };
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with('.')
                    && std::fs::remove_file(e.path()).is_ok()
                {
                    removed += 1;
                }
            }
        }
        removed
    }

    /// The bytes of the files under `rel` (not following links); 0 when it does not exist.
    /// Blocking: walks the tree.
    pub fn size(&self, rel: &Path) -> u64 {
        let Ok(top) = self.at(rel) else {
            return 0;
        };
        let mut total = 0u64;
        let mut todo = vec![top];
        while let Some(d) = todo.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                match e.file_type() {
                    Ok(t) if t.is_dir() => todo.push(e.path()),
                    Ok(t) if t.is_file() => {
                        total = total.saturating_add(e.metadata().map_or(0, |m| m.len()));
                    }
                    _ => {}
                }
            }
        }
        total
    }

    /// The storage filesystem's (available, total) bytes. Blocking (one `statvfs`).
    ///
    /// # Errors
    /// `statvfs` failed.
    pub fn space(&self) -> io::Result<(u64, u64)> {
        let fs = nix::sys::statvfs::statvfs(self.root.as_path())?;
        let block = fs.fragment_size();
        Ok((
            fs.blocks_available().saturating_mul(block),
            fs.blocks().saturating_mul(block),
        ))
    }
}

/// A new file on its way in (see [`Repository::upload`]). Dropped unfinished (the client went
/// away), its dot-name is removed in the background.
#[derive(Debug)]
pub struct Upload {
    file: Option<tokio::fs::File>,
    /// The dot-name, until it is removed.
    temp: Option<PathBuf>,
    /// Its name.
    path: PathBuf,
}

impl Upload {
    /// Append `bytes`.
    ///
    /// # Errors
    /// I/O failures (a full disk).
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.write_all(bytes).await,
            None => Err(io::Error::other("upload already finished")),
        }
    }

    /// Make it durable and give it its name: fsync, hard link (`AlreadyExists` when something
    /// is there — nothing is replaced), fsync of the directory. The dot-name goes either way.
    ///
    /// # Errors
    /// `AlreadyExists`; I/O failures.
    pub async fn store(mut self) -> io::Result<()> {
        let result = self.link().await;
        self.discard().await;
        result
    }

    async fn link(&mut self) -> io::Result<()> {
        let (Some(file), Some(temp)) = (self.file.take(), self.temp.as_ref()) else {
            return Err(io::Error::other("upload already finished"));
        };
        file.sync_all().await?;
        drop(file);
        tokio::fs::hard_link(temp, &self.path).await?;
        if let Some(dir) = self.path.parent() {
            tokio::fs::File::open(dir).await?.sync_all().await?;
        }
        Ok(())
    }

    /// Give it up: the dot-name is removed (a failure to is left to [`Repository::sweep`]).
    pub async fn discard(mut self) {
        self.file = None;
        if let Some(temp) = self.temp.take() {
            let _ = tokio::fs::remove_file(&temp).await;
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        let Some(temp) = self.temp.take() else {
            return;
        };
        // Without a runtime (its shutdown), the next start's sweep removes it.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = tokio::fs::remove_file(&temp).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::tree::ls;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn as_root_only_a_storage_tree_of_roots_is_served() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let storage = tmp.path().join("storage");
        Repository::new(&storage).prepare().expect("made, root's");
        nix::unistd::chown(&storage, Some(nix::unistd::Uid::from_raw(65534)), None).expect("chown");
        let e = Repository::new(&storage)
            .prepare()
            .expect_err("another user's");
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("belongs to uid 65534"), "{e}");
    }

    #[tokio::test]
    async fn an_upload_gets_its_name_only_when_stored_and_never_replaces_a_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = Repository::new(tmp.path());
        repo.create_dirs(&["web1/keys".into()]).await.expect("dirs");
        let rel = Path::new("web1/keys").join(ID);
        let mut up = repo.upload(&rel).await.expect("upload");
        up.write(b"first").await.expect("write");
        assert!(!repo.exists(&rel).await, "not there before it is stored");
        assert_eq!(ls(&tmp.path().join("web1/keys")).len(), 1, "its dot-name");
        assert_eq!(
            repo.list(Path::new("web1/keys"), false).await.expect("ls"),
            [],
            "an upload in progress is not listed"
        );
        up.store().await.expect("stored");
        assert_eq!(ls(&tmp.path().join("web1/keys")), [ID], "dot-name gone");
        let mut again = repo.upload(&rel).await.expect("upload");
        again.write(b"second").await.expect("write");
        let e = again.store().await.expect_err("exists");
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        assert_eq!(ls(&tmp.path().join("web1/keys")), [ID]);
        let (_, size) = repo.open_read(&rel).await.expect("open");
        assert_eq!(size, 5, "the first content stays");
        let dropped = repo.upload(&rel).await.expect("upload");
        drop(dropped);
        for _ in 0..500 {
            if ls(&tmp.path().join("web1/keys")).len() == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(
            ls(&tmp.path().join("web1/keys")),
            [ID],
            "an abandoned upload's dot-name is removed"
        );
        assert_eq!(repo.remove(&rel).await.expect("remove"), 5);
        assert!(!repo.exists(&rel).await);
        let e = repo.remove(&rel).await.expect_err("gone");
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn listings_show_finished_files_with_sizes_and_say_where_they_failed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = Repository::new(tmp.path());
        let data = tmp.path().join("web1/data");
        std::fs::create_dir_all(data.join("ab")).expect("mkdir");
        std::fs::create_dir_all(data.join("cd")).expect("mkdir");
        std::fs::write(data.join("cd/c2"), b"ccc").expect("write");
        std::fs::write(data.join("ab/a1"), b"a").expect("write");
        std::fs::write(data.join("ab/.a1.7.0"), b"aa").expect("write");
        std::fs::create_dir(data.join("ab/sub")).expect("mkdir");
        let listed = repo.list(Path::new("web1/data"), true).await.expect("ls");
        assert_eq!(listed, [("a1".to_string(), 1), ("c2".to_string(), 3)]);
        assert_eq!(
            repo.list(Path::new("web1/data/ab"), false)
                .await
                .expect("ls"),
            [("a1".to_string(), 1)]
        );
        let e = repo
            .list(Path::new("web1/keys"), false)
            .await
            .expect_err("missing");
        assert_eq!(e.path, tmp.path().join("web1/keys"));
        assert_eq!(e.error.kind(), ErrorKind::NotFound);
        assert_eq!(repo.size(Path::new("web1")), 6);
        assert_eq!(repo.size(Path::new("nobody")), 0);
        assert_eq!(repo.sweep(&["web1/data/ab".into(), "web1/gone".into()]), 1);
        assert_eq!(ls(&data.join("ab")), ["a1", "sub"]);
        assert_eq!(repo.sweep(&["web1/data/ab".into()]), 0);
    }

    #[tokio::test]
    async fn only_plain_names_inside_the_storage_are_used() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let storage = tmp.path().join("storage");
        let repo = Repository::new(&storage);
        repo.prepare().expect("prepared");
        assert!(storage.is_dir());
        std::fs::write(tmp.path().join("outside"), b"x").expect("write");
        for bad in ["../outside", "/etc/passwd", "./x", "web1/../../outside"] {
            let e = repo.open_read(Path::new(bad)).await.expect_err(bad);
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}");
            assert!(!repo.exists(Path::new(bad)).await, "{bad}");
            let e = repo.remove(Path::new(bad)).await.expect_err(bad);
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}");
            assert!(repo.upload(Path::new(bad)).await.is_err(), "{bad}");
        }
        assert!(tmp.path().join("outside").exists());
        assert_eq!(ls(tmp.path()), ["outside", "storage"]);
        let (available, total) = repo.space().expect("statvfs");
        assert!(available <= total && total > 0);
    }
}
