//! An app's directory (`releases/<id>/`, `shared/`, `current -> releases/<id>`), which belongs
//! to the app's user; the app's root-private files, which live under strackt's own state
//! instead ([`AppData`]); and which releases may be pruned (pure).
//!
//! The app's user can change everything in its directory, so root works there only through
//! [`crate::host::tree`]: the directory is opened once, without following a link another user
//! could have planted, and `current`, `releases/` and `shared/` are reached from it.

use std::io::{self, ErrorKind};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::host::files::swap_symlink;
use crate::host::private::{create_private, private_dir, remove_private};
use crate::host::tree::{Dir, Owner};
use crate::host::HostError;
use crate::state::ReleaseRow;

use super::DeployError;

/// Where strackt kept a release's root-only files before they moved to [`AppData`]:
/// `releases/<id>/.strackt/{env,pre-migrate.dump}`, inside the app user's tree. Only read, to
/// take over what releases made before keep there ([`adopt_legacy`]).
pub const LEGACY_PRIVATE: &str = ".strackt";

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

    /// Where a release made before [`AppData`] kept its file `name` (`env`, `pre-migrate.dump`).
    pub fn legacy_file(&self, id: u64, name: &str) -> PathBuf {
        self.release(id).join(LEGACY_PRIVATE).join(name)
    }

    /// Whether release `id`'s directory is there, reached without following a link (one the
    /// app's user put at `releases/<id>` is no release).
    pub fn has_release(&self, id: u64) -> bool {
        self.open()
            .and_then(|d| d.open_dir(Path::new("releases").join(id.to_string())))
            .is_ok()
    }

    /// Whether anything is at [`AppDirs::legacy_file`] `(id, name)`, looked at without
    /// following a link. A link on the way counts as something there: [`adopt_legacy`] then
    /// refuses it, saying why, instead of the file silently counting as missing.
    pub fn has_legacy(&self, id: u64, name: &str) -> bool {
        let dir = Path::new("releases")
            .join(id.to_string())
            .join(LEGACY_PRIVATE);
        match self.open().and_then(|d| d.open_dir(dir)?.kind(name)) {
            Ok(kind) => kind.is_some(),
            Err(e) => e.kind() != ErrorKind::NotFound,
        }
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

/// The root-private files of one app, under strackt's state root (`/var/lib/strackt/apps/<app>/`,
/// every directory 0700 root, every file 0600): the app's user can neither read them nor plant
/// a link that turns strackt's writes there into writes elsewhere.
///
/// - `releases/<id>/env`: the environment file of release `id` (the units' `EnvironmentFile=`).
/// - `releases/<id>/pre-migrate.dump`: the database as it was before release `id` migrated.
/// - `current -> releases/<id>`: flipped with the app's `current`; the live unit reads
///   `current/env`, so a switch needs no unit change.
/// - `restore/`: a restore's scratch: `db-<operation>/` (the restored database dump) and
///   `files-<operation>/` (the restored files, before they are moved into `shared/`).
#[derive(Debug, Clone)]
pub struct AppData {
    dir: PathBuf,
}

/// File name of a release's environment file.
const ENV: &str = "env";
/// File name of a release's pre-migrate dump.
pub const DUMP: &str = "pre-migrate.dump";

impl AppData {
    /// The private files of `app`, under the state root `state_root`.
    pub fn new(state_root: &Path, app: &str) -> AppData {
        AppData {
            dir: state_root.join("apps").join(app),
        }
    }

    /// `apps/<app>/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `releases/<id>/`.
    pub fn release(&self, id: u64) -> PathBuf {
        self.dir.join("releases").join(id.to_string())
    }

    /// The environment file of release `id`.
    pub fn env_file(&self, id: u64) -> PathBuf {
        self.release(id).join(ENV)
    }

    /// The environment file of the live release, as the live unit names it.
    pub fn live_env_file(&self) -> PathBuf {
        self.dir.join("current").join(ENV)
    }

    /// The pre-migrate dump of release `id`.
    pub fn dump(&self, id: u64) -> PathBuf {
        self.release(id).join(DUMP)
    }

    /// A restore's scratch directory.
    pub fn restore(&self) -> PathBuf {
        self.dir.join("restore")
    }

    /// Create `releases/<id>/` empty (whatever a killed deploy left there goes), with every
    /// directory above it up to the state root root-only.
    ///
    /// # Errors
    /// I/O failures, with the path.
    pub fn fresh_release(&self, id: u64) -> Result<PathBuf, DeployError> {
        let dir = self.release(id);
        remove_private(&dir).map_err(DeployError::Host)?;
        private_dir(&dir).map_err(DeployError::Host)?;
        Ok(dir)
    }

    /// Remove release `id`'s private files.
    ///
    /// # Errors
    /// I/O failures, with the path.
    pub fn remove_release(&self, id: u64) -> Result<(), DeployError> {
        remove_private(&self.release(id)).map_err(DeployError::Host)
    }

    /// Point `current` at release `id` (or remove it) in one rename.
    ///
    /// # Errors
    /// I/O failures; `current` is then unchanged.
    pub fn flip(&self, id: Option<u64>) -> Result<(), HostError> {
        let target = id.map(|id| Path::new("releases").join(id.to_string()));
        swap_symlink(&self.dir.join("current"), target.as_deref())
    }
}

/// Take over file `name` that release `id`, made before [`AppData`], keeps at
/// `<app>/releases/<id>/.strackt/<name>` in the app user's tree: copied to `to` (a new 0600 file
/// in strackt's own directory). Only a file strackt itself wrote is taken: no link anywhere on
/// the way (reached through [`Dir`]), `.strackt` a root-owned directory nobody else may write,
/// the file a root-owned regular file with one name. The app's user could have put anything
/// else there.
///
/// # Errors
/// What is wrong with the old file, or I/O failures; `to` is then not left behind.
pub fn adopt_legacy(dirs: &AppDirs, id: u64, name: &str, to: &Path) -> Result<u64, DeployError> {
    let from = dirs.legacy_file(id, name);
    let refuse = |why: &str| DeployError::Refused {
        path: from.clone(),
        why: why.to_string(),
    };
    let private = dirs
        .open()
        .and_then(|d| {
            d.open_dir(
                Path::new("releases")
                    .join(id.to_string())
                    .join(LEGACY_PRIVATE),
            )
        })
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => refuse("not there"),
            _ if crate::host::tree::is_refused(&e) => refuse("a symbolic link on the way"),
            _ => refuse(&e.to_string()),
        })?;
    let (owner, mode) = private
        .owner_and_mode()
        .map_err(|e| refuse(&e.to_string()))?;
    if owner.uid != 0 || mode & 0o022 != 0 {
        return Err(refuse(&format!(
            "{LEGACY_PRIVATE} is not a directory only root may write (owner {}, mode {mode:o})",
            owner.uid
        )));
    }
    let kind = private.kind(name).map_err(|e| refuse(&e.to_string()))?;
    let mut source = match (kind, private.open_file(name)) {
        (Some(crate::host::tree::Kind::Symlink), _) => return Err(refuse("a symbolic link")),
        (_, Ok(Some(f))) => f,
        (_, Ok(None)) => return Err(refuse("not there, or not a regular file")),
        (_, Err(e)) => return Err(refuse(&e.to_string())),
    };
    let meta = source.metadata().map_err(|e| refuse(&e.to_string()))?;
    if meta.uid() != 0 || meta.nlink() != 1 {
        return Err(refuse(
            "not a regular file of root's with one name; strackt did not write it",
        ));
    }
    let mut target = create_private(to).map_err(DeployError::Host)?;
    let copied = std::io::copy(&mut source, &mut target)
        .and_then(|n| target.sync_all().map(|()| n))
        .map_err(|source| DeployError::Copy {
            from: from.clone(),
            to: to.to_path_buf(),
            source,
        });
    if copied.is_err() {
        // A partial copy left here would be taken for the whole file next time (the file's
        // presence is what says it was taken over): it must not go unnoticed.
        if let Err(e) = remove_private(to) {
            tracing::error!(
                "the partial copy was not removed (remove it by hand before the next deploy or rollback): {e}"
            );
        }
    }
    copied
}

