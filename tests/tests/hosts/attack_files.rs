//! Security issue 10, item 1: root never follows a link another user could have planted. Each
//! test is an attack by an unprivileged local user, or by an app's own repository code (its
//! build step), on a file operation strackt does as root in a directory that user can write;
//! each checks that nothing outside the attacker's own tree changed and that the operation
//! either succeeded safely or failed cleanly.
//!
//! a. alice plants a link to /etc/shadow at the temp name strackt used to write her
//!    `authorized_keys` with, then makes the keys drift; or replaces her `~/.ssh` by a link to
//!    /etc.
//! b. An app's build step replaces a directory of `shared/` by a link to a directory of root's
//!    before the next deploy links the shared paths.
//! c. An app's user replaces `releases/` by a link to a root-owned world-writable directory
//!    holding a root directory named like a release that the next deploy prunes.
//! d. During a restore, a directory of the restored tree is swapped for a link to a directory of
//!    root's while strackt hands the tree to the app's user.
//! e. During a restore, the app's user has planted `.strackt-restore-*` links to /etc in the
//!    app's directory and replaces every new entry there with a link to /etc (where restic, as
//!    root, restored into the scratch strackt used to make there); the scratch, in strackt's
//!    state, is on another filesystem than the app, so the restored files are copied in.

use std::time::Duration;

use strackt_integration::{
    ensure, ensure_eq, wait_until, with_app_host, with_app_host_binds, with_host, Host, Res,
};

use crate::backup::{
    backup_ok, prepare, scratch_only_in_state, scratch_seen, watch_scratch, Bucket,
};
use crate::deploy::{commit, definition, deploy, deploy_ok, get, setup_with};
use crate::HEADER;

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEXAMPLE alice@laptop";

/// What must never change: content, owner and mode of root's files, and listings of root's
/// directories (`extra` adds more paths, files or directories).
fn outside(h: &Host, extra: &[&str]) -> Res<String> {
    let mut paths = vec![
        "/etc/shadow",
        "/etc/passwd",
        "/etc/group",
        "/etc/sudoers",
        "/etc",
        "/etc/apt/apt.conf.d",
    ];
    paths.extend_from_slice(extra);
    let mut script = String::new();
    for p in paths {
        script.push_str(&format!(
            "if [ -d {p} ] && [ ! -L {p} ]; then echo '== {p}'; find {p} -maxdepth 1 -printf '%M %u %g %p\\n' | sort; \
             for f in {p}/*; do [ -f \"$f\" ] && [ ! -L \"$f\" ] && echo \"$(sha256sum < \"$f\" | cut -c1-64) $f\"; done; \
             else echo \"{p} $(stat -c '%F %a %U %G' {p} 2>&1) $(sha256sum < {p} 2>&1 | cut -c1-64)\"; fi\n"
        ));
    }
    h.sh_ok(&script)
}

/// Fail unless `outside` is as it was, showing the difference.
fn unchanged(h: &Host, extra: &[&str], before: &str) -> Res {
    let after = outside(h, extra)?;
    if after == before {
        return Ok(());
    }
    let (b, a): (Vec<&str>, Vec<&str>) = (before.lines().collect(), after.lines().collect());
    let gone: Vec<&&str> = b.iter().filter(|l| !a.contains(l)).collect();
    let new: Vec<&&str> = a.iter().filter(|l| !b.contains(l)).collect();
    Err(
        format!("the attack changed files outside the attacker's tree:\n- {gone:#?}\n+ {new:#?}")
            .into(),
    )
}

fn as_user(h: &Host, user: &str, script: &str) -> Res<String> {
    h.sh_ok(&format!("runuser -u {user} -- sh -c '{script}'"))
}

/// alice existed before strackt took her keys over; her own `~/.ssh` is 0700.
fn alice_with_keys(h: &Host) -> Res {
    h.sh_ok("useradd -m -s /bin/bash alice")?;
    as_user(
        h,
        "alice",
        "mkdir -m 700 ~/.ssh && echo \"ssh-rsa AAAAB3OLD alice@old\" > ~/.ssh/authorized_keys",
    )?;
    h.install(&format!(
        "{HEADER}users:\n  alice:\n    ssh_keys: [\"{KEY}\"]\n"
    ))?;
    h.apply_ok()?;
    ensure_eq(
        h.read("/home/alice/.ssh/authorized_keys")?,
        format!("{KEY}\n"),
        "keys taken over",
    )
}

