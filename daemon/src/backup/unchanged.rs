//! Knowing, without reading them, that an app's database and files are as they were at the
//! last run — so a run of an idle app records itself on the previous run's snapshots instead of
//! dumping and re-reading everything (a 15-minute schedule on a quiet site costs a fraction of
//! a second).
//!
//! Both checks are conservative: any doubt means "changed" and a full read.
//! - The database: every change to table data, schema or large objects is made by a
//!   transaction with an id, so the same transaction snapshot (next id and the ids still in
//!   progress — a transaction open at the last run may commit later), the same postmaster start
//!   and database OID, and the same sequence values (`nextval`/`setval` take no transaction id)
//!   mean the content pg_dump reads is the same. (WAL position would be simpler but moves on an
//!   idle server: checkpoints and standby snapshots.)
//! - The files: the same (path, type, inode, size, mtime, ctime, mode, owner) for every entry,
//!   which is the test restic itself uses to skip unchanged files; ctime moves on any content or
//!   metadata change and cannot be set back by a user.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use super::error::BackupError;
use crate::host::processes::{Cmd, Processes};
use crate::host::tree;

/// One line that changes whenever anything pg_dump would write can have changed.
const FINGERPRINT_SQL: &str = "SELECT concat_ws('|', pg_current_snapshot(), pg_postmaster_start_time(), \
     (SELECT oid FROM pg_database WHERE datname = current_database()), \
     (SELECT string_agg(schemaname || '.' || sequencename || '=' || coalesce(last_value::text, '?'), ',' ORDER BY schemaname, sequencename) FROM pg_sequences))";

/// How long the fingerprint query may take (it reads a few catalog rows).
const LIMIT: Duration = Duration::from_secs(60);

/// The database's fingerprint, or `None` when it cannot be told (then it counts as changed).
pub async fn database(p: &impl Processes, env: &BTreeMap<String, String>) -> Option<String> {
    let out = p
        .run(
            Cmd::new("psql", LIMIT)
                .args(["--no-psqlrc", "-tAc", FINGERPRINT_SQL])
                .envs(env),
        )
        .await
        .ok()?;
    let text = out.stdout.trim().to_string();
    (out.success() && !text.is_empty()).then_some(text)
}

/// A digest of the metadata of every entry under `paths` (absolute, in trees the app's user
/// can change). Each is reached through [`tree`]: a link on the way to it is refused, a link
/// under it is recorded as a link (as restic stores it) — root never reads the listing or
/// metadata of whatever a planted link points at.
///
/// # Errors
/// An entry that cannot be read, or a link on the way (it then counts as changed).
pub fn files(paths: &[String]) -> Result<String, BackupError> {
    let mut hash = Sha256::new();
    let mut sorted: Vec<&Path> = paths.iter().map(Path::new).collect();
    sorted.sort();
    for path in sorted {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(BackupError::NotAPath(path.to_path_buf()));
        };
        tree::Dir::open(parent)
            .and_then(|dir| dir.walk(name, &mut |path, meta| add(&mut hash, path, meta)))
            .map_err(BackupError::Tree)?;
    }
    Ok(hex::encode(hash.finalize()))
}

/// One entry into the digest: its path and the metadata restic compares.
fn add(hash: &mut Sha256, path: &Path, meta: &Metadata) {
    hash.update(path.as_os_str().as_encoded_bytes());
    for v in [
        u64::from(meta.mode()),
        meta.ino(),
        meta.dev(),
        meta.size(),
        meta.mtime() as u64,
        meta.mtime_nsec() as u64,
        meta.ctime() as u64,
        meta.ctime_nsec() as u64,
        u64::from(meta.uid()),
        u64::from(meta.gid()),
    ] {
        hash.update(v.to_le_bytes());
    }
}

/// What the last successful run of an app saw, to compare the next one with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// Where it went (a changed destination means a full run).
    pub location: String,
    /// Its run id (its snapshots carry `run=…`).
    pub run: String,
    /// Fingerprints by part (`database`, `files`); a part without one is always read.
    pub parts: BTreeMap<&'static str, String>,
}

impl Seen {
    /// Whether `kind` is unchanged since this run, at `location`.
    pub fn unchanged(&self, location: &str, kind: &str, now: Option<&String>) -> bool {
        self.location == location && now.is_some() && self.parts.get(kind) == now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(dir: &Path) -> String {
        files(&[dir.display().to_string()]).expect("readable")
    }

    #[test]
    fn any_change_under_the_paths_changes_the_digest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("a/b")).expect("mkdir");
        std::fs::write(d.join("a/b/f"), b"one").expect("write");
        std::fs::write(d.join("g"), b"two").expect("write");
        let first = digest(d);
        assert_eq!(digest(d), first, "nothing changed");

