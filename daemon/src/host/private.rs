//! strackt's own root-private state (`/var/lib/strackt/apps/…`, the vault, the state
//! database, restore and rebuild scratch): directories created 0700, files created new at 0600,
//! never through a link, trees removed. The one place that does this file work by path.
//!
//! Only for directories root owns and nobody else may write: a tree another user can write
//! goes through [`super::tree`] instead, and the generation store through [`super::store`].
//! Errors carry what was being done and the path, worded as they always were ("creating
//! /var/lib/strackt/vault: …").

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use nix::fcntl::OFlag;

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
}
