//! 7. Every version is kept: retention prunes old generation directories (and the .debs only
//!    they needed), never their records. `strackt generations --all` lists every generation
//!    with how it ended, and `strackt rollback N` to a pruned one rebuilds it from its record
//!    (fetching its packages again), says so, and switches to it like any rollback; one that
//!    cannot be rebuilt (its package version is gone) is refused with the reason, host unchanged.

use std::time::Duration;

use strackt_integration::{ensure, ensure_eq, wait_until, with_host, Host, Res};

use crate::apt_repo::ROOT;
use crate::packages::local_repository;

/// Generation `n`: its own motd; the first also pins a package from the test archive, the
/// eighth has a service whose health check fails (so it is rolled back).
fn definition(n: u32) -> String {
    let packages = if n == 1 {
        "packages:\n  strackt-demo: \"1.0\"\n"
    } else {
        ""
    };
    let health = if n == 8 {
        "    health: { command: \"/bin/false\" }\n"
    } else {
        ""
    };
    format!(
        "version: 1\nstrackt:\n  interval: 1h\n  keep_generations: 3\n{packages}files:\n  /etc/motd: {{ content: \"generation {n}\\n\" }}\nservices:\n  hello:\n    exec: /usr/bin/sleep infinity\n{health}"
    )
}

/// Ids of the generation directories on disk.
fn on_disk(h: &Host) -> Res<Vec<u64>> {
    let mut ids: Vec<u64> = h
        .sh_ok("ls /var/lib/strackt/generations")?
        .split_whitespace()
        .filter_map(|d| d.parse().ok())
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

/// `(id, state)` of every generation `strackt generations --all` lists, oldest first.
fn all_generations(h: &Host) -> Res<Vec<(u64, String)>> {
    let gens: Vec<strackt_integration::Generation> =
        h.strackt(&["generations", "--all", "--json"])?.json_ok()?;
    let mut out: Vec<(u64, String)> = gens.into_iter().map(|g| (g.id, g.state)).collect();
    out.sort_unstable();
    Ok(out)
}

#[test]
fn retention_keeps_records_and_a_pruned_generation_is_rebuilt_on_rollback() -> Res {
    with_host("records", |h| {
        local_repository(h)?;
        h.install(&definition(1))?;
        h.apply_ok()?;
        let first_manifest = h.read("/var/lib/strackt/generations/1/manifest.json")?;
        ensure_eq(
            h.read("/usr/share/strackt-demo/version")?.as_str(),
            "1.0\n",
            "the package of generation 1",
        )?;
        // The ids of the generations that became active; the failing definition may build
        // more than one generation (the file watcher's pass and `strackt apply`'s retry).
        let mut good = vec![h.active_generation()?];
        for n in 2..=15 {
            h.put_definition(&definition(n))?;
            let out = h.apply()?;
            ensure(out.success() == (n != 8), || {
                format!("apply of generation {n} (only 8 fails): {out}")
            })?;
            if n != 8 {
                good.push(h.active_generation()?);
            }
        }

        // Every record is listed with how it ended; only the kept directories are on disk.
        let last = *good.last().ok_or("no generation")?;
        let mut want: Vec<(u64, String)> = (1..=last)
            .map(|id| {
                let state = match good.binary_search(&id) {
                    Ok(_) if id == last => "active",
                    Ok(_) => "superseded",
                    Err(_) => "rolled-back",
                };
                (id, state.to_string())
            })
            .collect();
        ensure(
            want.len() >= 15 && want.iter().any(|(_, s)| s == "rolled-back"),
            || format!("15 definitions, one failing, built: {want:?}"),
        )?;
        ensure_eq(all_generations(h)?, want.clone(), "generations --all")?;
        ensure_eq(
            on_disk(h)?,
            good[good.len() - 3..].to_vec(),
            "generation directories (the 3 newest that ran)",
        )?;
        let listed = h.strackt(&["generations", "--all"])?.ok()?;
        ensure(
            listed
                .lines()
                .any(|l| l.trim_start().starts_with("1 ") && l.contains("(directory pruned")),
            || format!("generation 1 is not shown as pruned: {listed}"),
        )?;
        ensure(
            !h.sh_ok("ls /var/cache/strackt/debs")?
                .contains("strackt-demo"),
            || "the .deb only generation 1 needed is still cached".to_string(),
        )?;

        // A record whose package can no longer be downloaded is refused, and nothing changes.
        let pool = format!("{ROOT}/pool/bookworm/strackt-demo_1.0_all.deb");
        h.sh_ok(&format!("mv {pool} /root/"))?;
        let out = h.strackt(&["rollback", "1"])?;
        ensure(
            !out.success()
                && out.text().contains(
                    "generation 1 cannot be rebuilt from its record: package strackt-demo 1.0",
                ),
            || format!("rollback to 1 without its package in the archive: {out}"),
        )?;
        ensure_eq(
            on_disk(h)?,
            good[good.len() - 3..].to_vec(),
            "directories after the refusal",
        )?;
        ensure_eq(
            h.active_generation()?,
            last,
            "active generation after the refusal",
        )?;
        ensure_eq(
            h.read("/etc/motd")?.as_str(),
            "generation 15\n",
            "/etc/motd after the refusal",
        )?;
        h.sh_ok(&format!("mv /root/strackt-demo_1.0_all.deb {pool}"))?;

        // A rollback to the first rebuilds it from its record, fetching its package again.
        let out = h.strackt(&["rollback", "1"])?;
        ensure(out.success(), || format!("rollback to generation 1: {out}"))?;
        ensure_eq(
            h.read("/var/lib/strackt/generations/1/manifest.json")?,
            first_manifest,
            "manifest of the rebuilt generation 1",
        )?;
        ensure_eq(
            h.read("/etc/motd")?.as_str(),
            "generation 1\n",
            "/etc/motd after the rollback",
        )?;
        ensure_eq(
            h.read("/usr/share/strackt-demo/version")?.as_str(),
            "1.0\n",
            "the package of generation 1 after the rollback",
        )?;
        ensure_eq(h.active_generation()?, 1, "active generation")?;
        let history = h.history()?;
        let op = history
            .iter()
            .find(|o| o.kind == "rollback")
            .ok_or_else(|| format!("no rollback in the history: {history:#?}"))?;
        ensure(
            op.outcome == "success"
                && op.steps.first().is_some_and(|s| {
                    s.action == "rebuild"
                        && s.target == "generation 1 from its record"
                        && s.detail
                            .as_deref()
                            .is_some_and(|d| d.contains("fetched again: strackt-demo 1.0"))
                }),
            || format!("the rollback does not say it rebuilt generation 1: {op:#?}"),
        )?;

        // A restart keeps every record.
        h.sh_ok("systemctl restart strackt")?;
        wait_until("strackt to answer again", Duration::from_secs(60), || {
            Ok(h.strackt(&["status"])?.success())
        })?;
        want[0].1 = "active".into();
        if let Some(newest) = want.last_mut() {
            newest.1 = "superseded".into();
        }
        ensure_eq(
            all_generations(h)?,
            want,
            "generations --all after a restart",
        )?;
        ensure_eq(
            h.read("/etc/motd")?.as_str(),
            "generation 1\n",
            "/etc/motd after the restart",
        )?;
        Ok(())
    })
}
