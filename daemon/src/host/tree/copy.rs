//! Copying and moving trees across filesystems without following a link.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::*;

impl Dir {
    /// Move `from` (in this directory) to `to` in `dest` as [`Dir::rename`] does; when the two
    /// are on different filesystems (`EXDEV`), copy it with [`Dir::copy_tree`] instead and
    /// remove `from`. Returns the copy's notes (empty after a rename).
    ///
    /// # Errors
    /// I/O failures; after a failed copy `to` is unchanged and `from` is still there.
    pub fn move_to(
        &self,
        from: impl AsRef<Path>,
        dest: &Dir,
        to: impl AsRef<Path>,
    ) -> io::Result<Vec<String>> {
        let (from, to) = (single(from.as_ref())?, single(to.as_ref())?);
        match rustix::fs::renameat(&self.fd, from, &dest.fd, to) {
            Ok(()) => Ok(Vec::new()),
            Err(Errno::XDEV) => {
                let notes = self.copy_tree(from, dest, to)?;
                self.remove(from)?;
                Ok(notes)
            }
            Err(e) => Err(at("rename", &self.child(from), e)),
        }
    }

    /// Copy `name` (in this directory) and everything under it to `to` in `dest`, which may be
    /// on another filesystem, then put it in place in one rename, replacing `to` as
    /// `rename(2)` does (a link there is replaced, never followed; a directory copy cannot
    /// replace a non-directory). Regular files are streamed; links are recreated as
    /// links (never followed); owner, mode and modification times are kept, set on each new
    /// file's descriptor. FIFOs, sockets and devices are skipped: the returned notes say which.
    ///
    /// `dest` may be a directory another user can write: the copy is built under a random name
    /// created exclusively there, its top directory root-only until it is complete, and every
    /// file below is created `O_EXCL|O_NOFOLLOW` in a directory this copy just made.
    ///
    /// # Errors
    /// I/O failures, or a tree deeper than 256 levels; `to` is then unchanged and nothing of
    /// the copy is left.
    pub fn copy_tree(
        &self,
        name: impl AsRef<Path>,
        dest: &Dir,
        to: impl AsRef<Path>,
    ) -> io::Result<Vec<String>> {
        let (name, to) = (single(name.as_ref())?, single(to.as_ref())?);
        let mut notes = Vec::new();
        let Some(source) = self.copy_source(name, &mut notes)? else {
            return Ok(notes);
        };
        let (tmp, made) = with_temp_name(to, |tmp| dest.copy_create(&source, tmp))
            .map_err(|e| at("create a temporary copy for", &dest.child(to), e))?;
        let result = dest
            .copy_fill(source, made, &mut notes, 0)
            .and_then(|()| {
                rustix::fs::renameat(&dest.fd, &tmp, &dest.fd, to)
                    .map_err(|e| at("rename", &dest.child(to), e))
            })
            .and_then(|()| dest.sync());
        if let Err(e) = result {
            let _ = dest.remove_at(&tmp, 0);
            return Err(e);
        }
        Ok(notes)
    }

