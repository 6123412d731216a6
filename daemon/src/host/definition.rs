//! host/definition.rs — the definition file (`/etc/strackt/server.yaml`) as the daemon reads
//! and rewrites it: its text, its mode and owner, and a new text put in its place. The one
//! place that does file work on it by path.
//!
//! What this module owns:
//! - Reading it: its bytes or its text, a missing file told apart from an unreadable one where
//!   a caller needs it ([`DefinitionFile::read_if_present`]). Errors are the kernel's, as the
//!   callers always wrapped them (`/etc/strackt/server.yaml: No such file or directory (os
//!   error 2)`), so what they say is unchanged.
//! - Its mode and owner ([`DefinitionFile::mode_and_owner`]), and writing a new text that keeps
//!   them ([`DefinitionFile::write`]): the way [`super::files::atomic_write`] replaces any file
//!   — a temp file in the same directory, owner and mode on its descriptor, fsync, one rename
//!   over the name, fsync of the directory — so a reader (the watcher's pass, `strackt check`)
//!   sees the old text or the new one, never part of one.
//! - Its directory made before the file exists ([`DefinitionFile::create_dir`]), for the
//!   watcher (`daemon/watch`), as [`super::tree::Dir::create_all`] makes any.
//! - Whether it still holds given bytes ([`DefinitionFile::holds`]): the "changed meanwhile"
//!   check of a rewrite (`strackt upgrade`).
//!
//! Links: the file is read through whatever links its path has, as it always was — operators
//! link it into a config checkout. Unlike [`super::tree`], no link here is refused: whoever can
//! write the file, or a link on its way, already decides everything the daemon does as root
//! (the file's writer is root, or whoever root lets write it), so following one gives them
//! nothing more. A write goes where [`super::files::atomic_write`] puts any file — a link on
//! the way to the directory followed only in a directory root alone can change — and replaces
//! the name itself: a link at the file's own name is replaced by the new file, not written
//! through (as `strackt edit` and `strackt upgrade` always did).
//!
//! What it must not do:
//! - Decide: when the file may be written, and what a change meanwhile means, is the caller's
//!   (`daemon/save`, `daemon/updates/upgrade`).
//! - Parse: the text is the definition's business.
//!
//! Not a [`super::Machine`] subsystem: the daemon's component tests keep the file in a tempdir
//! and write it as a user would, with the rest of the machine faked.

use std::io::{self, ErrorKind};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::files::atomic_write;
use super::tree::{Dir, Owner};
use super::HostError;

/// The definition file at a path (`Paths::definition`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionFile {
    path: PathBuf,
}

/// A file's permission bits and owner, as a write keeps them: read from the file
/// ([`DefinitionFile::mode_and_owner`]), or [`ModeAndOwner::NEW`] for a file that was not there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeAndOwner {
    mode: u32,
    owner: Owner,
}

impl ModeAndOwner {
    /// A new definition file: root's and private, like the packaged one.
    pub const NEW: ModeAndOwner = ModeAndOwner {
        mode: 0o600,
        owner: Owner::ROOT,
    };

    /// Permission bits (set-id and sticky bits included).
    pub fn mode(&self) -> u32 {
        self.mode
    }

    /// Owner.
    pub fn owner(&self) -> Owner {
        self.owner
    }
}

