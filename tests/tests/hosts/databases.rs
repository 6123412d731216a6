//! `databases:` (issue 14) on a real host with PostgreSQL: strackt, running as a systemd
//! service, creates the declared roles and databases, puts back what is dropped or changed by
//! hand, and never drops or empties anything, also when an entry leaves the definition.
//!
//! One host for every check: declare and apply (the role logs in with its secret and owns its
//! database) → a row written survives a re-apply → a database dropped and a password changed by
//! hand come back on the next pass → an entry removed is announced by `strackt plan` and left
//! as it is, its rows included → with PostgreSQL stopped, a new entry fails naming it, and
//! nothing else changes, while a pass that adds nothing still succeeds.

use strackt_integration::{ensure, ensure_eq, with_app_host, Host, Res};

use crate::HEADER;

fn definition(entries: &str) -> String {
    format!("{HEADER}databases:\n{entries}")
}

const SHOP: &str = "  shop: { password: { secret: shop_db } }\n";
const SHOP_LOG: &str = "  shop_log: { owner: shop, password: { secret: shop_db } }\n";

/// `sql` run as role `shop` over TCP with password `pw`, the way an app logs in.
fn as_shop(h: &Host, db: &str, pw: &str, sql: &str) -> Res<String> {
    h.write("/tmp/q.sql", sql, 0o644)?;
    Ok(h.sh_ok(&format!(
        "PGPASSWORD={pw} psql -X -h 127.0.0.1 -U shop -d {db} -tA -v ON_ERROR_STOP=1 -f /tmp/q.sql"
    ))?
    .trim()
    .to_string())
}

/// Owner of each database (`name|owner`, sorted), as the superuser sees it.
fn owners(h: &Host) -> Res<String> {
    Ok(h.sh_ok(
        "cd / && runuser -u postgres -- psql -X -tA -c \"SELECT datname || '|' || pg_get_userbyid(datdba) FROM pg_database WHERE datname LIKE 'shop%' OR datname = 'blog' ORDER BY convert_to(datname, 'UTF8')\"",
    )?
    .trim()
    .to_string())
}

#[test]
fn declared_databases_are_created_repaired_and_never_dropped() -> Res {
    with_app_host("databases", |h| {
        h.sh_ok("mkdir -p /etc/strackt/secrets && chmod 700 /etc/strackt/secrets")?;
        h.write("/etc/strackt/secrets/shop_db", "pw-shop\n", 0o600)?;
        ensure_eq(owners(h)?, String::new(), "nothing before strackt")?;
        h.install(&definition(&format!("{SHOP}{SHOP_LOG}")))?;
        h.apply_ok()?;
        ensure_eq(
            owners(h)?,
            "shop|shop\nshop_log|shop".to_string(),
            "created, owned by the role",
        )?;
        ensure_eq(
            as_shop(h, "shop", "pw-shop", "SELECT current_user;")?,
            "shop".to_string(),
            "the role logs in with its secret",
        )?;
        as_shop(
            h,
            "shop",
            "pw-shop",
            "CREATE TABLE items (name text); INSERT INTO items VALUES ('kept');",
        )?;
        let passwd = |h: &Host| {
            h.sh_ok("cd / && runuser -u postgres -- psql -X -tA -c \"SELECT rolpassword FROM pg_authid WHERE rolname = 'shop'\"")
        };
        let verifier = passwd(h)?;
        ensure(verifier.starts_with("SCRAM-SHA-256$"), || {
            format!("a SCRAM verifier is stored: {verifier}")
        })?;
        let journal = h.sh_ok("journalctl -u strackt --no-pager -o cat")?;
        ensure(!journal.contains("pw-shop"), || {
            "the password reached the journal".to_string()
        })?;

        // A re-apply changes nothing: the password is recognized, the row stays.
        h.apply_ok()?;
        let plan = h.strackt(&["plan"])?;
        ensure(plan.code == Some(0), || format!("nothing to do: {plan}"))?;
        ensure_eq(passwd(h)?, verifier, "the password is not set again")?;
        ensure_eq(
            as_shop(h, "shop", "pw-shop", "SELECT name FROM items;")?,
            "kept".to_string(),
            "the row after a re-apply",
        )?;

        // Drift: dropped and changed by hand, put back by the next pass.
        h.sh_ok("cd / && runuser -u postgres -- psql -X -q -c 'DROP DATABASE shop_log' -c \"ALTER ROLE shop PASSWORD 'by-hand'\"")?;
        let plan = h.strackt(&["plan"])?;
        ensure(
            plan.stdout.contains("would create-database shop_log")
                && plan.stdout.contains(
                    "would set-role-password shop  (password differs from its secret, drift)",
                ),
            || format!("the plan shows the drift: {plan}"),
        )?;
        h.apply_ok()?;
        ensure_eq(
            owners(h)?,
            "shop|shop\nshop_log|shop".to_string(),
            "the dropped database is back",
        )?;
        ensure_eq(
            as_shop(h, "shop_log", "pw-shop", "SELECT current_database();")?,
            "shop_log".to_string(),
            "the secret logs in again",
        )?;

        // Removed from the definition: announced, then left with its rows.
        h.write("/tmp/next.yaml", &definition(SHOP_LOG), 0o644)?;
        let plan = h.strackt(&["plan", "--definition", "/tmp/next.yaml"])?;
        ensure(
            plan.stdout.contains(
                "leave database shop  (no longer in the definition: kept with its data and owner, no longer managed)",
            ),
            || format!("the plan says the database is left alone: {plan}"),
        )?;
        h.put_definition(&definition(SHOP_LOG))?;
        h.apply_ok()?;
        ensure_eq(
            as_shop(h, "shop", "pw-shop", "SELECT name FROM items;")?,
            "kept".to_string(),
            "the row after the entry's removal",
        )?;

        // No PostgreSQL: the new entry is named, the switch rolls back, nothing is created.
        h.sh_ok("systemctl stop postgresql.service")?;
        h.apply()?
            .ok()
            .map_err(|e| format!("a pass with PostgreSQL stopped leaves what exists alone: {e}"))?;
        let generation = h.active_generation()?;
        h.put_definition(&definition(&format!(
            "{SHOP_LOG}  blog: {{ owner: writer }}\n"
        )))?;
        let out = h.apply()?;
        ensure(
            !out.success()
                && out.text().contains("databases.blog: PostgreSQL is not installed, not running or refused the change"),
            || format!("the failure names the entry: {out}"),
        )?;
        ensure_eq(h.active_generation()?, generation, "rolled back")?;
        h.sh_ok("systemctl start postgresql.service")?;
        ensure_eq(
            owners(h)?,
            "shop|shop\nshop_log|shop".to_string(),
            "nothing created without PostgreSQL",
        )?;
        Ok(())
    })
}
