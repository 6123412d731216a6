//! Deploys are all or nothing through the database (issue 13): the sample app of `deploy.rs`
//! on a real host with PostgreSQL, and failing deploys one after another on it.
//!
//! 1. A migration that fails halfway (one migration committed, the next failing), a `cache`
//!    step failing after a good migration, and a release failing its health check after the
//!    switch each leave the database exactly as before (schema and rows), with the live release
//!    serving; a release that fails to boot in validation migrates nothing.
//! 2. When putting the database back fails, the deploy says so, keeps the dump, and the command
//!    it names puts the database back by hand; so for a deploy cut off by killing strackt
//!    during its migration; with `restore_on_failure: false` a failed deploy leaves the
//!    database as the migration left it, and says so.

use strackt_integration::{ensure, ensure_eq, with_app_host, Host, Operation, Out, Res};

use crate::deploy::{
    background, commit, definition, deploy, deploy_ok, get, live_link, releases, setup,
};

/// Per table of the app's database: its row count and a checksum of its rows.
const ROWS_SQL: &str = "SELECT format('SELECT %L, count(*), md5(coalesce(string_agg(t::text, %L ORDER BY t::text), %L)) FROM %I.%I t', tablename, '|', '', schemaname, tablename) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY schemaname, tablename \\gexec\n";

/// The database as a user could tell it apart: a checksum of its schema (`pg_dump
/// --schema-only`, without comments and pg_dump's per-run `\restrict` keys), then each table
/// with its row count and a checksum of its rows.
fn fingerprint(h: &Host) -> Res<String> {
    h.write("/tmp/rows.sql", ROWS_SQL, 0o644)?;
    h.sh_ok(
        "cd / && runuser -u postgres -- pg_dump --schema-only shop | grep -v -e '^--' -e '^\\\\restrict' -e '^\\\\unrestrict' | md5sum | cut -c1-32 && runuser -u postgres -- psql -X -d shop -tA -f /tmp/rows.sql",
    )
}

/// The newest deploy operation.
fn last_deploy(h: &Host) -> Res<Operation> {
    h.history()?
        .into_iter()
        .find(|o| o.kind == "deploy")
        .ok_or_else(|| "no deploy operation".into())
}

/// Deploy, which must fail at `step`; the newest deploy operation.
fn deploy_failing_at(h: &Host, step: &str) -> Res<(Out, Operation)> {
    let out = deploy(h)?;
    ensure(!out.success(), || {
        format!("{step}: the deploy succeeded: {out}")
    })?;
    ensure(out.stdout.contains(&format!("FAILED {step} ")), || {
        format!("{step} not named as failed: {out}")
    })?;
    Ok((out, last_deploy(h)?))
}

/// The deploy shows the restore and says the database was put back; the database is as
/// `before`, and release 1 serves on it.
fn put_back(h: &Host, what: &str, (out, op): &(Out, Operation), before: &str) -> Res {
    ensure(out.stdout.contains("ok     restore-database"), || {
        format!("{what}: no restore shown: {out}")
    })?;
    ensure(
        op.steps.iter().any(|s| {
            s.action == "restore-database"
                && s.outcome == "ok"
                && s.target.contains("from the pre-migrate dump")
        }),
        || format!("{what}: the history shows no restore: {}", op.text()),
    )?;
    ensure(
        op.reason.as_deref().is_some_and(|r| {
            r.contains("the database was put back as it was before the migration")
        }),
        || format!("{what}: reason {:?}", op.reason),
    )?;
    serving_release_1(h, what, before)
}

/// Release 1 is live and serves on the database as it was (`before`).
fn serving_release_1(h: &Host, what: &str, before: &str) -> Res {
    ensure_eq(
        fingerprint(h)?,
        before.to_string(),
        &format!("{what}: the database (schema checksum, then table, rows, rows checksum)"),
    )?;
    ensure_eq(
        live_link(h)?,
        "releases/1".to_string(),
        &format!("{what}: current"),
    )?;
    ensure_eq(
        get(h, "/")?,
        (200, "version 1; items: apple, pear\n".to_string()),
        &format!("{what}: the live release serves on the schema it knows"),
    )
}

