//! Debian packages through dpkg and apt: the real [`Packages`].
//!
//! Reads the dpkg status and apt's extended states directly (fast enough for every pass);
//! changes go through apt-get and apt-mark, in a transient unit of their own so that no restart
//! of strackt ever kills a running dpkg. Packages are installed from `.deb` files kept in
//! strackt's cache, so going back to an earlier generation needs no network.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::processes::{run_blocking, Cmd};
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

/// Parse `apt-cache policy NAME…` output (run with `LC_ALL=C`) for any number of packages:
/// each block starts with `NAME:` at column 0, version lines are indented five (` *** ` marks
/// the installed one) and each is followed by its source lines (`PRIO URI DIST/COMPONENT ARCH
/// Packages`, or `PRIO /var/lib/dpkg/status`).
pub fn parse_policy_offers(text: &str) -> BTreeMap<String, Offer> {
    let mut out: BTreeMap<String, Offer> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut in_table = false;
    for line in text.lines() {
        if !line.starts_with(' ') && line.trim_end().ends_with(':') && !line.trim().is_empty() {
            let name = line.trim_end().trim_end_matches(':').to_string();
            out.entry(name.clone()).or_default();
            current = Some(name);
            in_table = false;
            continue;
        }
        let Some(offer) = current.as_ref().and_then(|n| out.get_mut(n)) else {
            continue;
        };
        let trimmed = line.trim();
        let value = |v: &str| (v != "(none)").then(|| v.to_string());
        if let Some(v) = trimmed.strip_prefix("Installed:") {
            offer.installed = value(v.trim());
        } else if let Some(v) = trimmed.strip_prefix("Candidate:") {
            offer.candidate = value(v.trim());
        } else if trimmed == "Version table:" {
            in_table = true;
        } else if in_table
            && (line.starts_with(" *** ")
                || (line.starts_with("     ") && !line.starts_with("      ")))
        {
            if let Some(v) = line.trim_start_matches(" *** ").split_whitespace().next() {
                offer.versions.push(Offered {
                    version: v.to_string(),
                    suites: Vec::new(),
                });
            }
        } else if in_table && line.starts_with("      ") {
            let Some(last) = offer.versions.last_mut() else {
                continue;
            };
            let words: Vec<&str> = trimmed.split_whitespace().collect();
            // `500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages`
            let suites: Vec<String> = if words.len() >= 3 && words[0].parse::<i64>().is_ok() {
                let dist = words[2].split('/').next().unwrap_or_default();
                vec![dist.to_string()]
            } else {
                Vec::new()
            };
            for s in suites {
                if !s.is_empty() && s != "." && !last.suites.contains(&s) {
                    last.suites.push(s);
                }
            }
        }
    }
    out
}

/// Debian's version order (`dpkg --compare-versions`): epoch, then upstream version, then
/// revision, each compared by dpkg's rules (`~` sorts before everything, even the end).
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    fn split(v: &str) -> (u64, &str, &str) {
        let (epoch, rest) = match v.split_once(':') {
            Some((e, r)) if e.chars().all(|c| c.is_ascii_digit()) && !e.is_empty() => {
                (e.parse().unwrap_or(0), r)
            }
            _ => (0, v),
        };
        match rest.rsplit_once('-') {
            Some((up, rev)) => (epoch, up, rev),
            None => (epoch, rest, ""),
        }
    }
    fn order(c: u8) -> i32 {
        match c {
            0 => 0,
            b'~' => -1,
            c if c.is_ascii_digit() => 0,
            c if c.is_ascii_alphabetic() => i32::from(c),
            c => i32::from(c) + 256,
        }
    }
    fn verrevcmp(a: &str, b: &str) -> std::cmp::Ordering {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        let at = |s: &[u8], i: usize| s.get(i).copied().unwrap_or(0);
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            while (at(a, i) != 0 && !at(a, i).is_ascii_digit())
                || (at(b, j) != 0 && !at(b, j).is_ascii_digit())
            {
                let (ac, bc) = (order(at(a, i)), order(at(b, j)));
                if ac != bc {
                    return ac.cmp(&bc);
                }
                i += 1;
                j += 1;
            }
            while at(a, i) == b'0' {
                i += 1;
            }
            while at(b, j) == b'0' {
                j += 1;
            }
            let mut first_diff = std::cmp::Ordering::Equal;
            while at(a, i).is_ascii_digit() && at(b, j).is_ascii_digit() {
                if first_diff == std::cmp::Ordering::Equal {
                    first_diff = at(a, i).cmp(&at(b, j));
                }
                i += 1;
                j += 1;
            }
            if at(a, i).is_ascii_digit() {
                return std::cmp::Ordering::Greater;
            }
            if at(b, j).is_ascii_digit() {
                return std::cmp::Ordering::Less;
            }
            if first_diff != std::cmp::Ordering::Equal {
                return first_diff;
            }
        }
        std::cmp::Ordering::Equal
    }
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| verrevcmp(ua, ub))
        .then_with(|| verrevcmp(ra, rb))
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

