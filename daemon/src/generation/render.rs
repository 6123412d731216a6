//! Definition → the content of a generation (pure): the manifest, file contents, unit texts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::definition::{
    parse_cidr, unit_name, FirewallSpec, HealthSpec, Policy, ServiceSpec, ValidatedDefinition,
    SYSCTL_FILE,
};
use crate::host::accounts::ManagedUser;
use crate::host::files::sha256_hex;
use crate::host::firewall::FIREWALL_TABLE;

/// The description of one generation, stored as `manifest.json` inside it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Generation id (0 until the generation is built).
    pub id: u64,
    /// When it was built (RFC 3339).
    pub created: String,
    /// SHA-256 of the definition text it was built from.
    pub definition_sha256: String,
    /// Managed files by absolute path.
    pub files: BTreeMap<String, ManagedFile>,
    /// Managed units by unit name.
    pub units: BTreeMap<String, ManagedUnit>,
    /// Kernel parameters set live (and written to `SYSCTL_FILE`), normalized values.
    #[serde(default)]
    pub sysctl: BTreeMap<String, String>,
    /// SHA-256 of `firewall.nft`, when the generation has a firewall.
    #[serde(default)]
    pub firewall: Option<String>,
    /// Local groups: name → spec.
    #[serde(default)]
    pub groups: BTreeMap<String, ManagedGroup>,
    /// Local users: name → spec.
    #[serde(default)]
    pub users: BTreeMap<String, ManagedUser>,
    /// PostgreSQL databases: name → owner and password secret.
    #[serde(default)]
    pub databases: BTreeMap<String, ManagedDatabase>,
    /// Packages with their exact versions and cached `.deb` files (also written as
    /// `lock.json`); filled in when the generation is built.
    #[serde(default)]
    pub packages: BTreeMap<String, PackageLock>,
}

/// One package, locked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageLock {
    /// The exact version.
    pub version: String,
    /// Its file in `/var/cache/strackt/debs`.
    pub deb: String,
}

/// A PostgreSQL database as a generation wants it (the owner's name resolved).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedDatabase {
    /// The owning role.
    pub owner: String,
    /// Name of the secret holding the owner's password (the password is never stored).
    pub password_secret: Option<String>,
}

/// A group as a generation wants it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedGroup {
    /// Fixed gid, if any.
    pub gid: Option<u32>,
    /// System group.
    pub system: bool,
}

/// A file as a generation wants it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedFile {
    /// Hex SHA-256 of the content (stored at `files/<path>`).
    pub sha256: String,
    /// Permission bits.
    pub mode: u32,
    /// Owner user name.
    pub owner: String,
    /// Owner group name.
    pub group: String,
}

/// A unit as a generation wants it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedUnit {
    /// SHA-256 of the unit file strackt writes (stored at `units/<unit>`); `None` for a unit a
    /// package provides, which strackt only keeps enabled and running.
    pub sha256: Option<String>,
    /// Enabled at boot.
    pub enabled: bool,
    /// Restart when the unit file changes.
    pub restart_on_change: bool,
    /// Managed files whose change restarts the unit.
    pub restart_on: Vec<String>,
    /// Health probe checked after a switch.
    pub health: Option<HealthSpec>,
}

/// Everything a generation holds, in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The manifest (id and created filled in by the build).
    pub manifest: Manifest,
    /// The definition text.
    pub definition: String,
    /// File contents by absolute path.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Unit file texts by unit name (only units strackt writes).
    pub units: BTreeMap<String, String>,
    /// The nftables ruleset (`firewall.nft`), when the definition has a firewall.
    pub firewall: Option<String>,
}

impl Rendered {
    /// The generation this renders to, as the planner sees it (before it is built).
    pub fn generation(&self) -> super::Generation {
        super::Generation {
            manifest: self.manifest.clone(),
            unit_texts: self.units.clone(),
            firewall: self.firewall.clone(),
        }
    }
}

