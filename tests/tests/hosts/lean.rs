//! Issue 16, a lean core: what a user sees of it besides speed (which `tests/bench` shows).
//!
//! - An idle daemon hands back the memory the last pass left resident: its code pages (the
//!   file-backed part of its RSS) drop once it has been idle for two seconds, and the next
//!   pass works as before (maps them back) and still repairs drift.
//! - A rollback restarts every changed service (queued together) with the rolled-back
//!   environment, and `strackt status --json` names the time of each phase of it (no settle
//!   wait: the generation already passed its settle here; `rollback` checks that an apply
//!   still waits it).

use strackt_integration::{ensure, with_host, Host, Res};

use crate::{environ, running_pid, HEADER};

/// RssFile and VmRSS (kB) of the daemon, read right after running `before` in the same shell.
fn daemon_rss(h: &Host, before: &str) -> Res<(u64, u64)> {
    let out = h.sh_ok(&format!(
        "{before} && pid=$(systemctl show -p MainPID --value strackt.service) && \
         awk '/^RssFile:/ {{f=$2}} /^VmRSS:/ {{r=$2}} END {{print f, r}}' /proc/$pid/status"
    ))?;
    let mut fields = out.split_whitespace().map(str::parse::<u64>);
    match (fields.next(), fields.next()) {
        (Some(Ok(file)), Some(Ok(rss))) => Ok((file, rss)),
        _ => Err(format!("no RssFile/VmRSS for the daemon: {out:?}").into()),
    }
}

#[test]
fn an_idle_daemon_hands_back_its_code_pages_and_its_next_pass_works() -> Res {
    with_host("lean-idle", |h| {
        h.install(&format!(
            "{HEADER}files:\n  /etc/lean.conf: {{ content: \"one\\n\" }}\n\
             services:\n  lean:\n    exec: /usr/bin/sleep infinity\n"
        ))?;
        h.apply_ok()?;
        // Right after a pass its code is mapped; after 4 s of nothing most of it is not.
        let (busy_file, busy_rss) = daemon_rss(h, "strackt apply >/dev/null")?;
        let (idle_file, idle_rss) = daemon_rss(h, "sleep 4")?;
        ensure(idle_file * 2 < busy_file, || {
            format!(
                "file-backed RSS {busy_file} kB right after a pass, still {idle_file} kB after 4 s idle (VmRSS {busy_rss} -> {idle_rss} kB)"
            )
        })?;
        ensure(idle_rss < busy_rss, || {
            format!("VmRSS {busy_rss} kB right after a pass, {idle_rss} kB after 4 s idle")
        })?;
        // The pages come back on use: drift is still found and repaired.
        h.write("/etc/lean.conf", "changed by hand\n", 0o644)?;
        h.apply_ok()?;
        ensure(h.read("/etc/lean.conf")? == "one\n", || {
            "the hand edit of /etc/lean.conf was not repaired after the idle release".to_string()
        })?;
        Ok(())
    })
}

fn services(tag: &str) -> String {
    let mut d = format!("{HEADER}services:\n");
    for i in 1..=4 {
        d.push_str(&format!(
            "  lean-{i}:\n    exec: /usr/bin/sleep infinity\n    environment: {{ TAG: \"{tag}\" }}\n"
        ));
    }
    d
}

#[test]
fn a_rollback_restarts_every_changed_service_and_names_its_phases() -> Res {
    with_host("lean-rollback", |h| {
        h.install(&services("one"))?;
        h.apply_ok()?;
        let g1 = h.active_generation()?;
        h.put_definition(&services("two"))?;
        h.apply_ok()?;
        let before: Vec<u32> = (1..=4)
            .map(|i| running_pid(h, &format!("lean-{i}.service")))
            .collect::<Res<_>>()?;
        let out = h.strackt(&["rollback", &g1.to_string()])?;
        ensure(out.success(), || format!("`strackt rollback {g1}`: {out}"))?;
        for (i, old) in (1..=4).zip(before) {
            let unit = format!("lean-{i}.service");
            let pid = running_pid(h, &unit)?;
            ensure(pid != old, || {
                format!("{unit} kept MainPID {old} across the rollback")
            })?;
            let env = environ(h, pid)?;
            ensure(env.iter().any(|e| e == "TAG=one"), || {
                format!("{unit} runs without TAG=one after the rollback: {env:?}")
            })?;
        }
        let status: serde_json::Value = h.strackt(&["status", "--json"])?.json_ok()?;
        let phases = status["last_pass_phases_us"]
            .as_object()
            .ok_or_else(|| format!("no last_pass_phases_us after the rollback: {status:#}"))?;
        for phase in ["write-unit", "daemon-reload", "restart", "verify"] {
            ensure(phases.get(phase).is_some_and(|us| us.is_u64()), || {
                format!("phase {phase} missing after the rollback: {phases:?}")
            })?;
        }
        ensure(!phases.contains_key("settle"), || {
            format!("the rollback waited to settle: {phases:?}")
        })?;
        Ok(())
    })
}
