//! The real filesystem behind [`Files`]: atomic replacement, ownership, hashing — every path
//! through [`tree`], so root follows no link another user could have planted. A file's hash is
//! kept while its inode, size and times are unchanged, so a no-op pass reads no content.

use std::collections::HashMap;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::unistd::{Group, User};
use sha2::{Digest, Sha256};

use super::tree::{self, Dir, Owner};
use super::{FileState, Files, HostError};

/// The machine's filesystem.
#[derive(Debug, Default)]
pub struct RealFiles {
    /// Content hashes by path, with the identity and times of the file they were computed
    /// from (see [`Identity`]): a file whose identity is unchanged is not read again.
    hashes: Mutex<HashMap<PathBuf, (Identity, String)>>,
}

/// What changes whenever a file's content can have changed: its inode (a replacement), size,
/// modification and change times. The change time cannot be set by anyone (it is the kernel's
/// clock at the last change), so content written behind strackt's back always changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Identity {
    fn of(meta: &std::fs::Metadata) -> Identity {
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// Whether a hash taken now can be trusted later: file times have the kernel's coarse
    /// clock, so a write within a tick of the last change can leave them equal (git's "racy
    /// clean" case). A file changed in the last two seconds is hashed again next time.
    fn settled(&self, now: i64) -> bool {
        self.ctime.0 < now - 2 && self.mtime.0 < now - 2
    }
}

use crate::host::io_err as io;

/// Hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `path`'s directory and name, or an error naming `op`.
fn split<'a>(
    op: &'static str,
    path: &'a Path,
) -> Result<(&'a Path, &'a std::ffi::OsStr), HostError> {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => Ok((dir, name)),
        _ => Err(HostError::Io {
            op,
            path: path.to_path_buf(),
            source: std::io::Error::new(ErrorKind::InvalidInput, "no parent directory"),
        }),
    }
}