        // File times tick with the kernel's coarse clock (a few ms).
        std::thread::sleep(std::time::Duration::from_millis(30));
        std::fs::write(d.join("a/b/f"), b"one").expect("write");
        let rewritten = digest(d);
        assert_ne!(rewritten, first, "same bytes rewritten: mtime/ctime moved");

        let mut perm = std::fs::metadata(d.join("g")).expect("meta").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o600);
        std::fs::set_permissions(d.join("g"), perm).expect("chmod");
        let chmodded = digest(d);
        assert_ne!(chmodded, rewritten, "mode changed");

        std::fs::remove_dir(d.join("a/b")).expect_err("not empty");
        std::fs::create_dir(d.join("a/c")).expect("mkdir");
        assert_ne!(digest(d), chmodded, "a new empty directory");
        assert!(files(&[d.join("missing").display().to_string()]).is_err());
    }

    /// An app's `shared/`, writable by others (so no link in it counts as root's, even when
    /// the tests run as root), beside a private directory a link there may point at.
    fn planted() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let shared = tmp.path().join("app/shared");
        let private = tmp.path().join("private");
        std::fs::create_dir_all(shared.join("storage/uploads")).expect("mkdir");
        std::fs::write(shared.join("storage/uploads/a"), b"a").expect("write");
        std::fs::create_dir_all(private.join("uploads")).expect("mkdir");
        std::fs::write(private.join("uploads/secret"), b"s").expect("write");
        for (dir, mode) in [
            (&shared, 0o777),
            (&shared.join("storage"), 0o777),
            (&private, 0o700),
        ] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).expect("chmod");
        }
        std::fs::set_permissions(
            private.join("uploads/secret"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("chmod");
        (tmp, shared, private)
    }

    #[test]
    fn a_planted_link_is_recorded_as_a_link_and_never_followed() {
        let (_tmp, shared, private) = planted();
        let uploads = shared.join("storage/uploads");
        std::os::unix::fs::symlink(private.join("uploads/secret"), uploads.join("evil"))
            .expect("symlink");
        std::os::unix::fs::symlink(private.join("uploads"), uploads.join("evil-dir"))
            .expect("symlink");
        let first = digest(&uploads);
        // What the links point at changes: nothing of it is read, so the digest stays.
        std::thread::sleep(std::time::Duration::from_millis(30));
        std::fs::write(private.join("uploads/secret"), b"changed").expect("write");
        std::fs::write(private.join("uploads/new"), b"n").expect("write");
        assert_eq!(digest(&uploads), first, "the links' targets were read");
        // The path itself a link: recorded as the link, its target not walked.
        std::fs::remove_dir_all(&uploads).expect("rm");
        std::os::unix::fs::symlink(private.join("uploads"), &uploads).expect("symlink");
        let linked = digest(&uploads);
        std::thread::sleep(std::time::Duration::from_millis(30));
        std::fs::write(private.join("uploads/secret"), b"again").expect("write");
        assert_eq!(digest(&uploads), linked, "the path's own link was followed");
    }

    #[test]
    fn a_link_on_the_way_to_a_path_is_refused() {
        let (_tmp, shared, private) = planted();
        // The app's user swaps `storage` for a link to a directory that has an `uploads`.
        std::fs::remove_dir_all(shared.join("storage")).expect("rm");
        std::os::unix::fs::symlink(&private, shared.join("storage")).expect("symlink");
        let e = files(&[shared.join("storage/uploads").display().to_string()])
            .expect_err("a link on the way is refused");
        assert!(matches!(e, BackupError::Tree(_)), "{e:?}");
        assert!(e.to_string().contains("symbolic link"), "{e}");
    }

    #[test]
    fn a_part_is_unchanged_only_at_the_same_place_with_the_same_fingerprint() {
        let seen = Seen {
            location: "s3:x/b".into(),
            run: "web1-1".into(),
            parts: BTreeMap::from([("files", "f1".to_string())]),
        };
        let f1 = "f1".to_string();
        assert!(seen.unchanged("s3:x/b", "files", Some(&f1)));
        assert!(!seen.unchanged("s3:x/c", "files", Some(&f1)));
        assert!(!seen.unchanged("s3:x/b", "files", Some(&"f2".to_string())));
        assert!(!seen.unchanged("s3:x/b", "files", None));
        assert!(!seen.unchanged("s3:x/b", "database", Some(&f1)));
    }
}
