//! The published JSON Schema says what `strackt check` says: one table of definitions, each a
//! one-field edit of a valid definition, goes through both `parse` and a JSON Schema validator
//! (the `jsonschema` crate, on the schema `strackt schema` prints), and both must accept or
//! both refuse. Rules the schema cannot express are listed in `patterns.rs` and are not in the
//! table.

use std::path::Path;

use super::parse;

/// A valid definition using the sections whose fields the schema constrains.
const BASE: &str = r#"version: 1
strackt:
  interval: 5m
  settle: 1s
  keep_generations: 10
files:
  /etc/app.conf: { content: "x\n", mode: "0640", owner: root, group: adm }
services:
  hello:
    exec: /usr/bin/sleep infinity
    description: hello
    exec_reload: /bin/kill -HUP $MAINPID
    working_directory: /srv
    environment: { A_1: "1" }
    after: [network-online.target]
    restart_on: [/etc/app.conf]
    health: { command: /usr/bin/true, within: 10s }
  cron: { unit: cron.service }
settings:
  sysctl:
    net.ipv4.ip_forward: 1
groups:
  g: { gid: 3000 }
users:
  alice: { uid: 3001, group: g, groups: [adm], shell: /bin/bash, home: /home/alice, comment: Alice, password: { secret: alice_pw } }
  shop: { system: true, home: /srv/shop-home }
packages:
  curl: "7.88.1-10"
firewall:
  allow:
    - { port: 22 }
    - { port: "8000-8100", proto: udp }
apps:
  shop:
    repo: /srv/git/shop.git
    path: /srv/shop
    user: shop
    shared: [storage/uploads, .env]
    settings: { APP_ENV: production, APP_KEY: { secret: shop_key } }
    database: { engine: postgresql, port: 5432, name: shop, user: shop, password: { secret: shop_db } }
    requires: [postgresql.service]
    steps: { install: "sh scripts/install", timeout: 15m }
    service: { exec: python3 app.py, listen: "127.0.0.1:8000", health: /health, within: 30s }
    keep_releases: 5
backups:
  shop:
    database: true
    paths: [storage/uploads]
    to: { receiver: { url: "https://backup.example.com:8443/", credentials: { secret: r_web1 }, ca: /etc/r-ca.pem } }
    stalled_after: 2m
receiver:
  storage: /var/lib/strackt-receiver
  tls: { certificate: /etc/r.crt, key: /etc/r.key }
  clients:
    web1: { credentials: { secret: r_web1 } }
  retention_after: 1h
"#;

