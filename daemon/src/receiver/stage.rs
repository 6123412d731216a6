//! `strackt receiver --stage`: what the receiver may read, copied for its own user.
//!
//! The receiver runs as the system user `strackt-receiver`, which cannot read
//! `/etc/strackt/secrets`, the TLS key or the vault. Its unit runs this step as root before
//! the start and at each reload (`ExecStartPre=+`, `ExecReload=+`): it reads the definition's
//! `receiver:` section and copies the definition, the clients' secrets, the certificate and
//! key and the team key into [`STAGE_DIR`] — a directory owned by root, readable by the
//! receiver's group only (0750, files 0440), so the receiver can read them and plant nothing.
//! All or nothing: everything is read and checked before anything is written, so a missing
//! secret leaves the running receiver's copies as they were.

use std::ffi::OsStr;
use std::path::Path;

use crate::daemon::Paths;
use crate::definition::SECRETS_DIR;
use crate::deploy::preflight::read_secret;
use crate::host::definition::DefinitionFile;
use crate::host::io_err;
use crate::host::tree::{is_refused, Dir, Kind, Owner};
use crate::vault::Vault;

use super::ReceiverError;

/// Where the staged copies are (root-owned, group `strackt-receiver`).
pub const STAGE_DIR: &str = "/run/strackt-receiver-stage";
/// The receiver's system user and group.
pub const USER: &str = "strackt-receiver";
/// The definition, under [`STAGE_DIR`].
pub const DEFINITION: &str = "definition.yaml";
/// The clients' secrets, under [`STAGE_DIR`].
pub const SECRETS: &str = "secrets";
/// The TLS certificate chain, under [`STAGE_DIR`].
pub const CERTIFICATE: &str = "tls.crt";
/// The TLS key, under [`STAGE_DIR`].
pub const KEY: &str = "tls.key";

/// Stage, printing the reason and returning 1 when something cannot be staged.
///
/// # Errors
/// None of its own: every failure is printed for the journal and is exit code 1.
pub fn stage(paths: &Paths) -> anyhow::Result<i32> {
    let reloading = is_staged();
    match stage_into(paths, Path::new(STAGE_DIR)) {
        Ok(n) => {
            println!("staged the definition and {n} file(s) for {USER} in {STAGE_DIR}");
            Ok(0)
        }
        Err(e) if reloading => {
            eprintln!("reload refused, still serving as before: {e}");
            Ok(1)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(1)
        }
    }
}

/// Whether a definition is staged in [`STAGE_DIR`] (a regular file there, not a link).
pub(super) fn is_staged() -> bool {
    Dir::open(Path::new(STAGE_DIR))
        .and_then(|d| d.kind(DEFINITION))
        .is_ok_and(|k| k == Some(Kind::File))
}

/// What staging writes, all read and checked before anything is written.
#[derive(Debug)]
struct Staged {
    definition: Vec<u8>,
    /// The clients' secrets by name, each `NAME:PASSWORD` and a newline.
    secrets: Vec<(String, Vec<u8>)>,
    certificate: Vec<u8>,
    key: Vec<u8>,
    /// `None`: the vault has no key (a staged one is removed).
    team_key: Option<Vec<u8>>,
}

fn stage_into(paths: &Paths, dir: &Path) -> Result<usize, ReceiverError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(ReceiverError::NotRoot);
    }
    let gid = nix::unistd::Group::from_name(USER)
        .map_err(|source| ReceiverError::GroupLookup {
            group: USER,
            source,
        })?
        .ok_or(ReceiverError::NoUser(USER))?
        .gid
        .as_raw();
    // Read and check everything first.
    // One read: the copy staged is the text whose `receiver:` section was checked.
    let file = &paths.definition;
    let text = DefinitionFile::new(file)
        .read_text()
        .map_err(io_err("reading", file))?;
    let spec = crate::definition::parse(&text, file)?
        .definition()
        .receiver
        .clone()
        .ok_or_else(|| ReceiverError::NoSection(file.clone()))?;
    let definition = text.into_bytes();
    super::passwords(&spec, Path::new(SECRETS_DIR))?;
    super::limits(&spec)?;
    let mut secrets = Vec::new();
    for client in spec.clients.values() {
        let name = &client.credentials.secret;
        let value = read_secret(Path::new(SECRETS_DIR), name)
            .map_err(|e| ReceiverError::Secret(e.to_string()))?;
        secrets.push((name.clone(), format!("{value}\n").into_bytes()));
    }
    // Through host/tree: a link on the way is followed only where root alone could have put it.
    let (certificate, key) = (Path::new(&spec.tls.certificate), Path::new(&spec.tls.key));
    let certificate_pem =
        super::read_file(certificate).map_err(io_err("TLS certificate", certificate))?;
    let key_pem = super::read_file(key).map_err(io_err("TLS key", key))?;
    // The bytes staged are the bytes checked.
    super::tls::server_config_from_pem(certificate, &certificate_pem, key, &key_pem)?;
    let vault = Vault::new(&paths.root);
    let team_key = if vault.has_key() {
        let from = vault.key_path();
        Some(super::read_file(&from).map_err(io_err("reading the team key", &from))?)
    } else {
        None
    };
    let staged = Staged {
        definition,
        secrets,
        certificate: certificate_pem,
        key: key_pem,
        team_key,
    };
    // Then write.
    write(dir, gid, &staged)
}

