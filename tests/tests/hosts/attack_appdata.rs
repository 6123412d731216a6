//! Attack (issue 10): the app's own code aims root's writes through links in its release.
//!
//! A deploy runs the app's install step as the app's user in the new release, and strackt
//! (root) then takes the pre-migrate dump. Before root-private files moved to strackt's own
//! state, the dump went to `releases/<id>/.strackt/pre-migrate.dump` and the units read
//! `releases/<id>/.strackt/env`: the release's owner could move root's `.strackt` aside, make
//! its own with a usable `env` (from the variables its steps get) and a `pre-migrate.dump`
//! link to `/etc/shadow`, and `pg_dump` overwrote `/etc/shadow` as root. Here:
//!
//! 1. That attack, then `.strackt` → `/etc` in the next release: both deploys succeed, with the
//!    migration; `/etc/shadow` (hash, owner, mode) and `/etc`'s entries are unchanged, the links
//!    stay where the app put them, and each dump is a 0600 root file in
//!    `/var/lib/strackt/apps/shop/releases/<id>/` that `rollback-release --with-database` then
//!    restores from.
//! 2. Releases made before the move keep their files in the release: a rollback takes the
//!    environment file over when strackt itself wrote it (root's 0700 `.strackt`, no link), and
//!    refuses, changing nothing, to take over a dump where the app's user had put a link.
//! 3. An app whose live release and unit an older strackt made keeps serving; the next deploy
//!    takes the live release's environment file over (a switch-back or rollback needs it).
//! 4. A backup of `shared/` with the app's user's links in it: a link under a backed-up path is
//!    stored as a link (its root-only target never read), and a backed-up path reached through
//!    a link the user swapped in is refused — no snapshot ever holds root's file.
//! 5. The race that check alone leaves open: the app's user swaps `shared/storage` for a link
//!    to a root-only directory and back, over and over, while backups run. restic reads the
//!    paths strackt pinned (its own mount namespace), so whichever moment a swap lands on, a
//!    run is refused or reads the app's own files — no snapshot ever holds root's file.

use strackt_integration::{ensure, ensure_eq, with_app_host, with_app_host_binds, Host, Out, Res};

use crate::backup::{backup_ok, prepare, runs, Bucket, RESTIC};
use crate::deploy::{commit, definition, deploy_ok, get, setup_with};

/// The sample app's install step plus the attack: the app's user takes `.strackt` over, with
/// a working `env` of its own (so the release passes its validation boot) and a link where
/// root writes the dump.
const INSTALL_DUMP_LINK: &str = r#"#!/bin/sh
set -eu
mkdir -p vendor
echo "psycopg2 from Debian" > vendor/DEPENDENCIES
if [ -e .strackt ] && [ ! -O .strackt ]; then mv .strackt .strackt-root; fi
mkdir -p .strackt
env | grep -E '^(PG[A-Z]*|APP_[A-Z]*)=' | sed 's/=\(.*\)$/="\1"/' > .strackt/env
ln -sfn /etc/shadow .strackt/pre-migrate.dump
echo "installed"
"#;

/// The next attack: `.strackt` itself a link to `/etc` (dump and env land there if followed).
const INSTALL_DIR_LINK: &str = r#"#!/bin/sh
set -eu
mkdir -p vendor
echo "psycopg2 from Debian" > vendor/DEPENDENCIES
if [ -e .strackt ] && [ ! -O .strackt ]; then mv .strackt .strackt-root; fi
ln -sfn /etc .strackt
echo "installed"
"#;

/// What must not change: `/etc/shadow`'s content, owner and mode, and the entries of `/etc`.
#[derive(Debug, Clone, PartialEq)]
struct Etc {
    shadow: String,
    entries: String,
}

fn etc(h: &Host) -> Res<Etc> {
    Ok(Etc {
        shadow: h.sh_ok("sha256sum /etc/shadow; stat -c '%a %U %G' /etc/shadow")?,
        entries: h.sh_ok(
            "find /etc -mindepth 1 -maxdepth 1 -printf '%f %m %u %g %y\\n' | LC_ALL=C sort",
        )?,
    })
}

/// `/etc` as it was `before`; the shadow file first, for a short message.
fn unchanged(h: &Host, before: &Etc, what: &str) -> Res {
    let now = etc(h)?;
    ensure_eq(&now.shadow, &before.shadow, &format!("/etc/shadow {what}"))?;
    ensure_eq(
        &now.entries,
        &before.entries,
        &format!("/etc's entries {what}"),
    )
}

