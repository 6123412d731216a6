//! Refused ports, ranges, durations, accounts, modes, the receiver's storage and apps
//! without a user of their own.

use super::{c, Case};

/// Ports, ranges, durations.
pub(super) fn ports() -> Vec<Case> {
    vec![
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
    ]
}

/// Accounts and modes.
pub(super) fn accounts() -> Vec<Case> {
    vec![
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
    ]
}

/// The receiver's storage.
pub(super) fn receiver() -> Vec<Case> {
    vec![
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
    ]
}

/// Apps run as a user of their own unless `user: root` is written.
pub(super) fn app_user() -> Vec<Case> {
    vec![c("app without user", "    user: shop\n", "", "apps.shop")]
}