/// How an apt tool runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Run {
    /// As strackt's child: reads, downloads and list refreshes, which are harmless to cut off.
    Child,
    /// Work that changes the dpkg database (install, remove, hold): in a transient unit of its
    /// own, outside strackt's cgroup, so that a restart, crash or watchdog kill of strackt (which
    /// kills everything in strackt's cgroup) never kills dpkg halfway through a package and
    /// leaves it half-configured. Its output goes to unnamed files, not pipes, so that a dpkg
    /// outliving strackt never dies of SIGPIPE either. A strackt started meanwhile waits for
    /// the dpkg lock instead of failing on it.
    OwnUnit,
}

/// How long dpkg-changing work waits for the dpkg lock (held by a run that outlived a strackt
/// restart, or by an administrator's apt) before it fails.
const LOCK_WAIT_SECS: u32 = 900;

/// How long one apt run may take (an install waits up to [`LOCK_WAIT_SECS`] for the lock
/// first). Past it the run counts as failed; dpkg in its own unit is not cut off.
const APT_LIMIT: Duration = Duration::from_secs(2 * 3600);

fn apt(
    tool: &'static str,
    args: &[&str],
    cwd: Option<&Path>,
    how: Run,
) -> Result<String, HostError> {
    let failed = |message: String| HostError::Command { op: tool, message };
    // Without systemd as PID 1 (a container or chroot without it) there is no unit to run in.
    let own_unit = how == Run::OwnUnit && Path::new("/run/systemd/system").is_dir();
    let mut cmd = if own_unit {
        Cmd::new("systemd-run", APT_LIMIT).args([
            "--quiet",
            "--wait",
            "--pipe",
            "--collect",
            "--service-type=exec",
            &format!(
                "--unit=strackt-{tool}-{}-{}",
                std::process::id(),
                chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
            ),
            &format!(
                "--description=strackt: {tool} {}",
                args.first().unwrap_or(&"")
            ),
            "--setenv=DEBIAN_FRONTEND=noninteractive",
            "--setenv=LC_ALL=C",
            "--",
            tool,
        ])
    } else {
        Cmd::new(tool, APT_LIMIT)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("LC_ALL", "C")
    };
    if how == Run::OwnUnit {
        cmd = cmd.args(["-o", &format!("DPkg::Lock::Timeout={LOCK_WAIT_SECS}")]);
    }
    cmd = cmd.args(args).keep(256 << 20);
    if let Some(dir) = cwd {
        cmd = cmd.cwd(dir);
    }
    // Unnamed files, not pipes: a dpkg that outlives strackt never dies of SIGPIPE.
    let out = run_blocking(tool, cmd)?;
    if out.success() {
        return Ok(out.stdout);
    }
    let tail: Vec<&str> = out.stderr.trim().lines().rev().take(6).collect();
    let mut tail: Vec<&str> = tail.into_iter().rev().collect();
    let why = out.failure().unwrap_or_default();
    if tail.is_empty() {
        tail.push(&why);
    }
    Err(failed(format!(
        "{} {} failed: {}",
        tool,
        args.join(" "),
        tail.join("\n")
    )))
}

