//! host/tree.rs — every file operation strackt does as root in a directory another user can
//! write: homes (`~/.ssh/authorized_keys`), app directories (`releases/`, `shared/`, `current`),
//! restore targets, and any managed file's parent.
//!
//! **Root never follows a link another user could have planted.** A path is never handed to the
//! kernel whole: a [`Dir`] is an open directory, reached from `/` one component at a time, and
//! every operation inside it is relative to that descriptor (`openat`, `mkdirat`, `unlinkat`,
//! `renameat`, `symlinkat`, `fchownat`), so renaming or replacing the path it was reached by
//! changes nothing about which directory it is.
//!
//! What this module owns:
//! - Reaching a tree's trusted root ([`Dir::open`], [`Dir::create_all`]): a symbolic link on
//!   the way is followed only when the directory holding it is root's and writable by no one
//!   else (`/var/run -> /run`, an admin's `/home -> /data/home`); a link in any other directory
//!   is refused with [`is_refused`] errors, never followed.
//! - Everything below a [`Dir`]: no link is ever followed there (`O_NOFOLLOW` on every
//!   component, `AT_SYMLINK_NOFOLLOW` on every stat and chown); `..` and absolute names are
//!   refused.
//! - Writing a file: a temp file with a random name created `O_CREAT|O_EXCL|O_NOFOLLOW` in the
//!   directory, owner and mode set on its descriptor (`fchown`, then `fchmod`: chown clears
//!   set-id bits), fsync, `renameat` over the name, fsync of the directory.
//! - Creating directories: `mkdirat`, then owner and mode set on the new directory's own
//!   descriptor — only on directories this module just created. A directory that was already
//!   there keeps its owner and mode, whoever it belongs to.
//! - Removing trees (pruning releases): walked through descriptors, entries unlinked with
//!   `unlinkat`; a link inside is removed, never followed.
//! - Links strackt points (`current`): `symlinkat` under a random name, `renameat` over.
//! - Moving a tree in (restores, from strackt's state into `shared/`): `renameat`, and when the
//!   two are on different filesystems a copy through descriptors — built under a random name
//!   with its top directory root-only until complete, files created `O_EXCL|O_NOFOLLOW` and
//!   streamed, links recreated as links, owner and mode set on each new descriptor, FIFOs,
//!   sockets and devices skipped with a note — then renamed into place.
//! - Reading a tree's metadata (the backups' fingerprint of `shared/`): each entry opened
//!   `O_PATH|O_NOFOLLOW` and stat'ed on that descriptor — a link described as a link — and a
//!   directory's entries read through the same descriptor.
//! - Changing a tree's owner (restores): each directory opened `O_NOFOLLOW` and chowned on its
//!   descriptor, everything else `fchownat(AT_SYMLINK_NOFOLLOW)` relative to its directory.
//! - Reading a file another user could replace: opened `O_NOFOLLOW|O_NONBLOCK` (a planted FIFO
//!   cannot hang the daemon), then checked to be a regular file on the descriptor.
//!
//! What it must not do:
//! - Take a path from a caller and pass it to a path-based syscall (`open`, `chown`, `lchown`,
//!   `rename`, `std::fs::*`) — every path goes through [`Dir::open`] or [`Dir::create_all`].
//! - Chown or chmod anything it did not create, except through [`Dir::chown_tree`], which a
//!   caller uses only on a tree it has just put in place.
//! - Decide anything: which files and owners are wanted is the caller's business.
//!
//! Hard links: a user can only hard-link files they own while `fs.protected_hardlinks = 1` (the
//! kernel setting systemd turns on on every Debian system), so [`Dir::chown_tree`] cannot be
//! pointed at a file of root's that way; writes never go into an existing inode at all.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Uid};
use rustix::io::Errno;

mod copy;
mod resolve;
mod view;
mod walk;

use resolve::resolve;
pub use view::{missing, View};

