//! strackt's vault: the team's backup key, root-only, in one file. The key is the restic
//! repository password; it is never logged, never in a generation and never in a snapshot.
//!
//! Owns the key file under strackt's state (`vault/backup.key`): creating, importing and
//! reading it. It sits below `backup`, `deploy` and `receiver` (the deployer redacts the key
//! from what it records; the receiver stages it) and must not depend on any of them.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::host::files::atomic_write;

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

    /// Whether a key is in the vault.
    pub fn has_key(&self) -> bool {
        self.key_path().is_file()
    }

    fn store(&self, key: &str) -> Result<(), String> {
        crate::host::private::private_dir(&self.dir)?;
        atomic_write(&self.key_path(), format!("{key}\n").as_bytes(), 0o600, 0, 0)
            .map_err(|e| e.to_string())
    }

    /// Generate the team key and store it; refused when a key is already there (replacing it
    /// would make every existing snapshot unreadable here).
    ///
    /// # Errors
    /// A key exists, or the vault cannot be written.
    pub fn init(&self) -> Result<String, String> {
        if self.has_key() {
            return Err(format!(
                "this server already has a backup key ({}); it is not replaced",
                self.key_path().display()
            ));
        }
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(|e| format!("reading /dev/urandom: {e}"))?;
        let key = format!("stk1-{}", hex::encode(bytes));
        self.store(&key)?;
        Ok(key)
    }

    /// Store a key generated on another server of the team.
    ///
    /// # Errors
    /// An empty or malformed key, a different key already present, or the vault unwritable.
    pub fn import(&self, text: &str) -> Result<(), String> {
        let key = text.trim();
        if key.is_empty() || key.chars().any(char::is_whitespace) {
            return Err(
                "the key is one line without spaces, as `strackt backup key init` printed it"
                    .into(),
            );
        }
        if self.has_key() {
            let current = std::fs::read_to_string(self.key_path()).unwrap_or_default();
            if current.trim() == key {
                return Ok(());
            }
            return Err(format!(
                "this server already has a different backup key ({}); it is not replaced",
                self.key_path().display()
            ));
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
        assert!(vb.import("stk1-other").is_err());
        assert_eq!(
            std::fs::read_to_string(vb.key_path()).expect("read"),
            format!("{key}\n")
        );
    }
}