/// The deploy `out` either succeeded and serves `new`, or failed and `old` still serves.
fn safe_or_clean(h: &Host, out: &Out, new: &str, old: &str) -> Res {
    let want = if out.success() { new } else { old };
    ensure_eq(
        get(h, "/")?,
        (200, want.to_string()),
        &format!("what the app serves after the deploy ({out})"),
    )
}

/// Release `id`'s dump: a 0600 root file in strackt's state that pg_restore can read.
fn dump_in_state(h: &Host, id: u64) -> Res {
    let dump = format!("/var/lib/strackt/apps/shop/releases/{id}/pre-migrate.dump");
    ensure_eq(
        h.stat(&dump)?,
        "600 root root".to_string(),
        &format!("release {id}'s dump"),
    )?;
    let tables = h.sh_ok(&format!("pg_restore --list {dump} | grep -c 'TABLE DATA'"))?;
    ensure(tables.trim() != "0", || {
        format!("release {id}'s dump holds no table data")
    })
}

#[test]
fn app_code_cannot_aim_roots_dump_or_env_through_links_in_its_release() -> Res {
    with_app_host("ad-appdata-attack", |h| {
        setup_with(h, &definition(5))?;
        deploy_ok(h)?;
        let v1 = "version 1; items: apple, pear\n";
        ensure_eq(get(h, "/")?, (200, v1.to_string()), "release 1")?;
        let before = etc(h)?;

        // 1a. A dump link to /etc/shadow in a release with a migration.
        h.write("/srv/src/shop/scripts/install", INSTALL_DUMP_LINK, 0o755)?;
        commit(
            h,
            "echo 2 > VERSION && printf \"INSERT INTO items (name) VALUES ('plum');\\n\" > migrations/002_plum.sql",
            "version 2, and a link where the dump goes",
        )?;
        let v2 = "version 2; items: apple, pear, plum\n";
        let out = h.strackt(&["deploy", "shop"])?;
        unchanged(h, &before, "after a dump link to /etc/shadow")?;
        safe_or_clean(h, &out, v2, v1)?;
        ensure(out.success(), || {
            format!("the deploy fails over links it never follows: {out}")
        })?;
        ensure_eq(
            h.sh_ok("readlink /srv/shop/releases/2/.strackt/pre-migrate.dump")?
                .trim()
                .to_string(),
            "/etc/shadow".to_string(),
            "the app's link, left alone",
        )?;
        dump_in_state(h, 2)?;

        // 1b. `.strackt` a link to /etc.
        h.write("/srv/src/shop/scripts/install", INSTALL_DIR_LINK, 0o755)?;
        commit(
            h,
            "echo 3 > VERSION && printf \"INSERT INTO items (name) VALUES ('fig');\\n\" > migrations/003_fig.sql",
            "version 3, and .strackt a link to /etc",
        )?;
        let out = h.strackt(&["deploy", "shop"])?;
        unchanged(h, &before, "after .strackt -> /etc")?;
        safe_or_clean(h, &out, "version 3; items: apple, pear, plum, fig\n", v2)?;
        ensure(out.success(), || format!("deploy of release 3: {out}"))?;
        dump_in_state(h, 3)?;
        ensure_eq(
            h.sh_ok("stat -c '%a %U' /var/lib/strackt/apps/shop /var/lib/strackt/apps/shop/releases/3 /var/lib/strackt/apps/shop/releases/3/env")?,
            "700 root\n700 root\n600 root\n".to_string(),
            "strackt's own directories and the environment file",
        )?;
        // The live unit reads the environment from strackt's state, not from the release.
        ensure(
            h.sh_ok("systemctl cat strackt-app-shop.service")?
                .contains("EnvironmentFile=/var/lib/strackt/apps/shop/current/env\n"),
            || "the live unit's EnvironmentFile".to_string(),
        )?;
        // Going back with the database reads the dump from there.
        let out = h.strackt(&["rollback-release", "shop", "2", "--with-database"])?;
        ensure(out.success(), || {
            format!("rollback with the database: {out}")
        })?;
        ensure_eq(get(h, "/")?, (200, v2.to_string()), "release 2, its data")?;
        unchanged(h, &before, "after the rollback")?;

        // 2. Releases made before the move: release 1's environment file where strackt used
        //    to write it (root's 0700 `.strackt`), release 2's dump only as the app's link.
        h.sh_ok(
            "mkdir -m 700 /srv/shop/releases/1/.strackt \
             && mv /var/lib/strackt/apps/shop/releases/1/env /srv/shop/releases/1/.strackt/env \
             && rm -r /var/lib/strackt/apps/shop/releases/1 \
             && rm /var/lib/strackt/apps/shop/releases/2/pre-migrate.dump",
        )?;
        let out = h.strackt(&["rollback-release", "shop", "1", "--with-database"])?;
        ensure(
            !out.success() && out.stderr.contains("cannot be taken over safely"),
            || format!("a dump behind the app's link is refused: {out}"),
        )?;
        ensure_eq(
            h.sh_ok("readlink /srv/shop/current")?.trim().to_string(),
            "releases/2".to_string(),
            "nothing changed",
        )?;
        unchanged(h, &before, "after the refused rollback")?;
        // Release 3's environment file only where `.strackt` is the app's link to /etc.
        h.sh_ok("rm /var/lib/strackt/apps/shop/releases/3/env")?;
        let out = h.strackt(&["rollback-release", "shop", "3"])?;
        ensure(
            !out.success() && out.text().contains("cannot be taken over safely"),
            || format!("an environment file behind the app's link is refused: {out}"),
        )?;
        ensure_eq(
            get(h, "/")?,
            (200, v2.to_string()),
            "release 2 still serves",
        )?;
        ensure(
            !h.exists("/var/lib/strackt/apps/shop/releases/3/env")?,
            || "nothing taken over".to_string(),
        )?;
        let out = h.strackt(&["rollback-release", "shop", "1"])?;
        ensure(out.success(), || {
            format!("rollback to an old release: {out}")
        })?;
        ensure_eq(
            get(h, "/")?,
            (200, "version 1; items: apple, pear, plum\n".to_string()),
            "release 1 serves with its environment",
        )?;
        ensure_eq(
            h.stat("/var/lib/strackt/apps/shop/releases/1/env")?,
            "600 root root".to_string(),
            "its environment file, taken over",
        )?;
        ensure(
            h.strackt(&["history", "--json"])?
                .stdout
                .contains("taken over from /srv/shop/releases/1/.strackt/env"),
            || "the take-over is in the switch step's output".to_string(),
        )?;
        unchanged(h, &before, "at the end")
    })
}

