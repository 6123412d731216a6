//! The table of definitions that must be refused (security issue 10 and the fuzz report in
//! ../shared/DEFINITION-FUZZ.md): each case is one edit of a valid definition, and the refusal
//! must name the edited field's path.

mod paths;
mod units;
mod values;

use std::path::Path;

use super::parse;

/// A definition using every section, valid as it stands.
const BASE: &str = r#"version: 1
strackt:
  interval: 5m
  settle: 1s
  listen: "127.0.0.1:7477"
  keep_generations: 10
files:
  /etc/app.conf: { content: "x\n", mode: "0640", owner: root }
services:
  hello:
    exec: /usr/bin/sleep infinity
    description: hello
    exec_reload: /bin/kill -HUP $MAINPID
    working_directory: /srv
    environment: { A: "1" }
    after: [network-online.target]
    restart_on: [/etc/app.conf]
    health: { tcp: "127.0.0.1:80", within: 10s }
  cron: { unit: cron.service }
settings:
  sysctl:
    net.ipv4.ip_forward: 1
groups:
  g: { gid: 3000 }
users:
  alice: { uid: 3001, shell: /bin/bash, home: /home/alice, ssh_keys: ["ssh-ed25519 AAAA alice@x"], password: { secret: alice_pw } }
  shop: { system: true, home: /srv/shop }
packages:
  curl: "7.88.1-10"
apps:
  shop:
    repo: /srv/git/shop.git
    branch: main
    path: /srv/shop
    user: shop
    shared: [storage/uploads, .env]
    settings:
      APP_ENV: production
      APP_KEY: { secret: shop_key }
    database: { engine: postgresql, host: 127.0.0.1, port: 5432, name: shop, user: shop, password: { secret: shop_db } }
    requires: [postgresql.service]
    steps: { install: "sh scripts/install", timeout: 15m }
    service: { exec: /usr/bin/python3 app.py, listen: "127.0.0.1:8000", health: /health, within: 30s }
    keep_releases: 5
databases:
  shop: { password: { secret: shop_db } }
  shop_log: { owner: shop, password: { secret: shop_db } }
backups:
  shop:
    database: true
    paths: [storage/uploads]
    to: { s3: { endpoint: "https://s3.example.com", bucket: backups, prefix: web1/shop, credentials: { secret: s3_creds } } }
    keep: { last: 10 }
    stalled_after: 2m
receiver:
  listen: "0.0.0.0:8443"
  storage: /var/lib/strackt-receiver
  tls: { certificate: /etc/r.crt, key: /etc/r.key }
  clients:
    web1: { credentials: { secret: r_web1 } }
"#;

const RECEIVER_TO: &str = r#"to: { receiver: { url: "https://backup.example.com:8443/", credentials: { secret: r_web1 }, ca: /etc/r-ca.pem } }"#;
const S3_TO: &str = r#"to: { s3: { endpoint: "https://s3.example.com", bucket: backups, prefix: web1/shop, credentials: { secret: s3_creds } } }"#;

/// (what is refused, the text in BASE, its replacement, the field path the refusal names)
type Case = (&'static str, String, String, &'static str);

/// Every case, in the order the groups are listed.
fn cases() -> Vec<Case> {
    [
        paths::paths(),
        paths::secrets(),
        paths::shared_paths(),
        units::injection(),
        units::unit_names(),
        units::argv(),
        values::ports(),
        values::accounts(),
        values::receiver(),
        values::app_user(),
    ]
    .concat()
}

fn c(what: &'static str, old: &str, new: &str, path: &'static str) -> Case {
    (what, old.to_string(), new.to_string(), path)
}

fn app_path(what: &'static str, new: &str) -> Case {
    c(
        what,
        "path: /srv/shop",
        &format!("path: \"{new}\""),
        "apps.shop.path",
    )
}

fn home(what: &'static str, new: &str) -> Case {
    c(
        what,
        "home: /home/alice",
        &format!("home: \"{new}\""),
        "users.alice.home",
    )
}

fn after(what: &'static str, new: &str) -> Case {
    c(
        what,
        "after: [network-online.target]",
        &format!("after: [\"{new}\"]"),
        "services.hello.after[0]",
    )
}

fn shared(what: &'static str, new: &str, path: &'static str) -> Case {
    c(
        what,
        "shared: [storage/uploads, .env]",
        &format!("shared: {new}"),
        path,
    )
}

fn second_app(path: &str) -> String {
    format!(
        "keep_releases: 5\n  two:\n    repo: /srv/git/two.git\n    path: {path}\n    user: shop\n    service: {{ exec: /bin/two, listen: \"127.0.0.1:8001\" }}"
    )
}

/// A second edit for cases that need two.
trait AlsoReplace {
    fn with_also(self, old: &str, new: &str) -> Self;
}

impl AlsoReplace for Case {
    fn with_also(self, old: &str, new: &str) -> Self {
        let (what, a, b, path) = self;
        // Encoded as a second pair separated by a marker the runner splits on.
        (
            what,
            format!("{a}\u{1}{old}"),
            format!("{b}\u{1}{new}"),
            path,
        )
    }
}

fn edited(what: &str, old: &str, new: &str) -> String {
    let mut text = BASE.to_string();
    for (o, n) in old.split('\u{1}').zip(new.split('\u{1}')) {
        assert!(
            text.contains(o),
            "{what}: {o:?} is not in the base definition"
        );
        text = text.replacen(o, n, 1);
    }
    text
}

#[test]
fn the_base_definition_is_valid() {
    if let Err(e) = parse(BASE, Path::new("server.yaml")) {
        panic!("{e}");
    }
}

#[test]
fn every_invalid_definition_is_refused_naming_the_field() {
    let cases = cases();
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for (what, old, new, path) in &cases {
        let text = edited(what, old, new);
        match parse(&text, Path::new("server.yaml")) {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(e) => {
                let report = e.to_string();
                let want = format!(": {path}: ");
                let found = report.lines().any(|line| {
                    line.starts_with("server.yaml:")
                        && line.contains(&want)
                        && line
                            .split(':')
                            .nth(1)
                            .is_some_and(|n| n.parse::<usize>().is_ok_and(|n| n >= 1))
                });
                if !found {
                    failures.push(format!("{what}: no problem at {path}: {report}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn root_must_be_written_and_is_warned_about() {
    let text = BASE.replace("    user: shop\n", "    user: root\n");
    let def = parse(&text, Path::new("server.yaml")).expect("user: root is allowed");
    let warnings = def.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].path, "apps.shop.user");
    assert!(warnings[0].message.contains("root"), "{warnings:?}");
    let missing = parse(
        &BASE.replace("    user: shop\n", ""),
        Path::new("server.yaml"),
    )
    .expect_err("no user");
    assert!(missing.to_string().contains("needs `user:`"), "{missing}");
}

#[test]
fn a_non_loopback_status_endpoint_needs_the_opt_in() {
    let open = BASE.replace(
        "listen: \"127.0.0.1:7477\"",
        "listen: \"0.0.0.0:7477\"\n  listen_non_loopback: true",
    );
    if let Err(e) = parse(&open, Path::new("server.yaml")) {
        panic!("{e}");
    }
}
