//! host/store.rs — the directories strackt keeps for itself under its state root (the
//! generation store: `generations/<N>`, its staging and trash directories, the `current` link
//! beside them), and the file work in them.
//!
//! What this module owns:
//! - Reaching such a directory: the state root as [`Dir::open`] reaches any path (a link on the
//!   way only in a directory root alone can change), then **refused unless it is this
//!   process's (root's) and nobody else can write it**. Every directory below it is opened
//!   `O_NOFOLLOW`, one name at a time, and checked the same way: a link where a directory is
//!   expected is refused, never followed, and so is a directory of another user.
//! - Reading, writing, renaming, listing and removing there, every call relative to an open
//!   directory's descriptor (through [`Dir`]); trees are removed without following a link
//!   inside.
//! - Errors that read as the path-based calls' did (`read /var/lib/strackt/generations/3/
//!   manifest.json: No such file or directory (os error 2)`): the kernel's error, with the
//!   operation and the whole path once.
//!
//! What it must not do:
//! - Work in a tree another user can write (homes, app roots, restore targets): that is
//!   [`super::tree`] through [`super::files`].
//! - Decide the layout: which names a generation has, and in which order they are written
//!   and renamed for atomicity, is `generation/`'s business.

use std::ffi::{OsStr, OsString};
use std::io::{self, ErrorKind, Read};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use rustix::io::Errno;

use super::tree::{Dir, Kind, Owner};
use super::HostError;

/// A directory of strackt's own, open, and checked to be root's and writable by nobody else.
#[derive(Debug)]
pub struct OwnDir {
    dir: Dir,
}

