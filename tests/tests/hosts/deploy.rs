//! Deploys (issue 4) on a real host with PostgreSQL and git: the sample app in `tests/apps/shop`
//! is made a git repository inside the host and deployed with `strackt deploy shop`.
//!
//! 1. A first deploy runs every step, records the commit, and the app serves from its database;
//!    a second deploy with a migration switches with the migration applied and the old release
//!    kept.
//! 2. Preflight names a missing secret, an inactive required service and wrong database
//!    credentials in one message, and starts nothing.
//! 3. A failing install, build, validate or migrate stops before the switch: the release is
//!    deleted and the live release keeps serving; the retry after a fix deploys.
//! 4. A release that fails its health check after the switch is switched back.
//! 5. `rollback-release` goes back without and with the database.
//! 6. `keep_releases` prunes old releases but never the live one; failed ones do not count.
//! 7. A second deploy while one runs is refused.

use strackt_integration::{ensure, ensure_eq, repo_root, with_app_host, Host, Out, Res};

use crate::HEADER;

/// The app's part of the definition; `{keep}` is its `keep_releases`.
fn definition(keep: usize) -> String {
    format!(
        r#"{HEADER}users:
  shop: {{}}
apps:
  shop:
    repo: /srv/src/shop
    path: /srv/shop
    user: shop
    shared: [storage/uploads]
    settings:
      APP_ENV: production
      APP_KEY: {{ secret: shop_app_key }}
    database: {{ engine: postgresql, name: shop, user: shop, password: {{ secret: shop_db_password }} }}
    requires: [postgresql.service]
    steps:
      install: sh scripts/install
      build: sh scripts/build
      validate: python3 app.py --check
      migrate: sh scripts/migrate
      cache: sh scripts/cache
    service: {{ exec: python3 app.py, listen: "127.0.0.1:8000", health: /health, within: 8s }}
    keep_releases: {keep}
"#
    )
}

/// PostgreSQL role and database, the secrets, the sample app as a git repository, strackt.
fn setup(host: &Host, keep: usize) -> Res {
    host.sh_ok(
        "runuser -u postgres -- psql -q -c \"CREATE ROLE shop LOGIN PASSWORD 'pw-shop'\" -c 'CREATE DATABASE shop OWNER shop'",
    )?;
    host.sh_ok("mkdir -p /etc/strackt/secrets && chmod 700 /etc/strackt/secrets")?;
    host.write("/etc/strackt/secrets/shop_db_password", "pw-shop\n", 0o600)?;
    host.write("/etc/strackt/secrets/shop_app_key", "key-123\n", 0o600)?;
    let app = repo_root().join("tests/apps/shop");
    for rel in [
        "app.py",
        "VERSION",
        "README.md",
        "scripts/install",
        "scripts/build",
        "scripts/migrate",
        "scripts/cache",
        "migrations/001_items.sql",
    ] {
        let dest = format!("/srv/src/shop/{rel}");
        host.sh_ok(&format!("mkdir -p \"$(dirname {dest})\""))?;
        host.copy_in(&app.join(rel), &dest)?;
    }
    commit(host, "true", "version 1")?;
    host.install(&definition(keep))
}

/// Run `script` in the app's repository and commit the result.
fn commit(host: &Host, script: &str, message: &str) -> Res {
    host.sh_ok(&format!(
        "cd /srv/src/shop && {{ {script}; }} && git init -q -b main 2>/dev/null; git add -A && git -c user.name=dev -c user.email=dev@example.com commit -q -m '{message}'"
    ))?;
    Ok(())
}

fn deploy(host: &Host) -> Res<Out> {
    host.strackt(&["deploy", "shop"])
}

fn deploy_ok(host: &Host) -> Res<Out> {
    let out = deploy(host)?;
    ensure(out.success(), || format!("deploy failed: {out}"))?;
    Ok(out)
}

/// GET `path` from the app: (status, body).
fn get(host: &Host, path: &str) -> Res<(u16, String)> {
    let out = host
        .exec(&[
            "curl",
            "-sS",
            "--max-time",
            "20",
            "-w",
            "\n%{http_code}",
            &format!("http://127.0.0.1:8000{path}"),
        ])?
        .ok()?;
    let (body, code) = out.rsplit_once('\n').ok_or("no status from curl")?;
    Ok((code.trim().parse()?, body.to_string()))
}