    /// Open what `name` is for copying, never through a link; `None` (and a note) for what is
    /// not copied.
    fn copy_source(&self, name: &OsStr, notes: &mut Vec<String>) -> io::Result<Option<Source>> {
        let path = self.child(name);
        let st = rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| at("stat", &path, e))?;
        let source = match kind_of(&st) {
            Kind::Dir => {
                let fd = rustix::fs::openat(&self.fd, name, DIR_FLAGS, Mode::empty())
                    .map_err(|e| at("open", &path, e))?;
                let st = rustix::fs::fstat(&fd).map_err(|e| at("stat", &path, e))?;
                Source::Dir(Dir { fd, path }, st)
            }
            Kind::File => {
                let flags = OFlags::RDONLY
                    | OFlags::NOFOLLOW
                    | OFlags::NONBLOCK
                    | OFlags::CLOEXEC
                    | OFlags::NOCTTY;
                let fd = rustix::fs::openat(&self.fd, name, flags, Mode::empty())
                    .map_err(|e| at("open", &path, e))?;
                // Checked on the descriptor: the name could have been swapped since the stat.
                let st = rustix::fs::fstat(&fd).map_err(|e| at("stat", &path, e))?;
                if kind_of(&st) != Kind::File {
                    return Err(at("copy", &path, Errno::INVAL));
                }
                Source::File(File::from(fd), st, path)
            }
            Kind::Symlink => {
                let target = rustix::fs::readlinkat(&self.fd, name, Vec::new())
                    .map_err(|e| at("read link", &path, e))?;
                Source::Link(target.into_bytes(), st)
            }
            Kind::Other => {
                notes.push(format!(
                    "{}: not a file, directory or link; not copied",
                    path.display()
                ));
                return Ok(None);
            }
        };
        Ok(Some(source))
    }

    /// Create `name` (which must not exist) as the kind of `source` is: a directory root-only
    /// until [`Dir::copy_fill`] gives it its owner and mode, a file open for writing, a link.
    fn copy_create(&self, source: &Source, name: &OsStr) -> Result<Made, Errno> {
        match source {
            Source::Dir(..) => {
                rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o700))?;
                let fd = rustix::fs::openat(&self.fd, name, DIR_FLAGS, Mode::empty())?;
                // Another user can rename in `self`: the directory opened must be the one
                // just made (theirs would not be this process's).
                let st = rustix::fs::fstat(&fd)?;
                if st.st_uid != Owner::process().uid {
                    return Err(Errno::PERM);
                }
                Ok(Made::Dir(fd, name.to_os_string()))
            }
            Source::File(..) => {
                let flags = OFlags::WRONLY
                    | OFlags::CREATE
                    | OFlags::EXCL
                    | OFlags::NOFOLLOW
                    | OFlags::CLOEXEC
                    | OFlags::NOCTTY;
                rustix::fs::openat(&self.fd, name, flags, Mode::from_raw_mode(0o600))
                    .map(|fd| Made::File(File::from(fd)))
            }
            Source::Link(target, _) => {
                rustix::fs::symlinkat(OsStr::from_bytes(target), &self.fd, name)?;
                Ok(Made::Link(name.to_os_string()))
            }
        }
    }

    /// Fill what [`Dir::copy_create`] made from `source`, then give it the source's owner,
    /// mode and times (on its descriptor; a link's owner without following it).
    fn copy_fill(
        &self,
        source: Source,
        made: Made,
        notes: &mut Vec<String>,
        depth: usize,
    ) -> io::Result<()> {
        match (source, made) {
            (Source::Dir(src, st), Made::Dir(fd, name)) => {
                let dst = Dir {
                    fd,
                    path: self.child(&name),
                };
                if depth >= MAX_DEPTH {
                    return Err(at(
                        "copy",
                        &src.path,
                        io::Error::other(format!("deeper than {MAX_DEPTH} levels")),
                    ));
                }
                for entry in src.entries()? {
                    let Some(child) = src.copy_source(&entry, notes)? else {
                        continue;
                    };
                    // A directory this copy made, root-only: nobody else can have put `entry`
                    // there, and O_EXCL / mkdirat refuse it if anything is.
                    let made = dst
                        .copy_create(&child, &entry)
                        .map_err(|e| at("create", &dst.child(&entry), e))?;
                    dst.copy_fill(child, made, notes, depth + 1)?;
                }
                set_meta(&dst.fd, &st, &dst.path)
            }
            (Source::File(mut src, st, path), Made::File(mut dst)) => {
                io::copy(&mut src, &mut dst).map_err(|e| at("copy", &path, e))?;
                set_meta(dst.as_fd(), &st, &path)?;
                dst.sync_all().map_err(|e| at("fsync", &path, e))
            }
            (Source::Link(_, st), Made::Link(name)) => {
                let (uid, gid) = Owner {
                    uid: st.st_uid,
                    gid: st.st_gid,
                }
                .ids();
                rustix::fs::chownat(&self.fd, &name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| at("chown", &self.child(&name), e))
            }
            _ => Err(io::Error::other("copy: source and copy differ in kind")),
        }
    }
}

/// What [`Dir::copy_tree`] copies from: an open directory or file, or a link's target, with
/// the source's metadata.
enum Source {
    Dir(Dir, rustix::fs::Stat),
    File(File, rustix::fs::Stat, PathBuf),
    Link(Vec<u8>, rustix::fs::Stat),
}

/// What [`Dir::copy_tree`] made for a [`Source`]: the new directory or file, or the link's name.
enum Made {
    Dir(OwnedFd, OsString),
    File(File),
    Link(OsString),
}

/// Owner, then mode (chown clears set-id bits), then access and modification times of `st` on
/// the descriptor `fd` of a copy.
fn set_meta(fd: impl AsFd, st: &rustix::fs::Stat, path: &Path) -> io::Result<()> {
    let (uid, gid) = Owner {
        uid: st.st_uid,
        gid: st.st_gid,
    }
    .ids();
    rustix::fs::fchown(&fd, uid, gid).map_err(|e| at("chown", path, e))?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(st.st_mode & 0o7777))
        .map_err(|e| at("chmod", path, e))?;
    let times = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec.try_into().unwrap_or(0),
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec.try_into().unwrap_or(0),
        },
    };
    rustix::fs::futimens(&fd, &times).map_err(|e| at("set times of", path, e))
}
