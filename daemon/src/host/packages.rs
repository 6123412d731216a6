//! Debian packages through dpkg and apt: the real [`Packages`].
//!
//! Reads the dpkg status and apt's extended states directly (fast enough for every pass);
//! changes go through apt-get and apt-mark. Packages are installed from `.deb` files kept in
//! strackt's cache, so going back to an earlier generation needs no network.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use super::HostError;

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

/// The package manager. Real implementation: [`Apt`].
pub trait Packages: Send + Sync {
    /// Every installed package.
    fn installed(&self) -> Result<BTreeMap<String, Installed>, HostError>;
    /// The exact version `want` (an exact version or `latest`) means, from the apt sources.
    fn resolve(&self, name: &str, want: &str) -> Result<String, HostError>;
    /// Make sure the `.deb` of `name` `version` is in the cache (downloading it if needed);
    /// returns its file name there.
    fn fetch(&self, name: &str, version: &str) -> Result<String, HostError>;
    /// Install (or up/downgrade to) cached `.deb` files, as one apt transaction.
    fn install(&self, debs: &[String]) -> Result<(), HostError>;
    /// Remove packages.
    fn remove(&self, names: &[String]) -> Result<(), HostError>;
    /// Hold (or release) packages.
    fn hold(&self, names: &[String], hold: bool) -> Result<(), HostError>;
    /// Delete cached `.deb` files not in `keep`.
    fn prune_cache(&self, keep: &std::collections::BTreeSet<String>) -> Result<(), HostError>;
}

/// dpkg + apt on this machine, with the `.deb` cache at `cache`.
#[derive(Debug, Clone)]
pub struct Apt {
    cache: PathBuf,
}

impl Apt {
    /// The default cache is `/var/cache/strackt/debs`.
    pub fn new(cache: &Path) -> Apt {
        Apt {
            cache: cache.to_path_buf(),
        }
    }

    /// Whether a `.deb` is in the cache.
    pub fn is_cached(&self, deb: &str) -> bool {
        !deb.is_empty() && self.cache.join(deb).is_file()
    }
}

/// Parse the dpkg status file and apt's extended states.
pub fn parse_installed(status: &str, extended: &str) -> BTreeMap<String, Installed> {
    let auto: std::collections::BTreeSet<String> = extended
        .split("\n\n")
        .filter(|s| s.lines().any(|l| l.trim() == "Auto-Installed: 1"))
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Package: "))
                .map(str::to_string)
        })
        .collect();
    status
        .split("\n\n")
        .filter_map(|stanza| {
            let field = |k: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(k))
                    .map(str::trim)
            };
            let name = field("Package:")?;
            let st = field("Status:")?;
            if !st.ends_with(" installed") {
                return None;
            }
            let essential = field("Essential:") == Some("yes")
                || matches!(field("Priority:"), Some("required" | "important"));
            Some((
                name.to_string(),
                Installed {
                    version: field("Version:")?.to_string(),
                    held: st.starts_with("hold "),
                    auto: auto.contains(name),
                    essential,
                },
            ))
        })
        .collect()
}

/// The versions apt knows for a package, from `apt-cache policy` output: (candidate, all).
pub fn parse_policy(text: &str) -> (Option<String>, Vec<String>) {
    let candidate = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate: "))
        .filter(|c| *c != "(none)")
        .map(str::to_string);
    let mut in_table = false;
    let mut versions = Vec::new();
    for line in text.lines() {
        if line.trim() == "Version table:" {
            in_table = true;
            continue;
        }
        // Version lines are indented 5 (or start with " *** "); source lines 8 or more.
        if in_table
            && (line.starts_with(" *** ")
                || (line.starts_with("     ") && !line.starts_with("      ")))
        {
            if let Some(v) = line.trim_start_matches(" *** ").split_whitespace().next() {
                versions.push(v.to_string());
            }
        }
    }
    (candidate, versions)
}