/// Releases to delete so that `keep` successful ones stay: never the live one, never the
/// newest successful one (the last good), never one being built; failed releases are gone
/// already and do not count.
pub fn prunable(releases: &[ReleaseRow], live: Option<u64>, keep: usize) -> Vec<u64> {
    let mut good: Vec<u64> = releases
        .iter()
        .filter(|r| r.state.kept())
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
    use crate::state::ReleaseState;
    use std::os::unix::fs::PermissionsExt;

    fn rel(id: u64, state: &str) -> ReleaseRow {
        ReleaseRow {
            app: "shop".into(),
            id,
            branch: "main".into(),
            commit: None,
            created: "t".into(),
            state: ReleaseState::parse(state).expect("a release state"),
            operation: 1,
            dump: None,
            reason: None,
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).expect("stat").mode() & 0o7777
    }

    #[test]
    fn private_files_are_root_only_and_never_written_through_a_link() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = AppData::new(tmp.path(), "shop");
        let dir = data.fresh_release(3).expect("release dir");
        assert_eq!(dir, tmp.path().join("apps/shop/releases/3"));
        for d in [
            "apps",
            "apps/shop",
            "apps/shop/releases",
            "apps/shop/releases/3",
        ] {
            assert_eq!(mode(&tmp.path().join(d)), 0o700, "{d}");
        }
        std::io::Write::write_all(&mut create_private(&data.env_file(3)).expect("env"), b"A=1")
            .expect("write");
        assert_eq!(mode(&data.env_file(3)), 0o600);
        // An existing file or a link in its place: refused, the link's target untouched.
        assert!(create_private(&data.env_file(3)).is_err());
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, "keep").expect("victim");
        std::os::unix::fs::symlink(&victim, data.dump(3)).expect("link");
        assert!(create_private(&data.dump(3)).is_err());
        assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "keep");
        // A new deploy of the same id starts empty; pruning removes it.
        data.fresh_release(3).expect("again");
        assert!(!data.env_file(3).exists());
        data.remove_release(3).expect("remove");
        assert!(!data.release(3).exists());
        assert_eq!(
            data.live_env_file(),
            tmp.path().join("apps/shop/current/env")
        );
    }

    /// A release made before the private files moved: `<app>/releases/<id>/.strackt/<name>`.
    fn legacy(root: &Path, id: u64, name: &str, content: &str) -> AppDirs {
        let dirs = AppDirs::new(&root.join("app").display().to_string());
        let private = dirs.release(id).join(LEGACY_PRIVATE);
        std::fs::create_dir_all(&private).expect("mkdir");
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        std::fs::write(private.join(name), content).expect("write");
        dirs
    }

    #[test]
    fn an_old_release_file_is_taken_over_only_when_strackt_wrote_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = AppData::new(tmp.path(), "shop");
        let dirs = legacy(tmp.path(), 1, "env", "A=\"1\"\n");
        let to = data.release(1).join("env");
        private_dir(&data.release(1)).expect("dir");
        assert_eq!(adopt_legacy(&dirs, 1, "env", &to).expect("taken over"), 6);
        assert_eq!(std::fs::read_to_string(&to).expect("copy"), "A=\"1\"\n");
        assert_eq!(mode(&to), 0o600);

        let secret = tmp.path().join("secret");
        std::fs::create_dir(&secret).expect("mkdir");
        std::fs::write(secret.join("env"), "ROOT=secret").expect("write");
        std::fs::write(secret.join(DUMP), "ROOT=secret").expect("write");
        let refused = |dirs: &AppDirs, id: u64, name: &str, why: &str| {
            let to = data.release(id).join(name);
            private_dir(&data.release(id)).expect("dir");
            let err = adopt_legacy(dirs, id, name, &to).expect_err("refused");
            assert!(
                matches!(&err, DeployError::Refused { path, .. } if *path == dirs.legacy_file(id, name)),
                "{err:?}"
            );
            assert!(err.to_string().contains(why), "{err}");
            assert!(!to.exists(), "nothing left behind");
        };
        // The app's user replaced `.strackt` with a link to a root directory.
        let private = dirs.release(2).join(LEGACY_PRIVATE);
        std::fs::create_dir_all(dirs.release(2)).expect("mkdir");
        std::os::unix::fs::symlink(&secret, &private).expect("link");
        refused(&dirs, 2, "env", "symbolic link");
        // ... or the file with a link, or a second name of a root file.
        let dirs = legacy(tmp.path(), 3, "other", "");
        std::os::unix::fs::symlink(secret.join("env"), dirs.legacy_file(3, "env")).expect("link");
        refused(&dirs, 3, "env", "symbolic link");
        std::fs::hard_link(secret.join(DUMP), dirs.legacy_file(3, DUMP)).expect("link");
        refused(&dirs, 3, DUMP, "one name");
        // ... or made `.strackt` itself (it is not root's, or others may write it).
        let dirs = legacy(tmp.path(), 4, "env", "B=2");
        let private = dirs.release(4).join(LEGACY_PRIVATE);
        std::os::unix::fs::chown(&private, Some(1000), Some(1000)).expect("chown");
        refused(&dirs, 4, "env", "only root may write");
        std::os::unix::fs::chown(&private, Some(0), Some(0)).expect("chown");
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        refused(&dirs, 4, "env", "only root may write");
        // ... or `releases` is a link.
        let moved = tmp.path().join("moved");
        std::fs::rename(dirs.releases(), &moved).expect("move");
        std::os::unix::fs::symlink(&moved, dirs.releases()).expect("link");
        refused(&dirs, 5, "env", "symbolic link");
        std::fs::remove_file(dirs.releases()).expect("unlink");
        refused(&dirs, 5, "env", "not there");
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
        rolled[1].state = ReleaseState::Previous;
        rolled[5].state = ReleaseState::Live;
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
        // Nor is a release looked at through it: no rollback candidate there, and an old
        // dump on the way through the link counts as there, so taking it over refuses it.
        assert!(!dirs.has_release(1), "a release seen through the link");
        assert!(
            dirs.has_legacy(1, DUMP),
            "a link on the way counts as something"
        );
        std::fs::remove_file(dirs.releases()).expect("rm");
        std::fs::rename(dirs.root().join("moved"), dirs.releases()).expect("mv");
        assert!(dirs.has_release(1));
        assert!(!dirs.has_legacy(1, DUMP), "release 1 has no old dump");
        dirs.remove_release(1).expect("remove");
        assert!(!dirs.release(1).exists());
        assert!(!dirs.has_release(1));
    }
}