#[test]
fn a_link_at_the_old_temp_name_does_not_reach_etc_shadow() -> Res {
    with_host("attack-keys-tmp", |h| {
        alice_with_keys(h)?;
        let before = outside(h, &[])?;
        // The issue's exact repro.
        as_user(
            h,
            "alice",
            "ln -s /etc/shadow ~/.ssh/.authorized_keys.strackt-tmp; echo x >> ~/.ssh/authorized_keys",
        )?;
        let out = h.apply()?;
        unchanged(h, &[], &before)?;
        ensure(out.success(), || format!("apply after the attack: {out}"))?;
        ensure_eq(
            h.read("/home/alice/.ssh/authorized_keys")?,
            format!("{KEY}\n"),
            "authorized_keys repaired",
        )?;
        ensure_eq(
            h.sh_ok("stat -c '%F %a %U %G' /home/alice/.ssh/authorized_keys")?
                .trim()
                .to_string(),
            "regular file 600 alice alice".to_string(),
            "authorized_keys is alice's own file",
        )?;
        // Her planted link is hers to remove; strackt left it alone.
        ensure_eq(
            h.sh_ok("readlink /home/alice/.ssh/.authorized_keys.strackt-tmp")?
                .trim()
                .to_string(),
            "/etc/shadow".to_string(),
            "the planted link",
        )?;
        // The keys replaced by a link to /etc/shadow: strackt reads nothing through it (the
        // drift check) and puts a file back in its place.
        as_user(
            h,
            "alice",
            "rm ~/.ssh/authorized_keys; ln -s /etc/shadow ~/.ssh/authorized_keys",
        )?;
        h.apply_ok()?;
        unchanged(h, &[], &before)?;
        ensure_eq(
            h.sh_ok("stat -c '%F %U' /home/alice/.ssh/authorized_keys")?
                .trim()
                .to_string(),
            "regular file alice".to_string(),
            "the link replaced by the keys",
        )?;
        let root_line = h.sh_ok("head -n 1 /etc/shadow")?;
        ensure(
            !h.sh_ok("strackt history --json")?
                .contains(root_line.trim()),
            || "something of /etc/shadow reached the history".into(),
        )
    })
}

#[test]
fn a_home_ssh_dir_linked_to_etc_is_refused() -> Res {
    with_host("attack-keys-dir", |h| {
        alice_with_keys(h)?;
        let before = outside(h, &[])?;
        as_user(
            h,
            "alice",
            "mv ~/.ssh ~/ssh.old && ln -s /etc ~/.ssh && echo x >> ~/ssh.old/authorized_keys",
        )?;
        let out = h.apply()?;
        unchanged(h, &[], &before)?;
        ensure(!h.exists("/etc/authorized_keys")?, || {
            "strackt wrote alice's keys into /etc".into()
        })?;
        // Failed cleanly: the pass says why and changed nothing.
        ensure(
            !out.success()
                && out.text().contains("/home/alice/.ssh")
                && out.text().contains("not followed"),
            || format!("apply through a linked ~/.ssh: {out}"),
        )?;
        // alice puts her directory back: the next pass repairs the keys.
        as_user(h, "alice", "rm ~/.ssh && mv ~/ssh.old ~/.ssh")?;
        h.apply_ok()?;
        unchanged(h, &[], &before)?;
        ensure_eq(
            h.read("/home/alice/.ssh/authorized_keys")?,
            format!("{KEY}\n"),
            "authorized_keys repaired",
        )
    })
}

/// The sample app's build script, plus the attack: `shared/storage` becomes a link to
/// /etc/apt/apt.conf.d.
const BUILD_THAT_LINKS_SHARED: &str = r#"#!/bin/sh
set -eu
mkdir -p public
echo "assets of version $(cat VERSION)" > public/app.txt
if [ ! -L /srv/shop/shared/storage ]; then
    rm -rf /srv/shop/shared/storage
    ln -s /etc/apt/apt.conf.d /srv/shop/shared/storage
fi
echo "built"
"#;

#[test]
fn a_shared_dir_linked_to_a_root_dir_is_not_followed() -> Res {
    with_app_host("attack-shared", |h| {
        setup_with(h, &definition(5))?;
        deploy_ok(h)?;
        // The app's next version: its build step links shared/storage to a directory of root's,
        // and its repository has a file at the shared path, which the next deploy would seed
        // shared/ with — an apt configuration that runs a command as root.
        h.write(
            "/srv/src/shop/scripts/build",
            BUILD_THAT_LINKS_SHARED,
            0o644,
        )?;
        h.sh_ok("mkdir -p /srv/src/shop/storage")?;
        h.write(
            "/srv/src/shop/storage/uploads",
            "APT::Update::Pre-Invoke {\"touch /tmp/pwned\";};\n",
            0o644,
        )?;
        commit(h, "echo 2 > VERSION", "version 2")?;
        let before = outside(h, &[])?;
        deploy_ok(h)?;
        ensure_eq(
            h.sh_ok("readlink /srv/shop/shared/storage")?
                .trim()
                .to_string(),
            "/etc/apt/apt.conf.d".to_string(),
            "the build step planted its link",
        )?;
        // The next deploy links the shared paths again.
        let out = deploy(h)?;
        unchanged(h, &[], &before)?;
        ensure(
            !out.success()
                && out.text().contains("/srv/shop/shared/storage")
                && out.text().contains("not followed"),
            || format!("deploy through a linked shared/ directory: {out}"),
        )?;
        ensure_eq(
            h.sh_ok("readlink /srv/shop/current")?.trim().to_string(),
            "releases/2".to_string(),
            "the live release stays",
        )?;
        ensure_eq(get(h, "/")?.0, 200, "the live release serves")
    })
}