/// How many links one [`Dir::open`] follows at most (the kernel's own limit).
const MAX_LINKS: usize = 40;
/// How deep [`Dir::remove`] and [`Dir::chown_tree`] go (each level holds a descriptor).
const MAX_DEPTH: usize = 256;
/// Flags of every directory opened: never through a link, never blocking.
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NONBLOCK);

/// A file's or directory's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl Owner {
    /// root:root.
    pub const ROOT: Owner = Owner { uid: 0, gid: 0 };

    /// This process's effective ids: root's, in the daemon.
    pub fn process() -> Owner {
        Owner {
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
        }
    }

    fn ids(self) -> (Option<Uid>, Option<Gid>) {
        (Some(Uid::from_raw(self.uid)), Some(Gid::from_raw(self.gid)))
    }
}

/// What kind of thing an entry is (never looking through a link).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A FIFO, socket or device.
    Other,
}

/// The marker of errors that are a refusal to follow a link (see [`is_refused`]).
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// Whether `e` is this module refusing to follow a link (as opposed to an I/O failure).
pub fn is_refused(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Refused>())
}

fn refused(path: &Path, holder: Option<u32>) -> io::Error {
    let why = match holder {
        Some(uid) => format!(
            "{} is a symbolic link in a directory that uid {uid} (not only root) can change; not followed",
            path.display()
        ),
        None => format!(
            "{} is a symbolic link inside a tree another user can change; not followed",
            path.display()
        ),
    };
    io::Error::new(io::ErrorKind::PermissionDenied, Refused(why))
}

/// An error of `op` on `path`, keeping the kind (`NotFound` stays `NotFound`).
fn at(op: &str, path: &Path, e: impl Into<io::Error>) -> io::Error {
    let e: io::Error = e.into();
    if is_refused(&e) {
        return e;
    }
    io::Error::new(e.kind(), format!("{op} {}: {e}", path.display()))
}

/// A single name inside a directory: not empty, `.`, `..`, and without `/`.
fn single(name: &Path) -> io::Result<&OsStr> {
    let mut parts = name.components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(n)), None) => Ok(n),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{:?} is not a single name inside a directory", name),
        )),
    }
}

/// The names of a relative path: `.` dropped; `..`, `/` refused.
pub(super) fn names(rel: &Path) -> io::Result<Vec<&OsStr>> {
    rel.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .map(|c| match c {
            Component::Normal(n) => Ok(n),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} leaves its directory", rel.display()),
            )),
        })
        .collect()
}

/// A directory only root can change: links in it were put there by root.
fn trusted(st: &rustix::fs::Stat) -> bool {
    st.st_uid == 0 && st.st_mode & 0o022 == 0
}

fn kind_of(st: &rustix::fs::Stat) -> Kind {
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => Kind::File,
        FileType::Directory => Kind::Dir,
        FileType::Symlink => Kind::Symlink,
        _ => Kind::Other,
    }
}

/// `.NAME.<16 hex digits>.strackt-tmp`: unguessable, so nobody can plant anything there first
/// (and `O_EXCL` refuses it if they did).
fn temp_name(name: &OsStr) -> io::Result<OsString> {
    let mut random = [0u8; 8];
    let mut filled = 0;
    while filled < random.len() {
        filled +=
            rustix::rand::getrandom(&mut random[filled..], rustix::rand::GetRandomFlags::empty())?;
    }
    let bytes = name.as_bytes();
    let short = &bytes[..bytes.len().min(180)];
    let mut t = b".".to_vec();
    t.extend_from_slice(short);
    t.extend_from_slice(format!(".{}.strackt-tmp", hex::encode(random)).as_bytes());
    Ok(OsString::from_vec(t))
}

/// Try `create` under fresh temp names until one is free.
fn with_temp_name<T>(
    name: &OsStr,
    mut create: impl FnMut(&OsStr) -> Result<T, Errno>,
) -> io::Result<(OsString, T)> {
    for _ in 0..16 {
        let tmp = temp_name(name)?;
        match create(&tmp) {
            Ok(v) => return Ok((tmp, v)),
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free temporary name after 16 tries",
    ))
}