/// (the text in BASE, its replacement, whether `strackt check` accepts the result)
const CASES: &[(&str, &str, bool)] = &[
    // version: 1, nothing else.
    ("version: 1", "version: 2", false),
    // keep_generations 2–1000 (the audit's `keep_generations: 1`).
    ("keep_generations: 10", "keep_generations: 2", true),
    ("keep_generations: 10", "keep_generations: 1000", true),
    ("keep_generations: 10", "keep_generations: 1", false),
    ("keep_generations: 10", "keep_generations: 1001", false),
    // Durations' syntax (the audit's `interval: 5x`).
    ("interval: 5m", "interval: 1h 30m", true),
    ("interval: 5m", "interval: 90s", true),
    ("interval: 5m", "interval: 1.5h", true),
    ("interval: 5m", "interval: 5x", false),
    ("interval: 5m", "interval: m5", false),
    ("interval: 5m", "interval: \"\"", false),
    ("settle: 1s", "settle: soon", false),
    ("within: 10s", "within: 10 secs", true),
    ("within: 10s", "within: ten", false),
    ("timeout: 15m", "timeout: 15mm", false),
    ("within: 30s", "within: 30", false),
    ("stalled_after: 2m", "stalled_after: 2 minutes", true),
    ("stalled_after: 2m", "stalled_after: later", false),
    ("retention_after: 1h", "retention_after: 1 hour", true),
    ("retention_after: 1h", "retention_after: 1hour5", false),
    // Managed files: absolute, normalised, under the allowed roots (the audit's relative paths).
    (
        "files:\n",
        "files:\n  /opt/app/app.conf: { content: x }\n",
        true,
    ),
    (
        "files:\n",
        "files:\n  /usr/local/bin/tool: { content: x }\n",
        true,
    ),
    ("files:\n", "files:\n  /etc/.hidden: { content: x }\n", true),
    ("files:\n", "files:\n  /etc/..x: { content: x }\n", true),
    (
        "files:\n",
        "files:\n  etc/app.conf: { content: x }\n",
        false,
    ),
    (
        "files:\n",
        "files:\n  /etc/../app.conf: { content: x }\n",
        false,
    ),
    (
        "files:\n",
        "files:\n  /etc/./app.conf: { content: x }\n",
        false,
    ),
    (
        "files:\n",
        "files:\n  /etc//app.conf: { content: x }\n",
        false,
    ),
    ("files:\n", "files:\n  /etc/app/: { content: x }\n", false),
    (
        "files:\n",
        "files:\n  /srv/app.conf: { content: x }\n",
        false,
    ),
    ("files:\n", "files:\n  /opt: { content: x }\n", false),
    (
        "files:\n",
        "files:\n  /etc/strackt/x: { content: x }\n",
        false,
    ),
    (
        "files:\n",
        "files:\n  /etc/systemd/system/x.service: { content: x }\n",
        false,
    ),
    ("files:\n", "files:\n  /etc/passwd: { content: x }\n", false),
    (
        "files:\n",
        "files:\n  /etc/sysctl.d/90-strackt.conf: { content: x }\n",
        false,
    ),
    (
        "files:\n",
        "files:\n  /etc/passwd.d/x: { content: x }\n",
        true,
    ),
    // Modes: octal, neither setuid/setgid nor world-writable.
    ("mode: \"0640\"", "mode: \"644\"", true),
    ("mode: \"0640\"", "mode: \"0o755\"", true),
    ("mode: \"0640\"", "mode: \"1755\"", true),
    ("mode: \"0640\"", "mode: \"0\"", true),
    ("mode: \"0640\"", "mode: \"4755\"", false),
    ("mode: \"0640\"", "mode: \"2755\"", false),
    ("mode: \"0640\"", "mode: \"0666\"", false),
    ("mode: \"0640\"", "mode: \"999\"", false),
    ("mode: \"0640\"", "mode: \"07777\"", false),
    ("mode: \"0640\"", "mode: 640", false),
    // Account names.
    ("owner: root", "owner: www-data", true),
    ("owner: root", "owner: \"1000\"", true),
    ("owner: root", "owner: Root", false),
    ("owner: root", "owner: \"-x\"", false),
    ("  alice: {", "  _svc: {", true),
    ("  alice: {", "  Alice: {", false),
    ("  alice: {", "  \"3001\": {", false),
    ("  g: { gid", "  G: { gid", false),
    ("  g: { gid", "  \"g g\": { gid", false),
    ("groups: [adm]", "groups: [Adm]", false),
    ("group: g,", "group: \"g:x\",", false),
    ("uid: 3001", "uid: 65535", false),
    ("gid: 3000", "gid: 4294967295", false),
    ("comment: Alice", "comment: \"Alice: admin\"", false),
    ("shell: /bin/bash", "shell: bash", false),
    ("home: /home/alice", "home: home/alice", false),
    // Services.
    ("  hello:\n", "  hello-2:\n", true),
    ("  hello:\n", "  \"bad name\":\n", false),
    ("  hello:\n", "  hello.service:\n", false),
    ("  hello:\n", "  .hello:\n", false),
    (
        "exec: /usr/bin/sleep infinity",
        "exec: sleep infinity",
        false,
    ),
    (
        "exec: /usr/bin/sleep infinity",
        "exec: \"  /usr/bin/sleep 1\"",
        true,
    ),
    ("exec_reload: /bin/kill", "exec_reload: kill", false),
    ("description: hello", "description: \"a\\nb\"", false),
    ("unit: cron.service", "unit: cron.timer", true),
    ("unit: cron.service", "unit: cron", false),
    ("unit: cron.service", "unit: cron.slice", false),
    ("unit: cron.service", "unit: getty@.service", false),
    (
        "after: [network-online.target]",
        "after: [getty@tty1.service]",
        true,
    ),
    (
        "after: [network-online.target]",
        "after: [network-online]",
        false,
    ),
    ("working_directory: /srv", "working_directory: srv", false),
    ("A_1: \"1\"", "_A: \"a\\tb\"", true),
    ("A_1: \"1\"", "1A: \"1\"", false),
    ("A_1: \"1\"", "A: \"a\\nb\"", false),
    (
        "restart_on: [/etc/app.conf]",
        "restart_on: [etc/app.conf]",
        false,
    ),
    ("command: /usr/bin/true", "command: true", false),
    // Packages.
    ("curl: \"7.88.1-10\"", "curl: latest", true),
    ("curl: \"7.88.1-10\"", "curl: \"1:2.3~rc1+dfsg-1\"", true),
    ("curl: \"7.88.1-10\"", "curl: newest", false),
    ("curl: \"7.88.1-10\"", "curl: \"1..2\"", false),
    ("curl: \"7.88.1-10\"", "Curl: \"1\"", false),
    ("curl: \"7.88.1-10\"", "c: \"1\"", false),
    // Kernel parameters.
    (
        "net.ipv4.ip_forward: 1",
        "net.ipv4.tcp_rmem: \"4096 87380\"",
        true,
    ),
    ("net.ipv4.ip_forward: 1", "ip_forward: 1", false),
    ("net.ipv4.ip_forward: 1", "net..x: 1", false),
    ("net.ipv4.ip_forward: 1", "net.ipv4.x: \"\"", false),
    ("net.ipv4.ip_forward: 1", "net.ipv4.x: \"  \"", false),
    // Firewall ports.
    ("port: 22 }", "port: 65535 }", true),
    ("port: 22 }", "port: 0 }", false),
    ("port: 22 }", "port: 65536 }", false),
    ("port: \"8000-8100\"", "port: \"8000-x\"", false),
    ("proto: udp", "proto: icmp", false),
    // Secrets are file names.
    ("secret: alice_pw", "secret: alice.pw-2", true),
    ("secret: alice_pw", "secret: \"../x\"", false),
    ("secret: alice_pw", "secret: .pw", false),
    // Apps.
    ("path: /srv/shop", "path: srv/shop", false),
    ("repo: /srv/git/shop.git", "repo: \"-u/x\"", false),
    (
        "shared: [storage/uploads, .env]",
        "shared: [storage/uploads, .envs/x]",
        true,
    ),
    (
        "shared: [storage/uploads, .env]",
        "shared: [/storage/uploads, .env]",
        false,
    ),
    (
        "shared: [storage/uploads, .env]",
        "shared: [storage/uploads, .git/x]",
        false,
    ),
    (
        "shared: [storage/uploads, .env]",
        "shared: [storage/uploads/, .env]",
        false,
    ),
    ("APP_ENV: production", "APP-ENV: production", false),
    ("APP_ENV: production", "APP_ENV: \"a\\nb\"", false),
    ("port: 5432", "port: 0", false),
    (
        "requires: [postgresql.service]",
        "requires: [postgresql]",
        false,
    ),
    ("keep_releases: 5", "keep_releases: 1", true),
    ("keep_releases: 5", "keep_releases: 0", false),
    ("keep_releases: 5", "keep_releases: 1001", false),
    ("health: /health", "health: health", false),
    ("health: /health", "health: \"/he alth\"", false),
    ("exec: python3 app.py", "exec: \"  \"", false),
    ("engine: postgresql", "engine: mysql", false),
    // Backups and the receiver.
    ("ca: /etc/r-ca.pem", "ca: r-ca.pem", false),
    (
        "storage: /var/lib/strackt-receiver",
        "storage: var/lib/r",
        false,
    ),
    ("certificate: /etc/r.crt", "certificate: r.crt", false),
    ("    web1: {", "    web1.example: {", true),
    ("    web1: {", "    \"web 1\": {", false),
    ("    web1: {", "    web..1: {", false),
    ("    web1: {", "    -web1: {", false),
    // Unknown keys anywhere.
    ("  settle: 1s", "  setle: 1s", false),
    ("owner: root", "ownr: root", false),
];