#[test]
fn a_release_made_before_the_move_keeps_serving_until_a_deploy_takes_it_over() -> Res {
    with_app_host("ad-appdata-legacy", |h| {
        setup_with(h, &definition(5))?;
        deploy_ok(h)?;
        // As an older strackt left it: the files in root's `.strackt` inside the release, the
        // live unit reading them from there, nothing under /var/lib/strackt/apps.
        h.sh_ok(
            "mkdir -m 700 /srv/shop/releases/1/.strackt \
             && mv /var/lib/strackt/apps/shop/releases/1/env /var/lib/strackt/apps/shop/releases/1/pre-migrate.dump /srv/shop/releases/1/.strackt/ \
             && rm -r /var/lib/strackt/apps \
             && sed -i 's|^EnvironmentFile=.*|EnvironmentFile=/srv/shop/current/.strackt/env|' /etc/systemd/system/strackt-app-shop.service \
             && systemctl daemon-reload && systemctl restart strackt-app-shop.service",
        )?;
        let v1 = "version 1; items: apple, pear\n";
        ensure_eq(get(h, "/")?, (200, v1.to_string()), "the old unit serves")?;

        commit(
            h,
            "echo 2 > VERSION && printf \"INSERT INTO items (name) VALUES ('plum');\\n\" > migrations/002_plum.sql",
            "version 2",
        )?;
        deploy_ok(h)?;
        ensure_eq(
            get(h, "/")?,
            (200, "version 2; items: apple, pear, plum\n".to_string()),
            "release 2",
        )?;
        // The switch took release 1's environment file over (it is what a switch-back needs).
        ensure_eq(
            h.stat("/var/lib/strackt/apps/shop/releases/1/env")?,
            "600 root root".to_string(),
            "release 1's environment file, taken over",
        )?;
        let out = h.strackt(&["rollback-release", "shop", "1", "--with-database"])?;
        ensure(out.success(), || format!("rollback to release 1: {out}"))?;
        ensure_eq(get(h, "/")?, (200, v1.to_string()), "release 1, its data")
    })
}

/// Every path in every snapshot of the app's repository (`restic ls`), one a line.
fn stored(h: &Host) -> Res<String> {
    h.sh_ok(&format!(
        "{RESTIC}; export RESTIC_PASSWORD=$(cat /var/lib/strackt/vault/backup.key); set -e
         for s in $(restic $R snapshots --json | jq -r '.[].id'); do restic $R ls \"$s\"; done"
    ))
}

