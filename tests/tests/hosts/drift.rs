//! 5. Drift: hand edits of managed files, stopped/disabled services and deleted unit files are
//!    put back by the next pass, be it `strackt apply` or the timer, and the history says so.

use std::time::Duration;

use strackt_integration::{ensure, ensure_eq, wait_until, with_host, Host, Operation, Res};

fn definition(interval: &str) -> String {
    format!(
        r#"version: 1
strackt:
  interval: {interval}
files:
  /etc/motd: {{ content: "managed motd\n" }}
  /etc/app/app.conf: {{ content: "x=1\n", mode: "0640", owner: root, group: adm }}
  /etc/app/extra.conf: {{ content: "extra\n" }}
services:
  stopped-by-hand:
    exec: /usr/bin/sleep infinity
  disabled-by-hand:
    exec: /usr/bin/sleep infinity
  unit-deleted:
    exec: /usr/bin/sleep infinity
"#
    )
}

const SERVICES: [&str; 3] = [
    "stopped-by-hand.service",
    "disabled-by-hand.service",
    "unit-deleted.service",
];

/// Everything an admin could do by hand to a managed host.
fn make_drift(h: &Host) -> Res {
    h.sh_ok(
        "set -e
         echo 'edited by hand' > /etc/motd
         chmod 0666 /etc/app/app.conf && chown nobody /etc/app/app.conf
         rm /etc/app/extra.conf
         systemctl stop stopped-by-hand.service
         systemctl disable disabled-by-hand.service
         rm /etc/systemd/system/unit-deleted.service
         systemctl daemon-reload",
    )?;
    Ok(())
}

fn converged(h: &Host) -> Res<bool> {
    Ok(h.read("/etc/motd")? == "managed motd\n"
        && h.stat("/etc/app/app.conf")? == "640 root adm"
        && h.exists("/etc/app/extra.conf")?
        && h.exists("/etc/systemd/system/unit-deleted.service")?
        && SERVICES.iter().all(|u| {
            h.is_active(u).is_ok_and(|s| s == "active")
                && h.is_enabled(u).is_ok_and(|s| s == "enabled")
        }))
}

/// A drift operation whose reason or summary says "drift repaired".
fn drift_repair(history: &[Operation], trigger: Option<&str>) -> Res<Operation> {
    history
        .iter()
        .find(|o| o.kind == "drift" && o.outcome == "success" && trigger.is_none_or(|t| o.trigger == t) && o.told().contains("drift repaired"))
        .cloned()
        .ok_or_else(|| format!("no successful drift operation (trigger {trigger:?}) saying \"drift repaired\": {history:#?}").into())
}

#[test]
fn drift_is_repaired_by_apply() -> Res {
    with_host("drift-apply", |h| {
        h.install(&definition("1h"))?;
        h.apply_ok()?;
        ensure(converged(h)?, || {
            "not converged after the first apply".into()
        })?;
        let generation = h.active_generation()?;

        make_drift(h)?;
        ensure(!converged(h)?, || "the hand edits did not stick".into())?;
        let plan = h.strackt(&["plan"])?;
        ensure_eq(
            plan.code,
            Some(2),
            &format!("`strackt plan` on a drifted host: {plan}"),
        )?;

        h.apply_ok()?;
        ensure(converged(h)?, || "`strackt apply` left drift behind".into())?;
        ensure_eq(
            h.read("/etc/systemd/system/unit-deleted.service")
                .map(|u| u.contains("sleep infinity"))?,
            true,
            "restored unit-deleted.service mentions its exec",
        )?;
        let op = drift_repair(&h.history()?, None)?;
        for target in ["/etc/motd", "/etc/app/app.conf", "/etc/app/extra.conf"] {
            ensure(
                op.steps.iter().any(|s| s.drift && s.target == target),
                || format!("no drift step for {target} in {op:#?}"),
            )?;
        }
        ensure(op.told().contains("/etc/motd"), || {
            format!("the operation does not say what drifted: {op:#?}")
        })?;
        // Putting the host back is not a new definition.
        ensure_eq(
            h.active_generation()?,
            generation,
            "active generation after the repair",
        )?;
        let plan = h.strackt(&["plan"])?;
        ensure_eq(
            plan.code,
            Some(0),
            &format!("`strackt plan` after the repair: {plan}"),
        )?;
        Ok(())
    })
}

#[test]
fn drift_is_repaired_by_the_timer() -> Res {
    with_host("drift-timer", |h| {
        h.install(&definition("3s"))?;
        h.apply_ok()?;
        ensure(converged(h)?, || {
            "not converged after the first apply".into()
        })?;

        make_drift(h)?;
        // No command: the 3 s timer must find and repair it.
        wait_until(
            "the timer to repair the drift",
            Duration::from_secs(60),
            || converged(h),
        )?;
        wait_until(
            "a drift operation with trigger timer in the history",
            Duration::from_secs(20),
            || Ok(drift_repair(&h.history()?, Some("timer")).is_ok()),
        )?;
        let status = h.status()?;
        ensure(status.next_pass.is_some(), || {
            format!("status has no next_pass with a 3s timer: {status:#?}")
        })?;
        Ok(())
    })
}

/// The no-op pass does not read a managed file again while its inode, size and times are
/// unchanged. An edit made to look untouched — same size, modification time put back with
/// `touch -r` — is still found: the change time moved, and nobody can set that.
#[test]
fn an_edit_disguised_as_untouched_is_still_found() -> Res {
    with_host("drift-disguised", |h| {
        h.install(&definition("1h"))?;
        h.apply_ok()?;
        // Past the two seconds after which a file's hash is kept, then a pass that keeps it.
        std::thread::sleep(Duration::from_secs(3));
        h.apply_ok()?;
        h.sh_ok(
            "set -e
             cp -p /etc/motd /root/motd.times
             printf 'MANAGED MOTD\\n' > /etc/motd
             touch -r /root/motd.times /etc/motd
             test \"$(stat -c '%s %Y' /etc/motd)\" = \"$(stat -c '%s %Y' /root/motd.times)\"",
        )?;
        h.apply_ok()?;
        ensure_eq(
            h.read("/etc/motd")?,
            "managed motd\n".to_string(),
            "/etc/motd after the pass",
        )
    })
}
