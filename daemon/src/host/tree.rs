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

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Uid, CWD};
use rustix::io::Errno;

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
fn names(rel: &Path) -> io::Result<Vec<&OsStr>> {
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

    fn remove_at(&self, name: &OsStr, depth: usize) -> io::Result<()> {
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

    /// fsync the directory, so renames inside it survive a power cut.
    ///
    /// # Errors
    /// I/O failures.
    pub fn sync(&self) -> io::Result<()> {
        rustix::fs::fsync(&self.fd).map_err(|e| at("fsync", &self.path, e))
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
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

/// Walk `path` from `/`: links only in root-only directories are followed.
fn resolve(path: &Path, create: Option<(u32, Owner)>) -> io::Result<Dir> {
    if !path.is_absolute() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not an absolute path", path.display()),
        ));
    }
    let root = || {
        rustix::fs::openat(CWD, "/", DIR_FLAGS, Mode::empty()).map(|fd| Dir {
            fd,
            path: PathBuf::from("/"),
        })
    };
    let mut todo: VecDeque<OsString> = VecDeque::new();
    push_front(&mut todo, path);
    let mut cur = root().map_err(|e| at("open", Path::new("/"), e))?;
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            let fd = rustix::fs::openat(&cur.fd, "..", DIR_FLAGS, Mode::empty())
                .map_err(|e| at("open", &cur.path, e))?;
            let mut up = cur.path.clone();
            up.pop();
            cur = Dir { fd, path: up };
            continue;
        }
        match cur.step(&name, create) {
            Ok(next) => cur = next,
            Err(e) if is_refused(&e) => {
                let st = rustix::fs::fstat(&cur.fd).map_err(|e| at("stat", &cur.path, e))?;
                let link = cur.child(&name);
                if !trusted(&st) {
                    return Err(refused(&link, Some(st.st_uid)));
                }
                links += 1;
                if links > MAX_LINKS {
                    return Err(at("open", path, Errno::LOOP));
                }
                let target = rustix::fs::readlinkat(&cur.fd, name.as_os_str(), Vec::new())
                    .map_err(|e| at("read link", &link, e))?;
                let target = PathBuf::from(OsString::from_vec(target.into_bytes()));
                if target.is_absolute() {
                    cur = root().map_err(|e| at("open", Path::new("/"), e))?;
                }
                push_front(&mut todo, &target);
            }
            Err(e) => return Err(e),
        }
    }
    cur.path = path.to_path_buf();
    Ok(cur)
}

