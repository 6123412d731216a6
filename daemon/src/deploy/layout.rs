//! An app's directory: `releases/<id>/`, `shared/`, `current -> releases/<id>`, and which
//! releases may be pruned (pure).
//!
//! The app's user can change everything in its directory, so root works there only through
//! [`crate::host::tree`]: the directory is opened once, without following a link another user
//! could have planted, and `current`, `releases/` and `shared/` are reached from it.

use std::io;
use std::path::{Path, PathBuf};

use crate::host::tree::{Dir, Owner};
use crate::host::HostError;
use crate::state::ReleaseRow;

/// Where strackt keeps its own files inside a release (root-only): the environment file the
/// units read and the database dump taken before the release's migration.
pub const RELEASE_PRIVATE: &str = ".strackt";

/// The directories of one app.
#[derive(Debug, Clone)]
pub struct AppDirs {
    root: PathBuf,
}

impl AppDirs {
    /// The app living at `path`.
    pub fn new(path: &str) -> AppDirs {
        AppDirs {
            root: PathBuf::from(path),
        }
    }

    /// The app's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `releases/`.
    pub fn releases(&self) -> PathBuf {
        self.root.join("releases")
    }

    /// `releases/<id>/`.
    pub fn release(&self, id: u64) -> PathBuf {
        self.releases().join(id.to_string())
    }

    /// `shared/`.
    pub fn shared(&self) -> PathBuf {
        self.root.join("shared")
    }

    /// `current`.
    pub fn current(&self) -> PathBuf {
        self.root.join("current")
    }

    /// The environment file of a release.
    pub fn env_file(&self, release: &Path) -> PathBuf {
        release.join(RELEASE_PRIVATE).join("env")
    }

    /// The pre-migration dump of release `id`.
    pub fn dump(&self, id: u64) -> PathBuf {
        self.release(id)
            .join(RELEASE_PRIVATE)
            .join("pre-migrate.dump")
    }

    /// The app's directory, opened (see [`Dir::open`]).
    ///
    /// # Errors
    /// `NotFound`, a link on the way another user could have planted, I/O failures.
    pub fn open(&self) -> io::Result<Dir> {
        Dir::open(&self.root)
    }

    /// The app's directory, created when missing: the directories above it root's (0755), the
    /// app's directory itself `owner`'s. What exists already keeps its owner.
    ///
    /// # Errors
    /// As [`AppDirs::open`], or the creation failed.
    pub fn create(&self, owner: Owner) -> io::Result<Dir> {
        let (Some(parent), Some(name)) = (self.root.parent(), self.root.file_name()) else {
            return self.open();
        };
        Dir::create_all(parent, 0o755, Owner::process())?.create_dirs(name, 0o755, owner)
    }

    /// The release `current` points at.
    pub fn live(&self) -> Option<u64> {
        let target = self.open().ok()?.read_link("current").ok()??;
        let rest = target.strip_prefix("releases").ok()?;
        rest.to_str()?.parse().ok()
    }

    /// Point `current` at release `id` (or remove it) in one rename.
    ///
    /// # Errors
    /// I/O failures; `current` is then unchanged.
    pub fn flip(&self, id: Option<u64>) -> Result<(), HostError> {
        let target = id.map(|id| Path::new("releases").join(id.to_string()));
        self.open()
            .and_then(|d| d.swap_symlink("current", target.as_deref()))
            .map_err(crate::host::io_err("link", &self.current()))
    }

    /// Delete release `id` with everything in it (absent is fine); a link in it, or
    /// `releases` itself replaced by a link, is never followed.
    ///
    /// # Errors
    /// I/O failures, or a refusal to follow a link.
    pub fn remove_release(&self, id: u64) -> io::Result<()> {
        let releases = match self.open().and_then(|d| d.open_dir("releases")) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        releases.remove(id.to_string())
    }
}

/// Releases to delete so that `keep` successful ones stay: never the live one, never the
/// newest successful one (the last good), never one being built; failed releases are gone
/// already and do not count.
pub fn prunable(releases: &[ReleaseRow], live: Option<u64>, keep: usize) -> Vec<u64> {
    let mut good: Vec<u64> = releases
        .iter()
        .filter(|r| matches!(r.state.as_str(), "live" | "previous"))
        .map(|r| r.id)
        .collect();
    good.sort_unstable_by(|a, b| b.cmp(a));
    let last_good = good.first().copied();
    good.into_iter()
        .skip(keep)
        .filter(|id| Some(*id) != live && Some(*id) != last_good)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(id: u64, state: &str) -> ReleaseRow {
        ReleaseRow {
            app: "shop".into(),
            id,
            branch: "main".into(),
            commit: None,
            created: "t".into(),
            state: state.into(),
            operation: 1,
            dump: None,
            reason: None,
        }
    }

    #[test]
    fn keeps_the_newest_successful_and_never_the_live_one() {
        let rows = [
            rel(7, "failed"),
            rel(6, "live"),
            rel(5, "previous"),
            rel(4, "failed"),
            rel(3, "previous"),
            rel(2, "previous"),
            rel(1, "removed"),
        ];
        assert_eq!(prunable(&rows, Some(6), 2), [3, 2]);
        // Rolled back to 2: it stays although it is the oldest; 6 is the last good.
        let mut rolled = rows.clone();
        rolled[1].state = "previous".into();
        rolled[5].state = "live".into();
        assert_eq!(prunable(&rolled, Some(2), 1), [5, 3]);
        assert_eq!(prunable(&rows, Some(6), 5), Vec::<u64>::new());
        assert_eq!(prunable(&[rel(1, "building")], None, 1), Vec::<u64>::new());
    }

    #[test]
    fn the_app_directory_is_created_beside_ancestors_left_as_they_were() {
        use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o711))
            .expect("chmod");
        let me = Owner::process();
        let dirs = AppDirs::new(&tmp.path().join("srv/apps/shop").display().to_string());
        let root = dirs.create(me).expect("create");
        root.create_dirs("releases/1", 0o755, me).expect("releases");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").mode() & 0o7777;
        assert_eq!(
            mode(tmp.path()),
            0o711,
            "an existing ancestor keeps its mode"
        );
        assert_eq!(mode(&tmp.path().join("srv/apps")), 0o755);
        assert_eq!(mode(dirs.root()), 0o755);
        dirs.flip(Some(1)).expect("flip");
        assert_eq!(dirs.live(), Some(1));
        // `releases` replaced by a link (the app's user owns the app directory): pruning
        // refuses it and deletes nothing where it points.
        let victim = tmp.path().join("victim");
        std::fs::create_dir_all(victim.join("1")).expect("mkdir");
        std::fs::set_permissions(dirs.root(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        std::fs::rename(dirs.releases(), dirs.root().join("moved")).expect("mv");
        symlink(&victim, dirs.releases()).expect("symlink");
        let e = dirs.remove_release(1).expect_err("refused");
        assert!(crate::host::tree::is_refused(&e), "{e}");
        assert!(victim.join("1").is_dir());
        std::fs::remove_file(dirs.releases()).expect("rm");
        std::fs::rename(dirs.root().join("moved"), dirs.releases()).expect("mv");
        dirs.remove_release(1).expect("remove");
        assert!(!dirs.release(1).exists());
    }
}