/// `op` on `path` failed with `source` (the kernel's error, or a refusal).
fn fail(op: &'static str, path: &Path, source: io::Error) -> HostError {
    HostError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The error of finding a link where strackt keeps a directory or file of its own.
fn link_refused(path: &Path) -> io::Error {
    io::Error::new(
        ErrorKind::PermissionDenied,
        format!(
            "{} is a symbolic link in strackt's own state; not followed",
            path.display()
        ),
    )
}

impl OwnDir {
    /// Refused unless `dir` is this process's user's (root's, in the daemon) and neither its
    /// group nor others can write it: a link or file in it can then only be root's doing.
    fn checked(dir: Dir) -> io::Result<OwnDir> {
        let (owner, mode) = dir.owner_and_mode()?;
        if owner.uid != Owner::process().uid || mode & 0o022 != 0 {
            return Err(io::Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "{} belongs to uid {} with mode {:04o}: strackt keeps its state only in \
                     directories of its own that nobody else can write",
                    dir.path().display(),
                    owner.uid,
                    mode
                ),
            ));
        }
        Ok(OwnDir { dir })
    }

    /// Open the state root `path` (absolute), creating it and its missing parents with
    /// `mode` when `create` says so.
    ///
    /// # Errors
    /// `op` on `path`: missing (without `create`), a link on the way in a directory another
    /// user can change, not root's or writable by others, I/O failures.
    pub fn open_root(
        path: &Path,
        create: Option<u32>,
        op: &'static str,
    ) -> Result<OwnDir, HostError> {
        // A relative root (tests, `STRACKT_ROOT=state`) is relative to the working directory.
        let abs = std::path::absolute(path).map_err(|e| fail(op, path, e))?;
        let dir = match create {
            Some(mode) => Dir::create_all(&abs, mode, Owner::process()),
            None => Dir::open(&abs),
        };
        dir.and_then(OwnDir::checked).map_err(|e| fail(op, path, e))
    }

    /// The path this directory was reached by.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The directory `name` directly in this one, `None` when nothing is there; with
    /// `create`, made (`mode`, this process's owner) when missing. A link there is refused.
    fn child(&self, name: &OsStr, create: Option<u32>) -> io::Result<Option<OwnDir>> {
        let path = self.dir.path().join(name);
        match self.dir.kind(name)? {
            Some(Kind::Dir) => {}
            Some(Kind::Symlink) => return Err(link_refused(&path)),
            Some(_) => return Err(Errno::NOTDIR.into()),
            None => match create {
                None => return Ok(None),
                Some(mode) => match self.dir.create_dir(name, mode, Owner::process()) {
                    Ok(d) => return OwnDir::checked(d).map(Some),
                    // Made meanwhile: opened below like one that was there.
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                },
            },
        }
        // `open_dir` follows no link either: whatever replaced the directory since is refused.
        self.dir.open_dir(name).and_then(OwnDir::checked).map(Some)
    }

    /// The directory `rel` below this one, every component checked as [`OwnDir::subdir`]
    /// does; with `create`, missing ones are made with `mode`.
    fn descend(&self, rel: &Path, create: Option<u32>) -> io::Result<OwnDir> {
        let mut cur: Option<OwnDir> = None;
        for name in super::tree::names(rel)? {
            let next = cur.as_ref().unwrap_or(self).child(name, create)?;
            cur = Some(next.ok_or_else(|| io::Error::from(Errno::NOENT))?);
        }
        match cur {
            Some(d) => Ok(d),
            None => self.dir.open_dir(".").and_then(OwnDir::checked),
        }
    }

    /// The directory `name` in this one; `None` when nothing is there.
    ///
    /// # Errors
    /// `open` of it: a link or anything but a directory there, a directory not root's or
    /// writable by others, I/O failures.
    pub fn subdir(&self, name: impl AsRef<Path>) -> Result<Option<OwnDir>, HostError> {
        let name = name.as_ref();
        self.child(name.as_os_str(), None)
            .map_err(|e| fail("open", &self.path().join(name), e))
    }

    /// [`OwnDir::subdir`], made with `mode` when missing (as `op`, for the message).
    ///
    /// # Errors
    /// As [`OwnDir::subdir`], or it cannot be made.
    pub fn create_subdir(
        &self,
        name: impl AsRef<Path>,
        mode: u32,
        op: &'static str,
    ) -> Result<OwnDir, HostError> {
        let path = self.path().join(name.as_ref());
        self.child(name.as_ref().as_os_str(), Some(mode))
            .and_then(|d| d.ok_or_else(|| io::Error::from(Errno::NOENT)))
            .map_err(|e| fail(op, &path, e))
    }

    /// What `name` is (a link is a link), `None` when nothing is there.
    ///
    /// # Errors
    /// I/O failures other than absence.
    pub fn kind(&self, name: impl AsRef<Path>) -> Result<Option<Kind>, HostError> {
        let name = name.as_ref();
        self.dir
            .kind(name)
            .map_err(|e| fail("stat", &self.path().join(name), e))
    }

    /// The content of the regular file `rel` below this one; no link on the way or at the end
    /// is followed.
    ///
    /// # Errors
    /// `read` of it: missing, a link, not a regular file, I/O failures.
    pub fn read(&self, rel: impl AsRef<Path>) -> Result<Vec<u8>, HostError> {
        let rel = rel.as_ref();
        let path = self.path().join(rel);
        let read = || -> io::Result<Vec<u8>> {
            let (parent, name) = match (rel.parent(), rel.file_name()) {
                (Some(p), Some(n)) => (p, n),
                _ => return Err(Errno::ISDIR.into()),
            };
            let dir = self.descend(parent, None)?;
            match dir.dir.kind(name)? {
                None => return Err(Errno::NOENT.into()),
                Some(Kind::Symlink) => return Err(link_refused(&path)),
                Some(Kind::Dir) => return Err(Errno::ISDIR.into()),
                Some(Kind::File | Kind::Other) => {}
            }
            let mut f = dir
                .dir
                .open_file(name)?
                .ok_or_else(|| io::Error::new(ErrorKind::InvalidData, "not a regular file"))?;
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes)?;
            Ok(bytes)
        };
        read().map_err(|e| fail("read", &path, e))
    }

    /// [`OwnDir::read`] as text.
    ///
    /// # Errors
    /// As [`OwnDir::read`], or the content is not UTF-8.
    pub fn read_string(&self, rel: impl AsRef<Path>) -> Result<String, HostError> {
        let rel = rel.as_ref();
        String::from_utf8(self.read(rel)?).map_err(|_| {
            fail(
                "read",
                &self.path().join(rel),
                // What `std::fs::read_to_string` says.
                io::Error::new(ErrorKind::InvalidData, "stream did not contain valid UTF-8"),
            )
        })
    }

    /// Replace the file `rel` below this one with `content` as [`Dir::write_file`] does
    /// (random temp name, `O_EXCL`, owner root and `mode` on the descriptor, fsync, rename,
    /// fsync of the directory); missing directories on the way are made with `dir_mode`.
    ///
    /// # Errors
    /// `write` of it: a link on the way, I/O failures; the file is then unchanged.
    pub fn write(
        &self,
        rel: impl AsRef<Path>,
        content: &[u8],
        mode: u32,
        dir_mode: u32,
    ) -> Result<(), HostError> {
        let rel = rel.as_ref();
        let path = self.path().join(rel);
        let (parent, name) = match (rel.parent(), rel.file_name()) {
            (Some(p), Some(n)) => (p, n),
            _ => return Err(fail("write", &path, Errno::ISDIR.into())),
        };
        self.descend(parent, Some(dir_mode))
            .and_then(|d| d.dir.write_file(name, content, mode, Owner::ROOT))
            .map_err(|e| fail("write", &path, e))
    }

    /// The target of the link `name`; `None` when nothing is there.
    ///
    /// # Errors
    /// `read link` of it: not a link, I/O failures.
    pub fn read_link(&self, name: impl AsRef<Path>) -> Result<Option<PathBuf>, HostError> {
        let name = name.as_ref();
        match rustix::fs::readlinkat(&self.dir, name, Vec::new()) {
            Ok(t) => Ok(Some(PathBuf::from(OsString::from_vec(t.into_bytes())))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(fail("read link", &self.path().join(name), e.into())),
        }
    }

    /// The names in this directory that are directories (a link to one is not).
    ///
    /// # Errors
    /// `list` of it: I/O failures.
    pub fn subdirs(&self) -> Result<Vec<OsString>, HostError> {
        let list = || -> io::Result<Vec<OsString>> {
            let mut dirs = Vec::new();
            for name in self.dir.entries()? {
                if self.dir.kind(&name)? == Some(Kind::Dir) {
                    dirs.push(name);
                }
            }
            Ok(dirs)
        };
        list().map_err(|e| fail("list", self.path(), e))
    }

    /// Every name in this directory.
    ///
    /// # Errors
    /// `list` of it: I/O failures.
    pub fn entries(&self) -> Result<Vec<OsString>, HostError> {
        self.dir.entries().map_err(|e| fail("list", self.path(), e))
    }

    /// Rename `from` to `to`, both in this directory, as `rename(2)` does (a directory
    /// replaces only an empty one); a link is moved itself. `false` when `from` is not there.
    ///
    /// # Errors
    /// `rename` of `to`'s path: I/O failures.
    pub fn rename(
        &self,
        from: impl AsRef<Path>,
        to: impl AsRef<Path>,
        op_path: &Path,
    ) -> Result<bool, HostError> {
        match rustix::fs::renameat(&self.dir, from.as_ref(), &self.dir, to.as_ref()) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(fail("rename", op_path, e.into())),
        }
    }

    /// Remove `name` and, when it is a directory, everything in it; a link anywhere is
    /// removed itself, never followed. Absent is fine.
    ///
    /// # Errors
    /// `remove` of it: I/O failures.
    pub fn remove(&self, name: impl AsRef<Path>) -> Result<(), HostError> {
        let name = name.as_ref();
        self.dir
            .remove(name)
            .map_err(|e| fail("remove", &self.path().join(name), e))
    }

    /// fsync this directory, so a rename in it survives a power cut.
    ///
    /// # Errors
    /// `fsync` of it: I/O failures.
    pub fn sync(&self) -> Result<(), HostError> {
        self.dir.sync().map_err(|e| fail("fsync", self.path(), e))
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};

    use super::*;

    #[test]
    fn reads_and_writes_stay_inside_and_follow_no_link() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let victim = tmp.path().join("victim");
        fs::create_dir(&victim).expect("mkdir");
        fs::write(victim.join("manifest.json"), "{}").expect("write");
        let root = OwnDir::open_root(&tmp.path().join("state"), Some(0o755), "open").expect("root");
        let gens = root
            .create_subdir("generations", 0o755, "create")
            .expect("gens");
        gens.write("1/units/a.service", b"[Unit]\n", 0o644, 0o755)
            .expect("write");
        assert_eq!(gens.read("1/units/a.service").expect("read"), b"[Unit]\n");
        symlink(&victim, gens.path().join("2")).expect("symlink");
        let e = gens.read("2/manifest.json").expect_err("refused");
        assert!(e.to_string().contains("not followed"), "{e}");
        let e = gens
            .write("2/manifest.json", b"x", 0o644, 0o755)
            .expect_err("refused");
        assert!(e.to_string().contains("not followed"), "{e}");
        assert_eq!(
            fs::read_to_string(victim.join("manifest.json")).expect("read"),
            "{}"
        );
        assert_eq!(gens.subdirs().expect("list"), vec![OsString::from("1")]);
        gens.remove("2").expect("remove the link");
        assert!(victim.join("manifest.json").exists());
        let e = gens
            .read("../state/generations/1/units/a.service")
            .expect_err("refused");
        assert!(e.to_string().contains("leaves its directory"), "{e}");
        // Errors read as the path-based calls' did.
        let e = gens.read("3/manifest.json").expect_err("missing");
        assert_eq!(
            e.to_string(),
            format!(
                "read {}: No such file or directory (os error 2)",
                gens.path().join("3/manifest.json").display()
            )
        );
    }

    #[test]
    fn a_directory_others_can_write_or_own_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = OwnDir::open_root(tmp.path(), None, "open").expect("root");
        let gens = root
            .create_subdir("generations", 0o755, "create")
            .expect("gens");
        fs::set_permissions(gens.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
        let e = root.subdir("generations").expect_err("refused");
        assert!(e.to_string().contains("nobody else can write"), "{e}");
        fs::set_permissions(gens.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        if Owner::process().uid == 0 {
            std::os::unix::fs::chown(gens.path(), Some(4242), None).expect("chown");
            let e = root.subdir("generations").expect_err("refused");
            assert!(e.to_string().contains("belongs to uid 4242"), "{e}");
        }
    }
}