#[test]
fn releases_linked_to_a_root_dir_loses_nothing_to_pruning() -> Res {
    with_app_host("attack-prune", |h| {
        setup_with(h, &definition(1))?;
        deploy_ok(h)?;
        // A directory of root's named like the release the next deploy prunes, in a directory
        // everyone can write.
        h.sh_ok("mkdir -p /tmp/1/data && echo precious > /tmp/1/data/f && chmod 755 /tmp/1")?;
        let extra = ["/tmp/1", "/tmp/1/data"];
        let before = outside(h, &extra)?;
        as_user(
            h,
            "shop",
            "mv /srv/shop/releases /srv/shop/releases.real && ln -s /tmp /srv/shop/releases",
        )?;
        let out = deploy(h)?;
        unchanged(h, &extra, &before)?;
        ensure(
            !out.success()
                && out.text().contains("/srv/shop/releases")
                && out.text().contains("not followed"),
            || format!("deploy through a linked releases/: {out}"),
        )?;
        ensure(h.exists("/srv/shop/releases.real/1/app.py")?, || {
            "the real release 1 is gone".into()
        })
    })
}

/// The app's user, during a restore: once strackt starts handing `uploads/a` to shop (its
/// ctime changes), `a` is swapped for a link to /etc — whose entries `a` mirrors by name, so
/// every name still to be chowned by path would be one of /etc.
const SWAP_DURING_CHOWN: &str = r#"
import os, sys, time
up = "/srv/shop/shared/storage/uploads"
a = up + "/a"
before = os.stat(up).st_ino
deadline = time.time() + 150
def done(what):
    with open("/tmp/attacker.out", "w") as f:
        f.write(what + "\n")
    sys.exit(0)
while True:
    try:
        if os.stat(up).st_ino != before:
            break
    except FileNotFoundError:
        pass
    if time.time() > deadline:
        done("no restore seen")
c0 = os.lstat(a).st_ctime_ns
while os.lstat(a).st_ctime_ns == c0:
    if time.time() > deadline:
        done("no chown seen")
os.rename(a, up + "/a.real")
os.symlink("/etc", a)
done("swapped")
"#;

#[test]
fn a_dir_swapped_for_a_link_during_a_restore_chown_changes_nothing_outside() -> Res {
    let bucket = Bucket::new("attack-restore")?;
    let binds = bucket.binds()?;
    with_app_host_binds("attack-restore", &binds, |h| {
        prepare(h, None, true)?;
        // The uploads mirror the names of everything in /etc.
        h.sh_ok("cd /etc && find . -mindepth 1 -type d > /tmp/etc-dirs && find . -mindepth 1 ! -type d > /tmp/etc-files")?;
        as_user(
            h,
            "shop",
            "cd /srv/shop/shared/storage/uploads && mkdir a && cd a && xargs mkdir -p < /tmp/etc-dirs && xargs touch < /tmp/etc-files",
        )?;
        let run = backup_ok(h)?;
        // Many files to remove before the restored tree is handed over: time for the attacker
        // to see it arrive.
        as_user(
            h,
            "shop",
            "mkdir /srv/shop/shared/storage/uploads/bulk && cd /srv/shop/shared/storage/uploads/bulk && seq 20000 | xargs touch",
        )?;
        h.write("/tmp/attack.py", SWAP_DURING_CHOWN, 0o644)?;
        let before = outside(h, &["/etc/ssl", "/etc/ssl/private", "/etc/systemd"])?;
        h.sh_ok("systemd-run --quiet --collect --unit=attacker --uid=shop python3 /tmp/attack.py")?;
        watch_scratch(h)?;
        let out = h.strackt(&["restore", "shop", &run])?;
        let seen = scratch_seen(h)?;
        wait_until("the attacker", Duration::from_secs(60), || {
            h.exists("/tmp/attacker.out")
        })?;
        let attacker = h.read("/tmp/attacker.out")?;
        unchanged(
            h,
            &["/etc/ssl", "/etc/ssl/private", "/etc/systemd"],
            &before,
        )?;
        ensure_eq(attacker.trim(), "swapped", "the attacker's swap")?;
        ensure(out.success(), || format!("restore: {out}"))?;
        scratch_only_in_state(h, seen, &[])?;
        // What was restored is shop's: the real tree, now under the name the attacker gave it.
        ensure_eq(
            h.sh_ok("find /srv/shop/shared/storage/uploads/a.real ! -user shop | head -5")?,
            String::new(),
            "the restored tree is shop's",
        )
    })
}

