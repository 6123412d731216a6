//! 1. The first apply: files with content, mode and owner; services active and enabled; one
//!    generation, active.

use strackt_integration::{ensure, ensure_eq, with_host, Res};

use crate::{environ, running_pid, HEADER};

#[test]
fn first_apply_converges_files_services_and_makes_generation_1() -> Res {
    with_host("first", |h| {
        let def = format!(
            r#"{HEADER}files:
  /etc/motd: {{ content: "welcome to strackt\n" }}
  /etc/app/app.conf: {{ content: "x=1\n", mode: "0640", owner: root, group: adm }}
services:
  hello:
    exec: /usr/bin/sleep infinity
    user: nobody
    environment: {{ GREETING: hi }}
    health: {{ command: "/usr/bin/true" }}
    restart_on: [/etc/app/app.conf]
  firewall:
    unit: nftables.service
"#
        );
        // nftables.service ships disabled in Debian: strackt has to enable and start it.
        ensure_eq(
            h.is_enabled("nftables.service")?.as_str(),
            "disabled",
            "nftables before strackt",
        )?;
        h.install(&def)?;
        h.apply_ok()?;

        ensure_eq(
            h.read("/etc/motd")?.as_str(),
            "welcome to strackt\n",
            "/etc/motd",
        )?;
        ensure_eq(
            h.read("/etc/app/app.conf")?.as_str(),
            "x=1\n",
            "/etc/app/app.conf",
        )?;
        ensure_eq(
            h.stat("/etc/app/app.conf")?.as_str(),
            "640 root adm",
            "mode owner group of app.conf",
        )?;

        ensure(h.exists("/etc/systemd/system/hello.service")?, || {
            "strackt wrote no /etc/systemd/system/hello.service".into()
        })?;
        for unit in ["hello.service", "nftables.service"] {
            ensure_eq(
                h.is_active(unit)?.as_str(),
                "active",
                &format!("is-active {unit}"),
            )?;
            ensure_eq(
                h.is_enabled(unit)?.as_str(),
                "enabled",
                &format!("is-enabled {unit}"),
            )?;
        }
        let pid = running_pid(h, "hello.service")?;
        ensure_eq(
            h.exec(&["ps", "-o", "user=", "-p", &pid.to_string()])?
                .ok()?
                .trim(),
            "nobody",
            "user of hello's process",
        )?;
        let env = environ(h, pid)?;
        ensure(env.iter().any(|e| e == "GREETING=hi"), || {
            format!("GREETING=hi not in hello's environment {env:?}")
        })?;

        let gens = h.generations()?;
        ensure(
            gens.len() == 1 && gens[0].id == 1 && gens[0].state == "active",
            || format!("want only generation 1, active; got {gens:#?}"),
        )?;
        ensure_eq(
            h.current_link()?.as_str(),
            "generations/1",
            "/var/lib/strackt/current",
        )?;
        ensure(
            h.exists("/var/lib/strackt/generations/1/manifest.json")?,
            || "generations/1 has no manifest.json".into(),
        )?;

        let status = h.status()?;
        ensure_eq(
            status.current_generation,
            Some(1),
            "status.current_generation",
        )?;
        ensure_eq(status.health.as_str(), "ok", "status.health")?;
        ensure(status.drift.is_empty(), || {
            format!("drift on a converged host: {:?}", status.drift)
        })?;

        // Converged: nothing left to do, and a second apply changes nothing.
        let plan = h.strackt(&["plan"])?;
        ensure_eq(
            plan.code,
            Some(0),
            &format!("`strackt plan` on a converged host: {plan}"),
        )?;
        h.apply_ok()?;
        ensure_eq(h.generations()?.len(), 1, "generations after a no-op apply")?;
        Ok(())
    })
}
