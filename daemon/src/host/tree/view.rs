//! Pinned views: paths in trees another user can change, fixed for a program that opens them by
//! name (restic backing up an app's `shared/` paths).
//!
//! A program given a path resolves it itself, as root, and follows every link on the way: a
//! check made before it starts cannot stop the app's user from swapping `shared/storage` for a
//! link to a root-only directory in between. A [`View`] closes that window.
//!
//! [`View::pin`] reaches each path the way [`Dir::open`] does (a planted link is refused) and
//! finds the first directory on the way that someone besides root can change (the *top*: its own
//! name is in a root-only directory, so it stays what it is). For each top it builds a detached
//! tmpfs holding the way down, each directory made with the real one's owner, mode and times,
//! and for each path a detached clone (`open_tree`) of the very directory or file it found; a
//! link there is made again as a link. [`View::enter`], in the child before `exec`, unshares the
//! mount namespace and attaches them: the tmpfs over its top, each pinned path on its place.
//! Every name the program resolves is then one root made, down to the pinned directory, whose
//! contents it walks without following links (restic stores a link as a link). The paths keep
//! their names, so snapshots look as before and restore anywhere with restic alone. Nothing of
//! it is visible outside the program's namespace; it all goes when the program ends.
//!
//! What it must not do: allocate, lock or log in [`View::enter`] (it runs between `fork` and
//! `exec`): everything it needs is prepared by [`View::pin`].

use std::collections::BTreeSet;
use std::ffi::CString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps, CWD};
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountPropagationFlags, MoveMountFlags, OpenTreeFlags,
};
use rustix::thread::UnshareFlags;

use super::{at, kind_of, trusted, Dir, Kind};

/// Paths pinned for one program. Empty when every way to them is root's alone.
#[derive(Debug, Default)]
pub struct View {
    paths: Vec<PathBuf>,
    /// Detached mounts, each attached at its path by [`View::enter`] in this order: a tmpfs
    /// holding the way down, then the pinned directories and files on their places in it.
    attach: Vec<(OwnedFd, CString)>,
}

/// The path [`View::pin`] found nothing at (or nothing on the way to).
#[derive(Debug)]
struct Missing(PathBuf);

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: nothing there", self.0.display())
    }
}

impl std::error::Error for Missing {}

/// The path a [`View::pin`] error says is not there.
pub fn missing(e: &io::Error) -> Option<&Path> {
    e.get_ref()?
        .downcast_ref::<Missing>()
        .map(|m| m.0.as_path())
}

/// A tmpfs being built for the directory at `top` (its root stands for it).
struct Cover {
    top: PathBuf,
    /// The detached mount, to attach.
    mount: OwnedFd,
    /// Its root directory, opened, to build in.
    root: OwnedFd,
}