/// Render a validated definition into generation content. Pure and deterministic: the same
/// definition always renders the same bytes, so an unchanged unit keeps its hash.
pub fn render(def: &ValidatedDefinition) -> Rendered {
    let d = def.definition();
    let mut manifest = Manifest {
        definition_sha256: sha256_hex(def.source().as_bytes()),
        ..Manifest::default()
    };
    let mut files = BTreeMap::new();
    for (path, spec) in &d.files {
        let mode = spec
            .mode
            .as_deref()
            .and_then(crate::definition::parse_mode)
            .unwrap_or(0o644);
        let content = spec.content.as_bytes().to_vec();
        manifest.files.insert(
            path.clone(),
            ManagedFile {
                sha256: sha256_hex(&content),
                mode,
                owner: spec.owner.clone().unwrap_or_else(|| "root".into()),
                group: spec.group.clone().unwrap_or_else(|| "root".into()),
            },
        );
        files.insert(path.clone(), content);
    }
    if !d.settings.sysctl.is_empty() {
        let mut text = String::from(
            "# Written by strackt from settings.sysctl in /etc/strackt/server.yaml.\n",
        );
        for (key, value) in &d.settings.sysctl {
            manifest.sysctl.insert(key.clone(), value.normalized());
            text.push_str(&format!("{key} = {}\n", value.normalized()));
        }
        let content = text.into_bytes();
        manifest.files.insert(
            SYSCTL_FILE.to_string(),
            ManagedFile {
                sha256: sha256_hex(&content),
                mode: 0o644,
                owner: "root".into(),
                group: "root".into(),
            },
        );
        files.insert(SYSCTL_FILE.to_string(), content);
    }
    let mut units = BTreeMap::new();
    for (name, spec) in &d.services {
        let unit = unit_name(name, spec);
        let text = spec.exec.as_ref().map(|exec| unit_text(name, exec, spec));
        manifest.units.insert(
            unit.clone(),
            ManagedUnit {
                sha256: text.as_deref().map(|t| sha256_hex(t.as_bytes())),
                enabled: spec.enabled,
                restart_on_change: spec.restart_on_change,
                restart_on: spec.restart_on.clone(),
                health: spec.health.clone(),
            },
        );
        if let Some(text) = text {
            units.insert(unit, text);
        }
    }
    for (name, g) in &d.groups {
        manifest.groups.insert(
            name.clone(),
            ManagedGroup {
                gid: g.gid,
                system: g.system,
            },
        );
    }
    for (name, u) in &d.users {
        let mut groups = u.groups.clone();
        groups.sort();
        groups.dedup();
        let managed = ManagedUser {
            uid: u.uid,
            group: u.group_of(name),
            groups,
            shell: u.shell_of(),
            home: u.home_of(name),
            comment: u.comment.clone().unwrap_or_default(),
            system: u.system,
            password_secret: u.password.as_ref().map(|p| p.secret.clone()),
            remove_home: u.remove_home,
        };
        if !u.ssh_keys.is_empty() {
            // authorized_keys is a managed file like any other: drift-proof, owned, removed
            // with the user's keys.
            let path = format!(
                "{}/.ssh/authorized_keys",
                managed.home.trim_end_matches('/')
            );
            let content = (u.ssh_keys.join("\n") + "\n").into_bytes();
            manifest.files.insert(
                path.clone(),
                ManagedFile {
                    sha256: sha256_hex(&content),
                    mode: 0o600,
                    owner: name.clone(),
                    group: managed.group.clone(),
                },
            );
            files.insert(path, content);
        }
        manifest.users.insert(name.clone(), managed);
    }
    for (name, db) in &d.databases {
        manifest.databases.insert(
            name.clone(),
            ManagedDatabase {
                owner: db.owner_of(name).to_string(),
                password_secret: db.password.as_ref().map(|p| p.secret.clone()),
            },
        );
    }
    let firewall = d.firewall.as_ref().map(firewall_text);
    manifest.firewall = firewall.as_deref().map(|t| sha256_hex(t.as_bytes()));
    Rendered {
        manifest,
        definition: def.source().to_string(),
        files,
        units,
        firewall,
    }
}

/// strackt's table as one `nft -f` transaction: declaring the table first makes the delete
/// valid when it does not exist yet, so the whole file replaces the table atomically.
fn firewall_text(fw: &FirewallSpec) -> String {
    let policy = match fw.input {
        Policy::Accept => "accept",
        Policy::Drop => "drop",
    };
    let mut t = format!("# Written by strackt from firewall: in /etc/strackt/server.yaml.\ntable {FIREWALL_TABLE}\ndelete table {FIREWALL_TABLE}\n");
    t.push_str(&format!("table {FIREWALL_TABLE} {{\n\tchain input {{\n\t\ttype filter hook input priority filter; policy {policy};\n"));
    // Always open: replies to our own traffic, loopback, and ICMP (path MTU, neighbour
    // discovery) — dropping these breaks a server in ways no allow rule can fix. ICMP is
    // written by number (1, 58): the names need /etc/protocols, absent on minimal systems.
    t.push_str("\t\tct state established,related accept\n\t\tct state invalid drop\n\t\tiif \"lo\" accept\n\t\tmeta l4proto { 1, 58 } accept\n");
    for rule in &fw.allow {
        let Some((lo, hi)) = rule.port.range() else {
            continue;
        };
        let ports = if lo == hi {
            lo.to_string()
        } else {
            format!("{lo}-{hi}")
        };
        let proto = rule.proto.as_str();
        if rule.from.is_empty() {
            t.push_str(&format!("\t\t{proto} dport {ports} accept\n"));
            continue;
        }
        let (v4, v6): (Vec<&String>, Vec<&String>) = rule
            .from
            .iter()
            .partition(|c| parse_cidr(c).is_some_and(|(a, _)| a.is_ipv4()));
        for (family, nets) in [("ip", v4), ("ip6", v6)] {
            if !nets.is_empty() {
                let set = nets
                    .iter()
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                t.push_str(&format!(
                    "\t\t{family} saddr {{ {set} }} {proto} dport {ports} accept\n"
                ));
            }
        }
    }
    t.push_str("\t}\n}\n");
    t
}

