//! Semantic rules of a definition: what strackt may manage and what makes sense to systemd.
//! Runs after the structural pass succeeded, reports every violation.

mod accounts;
mod services;

use std::time::Duration;

use super::parse::Problems;
use super::rules;
use super::{Definition, Seg};

pub(crate) const SECOND: Duration = Duration::from_secs(1);
pub(crate) const MINUTE: Duration = Duration::from_secs(60);
pub(crate) const HOUR: Duration = Duration::from_secs(3600);
pub(crate) const DAY: Duration = Duration::from_secs(86_400);

/// Where managed files may live. strackt manages configuration, never application code, data
/// or uploads (which live under /srv, /var/lib, /home), nor kernel or runtime filesystems.
const ALLOWED_ROOTS: &[&str] = &[
    "/etc/",
    "/usr/local/etc/",
    "/usr/local/bin/",
    "/usr/local/sbin/",
    "/opt/",
];

/// Paths under an allowed root that strackt still refuses, with the reason shown to the user.
const REFUSED: &[(&str, &str)] = &[
    (
        "/etc/strackt/",
        "strackt's own configuration is not a managed file",
    ),
    (
        "/etc/systemd/system/",
        "units are managed through `services:`",
    ),
    (
        "/etc/passwd",
        "accounts are managed through `users:`/`groups:`, not as files",
    ),
    (
        "/etc/shadow",
        "accounts are managed through `users:`/`groups:`, not as files",
    ),
    (
        "/etc/group",
        "accounts are managed through `users:`/`groups:`, not as files",
    ),
    (
        "/etc/gshadow",
        "accounts are managed through `users:`/`groups:`, not as files",
    ),
    (
        super::SYSCTL_FILE,
        "strackt writes it from `settings.sysctl`",
    ),
];

fn key(path: &[&str]) -> Vec<Seg> {
    path.iter().map(|s| Seg::Key((*s).to_string())).collect()
}

/// `strackt.updates`: a known timezone and a schedule in the backups' syntax, each located.
fn check_updates(u: &super::UpdatesPolicy, problems: &mut Problems<'_>) {
    let tz = if u.timezone.parse::<chrono_tz::Tz>().is_ok() {
        u.timezone.as_str()
    } else {
        problems.at(
            &key(&["strackt", "updates", "timezone"]),
            format!(
                "unknown timezone {:?}; use an IANA name such as Europe/Berlin or UTC",
                u.timezone
            ),
        );
        "UTC"
    };
    if let Err(e) = super::schedule::Schedule::parse(&u.check, tz) {
        problems.at(&key(&["strackt", "updates", "check"]), e.to_string());
    }
}

/// Every rule, section by section, each problem reported at its field.
pub(crate) fn validate(def: &Definition, problems: &mut Problems<'_>) {
    check_strackt(def, problems);
    check_files(def, problems);
    for (name, spec) in &def.services {
        services::check_service(def, name, spec, problems);
    }
    accounts::check_accounts(def, problems);
    super::apps::check_apps(&def.apps, problems);
    super::databases::check_databases(&def.databases, &def.apps, problems);
    check_trees(def, problems);
    super::backups::check_backups(&def.backups, &def.apps, problems);
    if let Some(r) = &def.receiver {
        super::receiver::check_receiver(r, problems);
    }
    check_packages(def, problems);
    check_firewall(def, problems);
    check_sysctl(def, problems);
}