/// An open directory; every operation on it is relative to its descriptor and follows no link.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    /// The path it was reached by, for messages.
    path: PathBuf,
}

impl Dir {
    /// Open the directory `path` (absolute), reached from `/` one component at a time: a link
    /// on the way is followed only when the directory holding it is root's and writable by
    /// nobody else; any other link is refused ([`is_refused`]).
    ///
    /// # Errors
    /// `NotFound` when a component is missing; a refusal; other I/O failures.
    pub fn open(path: &Path) -> io::Result<Dir> {
        resolve(path, None)
    }

    /// [`Dir::open`], creating missing components with `mode` and `owner` (set on each new
    /// directory's own descriptor; directories already there are left as they are).
    ///
    /// # Errors
    /// As [`Dir::open`], or the creation failed.
    pub fn create_all(path: &Path, mode: u32, owner: Owner) -> io::Result<Dir> {
        resolve(path, Some((mode, owner)))
    }

    /// The path this directory was reached by (for messages; never opened again).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn child(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }

    /// The directory `rel` below this one, following no link.
    ///
    /// # Errors
    /// `NotFound`; a link or a non-directory on the way; I/O failures.
    pub fn open_dir(&self, rel: impl AsRef<Path>) -> io::Result<Dir> {
        self.descend(rel.as_ref(), None)
    }

    /// [`Dir::open_dir`], creating what is missing: each new directory gets `mode` and `owner`
    /// on its own descriptor; those already there are left as they are.
    ///
    /// # Errors
    /// As [`Dir::open_dir`], or the creation failed.
    pub fn create_dirs(&self, rel: impl AsRef<Path>, mode: u32, owner: Owner) -> io::Result<Dir> {
        self.descend(rel.as_ref(), Some((mode, owner)))
    }

    fn descend(&self, rel: &Path, create: Option<(u32, Owner)>) -> io::Result<Dir> {
        let mut cur = Dir {
            fd: rustix::io::fcntl_dupfd_cloexec(&self.fd, 0)
                .map_err(|e| at("open", &self.path, e))?,
            path: self.path.clone(),
        };
        for name in names(rel)? {
            cur = cur.step(name, create)?;
        }
        Ok(cur)
    }

