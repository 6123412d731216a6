//! Work on whole trees: removing, listing, reading metadata, changing owners — following no
//! link inside.

use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::*;

impl Dir {
    /// Remove the file (or link, FIFO, …) `name`; `false` when nothing was there.
    ///
    /// # Errors
    /// A directory is there; I/O failures.
    pub fn remove_file(&self, name: impl AsRef<Path>) -> io::Result<bool> {
        let name = single(name.as_ref())?;
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(at("remove", &self.child(name), e)),
        }
    }

    /// Remove whatever `name` is, a directory with everything in it; absent is fine. A link
    /// anywhere in the tree is removed itself, never followed.
    ///
    /// # Errors
    /// I/O failures, or a tree deeper than 256 levels (what was reached is gone).
    pub fn remove(&self, name: impl AsRef<Path>) -> io::Result<()> {
        self.remove_at(single(name.as_ref())?, 0)
    }

    pub(super) fn remove_at(&self, name: &OsStr, depth: usize) -> io::Result<()> {
        let path = self.child(name);
        loop {
            match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => return Ok(()),
                // Linux answers EISDIR for a directory (POSIX allows EPERM).
                Err(Errno::ISDIR | Errno::PERM) => {}
                Err(e) => return Err(at("remove", &path, e)),
            }
            let sub = match rustix::fs::openat(&self.fd, name, DIR_FLAGS, Mode::empty()) {
                Ok(fd) => Dir {
                    fd,
                    path: path.clone(),
                },
                Err(Errno::NOENT) => return Ok(()),
                // Replaced by something else meanwhile: unlink that.
                Err(Errno::LOOP | Errno::NOTDIR) => continue,
                Err(e) => return Err(at("open", &path, e)),
            };
            if depth >= MAX_DEPTH {
                return Err(at(
                    "remove",
                    &path,
                    io::Error::other(format!("deeper than {MAX_DEPTH} levels")),
                ));
            }
            for entry in sub.entries()? {
                sub.remove_at(&entry, depth + 1)?;
            }
            match rustix::fs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR) {
                Ok(()) | Err(Errno::NOENT) => return Ok(()),
                // Something was added meanwhile: another round.
                Err(Errno::NOTEMPTY) => continue,
                Err(e) => return Err(at("remove", &path, e)),
            }
        }
    }

    /// The names in this directory (without `.` and `..`).
    ///
    /// # Errors
    /// I/O failures.
    pub fn entries(&self) -> io::Result<Vec<OsString>> {
        let mut dir =
            rustix::fs::Dir::read_from(&self.fd).map_err(|e| at("read", &self.path, e))?;
        let mut names = Vec::new();
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(|e| at("read", &self.path, e))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(OsString::from_vec(name.to_vec()));
            }
        }
        Ok(names)
    }

    /// Give `name` and everything under it to `owner`. Directories are opened `O_NOFOLLOW` and
    /// chowned on their descriptor; anything else is chowned without following (a link itself).
    ///
    /// # Errors
    /// I/O failures, or a tree deeper than 256 levels.
    pub fn chown_tree(&self, name: impl AsRef<Path>, owner: Owner) -> io::Result<()> {
        self.chown_at(single(name.as_ref())?, owner, 0)
    }

    fn chown_at(&self, name: &OsStr, owner: Owner, depth: usize) -> io::Result<()> {
        let path = self.child(name);
        let (uid, gid) = owner.ids();
        match rustix::fs::openat(&self.fd, name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => {
                rustix::fs::fchown(&fd, uid, gid).map_err(|e| at("chown", &path, e))?;
                if depth >= MAX_DEPTH {
                    return Err(at(
                        "chown",
                        &path,
                        io::Error::other(format!("deeper than {MAX_DEPTH} levels")),
                    ));
                }
                let sub = Dir { fd, path };
                for entry in sub.entries()? {
                    sub.chown_at(&entry, owner, depth + 1)?;
                }
                Ok(())
            }
            Err(Errno::LOOP | Errno::NOTDIR) => {
                match rustix::fs::chownat(&self.fd, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(()) | Err(Errno::NOENT) => Ok(()),
                    Err(e) => Err(at("chown", &path, e)),
                }
            }
            Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(at("open", &path, e)),
        }
    }

    /// Call `visit` with the path and metadata of `name` and of everything under it, parents
    /// before children, the entries of a directory in byte order of their names. A link is
    /// described as a link (its own metadata) and never followed; a directory is read through
    /// the descriptor its metadata came from, so one swapped for a link meanwhile is not
    /// entered.
    ///
    /// # Errors
    /// `NotFound` when `name` is missing; I/O failures, or a tree deeper than 256 levels.
    pub fn walk(
        &self,
        name: impl AsRef<Path>,
        visit: &mut dyn FnMut(&Path, &Metadata),
    ) -> io::Result<()> {
        self.walk_at(single(name.as_ref())?, visit, 0)
    }

    fn walk_at(
        &self,
        name: &OsStr,
        visit: &mut dyn FnMut(&Path, &Metadata),
        depth: usize,
    ) -> io::Result<()> {
        let path = self.child(name);
        // O_PATH opens the entry itself — a link, FIFO or device included — without reading,
        // following or blocking on it; its metadata and, for a directory, its entries come
        // from this one descriptor.
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let entry = File::from(
            rustix::fs::openat(&self.fd, name, flags, Mode::empty())
                .map_err(|e| at("open", &path, e))?,
        );
        let meta = entry.metadata().map_err(|e| at("stat", &path, e))?;
        visit(&path, &meta);
        if !meta.is_dir() {
            return Ok(());
        }
        if depth >= MAX_DEPTH {
            return Err(at(
                "read",
                &path,
                io::Error::other(format!("deeper than {MAX_DEPTH} levels")),
            ));
        }
        let fd = rustix::fs::openat(&entry, ".", DIR_FLAGS, Mode::empty())
            .map_err(|e| at("open", &path, e))?;
        let sub = Dir { fd, path };
        let mut names = sub.entries()?;
        names.sort();
        for child in names {
            sub.walk_at(&child, visit, depth + 1)?;
        }
        Ok(())
    }

    /// Owner and permission bits of this directory.
    ///
    /// # Errors
    /// I/O failures.
    pub fn owner_and_mode(&self) -> io::Result<(Owner, u32)> {
        let st = rustix::fs::fstat(&self.fd).map_err(|e| at("stat", &self.path, e))?;
        Ok((
            Owner {
                uid: st.st_uid,
                gid: st.st_gid,
            },
            st.st_mode & 0o7777,
        ))
    }

    /// Give this very directory `owner` and `mode`, on its descriptor (`fchown`, then `fchmod`:
    /// chown clears set-id bits). Only for a directory the caller has checked is its own (root's
    /// staging directory): this module never chowns a directory another user owns.
    ///
    /// # Errors
    /// I/O failures ("chown …", "chmod …").
    pub fn set_owner_and_mode(&self, owner: Owner, mode: u32) -> io::Result<()> {
        let (uid, gid) = owner.ids();
        rustix::fs::fchown(&self.fd, uid, gid).map_err(|e| at("chown", &self.path, e))?;
        rustix::fs::fchmod(&self.fd, Mode::from_raw_mode(mode))
            .map_err(|e| at("chmod", &self.path, e))
    }

    /// fsync the directory, so renames inside it survive a power cut.
    ///
    /// # Errors
    /// I/O failures.
    pub fn sync(&self) -> io::Result<()> {
        rustix::fs::fsync(&self.fd).map_err(|e| at("fsync", &self.path, e))
    }
}