/// Replace `path` with `content` so that a reader (or a crash) sees either the old file or the
/// new one, never a torn mix, and root writes nothing through a link another user planted:
/// missing parents are created (root, 0755), the directory is reached as [`Dir::open`] does,
/// and the file is written there as [`Dir::write_file`] does (a random temp name, `O_EXCL`,
/// owner and mode on the descriptor, fsync, rename over, fsync of the directory).
pub fn atomic_write(
    path: &Path,
    content: &[u8],
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<(), HostError> {
    // A relative path (`strackt export --output x.yaml`) is relative to the working directory.
    let path = &std::path::absolute(path).map_err(io("write", path))?;
    let (dir, name) = split("write", path)?;
    Dir::create_all(dir, 0o755, Owner::process())
        .and_then(|d| d.write_file(name, content, mode, Owner { uid, gid }))
        .map_err(io("write", path))
}

/// Point the symlink `link` at `target` in one step — a fresh symlink renamed over it, then the
/// directory fsynced — so at every instant it names the old target or the new one. `None`
/// removes it. The directory is reached as [`Dir::open`] does.
pub fn swap_symlink(link: &Path, target: Option<&Path>) -> Result<(), HostError> {
    let (dir, name) = split("link", link)?;
    Dir::open(dir)
        .and_then(|d| d.swap_symlink(name, target))
        .map_err(io("link", link))
}

/// fsync a directory so a rename inside it survives a power cut.
pub fn fsync_dir(dir: &Path) -> Result<(), HostError> {
    Dir::open(dir)
        .and_then(|d| d.sync())
        .map_err(io("fsync", dir))
}

/// The regular file at `path` open for reading (see [`tree::open_file`]); `None` when nothing,
/// or no regular file, is there.
fn open_regular(path: &Path) -> Result<Option<File>, HostError> {
    tree::open_file(path).map_err(io("open", path))
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
        // What is at `path` itself: a link there is no file (it is replaced when written).
        let (dir, name) = split("stat", path)?;
        let dir = match Dir::open(dir) {
            Ok(d) => d,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("stat", path)(e)),
        };
        let Some(mut f) = dir.open_file(name).map_err(io("open", path))? else {
            return Ok(None);
        };
        let meta = f.metadata().map_err(io("stat", path))?;
        let identity = Identity::of(&meta);
        let mut hashes = self.hashes.lock().unwrap_or_else(|e| e.into_inner());
        let sha256 = match hashes.get(path) {
            Some((seen, sha)) if *seen == identity => sha.clone(),
            _ => {
                let mut hasher = Sha256::new();
                let mut buf = [0u8; 16 * 1024];
                loop {
                    let n = f.read(&mut buf).map_err(io("read", path))?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                }
                let sha = hex::encode(hasher.finalize());
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                if identity.settled(now) {
                    hashes.insert(path.to_path_buf(), (identity, sha.clone()));
                } else {
                    hashes.remove(path);
                }
                sha
            }
        };
        Ok(Some(FileState {
            sha256,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
        }))
    }

    fn read(&self, path: &Path) -> Result<Option<Vec<u8>>, HostError> {
        let Some(mut f) = open_regular(path)? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).map_err(io("read", path))?;
        Ok(Some(bytes))
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
        let (dir, name) = split("remove", path)?;
        let dir = match Dir::open(dir) {
            Ok(d) => d,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io("remove", path)(e)),
        };
        if dir.remove_file(name).map_err(io("remove", path))? {
            dir.sync().map_err(io("fsync", dir.path()))?;
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<(), HostError> {
        let (from_dir, from_name) = split("rename", from)?;
        let (to_dir, to_name) = split("rename", to)?;
        let src = Dir::open(from_dir).map_err(io("rename", from))?;
        let dest = Dir::create_all(to_dir, 0o755, Owner::process()).map_err(io("rename", to))?;
        match src.rename(from_name, &dest, to_name) {
            Ok(()) => dest.sync().map_err(io("fsync", to_dir)),
            // Across filesystems: copy (keeping mode and owner), then remove the original.
            Err(e) if e.raw_os_error() == Some(nix::libc::EXDEV) => {
                let mut f = src
                    .open_file(from_name)
                    .map_err(io("read", from))?
                    .ok_or_else(|| HostError::Io {
                        op: "read",
                        path: from.to_path_buf(),
                        source: std::io::Error::new(ErrorKind::NotFound, "not a regular file"),
                    })?;
                let (owner, mode) = tree::file_owner_and_mode(&f).map_err(io("stat", from))?;
                let mut bytes = Vec::new();
                f.read_to_end(&mut bytes).map_err(io("read", from))?;
                dest.write_file(to_name, &bytes, mode, owner)
                    .map_err(io("write", to))?;
                src.remove_file(from_name).map_err(io("remove", from))?;
                Ok(())
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
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};

    use super::*;

    #[test]
    fn atomic_write_replaces_content_mode_and_leaves_no_temp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/dir/file.conf");
        let me = nix::unistd::geteuid().as_raw();
        let group = nix::unistd::getegid().as_raw();
        atomic_write(&path, b"one", 0o640, me, group).expect("first write");
        atomic_write(&path, b"two", 0o600, me, group).expect("second write");
        let st = RealFiles::default()
            .stat(&path)
            .expect("stat")
            .expect("exists");
        assert_eq!(st.sha256, sha256_hex(b"two"));
        assert_eq!(st.mode, 0o600);
        let names: Vec<_> = fs::read_dir(path.parent().expect("parent"))
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("file.conf")]);
    }

    #[test]
    fn a_kept_hash_is_used_only_while_the_file_is_unchanged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        fs::write(&path, "one\n").expect("write");
        let files = RealFiles::default();
        // As if hashed on an earlier pass: the kept hash is what stat answers.
        let identity = Identity::of(&fs::metadata(&path).expect("stat"));
        files
            .hashes
            .lock()
            .expect("lock")
            .insert(path.clone(), (identity, "kept".into()));
        assert_eq!(
            files.stat(&path).expect("stat").map(|s| s.sha256),
            Some("kept".into())
        );
        // Written behind strackt's back: its identity moved (here the size; within the same
        // clock tick the times may not, which is why only settled files are kept), so it is read.
        fs::write(&path, "three\n").expect("write");
        assert_eq!(
            files.stat(&path).expect("stat").map(|s| s.sha256),
            Some(sha256_hex(b"three\n"))
        );
        // A file changed within the last two seconds is never kept (coarse file clocks).
        let fresh = Identity::of(&fs::metadata(&path).expect("stat"));
        assert!(!fresh.settled(fresh.ctime.0 + 1));
        assert!(fresh.settled(fresh.ctime.0.max(fresh.mtime.0) + 3));
        assert!(!files.hashes.lock().expect("lock").contains_key(&path));
    }

    #[test]
    fn stat_of_missing_or_directory_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            RealFiles::default()
                .stat(&dir.path().join("nope"))
                .expect("stat"),
            None
        );
        assert_eq!(RealFiles::default().stat(dir.path()).expect("stat"), None);
    }

    #[test]
    fn nothing_is_written_or_read_through_a_planted_link() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().join("home");
        let victim = dir.path().join("shadow");
        fs::write(&victim, "root:secret\n").expect("write");
        fs::create_dir_all(home.join(".ssh")).expect("mkdir");
        // Another user's directory (writable by others, so even root's tests see it as such).
        fs::set_permissions(&home, fs::Permissions::from_mode(0o777)).expect("chmod");
        fs::set_permissions(home.join(".ssh"), fs::Permissions::from_mode(0o777)).expect("chmod");
        let me = nix::unistd::geteuid().as_raw();
        let group = nix::unistd::getegid().as_raw();
        let keys = home.join(".ssh/authorized_keys");
        symlink(&victim, home.join(".ssh/.authorized_keys.strackt-tmp")).expect("symlink");
        symlink(&victim, &keys).expect("symlink");
        assert_eq!(RealFiles::default().stat(&keys).expect("stat"), None);
        let e = RealFiles::default().read(&keys).expect_err("refused");
        assert!(e.to_string().contains("not followed"), "{e}");
        atomic_write(&keys, b"ssh-ed25519 k\n", 0o600, me, group).expect("write");
        assert_eq!(fs::read_to_string(&victim).expect("read"), "root:secret\n");
        assert_eq!(fs::read_to_string(&keys).expect("read"), "ssh-ed25519 k\n");
        assert!(fs::symlink_metadata(&keys)
            .expect("stat")
            .file_type()
            .is_file());
        // ~/.ssh itself a link: refused, nothing created beside the victim.
        fs::rename(home.join(".ssh"), home.join("old-ssh")).expect("mv");
        symlink(dir.path(), home.join(".ssh")).expect("symlink");
        let e = atomic_write(&keys, b"x", 0o600, me, group).expect_err("refused");
        assert!(e.to_string().contains("not followed"), "{e}");
        assert!(!dir.path().join("authorized_keys").exists());
        assert!(RealFiles::default().stat(&keys).is_err());
        RealFiles::default().remove(&keys).expect_err("refused");
        assert_eq!(fs::read_to_string(&victim).expect("read"), "root:secret\n");
    }
}