/// `version` and the `strackt:` section: durations, the status endpoint, updates, retention.
fn check_strackt(def: &Definition, problems: &mut Problems<'_>) {
    if def.version != 1 {
        problems.at(
            &key(&["version"]),
            format!(
                "unsupported version {}; this strackt reads version 1",
                def.version
            ),
        );
    }
    let s = &def.strackt;
    for (field, text, min, max) in [
        ("interval", &s.interval, SECOND, DAY),
        ("settle", &s.settle, Duration::ZERO, 10 * MINUTE),
    ] {
        if let Err(e) = rules::duration(text, min, max) {
            problems.at(&key(&["strackt", field]), e);
        }
    }
    match rules::socket_addr(&s.listen, "127.0.0.1:7477") {
        Ok(addr) if !addr.ip().is_loopback() && !s.listen_non_loopback => problems.at(
            &key(&["strackt", "listen"]),
            format!(
                "{} is reachable from other machines: the status endpoint shows the server's state and operations to anyone who can connect; keep it on 127.0.0.1 or set `listen_non_loopback: true`",
                s.listen
            ),
        ),
        Ok(_) => {}
        Err(e) => problems.at(&key(&["strackt", "listen"]), e),
    }
    check_updates(&s.updates, problems);
    if !(2..=1000).contains(&s.keep_generations) {
        problems.at(
            &key(&["strackt", "keep_generations"]),
            "must be 2 to 1000 (the current and the previous generation are always kept)",
        );
    }
}

/// `files:`: where strackt may write, content, mode and owners.
fn check_files(def: &Definition, problems: &mut Problems<'_>) {
    for (path, spec) in &def.files {
        let at = |field: &str| {
            let mut p = key(&["files", path]);
            if !field.is_empty() {
                p.push(Seg::Key(field.into()));
            }
            p
        };
        if let Err(msg) = check_managed_path(path) {
            problems.at_key(&at(""), msg);
        }
        if let Err(e) = rules::no_nul(&spec.content) {
            problems.at(&at("content"), e);
        }
        if let Some(mode) = &spec.mode {
            match parse_mode(mode) {
                None => problems.at(
                    &at("mode"),
                    format!("{mode:?} is not an octal mode; write it quoted, e.g. \"0640\""),
                ),
                Some(m) => {
                    if let Err(e) = rules::safe_mode(m) {
                        problems.at(&at("mode"), e);
                    }
                }
            }
        }
        for (field, name) in [("owner", &spec.owner), ("group", &spec.group)] {
            if let Some(name) = name {
                if !is_account_name(name) {
                    problems.at(&at(field), format!("{name:?} is not a valid {field} name"));
                }
            }
        }
    }
}

/// `packages:`: Debian policy's names and versions, or `latest`.
fn check_packages(def: &Definition, problems: &mut Problems<'_>) {
    for (name, version) in &def.packages {
        let at = key(&["packages", name]);
        // Debian policy 5.6.1 (names) and 5.6.12 (versions).
        let name_ok = name.len() >= 2
            && name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
        if !name_ok {
            problems.at_key(&at, format!("{name:?} is not a Debian package name"));
        }
        let version_ok = version == "latest"
            || (version.chars().next().is_some_and(|c| c.is_ascii_digit())
                && !version.contains("..")
                && version
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".+~:-".contains(c)));
        if !version_ok {
            problems.at(&at, format!("{version:?} is not a Debian version; write an exact version (e.g. \"2.10-3\") or `latest`"));
        }
    }
}

/// `firewall.allow`: ports or ranges, and source networks.
fn check_firewall(def: &Definition, problems: &mut Problems<'_>) {
    if let Some(fw) = &def.firewall {
        for (i, rule) in fw.allow.iter().enumerate() {
            let at = |field: &str| {
                let mut p = key(&["firewall", "allow"]);
                p.push(Seg::Index(i));
                p.push(Seg::Key(field.into()));
                p
            };
            if rule.port.range().is_none() {
                problems.at(&at("port"), "not a port (1-65535) or a range \"LOW-HIGH\"");
            }
            for (j, cidr) in rule.from.iter().enumerate() {
                if super::parse_cidr(cidr).is_none() {
                    let mut p = at("from");
                    p.push(Seg::Index(j));
                    problems.at(&p, format!("{cidr:?} is not a network (e.g. 10.0.0.0/8, 2001:db8::/32; no bits set past the prefix)"));
                }
            }
        }
    }
}