fn schema() -> jsonschema::Validator {
    let schema = serde_json::to_value(schemars::schema_for!(super::Definition)).expect("schema");
    jsonschema::validator_for(&schema).expect("the schema compiles")
}

/// Whether the JSON Schema accepts `yaml` (read as YAML, as an editor's schema check does).
fn schema_accepts(validator: &jsonschema::Validator, yaml: &str) -> Result<(), String> {
    // Test-only: the daemon reads YAML through `parse.rs` alone.
    let value: serde_json::Value = serde_yaml::from_str(yaml).expect("YAML");
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

#[test]
fn the_schema_and_check_accept_and_refuse_the_same_definitions() {
    let validator = schema();
    let check = |yaml: &str| parse(yaml, Path::new("server.yaml")).map(|_| ());
    if let Err(e) = check(BASE) {
        panic!("BASE is refused by check: {e}");
    }
    if let Err(e) = schema_accepts(&validator, BASE) {
        panic!("BASE is refused by the schema: {e}");
    }
    let mut disagree = Vec::new();
    for (old, new, valid) in CASES {
        assert_eq!(
            BASE.matches(old).count(),
            1,
            "{old:?} must occur once in BASE"
        );
        let yaml = BASE.replacen(old, new, 1);
        let by_check = check(&yaml);
        let by_schema = schema_accepts(&validator, &yaml);
        if by_check.is_ok() != *valid {
            disagree.push(format!(
                "{new:?}: check {}, the table says {}",
                by_check
                    .err()
                    .map_or("accepts".into(), |e| format!("refuses ({e})")),
                if *valid { "valid" } else { "invalid" }
            ));
        }
        if by_schema.is_ok() != *valid {
            disagree.push(format!(
                "{new:?}: the schema {}, the table says {}",
                by_schema
                    .err()
                    .map_or("accepts".into(), |e| format!("refuses ({e})")),
                if *valid { "valid" } else { "invalid" }
            ));
        }
    }
    assert!(disagree.is_empty(), "{}", disagree.join("\n"));
}
