//! Confirm-or-revert: `strackt apply --confirm-within D` switches, then goes back on its own
//! unless `strackt confirm` arrives in time — also when the watcher already made the save live
//! a moment before the command.

use std::time::Duration;

use strackt_integration::{ensure, ensure_eq, wait_until, with_host, Host, Out, Res};

use crate::HEADER;

fn motd(text: &str) -> String {
    format!("{HEADER}files:\n  /etc/motd: {{ content: \"{text}\\n\" }}\n")
}

/// Save `definition` and run `strackt apply --confirm-within` at once, in one shell inside the
/// host: the daemon's watcher would otherwise apply the save on its own (150 ms after it, with
/// no deadline) whenever entering the host for the CLI takes longer than that.
fn save_and_apply_within(h: &Host, definition: &str, within: &str) -> Res<Out> {
    h.write("/root/next.yaml", definition, 0o644)?;
    h.sh(&format!(
        "cp /root/next.yaml /etc/strackt/server.yaml.new && mv /etc/strackt/server.yaml.new /etc/strackt/server.yaml && strackt apply --confirm-within {within}"
    ))
}

#[test]
fn unconfirmed_switch_reverts_and_confirmed_one_stays() -> Res {
    with_host("confirm", |h| {
        h.install(&motd("one"))?;
        h.apply_ok()?;
        let first = h.active_generation()?;

        let out = save_and_apply_within(h, &motd("two"), "3s")?;
        ensure(
            out.success() && out.text().contains("strackt confirm"),
            || format!("apply --confirm-within: {out}"),
        )?;
        ensure_eq(h.read("/etc/motd")?.as_str(), "two\n", "switched")?;
        let status: serde_json::Value = serde_json::from_str(&h.sh_ok("strackt status --json")?)?;
        ensure(!status["pending_confirm"].is_null(), || {
            format!("status does not show the pending confirmation: {status}")
        })?;
        // Nobody confirms: the daemon goes back by itself (the timer is an hour away).
        wait_until(
            "the unconfirmed switch to be reverted",
            Duration::from_secs(20),
            || Ok(h.read("/etc/motd")? == "one\n"),
        )?;
        ensure_eq(h.active_generation()?, first, "generation after the revert")?;
        let history = h.history()?;
        ensure(
            history
                .iter()
                .any(|op| op.kind == "rollback" && op.told().contains("not confirmed")),
            || format!("no revert in the history: {history:#?}"),
        )?;
        // The reverted definition is not re-applied by itself.
        h.sh_ok("systemctl reload strackt")?;
        std::thread::sleep(Duration::from_secs(2));
        ensure_eq(h.read("/etc/motd")?.as_str(), "one\n", "after a later pass")?;

        // Saved first (the watcher makes it live), then `apply --confirm-within`: the change
        // just saved is the one waiting for confirmation. Confirmed in time, it stays.
        h.write("/etc/strackt/server.yaml", &motd("three"), 0o644)?;
        wait_until(
            "the watcher to apply the save",
            Duration::from_secs(20),
            || Ok(h.read("/etc/motd")? == "three\n"),
        )?;
        let out = h.strackt(&["apply", "--confirm-within", "3s"])?;
        ensure(
            out.success() && out.text().contains("strackt confirm"),
            || format!("apply --confirm-within after the save: {out}"),
        )?;
        let out = h.strackt(&["confirm"])?;
        ensure(out.success(), || format!("confirm: {out}"))?;
        std::thread::sleep(Duration::from_secs(5));
        ensure_eq(h.read("/etc/motd")?.as_str(), "three\n", "confirmed switch")?;
        let out = h.strackt(&["confirm"])?;
        ensure(
            !out.success() && out.text().contains("nothing is waiting"),
            || format!("second confirm: {out}"),
        )?;
        Ok(())
    })
}