impl View {
    /// Pin `paths` (absolute). A path inside another one is dropped: the outer one holds it, and
    /// given on its own it would be resolved through the outer one's live contents.
    ///
    /// # Errors
    /// `NotFound` for the first path with nothing there ([`missing`] names it); a link on the
    /// way ([`super::is_refused`]); I/O failures.
    pub fn pin(paths: &[PathBuf]) -> io::Result<View> {
        let mut view = View::default();
        let mut sorted: Vec<&PathBuf> = paths.iter().collect();
        sorted.sort();
        sorted.dedup();
        let mut covers: Vec<Cover> = Vec::new();
        let mut made = BTreeSet::new();
        let mut pins = Vec::new();
        for path in sorted {
            if view.paths.iter().any(|p| path.starts_with(p)) {
                continue;
            }
            View::pin_one(path, &mut covers, &mut made, &mut pins).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => {
                    io::Error::new(io::ErrorKind::NotFound, Missing(path.clone()))
                }
                _ => e,
            })?;
            view.paths.push(path.clone());
        }
        // The covers first: the pinned paths are attached on places inside them.
        let covers = covers.into_iter().map(|c| Ok((c.mount, c_path(&c.top)?)));
        view.attach = covers.collect::<io::Result<Vec<_>>>()?;
        view.attach.extend(pins);
        Ok(view)
    }

    /// The paths it shows, outermost only, sorted: what the program is given.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Pin `path`: its cover (made when it is the first under that top), the way down in it,
    /// and its own mount in `pins`; nothing when the way there is root's alone.
    fn pin_one(
        path: &Path,
        covers: &mut Vec<Cover>,
        made: &mut BTreeSet<PathBuf>,
        pins: &mut Vec<(OwnedFd, CString)>,
    ) -> io::Result<()> {
        let invalid = |why: &str| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} {why}", path.display()),
            )
        };
        if !path.is_absolute() {
            return Err(invalid("is not an absolute path"));
        }
        let mut names = Vec::new();
        for c in path.components() {
            match c {
                Component::RootDir => {}
                Component::Normal(n) => names.push(n),
                _ => return Err(invalid("is not a plain absolute path")),
            }
        }
        let Some((leaf, way)) = names.split_last() else {
            return Err(invalid("names no file"));
        };
        let missing = || {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: nothing there", path.display()),
            )
        };
        // The first directory on the way someone besides root can change. Its own name is in a
        // directory only root can change, so it stays what it is; everything below it is
        // rebuilt.
        let mut top_path = PathBuf::from("/");
        let mut top = None;
        for (i, name) in way.iter().enumerate() {
            top_path.push(name);
            let dir = Dir::open(&top_path)?;
            let st = rustix::fs::fstat(&dir.fd).map_err(|e| at("stat", &top_path, e))?;
            if !trusted(&st) {
                top = Some((i, dir));
                break;
            }
        }
        let Some((i, top)) = top else {
            // Only root can change the way there: the program's own resolution is as safe.
            Dir::open(&top_path)?.kind(leaf)?.ok_or_else(missing)?;
            return Ok(());
        };
        let cover = match covers.iter().position(|c| c.top == top_path) {
            Some(n) => &covers[n],
            None => {
                let (mount, root) = tmpfs(&top.fd, &top_path)?;
                covers.push(Cover {
                    mount,
                    root,
                    top: top_path.clone(),
                });
                &covers[covers.len() - 1]
            }
        };
        // The way down, each directory opened from the one above and made again in the cover.
        let mut dir = top;
        let mut rel = PathBuf::new();
        for name in &way[i + 1..] {
            dir = dir.open_dir(name)?;
            rel.push(name);
            if made.insert(top_path.join(&rel)) {
                let st = rustix::fs::fstat(&dir.fd).map_err(|e| at("stat", &dir.path, e))?;
                in_cover(
                    &rustix::fs::mkdirat(&cover.root, &rel, Mode::from_raw_mode(0o700)),
                    &rel,
                )?;
                set_meta(&cover.root, &rel, &st, AtFlags::empty())?;
            }
        }
        rel.push(leaf);
        let here = |r: rustix::io::Result<()>| in_cover(&r, &rel);
        let st = rustix::fs::statat(&dir.fd, *leaf, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| {
            if e == rustix::io::Errno::NOENT {
                missing()
            } else {
                at("stat", path, e)
            }
        })?;
        let from = match kind_of(&st) {
            Kind::Symlink => {
                // Made again, pointing where it points: restic stores a link as a link.
                let target = dir.read_link(leaf)?.ok_or_else(missing)?;
                here(rustix::fs::symlinkat(&target, &cover.root, &rel))?;
                return set_meta(&cover.root, &rel, &st, AtFlags::SYMLINK_NOFOLLOW);
            }
            Kind::Dir => {
                here(rustix::fs::mkdirat(
                    &cover.root,
                    &rel,
                    Mode::from_raw_mode(0o700),
                ))?;
                dir.open_dir(leaf)?.fd
            }
            Kind::File | Kind::Other => {
                let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
                here(
                    rustix::fs::openat(&cover.root, &rel, flags, Mode::from_raw_mode(0o600))
                        .map(drop),
                )?;
                rustix::fs::openat(
                    &dir.fd,
                    *leaf,
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| at("open", path, e))?
            }
        };
        let flags = OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_EMPTY_PATH;
        let mount = rustix::mount::open_tree(&from, c"", flags).map_err(|e| at("pin", path, e))?;
        pins.push((mount, c_path(path)?));
        Ok(())
    }

    /// Enter the view: a mount namespace of the calling process's own, with the pinned paths
    /// where they were. Runs in the child between `fork` and `exec`: it only makes system calls
    /// on what [`View::pin`] prepared (no allocation, no lock). Nothing to do for an empty view.
    ///
    /// # Errors
    /// A failed system call (the program is then not started).
    pub fn enter(&self) -> io::Result<()> {
        if self.attach.is_empty() {
            return Ok(());
        }
        // SAFETY: called in a freshly forked, single-threaded child just before `exec`, and only
        // with `NEWNS`: no other thread exists to keep using the old mount table, and the
        // descriptor table (what `unshare_unsafe` warns about with `FILES`) is untouched.
        #[allow(unsafe_code)]
        unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS) }?;
        // Nothing attached here reaches the host's namespace (systemd makes `/` shared).
        rustix::mount::mount_change(
            c"/",
            MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
        )?;
        for (mount, at) in &self.attach {
            rustix::mount::move_mount(
                mount,
                c"",
                CWD,
                at.as_c_str(),
                MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
            )?;
        }
        Ok(())
    }
}