#[test]
fn links_in_shared_never_take_roots_files_into_a_backup() -> Res {
    let bucket = Bucket::new("appdata")?;
    let binds = bucket.binds()?;
    with_app_host_binds("ad-appdata-backup", &binds, |h| {
        prepare(h, None, true)?;
        h.sh_ok(
            "mkdir -m 700 -p /root/private/uploads && echo s3cret > /root/private/uploads/secret \
             && chmod 600 /root/private/uploads/secret",
        )?;
        backup_ok(h)?;

        // A link under the backed-up path: stored as the link, its target never read.
        h.sh_ok(
            "runuser -u shop -- ln -s /root/private/uploads /srv/shop/shared/storage/uploads/evil",
        )?;
        backup_ok(h)?;
        let listed = stored(h)?;
        ensure(listed.contains("/storage/uploads/evil"), || {
            format!("the link itself is in the backup: {listed}")
        })?;
        ensure(!listed.contains("secret"), || {
            format!("root's file behind the link was read: {listed}")
        })?;

        // The backed-up path reached through a link the app's user swapped in: refused.
        let before = runs(h, None)?.len();
        h.sh_ok(
            "runuser -u shop -- sh -c 'mv /srv/shop/shared/storage /srv/shop/shared/storage.away \
             && ln -s /root/private /srv/shop/shared/storage'",
        )?;
        let out = h.strackt(&["backup", "run", "shop"])?;
        ensure(
            !out.success() && out.text().contains("symbolic link"),
            || format!("a path reached through the app's link is refused: {out}"),
        )?;
        ensure_eq(runs(h, None)?.len(), before, "no run recorded")?;
        let listed = stored(h)?;
        ensure(!listed.contains("secret"), || {
            format!("root's file went into a backup: {listed}")
        })
    })
}

/// How many backups run while the app's user swaps links (each has the whole run to lose).
const RACE_RUNS: usize = 10;

/// The app's user, in `shared/`: `storage` and a link to root's directory trade places, over
/// and over, atomically.
const SWAPPER: &str = r#"import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
os.symlink("/root/private", "storage.link")
while True:
    for d in ("storage", "storage.link"):
        try:
            with open(d + "/uploads/now", "w") as f:
                f.write(str(time.time_ns()))
        except OSError:
            pass
    libc.renameat2(-100, b"storage", -100, b"storage.link", 2)
"#;

#[test]
fn a_link_swapped_in_while_a_backup_runs_is_never_followed() -> Res {
    let bucket = Bucket::new("appdata-race")?;
    let binds = bucket.binds()?;
    with_app_host_binds("ad-appdata-race", &binds, |h| {
        prepare(h, None, true)?;
        h.sh_ok(
            "mkdir -m 700 -p /root/private/uploads && echo s3cret > /root/private/uploads/secret \
             && chmod 600 /root/private/uploads/secret",
        )?;
        // The swap is atomic (renameat2 RENAME_EXCHANGE), so `storage` is always there: a dir
        // or the link. A new upload each turn, so every run reads (an unchanged run re-tags).
        h.write("/srv/swap.py", SWAPPER, 0o644)?;
        h.sh_ok(
            "systemd-run --quiet --unit=swapper --uid=shop --gid=shop \
             --working-directory=/srv/shop/shared python3 /srv/swap.py",
        )?;
        let mut read = 0;
        let mut refused = Vec::new();
        for _ in 0..RACE_RUNS {
            let out = h.strackt(&["backup", "run", "shop"])?;
            if out.success() {
                read += 1;
                continue;
            }
            let text = out.text();
            ensure(
                text.contains("symbolic link") || text.contains("does not exist"),
                || format!("a run fails only as refused or missing: {out}"),
            )?;
            refused.push(text);
        }
        h.sh_ok(
            "systemctl stop swapper; cd /srv/shop/shared \
             && if [ -L storage ]; then rm storage; mv -T storage.link storage; else rm storage.link; fi \
             && test -d storage/uploads",
        )?;
        eprintln!(
            "{read} of {RACE_RUNS} runs read while the links were swapped, {} refused",
            refused.len()
        );
        ensure(read > 0, || format!("no run read anything: {refused:?}"))?;
        let listed = stored(h)?;
        ensure(!listed.contains("secret"), || {
            format!("root's file went into a backup: {listed}")
        })
    })
}
