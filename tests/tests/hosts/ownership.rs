//! What strackt owns and keeps: a file that existed before strackt managed it is backed up once
//! and put back when it leaves the definition; files strackt never managed are never touched;
//! `systemctl reload strackt` runs a pass; only `keep_generations` generations stay on disk.

use std::time::Duration;

use strackt_integration::{ensure, ensure_eq, wait_until, with_host, Res};

use crate::HEADER;

#[test]
fn pre_existing_files_are_backed_up_once_and_restored() -> Res {
    with_host("owned", |h| {
        h.write("/etc/app.conf", "theirs\n", 0o600)?;
        let hostname = h.read("/etc/hostname")?;
        let managed = format!(
            "{HEADER}files:\n  /etc/app.conf: {{ content: \"ours\\n\" }}\n  /etc/new.conf: {{ content: \"new\\n\" }}\n"
        );
        h.install(&managed)?;
        h.apply_ok()?;
        ensure_eq(
            h.read("/etc/app.conf")?.as_str(),
            "ours\n",
            "/etc/app.conf managed",
        )?;
        ensure_eq(
            h.read("/var/lib/strackt/backups/etc/app.conf")?.as_str(),
            "theirs\n",
            "backup of the original",
        )?;
        // A second change must not overwrite the backup with strackt's own content.
        h.put_definition(&managed.replace("ours", "ours again"))?;
        h.apply_ok()?;
        ensure_eq(
            h.read("/var/lib/strackt/backups/etc/app.conf")?.as_str(),
            "theirs\n",
            "backup after a second change",
        )?;
        // Dropped from the definition: the original comes back, strackt's own file goes.
        h.put_definition(&format!("{HEADER}files: {{}}\n"))?;
        h.apply_ok()?;
        ensure_eq(
            h.read("/etc/app.conf")?.as_str(),
            "theirs\n",
            "original restored",
        )?;
        ensure_eq(
            h.stat("/etc/app.conf")?.as_str(),
            "600 root root",
            "mode of the restored original",
        )?;
        ensure(!h.exists("/etc/new.conf")?, || {
            "/etc/new.conf left behind".into()
        })?;
        ensure_eq(h.read("/etc/hostname")?, hostname, "an unmanaged file")?;
        Ok(())
    })
}

#[test]
fn systemctl_reload_runs_a_pass() -> Res {
    with_host("sighup", |h| {
        h.install(&format!(
            "{HEADER}files:\n  /etc/motd: {{ content: \"defined\\n\" }}\n"
        ))?;
        h.apply_ok()?;
        h.write("/etc/motd", "by hand\n", 0o644)?;
        h.sh_ok("systemctl reload strackt")?;
        wait_until(
            "the reload's pass to repair /etc/motd",
            Duration::from_secs(20),
            || Ok(h.read("/etc/motd")? == "defined\n"),
        )?;
        let history = h.history()?;
        ensure(
            history
                .iter()
                .any(|op| op.trigger == "signal" && op.told().contains("drift repaired")),
            || format!("no drift repair triggered by the signal in {history:#?}"),
        )?;
        Ok(())
    })
}

#[test]
fn only_keep_generations_stay_on_disk() -> Res {
    with_host("retain", |h| {
        let def = |n: u32| {
            format!("version: 1\nstrackt:\n  interval: 1h\n  keep_generations: 2\nfiles:\n  /etc/motd: {{ content: \"{n}\\n\" }}\n")
        };
        h.install(&def(1))?;
        h.apply_ok()?;
        for n in 2..=4 {
            h.put_definition(&def(n))?;
            h.apply_ok()?;
        }
        let active = h.active_generation()?;
        let dirs = h.sh_ok("ls /var/lib/strackt/generations")?;
        let mut on_disk: Vec<u64> = dirs
            .split_whitespace()
            .filter_map(|d| d.parse().ok())
            .collect();
        on_disk.sort_unstable();
        ensure_eq(
            on_disk.len(),
            2,
            &format!("generation dirs on disk: {dirs:?}"),
        )?;
        ensure(on_disk.contains(&active), || {
            format!("the active generation {active} was deleted: {dirs:?}")
        })?;
        // Only its directory went: the record of a pruned generation is still listed.
        let listed: Vec<u64> = h.generations()?.iter().map(|g| g.id).collect();
        ensure(listed.contains(&1), || {
            format!("the record of pruned generation 1 is gone: {listed:?}")
        })?;
        // The previous one is still a rollback target.
        let out = h.strackt(&["rollback"])?;
        ensure(out.success(), || {
            format!("rollback to the kept previous generation: {out}")
        })?;
        ensure_eq(
            h.read("/etc/motd")?.as_str(),
            "3\n",
            "/etc/motd after rollback",
        )?;
        Ok(())
    })
}