/// `settings.sysctl`: dotted keys and one-line values.
fn check_sysctl(def: &Definition, problems: &mut Problems<'_>) {
    for (name, value) in &def.settings.sysctl {
        let at = key(&["settings", "sysctl", name]);
        let segments_ok = name.split('.').count() >= 2
            && name.split('.').all(|seg| {
                !seg.is_empty()
                    && seg
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
        if !segments_ok {
            problems.at_key(
                &at,
                format!("{name:?} is not a sysctl key (dotted, e.g. net.ipv4.ip_forward)"),
            );
        }
        if let super::SysctlValue::Text(t) = value {
            if t.trim().is_empty() || t.chars().any(|c| c.is_control() && c != '\t') {
                problems.at(&at, "a sysctl value must be one non-empty line");
            }
        }
    }
}

/// The trees different owners write must not overlap: two apps, an app and a managed file,
/// an app and a user's `.ssh`, an app and the receiver's storage.
fn check_trees(def: &Definition, problems: &mut Problems<'_>) {
    let valid = |p: &str| rules::absolute_path(p).is_ok();
    let apps: Vec<(&String, &str)> = def
        .apps
        .iter()
        .filter(|(_, a)| valid(&a.path))
        .map(|(n, a)| (n, a.path.as_str()))
        .collect();
    for (i, (name, path)) in apps.iter().enumerate() {
        let at = key(&["apps", name, "path"]);
        if let Some((other, other_path)) = apps[..i].iter().find(|(_, o)| rules::overlaps(path, o))
        {
            problems.at(
                &at,
                format!("{path} overlaps app {other}'s {other_path}: each app needs a directory of its own"),
            );
        }
        if let Some(file) = def.files.keys().find(|f| rules::is_within(f, path)) {
            problems.at(
                &at,
                format!("the managed file {file} lies inside this app's directory, which the app's user owns: manage it elsewhere or drop it"),
            );
        }
        for (user, spec) in def.users.iter().filter(|(_, u)| !u.ssh_keys.is_empty()) {
            let ssh = format!("{}/.ssh", spec.home_of(user));
            if valid(&ssh) && rules::overlaps(path, &ssh) {
                problems.at(
                    &at,
                    format!("user {user}'s {ssh}/authorized_keys (from `ssh_keys:`) would lie inside this app's directory"),
                );
            }
        }
        if let Some(r) = &def.receiver {
            if valid(&r.storage) && rules::overlaps(path, &r.storage) {
                problems.at(
                    &at,
                    format!("overlaps the receiver's storage {}", r.storage),
                );
            }
        }
    }
}

/// Parse a quoted octal mode (`"0640"`, `"644"`), at most 0o7777.
pub fn parse_mode(text: &str) -> Option<u32> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    if digits.is_empty() || digits.len() > 4 {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o7777)
}

/// Whether strackt may manage a file at `path`; `Err` explains why not.
fn check_managed_path(path: &str) -> Result<(), String> {
    rules::one_line(path)?;
    if !path.starts_with('/') {
        return Err(format!(
            "{path:?} is a relative path; managed files need an absolute path"
        ));
    }
    if path == "/" {
        return Err("\"/\" is a directory, not a file".into());
    }
    rules::absolute_path(path)?;
    if let Some((prefix, why)) = REFUSED
        .iter()
        .find(|(p, _)| path == p.trim_end_matches('/') || (p.ends_with('/') && path.starts_with(p)))
    {
        return Err(format!("strackt may not manage {path:?} ({prefix}): {why}"));
    }
    if !ALLOWED_ROOTS.iter().any(|root| path.starts_with(root)) {
        return Err(format!(
            "strackt may not manage {path:?}: managed files live under {} (application code, data and uploads are never touched)",
            ALLOWED_ROOTS.join(", ")
        ));
    }
    Ok(())
}

/// `useradd`'s default NAME_REGEX, or a numeric id.
fn is_account_name(name: &str) -> bool {
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_digit()) {
        // An id; (uid_t)-1 and the 16-bit -1 mean "no change" to chown.
        return name
            .parse::<u32>()
            .is_ok_and(|id| id != u32::MAX && id != 65535);
    }
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    first_ok
        && name.len() <= 32
        && name
            .trim_end_matches('$')
            .chars()
            .skip(1)
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests;
