//! Refused unit-file injection, unit names and values that reach a program's argv.

use super::{after, c, Case, RECEIVER_TO, S3_TO};

/// Unit-file injection.
pub(super) fn injection() -> Vec<Case> {
    vec![
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
    ]
}

/// Unit names as systemd reads them.
pub(super) fn unit_names() -> Vec<Case> {
    vec![
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
    ]
}

/// Values that reach argv.
pub(super) fn argv() -> Vec<Case> {
    vec![
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
    ]
}