/// The exact version `want` (an exact version or `latest`) of `name` means, given what apt
/// offers for it (`None`: apt does not know the package).
fn pick(name: &str, want: &str, offer: Option<&Offer>) -> Result<String, HostError> {
    let missing = |what: String| HostError::Command {
        op: "apt-cache",
        message: what,
    };
    let unknown = || {
        missing(format!(
            "package {name:?} is not available from the configured apt sources"
        ))
    };
    let offer = offer.ok_or_else(unknown)?;
    if want == "latest" {
        return offer.candidate.clone().ok_or_else(unknown);
    }
    if offer.versions.iter().any(|v| v.version == want) {
        return Ok(want.to_string());
    }
    if offer.versions.is_empty() {
        return Err(unknown());
    }
    let versions: Vec<&str> = offer.versions.iter().map(|v| v.version.as_str()).collect();
    Err(missing(format!(
        "version {want:?} of {name:?} is not available (available: {})",
        versions.join(", ")
    )))
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

    fn resolve(&self, wants: &BTreeMap<String, String>) -> Result<Resolved, HostError> {
        if wants.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut args = vec!["policy"];
        args.extend(wants.keys().map(String::as_str));
        let offers = parse_policy_offers(&apt("apt-cache", &args, None, Run::Child)?);
        Ok(wants
            .iter()
            .map(|(name, want)| (name.clone(), pick(name, want, offers.get(name))))
            .collect())
    }

    fn fetch(
        &self,
        locks: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, HostError> {
        let cached = || -> Vec<String> {
            std::fs::read_dir(&self.cache)
                .map(|dir| {
                    dir.flatten()
                        .filter_map(|e| e.file_name().into_string().ok())
                        .filter(|f| f.ends_with(".deb"))
                        .collect()
                })
                .unwrap_or_default()
        };
        let find = |files: &[String], name: &str, version: &str| {
            let prefix = deb_prefix(name, version);
            files.iter().find(|f| f.starts_with(&prefix)).cloned()
        };
        let files = cached();
        let missing: Vec<String> = locks
            .iter()
            .filter(|(name, version)| find(&files, name, version).is_none())
            .map(|(name, version)| format!("{name}={version}"))
            .collect();
        let files = if missing.is_empty() {
            files
        } else {
            std::fs::create_dir_all(&self.cache).map_err(|source| HostError::Io {
                op: "create directory",
                path: self.cache.clone(),
                source,
            })?;
            let mut args = vec!["download", "-q"];
            args.extend(missing.iter().map(String::as_str));
            apt("apt-get", &args, Some(&self.cache), Run::Child)?;
            cached()
        };
        locks
            .iter()
            .map(|(name, version)| {
                let deb = find(&files, name, version).ok_or_else(|| HostError::Command {
                    op: "apt-get",
                    message: format!(
                        "apt-get download {name}={version} left no {}*.deb",
                        deb_prefix(name, version)
                    ),
                })?;
                Ok((name.clone(), deb))
            })
            .collect()
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
        apt("apt-get", &args, None, Run::OwnUnit).map(|_| ())
    }

    fn remove(&self, names: &[String]) -> Result<(), HostError> {
        let mut args = vec!["remove", "-y", "-q", "--allow-change-held-packages"];
        args.extend(names.iter().map(String::as_str));
        apt("apt-get", &args, None, Run::OwnUnit).map(|_| ())
    }

    fn mark_held(&self, names: &[String], held: bool) -> Result<(), HostError> {
        let mut args = vec![if held { "hold" } else { "unhold" }];
        args.extend(names.iter().map(String::as_str));
        apt("apt-mark", &args, None, Run::OwnUnit).map(|_| ())
    }

    fn refresh(&self) -> Result<(), HostError> {
        apt("apt-get", &["update", "-q"], None, Run::Child).map(|_| ())
    }

    fn candidates(&self, names: &[String]) -> Result<BTreeMap<String, Offer>, HostError> {
        if names.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut args = vec!["policy"];
        args.extend(names.iter().map(String::as_str));
        Ok(parse_policy_offers(&apt(
            "apt-cache",
            &args,
            None,
            Run::Child,
        )?))
    }

    fn is_cached(&self, deb: &str) -> bool {
        !deb.is_empty() && self.cache.join(deb).is_file()
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
        let offers = parse_policy_offers(text);
        let demo = offers.get("strackt-demo");
        assert_eq!(
            pick("strackt-demo", "latest", demo).ok(),
            Some("1.1".into())
        );
        assert_eq!(pick("strackt-demo", "1.0", demo).ok(), Some("1.0".into()));
        let wrong = pick("strackt-demo", "2.0", demo).map_err(|e| e.to_string());
        assert!(
            wrong
                .as_ref()
                .is_err_and(|e| e.contains("available: 1.1, 1.0")),
            "{wrong:?}"
        );
        let none = parse_policy_offers(
            "nope:\n  Installed: (none)\n  Candidate: (none)\n  Version table:\n",
        );
        assert!(pick("nope", "latest", none.get("nope")).is_err());
        assert!(pick("nope", "1", none.get("nope")).is_err());
        assert!(pick("gone", "1", None).is_err());
        assert_eq!(deb_prefix("a", "1:2.0"), "a_1%3a2.0_");
    }

    /// `LC_ALL=C apt-cache policy openssl bash nosuchpkg` on a Debian 12 server (2026): a
    /// security update, a point-release version and an older `-updates` one below the
    /// installed version; a name apt does not know prints nothing.
    const DEBIAN_12: &str = "openssl:
  Installed: 3.0.19-1~deb12u2
  Candidate: 3.0.22-1~deb12u2
  Version table:
     3.0.22-1~deb12u2 500
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
     3.0.20-1~deb12u2 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
 *** 3.0.19-1~deb12u2 100
        100 /var/lib/dpkg/status
     3.0.17-1~deb12u2 500
        500 http://deb.debian.org/debian bookworm-updates/main amd64 Packages
bash:
  Installed: 5.2.15-2+b8
  Candidate: 5.2.15-2+b13
  Version table:
     5.2.15-2+b13 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
 *** 5.2.15-2+b8 100
        100 /var/lib/dpkg/status
";

    /// The tests' local archive (`file:` sources, both suites), a held package: the newest
    /// version is not a security one, an older one is.
    const LOCAL_ARCHIVE: &str = "strackt-demo:
  Installed: 1.0
  Candidate: 2.0
  Version table:
     2.0 500
        500 file:/srv/apt bookworm/main amd64 Packages
     1.1 500
        500 file:/srv/apt bookworm-security/main amd64 Packages
 *** 1.0 500
        500 file:/srv/apt bookworm/main amd64 Packages
        100 /var/lib/dpkg/status
";

    #[test]
    fn policy_offers_mark_security_suites() {
        let got = parse_policy_offers(DEBIAN_12);
        assert_eq!(got.len(), 2, "{got:?}");
        let openssl = &got["openssl"];
        assert_eq!(openssl.installed.as_deref(), Some("3.0.19-1~deb12u2"));
        assert_eq!(openssl.candidate.as_deref(), Some("3.0.22-1~deb12u2"));
        let v: Vec<(&str, bool)> = openssl
            .versions
            .iter()
            .map(|o| (o.version.as_str(), o.security()))
            .collect();
        assert_eq!(
            v,
            [
                ("3.0.22-1~deb12u2", true),
                ("3.0.20-1~deb12u2", false),
                ("3.0.19-1~deb12u2", false),
                ("3.0.17-1~deb12u2", false)
            ]
        );
        assert_eq!(openssl.suites_of("3.0.22-1~deb12u2"), ["bookworm-security"]);
        assert_eq!(openssl.suites_of("3.0.17-1~deb12u2"), ["bookworm-updates"]);
        assert!(
            openssl.suites_of("3.0.19-1~deb12u2").is_empty(),
            "dpkg status is no suite"
        );
        assert!(!got["bash"].versions.iter().any(Offered::security));

        let local = &parse_policy_offers(LOCAL_ARCHIVE)["strackt-demo"];
        assert_eq!(local.candidate.as_deref(), Some("2.0"));
        assert_eq!(local.suites_of("1.1"), ["bookworm-security"]);
        assert_eq!(local.suites_of("1.0"), ["bookworm"]);
        assert!(local.versions[1].security() && !local.versions[0].security());

        // A source line naming the suite by its archive (`stable-security`), nothing installed.
        let archive = "hello:\n  Installed: (none)\n  Candidate: 2.10-3\n  Version table:\n     2.10-3 500\n        500 http://deb.debian.org/debian-security stable-security/main amd64 Packages\n";
        let hello = &parse_policy_offers(archive)["hello"];
        assert_eq!(hello.installed, None);
        assert_eq!(hello.suites_of("2.10-3"), ["stable-security"]);
        assert!(hello.versions[0].security());
        assert!(parse_policy_offers("").is_empty());
    }

    #[test]
    fn debian_version_order() {
        use std::cmp::Ordering::{Equal, Greater, Less};
        for (a, b, want) in [
            ("1.0", "1.0", Equal),
            ("1.1", "1.0", Greater),
            ("2.0", "1.1", Greater),
            ("1.0+deb12u1", "1.0", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0~~", "1.0~", Less),
            ("1:0.9", "2.0", Greater),
            ("3.0.22-1~deb12u2", "3.0.19-1~deb12u2", Greater),
            ("5.2.15-2+b13", "5.2.15-2+b8", Greater),
            ("1.10", "1.9", Greater),
            ("1.0-1", "1.0-1.1", Less),
            ("1.0a", "1.0", Greater),
            ("1.0a", "1.0+", Less),
            ("001", "1", Equal),
            ("7.88.1-10+deb12u8", "7.88.1-10+deb12u12", Less),
        ] {
            assert_eq!(compare_versions(a, b), want, "{a} vs {b}");
            assert_eq!(compare_versions(b, a), want.reverse(), "{b} vs {a}");
        }
    }
}
