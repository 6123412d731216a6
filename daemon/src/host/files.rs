//! The real filesystem behind [`Files`]: atomic replacement, ownership, hashing.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use nix::unistd::{Gid, Group, Uid, User};
use sha2::{Digest, Sha256};

use super::{FileState, Files, HostError};

/// The machine's filesystem.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFiles;

use crate::host::io_err as io;

/// Hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Replace `path` with `content` so that a reader (or a crash) sees either the old file or the
/// new one, never a torn mix: write a temp file beside it, set mode and owner on the open file,
/// fsync, rename over, fsync the directory.
pub fn atomic_write(
    path: &Path,
    content: &[u8],
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<(), HostError> {
    let dir = path.parent().ok_or_else(|| HostError::Io {
        op: "write",
        path: path.to_path_buf(),
        source: std::io::Error::new(ErrorKind::InvalidInput, "no parent directory"),
    })?;
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(io("create directory", dir))?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.strackt-tmp"));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        f.write_all(content).map_err(io("write", &tmp))?;
        nix::unistd::fchown(&f, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).map_err(
            |e| HostError::Io {
                op: "chown",
                path: tmp.clone(),
                source: e.into(),
            },
        )?;
        // fchmod after fchown: chown clears setuid/setgid bits.
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io("chmod", &tmp))?;
        f.sync_all().map_err(io("fsync", &tmp))?;
        fs::rename(&tmp, path).map_err(io("rename", path))?;
        fsync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Point the symlink `link` at `target` in one step — a fresh symlink renamed over it, then the
/// directory fsynced — so at every instant it names the old target or the new one. `None`
/// removes it.
pub fn swap_symlink(link: &Path, target: Option<&Path>) -> Result<(), HostError> {
    let dir = link.parent().unwrap_or(Path::new("/"));
    match target {
        Some(target) => {
            let name = link
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let tmp = dir.join(format!(".{name}.tmp"));
            let _ = fs::remove_file(&tmp);
            std::os::unix::fs::symlink(target, &tmp).map_err(io("symlink", &tmp))?;
            fs::rename(&tmp, link).map_err(io("rename", link))?;
        }
        None => match fs::remove_file(link) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove", link)(e)),
        },
    }
    fsync_dir(dir)
}

/// fsync a directory so a rename inside it survives a power cut.
pub fn fsync_dir(dir: &Path) -> Result<(), HostError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync", dir))
}

/// A decimal id as is, else a name looked up through NSS.
fn resolve(
    kind: &'static str,
    name: &str,
    lookup: impl FnOnce(&str) -> nix::Result<Option<u32>>,
) -> Result<u32, HostError> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(n);
    }
    match lookup(name) {
        Ok(Some(id)) => Ok(id),
        _ => Err(HostError::UnknownName {
            kind,
            name: name.into(),
        }),
    }
}

impl Files for RealFiles {
    fn stat(&self, path: &Path) -> Result<Option<FileState>, HostError> {
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("stat", path)(e)),
        };
        if !meta.file_type().is_file() {
            return Ok(None);
        }
        let mut hasher = Sha256::new();
        let mut f = File::open(path).map_err(io("open", path))?;
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = f.read(&mut buf).map_err(io("read", path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(Some(FileState {
            sha256: hex::encode(hasher.finalize()),
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
        }))
    }

    fn read(&self, path: &Path) -> Result<Option<Vec<u8>>, HostError> {
        match fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", path)(e)),
        }
    }

    fn write(
        &self,
        path: &Path,
        content: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<(), HostError> {
        atomic_write(path, content, mode, uid, gid)
    }

    fn remove(&self, path: &Path) -> Result<(), HostError> {
        match fs::remove_file(path) {
            Ok(()) => path.parent().map_or(Ok(()), fsync_dir),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("remove", path)(e)),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<(), HostError> {
        if let Some(dir) = to.parent() {
            fs::create_dir_all(dir).map_err(io("create directory", dir))?;
        }
        match fs::rename(from, to) {
            Ok(()) => Ok(()),
            // Across filesystems: copy (keeping mode and owner), then remove the original.
            Err(e) if e.raw_os_error() == Some(nix::libc::EXDEV) => {
                let meta = fs::metadata(from).map_err(io("stat", from))?;
                let bytes = fs::read(from).map_err(io("read", from))?;
                atomic_write(to, &bytes, meta.mode() & 0o7777, meta.uid(), meta.gid())?;
                fs::remove_file(from).map_err(io("remove", from))
            }
            Err(e) => Err(io("rename", from)(e)),
        }
    }

    fn uid(&self, user: &str) -> Result<u32, HostError> {
        resolve("user", user, |n| {
            Ok(User::from_name(n)?.map(|u| u.uid.as_raw()))
        })
    }

    fn gid(&self, group: &str) -> Result<u32, HostError> {
        resolve("group", group, |n| {
            Ok(Group::from_name(n)?.map(|g| g.gid.as_raw()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content_mode_and_leaves_no_temp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/dir/file.conf");
        let me = nix::unistd::geteuid().as_raw();
        let group = nix::unistd::getegid().as_raw();
        atomic_write(&path, b"one", 0o640, me, group).expect("first write");
        atomic_write(&path, b"two", 0o600, me, group).expect("second write");
        let st = RealFiles.stat(&path).expect("stat").expect("exists");
        assert_eq!(st.sha256, sha256_hex(b"two"));
        assert_eq!(st.mode, 0o600);
        let names: Vec<_> = fs::read_dir(path.parent().expect("parent"))
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("file.conf")]);
    }

    #[test]
    fn stat_of_missing_or_directory_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            RealFiles.stat(&dir.path().join("nope")).expect("stat"),
            None
        );
        assert_eq!(RealFiles.stat(dir.path()).expect("stat"), None);
    }
}
