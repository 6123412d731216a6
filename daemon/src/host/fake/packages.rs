//! The fake host's Debian packages: a repository of versions (some in a security suite),
//! strackt's `.deb` cache, the installed set and holds, a mirror that can be offline and a
//! sources list that can be broken. Only the model; arranging it is `FakeState`'s fields.

use std::collections::{BTreeMap, BTreeSet};

use super::FakeHost;
use crate::host::packages::{compare_versions, Installed, Offer, Offered, Packages, Resolved};
use crate::host::HostError;

impl Packages for FakeHost {
    fn installed(&self) -> Result<BTreeMap<String, Installed>, HostError> {
        Ok(self.state().installed.clone())
    }
    fn resolve(&self, wants: &BTreeMap<String, String>) -> Result<Resolved, HostError> {
        let s = self.state();
        let failed = |message: String| HostError::Command {
            op: "apt-cache",
            message,
        };
        let one = |name: &String, want: &String| {
            let versions = s
                .repository
                .get(name)
                .ok_or_else(|| failed(format!("package {name:?} is not available")))?;
            match want.as_str() {
                "latest" => versions
                    .last()
                    .cloned()
                    .ok_or_else(|| failed("no candidate".into())),
                v if versions.iter().any(|x| x == v) => Ok(v.to_string()),
                v => Err(failed(format!(
                    "version {v:?} of {name:?} is not available (available: {})",
                    versions.join(", ")
                ))),
            }
        };
        Ok(wants
            .iter()
            .map(|(name, want)| (name.clone(), one(name, want)))
            .collect())
    }
    fn fetch(
        &self,
        locks: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, HostError> {
        let mut s = self.state();
        let mut out = BTreeMap::new();
        for (name, version) in locks {
            let deb = format!("{name}_{version}_all.deb");
            if !s.debs.contains(&deb) {
                if s.offline {
                    return Err(HostError::Command {
                        op: "apt-get",
                        message: "could not connect to the mirror".into(),
                    });
                }
                s.debs.insert(deb.clone());
            }
            out.insert(name.clone(), deb);
        }
        Ok(out)
    }
    fn install(&self, debs: &[String]) -> Result<(), HostError> {
        let mut s = self.state();
        for deb in debs {
            if !s.debs.contains(deb) {
                return Err(HostError::Command {
                    op: "apt-get",
                    message: format!("{deb} is not in the cache"),
                });
            }
            let mut parts = deb.split('_');
            let (name, version) = (
                parts.next().unwrap_or_default().to_string(),
                parts.next().unwrap_or_default().to_string(),
            );
            s.installed.insert(
                name,
                Installed {
                    version,
                    held: false,
                    auto: false,
                    essential: false,
                },
            );
        }
        Ok(())
    }
    fn remove(&self, names: &[String]) -> Result<(), HostError> {
        let mut s = self.state();
        for n in names {
            s.installed.remove(n);
        }
        Ok(())
    }
    fn mark_held(&self, names: &[String], held: bool) -> Result<(), HostError> {
        let mut s = self.state();
        for n in names {
            if let Some(p) = s.installed.get_mut(n) {
                p.held = held;
            }
        }
        Ok(())
    }
    fn is_cached(&self, deb: &str) -> bool {
        self.state().debs.contains(deb)
    }
    fn prune_cache(&self, keep: &BTreeSet<String>) -> Result<(), HostError> {
        self.state().debs.retain(|d| keep.contains(d));
        Ok(())
    }
    fn refresh(&self) -> Result<(), HostError> {
        let mut s = self.state();
        s.refreshes += 1;
        let message = if s.sources_broken {
            "E: Malformed entry 1 in list file /etc/apt/sources.list (Component)"
        } else if s.offline {
            "could not connect to the mirror"
        } else {
            return Ok(());
        };
        Err(HostError::Command {
            op: "apt-get",
            message: message.into(),
        })
    }
    fn candidates(&self, names: &[String]) -> Result<BTreeMap<String, Offer>, HostError> {
        let s = self.state();
        Ok(names
            .iter()
            .filter_map(|name| {
                let mut versions = s.repository.get(name)?.clone();
                versions.sort_by(|a, b| compare_versions(b, a));
                let offered = versions
                    .iter()
                    .map(|v| Offered {
                        version: v.clone(),
                        suites: vec![if s.security.contains(&(name.clone(), v.clone())) {
                            "bookworm-security".into()
                        } else {
                            "bookworm".into()
                        }],
                    })
                    .collect();
                Some((
                    name.clone(),
                    Offer {
                        installed: s.installed.get(name).map(|i| i.version.clone()),
                        candidate: versions.first().cloned(),
                        versions: offered,
                    },
                ))
            })
            .collect())
    }
}