/// A good migration: changes rows of an existing table, adds rows, creates a table, and
/// creates what is not a table (a type, a schema, a sequence, a view, a function), which would
/// make it fail when run again if a restore left any of it behind.
const GOOD_MIGRATION: &str = "printf \"UPDATE items SET name = 'green apple' WHERE name = 'apple';\\nINSERT INTO items (name) VALUES ('fig');\\nCREATE TABLE reviews (id serial PRIMARY KEY, body text);\\nINSERT INTO reviews (body) VALUES ('good');\\nCREATE TYPE mood AS ENUM ('happy');\\nCREATE SCHEMA analytics;\\nCREATE TABLE analytics.visits (id int);\\nCREATE SEQUENCE tickets;\\nCREATE VIEW answer AS SELECT 42 AS answer;\\nCREATE FUNCTION answer_of() RETURNS int LANGUAGE sql AS 'SELECT 42';\\n\" > migrations/002_fig.sql";

/// A migration that fails (after the ones before it were committed, each on its own).
const BAD_MIGRATION: &str =
    "printf 'ALTER TABLE no_such_table ADD COLUMN x int;\\n' > migrations/009_bad.sql";

#[test]
fn a_deploy_failing_after_its_migration_started_puts_the_database_back() -> Res {
    with_app_host("deploy-db", |h| {
        setup(h, 5)?;
        deploy_ok(h)?;
        let before = fingerprint(h)?;
        let pid = h.main_pid("strackt-app-shop.service")?;

        // Halfway: 002 is committed (rows changed, a table created), 009 fails.
        commit(
            h,
            &format!("echo 2 > VERSION && {GOOD_MIGRATION} && {BAD_MIGRATION}"),
            "halfway",
        )?;
        let failed = deploy_failing_at(h, "migrate")?;
        ensure(failed.0.stdout.contains("applying 002_fig.sql"), || {
            format!("the first migration ran: {}", failed.0)
        })?;
        put_back(h, "a migration failing halfway", &failed, &before)?;
        ensure_eq(
            h.main_pid("strackt-app-shop.service")?,
            pid,
            "the live process was not touched",
        )?;
        let rel = releases(h)?;
        ensure_eq(
            rel["releases"][0]["state"].as_str(),
            Some("failed"),
            "release 2",
        )?;
        ensure(
            !h.exists("/srv/shop/releases/2")?
                && !h.exists("/var/lib/strackt/apps/shop/releases/2")?,
            || "the failed release and its dump are deleted once the database is back".to_string(),
        )?;
        commit(h, "git rm -q migrations/009_bad.sql", "only the good one")?;

        // `cache` fails after a good migration.
        commit(
            h,
            "cp scripts/cache /tmp/cache.ok && printf 'echo cache server unreachable >&2\\nexit 1\\n' > scripts/cache",
            "break cache",
        )?;
        let failed = deploy_failing_at(h, "cache")?;
        ensure(failed.0.stdout.contains("ok     migrate"), || {
            format!("the migration succeeded first: {}", failed.0)
        })?;
        put_back(h, "cache failing after the migration", &failed, &before)?;
        commit(h, "cp /tmp/cache.ok scripts/cache", "fix cache")?;

        // The health check after the switch fails: switched back, then the database put back.
        commit(
            h,
            "echo 8000 > FAIL_HEALTH_ON_PORT",
            "unhealthy on the live port",
        )?;
        let failed = deploy_failing_at(h, "health")?;
        for line in ["ok     migrate", "ok     switch", "ok     switch-back"] {
            ensure(failed.0.stdout.contains(line), || {
                format!("{line:?} not in: {}", failed.0)
            })?;
        }
        let order: Vec<&str> = failed.1.steps.iter().map(|s| s.action.as_str()).collect();
        ensure(
            order.ends_with(&["switch", "health", "switch-back", "restore-database"]),
            || format!("the database is put back after switching back: {order:?}"),
        )?;
        put_back(h, "health failing after the switch", &failed, &before)?;
        commit(h, "git rm -q FAIL_HEALTH_ON_PORT", "healthy")?;

        // The release cannot boot (it passes `validate`, which does not serve): the migration
        // waiting in it never runs (the pre-migrate dump, taken while the release boots, goes
        // with the failed release).
        // (The switch and switch-back above restarted the live process.)
        let pid = h.main_pid("strackt-app-shop.service")?;
        commit(
            h,
            "cp app.py /tmp/app.ok && printf 'import sys\\nif \"--check\" not in sys.argv:\\n    sys.exit(\"this release cannot boot\")\\n' | cat - /tmp/app.ok > app.py",
            "cannot boot",
        )?;
        let (out, op) = deploy_failing_at(h, "validate-boot")?;
        ensure(out.stdout.contains("ok     validate "), || {
            format!("validate passed first: {out}")
        })?;
        ensure(
            !op.steps
                .iter()
                .any(|s| ["migrate", "restore-database"].contains(&s.action.as_str())),
            || format!("nothing migrated, nothing to put back: {}", op.text()),
        )?;
        for dump in op.steps.iter().filter(|s| s.action == "dump") {
            ensure(!h.exists(&dump.target)?, || {
                format!("the failed release's dump {} was kept", dump.target)
            })?;
        }
        serving_release_1(h, "a release failing to boot", &before)?;
        ensure_eq(
            h.main_pid("strackt-app-shop.service")?,
            pid,
            "the live process was not touched",
        )?;

        // Fixed: the same migration deploys.
        commit(h, "cp /tmp/app.ok app.py", "boots again")?;
        deploy_ok(h)?;
        ensure_eq(
            get(h, "/")?,
            (
                200,
                "version 2; items: green apple, pear, fig\n".to_string(),
            ),
            "the fixed release with its migration",
        )
    })
}

