//! Debian packages: the [`Packages`] seam and the values it speaks in. The real one is
//! [`Apt`] (`apt.rs`: dpkg and apt on this machine); `parse.rs` reads what they print and
//! orders versions, pure.

mod apt;
mod parse;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::HostError;
pub use apt::Apt;
pub use parse::{compare_versions, parse_installed, parse_policy_offers};

/// An installed package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Installed {
    /// The installed version.
    pub version: String,
    /// Held (`apt-mark hold`): apt and unattended-upgrades leave it alone.
    pub held: bool,
    /// Installed as a dependency, not by request.
    pub auto: bool,
    /// `Essential: yes`, or priority required/important: never removed.
    pub essential: bool,
}

/// Package → the exact version a want means, or why apt has none.
pub type Resolved = BTreeMap<String, Result<String, HostError>>;

/// Every package's exact version, or the first package apt has none for.
///
/// # Errors
/// A package apt has no such version of.
pub fn all_resolved(resolved: Resolved) -> Result<BTreeMap<String, String>, HostError> {
    resolved
        .into_iter()
        .map(|(name, version)| version.map(|v| (name, v)))
        .collect()
}

/// The package manager. Real implementation: [`Apt`].
pub trait Packages: Send + Sync {
    /// Every installed package.
    fn installed(&self) -> Result<BTreeMap<String, Installed>, HostError>;
    /// The exact version each want (package → an exact version or `latest`) means, from the
    /// apt sources, in one look-up: package → its version, or why it has none (each package
    /// apart, so a check can name every one that is missing).
    fn resolve(&self, wants: &BTreeMap<String, String>) -> Result<Resolved, HostError>;
    /// Make sure the `.deb` of each package → version is in the cache, downloading the missing
    /// ones in one apt run (not one per package: that was most of a first converge); returns
    /// package → its file name there.
    fn fetch(
        &self,
        locks: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, HostError>;
    /// Install (or up/downgrade to) cached `.deb` files, as one apt transaction.
    fn install(&self, debs: &[String]) -> Result<(), HostError>;
    /// Remove packages.
    fn remove(&self, names: &[String]) -> Result<(), HostError>;
    /// Mark packages held (`apt-mark hold`) or release them (`unhold`). Named apart from
    /// `strackt hold`, the daemon's experiment mode, which has nothing to do with apt.
    fn mark_held(&self, names: &[String], held: bool) -> Result<(), HostError>;
    /// Whether the `.deb` file `deb` is in the cache (an empty name never is).
    fn is_cached(&self, deb: &str) -> bool;
    /// Delete cached `.deb` files not in `keep`.
    fn prune_cache(&self, keep: &std::collections::BTreeSet<String>) -> Result<(), HostError>;
    /// Refresh apt's package lists from the server's own sources (`apt-get update`). Slow
    /// (network): callers run it off the async runtime.
    fn refresh(&self) -> Result<(), HostError>;
    /// What apt offers for each of `names` (one `apt-cache policy` for all), from the lists as
    /// they are; a name apt does not know is missing from the answer.
    fn candidates(&self, names: &[String]) -> Result<BTreeMap<String, Offer>, HostError>;
}

/// One version apt offers for a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offered {
    /// The version.
    pub version: String,
    /// The suites it is published in, as the source lines name them (`bookworm`,
    /// `bookworm-security`, `stable-security`); the dpkg status file is not a suite.
    pub suites: Vec<String>,
}

impl Offered {
    /// Published in a security suite: an archive or codename ending in `-security`, the test
    /// unattended-upgrades' Debian defaults make (`…,a=${distro_codename}-security`).
    pub fn security(&self) -> bool {
        self.suites.iter().any(|s| s.ends_with("-security"))
    }
}

/// What apt offers for one package (`apt-cache policy`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// The installed version.
    pub installed: Option<String>,
    /// The version apt would install (its pins applied).
    pub candidate: Option<String>,
    /// Every version apt knows, newest first as apt lists them.
    pub versions: Vec<Offered>,
}

impl Offer {
    /// The suites `version` comes from.
    pub fn suites_of(&self, version: &str) -> Vec<String> {
        self.versions
            .iter()
            .find(|o| o.version == version)
            .map(|o| o.suites.clone())
            .unwrap_or_default()
    }
}