/// Queue the components of `path` (`..` kept, `.` and `/` dropped) before what is queued.
fn push_front(todo: &mut VecDeque<OsString>, path: &Path) {
    let parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    for p in parts.into_iter().rev() {
        todo.push_front(p);
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, PermissionsExt};

    use super::*;

    fn me() -> Owner {
        Owner::process()
    }

    fn ls(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// A tree with a victim directory beside the one an attacker controls.
    struct Scene {
        _tmp: tempfile::TempDir,
        base: PathBuf,
        victim: PathBuf,
    }

    fn scene() -> Scene {
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = tmp.path().join("app");
        let victim = tmp.path().join("victim");
        std::fs::create_dir_all(base.join("shared/storage")).expect("mkdir");
        // Writable by others: links in it are not root's, even when the tests run as root.
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        std::fs::create_dir_all(victim.join("1")).expect("mkdir");
        std::fs::write(victim.join("secret"), "s").expect("write");
        std::fs::write(victim.join("1/keep"), "k").expect("write");
        Scene {
            base,
            victim,
            _tmp: tmp,
        }
    }

    fn untouched(s: &Scene) {
        assert_eq!(ls(&s.victim), ["1", "secret"]);
        assert_eq!(ls(&s.victim.join("1")), ["keep"]);
        assert_eq!(
            std::fs::read_to_string(s.victim.join("secret")).expect("read"),
            "s"
        );
    }

    // The temp dir lives under a directory of this user, so links below it are not root's:
    // `Dir::open` must refuse them (when running as root, /tmp is world-writable: refused too).
    #[test]
    fn a_link_on_the_way_to_a_tree_is_refused() {
        let s = scene();
        symlink(&s.victim, s.base.join("linked")).expect("symlink");
        let e = Dir::open(&s.base.join("linked")).expect_err("refused");
        assert!(is_refused(&e), "{e}");
        let e = Dir::create_all(&s.base.join("linked/new"), 0o755, me()).expect_err("refused");
        assert!(is_refused(&e), "{e}");
        assert!(e.to_string().contains("not followed"), "{e}");
        untouched(&s);
    }

    #[test]
    fn a_link_in_every_position_below_a_dir_is_refused() {
        let s = scene();
        let root = Dir::open(&s.base).expect("open");
        // A link as a middle component, as the last component, and as the target name.
        symlink(&s.victim, s.base.join("shared/media")).expect("symlink");
        for rel in ["shared/media", "shared/media/1", "shared/media/new"] {
            let e = root.open_dir(rel).expect_err(rel);
            assert!(is_refused(&e), "{rel}: {e}");
            let e = root.create_dirs(rel, 0o755, me()).expect_err(rel);
            assert!(is_refused(&e), "{rel}: {e}");
        }
        let shared = root.open_dir("shared").expect("shared");
        assert_eq!(shared.kind("media").expect("kind"), Some(Kind::Symlink));
        assert!(shared.open_file("media").expect("open").is_none());
        // Writing replaces the link itself, never writes through it.
        shared
            .write_file("media", b"x", 0o600, me())
            .expect("write");
        assert_eq!(shared.kind("media").expect("kind"), Some(Kind::File));
        // A link to a file planted at a file's name: replaced as well.
        symlink(s.victim.join("secret"), s.base.join("shared/conf")).expect("symlink");
        shared
            .write_file("conf", b"new", 0o644, me())
            .expect("write");
        assert_eq!(
            std::fs::read_to_string(s.base.join("shared/conf")).expect("read"),
            "new"
        );
        // `..` and absolute names never leave the tree.
        for bad in ["..", "../victim", "/etc", "a/../../victim"] {
            assert!(root.open_dir(bad).is_err(), "{bad}");
            assert!(root.create_dirs(bad, 0o755, me()).is_err(), "{bad}");
        }
        for bad in ["..", "a/b", "/x", ""] {
            assert!(root.write_file(bad, b"x", 0o600, me()).is_err(), "{bad}");
            assert!(root.remove(bad).is_err(), "{bad}");
        }
        untouched(&s);
    }

    #[test]
    fn a_planted_temp_name_or_fifo_changes_nothing() {
        let s = scene();
        let dir = Dir::open(&s.base).expect("open");
        // The old predictable temp name, linked to the victim: never used.
        symlink(s.victim.join("secret"), s.base.join(".keys.strackt-tmp")).expect("symlink");
        dir.write_file("keys", b"k1", 0o600, me()).expect("write");
        dir.write_file("keys", b"k2", 0o640, me()).expect("write");
        assert_eq!(
            std::fs::read_to_string(s.base.join("keys")).expect("read"),
            "k2"
        );
        let mode = std::fs::metadata(s.base.join("keys"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o640);
        assert_eq!(ls(&s.base), [".keys.strackt-tmp", "keys", "shared"]);
        // A FIFO where a file is read: nothing, at once (no hang).
        nix::unistd::mkfifo(
            &s.base.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .expect("mkfifo");
        assert!(dir.open_file("fifo").expect("open").is_none());
        assert!(open_file(&s.base.join("fifo")).expect("open").is_none());
        assert!(open_file(&s.base.join(".keys.strackt-tmp")).is_err() || !is_root());
        untouched(&s);
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn temp_names_are_unique_and_unguessable() {
        let a = temp_name(OsStr::new("authorized_keys")).expect("name");
        let b = temp_name(OsStr::new("authorized_keys")).expect("name");
        assert_ne!(a, b);
        let a = a.to_string_lossy().into_owned();
        assert!(
            a.starts_with(".authorized_keys.") && a.ends_with(".strackt-tmp"),
            "{a}"
        );
        assert_eq!(
            a.len(),
            ".authorized_keys.".len() + 16 + ".strackt-tmp".len()
        );
        let long = "n".repeat(255);
        assert!(temp_name(OsStr::new(&long)).expect("name").len() <= 255);
    }

    #[test]
    fn existing_ancestors_keep_owner_and_mode_new_dirs_get_theirs() {
        let s = scene();
        std::fs::set_permissions(&s.base, std::fs::Permissions::from_mode(0o751)).expect("chmod");
        let before = Dir::open(&s.base)
            .expect("open")
            .owner_and_mode()
            .expect("stat");
        let d = Dir::create_all(&s.base.join("releases/7/x"), 0o705, me()).expect("create");
        assert_eq!(d.owner_and_mode().expect("stat"), (me(), 0o705));
        let mid = Dir::open(&s.base.join("releases")).expect("open");
        assert_eq!(mid.owner_and_mode().expect("stat"), (me(), 0o705));
        assert_eq!(
            Dir::open(&s.base)
                .expect("open")
                .owner_and_mode()
                .expect("stat"),
            before
        );
        // create_dirs the same way below a Dir.
        let root = Dir::open(&s.base).expect("open");
        std::fs::set_permissions(
            s.base.join("shared"),
            std::fs::Permissions::from_mode(0o770),
        )
        .expect("chmod");
        root.create_dirs("shared/storage/uploads", 0o700, me())
            .expect("create");
        let mode = |p: &str| {
            std::fs::metadata(s.base.join(p))
                .expect("stat")
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("shared"), 0o770);
        assert_eq!(mode("shared/storage/uploads"), 0o700);
    }

    #[test]
    fn removing_a_tree_follows_no_link_inside() {
        let s = scene();
        let tree = s.base.join("releases/1");
        std::fs::create_dir_all(tree.join("a/b")).expect("mkdir");
        std::fs::write(tree.join("a/b/f"), "f").expect("write");
        symlink(&s.victim, tree.join("a/to-victim")).expect("symlink");
        symlink(&s.victim, tree.join("a/b/deeper")).expect("symlink");
        let releases = Dir::open(&s.base.join("releases")).expect("open");
        releases.remove("1").expect("remove");
        assert_eq!(ls(&s.base.join("releases")), Vec::<String>::new());
        releases.remove("1").expect("absent is fine");
        // The tree's own name swapped for a link: the link goes, not its target.
        symlink(&s.victim, s.base.join("releases/2")).expect("symlink");
        releases.remove("2").expect("remove");
        assert_eq!(ls(&s.base.join("releases")), Vec::<String>::new());
        untouched(&s);
    }

    #[test]
    fn a_dir_stays_the_same_dir_when_its_path_is_swapped() {
        let s = scene();
        let releases_path = s.base.join("releases");
        std::fs::create_dir_all(releases_path.join("1")).expect("mkdir");
        let releases = Dir::open(&releases_path).expect("open");
        std::fs::rename(&releases_path, s.base.join("moved")).expect("mv");
        symlink(&s.victim, &releases_path).expect("symlink");
        releases.remove("1").expect("remove");
        assert_eq!(ls(&s.base.join("moved")), Vec::<String>::new());
        untouched(&s);
    }

    #[test]
    fn chown_tree_follows_no_link() {
        let s = scene();
        let tree = s.base.join("shared/storage");
        std::fs::create_dir_all(tree.join("d")).expect("mkdir");
        std::fs::write(tree.join("d/f"), "f").expect("write");
        symlink(&s.victim, tree.join("d/link")).expect("symlink");
        let shared = Dir::open(&s.base.join("shared")).expect("open");
        // Chowning to ourselves is allowed unprivileged; what matters is that it walks only the
        // tree (a link to the victim would make it fail or wander when followed).
        shared.chown_tree("storage", me()).expect("chown");
        assert_eq!(shared.kind("storage").expect("kind"), Some(Kind::Dir));
        untouched(&s);
    }

    #[test]
    fn swap_symlink_replaces_in_one_rename_and_leaves_no_temp() {
        let s = scene();
        let dir = Dir::open(&s.base).expect("open");
        dir.swap_symlink("current", Some(Path::new("releases/1")))
            .expect("swap");
        dir.swap_symlink("current", Some(Path::new("releases/2")))
            .expect("swap");
        assert_eq!(
            dir.read_link("current").expect("readlink"),
            Some(PathBuf::from("releases/2"))
        );
        assert_eq!(ls(&s.base), ["current", "shared"]);
        dir.swap_symlink("current", None).expect("remove");
        dir.swap_symlink("current", None).expect("absent is fine");
        assert_eq!(ls(&s.base), ["shared"]);
    }

    /// A source tree with a file, a nested directory, a link to the victim and a FIFO.
    fn source_tree(s: &Scene) -> PathBuf {
        let src = s.base.join("scratch/uploads");
        std::fs::create_dir_all(src.join("2026/05")).expect("mkdir");
        std::fs::write(src.join("2026/05/photo.jpg"), vec![7u8; 300_000]).expect("write");
        std::fs::write(src.join("top.txt"), "t").expect("write");
        std::fs::set_permissions(src.join("top.txt"), std::fs::Permissions::from_mode(0o640))
            .expect("chmod");
        std::fs::set_permissions(src.join("2026"), std::fs::Permissions::from_mode(0o750))
            .expect("chmod");
        symlink(&s.victim, src.join("2026/to-victim")).expect("symlink");
        symlink(s.victim.join("secret"), src.join("secret-link")).expect("symlink");
        nix::unistd::mkfifo(
            &src.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .expect("mkfifo");
        src
    }

    fn mode_of(p: &Path) -> u32 {
        std::fs::symlink_metadata(p)
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn copy_tree_copies_files_dirs_and_links_as_links() {
        let s = scene();
        let src = source_tree(&s);
        let from = Dir::open(&s.base.join("scratch")).expect("open");
        let shared = Dir::open(&s.base.join("shared")).expect("open");
        let notes = from.copy_tree("uploads", &shared, "uploads").expect("copy");
        let dst = s.base.join("shared/uploads");
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("fifo") && notes[0].contains("not copied"),
            "{notes:?}"
        );
        assert_eq!(ls(&dst), ["2026", "secret-link", "top.txt"]);
        assert_eq!(ls(&dst.join("2026")), ["05", "to-victim"]);
        assert_eq!(
            std::fs::read(dst.join("2026/05/photo.jpg")).expect("read"),
            vec![7u8; 300_000]
        );
        assert_eq!(
            std::fs::read_to_string(dst.join("top.txt")).expect("read"),
            "t"
        );
        // Modes, owners and modification times kept; links are links, pointing where they did.
        assert_eq!(mode_of(&dst.join("top.txt")), 0o640);
        assert_eq!(mode_of(&dst.join("2026")), 0o750);
        let (a, b) = (
            std::fs::symlink_metadata(src.join("2026/05/photo.jpg")).expect("stat"),
            std::fs::symlink_metadata(dst.join("2026/05/photo.jpg")).expect("stat"),
        );
        assert_eq!((a.uid(), a.gid(), a.mtime()), (b.uid(), b.gid(), b.mtime()));
        assert_eq!(
            std::fs::read_link(dst.join("2026/to-victim")).expect("readlink"),
            s.victim
        );
        assert!(std::fs::symlink_metadata(dst.join("secret-link"))
            .expect("stat")
            .file_type()
            .is_symlink());
        // No temporary name left beside it; the source is untouched.
        assert_eq!(ls(&s.base.join("shared")), ["storage", "uploads"]);
        assert_eq!(ls(&src), ["2026", "fifo", "secret-link", "top.txt"]);
        untouched(&s);
    }

    #[test]
    fn copy_tree_replaces_a_link_planted_at_the_destination_and_follows_none() {
        let s = scene();
        source_tree(&s);
        let from = Dir::open(&s.base.join("scratch")).expect("open");
        let shared = Dir::open(&s.base.join("shared")).expect("open");
        // The destination name is a link to the victim: a directory cannot be renamed over
        // it (as with rename(2)), so the copy fails, leaving no temporary copy and the victim
        // untouched.
        symlink(&s.victim, s.base.join("shared/uploads")).expect("symlink");
        // Links at the old predictable temp names: never used.
        symlink(&s.victim, s.base.join("shared/.uploads.strackt-tmp")).expect("symlink");
        let e = from
            .copy_tree("uploads", &shared, "uploads")
            .expect_err("a directory over a link");
        assert!(e.to_string().contains("rename"), "{e}");
        assert_eq!(
            ls(&s.base.join("shared")),
            [".uploads.strackt-tmp", "storage", "uploads"]
        );
        untouched(&s);
        std::fs::remove_file(s.base.join("shared/uploads")).expect("rm");
        from.copy_tree("uploads", &shared, "uploads").expect("copy");
        let dst = s.base.join("shared/uploads");
        assert!(std::fs::symlink_metadata(&dst)
            .expect("stat")
            .file_type()
            .is_dir());
        assert_eq!(ls(&dst), ["2026", "secret-link", "top.txt"]);
        // A single file as the source, over a link to the victim's file.
        symlink(s.victim.join("secret"), s.base.join("shared/top.txt")).expect("symlink");
        let up = from.open_dir("uploads").expect("open");
        up.copy_tree("top.txt", &shared, "top.txt").expect("copy");
        assert_eq!(
            std::fs::read_to_string(s.base.join("shared/top.txt")).expect("read"),
            "t"
        );
        // A link as the source: recreated, not followed (the victim's file is not copied).
        up.copy_tree("secret-link", &shared, "copied-link")
            .expect("copy");
        assert!(std::fs::symlink_metadata(s.base.join("shared/copied-link"))
            .expect("stat")
            .file_type()
            .is_symlink());
        // The source's own name swapped for a link after it was opened: its directory is the
        // one copied (the descriptor), and a link in its place is copied as a link.
        std::fs::rename(s.base.join("scratch/uploads"), s.base.join("scratch/moved")).expect("mv");
        symlink(&s.victim, s.base.join("scratch/uploads")).expect("symlink");
        from.copy_tree("uploads", &shared, "again").expect("copy");
        assert!(std::fs::symlink_metadata(s.base.join("shared/again"))
            .expect("stat")
            .file_type()
            .is_symlink());
        assert_eq!(
            ls(&s.base.join("shared")),
            [
                ".uploads.strackt-tmp",
                "again",
                "copied-link",
                "storage",
                "top.txt",
                "uploads"
            ]
        );
        untouched(&s);
    }

    #[test]
    fn move_to_renames_and_removes_nothing_else() {
        let s = scene();
        source_tree(&s);
        let from = Dir::open(&s.base.join("scratch")).expect("open");
        let shared = Dir::open(&s.base.join("shared")).expect("open");
        let notes = from.move_to("uploads", &shared, "uploads").expect("move");
        // One filesystem: a rename (the FIFO moves along, no note).
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(ls(&s.base.join("scratch")), Vec::<String>::new());
        assert_eq!(
            ls(&s.base.join("shared/uploads")),
            ["2026", "fifo", "secret-link", "top.txt"]
        );
        untouched(&s);
    }

    /// Across filesystems when /dev/shm is another one than the temp dir (it is on Debian).
    #[test]
    fn move_to_copies_across_filesystems() {
        let s = scene();
        source_tree(&s);
        let Ok(other) = tempfile::tempdir_in("/dev/shm") else {
            return;
        };
        let dev = |p: &Path| std::fs::metadata(p).expect("stat").dev();
        if dev(other.path()) == dev(&s.base) {
            return;
        }
        let from = Dir::open(&s.base.join("scratch")).expect("open");
        let to = Dir::open(other.path()).expect("open");
        let notes = from.move_to("uploads", &to, "uploads").expect("move");
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(ls(&s.base.join("scratch")), Vec::<String>::new());
        let dst = other.path().join("uploads");
        assert_eq!(ls(&dst), ["2026", "secret-link", "top.txt"]);
        assert_eq!(
            std::fs::read(dst.join("2026/05/photo.jpg")).expect("read"),
            vec![7u8; 300_000]
        );
        untouched(&s);
    }

    #[test]
    fn links_in_root_only_directories_are_followed() {
        // /proc/self is a link in /proc (root's, 0555): followed, as /var/run -> /run would be.
        let d = Dir::open(Path::new("/proc/self/fdinfo")).expect("open through a root link");
        assert!(!d.entries().expect("ls").is_empty());
        // `..` inside a followed target resolves physically.
        assert!(Dir::open(Path::new("/proc/self/../self/fdinfo")).is_ok());
    }
}
