//! Semantic rules of a definition: what strackt may manage and what makes sense to systemd.
//! Runs after the structural pass succeeded, reports every violation.

use std::collections::BTreeMap;
use std::time::Duration;

use super::parse::Problems;
use super::rules;
use super::{Definition, HealthSpec, Seg, ServiceSpec};

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

/// Unit types a `unit:` service may name.
const UNIT_TYPES: &[&str] = &["service", "socket", "timer", "path", "target", "mount"];

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
        problems.at(&key(&["strackt", "updates", "check"]), e);
    }
}

pub(crate) fn validate(def: &Definition, problems: &mut Problems<'_>) {
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
    for (name, spec) in &def.services {
        check_service(def, name, spec, problems);
    }
    check_accounts(def, problems);
    super::apps::check_apps(&def.apps, problems);
    super::databases::check_databases(&def.databases, &def.apps, problems);
    check_trees(def, problems);
    super::backups::check_backups(&def.backups, &def.apps, problems);
    if let Some(r) = &def.receiver {
        super::receiver::check_receiver(r, problems);
    }
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

fn check_service(def: &Definition, name: &str, spec: &ServiceSpec, problems: &mut Problems<'_>) {
    let at = |field: &str| {
        let mut p = key(&["services", name]);
        if !field.is_empty() {
            p.push(Seg::Key(field.into()));
        }
        p
    };
    if let Err(e) = rules::service_key(name) {
        problems.at_key(&at(""), e);
    }
    if name == "strackt" || spec.unit.as_deref() == Some("strackt.service") {
        problems.at_key(
            &at(""),
            "strackt never manages its own unit (it must not restart itself mid-switch)",
        );
    }
    match (&spec.unit, &spec.exec) {
        (Some(_), Some(_)) => problems.at(
            &at("exec"),
            "`exec` writes a unit; `unit` names an existing one: use one of them",
        ),
        (None, None) => problems.at_key(
            &at(""),
            "needs `exec:` (a unit strackt writes) or `unit:` (an existing unit)",
        ),
        (Some(unit), None) => {
            if let Err(e) = rules::unit_name(unit, UNIT_TYPES) {
                problems.at(&at("unit"), format!("{e}; e.g. cron.service"));
            }
            let writes_unit = [
                ("description", spec.description.is_some()),
                ("user", spec.user.is_some()),
                ("group", spec.group.is_some()),
                ("working_directory", spec.working_directory.is_some()),
                ("environment", !spec.environment.is_empty()),
                ("exec_reload", spec.exec_reload.is_some()),
                ("restart", spec.restart.is_some()),
                ("after", !spec.after.is_empty()),
            ];
            for (field, set) in writes_unit {
                if set {
                    problems.at_key(&at(field), format!("`{field}` only applies to units strackt writes (`exec:`), not to `unit: {unit}`"));
                }
            }
        }
        (None, Some(_)) => {}
    }
    for (field, command) in [("exec", &spec.exec), ("exec_reload", &spec.exec_reload)] {
        if let Some(command) = command {
            if let Err(e) = command_line(command) {
                problems.at(&at(field), e);
            }
        }
    }
    if let Some(text) = &spec.description {
        if let Err(e) = rules::one_line(text) {
            problems.at(&at("description"), e);
        }
    }
    if let Some(dir) = &spec.working_directory {
        if let Err(e) = rules::absolute_path(dir) {
            problems.at(&at("working_directory"), e);
        }
    }
    for (field, value) in [("user", &spec.user), ("group", &spec.group)] {
        if let Some(v) = value {
            if !is_account_name(v) {
                problems.at(&at(field), format!("{v:?} is not a valid {field} name"));
            }
        }
    }
    for (var, value) in &spec.environment {
        let mut p = at("environment");
        p.push(Seg::Key(var.clone()));
        if let Err(e) = rules::env_name(var) {
            problems.at_key(&p, e);
        }
        if let Err(e) = rules::env_value(value) {
            problems.at(&p, e);
        }
    }
    for (i, unit) in spec.after.iter().enumerate() {
        if let Err(e) = rules::unit_name(unit, &[]) {
            let mut p = at("after");
            p.push(Seg::Index(i));
            problems.at(&p, format!("{e}; e.g. network-online.target"));
        }
    }
    for (i, file) in spec.restart_on.iter().enumerate() {
        let mut p = at("restart_on");
        p.push(Seg::Index(i));
        if !def.files.contains_key(file) {
            problems.at(&p, format!("{file:?} is not a file in `files:`"));
        } else if spec.restart_on[..i].contains(file) {
            problems.at(&p, format!("{file:?} is named twice"));
        }
    }
    if let Some(health) = &spec.health {
        check_health(health, &at("health"), problems);
    }
}

/// A command line written into a unit file: one line, starting with an absolute program path.
fn command_line(text: &str) -> Result<(), String> {
    rules::one_line(text)?;
    if text.trim_start().starts_with('/') {
        Ok(())
    } else {
        Err("must start with an absolute path to the program".into())
    }
}

fn check_health(h: &HealthSpec, at: &[Seg], problems: &mut Problems<'_>) {
    let field = |f: &str| {
        let mut p = at.to_vec();
        p.push(Seg::Key(f.into()));
        p
    };
    let set = [h.command.is_some(), h.http.is_some(), h.tcp.is_some()]
        .iter()
        .filter(|x| **x)
        .count();
    if set != 1 {
        problems.at(at, "needs exactly one of `command`, `http`, `tcp`");
    }
    if let Some(cmd) = &h.command {
        if let Err(e) = command_line(cmd) {
            problems.at(&field("command"), e);
        }
    }
    if let Some(url) = &h.http {
        if let Err(e) = rules::url(url, &["http", "https"]) {
            problems.at(&field("http"), e);
        }
    }
    if let Some(tcp) = &h.tcp {
        let ok = tcp.rsplit_once(':').is_some_and(|(host, port)| {
            rules::host(host).is_ok() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !ok {
            problems.at(
                &field("tcp"),
                format!("{tcp:?} is not HOST:PORT (a host name or address, a port 1-65535)"),
            );
        }
    }
    if let Some(within) = &h.within {
        if let Err(e) = rules::duration(within, SECOND, HOUR) {
            problems.at(&field("within"), e);
        }
    }
}

fn check_accounts(def: &Definition, problems: &mut Problems<'_>) {
    let mut gids: BTreeMap<u32, &String> = BTreeMap::new();
    for (name, g) in &def.groups {
        let at = key(&["groups", name]);
        if !is_account_name(name) || name.chars().all(|c| c.is_ascii_digit()) {
            problems.at_key(
                &at,
                format!("{name:?} is not a group name (lowercase letters, digits, `_-`)"),
            );
        }
        if let Some(gid) = g.gid {
            if let Err(e) = rules::account_id(gid, "gid", name) {
                problems.at(&key(&["groups", name, "gid"]), e);
            } else if let Some(other) = gids.insert(gid, name) {
                problems.at(
                    &key(&["groups", name, "gid"]),
                    format!("gid {gid} is also the gid of group {other:?}"),
                );
            }
        }
    }
    let mut uids: BTreeMap<u32, &String> = BTreeMap::new();
    let mut homes: BTreeMap<String, &String> = BTreeMap::new();
    for (name, u) in &def.users {
        let at = |field: &str| key(&["users", name, field]);
        if !is_account_name(name) || name.chars().all(|c| c.is_ascii_digit()) {
            problems.at_key(
                &key(&["users", name]),
                format!("{name:?} is not a user name (lowercase letters, digits, `_-`)"),
            );
        }
        if let Some(uid) = u.uid {
            if let Err(e) = rules::account_id(uid, "uid", name) {
                problems.at(&at("uid"), e);
            } else if let Some(other) = uids.insert(uid, name) {
                problems.at(
                    &at("uid"),
                    format!("uid {uid} is also the uid of user {other:?}"),
                );
            }
        }
        if let Some(shell) = &u.shell {
            if let Err(e) = rules::absolute_path(shell) {
                problems.at(&at("shell"), e);
            }
        }
        if let Some(home) = &u.home {
            // root's home is /root; a database server's account lives in its data directory.
            let allowed: &[&str] = if name == "root" {
                &["/root"]
            } else {
                &["/var/lib/postgresql", "/var/lib/mysql"]
            };
            if let Err(e) = rules::own_tree(home, "a home", allowed) {
                problems.at(&at("home"), e);
            }
        }
        // Default homes count too (`/home/NAME`); system users without one share /nonexistent.
        let home = u.home_of(name);
        if home != "/nonexistent" {
            if let Some(other) = homes.insert(home.clone(), name) {
                problems.at(
                    &at("home"),
                    format!("{home} is also the home of user {other:?}: each user needs its own (strackt writes HOME/.ssh/authorized_keys)"),
                );
            }
        }
        if let Some(c) = &u.comment {
            if c.contains(':') || rules::one_line(c).is_err() {
                problems.at(
                    &at("comment"),
                    "cannot contain `:`, a newline or another control character",
                );
            }
        }
        for (i, g) in u.group.iter().chain(u.groups.iter()).enumerate() {
            if !is_account_name(g) || g.chars().all(|c| c.is_ascii_digit()) {
                let mut p = if u.group.is_some() && i == 0 {
                    at("group")
                } else {
                    at("groups")
                };
                if !(u.group.is_some() && i == 0) {
                    p.push(Seg::Index(i - usize::from(u.group.is_some())));
                }
                problems.at(&p, format!("{g:?} is not a group name"));
            }
        }
        for (i, k) in u.ssh_keys.iter().enumerate() {
            let kind = k.split_whitespace().next().unwrap_or("");
            if !(kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-"))
                || k.split_whitespace().count() < 2
                || rules::one_line(k).is_err()
            {
                let mut p = at("ssh_keys");
                p.push(Seg::Index(i));
                problems.at(
                    &p,
                    "not an SSH public key line (`ssh-ed25519 AAAA… comment`)",
                );
            }
        }
        if !u.ssh_keys.is_empty() {
            let ssh_dir = format!("{}/.ssh", u.home_of(name));
            if let Some(file) = def.files.keys().find(|f| rules::overlaps(f, &ssh_dir)) {
                problems.at(
                    &at(if u.home.is_some() { "home" } else { "ssh_keys" }),
                    format!("{ssh_dir}/authorized_keys is written from `ssh_keys:`, and {file} is a managed file there: one of them must go"),
                );
            }
        }
        if let Some(secret) = &u.password {
            if let Err(e) = rules::secret_name(&secret.secret) {
                problems.at(&key(&["users", name, "password", "secret"]), e);
            }
        }
        if name == "root" && u.remove_home {
            problems.at(&at("remove_home"), "root is never removed");
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
mod tests {
    use std::path::Path;

    use super::super::parse;

    fn problems(src: &str) -> Vec<String> {
        match parse(src, Path::new("server.yaml")) {
            Ok(_) => vec![],
            Err(e) => e.to_string().lines().map(str::to_string).collect(),
        }
    }

    #[test]
    fn update_policies_are_checked_at_their_fields() {
        assert_eq!(
            problems("version: 1\nstrackt:\n  updates: { check: daily, apply: security, timezone: Europe/Berlin }\n"),
            Vec::<String>::new()
        );
        assert_eq!(
            problems(
                "version: 1\nstrackt:\n  updates:\n    check: \"0 */6 * * *\"\n    apply: all\n"
            ),
            Vec::<String>::new()
        );
        let got = problems("version: 1\nstrackt:\n  updates: { check: daily, apply: sometimes }\n");
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with("server.yaml:3:35: strackt.updates.apply: unknown variant `sometimes`, expected one of `none`, `security`, `all`"),
            "{got:?}"
        );
        let got = problems("version: 1\nstrackt:\n  updates:\n    check: \"*/5 * * * *\"\n    timezone: Europe/Berln\n");
        assert_eq!(
            got,
            [
                "server.yaml:4:12: strackt.updates.check: \"*/5 * * * *\" runs 5 minutes apart (at 2026-01-01 00:05 UTC and 00:10 UTC); scheduled work runs at most every 15 minutes",
                "server.yaml:5:15: strackt.updates.timezone: unknown timezone \"Europe/Berln\"; use an IANA name such as Europe/Berlin or UTC",
            ]
        );
        let got = problems("version: 1\nstrackt:\n  updates: { check: sometimes, when: now }\n");
        assert!(
            got[0].contains("strackt.updates.when: unknown field `when`"),
            "{got:?}"
        );
    }

    #[test]
    fn the_issue_example_is_valid() {
        let src = r#"version: 1
files:
  /etc/motd: { content: "welcome\n" }
  /etc/app/app.conf: { content: "...", mode: "0640", owner: root, group: adm }
services:
  hello:
    exec: /usr/bin/sleep infinity
    user: nobody
    environment: { GREETING: hi }
    health: { command: "/usr/bin/true" }
  cron:
    unit: cron.service
"#;
        assert_eq!(problems(src), Vec::<String>::new());
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_position() {
        let src = r#"version: 1
files:
  etc/motd: { content: "x" }
  /proc/sys/x: { content: "x" }
  /etc/strackt/server.yaml: { content: "x" }
  /etc/ok: { content: "x", mode: "999" }
  /etc/typo: { content: "x", mdoe: "0644" }
services:
  "bad name": { exec: /bin/true }
  a: { unit: "cron" }
  b: { exec: "sleep 1" }
  c: { exec: /bin/true, health: { http: "ftp://x" } }
bogus: 1
"#;
        let got = problems(src);
        let expect = [
            "server.yaml:3:3: files.\"etc/motd\": \"etc/motd\" is a relative path",
            "server.yaml:4:3: files.\"/proc/sys/x\": strackt may not manage \"/proc/sys/x\"",
            "server.yaml:5:3: files.\"/etc/strackt/server.yaml\": strackt may not manage",
            "server.yaml:6:34: files.\"/etc/ok\".mode: \"999\" is not an octal mode",
            "server.yaml:7:30: files.\"/etc/typo\".mdoe: unknown field `mdoe`",
            "server.yaml:9:3: services.\"bad name\": \"bad name\" is not a service name",
            "server.yaml:10:14: services.a.unit: \"cron\" is not a unit name",
            "server.yaml:11:14: services.b.exec: must start with an absolute path",
            "server.yaml:12:41: services.c.health.http: \"ftp://x\" is not an http",
            "server.yaml:13:1: bogus: unknown section `bogus`",
        ];
        // Semantic checks need a sound structure, so structural problems (unknown keys, wrong
        // types) come first, all of them; once fixed, every semantic problem comes at once.
        let structural: Vec<&str> = expect
            .iter()
            .copied()
            .filter(|e| e.contains("unknown"))
            .collect();
        for e in &structural {
            assert!(
                got.iter().any(|g| g.starts_with(e)),
                "missing {e:?} in {got:#?}"
            );
        }
        let fixed = src.replace("mdoe", "mode").replace("bogus: 1\n", "");
        let got = problems(&fixed);
        for e in expect.iter().filter(|e| !e.contains("unknown")) {
            assert!(
                got.iter().any(|g| g.starts_with(e)),
                "missing {e:?} in {got:#?}"
            );
        }
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let got = problems("version: 1\nfiles:\n  /etc/x: { content: \"a\"\n");
        assert_eq!(got.len(), 1);
        assert!(
            got[0].starts_with("server.yaml:4:1: (document): "),
            "{got:?}"
        );
    }

    #[test]
    fn version_is_required_and_must_be_1() {
        assert!(problems("files: {}\n")[0].contains("missing `version: 1`"));
        assert!(problems("version: 2\n")[0]
            .starts_with("server.yaml:1:10: version: unsupported version 2"));
    }

    #[test]
    fn modes_are_octal_strings() {
        assert_eq!(super::parse_mode("0640"), Some(0o640));
        assert_eq!(super::parse_mode("755"), Some(0o755));
        assert_eq!(super::parse_mode("0999"), None);
        assert_eq!(super::parse_mode("17777"), None);
        let got = problems("version: 1\nfiles:\n  /etc/x: { content: a, mode: 640 }\n");
        assert!(
            got[0].contains("files.\"/etc/x\".mode: invalid type: integer"),
            "{got:?}"
        );
    }

    #[test]
    fn sysctl_keys_and_values_are_checked() {
        let ok = "version: 1\nsettings:\n  sysctl:\n    net.ipv4.ip_forward: 1\n    net.ipv4.tcp_rmem: \"4096  87380\t6291456\"\n";
        assert_eq!(problems(ok), Vec::<String>::new());
        let got = problems("version: 1\nsettings:\n  sysctl:\n    ip_forward: 1\n    net..x: 1\n    net.ipv4.a: \"\"\n");
        assert!(
            got[0].starts_with(
                "server.yaml:4:5: settings.sysctl.ip_forward: \"ip_forward\" is not a sysctl key"
            ),
            "{got:?}"
        );
        assert!(
            got[1].starts_with("server.yaml:5:5: settings.sysctl.\"net..x\":"),
            "{got:?}"
        );
        assert!(got[2].contains("one non-empty line"), "{got:?}");
        let got = problems("version: 1\nfiles:\n  /etc/sysctl.d/90-strackt.conf: { content: x }\n  /etc/groups.conf: { content: x }\n");
        assert_eq!(
            got.len(),
            1,
            "only the sysctl file is refused, /etc/groups.conf is not /etc/group: {got:?}"
        );
        assert!(got[0].contains("settings.sysctl"), "{got:?}");
    }

    #[test]
    fn firewall_ports_and_networks_are_checked() {
        let ok = "version: 1\nfirewall:\n  input: drop\n  allow:\n    - { port: 22 }\n    - { port: \"8000-8100\", proto: udp, from: [10.0.0.0/8, \"2001:db8::/32\", 192.0.2.7] }\n";
        assert_eq!(problems(ok), Vec::<String>::new());
        let got = problems("version: 1\nfirewall:\n  allow:\n    - { port: 0 }\n    - { port: \"9-1\" }\n    - { port: 1, from: [10.0.0.1/8, 300.0.0.0/8] }\n    - { port: 1, proto: icmp }\n");
        assert!(
            got.iter().any(|g| g
                .starts_with("server.yaml:7:25: firewall.allow[3].proto: unknown variant `icmp`")),
            "{got:#?}"
        );
        let fixed = problems("version: 1\nfirewall:\n  allow:\n    - { port: 0 }\n    - { port: \"9-1\" }\n    - { port: 1, from: [10.0.0.1/8, 300.0.0.0/8] }\n");
        assert_eq!(fixed.len(), 4, "{fixed:#?}");
        assert!(
            fixed[0].starts_with("server.yaml:4:15: firewall.allow[0].port: not a port"),
            "{fixed:#?}"
        );
        assert!(
            fixed[2].starts_with(
                "server.yaml:6:25: firewall.allow[2].from[0]: \"10.0.0.1/8\" is not a network"
            ),
            "{fixed:#?}"
        );
    }

    #[test]
    fn receiver_section_is_checked() {
        let ok = "version: 1\nreceiver:\n  tls: { certificate: /etc/r.crt, key: /etc/r.key }\n  clients:\n    web1: { credentials: { secret: r_web1 } }\n  keep: { last: 4 }\n";
        assert_eq!(problems(ok), Vec::<String>::new());
        let got = problems("version: 1\nreceiver:\n  listen: \"8443\"\n  storage: srv/r\n  tls: { certificate: /etc/r.crt, key: r.key }\n  clients:\n    \"web 1\": { credentials: { secret: r_web1 } }\n  retention_after: soon\n");
        let expect = [
            "server.yaml:3:11: receiver.listen: \"8443\" is not ADDRESS:PORT",
            "server.yaml:4:12: receiver.storage: \"srv/r\" is not an absolute path",
            "server.yaml:5:40: receiver.tls.key: \"r.key\" is not an absolute path",
            "server.yaml:7:5: receiver.clients.\"web 1\": \"web 1\" is not a client name",
            "server.yaml:8:20: receiver.retention_after: \"soon\" is not a duration",
        ];
        assert_eq!(got.len(), expect.len(), "{got:#?}");
        for (g, e) in got.iter().zip(expect) {
            assert!(g.starts_with(e), "{g:?} does not start with {e:?}");
        }
    }

    #[test]
    fn accounts_are_checked() {
        let ok = "version: 1\ngroups:\n  deploy: { gid: 2000 }\nusers:\n  alice:\n    uid: 2001\n    group: deploy\n    groups: [adm]\n    shell: /bin/bash\n    ssh_keys: [\"ssh-ed25519 AAAAC3Nza alice@laptop\"]\n    password: { secret: alice_password }\n";
        assert_eq!(problems(ok), Vec::<String>::new());
        let bad = "version: 1\ngroups:\n  a: { gid: 5 }\n  b: { gid: 5 }\nusers:\n  Alice: { uid: 7 }\n  bob: { uid: 7, shell: bash, ssh_keys: [\"not a key\"], password: { secret: \"../x\" } }\n";
        let got = problems(bad);
        for want in [
            "server.yaml:4:13: groups.b.gid: gid 5 is also the gid of group \"a\"",
            "server.yaml:6:3: users.Alice: \"Alice\" is not a user name",
            "server.yaml:7:15: users.bob.uid: uid 7 is also the uid of user \"Alice\"",
            "server.yaml:7:25: users.bob.shell: \"bash\" is not an absolute path",
            "server.yaml:7:42: users.bob.ssh_keys[0]: not an SSH public key line",
            "server.yaml:7:76: users.bob.password.secret: \"../x\" is not a secret name",
        ] {
            assert!(
                got.iter().any(|g| g.starts_with(want)),
                "missing {want:?} in {got:#?}"
            );
        }
    }

    #[test]
    fn packages_are_checked() {
        assert_eq!(problems("version: 1\npackages:\n  hello: \"2.10-3\"\n  curl: latest\n  libfoo2: \"1:2.3~rc1+dfsg-1\"\n"), Vec::<String>::new());
        let got = problems("version: 1\npackages:\n  Hello: \"1\"\n  curl: \"newest\"\n");
        assert!(
            got[0].starts_with(
                "server.yaml:3:3: packages.Hello: \"Hello\" is not a Debian package name"
            ),
            "{got:?}"
        );
        assert!(
            got[1]
                .starts_with("server.yaml:4:9: packages.curl: \"newest\" is not a Debian version"),
            "{got:?}"
        );
        let got = problems("version: 1\npackages:\n  curl: 7\n");
        assert!(
            got[0].contains("packages.curl: invalid type: integer"),
            "{got:?}"
        );
    }

    #[test]
    fn strackt_never_manages_itself() {
        let got = problems("version: 1\nservices:\n  strackt: { exec: /bin/true }\n");
        assert!(got[0].contains("never manages its own unit"), "{got:?}");
    }

    #[test]
    fn restart_on_must_name_a_managed_file() {
        let got =
            problems("version: 1\nservices:\n  a: { exec: /bin/true, restart_on: [/etc/nope] }\n");
        assert!(
            got[0].starts_with("server.yaml:3:38: services.a.restart_on[0]:"),
            "{got:?}"
        );
    }
}
