//! Semantic rules of a definition: what strackt may manage and what makes sense to systemd.
//! Runs after the structural pass succeeded, reports every violation.

use std::net::SocketAddr;

use super::parse::Problems;
use super::{Definition, HealthSpec, Seg, ServiceSpec};

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
const UNIT_SUFFIXES: &[&str] = &[
    ".service", ".socket", ".timer", ".path", ".target", ".mount",
];

fn key(path: &[&str]) -> Vec<Seg> {
    path.iter().map(|s| Seg::Key((*s).to_string())).collect()
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
    for (field, text, min) in [("interval", &s.interval, 1.0), ("settle", &s.settle, 0.0)] {
        match humantime::parse_duration(text) {
            Ok(d) if d.as_secs_f64() >= min => {}
            Ok(_) => problems.at(
                &key(&["strackt", field]),
                format!("must be at least {min}s"),
            ),
            Err(e) => problems.at(
                &key(&["strackt", field]),
                format!("not a duration ({e}); write e.g. 30s, 5m, 1h"),
            ),
        }
    }
    if s.listen.parse::<SocketAddr>().is_err() {
        problems.at(
            &key(&["strackt", "listen"]),
            format!("{:?} is not an IP:PORT address", s.listen),
        );
    }
    if s.keep_generations < 2 {
        problems.at(
            &key(&["strackt", "keep_generations"]),
            "must be at least 2 (the current and the previous generation are always kept)",
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
        if let Some(mode) = &spec.mode {
            if parse_mode(mode).is_none() {
                problems.at(
                    &at("mode"),
                    format!("{mode:?} is not an octal mode; write it quoted, e.g. \"0640\""),
                );
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
            if t.trim().is_empty() || t.contains('\n') {
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
    if !is_unit_base_name(name) {
        problems.at_key(
            &at(""),
            format!("{name:?} is not a valid service name (letters, digits, `-_.:@`; no suffix)"),
        );
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
            if !UNIT_SUFFIXES.iter().any(|s| unit.ends_with(s))
                || !is_unit_base_name(unit.rsplit_once('.').map_or("", |x| x.0))
            {
                problems.at(
                    &at("unit"),
                    format!(
                        "{unit:?} is not a unit name (e.g. cron.service; types: {})",
                        UNIT_SUFFIXES.join(", ")
                    ),
                );
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
        (None, Some(exec)) => {
            if !exec.trim_start().starts_with('/') {
                problems.at(
                    &at("exec"),
                    "must start with an absolute path to the program",
                );
            }
        }
    }
    if let Some(reload) = &spec.exec_reload {
        if !reload.trim_start().starts_with('/') {
            problems.at(
                &at("exec_reload"),
                "must start with an absolute path to the program",
            );
        }
    }
    if let Some(dir) = &spec.working_directory {
        if !dir.starts_with('/') {
            problems.at(&at("working_directory"), "must be an absolute path");
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
        if !(var
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            problems.at_key(&p, format!("{var:?} is not an environment variable name"));
        }
        if value.contains('\n') {
            problems.at(&p, "environment values cannot contain newlines");
        }
    }
    for (i, unit) in spec.after.iter().enumerate() {
        if !UNIT_SUFFIXES.iter().any(|s| unit.ends_with(s)) {
            let mut p = at("after");
            p.push(Seg::Index(i));
            problems.at(
                &p,
                format!("{unit:?} is not a unit name (e.g. network-online.target)"),
            );
        }
    }
    for (i, file) in spec.restart_on.iter().enumerate() {
        if !def.files.contains_key(file) {
            let mut p = at("restart_on");
            p.push(Seg::Index(i));
            problems.at(&p, format!("{file:?} is not a file in `files:`"));
        }
    }
    if let Some(health) = &spec.health {
        check_health(health, &at("health"), problems);
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
        if !cmd.trim_start().starts_with('/') {
            problems.at(
                &field("command"),
                "must start with an absolute path to the program",
            );
        }
    }
    if let Some(url) = &h.http {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            problems.at(
                &field("http"),
                format!("{url:?} is not an http:// or https:// URL"),
            );
        }
    }
    if let Some(tcp) = &h.tcp {
        let port_ok = tcp.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !port_ok {
            problems.at(&field("tcp"), format!("{tcp:?} is not HOST:PORT"));
        }
    }
    if let Some(within) = &h.within {
        if humantime::parse_duration(within).is_err() {
            problems.at(
                &field("within"),
                format!("{within:?} is not a duration; write e.g. 10s"),
            );
        }
    }
}

fn check_accounts(def: &Definition, problems: &mut Problems<'_>) {
    let mut gids: std::collections::BTreeMap<u32, &String> = std::collections::BTreeMap::new();
    for (name, g) in &def.groups {
        let at = key(&["groups", name]);
        if !is_account_name(name) || name.chars().all(|c| c.is_ascii_digit()) {
            problems.at_key(
                &at,
                format!("{name:?} is not a group name (lowercase letters, digits, `_-`)"),
            );
        }
        if let Some(gid) = g.gid {
            if let Some(other) = gids.insert(gid, name) {
                problems.at(
                    &key(&["groups", name, "gid"]),
                    format!("gid {gid} is also the gid of group {other:?}"),
                );
            }
        }
    }
    let mut uids: std::collections::BTreeMap<u32, &String> = std::collections::BTreeMap::new();
    for (name, u) in &def.users {
        let at = |field: &str| key(&["users", name, field]);
        if !is_account_name(name) || name.chars().all(|c| c.is_ascii_digit()) {
            problems.at_key(
                &key(&["users", name]),
                format!("{name:?} is not a user name (lowercase letters, digits, `_-`)"),
            );
        }
        if let Some(uid) = u.uid {
            if let Some(other) = uids.insert(uid, name) {
                problems.at(
                    &at("uid"),
                    format!("uid {uid} is also the uid of user {other:?}"),
                );
            }
        }
        for (field, value) in [("shell", &u.shell), ("home", &u.home)] {
            if value.as_ref().is_some_and(|v| !v.starts_with('/')) {
                problems.at(&at(field), "must be an absolute path");
            }
        }
        if u.comment.as_ref().is_some_and(|c| c.contains([':', '\n'])) {
            problems.at(&at("comment"), "cannot contain `:` or a newline");
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
                || k.contains('\n')
            {
                let mut p = at("ssh_keys");
                p.push(Seg::Index(i));
                problems.at(
                    &p,
                    "not an SSH public key line (`ssh-ed25519 AAAA… comment`)",
                );
            }
        }
        if let Some(secret) = &u.password {
            if secret.secret.is_empty()
                || !secret
                    .secret
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                || secret.secret.starts_with('.')
            {
                problems.at(
                    &key(&["users", name, "password", "secret"]),
                    format!(
                        "{:?} is not a secret name (letters, digits, `_.-`)",
                        secret.secret
                    ),
                );
            }
        }
        if name == "root" && u.remove_home {
            problems.at(&at("remove_home"), "root is never removed");
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
    if !path.starts_with('/') {
        return Err(format!(
            "{path:?} is a relative path; managed files need an absolute path"
        ));
    }
    if path.ends_with('/') || path.contains("//") || path.split('/').any(|c| c == "." || c == "..")
    {
        return Err(format!(
            "{path:?} is not a normalized file path (no `.`/`..`, `//` or trailing `/`)"
        ));
    }
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
        return true;
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

/// systemd's unit-name charset (without the type suffix).
fn is_unit_base_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":-_.\\@".contains(c))
        && !name.starts_with('.')
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
            "server.yaml:9:3: services.\"bad name\": \"bad name\" is not a valid service name",
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
            "server.yaml:7:25: users.bob.shell: must be an absolute path",
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
