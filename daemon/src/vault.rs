//! strackt's vault: the team's backup key, root-only, in one file. The key is the restic
//! repository password; it is never logged, never in a generation and never in a snapshot.
//!
//! Owns the key file under strackt's state (`vault/backup.key`): creating, importing and
//! reading it. It sits below `backup`, `deploy` and `receiver` (the deployer redacts the key
//! from what it records; the receiver stages it) and must not depend on any of them.

use std::path::{Path, PathBuf};

use crate::host::files::atomic_write;
use crate::host::private::{private_dir, random_bytes, read_private};
use crate::host::HostError;

/// Why the vault refused or failed; each reads as the text strackt always printed.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// `init` when a key is there: replacing it would orphan every snapshot.
    #[error("this server already has a backup key ({}); it is not replaced", .0.display())]
    HasKey(PathBuf),
    /// `import` of text that is not one key.
    #[error("the key is one line without spaces, as `strackt backup key init` printed it")]
    Malformed,
    /// `import` of a key other than the one there.
    #[error(
        "this server already has a different backup key ({}); it is not replaced",
        .0.display()
    )]
    DifferentKey(PathBuf),
    /// The vault cannot be read or written, or no random bytes could be had.
    #[error(transparent)]
    Host(#[from] HostError),
}

impl VaultError {
    /// Whether trying again may succeed without anyone acting: only a host failure that passes.
    pub fn is_transient(&self) -> bool {
        match self {
            VaultError::Host(e) => e.is_transient(),
            VaultError::HasKey(_) | VaultError::Malformed | VaultError::DifferentKey(_) => false,
        }
    }
}

/// The layers above (the CLI's answers, the receiver's and backups' text results) take a
/// vault error as exactly its message.
impl From<VaultError> for String {
    fn from(e: VaultError) -> String {
        e.to_string()
    }
}

/// The vault under strackt's state root (`/var/lib/strackt/vault`).
#[derive(Debug, Clone)]
pub struct Vault {
    dir: PathBuf,
}

impl Vault {
    /// The vault of the state root `root`.
    pub fn new(root: &Path) -> Vault {
        Vault {
            dir: root.join("vault"),
        }
    }

    /// The key file (restic reads it with `--password-file`).
    pub fn key_path(&self) -> PathBuf {
        self.dir.join("backup.key")
    }

    /// The key file's content; `None` when there is none (or it cannot be read).
    fn key_file(&self) -> Option<Vec<u8>> {
        read_private(&self.key_path()).ok().flatten()
    }

    /// Whether a key is in the vault.
    pub fn has_key(&self) -> bool {
        self.key_file().is_some()
    }

    /// The key, when the vault has one (and it reads as text).
    pub fn key(&self) -> Option<String> {
        let bytes = self.key_file()?;
        String::from_utf8(bytes).ok().map(|k| k.trim().to_string())
    }

    fn store(&self, key: &str) -> Result<(), VaultError> {
        private_dir(&self.dir)?;
        atomic_write(&self.key_path(), format!("{key}\n").as_bytes(), 0o600, 0, 0)?;
        Ok(())
    }

    /// Generate the team key and store it; refused when a key is already there (replacing it
    /// would make every existing snapshot unreadable here).
    ///
    /// # Errors
    /// A key exists, or the vault cannot be written.
    pub fn init(&self) -> Result<String, VaultError> {
        if self.has_key() {
            return Err(VaultError::HasKey(self.key_path()));
        }
        let mut bytes = [0u8; 32];
        random_bytes(&mut bytes)?;
        let key = format!("stk1-{}", hex::encode(bytes));
        self.store(&key)?;
        Ok(key)
    }

    /// Store a key generated on another server of the team.
    ///
    /// # Errors
    /// An empty or malformed key, a different key already present, or the vault unwritable.
    pub fn import(&self, text: &str) -> Result<(), VaultError> {
        let key = text.trim();
        if key.is_empty() || key.chars().any(char::is_whitespace) {
            return Err(VaultError::Malformed);
        }
        if self.has_key() {
            // Unreadable meanwhile: "different", never overwritten.
            let current = self.key_file().unwrap_or_default();
            if String::from_utf8_lossy(&current).trim() == key {
                return Ok(());
            }
            return Err(VaultError::DifferentKey(self.key_path()));
        }
        self.store(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_and_imported_elsewhere() {
        let a = tempfile::tempdir().expect("tmp");
        let b = tempfile::tempdir().expect("tmp");
        let va = Vault::new(a.path());
        let key = va.init().expect("init");
        assert!(key.starts_with("stk1-") && key.len() == 69);
        assert!(
            va.init().is_err(),
            "a second init would orphan the snapshots"
        );
        let mode = std::fs::metadata(va.key_path()).expect("key").permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        let vb = Vault::new(b.path());
        vb.import(&format!("{key}\n")).expect("import");
        vb.import(&key).expect("same key again is fine");
        let e = vb.import("stk1-other").expect_err("a different key");
        assert_eq!(
            e.to_string(),
            format!(
                "this server already has a different backup key ({}); it is not replaced",
                vb.key_path().display()
            )
        );
        assert_eq!(
            va.init().expect_err("has a key").to_string(),
            format!(
                "this server already has a backup key ({}); it is not replaced",
                va.key_path().display()
            )
        );
        assert_eq!(
            vb.import("two words").expect_err("malformed").to_string(),
            "the key is one line without spaces, as `strackt backup key init` printed it"
        );
        assert_eq!(
            std::fs::read_to_string(vb.key_path()).expect("read"),
            format!("{key}\n")
        );
        assert_eq!(vb.key(), Some(key.clone()));
        assert_eq!(Vault::new(&b.path().join("none")).key(), None);
    }
}
