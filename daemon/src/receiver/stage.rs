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

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::daemon::Paths;
use crate::definition::SECRETS_DIR;
use crate::deploy::preflight::read_secret;
use crate::host::definition::DefinitionFile;
use crate::host::files::atomic_write;
use crate::host::io_err;
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
    let dir = Path::new(STAGE_DIR);
    let reloading = dir.join(DEFINITION).is_file();
    match stage_into(paths, dir) {
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
    let mut files: Vec<(PathBuf, Vec<u8>)> = vec![(dir.join(DEFINITION), definition)];
    let mut secrets = Vec::new();
    for client in spec.clients.values() {
        let name = &client.credentials.secret;
        let value = read_secret(Path::new(SECRETS_DIR), name)
            .map_err(|e| ReceiverError::Secret(e.to_string()))?;
        secrets.push(name.clone());
        files.push((
            dir.join(SECRETS).join(name),
            format!("{value}\n").into_bytes(),
        ));
    }
    for (field, from, to) in [
        ("TLS certificate", &spec.tls.certificate, CERTIFICATE),
        ("TLS key", &spec.tls.key, KEY),
    ] {
        let bytes = std::fs::read(from).map_err(io_err(field, Path::new(from)))?;
        files.push((dir.join(to), bytes));
    }
    super::tls::server_config(Path::new(&spec.tls.certificate), Path::new(&spec.tls.key))?;
    let vault = Vault::new(&paths.root);
    let staged_key = Vault::new(dir).key_path();
    if vault.has_key() {
        let key = std::fs::read(vault.key_path())
            .map_err(io_err("reading the team key", &vault.key_path()))?;
        files.push((staged_key.clone(), key));
    }
    // Then write.
    let vault_dir = staged_key
        .parent()
        .map_or_else(|| dir.join("vault"), Path::to_path_buf);
    for d in [dir.to_path_buf(), dir.join(SECRETS), vault_dir] {
        own_dir(&d, gid)?;
    }
    for (path, bytes) in &files {
        atomic_write(path, bytes, 0o440, 0, gid)?;
    }
    // A key the vault no longer has, and the secrets of clients that left, must not stay
    // readable by the receiver's user: failing to remove them fails the staging.
    if !vault.has_key() {
        remove_staged(&staged_key)?;
    }
    if let Ok(entries) = std::fs::read_dir(dir.join(SECRETS)) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !secrets.contains(&name) {
                remove_staged(&e.path())?;
            }
        }
    }
    Ok(files.len() - 1)
}

/// Remove the staged `file`, if it is there.
fn remove_staged(file: &Path) -> Result<(), ReceiverError> {
    match std::fs::remove_file(file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io_err("removing", file)(e).into())
        }
        _ => Ok(()),
    }
}

/// `dir` exists as a real directory owned by root, group `gid`, mode 0750.
fn own_dir(dir: &Path, gid: u32) -> Result<(), ReceiverError> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() && m.uid() == 0 => {}
        Ok(_) => return Err(ReceiverError::NotRootsDirectory(dir.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir(dir).map_err(io_err("creating", dir))?;
        }
        Err(source) => {
            return Err(ReceiverError::Stat {
                path: dir.to_path_buf(),
                source,
            })
        }
    }
    nix::unistd::chown(
        dir,
        Some(nix::unistd::Uid::from_raw(0)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .map_err(|source| ReceiverError::Ownership {
        op: "chown",
        path: dir.to_path_buf(),
        source,
    })?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))
        .map_err(io_err("chmod", dir))?;
    Ok(())
}
