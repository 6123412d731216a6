//! Backups and restores (issue 5) on real hosts with PostgreSQL, restic and a local
//! S3-compatible server (s3s-fs, which checks signatures; `tests/tools/s3-server`), whose
//! storage directory on the machine is mounted into every host of a test — the same bucket,
//! seen from two servers.
//!
//! 1. Host A backs up twice (two different dumps in a row) into a repository the restic CLI
//!    created; the official `restic` CLI, with only the key and the storage credentials, lists,
//!    checks and restores the files and the dump; a fresh host B with the imported key
//!    restores A's latest backup: rows and files identical.
//! 2. A missing snapshot, a wrong key and an unreachable destination are clear errors and
//!    the app is neither stopped nor changed; a failing run is loud (status, metrics); an
//!    upload cut off by killing the S3 server leaves no snapshot, and the next run succeeds;
//!    `backup verify` finds a lost pack; a failing dump leaves no snapshot; `keep:` prunes.
//! 3. `strackt check` rejects too-frequent schedules and unknown timezones; the schedule
//!    preview is right across Berlin's DST changes; a scheduled run fires in the daemon, and a
//!    run missed while the daemon was down runs once at start.

use std::path::PathBuf;
use std::time::Duration;

use strackt_integration::{ensure, ensure_eq, wait_until, with_app_host_binds, Host, Res};

use crate::deploy::{background, definition, deploy_ok, get, setup_with};

const BACKUPS: &str = r#"backups:
  shop:
    database: true
    paths: [storage/uploads]
    to:
      s3: { endpoint: "http://127.0.0.1:9000", bucket: backups, prefix: shop, credentials: { secret: s3_backup } }
    schedule: daily
    timezone: Europe/Berlin
    keep: { last: 10 }
    stalled_after: 30s
"#;

/// The restic repository as a user would name it, for the official CLI.
pub const RESTIC: &str = "export RESTIC_REPOSITORY=s3:http://127.0.0.1:9000/backups/shop AWS_ACCESS_KEY_ID=strackt-ak AWS_SECRET_ACCESS_KEY=strackt-sk; R='-o s3.bucket-lookup=path'";

/// Records, until [`scratch_seen`], every `*strackt-restore*` name that appears in the app's
/// directory and every name that appears in its restore scratch in strackt's state.
const SCRATCH_WATCH: &str = r#"
import os
seen = set()
out = open("/tmp/scratch-seen", "a")
while not os.path.exists("/tmp/scratch-stop"):
    for d, tag in (("/srv/shop", "app:"), ("/var/lib/strackt/apps/shop/restore", "state:")):
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for n in names:
            if (tag == "state:" or "strackt-restore" in n) and tag + n not in seen:
                seen.add(tag + n)
                out.write(tag + n + "\n")
                out.flush()
"#;

/// Start watching where a restore puts its scratch (see [`SCRATCH_WATCH`]).
pub fn watch_scratch(h: &Host) -> Res {
    h.write("/tmp/scratch-watch.py", SCRATCH_WATCH, 0o644)?;
    h.sh_ok("rm -f /tmp/scratch-seen /tmp/scratch-stop && touch /tmp/scratch-seen && systemd-run --quiet --collect --unit=scratch-watch python3 /tmp/scratch-watch.py")?;
    Ok(())
}

/// Stop the watch: the `*strackt-restore*` names seen in the app's directory, and the names
/// seen in the restore scratch in strackt's state.
pub fn scratch_seen(h: &Host) -> Res<(Vec<String>, Vec<String>)> {
    h.sh_ok("touch /tmp/scratch-stop; for i in $(seq 100); do systemctl is-active -q scratch-watch || exit 0; sleep 0.1; done; exit 1")?;
    let seen = h.read("/tmp/scratch-seen")?;
    let of = |tag: &str| -> Vec<String> {
        seen.lines()
            .filter_map(|l| l.strip_prefix(tag))
            .map(String::from)
            .collect()
    };
    Ok((of("app:"), of("state:")))
}