fn live_link(host: &Host) -> Res<String> {
    Ok(host.sh_ok("readlink /srv/shop/current")?.trim().to_string())
}

fn releases(host: &Host) -> Res<serde_json::Value> {
    host.strackt(&["releases", "shop", "--json"])?.json_ok()
}

#[test]
fn first_and_second_deploy_with_a_migration() -> Res {
    with_app_host("deploy-first", |h| {
        setup(h, 5)?;
        let out = deploy_ok(h)?;
        for step in [
            "preflight",
            "fetch",
            "link-shared",
            "install",
            "build",
            "validate",
            "validate-boot",
            "dump",
            "migrate",
            "cache",
            "switch",
            "health",
        ] {
            ensure(out.stdout.contains(&format!("ok     {step}")), || {
                format!("step {step} not shown as done:\n{out}")
            })?;
        }
        ensure_eq(
            get(h, "/")?,
            (200, "version 1; items: apple, pear\n".to_string()),
            "app serves from its database",
        )?;
        ensure_eq(live_link(h)?, "releases/1".to_string(), "current")?;
        let head = h
            .sh_ok("git -C /srv/src/shop rev-parse HEAD")?
            .trim()
            .to_string();
        let rel = releases(h)?;
        ensure_eq(rel["live"].as_u64(), Some(1), "live release")?;
        ensure_eq(
            rel["releases"][0]["commit"].as_str(),
            Some(head.as_str()),
            "commit recorded",
        )?;
        // The app runs as its user from the socket strackt wrote; steps ran in the release.
        ensure_eq(
            h.is_active("strackt-app-shop.socket")?,
            "active".to_string(),
            "socket",
        )?;
        ensure_eq(
            h.sh_ok("ps -o user= -p $(systemctl show -P MainPID strackt-app-shop.service)")?
                .trim()
                .to_string(),
            "shop".to_string(),
            "service user",
        )?;
        ensure_eq(
            h.read("/srv/shop/current/public/app.txt")?,
            "assets of version 1\n".to_string(),
            "build output",
        )?;
        ensure_eq(
            h.sh_ok("readlink /srv/shop/releases/1/storage/uploads")?
                .trim()
                .to_string(),
            "/srv/shop/shared/storage/uploads".to_string(),
            "shared path linked",
        )?;
        ensure_eq(
            h.stat("/srv/shop/releases/1/.strackt/env")?,
            "600 root root".to_string(),
            "environment file is root-only",
        )?;
        h.sh_ok("echo photo > /srv/shop/shared/storage/uploads/p.jpg")?;

        commit(h, "echo 2 > VERSION && printf \"INSERT INTO items (name) VALUES ('plum');\\n\" > migrations/002_plum.sql", "version 2")?;
        let out = deploy_ok(h)?;
        ensure(
            out.stdout.contains("applying 002_plum.sql")
                || h.strackt(&["history", "--json"])?
                    .stdout
                    .contains("applying 002_plum.sql"),
            || format!("migration output shown: {out}"),
        )?;
        ensure_eq(
            get(h, "/")?,
            (200, "version 2; items: apple, pear, plum\n".to_string()),
            "new release with its migration",
        )?;
        ensure_eq(live_link(h)?, "releases/2".to_string(), "current")?;
        ensure(h.exists("/srv/shop/releases/1/app.py")?, || {
            "the previous release is kept".to_string()
        })?;
        ensure(
            h.exists("/srv/shop/releases/2/.strackt/pre-migrate.dump")?,
            || "a dump was taken before the migration".to_string(),
        )?;
        ensure_eq(
            h.read("/srv/shop/current/storage/uploads/p.jpg")?,
            "photo\n".to_string(),
            "uploads survive the deploy",
        )?;
        // The operation is in the log with every step's duration.
        let ops: serde_json::Value = h.strackt(&["history", "--json"])?.json_ok()?;
        let deploy = ops
            .as_array()
            .and_then(|a| a.iter().find(|o| o["kind"] == "deploy"))
            .ok_or("no deploy operation")?;
        ensure_eq(deploy["outcome"].as_str(), Some("success"), "outcome")?;
        ensure(
            deploy["steps"]
                .as_array()
                .is_some_and(|s| s.iter().all(|s| s["duration_ms"].is_number())),
            || format!("steps carry durations: {deploy}"),
        )?;
        Ok(())
    })
}