/// Write `staged` into `dir` (root's, group `gid`, 0750; files 0440), through descriptors:
/// `dir` and its subdirectories are opened without following a link, made when missing, and
/// refused when they are anything but root's directories. A key the vault no longer has, and
/// the secrets of clients that left, are removed: they must not stay readable by the
/// receiver's user, and failing to remove them fails the staging. Returns how many files
/// besides the definition were staged.
fn write(dir: &Path, gid: u32, staged: &Staged) -> Result<usize, ReceiverError> {
    let owner = Owner { uid: 0, gid };
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return Err(ReceiverError::NotRootsDirectory(dir.to_path_buf()));
    };
    let parent = Dir::open(parent).map_err(|source| ReceiverError::Stat {
        path: parent.to_path_buf(),
        source,
    })?;
    // Where the receiver's `Vault::new(STAGE_DIR)` looks for the key: `vault/backup.key`.
    let staged_key = Vault::new(dir).key_path();
    let (Some(vault_name), Some(key_name)) = (
        staged_key
            .strip_prefix(dir)
            .ok()
            .and_then(Path::parent)
            .map(Path::as_os_str),
        staged_key.file_name(),
    ) else {
        return Err(ReceiverError::NotRootsDirectory(staged_key.clone()));
    };
    let top = own_dir(&parent, name, owner)?;
    let secrets_dir = own_dir(&top, OsStr::new(SECRETS), owner)?;
    let vault_dir = own_dir(&top, vault_name, owner)?;
    let mut files: Vec<(&Dir, &str, &[u8])> = vec![
        (&top, DEFINITION, &staged.definition),
        (&top, CERTIFICATE, &staged.certificate),
        (&top, KEY, &staged.key),
    ];
    for (name, value) in &staged.secrets {
        files.push((&secrets_dir, name, value));
    }
    let key_name = key_name.to_string_lossy();
    if let Some(key) = &staged.team_key {
        files.push((&vault_dir, &key_name, key));
    }
    for (d, name, bytes) in &files {
        d.write_file(name, bytes, 0o440, owner)
            .map_err(io_err("write", &d.path().join(name)))?;
    }
    if staged.team_key.is_none() {
        remove_staged(&vault_dir, OsStr::new(&*key_name))?;
    }
    let entries = secrets_dir
        .entries()
        .map_err(io_err("reading", secrets_dir.path()))?;
    for e in entries {
        if !staged.secrets.iter().any(|(name, _)| OsStr::new(name) == e) {
            remove_staged(&secrets_dir, &e)?;
        }
    }
    Ok(files.len() - 1)
}

/// Remove the staged file `name` of `dir`, if it is there.
fn remove_staged(dir: &Dir, name: &OsStr) -> Result<(), ReceiverError> {
    dir.remove_file(name)
        .map(|_| ())
        .map_err(|e| io_err("removing", &dir.path().join(name))(e).into())
}

