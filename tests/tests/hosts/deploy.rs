//! Deploys (issue 4) on a real host with PostgreSQL and git: the sample app in `tests/apps/shop`
//! is made a git repository inside the host and deployed with `strackt deploy shop`.
//!
//! 1. A first deploy runs every step, records the commit, and the app serves from its database;
//!    a second deploy with a migration switches with the migration applied and the old release
//!    kept.
//! 2. Preflight names a missing secret, an inactive required service and wrong database
//!    credentials in one message, and starts nothing; a deploy cut off by killing strackt is
//!    cleaned up at the next start.
//! 3. A failing install, build, validate or migrate stops before the switch: the release is
//!    deleted and the live release keeps serving; the retry after a fix deploys.
//! 4. A release that fails its health check after the switch is switched back.
//! 5. `rollback-release` goes back without and with the database.
//! 6. `keep_releases` prunes old releases but never the live one; failed ones do not count.
//! 7. A second deploy while one runs is refused.

use strackt_integration::{ensure, ensure_eq, repo_root, with_app_host, Host, Out, Res};

use crate::HEADER;

/// The app's part of the definition; `{keep}` is its `keep_releases`.
pub fn definition(keep: usize) -> String {
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
pub(crate) fn setup(host: &Host, keep: usize) -> Res {
    setup_with(host, &definition(keep))
}

/// `setup` with another definition.
pub fn setup_with(host: &Host, definition: &str) -> Res {
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
    host.install(definition)
}

/// Run `script` in the app's repository and commit the result. Commits carry fixed dates, so
/// the same history made on two hosts is the same commits: one team repository, as a
/// restore onto another server (which redeploys the run's commit) expects.
pub fn commit(host: &Host, script: &str, message: &str) -> Res {
    host.sh_ok(&format!(
        "cd /srv/src/shop && {{ {script}; }} && git init -q -b main 2>/dev/null; git add -A && GIT_AUTHOR_DATE=2026-01-01T00:00:00Z GIT_COMMITTER_DATE=2026-01-01T00:00:00Z git -c user.name=dev -c user.email=dev@example.com commit -q -m '{message}'"
    ))?;
    Ok(())
}

pub fn deploy(host: &Host) -> Res<Out> {
    host.strackt(&["deploy", "shop"])
}

pub fn deploy_ok(host: &Host) -> Res<Out> {
    let out = deploy(host)?;
    ensure(out.success(), || format!("deploy failed: {out}"))?;
    Ok(out)
}

/// Run `script` in the background inside the host, as a transient unit (a process started by
/// `testhost exec` does not outlive it).
pub fn background(host: &Host, script: &str) -> Res {
    host.exec(&[
        "systemd-run",
        "--quiet",
        "--collect",
        "--",
        "bash",
        "-c",
        script,
    ])?
    .ok()?;
    Ok(())
}

/// GET `path` from the app: (status, body).
pub fn get(host: &Host, path: &str) -> Res<(u16, String)> {
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

pub(crate) fn live_link(host: &Host) -> Res<String> {
    Ok(host.sh_ok("readlink /srv/shop/current")?.trim().to_string())
}

pub(crate) fn releases(host: &Host) -> Res<serde_json::Value> {
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
        // The operator's journal names the app: `journalctl -u strackt APP=shop`.
        let journal = h.sh_ok(
            "journalctl -u strackt.service -t strackt -o json --no-pager APP=shop KIND=deploy",
        )?;
        ensure(journal.contains("\"OUTCOME\":\"success\""), || {
            format!("no journal entry for the deploy with APP=shop: {journal}")
        })?;
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
            h.stat("/var/lib/strackt/apps/shop/releases/1/env")?,
            "600 root root".to_string(),
            "environment file is root-only, in strackt's own state",
        )?;
        ensure_eq(
            h.sh_ok("stat -c '%a %U' /var/lib/strackt/apps /var/lib/strackt/apps/shop /var/lib/strackt/apps/shop/releases/1")?,
            "700 root\n".repeat(3),
            "its directories are root-only",
        )?;
        ensure(!h.exists("/srv/shop/releases/1/.strackt")?, || {
            "nothing of strackt's in the release".to_string()
        })?;
        h.sh_ok("echo photo > /srv/shop/shared/storage/uploads/p.jpg")?;

        commit(h, "echo 2 > VERSION && printf \"INSERT INTO items (name) VALUES ('plum');\\n\" > migrations/002_plum.sql", "version 2")?;
        // Traffic during the deploy: a slow request in flight at the switch, and a stream of
        // requests throughout. None may be refused or fail.
        background(
            h,
            "curl -s -w ' %{http_code}' --max-time 20 http://127.0.0.1:8000/slow > /tmp/slow.out",
        )?;
        background(h, "for i in $(seq 1 100000); do [ -e /tmp/stop ] && break; curl -s -o /dev/null -w '%{http_code}\\n' --max-time 20 http://127.0.0.1:8000/ >> /tmp/codes; done; touch /tmp/done")?;
        let out = deploy_ok(h)?;
        h.sh_ok("touch /tmp/stop; for i in $(seq 100); do [ -e /tmp/done ] && exit 0; sleep 0.2; done; exit 1")?;
        let codes = h.read("/tmp/codes")?;
        ensure(
            codes.lines().count() >= 5 && codes.lines().all(|c| c == "200"),
            || format!("requests during the deploy: {codes:?}"),
        )?;
        ensure_eq(
            h.read("/tmp/slow.out")?,
            "slow 1\n 200".to_string(),
            "the request in flight at the switch finished on the old release",
        )?;
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
            h.exists("/var/lib/strackt/apps/shop/releases/2/pre-migrate.dump")?,
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

#[test]
fn preflight_names_everything_missing_and_starts_nothing() -> Res {
    with_app_host("deploy-preflight", |h| {
        setup(h, 5)?;
        // Three things wrong at once: a secret gone, a required service down, a wrong password.
        h.write(
            "/etc/systemd/system/queue.service",
            "[Service]\nExecStart=/usr/bin/sleep infinity\n",
            0o644,
        )?;
        h.sh_ok("rm /etc/strackt/secrets/shop_app_key && echo wrong > /etc/strackt/secrets/shop_db_password && systemctl daemon-reload")?;
        h.put_definition(&definition(5).replace(
            "requires: [postgresql.service]",
            "requires: [postgresql.service, queue.service]",
        ))?;
        h.apply_ok()?;
        let out = deploy(h)?;
        ensure(!out.success(), || format!("deploy started anyway: {out}"))?;
        for expected in [
            "server.yaml:",
            "3 thing(s) missing",
            "apps.shop.settings.APP_KEY: secret `shop_app_key` is missing: create /etc/strackt/secrets/shop_app_key",
            "apps.shop.requires: queue.service is inactive",
            "apps.shop.database: PostgreSQL at 127.0.0.1:5432 does not accept user `shop` on database `shop`",
        ] {
            ensure(out.stderr.contains(expected), || format!("{expected:?} not in: {out}"))?;
        }
        ensure(!h.exists("/srv/shop")?, || {
            "the deploy created the app directory".to_string()
        })?;
        ensure(
            !h.exists("/etc/systemd/system/strackt-app-shop.service")?,
            || "a unit was written".to_string(),
        )?;
        ensure_eq(
            releases(h)?["releases"].as_array().map(Vec::len),
            Some(0),
            "no release",
        )?;

        // Fixed: the same command deploys.
        h.write("/etc/strackt/secrets/shop_app_key", "key-123\n", 0o600)?;
        h.write("/etc/strackt/secrets/shop_db_password", "pw-shop\n", 0o600)?;
        h.sh_ok("systemctl start queue.service")?;
        deploy_ok(h)?;
        ensure_eq(
            get(h, "/health")?,
            (200, "ok 1\n".to_string()),
            "deployed after the fix",
        )?;

        // strackt killed mid-deploy: the next start removes the half-built release and
        // records it failed; the live release keeps serving throughout.
        commit(
            h,
            "echo 2 > VERSION && printf 'sleep 30\\n' >> scripts/install",
            "slow",
        )?;
        background(h, "strackt deploy shop > /tmp/killed.log 2>&1")?;
        h.sh_ok("for i in $(seq 100); do [ -d /srv/shop/releases/2/scripts ] && exit 0; sleep 0.1; done; exit 1")?;
        h.sh_ok("sleep 1; systemctl kill -s KILL strackt.service; sleep 0.5; systemctl start strackt.service")?;
        ensure(!h.exists("/srv/shop/releases/2")?, || {
            "the half-built release survived the restart".to_string()
        })?;
        let rel = releases(h)?;
        ensure_eq(
            rel["releases"][0]["state"].as_str(),
            Some("failed"),
            "interrupted release",
        )?;
        ensure(
            rel["releases"][0]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("strackt stopped during the deploy")),
            || format!("{rel}"),
        )?;
        ensure_eq(live_link(h)?, "releases/1".to_string(), "current")?;
        ensure_eq(
            get(h, "/health")?,
            (200, "ok 1\n".to_string()),
            "live release serving",
        )
    })
}

/// (step, a commit that breaks it, the commit that fixes it again)
const BREAKAGES: &[(&str, &str, &str)] = &[
    (
        "install",
        "cp scripts/install /tmp/install.ok && printf 'echo E: Unable to locate package libfoo >&2\\nexit 100\\n' > scripts/install",
        "cp /tmp/install.ok scripts/install",
    ),
    (
        "build",
        "cp scripts/build /tmp/build.ok && printf 'echo SyntaxError in app.css >&2\\nexit 2\\n' > scripts/build",
        "cp /tmp/build.ok scripts/build",
    ),
    ("validate", "git rm -q VERSION", "echo 2 > VERSION"),
    (
        "migrate",
        "printf 'ALTER TABLE no_such_table ADD COLUMN x int;\\n' > migrations/002_bad.sql",
        "git rm -q migrations/002_bad.sql",
    ),
];

#[test]
fn a_failing_step_of_each_kind_leaves_the_live_release_serving() -> Res {
    with_app_host("deploy-steps", |h| {
        setup(h, 5)?;
        deploy_ok(h)?;
        let pid = h.main_pid("strackt-app-shop.service")?;
        for (n, (step, break_it, fix_it)) in BREAKAGES.iter().enumerate() {
            commit(
                h,
                &format!("echo 2 > VERSION; {break_it}"),
                &format!("break {step}"),
            )?;
            let out = deploy(h)?;
            ensure(!out.success(), || {
                format!("{step}: deploy succeeded: {out}")
            })?;
            ensure(out.stdout.contains(&format!("FAILED {step} ")), || {
                format!("{step} not named as failed: {out}")
            })?;
            let id = n as u64 + 2;
            ensure(!h.exists(&format!("/srv/shop/releases/{id}"))?, || {
                format!("{step}: the half-built release {id} was kept")
            })?;
            ensure_eq(
                live_link(h)?,
                "releases/1".to_string(),
                &format!("{step}: current"),
            )?;
            ensure_eq(
                get(h, "/")?,
                (200, "version 1; items: apple, pear\n".to_string()),
                &format!("{step}: live release serving"),
            )?;
            ensure_eq(
                h.main_pid("strackt-app-shop.service")?,
                pid,
                &format!("{step}: the live process was not touched"),
            )?;
            let rel = releases(h)?;
            ensure_eq(
                rel["releases"][0]["state"].as_str(),
                Some("failed"),
                &format!("{step}: release state"),
            )?;
            ensure(
                rel["releases"][0]["reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with(&format!("{step} failed"))),
                || format!("{step}: reason {rel}"),
            )?;
            commit(h, fix_it, &format!("fix {step}"))?;
        }
        // The retry after the fixes behaves like a first deploy.
        deploy_ok(h)?;
        ensure_eq(
            live_link(h)?,
            "releases/6".to_string(),
            "current after the retry",
        )?;
        ensure_eq(
            get(h, "/")?,
            (200, "version 2; items: apple, pear\n".to_string()),
            "new release",
        )
    })
}

#[test]
fn a_release_failing_health_after_the_switch_is_switched_back() -> Res {
    with_app_host("deploy-health", |h| {
        setup(h, 5)?;
        deploy_ok(h)?;
        commit(
            h,
            "echo 2 > VERSION && echo 8000 > FAIL_HEALTH_ON_PORT",
            "healthy only on the side",
        )?;
        let out = deploy(h)?;
        ensure(!out.success(), || format!("deploy succeeded: {out}"))?;
        for line in [
            "ok     validate-boot",
            "ok     switch",
            "FAILED health",
            "ok     switch-back",
        ] {
            ensure(out.stdout.contains(line), || {
                format!("{line:?} not in: {out}")
            })?;
        }
        ensure_eq(live_link(h)?, "releases/1".to_string(), "current")?;
        ensure_eq(
            get(h, "/health")?,
            (200, "ok 1\n".to_string()),
            "the previous release serves again",
        )?;
        ensure(!h.exists("/srv/shop/releases/2")?, || {
            "the failed release was kept".to_string()
        })?;
        ensure_eq(
            releases(h)?["releases"][0]["state"].as_str(),
            Some("failed"),
            "release 2",
        )
    })
}

#[test]
fn rollback_release_without_and_with_the_database() -> Res {
    with_app_host("deploy-rollback", |h| {
        setup(h, 5)?;
        deploy_ok(h)?;
        commit(
            h,
            "echo 2 > VERSION && printf \"CREATE TABLE reviews (id int);\\nINSERT INTO items (name) VALUES ('plum');\\n\" > migrations/002_plum.sql",
            "version 2",
        )?;
        deploy_ok(h)?;
        let v2 = (200, "version 2; items: apple, pear, plum\n".to_string());
        ensure_eq(get(h, "/")?, v2.clone(), "release 2")?;

        // Code only: the database keeps release 2's migration.
        let out = h.strackt(&["rollback-release", "shop"])?;
        ensure(out.success(), || format!("rollback-release: {out}"))?;
        ensure_eq(live_link(h)?, "releases/1".to_string(), "current")?;
        ensure_eq(
            get(h, "/")?,
            (200, "version 1; items: apple, pear, plum\n".to_string()),
            "old code, same data",
        )?;

        let out = h.strackt(&["rollback-release", "shop", "2"])?;
        ensure(out.success(), || format!("forward again: {out}"))?;
        ensure_eq(get(h, "/")?, v2, "release 2 again")?;

        // With the database: the dump taken before release 2's migration is restored.
        let out = h.strackt(&["rollback-release", "shop", "1", "--with-database"])?;
        ensure(
            out.success() && out.stdout.contains("restore-database"),
            || format!("rollback with database: {out}"),
        )?;
        ensure_eq(
            get(h, "/")?,
            (200, "version 1; items: apple, pear\n".to_string()),
            "old code, old data",
        )?;
        let left = h.sh_ok("runuser -u postgres -- psql -d shop -tAc \"SELECT to_regclass('reviews') IS NULL, (SELECT count(*) FROM schema_migrations)\"")?;
        ensure_eq(
            left.trim().to_string(),
            "t|1".to_string(),
            "the later migration's table and record are gone",
        )?;
        let rel = releases(h)?;
        ensure_eq(rel["live"].as_u64(), Some(1), "live")?;
        // Nothing to restore from: refused before any change.
        let out = h.strackt(&["rollback-release", "shop", "2", "--with-database"])?;
        ensure(
            !out.success() && out.stderr.contains("no database dump"),
            || format!("{out}"),
        )?;
        ensure_eq(live_link(h)?, "releases/1".to_string(), "unchanged")
    })
}

#[test]
fn keep_releases_prunes_old_ones_and_one_deploy_runs_at_a_time() -> Res {
    with_app_host("deploy-keep", |h| {
        setup(h, 2)?;
        deploy_ok(h)?;
        commit(h, "echo 2 > VERSION", "2")?;
        deploy_ok(h)?;
        commit(
            h,
            "cp scripts/build /tmp/b && echo 'exit 1' > scripts/build",
            "broken",
        )?;
        ensure(!deploy(h)?.success(), || {
            "broken build deployed".to_string()
        })?;
        // A slow install: a second deploy (and a rollback) meanwhile are refused.
        commit(
            h,
            "cp /tmp/b scripts/build && echo 3 > VERSION && printf 'sleep 4\\n' >> scripts/install",
            "slow",
        )?;
        background(
            h,
            "strackt deploy shop > /tmp/first.log 2>&1; echo $? > /tmp/first.rc",
        )?;
        h.sh_ok("sleep 1.5")?;
        for args in [&["deploy", "shop"][..], &["rollback-release", "shop"][..]] {
            let second = h.strackt(args)?;
            ensure(
                !second.success() && second.stderr.contains("of app shop is in progress"),
                || format!("{args:?} during a deploy: {second}"),
            )?;
        }
        h.sh_ok("for i in $(seq 150); do [ -e /tmp/first.rc ] && exit 0; sleep 0.2; done; exit 1")?;
        ensure_eq(
            h.read("/tmp/first.rc")?.trim().to_string(),
            "0".to_string(),
            "the first deploy finished",
        )?;
        commit(h, "echo 4 > VERSION", "4")?;
        deploy_ok(h)?;
        // Releases 1..5: 3 failed (deleted at once), 4 and 5 kept, 1 and 2 pruned.
        let dirs = h.sh_ok("ls /srv/shop/releases | sort -n | tr '\\n' ' '")?;
        ensure_eq(
            dirs.trim().to_string(),
            "4 5".to_string(),
            "release directories",
        )?;
        let private = h.sh_ok("ls /var/lib/strackt/apps/shop/releases | sort -n | tr '\\n' ' '")?;
        ensure_eq(
            private.trim().to_string(),
            "4 5".to_string(),
            "private files of pruned and failed releases go with them",
        )?;
        let rel = releases(h)?;
        let states: Vec<String> = rel["releases"]
            .as_array()
            .ok_or("releases")?
            .iter()
            .map(|r| format!("{}:{}", r["id"], r["state"].as_str().unwrap_or("?")))
            .collect();
        ensure_eq(
            states.join(" "),
            "5:live 4:previous 3:failed 2:removed 1:removed".to_string(),
            "release states",
        )?;
        // The older one kept is a working rollback target.
        ensure(h.strackt(&["rollback-release", "shop"])?.success(), || {
            "rollback to 4".to_string()
        })?;
        ensure_eq(
            get(h, "/health")?,
            (200, "ok 3\n".to_string()),
            "release 4 serves",
        )
    })
}