    /// One component down, following no link; created when missing and `create` says how.
    fn step(&self, name: &OsStr, create: Option<(u32, Owner)>) -> io::Result<Dir> {
        let path = self.child(name);
        loop {
            match rustix::fs::openat(&self.fd, name, DIR_FLAGS, Mode::empty()) {
                Ok(fd) => return Ok(Dir { fd, path }),
                Err(Errno::NOENT) if create.is_some() => {
                    let (mode, owner) = create.unwrap_or((0o755, Owner::ROOT));
                    match self.make_dir(name, mode, owner) {
                        Err(e) if e.raw_os_error() == Some(Errno::EXIST.raw_os_error()) => continue,
                        made => return made,
                    }
                }
                Err(Errno::LOOP | Errno::NOTDIR) => {
                    let st = rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| at("stat", &path, e))?;
                    return Err(match kind_of(&st) {
                        Kind::Symlink => refused(&path, None),
                        _ => at("open", &path, Errno::NOTDIR),
                    });
                }
                Err(e) => return Err(at("open", &path, e)),
            }
        }
    }

    /// `mkdirat` `name`, then owner and mode on its own descriptor. `AlreadyExists` when
    /// something is there.
    fn make_dir(&self, name: &OsStr, mode: u32, owner: Owner) -> io::Result<Dir> {
        let path = self.child(name);
        // Created root-only; opened to everyone (mode) only once it has its owner.
        rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o700))
            .map_err(|e| at("create directory", &path, e))?;
        let fd = rustix::fs::openat(&self.fd, name, DIR_FLAGS, Mode::empty())
            .map_err(|e| at("open", &path, e))?;
        // A set-group-id parent gives its group: the owner is set whenever it differs.
        let st = rustix::fs::fstat(&fd).map_err(|e| at("stat", &path, e))?;
        if (st.st_uid, st.st_gid) != (owner.uid, owner.gid) {
            let (uid, gid) = owner.ids();
            rustix::fs::fchown(&fd, uid, gid).map_err(|e| at("chown", &path, e))?;
        }
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| at("chmod", &path, e))?;
        Ok(Dir { fd, path })
    }

    /// Create the directory `name` (which must not exist) with `mode` and `owner`.
    ///
    /// # Errors
    /// `AlreadyExists` when something is there; I/O failures.
    pub fn create_dir(&self, name: impl AsRef<Path>, mode: u32, owner: Owner) -> io::Result<Dir> {
        self.make_dir(single(name.as_ref())?, mode, owner)
    }

    /// What `name` is (a link is a link), `None` when nothing is there.
    ///
    /// # Errors
    /// I/O failures other than absence.
    pub fn kind(&self, name: impl AsRef<Path>) -> io::Result<Option<Kind>> {
        let name = single(name.as_ref())?;
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(kind_of(&st))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(at("stat", &self.child(name), e)),
        }
    }

    /// The regular file `name`, open for reading; `None` when nothing, or something other than
    /// a regular file (a link, a FIFO, a device, a directory), is there.
    ///
    /// # Errors
    /// I/O failures.
    pub fn open_file(&self, name: impl AsRef<Path>) -> io::Result<Option<File>> {
        let name = single(name.as_ref())?;
        let path = self.child(name);
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
        let fd = match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::LOOP | Errno::NXIO) => return Ok(None),
            Err(e) => return Err(at("open", &path, e)),
        };
        let file = File::from(fd);
        let meta = file.metadata().map_err(|e| at("stat", &path, e))?;
        if !meta.file_type().is_file() {
            return Ok(None);
        }
        // Reads block as usual again (a regular file never blocks anyway).
        rustix::fs::fcntl_setfl(&file, OFlags::empty()).map_err(|e| at("open", &path, e))?;
        Ok(Some(file))
    }

    /// The target of the link `name`; `None` when it is absent or not a link.
    ///
    /// # Errors
    /// I/O failures.
    pub fn read_link(&self, name: impl AsRef<Path>) -> io::Result<Option<PathBuf>> {
        let name = single(name.as_ref())?;
        match rustix::fs::readlinkat(&self.fd, name, Vec::new()) {
            Ok(t) => Ok(Some(PathBuf::from(OsString::from_vec(t.into_bytes())))),
            Err(Errno::NOENT | Errno::INVAL) => Ok(None),
            Err(e) => Err(at("read link", &self.child(name), e)),
        }
    }

    /// Replace `name` with `content` atomically: a reader (or a crash) sees the old file or the
    /// new one. Whatever `name` was (a link included) is replaced, never written through.
    ///
    /// # Errors
    /// I/O failures; `name` is then unchanged and no temp file is left.
    pub fn write_file(
        &self,
        name: impl AsRef<Path>,
        content: &[u8],
        mode: u32,
        owner: Owner,
    ) -> io::Result<()> {
        let name = single(name.as_ref())?;
        let path = self.child(name);
        let flags = OFlags::WRONLY
            | OFlags::CREATE
            | OFlags::EXCL
            | OFlags::NOFOLLOW
            | OFlags::CLOEXEC
            | OFlags::NOCTTY;
        let (tmp, fd) = with_temp_name(name, |tmp| {
            rustix::fs::openat(&self.fd, tmp, flags, Mode::from_raw_mode(0o600))
        })
        .map_err(|e| at("create a temporary file for", &path, e))?;
        let result = (|| {
            let mut f = File::from(fd);
            f.write_all(content).map_err(|e| at("write", &path, e))?;
            let (uid, gid) = owner.ids();
            rustix::fs::fchown(&f, uid, gid).map_err(|e| at("chown", &path, e))?;
            // fchmod after fchown: chown clears setuid/setgid bits.
            rustix::fs::fchmod(&f, Mode::from_raw_mode(mode)).map_err(|e| at("chmod", &path, e))?;
            f.sync_all().map_err(|e| at("fsync", &path, e))?;
            rustix::fs::renameat(&self.fd, &tmp, &self.fd, name).map_err(|e| at("rename", &path, e))
        })();
        if result.is_err() {
            let _ = rustix::fs::unlinkat(&self.fd, &tmp, AtFlags::empty());
            return result;
        }
        self.sync()
    }

    /// Create the link `name -> target` (nothing may be there), owned by `owner`.
    ///
    /// # Errors
    /// `AlreadyExists`; I/O failures.
    pub fn symlink(&self, name: impl AsRef<Path>, target: &Path, owner: Owner) -> io::Result<()> {
        let name = single(name.as_ref())?;
        let path = self.child(name);
        rustix::fs::symlinkat(target, &self.fd, name).map_err(|e| at("link", &path, e))?;
        let (uid, gid) = owner.ids();
        rustix::fs::chownat(&self.fd, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| at("chown", &path, e))
    }

    /// Point the link `name` at `target` in one step — a fresh link under a random name renamed
    /// over it, then the directory fsynced — so at every instant it names the old target or the
    /// new one. `None` removes it.
    ///
    /// # Errors
    /// I/O failures; `name` is then unchanged.
    pub fn swap_symlink(&self, name: impl AsRef<Path>, target: Option<&Path>) -> io::Result<()> {
        let name = single(name.as_ref())?;
        let path = self.child(name);
        match target {
            Some(target) => {
                let (tmp, ()) =
                    with_temp_name(name, |tmp| rustix::fs::symlinkat(target, &self.fd, tmp))
                        .map_err(|e| at("link", &path, e))?;
                if let Err(e) = rustix::fs::renameat(&self.fd, &tmp, &self.fd, name) {
                    let _ = rustix::fs::unlinkat(&self.fd, &tmp, AtFlags::empty());
                    return Err(at("rename", &path, e));
                }
            }
            None => match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(at("remove", &path, e)),
            },
        }
        self.sync()
    }

    /// Move `from` (in this directory) to `to` in `dest`, replacing what is there as
    /// `rename(2)` does.
    ///
    /// # Errors
    /// I/O failures (`EXDEV` across filesystems).
    pub fn rename(
        &self,
        from: impl AsRef<Path>,
        dest: &Dir,
        to: impl AsRef<Path>,
    ) -> io::Result<()> {
        let (from, to) = (single(from.as_ref())?, single(to.as_ref())?);
        rustix::fs::renameat(&self.fd, from, &dest.fd, to)
            .map_err(|e| at("rename", &self.child(from), e))
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Open the regular file at `path` for reading: its directory reached as [`Dir::open`] does, and
/// the file itself followed only when it is a link in a root-only directory. `None` when
/// nothing, or no regular file, is there.
///
/// # Errors
/// A refusal; I/O failures.
pub fn open_file(path: &Path) -> io::Result<Option<File>> {
    let mut path = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Ok(None);
        };
        let dir = match Dir::open(parent) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if dir.kind(name)? != Some(Kind::Symlink) {
            return dir.open_file(name);
        }
        let st = rustix::fs::fstat(&dir.fd).map_err(|e| at("stat", parent, e))?;
        if !trusted(&st) {
            return Err(refused(&path, Some(st.st_uid)));
        }
        let Some(target) = dir.read_link(name)? else {
            continue;
        };
        path = parent.join(target);
    }
    Err(at("open", &path, Errno::LOOP))
}

/// Metadata of an open file as [`Owner`] and permission bits.
///
/// # Errors
/// I/O failures.
pub fn file_owner_and_mode(file: &File) -> io::Result<(Owner, u32)> {
    let meta = file.metadata()?;
    Ok((
        Owner {
            uid: meta.uid(),
            gid: meta.gid(),
        },
        meta.mode() & 0o7777,
    ))
}

/// The names in `dir`, sorted (for tests' assertions).
#[cfg(test)]
pub(crate) fn ls(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests;