impl DefinitionFile {
    /// The definition file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> DefinitionFile {
        DefinitionFile { path: path.into() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its bytes.
    ///
    /// # Errors
    /// The kernel's: `NotFound` when nothing is there, any other failure to read it.
    pub fn read(&self) -> io::Result<Vec<u8>> {
        std::fs::read(&self.path)
    }

    /// Its bytes; `None` when nothing is there (not even a link's target).
    ///
    /// # Errors
    /// The kernel's: it is there but cannot be read (a directory, no permission, I/O).
    pub fn read_if_present(&self) -> io::Result<Option<Vec<u8>>> {
        match self.read() {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Its text.
    ///
    /// # Errors
    /// As [`DefinitionFile::read`]; also `InvalidData` ("stream did not contain valid UTF-8")
    /// when it is not UTF-8 text.
    pub fn read_text(&self) -> io::Result<String> {
        std::fs::read_to_string(&self.path)
    }

    /// Whether it holds exactly `bytes` now; `false` when it cannot be read.
    pub fn holds(&self, bytes: &[u8]) -> bool {
        self.read().is_ok_and(|now| now == bytes)
    }

    /// Its permission bits and owner (a link's target's).
    ///
    /// # Errors
    /// The kernel's: `NotFound` when nothing is there, any other failure.
    pub fn mode_and_owner(&self) -> io::Result<ModeAndOwner> {
        let meta = std::fs::metadata(&self.path)?;
        Ok(ModeAndOwner {
            mode: meta.mode() & 0o7777,
            owner: Owner {
                uid: meta.uid(),
                gid: meta.gid(),
            },
        })
    }

    /// Create its directory if it is missing (root's, 0755, as [`DefinitionFile::write`] would),
    /// so the watcher has a directory to watch before the file is first written. Reached as
    /// [`Dir::create_all`] does: a link on the way is followed only in a directory root alone
    /// can change, and directories already there are left as they are.
    ///
    /// # Errors
    /// A refused link; the creation failed.
    pub fn create_dir(&self) -> io::Result<()> {
        let path = std::path::absolute(&self.path)?;
        let dir = path.parent().unwrap_or(Path::new("/"));
        Dir::create_all(dir, 0o755, Owner::process()).map(drop)
    }

    /// Replace it with `text`, with `kept`'s mode and owner, in one rename: a reader sees the
    /// old text or the new one. Missing parent directories are created (root's, 0755).
    ///
    /// # Errors
    /// What failed, with the path ("write /etc/strackt/server.yaml: …"); the file is then
    /// unchanged.
    pub fn write(&self, text: &[u8], kept: ModeAndOwner) -> Result<(), HostError> {
        let Owner { uid, gid } = kept.owner;
        atomic_write(&self.path, text, kept.mode, uid, gid)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::Read;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// An owner other than this process's where it may give one (root), else its own.
    fn other_owner() -> Owner {
        if nix::unistd::geteuid().is_root() {
            Owner {
                uid: 65534,
                gid: 65533,
            }
        } else {
            Owner::process()
        }
    }

    #[test]
    fn a_missing_file_is_told_apart_from_an_unreadable_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = DefinitionFile::new(dir.path().join("server.yaml"));
        assert_eq!(
            missing.read_if_present().expect("missing is no error"),
            None
        );
        // Who needs the file to be there gets the kernel's error, worded as it always was.
        let e = missing.read().expect_err("missing");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.to_string(), "No such file or directory (os error 2)");
        let e = missing.read_text().expect_err("missing");
        assert_eq!(e.to_string(), "No such file or directory (os error 2)");
        assert_eq!(
            missing.mode_and_owner().expect_err("missing").kind(),
            ErrorKind::NotFound
        );
        assert!(!missing.holds(b""));
        // A link to nothing is nothing there.
        symlink(dir.path().join("gone"), dir.path().join("dangling")).expect("symlink");
        let dangling = DefinitionFile::new(dir.path().join("dangling"));
        assert_eq!(dangling.read_if_present().expect("dangling"), None);

        // There, but not readable as a file (root reads any file, so: a directory).
        fs::create_dir(dir.path().join("dir.yaml")).expect("mkdir");
        let unreadable = DefinitionFile::new(dir.path().join("dir.yaml"));
        let e = unreadable.read_if_present().expect_err("unreadable");
        assert_eq!(e.to_string(), "Is a directory (os error 21)");
        assert!(unreadable.read_text().is_err());
        assert!(!unreadable.holds(b""));

        // Bytes that are not text: readable, but not as text.
        fs::write(dir.path().join("bin.yaml"), b"a: \xff\n").expect("write");
        let binary = DefinitionFile::new(dir.path().join("bin.yaml"));
        assert_eq!(binary.read().expect("bytes"), b"a: \xff\n");
        let e = binary.read_text().expect_err("not UTF-8");
        assert_eq!(e.kind(), ErrorKind::InvalidData);
        assert_eq!(e.to_string(), "stream did not contain valid UTF-8");
    }

    #[test]
    fn a_write_keeps_the_files_mode_and_owner() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("server.yaml");
        fs::write(&path, "one\n").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
        let owner = other_owner();
        nix::unistd::chown(
            &path,
            Some(nix::unistd::Uid::from_raw(owner.uid)),
            Some(nix::unistd::Gid::from_raw(owner.gid)),
        )
        .expect("chown");
        let file = DefinitionFile::new(&path);
        let kept = file.mode_and_owner().expect("mode and owner");
        assert_eq!((kept.mode(), kept.owner()), (0o640, owner));

        file.write(b"two\n", kept).expect("write");
        assert_eq!(file.read_text().expect("read"), "two\n");
        let meta = fs::metadata(&path).expect("stat");
        assert_eq!(meta.mode() & 0o7777, 0o640);
        assert_eq!((meta.uid(), meta.gid()), (owner.uid, owner.gid));
        assert_eq!(file.mode_and_owner().expect("again"), kept);
    }

    #[test]
    fn a_new_file_is_roots_and_private() {
        assert_eq!(ModeAndOwner::NEW.mode(), 0o600);
        assert_eq!(ModeAndOwner::NEW.owner(), Owner::ROOT);
        if !nix::unistd::geteuid().is_root() {
            return; // Only root gives a file to root.
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("etc/strackt/server.yaml");
        let file = DefinitionFile::new(&path);
        file.write(b"new\n", ModeAndOwner::NEW).expect("write");
        let meta = fs::metadata(&path).expect("stat");
        assert_eq!(meta.mode() & 0o7777, 0o600);
        assert_eq!((meta.uid(), meta.gid()), (0, 0));
        assert_eq!(file.read().expect("read"), b"new\n");
    }

    #[test]
    fn a_write_is_one_rename_of_a_complete_file_beside_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("server.yaml");
        fs::write(&path, "old text\n").expect("write");
        let file = DefinitionFile::new(&path);
        let kept = file.mode_and_owner().expect("mode and owner");
        let mut reader = fs::File::open(&path).expect("open");
        let before = fs::metadata(&path).expect("stat").ino();

        file.write(b"new text\n", kept).expect("write");
        // A new inode put in place: whoever had the old file open reads all of the old text
        // (a write into the file itself would have truncated it under them).
        assert_ne!(fs::metadata(&path).expect("stat").ino(), before);
        let mut seen = String::new();
        reader.read_to_string(&mut seen).expect("read");
        assert_eq!(seen, "old text\n");
        assert_eq!(file.read_text().expect("read"), "new text\n");
        // The temp file was beside it (a rename does not cross directories) and is gone.
        assert_eq!(names(dir.path()), vec!["server.yaml"]);
    }

    #[test]
    fn a_reader_never_sees_part_of_a_text() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("server.yaml");
        let (a, b) = (vec![b'a'; 1 << 20], vec![b'b'; (1 << 20) + 4096]);
        fs::write(&path, &a).expect("write");
        let file = DefinitionFile::new(&path);
        let kept = file.mode_and_owner().expect("mode and owner");
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (file, done, a, b) = (file.clone(), done.clone(), a.clone(), b.clone());
            std::thread::spawn(move || {
                let mut reads = 0;
                while !done.load(Ordering::Relaxed) {
                    let seen = file.read().expect("the file is always there");
                    assert!(
                        seen == a || seen == b,
                        "a reader saw {} bytes, not one whole text",
                        seen.len()
                    );
                    reads += 1;
                }
                reads
            })
        };
        for i in 0..40 {
            file.write(if i % 2 == 0 { &b } else { &a }, kept)
                .expect("write");
        }
        done.store(true, Ordering::Relaxed);
        let reads = reader.join().expect("no reader saw part of a text");
        assert!(reads > 0);
        assert_eq!(names(dir.path()), vec!["server.yaml"]);
    }

    #[test]
    fn its_directory_is_created_roots_and_never_through_a_planted_link() {
        use std::os::unix::fs::chown;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = DefinitionFile::new(dir.path().join("etc/strackt/server.yaml"));
        file.create_dir().expect("create");
        let made = fs::metadata(dir.path().join("etc/strackt")).expect("made");
        assert!(made.is_dir());
        assert_eq!(made.mode() & 0o7777, 0o755);
        file.create_dir().expect("already there");
        // A link another user could have planted on the way is not followed: nothing is made
        // where it points.
        let theirs = dir.path().join("theirs");
        let victim = dir.path().join("victim");
        fs::create_dir(&theirs).expect("mkdir");
        fs::create_dir(&victim).expect("mkdir");
        symlink(&victim, theirs.join("etc")).expect("link");
        chown(&theirs, Some(4242), Some(4242)).expect("chown");
        let e = DefinitionFile::new(theirs.join("etc/strackt/server.yaml"))
            .create_dir()
            .expect_err("a planted link");
        assert!(crate::host::tree::is_refused(&e), "{e}");
        assert_eq!(names(&victim), Vec::<String>::new());
    }

    #[test]
    fn holds_is_true_only_for_the_exact_bytes_there_now() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("server.yaml");
        fs::write(&path, "one\n").expect("write");
        let file = DefinitionFile::new(&path);
        assert!(file.holds(b"one\n"));
        assert!(!file.holds(b"one"));
        fs::write(&path, "two\n").expect("write");
        assert!(!file.holds(b"one\n"));
        assert!(file.holds(b"two\n"));
    }

    #[test]
    fn a_linked_file_is_read_through_its_link_and_a_write_replaces_the_link() {
        let dir = tempfile::tempdir().expect("tempdir");
        let checkout = dir.path().join("checkout");
        fs::create_dir(&checkout).expect("mkdir");
        let target = checkout.join("server.yaml");
        fs::write(&target, "linked\n").expect("write");
        fs::set_permissions(&target, fs::Permissions::from_mode(0o604)).expect("chmod");
        // Even from a directory another user could change: the file's writer decides anyway.
        fs::set_permissions(&checkout, fs::Permissions::from_mode(0o777)).expect("chmod");
        let path = dir.path().join("server.yaml");
        symlink(&target, &path).expect("symlink");

        let file = DefinitionFile::new(&path);
        assert_eq!(file.read_text().expect("read"), "linked\n");
        assert_eq!(
            file.read_if_present().expect("read"),
            Some(b"linked\n".to_vec())
        );
        assert!(file.holds(b"linked\n"));
        let kept = file.mode_and_owner().expect("the target's");
        assert_eq!(kept.mode(), 0o604);

        // As `strackt edit` and `upgrade` always wrote it: the name replaced, link and all,
        // by a file with the target's mode; the target untouched.
        file.write(b"saved\n", kept).expect("write");
        let meta = fs::symlink_metadata(&path).expect("stat");
        assert!(meta.file_type().is_file());
        assert_eq!(meta.mode() & 0o7777, 0o604);
        assert_eq!(file.read_text().expect("read"), "saved\n");
        assert_eq!(fs::read_to_string(&target).expect("read"), "linked\n");
    }
}
