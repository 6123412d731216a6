//! Experiment mode: `strackt hold --for D` pauses drift repair (status shows it), definition
//! changes still land, and when the hold ends, by `--release` or by time, everything is put back.

use std::time::Duration;

use strackt_integration::{ensure, ensure_eq, wait_until, with_host, Res};

use crate::HEADER;

const DEF: &str = "files:\n  /etc/motd: { content: \"defined\\n\" }\nservices:\n  hello:\n    exec: /usr/bin/sleep infinity\n";
const DEF2: &str = "files:\n  /etc/motd: { content: \"defined\\n\" }\n  /etc/new.conf: { content: \"new\\n\" }\nservices:\n  hello:\n    exec: /usr/bin/sleep infinity\n";

#[test]
fn hold_pauses_drift_repair_until_released() -> Res {
    with_host("hold", |h| {
        h.install(&format!("{HEADER}{DEF}"))?;
        h.apply_ok()?;
        let out = h.strackt(&["hold", "--for", "30m", "--reason", "trying a setting"])?;
        ensure(out.success(), || format!("hold: {out}"))?;
        let status = h.sh_ok("strackt status --json")?;
        let status: serde_json::Value = serde_json::from_str(&status)?;
        ensure_eq(
            status["hold"]["reason"].as_str(),
            Some("trying a setting"),
            "hold in status",
        )?;
        let (code, body) = h.http_get("/status")?;
        ensure(code == 200 && body.contains("trying a setting"), || {
            format!("GET /status: {code} {body}")
        })?;

        // Experiment: edit a file and stop the service. A pass leaves both alone.
        h.write("/etc/motd", "experiment\n", 0o644)?;
        h.sh_ok("systemctl stop hello")?;
        h.apply_ok()?;
        ensure_eq(
            h.read("/etc/motd")?.as_str(),
            "experiment\n",
            "/etc/motd on hold",
        )?;
        ensure_eq(
            h.is_active("hello.service")?.as_str(),
            "inactive",
            "hello on hold",
        )?;

        // A definition change still lands.
        h.put_definition(&format!("{HEADER}{DEF2}"))?;
        h.apply_ok()?;
        ensure_eq(
            h.read("/etc/new.conf")?.as_str(),
            "new\n",
            "definition change during a hold",
        )?;
        ensure_eq(
            h.read("/etc/motd")?.as_str(),
            "experiment\n",
            "/etc/motd still held",
        )?;

        // Released: everything comes back at once.
        let out = h.strackt(&["hold", "--release"])?;
        ensure(out.success(), || format!("hold --release: {out}"))?;
        ensure_eq(
            h.read("/etc/motd")?.as_str(),
            "defined\n",
            "/etc/motd after release",
        )?;
        ensure_eq(
            h.is_active("hello.service")?.as_str(),
            "active",
            "hello after release",
        )?;
        Ok(())
    })
}

#[test]
fn an_expired_hold_restores_on_its_own() -> Res {
    with_host("hold-expiry", |h| {
        // The timer is an hour away: only the end of the hold can bring the next pass.
        h.install(&format!("{HEADER}{DEF}"))?;
        h.apply_ok()?;
        let out = h.strackt(&["hold", "--for", "4s"])?;
        ensure(out.success(), || format!("hold: {out}"))?;
        h.write("/etc/motd", "experiment\n", 0o644)?;
        h.apply_ok()?;
        ensure_eq(
            h.read("/etc/motd")?.as_str(),
            "experiment\n",
            "/etc/motd on hold",
        )?;
        wait_until(
            "the end of the hold to restore /etc/motd",
            Duration::from_secs(20),
            || Ok(h.read("/etc/motd")? == "defined\n"),
        )?;
        let status: serde_json::Value = serde_json::from_str(&h.sh_ok("strackt status --json")?)?;
        ensure(status["hold"].is_null(), || {
            format!("hold still shown after it ended: {status}")
        })?;
        Ok(())
    })
}