/// A detached tmpfs whose root has `top`'s owner, mode and times: the mount and its root,
/// opened.
fn tmpfs(top: &OwnedFd, path: &Path) -> io::Result<(OwnedFd, OwnedFd)> {
    let fail = |e| at("make a tmpfs to cover", path, e);
    let fs = rustix::mount::fsopen(c"tmpfs", FsOpenFlags::FSOPEN_CLOEXEC).map_err(fail)?;
    rustix::mount::fsconfig_set_string(&fs, c"mode", c"0700").map_err(fail)?;
    rustix::mount::fsconfig_create(&fs).map_err(fail)?;
    let root = rustix::mount::fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV,
    )
    .map_err(fail)?;
    // The mount's own descriptor is `O_PATH`: no chmod through it.
    let dir = rustix::fs::openat(
        &root,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(fail)?;
    let st = rustix::fs::fstat(top).map_err(|e| at("stat", path, e))?;
    set_meta(&dir, Path::new(""), &st, AtFlags::EMPTY_PATH)?;
    Ok((root, dir))
}

/// An error making `rel` in a cover (a tmpfs nobody else can see: only its own failures).
fn in_cover<T>(r: &rustix::io::Result<T>, rel: &Path) -> io::Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(e) => Err(at("make in the cover", rel, *e)),
    }
}

/// Give `rel` in `cover` the owner, mode (not a link's) and times `st` describes.
fn set_meta(cover: &OwnedFd, rel: &Path, st: &rustix::fs::Stat, flags: AtFlags) -> io::Result<()> {
    let fail = |e| at("set owner, mode and times of", rel, e);
    let (uid, gid) = (
        Some(rustix::fs::Uid::from_raw(st.st_uid)),
        Some(rustix::fs::Gid::from_raw(st.st_gid)),
    );
    rustix::fs::chownat(cover, rel, uid, gid, flags).map_err(fail)?;
    if !flags.contains(AtFlags::SYMLINK_NOFOLLOW) {
        let mode = Mode::from_raw_mode(st.st_mode & 0o7777);
        if rel.as_os_str().is_empty() {
            rustix::fs::fchmod(cover, mode).map_err(fail)?;
        } else {
            rustix::fs::chmodat(cover, rel, mode, AtFlags::empty()).map_err(fail)?;
        }
    }
    let time = |sec: i64, nsec: u64| Timespec {
        tv_sec: sec,
        tv_nsec: i64::try_from(nsec).unwrap_or(0),
    };
    let times = Timestamps {
        last_access: time(st.st_atime, st.st_atime_nsec),
        last_modification: time(st.st_mtime, st.st_mtime_nsec),
    };
    rustix::fs::utimensat(cover, rel, &times, flags).map_err(fail)?;
    Ok(())
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} holds a NUL byte", path.display()),
        )
    })
}