/// `name` in `parent` as a real directory owned by root, group `owner.gid`, mode 0750: made
/// when missing; refused when it is a link or anything but root's directory. Owner and mode
/// are set on its descriptor, so what was checked is what is changed.
fn own_dir(parent: &Dir, name: &OsStr, owner: Owner) -> Result<Dir, ReceiverError> {
    let path = parent.path().join(name);
    let stat = |source| ReceiverError::Stat {
        path: path.clone(),
        source,
    };
    let dir = match parent.kind(name).map_err(stat)? {
        Some(Kind::Dir) => {
            let dir = parent.open_dir(name).map_err(|e| {
                // Swapped for a link since it was looked at.
                if is_refused(&e) {
                    ReceiverError::NotRootsDirectory(path.clone())
                } else {
                    stat(e)
                }
            })?;
            if dir.owner_and_mode().map_err(stat)?.0.uid != 0 {
                return Err(ReceiverError::NotRootsDirectory(path));
            }
            dir
        }
        None => parent
            .create_dir(name, 0o750, owner)
            .map_err(io_err("creating", &path))?,
        Some(_) => return Err(ReceiverError::NotRootsDirectory(path)),
    };
    dir.set_owner_and_mode(owner, 0o750)
        .map_err(|source| ReceiverError::Ownership { path, source })?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use crate::host::tree::ls;
    use std::os::unix::fs::{chown, symlink, MetadataExt, PermissionsExt};
    use std::path::PathBuf;

    use super::*;

    const GID: u32 = 4243;

    fn staged(secrets: &[&str], team_key: bool) -> Staged {
        Staged {
            definition: b"version: 1\n".to_vec(),
            secrets: secrets
                .iter()
                .map(|s| (s.to_string(), format!("{s}:pw\n").into_bytes()))
                .collect(),
            certificate: b"CERT".to_vec(),
            key: b"KEY".to_vec(),
            team_key: team_key.then(|| b"TEAM".to_vec()),
        }
    }

    /// (uid, gid, mode) of `p` itself.
    fn owner_mode(p: &Path) -> (u32, u32, u32) {
        let m = std::fs::symlink_metadata(p).expect("stat");
        (m.uid(), m.gid(), m.mode() & 0o7777)
    }

    fn scene() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let stage = tmp.path().join("stage");
        (tmp, stage)
    }

    // Runs as root (chown to another group), as the unit tests do.
    #[test]
    fn everything_is_staged_root_s_for_the_receiver_s_group_and_what_left_is_removed() {
        let (_tmp, stage) = scene();
        let n = write(&stage, GID, &staged(&["web1-pw", "web2-pw"], true)).expect("staged");
        assert_eq!(n, 5);
        assert_eq!(
            ls(&stage),
            ["definition.yaml", "secrets", "tls.crt", "tls.key", "vault"]
        );
        for d in [stage.clone(), stage.join("secrets"), stage.join("vault")] {
            assert_eq!(owner_mode(&d), (0, GID, 0o750), "{}", d.display());
        }
        for f in [
            "definition.yaml",
            "tls.crt",
            "tls.key",
            "secrets/web1-pw",
            "vault/backup.key",
        ] {
            assert_eq!(owner_mode(&stage.join(f)), (0, GID, 0o440), "{f}");
        }
        assert_eq!(
            std::fs::read(stage.join("secrets/web2-pw")).expect("read"),
            b"web2-pw:pw\n"
        );
        // A directory root's but with another group and mode gets the receiver's, and a
        // client that left and a key the vault no longer has are gone.
        std::fs::set_permissions(&stage, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        chown(stage.join("secrets"), None, Some(0)).expect("chgrp");
        let n = write(&stage, GID, &staged(&["web1-pw"], false)).expect("staged");
        assert_eq!(n, 3);
        assert_eq!(owner_mode(&stage), (0, GID, 0o750));
        assert_eq!(owner_mode(&stage.join("secrets")), (0, GID, 0o750));
        assert_eq!(ls(&stage.join("secrets")), ["web1-pw"]);
        assert_eq!(ls(&stage.join("vault")), Vec::<String>::new());
    }

    #[test]
    fn a_stage_directory_another_user_owns_or_a_link_is_refused_and_nothing_is_written() {
        let (tmp, stage) = scene();
        // Another user's directory.
        std::fs::create_dir(&stage).expect("mkdir");
        chown(&stage, Some(4242), Some(4242)).expect("chown");
        let e = write(&stage, GID, &staged(&["web1-pw"], true)).expect_err("refused");
        assert_eq!(
            e.to_string(),
            format!(
                "{} is not a directory owned by root: remove it",
                stage.display()
            )
        );
        assert_eq!(ls(&stage), Vec::<String>::new());
        assert_eq!(owner_mode(&stage), (4242, 4242, 0o755));
        std::fs::remove_dir(&stage).expect("rmdir");
        // A link to a directory of root's.
        let victim = tmp.path().join("victim");
        std::fs::create_dir(&victim).expect("mkdir");
        symlink(&victim, &stage).expect("symlink");
        let e = write(&stage, GID, &staged(&["web1-pw"], true)).expect_err("refused");
        assert!(matches!(e, ReceiverError::NotRootsDirectory(_)), "{e}");
        assert_eq!(ls(&victim), Vec::<String>::new());
        assert_eq!(owner_mode(&victim), (0, 0, 0o755));
        std::fs::remove_file(&stage).expect("rm");
        // A link where a subdirectory belongs: not followed either.
        std::fs::create_dir(&stage).expect("mkdir");
        symlink(&victim, stage.join("secrets")).expect("symlink");
        let e = write(&stage, GID, &staged(&["web1-pw"], true)).expect_err("refused");
        assert!(matches!(e, ReceiverError::NotRootsDirectory(_)), "{e}");
        assert_eq!(ls(&victim), Vec::<String>::new());
        assert_eq!(owner_mode(&victim), (0, 0, 0o755));
    }
}
