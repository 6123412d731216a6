//! strackt's own root-private state (`/var/lib/strackt/apps/…`, the vault, the state
//! database, restore and rebuild scratch, the control socket): directories created 0700, files
//! created new at 0600, never through a link, files moved within it (never a link), trees
//! removed. The one place that does this file work by path.
//!
//! Only for directories root owns and nobody else may write: a tree another user can write
//! goes through [`super::tree`] instead, and the generation store through [`super::store`].
//! Errors carry what was being done and the path, worded as they always were ("creating
//! /var/lib/strackt/vault: …").

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;

use super::tree::{Dir, Kind, Owner};
use super::{io_err, HostError};

/// Create `dir` and its missing parents, each 0700; `dir` itself is made 0700 even if it
/// existed (strackt's own state: nothing else creates these directories).
///
/// # Errors
/// I/O failures, with the path.
pub fn private_dir(dir: &Path) -> Result<(), HostError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(io_err("creating", dir))
}

/// [`private_dir`], empty: whatever was at `dir` (a killed operation's leftovers) goes first.
///
/// # Errors
/// I/O failures, with the path.
pub fn fresh_private_dir(dir: &Path) -> Result<(), HostError> {
    remove_private(dir)?;
    private_dir(dir)
}

/// [`private_dir`], emptied: what is in it goes, the directory itself stays (it may be a
/// mount point).
///
/// # Errors
/// I/O failures, with the path.
pub fn emptied_private_dir(dir: &Path) -> Result<(), HostError> {
    private_dir(dir)?;
    let entries = std::fs::read_dir(dir).map_err(io_err("reading", dir))?;
    for entry in entries {
        let entry = entry.map_err(io_err("reading", dir))?;
        remove_private(&entry.path())?;
    }
    Ok(())
}

/// Create the new file `path` (0600, never through a link, never an existing file) in a
/// directory of strackt's own, for writing.
///
/// # Errors
/// I/O failures (also: `path` exists), with the path.
pub fn create_private(path: &Path) -> Result<File, HostError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
        .open(path)
        .and_then(|f| {
            // The mode on the fd: a umask cannot have widened it, but say it once.
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            Ok(f)
        })
        .map_err(io_err("creating", path))
}

/// Remove `path` (a directory of strackt's own, or nothing) and what is in it.
///
/// # Errors
/// I/O failures, with the path.
pub fn remove_private(path: &Path) -> Result<(), HostError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
    .map_err(io_err("removing", path))
}

/// Set `mode` on the regular file `path` of strackt's own; `false` (and nothing changed) when
/// something else, a link included, is there. The file is opened without following a link
/// and changed through that descriptor (`fchmod`), so what is looked at is what is changed.
///
/// # Errors
/// I/O failures, with the path.
pub fn set_private_file_mode(path: &Path, mode: u32) -> Result<bool, HostError> {
    use std::os::unix::fs::PermissionsExt;
    let set = || {
        let (dir, name) = dir_and_name(path)?;
        let Some(file) = dir.open_file(name)? else {
            return Ok(false);
        };
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        Ok(true)
    };
    set().map_err(io_err("chmod", path))
}

/// The directory of `path`, open (reached as [`Dir::open`] does), and `path`'s name in it.
fn dir_and_name(path: &Path) -> std::io::Result<(Dir, &OsStr)> {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => Ok((Dir::open(dir)?, name)),
        _ => Err(std::io::Error::new(
            ErrorKind::InvalidInput,
            "no parent directory",
        )),
    }
}