fn apt(tool: &'static str, args: &[&str], cwd: Option<&Path>) -> Result<String, HostError> {
    let mut cmd = Command::new(tool);
    cmd.args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("LC_ALL", "C");
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let out = cmd.output().map_err(|e| HostError::Command {
        op: tool,
        message: format!("running {tool}: {e}"),
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: String = err
            .trim()
            .lines()
            .rev()
            .take(6)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        Err(HostError::Command {
            op: tool,
            message: format!("{} {} failed: {tail}", tool, args.join(" ")),
        })
    }
}

/// The file name apt-get download gives a package version, without the architecture.
fn deb_prefix(name: &str, version: &str) -> String {
    format!("{name}_{}_", version.replace(':', "%3a"))
}

impl Packages for Apt {
    fn installed(&self) -> Result<BTreeMap<String, Installed>, HostError> {
        let status =
            std::fs::read_to_string("/var/lib/dpkg/status").map_err(|source| HostError::Io {
                op: "read",
                path: "/var/lib/dpkg/status".into(),
                source,
            })?;
        let extended = std::fs::read_to_string("/var/lib/apt/extended_states").unwrap_or_default();
        Ok(parse_installed(&status, &extended))
    }

    fn resolve(&self, name: &str, want: &str) -> Result<String, HostError> {
        let (candidate, versions) = parse_policy(&apt("apt-cache", &["policy", name], None)?);
        let missing = |what: String| HostError::Command {
            op: "apt-cache",
            message: what,
        };
        if want == "latest" {
            return candidate.ok_or_else(|| {
                missing(format!(
                    "package {name:?} is not available from the configured apt sources"
                ))
            });
        }
        if versions.iter().any(|v| v == want) {
            return Ok(want.to_string());
        }
        if versions.is_empty() {
            return Err(missing(format!(
                "package {name:?} is not available from the configured apt sources"
            )));
        }
        Err(missing(format!(
            "version {want:?} of {name:?} is not available (available: {})",
            versions.join(", ")
        )))
    }

    fn fetch(&self, name: &str, version: &str) -> Result<String, HostError> {
        let prefix = deb_prefix(name, version);
        let find = || -> Option<String> {
            std::fs::read_dir(&self.cache)
                .ok()?
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .find(|f| f.starts_with(&prefix) && f.ends_with(".deb"))
        };
        if let Some(found) = find() {
            return Ok(found);
        }
        std::fs::create_dir_all(&self.cache).map_err(|source| HostError::Io {
            op: "create directory",
            path: self.cache.clone(),
            source,
        })?;
        apt(
            "apt-get",
            &["download", "-q", &format!("{name}={version}")],
            Some(&self.cache),
        )?;
        find().ok_or_else(|| HostError::Command {
            op: "apt-get",
            message: format!("apt-get download {name}={version} left no {prefix}*.deb"),
        })
    }

    fn install(&self, debs: &[String]) -> Result<(), HostError> {
        let paths: Vec<String> = debs
            .iter()
            .map(|d| self.cache.join(d).display().to_string())
            .collect();
        let mut args = vec![
            "install",
            "-y",
            "-q",
            "--allow-downgrades",
            "--allow-change-held-packages",
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
        ];
        args.extend(paths.iter().map(String::as_str));
        apt("apt-get", &args, None).map(|_| ())
    }

    fn remove(&self, names: &[String]) -> Result<(), HostError> {
        let mut args = vec!["remove", "-y", "-q", "--allow-change-held-packages"];
        args.extend(names.iter().map(String::as_str));
        apt("apt-get", &args, None).map(|_| ())
    }

    fn hold(&self, names: &[String], hold: bool) -> Result<(), HostError> {
        let mut args = vec![if hold { "hold" } else { "unhold" }];
        args.extend(names.iter().map(String::as_str));
        apt("apt-mark", &args, None).map(|_| ())
    }

    fn prune_cache(&self, keep: &std::collections::BTreeSet<String>) -> Result<(), HostError> {
        let Ok(dir) = std::fs::read_dir(&self.cache) else {
            return Ok(());
        };
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".deb") && !keep.contains(&name) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_status_and_auto_marks() {
        let status = "Package: hello\nStatus: hold ok installed\nPriority: optional\nVersion: 2.10-3\n\nPackage: bash\nEssential: yes\nStatus: install ok installed\nVersion: 5.2\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n\nPackage: libx\nStatus: install ok installed\nPriority: optional\nVersion: 3\n";
        let ext = "Package: libx\nArchitecture: amd64\nAuto-Installed: 1\n";
        let got = parse_installed(status, ext);
        assert_eq!(got.len(), 2 + 1);
        assert_eq!(
            got["hello"],
            Installed {
                version: "2.10-3".into(),
                held: true,
                auto: false,
                essential: false
            }
        );
        assert!(got["bash"].essential && !got["bash"].held);
        assert!(got["libx"].auto);
        assert!(!got.contains_key("gone"));
    }

    #[test]
    fn apt_cache_policy_versions() {
        let text = "strackt-demo:\n  Installed: 1.0\n  Candidate: 1.1\n  Version table:\n     1.1 500\n        500 file:/srv/repo ./ Packages\n *** 1.0 500\n        500 file:/srv/repo ./ Packages\n        100 /var/lib/dpkg/status\n";
        assert_eq!(
            parse_policy(text),
            (Some("1.1".into()), vec!["1.1".into(), "1.0".into()])
        );
        assert_eq!(
            parse_policy("nope:\n  Installed: (none)\n  Candidate: (none)\n  Version table:\n"),
            (None, vec![])
        );
        assert_eq!(deb_prefix("a", "1:2.0"), "a_1%3a2.0_");
    }
}