/// The app's user, during a restore: links to /etc at scratch names planted beforehand, then
/// every new entry of the app's directory (not a link: `current`'s temporary link is strackt
/// pointing the app's own link) renamed away and replaced by a link to /etc.
const REPLACE_NEW_ENTRIES: &str = r#"
import os, time
app = "/srv/shop"
for n in ("x", "0", "latest"):
    os.symlink("/etc", app + "/.strackt-restore-" + n)
known = set(os.listdir(app))
log = open("/tmp/attacker.log", "w")
log.write("planted\n")
log.flush()
deadline = time.time() + 300
moved = 0
while not os.path.exists("/tmp/attacker-stop") and time.time() < deadline:
    for name in os.listdir(app):
        if name in known:
            continue
        known.add(name)
        p = app + "/" + name
        try:
            if os.path.islink(p):
                continue
            moved += 1
            known.add(".moved-%d" % moved)
            os.rename(p, app + "/.moved-%d" % moved)
            os.symlink("/etc", p)
            log.write("swapped " + name + "\n")
        except OSError as e:
            log.write("missed %s: %s\n" % (name, e))
        log.flush()
log.write("stopped\n")
log.flush()
"#;

#[test]
fn links_planted_at_the_restore_scratch_in_the_app_dir_reach_nothing() -> Res {
    let bucket = Bucket::new("attack-scratch")?;
    let binds = bucket.binds()?;
    with_app_host_binds("attack-scratch", &binds, |h| {
        prepare(h, None, true)?;
        h.sh_ok("cd /srv/shop/shared/storage/uploads && mkdir -p 2026/11 && head -c 300000 /dev/urandom > 2026/11/photo.jpg && echo hello > note.txt && ln -s note.txt latest && chown -R shop: .")?;
        let sums = crate::backup::uploads(h, "/srv/shop/shared/storage/uploads")?;
        let run = backup_ok(h)?;
        h.sh_ok("echo changed > /srv/shop/shared/storage/uploads/note.txt")?;
        // strackt's state on another filesystem than the app: the restored files are copied
        // into shared/, not renamed.
        h.sh_ok("mkdir -p /var/lib/strackt/apps/shop/restore && mount -t tmpfs -o mode=0700 tmpfs /var/lib/strackt/apps/shop/restore")?;
        h.write("/tmp/attack.py", REPLACE_NEW_ENTRIES, 0o644)?;
        let before = outside(h, &[])?;
        h.sh_ok("rm -f /tmp/attacker.log /tmp/attacker-stop && systemd-run --quiet --collect --unit=attacker --uid=shop python3 /tmp/attack.py")?;
        wait_until("the attacker's links", Duration::from_secs(30), || {
            Ok(h.exists("/tmp/attacker.log")? && h.read("/tmp/attacker.log")?.contains("planted"))
        })?;
        watch_scratch(h)?;
        let out = h.strackt(&["restore", "shop", &run])?;
        let seen = scratch_seen(h)?;
        h.sh_ok("touch /tmp/attacker-stop")?;
        wait_until("the attacker to stop", Duration::from_secs(30), || {
            Ok(h.read("/tmp/attacker.log")?.contains("stopped"))
        })?;
        let attacker = h.read("/tmp/attacker.log")?;
        unchanged(h, &[], &before)?;
        ensure(!attacker.contains("strackt-restore"), || {
            format!("the attacker swapped a restore scratch: {attacker}")
        })?;
        ensure(out.success(), || {
            format!("restore: {out}\nattacker: {attacker}")
        })?;
        scratch_only_in_state(
            h,
            seen,
            &[
                ".strackt-restore-x",
                ".strackt-restore-0",
                ".strackt-restore-latest",
            ],
        )?;
        ensure_eq(
            crate::backup::uploads(h, "/srv/shop/shared/storage/uploads")?,
            sums,
            "uploads restored",
        )?;
        ensure_eq(
            h.sh_ok("readlink /srv/shop/shared/storage/uploads/latest; find /srv/shop/shared/storage/uploads ! -user shop | head -5")?,
            "note.txt\n".to_string(),
            "the restored link is a link, everything is shop's",
        )
    })
}