/// Move the regular file `from` to `to` (both in directories of strackt's own), replacing what
/// is at `to` as `rename(2)` does. A link at `from` is refused, never moved: what arrives at
/// `to` is a file strackt wrote, not a name for another one. Nobody but root can change these
/// directories, so nothing is swapped between the look at `from` and the rename.
///
/// # Errors
/// `from` is not a regular file; I/O failures; each with `from`.
pub fn rename_private(from: &Path, to: &Path) -> Result<(), HostError> {
    let moved = || {
        let (src, name) = dir_and_name(from)?;
        if src.kind(name)? != Some(Kind::File) {
            return Err(std::io::Error::new(
                ErrorKind::InvalidInput,
                "not a regular file (a link is not followed)",
            ));
        }
        let (dest, to_name) = dir_and_name(to)?;
        src.rename(name, &dest, to_name)
    };
    moved().map_err(io_err("renaming", from))
}

/// The content of the regular file `path` of strackt's own (the vault's key); `None` when
/// nothing, or no regular file, is there. Reached as [`super::tree::open_file`] does: a link
/// is followed only in a directory root alone can change (as these are).
///
/// # Errors
/// A refused link, I/O failures, with the path.
pub fn read_private(path: &Path) -> Result<Option<Vec<u8>>, HostError> {
    let Some(mut f) = super::tree::open_file(path).map_err(io_err("reading", path))? else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(io_err("reading", path))?;
    Ok(Some(bytes))
}

/// Fill `buf` from the kernel's random source (`/dev/urandom`, as strackt always read it).
///
/// # Errors
/// The source cannot be read.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), HostError> {
    let source = Path::new("/dev/urandom");
    File::open(source)
        .and_then(|mut f| f.read_exact(buf))
        .map_err(io_err("reading", source))
}