/// A restore's scratch was in strackt's state only (`db-<op>`, `files-<op>`), never in the
/// app's directory (`app_dir_seen` beyond the names in `planted`), and is gone afterwards.
pub fn scratch_only_in_state(
    h: &Host,
    (app_dir_seen, state_seen): (Vec<String>, Vec<String>),
    planted: &[&str],
) -> Res {
    let in_app: Vec<&String> = app_dir_seen
        .iter()
        .filter(|n| !planted.contains(&n.as_str()))
        .collect();
    ensure(in_app.is_empty(), || {
        format!("restore scratch created in the app's directory: {in_app:?}")
    })?;
    ensure(state_seen.iter().any(|n| n.starts_with("files-")), || {
        format!("no files scratch seen in /var/lib/strackt/apps/shop/restore: {state_seen:?}")
    })?;
    ensure_eq(
        h.sh_ok("ls -A /var/lib/strackt/apps/shop/restore; stat -c '%a %U %G' /var/lib/strackt/apps/shop/restore")?,
        "700 root root\n".to_string(),
        "the restore scratch is gone, its directory root-only",
    )
}

/// The S3 server (`STRACKT_TEST_S3`; tests/run builds it into /var/cache/strackt-tools).
fn s3_server() -> PathBuf {
    std::env::var_os("STRACKT_TEST_S3").map_or_else(
        || PathBuf::from("/var/cache/strackt-tools/s3/bin/strackt-test-s3"),
        PathBuf::from,
    )
}

/// A bucket store on the machine, shared by the hosts of one test; removed on drop.
pub struct Bucket(PathBuf);

