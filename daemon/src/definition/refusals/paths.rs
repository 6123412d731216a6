//! Refused paths, secret names and shared paths: each case names the field it edits.

use super::{app_path, c, home, second_app, shared, AlsoReplace, Case, RECEIVER_TO, S3_TO};

/// Paths: absolute, normalised, outside strackt's state and the system trees.
pub(super) fn paths() -> Vec<Case> {
    vec![
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
    ]
}

/// Secrets: one name rule everywhere.
pub(super) fn secrets() -> Vec<Case> {
    vec![
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
    ]
}

/// Shared paths inside the release.
pub(super) fn shared_paths() -> Vec<Case> {
    vec![
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
    ]
}
