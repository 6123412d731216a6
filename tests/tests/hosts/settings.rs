//! `settings.sysctl`: kernel parameters written to /etc/sysctl.d/90-strackt.conf and set live,
//! drift put back, a parameter the kernel refuses rolls the switch back, and an unknown one
//! fails before anything changes. (In a test host only `net.*` is writable.)

use strackt_integration::{ensure, ensure_eq, with_host, Res};

use crate::HEADER;

const SETTINGS: &str =
    "settings:\n  sysctl:\n    net.ipv4.ip_forward: 1\n    net.ipv4.tcp_keepalive_time: 600\n";

#[test]
fn sysctl_is_applied_persisted_and_repaired() -> Res {
    with_host("sysctl", |h| {
        ensure_eq(
            h.read("/proc/sys/net/ipv4/ip_forward")?.trim(),
            "0",
            "default ip_forward",
        )?;
        h.install(&format!("{HEADER}{SETTINGS}"))?;
        h.apply_ok()?;
        ensure_eq(
            h.read("/proc/sys/net/ipv4/ip_forward")?.trim(),
            "1",
            "ip_forward live",
        )?;
        ensure_eq(
            h.read("/proc/sys/net/ipv4/tcp_keepalive_time")?.trim(),
            "600",
            "tcp_keepalive_time live",
        )?;
        let file = h.read("/etc/sysctl.d/90-strackt.conf")?;
        ensure(
            file.contains("net.ipv4.ip_forward = 1\n")
                && file.contains("net.ipv4.tcp_keepalive_time = 600\n"),
            || format!("/etc/sysctl.d/90-strackt.conf: {file:?}"),
        )?;
        // What systemd-sysctl applies at boot agrees with the file.
        h.sh_ok("sysctl -w net.ipv4.ip_forward=0 >/dev/null && /lib/systemd/systemd-sysctl /etc/sysctl.d/90-strackt.conf")?;
        ensure_eq(
            h.read("/proc/sys/net/ipv4/ip_forward")?.trim(),
            "1",
            "after systemd-sysctl",
        )?;
        // Drift: changed by hand, put back by the next pass.
        h.sh_ok("sysctl -w net.ipv4.ip_forward=0 >/dev/null")?;
        let plan = h.strackt(&["plan"])?;
        ensure_eq(plan.code, Some(2), &format!("plan on drift: {plan}"))?;
        h.apply_ok()?;
        ensure_eq(
            h.read("/proc/sys/net/ipv4/ip_forward")?.trim(),
            "1",
            "ip_forward repaired",
        )?;
        let history = h.history()?;
        ensure(
            history.iter().any(|op| {
                op.told()
                    .contains("drift repaired: set-sysctl net.ipv4.ip_forward")
            }),
            || format!("no sysctl drift repair in {history:#?}"),
        )?;
        Ok(())
    })
}

#[test]
fn refused_or_unknown_sysctl_changes_nothing() -> Res {
    with_host("sysctl-bad", |h| {
        h.install(&format!("{HEADER}{SETTINGS}"))?;
        h.apply_ok()?;
        let generation = h.active_generation()?;
        let file = h.read("/etc/sysctl.d/90-strackt.conf")?;

        // Unknown key: found when the host is read, before anything changes.
        h.put_definition(&format!("{HEADER}{SETTINGS}    net.ipv4.no_such_knob: 1\n"))?;
        let out = h.apply()?;
        ensure(!out.success(), || {
            format!("apply with an unknown key must fail: {out}")
        })?;
        ensure(
            out.text()
                .contains("sysctl key \"net.ipv4.no_such_knob\" does not exist"),
            || format!("apply does not name the unknown key: {out}"),
        )?;

        // A key the kernel refuses (read-only /proc/sys outside net.* here): the switch is
        // rolled back, including the live values it had already set.
        let refused =
            SETTINGS.replace("ip_forward: 1", "ip_forward: 0") + "    vm.swappiness: 10\n";
        h.put_definition(&format!("{HEADER}{refused}"))?;
        let out = h.apply()?;
        ensure(!out.success(), || {
            format!("apply with a refused key must fail: {out}")
        })?;
        ensure(out.text().contains("vm.swappiness"), || {
            format!("apply does not name vm.swappiness: {out}")
        })?;
        ensure_eq(
            h.read("/proc/sys/net/ipv4/ip_forward")?.trim(),
            "1",
            "ip_forward after rollback",
        )?;
        ensure_eq(
            h.read("/etc/sysctl.d/90-strackt.conf")?,
            file,
            "sysctl.d file after rollback",
        )?;
        ensure_eq(h.active_generation()?, generation, "active generation")?;
        Ok(())
    })
}