/// Quote a value for `Environment="…"`: systemd unquotes C-style, and `%` starts a specifier.
fn env_quote(key: &str, value: &str) -> String {
    let escaped = value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('%', "%%");
    format!("\"{key}={escaped}\"")
}

/// The unit file strackt writes for a service with `exec:`.
fn unit_text(name: &str, exec: &str, spec: &ServiceSpec) -> String {
    let mut u = String::from(
        "# Written by strackt from /etc/strackt/server.yaml; edits are put back.\n[Unit]\n",
    );
    let description = spec
        .description
        .clone()
        .unwrap_or_else(|| format!("{name} (managed by strackt)"));
    u.push_str(&format!("Description={description}\n"));
    if !spec.after.is_empty() {
        let after = spec.after.join(" ");
        u.push_str(&format!("After={after}\nWants={after}\n"));
    }
    u.push_str("\n[Service]\n");
    // exec, not simple: the start job fails when the program cannot be executed, so a
    // missing binary is a failed switch rather than a unit that dies a moment later.
    u.push_str("Type=exec\n");
    u.push_str(&format!("ExecStart={exec}\n"));
    if let Some(reload) = &spec.exec_reload {
        u.push_str(&format!("ExecReload={reload}\n"));
    }
    if let Some(user) = &spec.user {
        u.push_str(&format!("User={user}\n"));
    }
    if let Some(group) = &spec.group {
        u.push_str(&format!("Group={group}\n"));
    }
    if let Some(dir) = &spec.working_directory {
        u.push_str(&format!("WorkingDirectory={dir}\n"));
    }
    for (k, v) in &spec.environment {
        u.push_str(&format!("Environment={}\n", env_quote(k, v)));
    }
    let restart = spec
        .restart
        .unwrap_or(crate::definition::RestartPolicy::OnFailure);
    u.push_str(&format!("Restart={}\nRestartSec=1s\n", restart.as_str()));
    u.push_str("\n[Install]\nWantedBy=multi-user.target\n");
    u
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::parse;
    use std::path::Path;

    #[test]
    fn renders_units_and_files_deterministically() {
        let src = "version: 1\nfiles:\n  /etc/motd: { content: \"hi\\n\", mode: \"0600\" }\nservices:\n  hello:\n    exec: /usr/bin/sleep infinity\n    user: nobody\n    environment: { GREETING: \"say \\\"hi\\\" 100%\" }\n  cron: { unit: cron.service }\n";
        let def = parse(src, Path::new("t.yaml")).expect("valid");
        let a = render(&def);
        assert_eq!(a, render(&def));
        assert_eq!(a.manifest.files["/etc/motd"].mode, 0o600);
        assert_eq!(a.manifest.files["/etc/motd"].owner, "root");
        let unit = &a.units["hello.service"];
        assert!(
            unit.contains("ExecStart=/usr/bin/sleep infinity\n"),
            "{unit}"
        );
        assert!(unit.contains("User=nobody\n"));
        assert!(
            unit.contains("Environment=\"GREETING=say \\\"hi\\\" 100%%\"\n"),
            "{unit}"
        );
        assert!(a.manifest.units["cron.service"].sha256.is_none());
        assert!(!a.units.contains_key("cron.service"));
        assert_eq!(a.firewall, None);
    }

    #[test]
    fn renders_the_firewall_table() {
        let src = "version: 1\nfirewall:\n  allow:\n    - { port: 22 }\n    - { port: \"8000-8100\", proto: udp, from: [10.0.0.0/8, \"2001:db8::/32\"] }\n";
        let r = render(&parse(src, Path::new("t.yaml")).expect("valid"));
        let text = r.firewall.expect("a ruleset");
        assert!(
            text.contains("table inet strackt\ndelete table inet strackt\ntable inet strackt {\n"),
            "{text}"
        );
        assert!(text.contains("policy drop;"), "{text}");
        assert!(text.contains("\t\ttcp dport 22 accept\n"), "{text}");
        assert!(
            text.contains("\t\tip saddr { 10.0.0.0/8 } udp dport 8000-8100 accept\n"),
            "{text}"
        );
        assert!(
            text.contains("\t\tip6 saddr { 2001:db8::/32 } udp dport 8000-8100 accept\n"),
            "{text}"
        );
        assert_eq!(r.manifest.firewall, Some(sha256_hex(text.as_bytes())));
    }
}