impl Bucket {
    pub fn new(tag: &str) -> Res<Bucket> {
        let dir = std::env::temp_dir().join(format!("strackt-s3-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("backups"))?;
        Ok(Bucket(dir))
    }

    /// Bind mounts for a host: the store at /srv/s3, the server binary under /opt/s3s.
    pub fn binds(&self) -> Res<Vec<String>> {
        let bin = s3_server();
        let dir = bin.parent().ok_or("STRACKT_TEST_S3 has no directory")?;
        ensure(bin.is_file(), || {
            format!(
                "{} missing: tests/run builds it from tests/tools/s3-server",
                bin.display()
            )
        })?;
        Ok(vec![
            format!("{}:/srv/s3", self.0.display()),
            format!("{}:/opt/s3s", dir.display()),
        ])
    }
}

impl Drop for Bucket {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Start the S3 server inside the host (its storage is the shared bucket store).
pub fn start_s3(h: &Host) -> Res {
    h.sh_ok("systemd-run --quiet --unit=s3 --collect /opt/s3s/strackt-test-s3 --port 9000 --access-key strackt-ak --secret-key strackt-sk /srv/s3 && for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:9000/ && exit 0; sleep 0.1; done; exit 1")?;
    Ok(())
}

/// The app deployed with backups to the local bucket, and (unless `key` is given to import)
/// a new team key; returns the key.
pub fn prepare(h: &Host, key: Option<&str>, deploy: bool) -> Res<String> {
    setup_with(h, &format!("{}{BACKUPS}", definition(5)))?;
    h.write(
        "/etc/strackt/secrets/s3_backup",
        "AWS_ACCESS_KEY_ID=strackt-ak\nAWS_SECRET_ACCESS_KEY=strackt-sk\n",
        0o600,
    )?;
    start_s3(h)?;
    if deploy {
        deploy_ok(h)?;
    }
    match key {
        Some(k) => {
            h.sh_ok(&format!("echo '{k}' | strackt backup key import"))?;
            Ok(k.to_string())
        }
        None => key_init(h),
    }
}

/// `strackt backup key init`, which must succeed; returns the key it printed.
pub fn key_init(h: &Host) -> Res<String> {
    let out = h.strackt(&["backup", "key", "init"])?;
    ensure(out.success(), || format!("key init: {out}"))?;
    Ok(out
        .stdout
        .split_whitespace()
        .find(|w| w.starts_with("stk1-"))
        .ok_or_else(|| format!("no key printed: {out}"))?
        .to_string())
}

/// `strackt backup run shop`, which must succeed; returns the run id.
pub fn backup_ok(h: &Host) -> Res<String> {
    let out = h.strackt(&["backup", "run", "shop"])?;
    ensure(out.success(), || format!("backup run: {out}"))?;
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("backup ") && l.contains(" of shop: "))
        .ok_or_else(|| format!("no summary: {out}"))?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .ok_or("no run id")?
        .to_string())
}

/// The step actions of the newest operation.
fn steps(h: &Host) -> Res<Vec<String>> {
    let ops: serde_json::Value = h.strackt(&["history", "--json"])?.json_ok()?;
    Ok(ops[0]["steps"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|x| x["action"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

pub fn runs(h: &Host, server: Option<&str>) -> Res<Vec<serde_json::Value>> {
    let mut args = vec!["backup", "list", "shop", "--json"];
    if let Some(s) = server {
        args.extend(["--server", s]);
    }
    let v: serde_json::Value = h.strackt(&args)?.json_ok()?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

/// `sha256sum` of every upload, sorted, relative paths.
pub fn uploads(h: &Host, dir: &str) -> Res<String> {
    h.sh_ok(&format!(
        "cd {dir} && find . -type f -print0 | sort -z | xargs -0 sha256sum"
    ))
}

pub fn items(h: &Host, db: &str) -> Res<String> {
    Ok(h.sh_ok(&format!("runuser -u postgres -- psql -d {db} -tAc \"SELECT string_agg(name, ',' ORDER BY id) FROM items\""))?
        .trim()
        .to_string())
}

#[test]
fn backup_on_one_server_and_restore_onto_a_fresh_one() -> Res {
    let bucket = Bucket::new("ab")?;
    let binds = bucket.binds()?;
    let (mut key, mut run, mut sums, mut server_a) =
        (String::new(), String::new(), String::new(), String::new());
    with_app_host_binds("backup-a", &binds, |a| {
        key = prepare(a, None, true)?;
        a.sh_ok("cd /srv/shop/shared/storage/uploads && mkdir -p 2026/11 && head -c 300000 /dev/urandom > 2026/11/photo.jpg && echo hello > note.txt && chown -R shop: .")?;
        // The repository itself is written by the restic CLI: strackt backs up into it.
        a.sh_ok(&format!("{RESTIC}; RESTIC_PASSWORD='{key}' restic $R init"))?;
        let first = backup_ok(a)?;
        let ops: serde_json::Value = a.strackt(&["history", "--json"])?.json_ok()?;
        ensure(
            ops[0]["steps"][0]["action"] == "repository" && ops[0]["steps"][0]["output"].is_null(),
            || {
                format!(
                    "strackt created a repository instead of using restic's: {}",
                    ops[0]
                )
            },
        )?;
        // A second, different dump right after: the latest backup must hold the new rows.
        a.sh_ok(
            "runuser -u postgres -- psql -d shop -qc \"INSERT INTO items (name) VALUES ('kiwi')\"",
        )?;
        run = backup_ok(a)?;
        ensure(first != run, || "two runs, one id".to_string())?;
        let listed = runs(a, None)?;
        ensure_eq(listed.len(), 2, "runs listed")?;
        ensure_eq(
            listed[0]["run"].as_str(),
            Some(run.as_str()),
            "newest first",
        )?;
        ensure(
            listed[0]["snapshots"]["database"].is_string()
                && listed[0]["snapshots"]["files"].is_string(),
            || format!("{listed:?}"),
        )?;
        // The files did not change: the second run shares the first run's files snapshot.
        ensure_eq(
            steps(a)?,
            ["unchanged", "database", "server", "retention"]
                .map(String::from)
                .to_vec(),
            "steps of the second run",
        )?;
        ensure_eq(
            listed[0]["snapshots"]["files"].clone(),
            listed[1]["snapshots"]["files"].clone(),
            "files snapshot of the two runs",
        )?;
        // Nothing changed at all: nothing is read (nor forgotten), and that run is what B
        // restores below.
        run = backup_ok(a)?;
        ensure_eq(
            steps(a)?,
            ["unchanged", "server"].map(String::from).to_vec(),
            "steps of a run with no change",
        )?;
        let listed = runs(a, None)?;
        ensure_eq(listed.len(), 3, "runs listed")?;
        // Each run, the one made only of shared snapshots too, tells its own trigger.
        ensure(listed.iter().all(|r| r["trigger"] == "cli"), || {
            format!("triggers: {listed:?}")
        })?;
        ensure(!a.journal(500).contains(&key), || {
            "the key is in the journal".to_string()
        })?;
        ensure(
            !a.sh_ok("grep -rl -- 'stk1-' /var/lib/strackt/generations /etc/strackt || true")?
                .contains('/'),
            || "the key is in a generation or the definition".to_string(),
        )?;
        sums = uploads(a, "/srv/shop/shared/storage/uploads")?;
        server_a = a.sh_ok("hostname")?.trim().to_string();

        // The official restic CLI, with only the key and the storage credentials.
        let restored = a.sh_ok(&format!(
            "{RESTIC}; export RESTIC_PASSWORD='{key}'; set -e
             files=$(restic $R snapshots --json --tag run={run},kind=files | jq -r '.[0].id')
             db=$(restic $R snapshots --json --tag run={run},kind=database | jq -r '.[0].id')
             restic $R restore \"$files\" --target /tmp/r >/dev/null
             runuser -u postgres -- createdb -O shop scratch
             restic $R dump \"$db\" /shop.pgdump | PGPASSWORD=pw-shop pg_restore -h 127.0.0.1 -U shop -d scratch --no-owner
             restic $R check --read-data >/dev/null && echo checked"
        ))?;
        ensure(restored.contains("checked"), || {
            format!("restic check: {restored}")
        })?;
        ensure_eq(
            uploads(a, "/tmp/r/srv/shop/shared/storage/uploads")?,
            sums.clone(),
            "files restored by restic",
        )?;
        ensure_eq(
            items(a, "scratch")?,
            "apple,pear,kiwi".to_string(),
            "dump restored by restic + pg_restore",
        )?;

        // A transaction open during a run commits after it: the database is "unchanged" to
        // nobody — the next run dumps again and holds the row.
        background(a, "runuser -u postgres -- psql -d shop -qc \"BEGIN; INSERT INTO items (name) VALUES ('durian'); SELECT pg_sleep(6); COMMIT\"")?;
        wait_until("the open transaction", Duration::from_secs(10), || {
            Ok(a.sh_ok("runuser -u postgres -- psql -tAc \"SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(6)%' AND state = 'active' AND pid <> pg_backend_pid()\"")?.trim() == "1")
        })?;
        backup_ok(a)?;
        wait_until("the commit", Duration::from_secs(20), || {
            Ok(items(a, "shop")?.contains("durian"))
        })?;
        let after = backup_ok(a)?;
        ensure(steps(a)?.iter().any(|s| s == "database"), || {
            "a transaction that committed after the last run was taken for no change".to_string()
        })?;
        let rows = a.sh_ok(&format!(
            "{RESTIC}; export RESTIC_PASSWORD='{key}'; restic $R dump \"$(restic $R snapshots --json --tag run={after},kind=database | jq -r '.[0].id')\" /shop.pgdump | grep -ac durian"
        ))?;
        ensure_eq(
            rows.trim(),
            "1",
            "the late-committed row in the newest dump",
        )
    })?;

    with_app_host_binds("backup-b", &binds, |b| {
        // Fresh hardware: an empty database, the app never deployed here.
        prepare(b, Some(&key), false)?;
        let theirs = runs(b, Some(&server_a))?;
        ensure(theirs.iter().any(|r| r["run"] == run.as_str()), || {
            format!("A's run not listed on B: {theirs:?}")
        })?;
        watch_scratch(b)?;
        let out = b.strackt(&["restore", "shop", &run])?;
        let seen = scratch_seen(b)?;
        ensure(out.success(), || format!("restore: {out}"))?;
        scratch_only_in_state(b, seen, &[])?;
        for step in [
            "check",
            "stop",
            "restore-database",
            "restore-files",
            "preflight",
            "switch",
            "health",
        ] {
            ensure(out.stdout.contains(&format!("ok     {step}")), || {
                format!("{step} not done: {out}")
            })?;
        }
        ensure_eq(
            get(b, "/")?,
            (200, "version 1; items: apple, pear, kiwi\n".to_string()),
            "the app serves the restored rows",
        )?;
        ensure_eq(
            uploads(b, "/srv/shop/current/storage/uploads/")?,
            sums.clone(),
            "uploads identical",
        )?;
        // The redeploy keeps the restored dump as its pre-migrate dump instead of taking one.
        let ops: serde_json::Value = b.strackt(&["history", "--json"])?.json_ok()?;
        let dump = ops[0]["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|x| x["action"] == "dump"))
            .cloned()
            .unwrap_or_default();
        ensure(
            dump["outcome"] == "ok"
                && dump["output"]
                    .as_str()
                    .is_some_and(|o| o.contains("the database as restored")),
            || format!("dump step of the restore: {dump}"),
        )?;
        ensure_eq(
            b.sh_ok("ls -A /srv/shop | grep strackt-restore || true; ls -A /var/lib/strackt/apps/shop/restore")?,
            String::new(),
            "scratch copies of the dump and the files left behind",
        )?;
        ensure_eq(
            b.stat("/var/lib/strackt/apps/shop/releases/1/pre-migrate.dump")?,
            "600 root root".to_string(),
            "the restored dump, kept in strackt's own state",
        )?;
        ensure_eq(
            b.stat("/srv/shop/shared/storage/uploads/note.txt")?,
            "644 shop shop".to_string(),
            "owned by the app user here",
        )
    })
}

#[test]
fn refusals_leave_the_app_alone_and_an_interrupted_upload_leaves_no_snapshot() -> Res {
    let bucket = Bucket::new("refuse")?;
    let binds = bucket.binds()?;
    with_app_host_binds("backup-refuse", &binds, |h| {
        prepare(h, None, true)?;
        let run = backup_ok(h)?;
        let pid = h.main_pid("strackt-app-shop.service")?;
        let untouched = |what: &str| -> Res {
            ensure_eq(
                h.main_pid("strackt-app-shop.service")?,
                pid,
                &format!("{what}: app process"),
            )?;
            ensure_eq(get(h, "/")?.0, 200, &format!("{what}: app serving"))
        };

        let out = h.strackt(&["restore", "shop", "no-such-run"])?;
        ensure(
            !out.success() && out.stdout.contains("no backup `no-such-run` of shop"),
            || format!("missing snapshot: {out}"),
        )?;
        untouched("missing snapshot")?;

        h.sh_ok("cp /var/lib/strackt/vault/backup.key /root/key && echo stk1-wrong > /var/lib/strackt/vault/backup.key")?;
        let out = h.strackt(&["restore", "shop", &run])?;
        ensure(
            !out.success() && out.stdout.contains("the backup key does not open"),
            || format!("wrong key: {out}"),
        )?;
        untouched("wrong key")?;
        h.sh_ok("cp /root/key /var/lib/strackt/vault/backup.key")?;

        h.sh_ok("systemctl stop s3")?;
        let out = h.strackt(&["restore", "shop", &run])?;
        ensure(
            !out.success() && out.stdout.contains("is unreachable"),
            || format!("unreachable: {out}"),
        )?;
        untouched("unreachable")?;
        // A failing run is loud.
        let out = h.strackt(&["backup", "run", "shop"])?;
        ensure(!out.success(), || {
            format!("backup to a stopped server succeeded: {out}")
        })?;
        let status: serde_json::Value = h.strackt(&["status", "--json"])?.json_ok()?;
        ensure_eq(
            status["backups"]["shop"]["last_outcome"].as_str(),
            Some("failed"),
            "status",
        )?;
        let (_, metrics) = h.http_get("/metrics")?;
        ensure(
            metrics.contains("strackt_backup_failures_total{app=\"shop\"} 1\n"),
            || format!("metrics: {metrics}"),
        )?;

        // Cut off mid-upload: the S3 server is killed while the files go up.
        start_s3(h)?;
        h.sh_ok("head -c 400000000 /dev/urandom > /srv/shop/shared/storage/uploads/big.bin")?;
        background(h, "strackt backup run shop > /tmp/cut.log 2>&1")?;
        // Once restic reports bytes read ("12.3 MB read, 3%"): the upload is under way.
        wait_until(
            "the files step reading",
            std::time::Duration::from_secs(60),
            || {
                Ok(h.sh_ok("strackt history --json | jq -e '.[0].steps[] | select(.action == \"files\" and .outcome == \"running\" and (.detail | test(\"[1-9][0-9.]* [kMG]?B read\")))' >/dev/null && echo yes")
                .is_ok_and(|o| o.contains("yes")))
            },
        )?;
        h.sh_ok("systemctl kill -s KILL s3")?;
        wait_until(
            "the cut-off run to end",
            std::time::Duration::from_secs(120),
            || {
                Ok(h.sh_ok("strackt history --json | jq -r '.[0].outcome'")?
                    .trim()
                    != "running")
            },
        )?;
        let last: serde_json::Value = h.strackt(&["history", "--json"])?.json_ok()?;
        ensure_eq(
            last[0]["outcome"].as_str(),
            Some("failed"),
            "the cut-off run",
        )?;
        h.sh_ok("systemctl reset-failed s3 2>/dev/null; true")?;
        start_s3(h)?;
        let listed = runs(h, None)?;
        ensure_eq(listed.len(), 1, "only the complete run is listed")?;
        let next = backup_ok(h)?;
        ensure_eq(runs(h, None)?.len(), 2, "the next run is listed")?;
        ensure(next != run, || "new run".to_string())?;

        // A dump that fails (wrong database password) leaves no snapshot: restic is stopped
        // before it sees the end of the stream.
        let before = runs(h, None)?.len();
        let snapshots = || {
            h.sh_ok(&format!("{RESTIC}; RESTIC_PASSWORD=$(cat /var/lib/strackt/vault/backup.key) restic $R snapshots --json | jq length"))
        };
        let count = snapshots()?;
        h.sh_ok("cp /etc/strackt/secrets/shop_db_password /root/pw && echo wrong > /etc/strackt/secrets/shop_db_password")?;
        let out = h.strackt(&["backup", "run", "shop"])?;
        ensure(
            !out.success() && out.stdout.contains("the dump failed"),
            || format!("failing dump: {out}"),
        )?;
        ensure_eq(snapshots()?, count, "snapshots after a failed dump")?;
        ensure_eq(runs(h, None)?.len(), before, "runs after a failed dump")?;
        h.sh_ok("cp /root/pw /etc/strackt/secrets/shop_db_password")?;

        // Retention: keep the newest one (per part: database, files).
        h.put_definition(&format!(
            "{}{}",
            definition(5),
            BACKUPS.replace("keep: { last: 10 }", "keep: { last: 1 }")
        ))?;
        h.apply_ok()?;
        let latest = backup_ok(h)?;
        let left = runs(h, None)?;
        ensure(left.len() == 1 && left[0]["run"] == latest.as_str(), || {
            format!("after keep last 1: {left:?}")
        })?;

        // Verify reads the repository back; a lost pack is found.
        let out = h.strackt(&["backup", "verify", "shop"])?;
        ensure(out.success(), || format!("verify: {out}"))?;
        h.sh_ok("rm \"$(find /srv/s3/backups/shop/data -type f | head -1)\"")?;
        let out = h.strackt(&["backup", "verify", "shop"])?;
        ensure(
            !out.success() && out.stdout.contains("FAILED check"),
            || format!("verify of a damaged repository: {out}"),
        )
    })
}

#[test]
fn schedules_are_checked_previewed_and_run_by_the_daemon() -> Res {
    let bucket = Bucket::new("sched")?;
    let binds = bucket.binds()?;
    with_app_host_binds("backup-sched", &binds, |h| {
        prepare(h, None, true)?;
        let bad = format!(
            "{}{}",
            definition(5),
            BACKUPS
                .replace("schedule: daily", "schedule: \"*/5 * * * *\"")
                .replace("Europe/Berlin", "Europe/Berln")
        );
        h.write("/root/bad.yaml", &bad, 0o644)?;
        let out = h.strackt(&["check", "/root/bad.yaml"])?;
        ensure(!out.success(), || "a 5-minute schedule passed".to_string())?;
        for want in [
            "backups.shop.schedule: \"*/5 * * * *\" runs 5 minutes apart",
            "backups.shop.timezone: unknown timezone \"Europe/Berln\"",
        ] {
            ensure(
                out.stderr.contains(want) && out.stderr.contains("/root/bad.yaml:"),
                || format!("{want:?} not in {out}"),
            )?;
        }

        let dst = format!(
            "{}{}",
            definition(5),
            BACKUPS.replace("schedule: daily", "schedule: \"30 2 * * *\"")
        );
        h.write("/root/dst.yaml", &dst, 0o644)?;
        let spring = h
            .strackt(&[
                "backup",
                "schedule",
                "shop",
                "--file",
                "/root/dst.yaml",
                "--next",
                "3",
                "--from",
                "2026-03-28T12:00:00Z",
            ])?
            .ok()?;
        ensure(
            spring.contains("Sun 2026-03-29 03:00 CEST   2026-03-29 01:00 UTC")
                && spring.contains("Mon 2026-03-30 02:30 CEST   2026-03-30 00:30 UTC"),
            || spring.clone(),
        )?;
        let autumn = h
            .strackt(&[
                "backup",
                "schedule",
                "shop",
                "--file",
                "/root/dst.yaml",
                "--next",
                "2",
                "--from",
                "2026-10-24T12:00:00Z",
            ])?
            .ok()?;
        ensure(
            autumn.contains("Sun 2026-10-25 02:30 CEST   2026-10-25 00:30 UTC")
                && autumn.contains("Mon 2026-10-26 02:30 CET   2026-10-26 01:30 UTC"),
            || autumn.clone(),
        )?;

        // A daily run two minutes from now fires in the daemon.
        let at = |ahead: i64| -> Res<String> {
            let t = h.sh_ok(&format!("date -u -d '+{ahead} seconds' '+%M %H'"))?;
            Ok(format!("\"{} * * *\"", t.trim()))
        };
        let scheduled = |schedule: &str| {
            format!(
                "{}{}",
                definition(5),
                BACKUPS
                    .replace("schedule: daily", &format!("schedule: {schedule}"))
                    .replace("Europe/Berlin", "UTC")
            )
        };
        h.put_definition(&scheduled(&at(120)?))?;
        let by_schedule = || -> Res<usize> {
            let ops: serde_json::Value = h.strackt(&["history", "--json"])?.json_ok()?;
            Ok(ops.as_array().map_or(0, |a| {
                a.iter()
                    .filter(|o| {
                        o["kind"] == "backup"
                            && o["trigger"] == "schedule"
                            && o["outcome"] == "success"
                    })
                    .count()
            }))
        };
        wait_until(
            "a scheduled backup",
            std::time::Duration::from_secs(240),
            || Ok(by_schedule()? == 1),
        )?;

        // Missed while the daemon is down: it runs once when the daemon is back.
        h.put_definition(&scheduled(&at(75)?))?;
        h.sh_ok("sleep 20; systemctl stop strackt")?;
        h.sh_ok("sleep 75")?;
        h.sh_ok("systemctl start strackt")?;
        wait_until(
            "the missed backup",
            std::time::Duration::from_secs(120),
            || Ok(by_schedule()? == 2),
        )?;
        h.sh_ok("sleep 20")?;
        ensure_eq(by_schedule()?, 2, "the missed run ran once")
    })
}
