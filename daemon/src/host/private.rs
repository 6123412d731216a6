//! strackt's own root-private state (`/var/lib/strackt/apps/…`, the vault, restore and
//! rebuild scratch): directories created 0700, files created new at 0600, never through a
//! link, trees removed. The one place that does this file work by path.
//!
//! Only for directories root owns and nobody else may write: a tree another user can write
//! goes through [`super::tree`] instead.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use nix::fcntl::OFlag;

/// Create `dir` and its missing parents, each 0700; `dir` itself is made 0700 even if it
/// existed (strackt's own state: nothing else creates these directories).
///
/// # Errors
/// I/O failures, with the path.
pub fn private_dir(dir: &Path) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| format!("creating {}: {e}", dir.display()))
}

/// [`private_dir`], empty: whatever was at `dir` (a killed operation's leftovers) goes first.
///
/// # Errors
/// I/O failures, with the path.
pub fn fresh_private_dir(dir: &Path) -> Result<(), String> {
    remove_private(dir)?;
    private_dir(dir)
}

/// [`private_dir`], emptied: what is in it goes, the directory itself stays (it may be a
/// mount point).
///
/// # Errors
/// I/O failures, with the path.
pub fn emptied_private_dir(dir: &Path) -> Result<(), String> {
    private_dir(dir)?;
    let entries = std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("reading {}: {e}", dir.display()))?;
        remove_private(&entry.path())?;
    }
    Ok(())
}

/// Create the new file `path` (0600, never through a link, never an existing file) in a
/// directory of strackt's own, for writing.
///
/// # Errors
/// I/O failures (also: `path` exists), with the path.
pub fn create_private(path: &Path) -> Result<File, String> {
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
        .map_err(|e| format!("creating {}: {e}", path.display()))
}

/// Remove `path` (a directory of strackt's own, or nothing) and what is in it.
pub fn remove_private(path: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
    .map_err(|e| format!("removing {}: {e}", path.display()))
}