#[test]
fn a_failed_restore_is_told_with_the_command_and_the_opt_out_keeps_the_migration() -> Res {
    with_app_host("deploy-db-keep", |h| {
        setup(h, 5)?;
        deploy_ok(h)?;
        let before = fingerprint(h)?;

        // The migration leaves the app's role unable to write (a setting a role may give
        // itself), then fails: strackt's restore, as that role, cannot drop a table.
        commit(
            h,
            &format!("echo 2 > VERSION && {GOOD_MIGRATION} && printf 'ALTER ROLE shop SET default_transaction_read_only = on;\\n' > migrations/003_lock.sql && {BAD_MIGRATION}"),
            "locks the database",
        )?;
        let (out, op) = deploy_failing_at(h, "migrate")?;
        ensure(out.stdout.contains("FAILED restore-database"), || {
            format!("the failed restore is shown: {out}")
        })?;
        let reason = op.reason.clone().unwrap_or_default();
        ensure(
            reason.contains("PUTTING THE DATABASE BACK FAILED")
                && reason.contains("read-only transaction"),
            || format!("the reason names the failed restore: {reason}"),
        )?;
        let id = releases(h)?["releases"][0]["id"]
            .as_u64()
            .ok_or("no release id")?;
        let dump = format!("/var/lib/strackt/apps/shop/releases/{id}/pre-migrate.dump");
        ensure(reason.contains(&format!("kept at {dump}")), || {
            format!("the reason names the dump: {reason}")
        })?;
        ensure(h.exists(&dump)?, || format!("{dump} was deleted"))?;
        ensure_eq(
            live_link(h)?,
            "releases/1".to_string(),
            "current after the failed restore",
        )?;
        // The operator lifts the lock and runs the command the reason names.
        let by_hand = reason
            .split_once("by hand with:\n")
            .map(|(_, cmd)| cmd.trim().to_string())
            .ok_or_else(|| format!("no command in: {reason}"))?;
        h.sh_ok("runuser -u postgres -- psql -X -q -c 'ALTER ROLE shop RESET default_transaction_read_only'")?;
        h.sh_ok(&by_hand)?;
        serving_release_1(h, "restored by hand", &before)?;

        // strackt killed while a migration runs (after 002 was committed): the next start
        // keeps the dump and the release's reason says how to put it back.
        commit(
            h,
            "git rm -q migrations/003_lock.sql migrations/009_bad.sql && printf 'SELECT pg_sleep(20);\\n' > migrations/004_slow.sql",
            "slow",
        )?;
        background(h, "strackt deploy shop > /tmp/cut.log 2>&1")?;
        h.sh_ok(r#"for i in $(seq 600); do n=$(cd / && runuser -u postgres -- psql -X -d shop -tAc "SELECT count(*) FROM schema_migrations WHERE name = '002_fig.sql'" 2>/dev/null); [ "$n" = 1 ] && exit 0; sleep 0.1; done; exit 1"#)?;
        h.sh_ok(
            "systemctl kill -s KILL strackt.service; sleep 0.5; systemctl start strackt.service",
        )?;
        let rel = releases(h)?;
        let cut = &rel["releases"][0];
        ensure_eq(cut["state"].as_str(), Some("failed"), "the cut-off release")?;
        let reason = cut["reason"].as_str().unwrap_or_default().to_string();
        let dump = format!(
            "/var/lib/strackt/apps/shop/releases/{}/pre-migrate.dump",
            cut["id"]
        );
        ensure(
            reason.starts_with("strackt stopped during the deploy, after the pre-migrate dump")
                && reason.contains(&format!("kept at {dump}")),
            || format!("the cut-off release's reason: {reason}"),
        )?;
        ensure(h.exists(&dump)?, || format!("{dump} was deleted"))?;
        ensure_eq(
            get(h, "/")?,
            (
                200,
                "version 1; items: green apple, pear, fig\n".to_string(),
            ),
            "release 1 serves on what the cut-off migration left",
        )?;
        let by_hand = reason
            .split_once("by hand with:\n")
            .map(|(_, cmd)| cmd.trim().to_string())
            .ok_or_else(|| format!("no command in: {reason}"))?;
        h.sh_ok(&by_hand)?;
        serving_release_1(h, "restored by hand after strackt was cut off", &before)?;

        // Opted out: the same halfway migration stays.
        h.put_definition(&definition(5).replace(
            "migrate: sh scripts/migrate",
            "migrate: { run: sh scripts/migrate, restore_on_failure: false }",
        ))?;
        h.apply_ok()?;
        commit(
            h,
            &format!("git rm -q migrations/004_slow.sql && {BAD_MIGRATION}"),
            "halfway again",
        )?;
        let (out, op) = deploy_failing_at(h, "migrate")?;
        ensure(
            !op.steps.iter().any(|s| s.action == "restore-database"),
            || format!("restored despite the opt-out: {out}"),
        )?;
        ensure(
            op.reason.as_deref().is_some_and(|r| {
                r.contains("the database was NOT put back (restore_on_failure: false): it stays as the migration left it")
            }),
            || format!("reason {:?}", op.reason),
        )?;
        ensure_eq(
            h.sh_ok("runuser -u postgres -- psql -X -d shop -tAc \"SELECT to_regclass('reviews') IS NOT NULL\"")?
                .trim()
                .to_string(),
            "t".to_string(),
            "the migrated table stays",
        )?;
        ensure_eq(live_link(h)?, "releases/1".to_string(), "current")?;
        ensure_eq(
            get(h, "/")?,
            (
                200,
                "version 1; items: green apple, pear, fig\n".to_string(),
            ),
            "the live release serves on the migrated database",
        )
    })
}
