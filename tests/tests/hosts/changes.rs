//! 2. A changed definition: saving server.yaml makes a new generation and the change goes live
//!    (the daemon watches the file); removed files are removed, new ones appear.

use std::time::Duration;

use strackt_integration::{ensure, ensure_eq, wait_until, with_host, Res};

use crate::HEADER;

fn definition(motd: &str, extra_files: &str) -> String {
    format!(
        r#"{HEADER}files:
  /etc/motd: {{ content: "{motd}\n" }}
  /etc/app/keep.conf: {{ content: "keep=1\n" }}
{extra_files}services:
  hello:
    exec: /usr/bin/sleep infinity
"#
    )
}

#[test]
fn saved_change_goes_live_as_a_new_generation() -> Res {
    with_host("changes", |h| {
        h.install(&definition(
            "one",
            "  /etc/app/gone.conf: { content: \"bye\\n\" }\n",
        ))?;
        h.apply_ok()?;
        ensure_eq(
            h.read("/etc/app/gone.conf")?.as_str(),
            "bye\n",
            "gone.conf in generation 1",
        )?;
        ensure_eq(h.active_generation()?, 1, "active generation")?;

        // Save a new definition and do nothing else: the daemon sees the file change.
        h.put_definition(&definition(
            "two",
            "  /etc/app/new.conf: { content: \"new\\n\", mode: \"0600\" }\n",
        ))?;
        wait_until(
            "the new /etc/motd to go live",
            Duration::from_secs(60),
            || Ok(h.read("/etc/motd")? == "two\n"),
        )?;
        h.apply_ok()?; // waits for a pass in flight; no-op if the watcher's pass finished

        ensure_eq(h.read("/etc/app/new.conf")?.as_str(), "new\n", "new.conf")?;
        ensure_eq(
            h.stat("/etc/app/new.conf")?.as_str(),
            "600 root root",
            "mode of new.conf",
        )?;
        ensure_eq(
            h.read("/etc/app/keep.conf")?.as_str(),
            "keep=1\n",
            "keep.conf",
        )?;
        ensure(!h.exists("/etc/app/gone.conf")?, || {
            "gone.conf was dropped from the definition but is still on the host".into()
        })?;

        let gens = h.generations()?;
        ensure(gens.len() == 2, || {
            format!("want 2 generations, got {gens:#?}")
        })?;
        ensure(gens[0].id == 2 && gens[0].state == "active", || {
            format!("newest first, generation 2 active: {gens:#?}")
        })?;
        ensure(gens[1].id == 1 && gens[1].state == "superseded", || {
            format!("generation 1 superseded: {gens:#?}")
        })?;
        ensure_eq(
            h.current_link()?.as_str(),
            "generations/2",
            "/var/lib/strackt/current",
        )?;
        ensure_eq(
            h.status()?.current_generation,
            Some(2),
            "status.current_generation",
        )?;

        let history = h.history()?;
        let op = history
            .iter()
            .find(|o| o.generation == Some(2) && o.outcome == "success" && o.kind == "apply")
            .ok_or_else(|| {
                format!("no successful apply operation for generation 2 in {history:#?}")
            })?;
        ensure_eq(
            op.trigger.as_str(),
            "file-change",
            "trigger of the pass that made generation 2",
        )?;
        ensure(
            op.steps
                .iter()
                .any(|s| s.action == "write-file" && s.target == "/etc/motd"),
            || format!("no write-file /etc/motd step in {op:#?}"),
        )?;
        ensure(
            op.steps
                .iter()
                .any(|s| s.action == "remove-file" && s.target == "/etc/app/gone.conf"),
            || format!("no remove-file gone.conf step in {op:#?}"),
        )?;
        Ok(())
    })
}
