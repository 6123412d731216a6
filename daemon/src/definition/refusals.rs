//! The table of definitions that must be refused (security issue 10 and the fuzz report in
//! ../shared/DEFINITION-FUZZ.md): each case is one edit of a valid definition, and the refusal
//! must name the edited field's path.

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
fn cases() -> Vec<(&'static str, String, String, &'static str)> {
    let c = |what: &'static str, old: &str, new: &str, path: &'static str| {
        (what, old.to_string(), new.to_string(), path)
    };
    let app_path = |what: &'static str, new: &str| {
        c(
            what,
            "path: /srv/shop",
            &format!("path: \"{new}\""),
            "apps.shop.path",
        )
    };
    let home = |what: &'static str, new: &str| {
        c(
            what,
            "home: /home/alice",
            &format!("home: \"{new}\""),
            "users.alice.home",
        )
    };
    let after = |what: &'static str, new: &str| {
        c(
            what,
            "after: [network-online.target]",
            &format!("after: [\"{new}\"]"),
            "services.hello.after[0]",
        )
    };
    let shared = |what: &'static str, new: &str, path: &'static str| {
        c(
            what,
            "shared: [storage/uploads, .env]",
            &format!("shared: {new}"),
            path,
        )
    };
    let second_app = |path: &str| {
        format!(
            "keep_releases: 5\n  two:\n    repo: /srv/git/two.git\n    path: {path}\n    user: shop\n    service: {{ exec: /bin/two, listen: \"127.0.0.1:8001\" }}"
        )
    };
    vec![
        // Paths: absolute, normalised, outside strackt's state and the system trees.
        home("home in strackt's state", "/var/lib/strackt"),
        home("home under /etc/strackt", "/etc/strackt/alice"),
        home("home with ..", "/home/../etc"),
        home("home in the unit directory", "/etc/systemd/system"),
        home("home relative", "home/alice"),
        home("home with a newline", "/home/al\\nice"),
        home("home is /", "/"),
        c(
            "two users share a home",
            "home: /srv/shop",
            "home: /home/alice",
            "users.shop.home",
        ),
        c(
            "a home that is another user's default home",
            "home: /srv/shop",
            "home: /home/bob }\n  bob: { uid: 3002",
            "users.shop.home",
        ),
        c(
            "authorized_keys collides with a managed file",
            "/etc/app.conf: {",
            "/opt/alice/.ssh/authorized_keys: { content: x }\n  /etc/app.conf: {",
            "users.alice.home",
        )
        .with_also("home: /home/alice", "home: /opt/alice"),
        app_path("app path //etc/x", "//etc/x"),
        app_path("app path /./etc", "/./etc"),
        app_path("app path /var//lib/strackt", "/var//lib/strackt"),
        app_path("app path /srv/.. (= /)", "/srv/.."),
        app_path("app path /", "/"),
        app_path("app path /root", "/root"),
        app_path("app path /home", "/home"),
        app_path("app path /etc", "/etc"),
        app_path("app path /usr/local/app", "/usr/local/app"),
        app_path("app path holding strackt's state", "/var"),
        app_path("app path in strackt's cache", "/var/cache/strackt/x"),
        app_path(
            "app path in the receiver's storage",
            "/var/lib/strackt-receiver",
        ),
        app_path("app path in postgresql's data", "/var/lib/postgresql/15"),
        c(
            "two apps, one path",
            "keep_releases: 5",
            &second_app("/srv/shop"),
            "apps.two.path",
        ),
        c(
            "an app inside another app",
            "keep_releases: 5",
            &second_app("/srv/shop/releases/x"),
            "apps.two.path",
        ),
        c(
            "a managed file inside an app",
            "/etc/app.conf: {",
            "/opt/shop/x.conf: { content: x }\n  /etc/app.conf: {",
            "apps.shop.path",
        )
        .with_also("path: /srv/shop", "path: /opt/shop"),
        // Secrets: one name rule everywhere.
        c(
            "app setting secret ../",
            "secret: shop_key",
            "secret: ../../../etc/shadow",
            "apps.shop.settings.APP_KEY.secret",
        ),
        c(
            "app setting secret absolute",
            "secret: shop_key",
            "secret: /etc/shadow",
            "apps.shop.settings.APP_KEY.secret",
        ),
        c(
            "database password secret",
            "secret: shop_db",
            "secret: ../shadow",
            "apps.shop.database.password.secret",
        ),
        c(
            "s3 credentials secret",
            "secret: s3_creds",
            "secret: ..",
            "backups.shop.to.s3.credentials.secret",
        ),
        c(
            "receiver destination secret",
            S3_TO,
            &RECEIVER_TO.replace("secret: r_web1", "secret: a/b"),
            "backups.shop.to.receiver.credentials.secret",
        ),
        c(
            "receiver client secret",
            "web1: { credentials: { secret: r_web1 } }",
            "web1: { credentials: { secret: ../x } }",
            "receiver.clients.web1.credentials.secret",
        ),
        c(
            "user password secret",
            "secret: alice_pw",
            "secret: .hidden",
            "users.alice.password.secret",
        ),
        // Shared paths inside the release.
        shared(
            "shared .strackt/env",
            "[.strackt/env]",
            "apps.shop.shared[0]",
        ),
        shared("shared .git/hooks", "[.git/hooks]", "apps.shop.shared[0]"),
        shared("shared with //", "[storage//x]", "apps.shop.shared[0]"),
        shared("shared trailing /", "[storage/]", "apps.shop.shared[0]"),
        shared("shared ..", "[../x]", "apps.shop.shared[0]"),
        shared("shared twice", "[a, a]", "apps.shop.shared[1]"),
        shared("shared nested", "[a, a/b]", "apps.shop.shared[1]"),
        // Unit-file injection.
        c(
            "description newline",
            "description: hello",
            "description: \"hello\\nExecStartPre=/bin/sh -c id\"",
            "services.hello.description",
        ),
        c(
            "exec newline",
            "exec: /usr/bin/sleep infinity",
            "exec: \"/usr/bin/sleep 1\\nUser=root\"",
            "services.hello.exec",
        ),
        c(
            "exec NUL",
            "exec: /usr/bin/sleep infinity",
            "exec: \"/usr/bin/sleep\\0\"",
            "services.hello.exec",
        ),
        c(
            "exec_reload newline",
            "exec_reload: /bin/kill -HUP $MAINPID",
            "exec_reload: \"/bin/true\\nUser=root\"",
            "services.hello.exec_reload",
        ),
        c(
            "working_directory newline",
            "working_directory: /srv",
            "working_directory: \"/srv\\nUser=root\"",
            "services.hello.working_directory",
        ),
        c(
            "environment NUL",
            "environment: { A: \"1\" }",
            "environment: { A: \"a\\0b\" }",
            "services.hello.environment.A",
        ),
        c(
            "environment huge",
            "environment: { A: \"1\" }",
            &format!("environment: {{ A: \"{}\" }}", "x".repeat(40_000)),
            "services.hello.environment.A",
        ),
        c(
            "app exec newline",
            "exec: /usr/bin/python3 app.py",
            "exec: \"/usr/bin/python3 app.py\\nUser=root\"",
            "apps.shop.service.exec",
        ),
        c(
            "app health newline",
            "health: /health",
            "health: \"/health\\nUser=root\"",
            "apps.shop.service.health",
        ),
        c(
            "app setting newline",
            "APP_ENV: production",
            "APP_ENV: \"production\\nAPP_KEY=x\"",
            "apps.shop.settings.APP_ENV",
        ),
        c(
            "app setting NUL",
            "APP_ENV: production",
            "APP_ENV: \"a\\0\"",
            "apps.shop.settings.APP_ENV",
        ),
        c(
            "app step NUL",
            "install: \"sh scripts/install\"",
            "install: \"sh\\0x\"",
            "apps.shop.steps.install",
        ),
        c(
            "sysctl value NUL",
            "net.ipv4.ip_forward: 1",
            "net.ipv4.ip_forward: \"1\\0\"",
            "settings.sysctl.\"net.ipv4.ip_forward\"",
        ),
        c(
            "file path NUL",
            "/etc/app.conf: {",
            "\"/etc/a\\0b\": { content: x }\n  /etc/app.conf: {",
            "files.\"/etc/a\\0b\"",
        ),
        c(
            "file path newline",
            "/etc/app.conf: {",
            "\"/etc/a\\nb\": { content: x }\n  /etc/app.conf: {",
            "files.\"/etc/a\\nb\"",
        ),
        c(
            "user shell newline",
            "shell: /bin/bash",
            "shell: \"/bin/bash\\nx\"",
            "users.alice.shell",
        ),
        // Unit names as systemd reads them.
        after("after with a slash", "a/b.service"),
        after("after ../x", "../x.service"),
        after("after an absolute path", "/etc/x.service"),
        after("after with a space", "a b.service"),
        after("after empty", ""),
        after("after hidden", ".hidden.service"),
        after("after newline", "a\\nb.service"),
        after("after NUL", "x\\0.service"),
        after("after too long", &format!("{}.service", "a".repeat(300))),
        after("after non-ASCII", "é.service"),
        after("after with ;", "a;b.service"),
        after("after with $", "a$b.service"),
        after("after a template", "getty@.service"),
        after("after starting with -", "-x.service"),
        c(
            "requires with a space",
            "requires: [postgresql.service]",
            "requires: [\"a b.service\"]",
            "apps.shop.requires[0]",
        ),
        c(
            "service name with .service suffix",
            "  cron: { unit: cron.service }",
            "  cron: { unit: cron.service }\n  x.service: { exec: /bin/true }",
            "services.\"x.service\"",
        ),
        c(
            "service name with a backslash",
            "  cron: { unit: cron.service }",
            "  cron: { unit: cron.service }\n  'a\\b': { exec: /bin/true }",
            "services.a\\b",
        ),
        c(
            "service name starting with -",
            "  cron: { unit: cron.service }",
            "  cron: { unit: cron.service }\n  -x: { exec: /bin/true }",
            "services.-x",
        ),
        c(
            "unit a template with no instance",
            "unit: cron.service",
            "unit: getty@.service",
            "services.cron.unit",
        ),
        // Values that reach argv.
        c(
            "repo starting with -",
            "repo: /srv/git/shop.git",
            "repo: --upload-pack=touch /tmp/x",
            "apps.shop.repo",
        ),
        c(
            "database name starting with -",
            "name: shop,",
            "name: -shop,",
            "apps.shop.database.name",
        ),
        c(
            "database host starting with -",
            "host: 127.0.0.1",
            "host: -h",
            "apps.shop.database.host",
        ),
        c(
            "bucket starting with -",
            "bucket: backups",
            "bucket: -backups",
            "backups.shop.to.s3.bucket",
        ),
        c(
            "receiver ca starting with -",
            S3_TO,
            &RECEIVER_TO.replace("ca: /etc/r-ca.pem", "ca: -x"),
            "backups.shop.to.receiver.ca",
        ),
        c(
            "receiver ca relative",
            S3_TO,
            &RECEIVER_TO.replace("ca: /etc/r-ca.pem", "ca: r-ca.pem"),
            "backups.shop.to.receiver.ca",
        ),
        c(
            "receiver url without a host",
            S3_TO,
            &RECEIVER_TO.replace("https://backup.example.com:8443/", "https://"),
            "backups.shop.to.receiver.url",
        ),
        c(
            "branch with a space",
            "branch: main",
            "branch: \"ma in\"",
            "apps.shop.branch",
        ),
        c(
            "branch ..",
            "branch: main",
            "branch: a..b",
            "apps.shop.branch",
        ),
        c(
            "branch starting with -",
            "branch: main",
            "branch: --orphan",
            "apps.shop.branch",
        ),
        // Ports, ranges, durations.
        c(
            "app listen port 0",
            "listen: \"127.0.0.1:8000\"",
            "listen: \"127.0.0.1:0\"",
            "apps.shop.service.listen",
        ),
        c(
            "database port 0",
            "port: 5432",
            "port: 0",
            "apps.shop.database.port",
        ),
        c(
            "strackt listen port 0",
            "listen: \"127.0.0.1:7477\"",
            "listen: \"127.0.0.1:0\"",
            "strackt.listen",
        ),
        c(
            "receiver listen port 0",
            "listen: \"0.0.0.0:8443\"",
            "listen: \"0.0.0.0:0\"",
            "receiver.listen",
        ),
        c(
            "status endpoint on all interfaces without opt-in",
            "listen: \"127.0.0.1:7477\"",
            "listen: \"0.0.0.0:7477\"",
            "strackt.listen",
        ),
        c(
            "settle 100 years",
            "settle: 1s",
            "settle: 100years",
            "strackt.settle",
        ),
        c(
            "interval 100 years",
            "interval: 5m",
            "interval: 100years",
            "strackt.interval",
        ),
        c(
            "interval overflowing",
            "interval: 5m",
            "interval: 99999999999999999999999y",
            "strackt.interval",
        ),
        c(
            "steps timeout 0s",
            "timeout: 15m",
            "timeout: 0s",
            "apps.shop.steps.timeout",
        ),
        c(
            "app health within 0s",
            "within: 30s",
            "within: 0s",
            "apps.shop.service.within",
        ),
        c(
            "service health within 0s",
            "within: 10s",
            "within: 0s",
            "services.hello.health.within",
        ),
        c(
            "stalled_after 0s",
            "stalled_after: 2m",
            "stalled_after: 0s",
            "backups.shop.stalled_after",
        ),
        c(
            "stalled_after not a duration",
            "stalled_after: 2m",
            "stalled_after: soon",
            "backups.shop.stalled_after",
        ),
        c(
            "keep all zero",
            "keep: { last: 10 }",
            "keep: { last: 0, daily: 0 }",
            "backups.shop.keep",
        ),
        c(
            "keep_releases 10^18",
            "keep_releases: 5",
            "keep_releases: 1000000000000000000",
            "apps.shop.keep_releases",
        ),
        c(
            "keep_generations 4e9",
            "keep_generations: 10",
            "keep_generations: 4000000000",
            "strackt.keep_generations",
        ),
        c(
            "health tcp host garbage",
            "tcp: \"127.0.0.1:80\"",
            "tcp: \"!!:80\"",
            "services.hello.health.tcp",
        ),
        c(
            "health http without a host",
            "health: { tcp: \"127.0.0.1:80\", within: 10s }",
            "health: { http: \"http://\", within: 10s }",
            "services.hello.health.http",
        ),
        // Accounts and modes.
        c(
            "uid 4294967295",
            "uid: 3001",
            "uid: 4294967295",
            "users.alice.uid",
        ),
        c(
            "uid 0 for a new user",
            "uid: 3001",
            "uid: 0",
            "users.alice.uid",
        ),
        c(
            "gid 4294967295",
            "gid: 3000",
            "gid: 4294967295",
            "groups.g.gid",
        ),
        c(
            "gid 0 for a new group",
            "gid: 3000",
            "gid: 0",
            "groups.g.gid",
        ),
        c(
            "file owner 4294967295",
            "owner: root",
            "owner: \"4294967295\"",
            "files.\"/etc/app.conf\".owner",
        ),
        c(
            "file mode setuid",
            "mode: \"0640\"",
            "mode: \"4755\"",
            "files.\"/etc/app.conf\".mode",
        ),
        c(
            "file mode world-writable",
            "mode: \"0640\"",
            "mode: \"0666\"",
            "files.\"/etc/app.conf\".mode",
        ),
        c(
            "restart_on names a file twice",
            "restart_on: [/etc/app.conf]",
            "restart_on: [/etc/app.conf, /etc/app.conf]",
            "services.hello.restart_on[1]",
        ),
        c(
            "package version with ..",
            "curl: \"7.88.1-10\"",
            "curl: \"1..2\"",
            "packages.curl",
        ),
        // The receiver's storage.
        c(
            "receiver storage /",
            "storage: /var/lib/strackt-receiver",
            "storage: /",
            "receiver.storage",
        ),
        c(
            "receiver storage in strackt's state",
            "storage: /var/lib/strackt-receiver",
            "storage: /var/lib/strackt/r",
            "receiver.storage",
        ),
        c(
            "receiver storage with ..",
            "storage: /var/lib/strackt-receiver",
            "storage: /srv/r/../../etc",
            "receiver.storage",
        ),
        c(
            "receiver client a..",
            "web1: { credentials",
            "\"a..\": { credentials",
            "receiver.clients.\"a..\"",
        ),
        c(
            "backup path twice",
            "paths: [storage/uploads]",
            "paths: [storage/uploads, storage/uploads]",
            "backups.shop.paths[1]",
        ),
        c(
            "database name with a capital",
            "  shop_log: { owner",
            "  Shop_log: { owner",
            "databases.Shop_log",
        ),
        c(
            "PostgreSQL's own database",
            "  shop_log: { owner",
            "  template1: { owner",
            "databases.template1",
        ),
        c(
            "a reserved role",
            "shop_log: { owner: shop,",
            "shop_log: { owner: pg_monitor,",
            "databases.shop_log.owner",
        ),
        c(
            "the superuser as owner",
            "shop_log: { owner: shop,",
            "shop_log: { owner: postgres,",
            "databases.shop_log.owner",
        ),
        c(
            "a role name with a quote",
            "shop_log: { owner: shop,",
            "shop_log: { owner: \"a'b\",",
            "databases.shop_log.owner",
        ),
        c(
            "one role, two passwords",
            "owner: shop, password: { secret: shop_db }",
            "owner: shop, password: { secret: other_db }",
            "databases.shop_log.password",
        ),
        c(
            "database password secret with a path",
            "  shop: { password: { secret: shop_db } }",
            "  shop: { password: { secret: ../shadow } }",
            "databases.shop.password.secret",
        ),
        c(
            "an app logging in with another secret than its role's",
            "  shop: { password: { secret: shop_db } }\n  shop_log: { owner: shop, password: { secret: shop_db } }",
            "  shop: { password: { secret: shop_pw } }\n  shop_log: { owner: shop, password: { secret: shop_pw } }",
            "apps.shop.database.password",
        ),
        // Apps run as a user of their own unless `user: root` is written.
        c("app without user", "    user: shop\n", "", "apps.shop"),
    ]
}

/// A second edit for cases that need two.
trait AlsoReplace {
    fn with_also(self, old: &str, new: &str) -> Self;
}

impl AlsoReplace for (&'static str, String, String, &'static str) {
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