/// Make the file `path` root's alone: created with `mode` when missing, and `mode` set on it
/// and on each of its companions `path` + suffix that exist (SQLite's `-wal`, `-shm`, …; an
/// install from before made them 0644).
///
/// Unlike [`create_private`], an existing file is kept and a link at `path` is followed: the
/// caller (SQLite) opens the same path right after, as it always did, following it too.
///
/// # Errors
/// The kernel's I/O error, without the path (the caller says which file it was).
pub fn private_files(path: &Path, suffixes: &[&str], mode: u32) -> std::io::Result<()> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(mode)
        .open(path)?;
    for suffix in suffixes {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)) {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Bind the listening Unix socket `path` that only this process's user may connect to (the
/// control socket), as strackt always did and in that order: its directory created when
/// missing (as `create_dir_all` does; under systemd, `RuntimeDirectory=` made it 0700 first),
/// whatever an earlier run left at `path` removed, the socket bound, then made 0600. Between
/// the bind and the chmod it has the umask's mode (0755 under `UMask=0022`): connecting needs
/// write permission, so no other user can connect then either.
///
/// The directory must be this user's and writable by no one else: whoever can change it can
/// move the socket aside and put their own in its place, and clients would talk to them. It
/// is reached as [`Dir::open`] does (no link followed that another user could have planted),
/// and the socket is bound and chmodded in that very directory — by its descriptor,
/// `/proc/self/fd/N/name` for the bind — so a path swapped on the way after the check changes
/// nothing.
///
/// # Errors
/// The kernel's I/O error, without the path (the caller says what it was binding), or the
/// refusal of the directory, which names it.
pub fn bind_private_socket(path: &Path) -> std::io::Result<UnixListener> {
    // A relative `STRACKT_SOCKET` is relative to the working directory.
    let path = std::path::absolute(path)?;
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new().recursive(true).create(dir)?;
    }
    let (dir, name) = dir_and_name(&path)?;
    let (owner, mode) = dir.owner_and_mode()?;
    if owner.uid != Owner::process().uid || mode & 0o022 != 0 {
        return Err(std::io::Error::new(
            ErrorKind::PermissionDenied,
            format!(
                "{} belongs to uid {} with mode {mode:o}: another user could replace a socket there; it must be this user's and writable by no one else",
                dir.path().display(),
                owner.uid
            ),
        ));
    }
    // Safe to ignore, as it always was: nothing there is the usual case, and a leftover that
    // cannot be removed makes the bind fail, which is reported.
    let _ = dir.remove_file(name);
    let at = PathBuf::from(format!("/proc/self/fd/{}", dir.as_fd().as_raw_fd())).join(name);
    let listener = UnixListener::bind(&at)?;
    rustix::fs::chmodat(
        &dir,
        name,
        rustix::fs::Mode::from_raw_mode(0o600),
        rustix::fs::AtFlags::empty(),
    )?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_as_they_did_when_they_were_strings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("f");
        std::fs::write(&file, "x").expect("write");
        let e = create_private(&file).expect_err("exists");
        assert_eq!(
            e.to_string(),
            format!("creating {}: File exists (os error 17)", file.display())
        );
        let e = private_dir(&file.join("sub")).expect_err("not a directory");
        assert_eq!(
            e.to_string(),
            format!(
                "creating {}: Not a directory (os error 20)",
                file.join("sub").display()
            )
        );
        assert!(!e.is_transient());
    }

    #[test]
    fn a_link_is_never_renamed_in_as_a_private_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (from, to) = (dir.path().join("current.dump"), dir.path().join("2.dump"));
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "not a dump").expect("write");
        std::os::unix::fs::symlink(&victim, &from).expect("link");
        let e = rename_private(&from, &to).expect_err("a link is not moved");
        assert!(
            e.to_string()
                .starts_with(&format!("renaming {}: ", from.display())),
            "{e}"
        );
        assert!(std::fs::symlink_metadata(&to).is_err(), "nothing at {to:?}");
        std::fs::remove_file(&from).expect("rm link");
        std::fs::write(&from, "dump").expect("write");
        rename_private(&from, &to).expect("a file is moved");
        assert_eq!(std::fs::read_to_string(&to).expect("read"), "dump");
        assert!(std::fs::symlink_metadata(&from).is_err());
    }

    #[test]
    fn only_a_regular_file_gets_its_mode_set_never_what_a_link_names() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "root's").expect("write");
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let dump = dir.path().join("shop.dump");
        std::os::unix::fs::symlink(&victim, &dump).expect("link");
        assert!(!set_private_file_mode(&dump, 0o600).expect("a link is no dump"));
        assert_eq!(mode(&victim), 0o644);
        std::fs::remove_file(&dump).expect("rm link");
        std::fs::write(&dump, "dump").expect("write");
        assert!(set_private_file_mode(&dump, 0o600).expect("a file"));
        assert_eq!(mode(&dump), 0o600);
        assert!(!set_private_file_mode(&dir.path().join("none"), 0o600).expect("nothing"));
    }

    #[test]
    fn the_socket_is_bound_0600_and_only_in_a_directory_no_other_user_can_change() {
        use std::os::unix::fs::{chown, symlink, FileTypeExt};
        let dir = tempfile::tempdir().expect("tempdir");
        let run = dir.path().join("run");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&run)
            .expect("mkdir");
        let sock = run.join("control.sock");
        let listener = bind_private_socket(&sock).expect("bind");
        let meta = std::fs::symlink_metadata(&sock).expect("stat");
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        drop(listener);
        // What the last run left is replaced.
        let _again = bind_private_socket(&sock).expect("bind over a stale socket");

        // A directory another user owns, one anyone can write: refused, nothing bound there.
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).expect("mkdir");
        chown(&theirs, Some(4242), Some(4242)).expect("chown");
        let open = dir.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        for there in [&theirs, &open] {
            let e = bind_private_socket(&there.join("control.sock")).expect_err("refused");
            assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
            assert!(std::fs::symlink_metadata(there.join("control.sock")).is_err());
        }
        // A link planted where another user could have: not followed.
        symlink(&run, open.join("run")).expect("link");
        let e = bind_private_socket(&open.join("run/other.sock")).expect_err("not followed");
        assert!(crate::host::tree::is_refused(&e), "{e}");
        assert!(std::fs::symlink_metadata(run.join("other.sock")).is_err());
    }
}
