//! 7. `kill -9` of the daemon in the middle of a switch: systemd restarts it, `current` points to
//!    a complete generation, and the host converges on the definition file as it is after the
//!    restart — also when it was saved again while the daemon was down (no watcher saw that
//!    save: the restart itself must pick it up, without `strackt apply` or the timer).
//!
//! 33 kills in all: three at chosen moments, then 30 at random moments of the switch (the seed
//! is printed, `STRACKT_CRASH_SEED` replays a run), every third with a save while it is down.

use std::fmt::Write as _;
use std::thread;
use std::time::Duration;

use strackt_integration::{ensure, ensure_eq, run, testhost, wait_until, with_host, Host, Res};

use crate::HEADER;

const FILES: usize = 300;
/// Kills at random moments, after the three chosen ones.
const RANDOM_TRIALS: u64 = 30;

/// Many files and a service whose health check takes seconds: a long switch to kill.
fn definition(tag: &str) -> String {
    let mut def = format!("{HEADER}files:\n");
    for i in 0..FILES {
        let _ = writeln!(
            def,
            "  /etc/bulk/file-{i:03}.conf: {{ content: \"{tag} {i}\\n\" }}"
        );
    }
    let _ = write!(
        def,
        r#"services:
  slow:
    exec: /usr/bin/sleep infinity
    environment: {{ TAG: "{tag}" }}
    health: {{ command: "/usr/bin/sleep 2", within: 60s }}
"#
    );
    def
}

/// Save the definition tagged `tag`, kill the daemon `delay` seconds into the switch it starts;
/// with `saved_while_down`, that definition is saved right after the kill, before systemd
/// restarts the daemon (RestartSec=2s), and the host must converge on it by itself.
fn kill_mid_switch(h: &Host, tag: &str, delay: &str, saved_while_down: Option<&str>) -> Res {
    let before = h.sh_ok("ls /var/lib/strackt/generations | sort | tr '\\n' ' '")?;
    let daemon = h.main_pid("strackt.service")?;
    let save_after_kill = match saved_while_down {
        Some(next) => {
            h.write("/root/next.yaml", &definition(next), 0o644)?;
            "cp /root/next.yaml /etc/strackt/server.yaml.tmp && mv /etc/strackt/server.yaml.tmp /etc/strackt/server.yaml"
        }
        None => "true",
    };
    h.put_definition(&definition(tag))?;
    // `strackt apply` from another thread, as an admin would in another terminal.
    let name = h.name().to_string();
    let apply = thread::spawn(move || {
        run(
            testhost().args(["exec", &name, "--", "strackt", "apply"]),
            Duration::from_secs(120),
        )
    });
    // Inside the host: as soon as a new generation directory appears (the pass is building or
    // switching), wait `delay` and SIGKILL the daemon.
    let killed = h.sh(&format!(
        "for i in $(seq 400); do
             now=$(ls /var/lib/strackt/generations | sort | tr '\\n' ' ')
             [ \"$now\" != '{before}' ] && break
             sleep 0.05
         done
         [ \"$now\" != '{before}' ] || {{ echo 'no new generation within 20s'; exit 1; }}
         sleep {delay}
         systemctl kill -s KILL strackt.service
         {save_after_kill}"
    ))?;
    ensure(killed.success(), || {
        format!("killing the daemon mid-switch: {killed}")
    })?;

    // The CLI must not hang on a dead daemon (whatever it answers).
    let cli = apply.join().map_err(|_| "the apply thread panicked")?;
    ensure(cli.is_ok(), || {
        format!("`strackt apply` while the daemon was killed did not return: {cli:?}")
    })?;

    // systemd restarts it (Restart=on-failure, RestartSec=2s).
    wait_until(
        "systemd to restart strackt",
        Duration::from_secs(60),
        || {
            let pid = h.main_pid("strackt.service")?;
            Ok(pid != 0 && pid != daemon && h.is_active("strackt.service")? == "active")
        },
    )?;
    let restarts: u32 = h
        .exec(&[
            "systemctl",
            "show",
            "-p",
            "NRestarts",
            "--value",
            "strackt.service",
        ])?
        .ok()?
        .trim()
        .parse()?;
    ensure(restarts >= 1, || {
        "NRestarts of strackt is 0: it was not restarted by systemd".into()
    })?;

    // current points to a complete generation.
    let link = h.current_link()?;
    ensure(link.starts_with("generations/"), || {
        format!("current -> {link:?}")
    })?;
    ensure(
        h.exists(&format!("/var/lib/strackt/{link}/manifest.json"))?,
        || format!("current -> {link}, which has no manifest.json"),
    )?;

    let tag = saved_while_down.unwrap_or(tag);
    match saved_while_down {
        // Nothing but the restart may bring the host to the definition saved while it was down
        // (the timer is an hour away).
        Some(_) => wait_until(
            &format!("the host to converge on the {tag} definition saved while strackt was down"),
            Duration::from_secs(60),
            || {
                Ok(
                    h.read("/etc/bulk/file-000.conf")?.trim() == format!("{tag} 0")
                        && h.status()?.health == "ok",
                )
            },
        )?,
        // The next apply converges the host to what server.yaml says.
        None => h.apply_ok()?,
    }
    let link = h.current_link()?;
    let id: u64 = link.trim_start_matches("generations/").parse()?;
    ensure_eq(
        h.status()?.current_generation,
        Some(id),
        "status.current_generation vs current link",
    )?;
    ensure_eq(
        h.active_generation()?,
        id,
        "active generation vs current link",
    )?;
    ensure(
        h.exists(&format!("/var/lib/strackt/{link}/manifest.json"))?,
        || format!("current -> {link}, which has no manifest.json"),
    )?;
    let wrong = h.sh_ok(&format!("for i in $(seq 0 {}); do f=$(printf /etc/bulk/file-%03d.conf $i); [ \"$(cat $f 2>&1)\" = \"{tag} $i\" ] || echo $f; done", FILES - 1))?;
    ensure(wrong.trim().is_empty(), || {
        format!(
            "files not at {tag}: {}",
            wrong.lines().take(5).collect::<Vec<_>>().join(" ")
        )
    })?;
    let pid = h.main_pid("slow.service")?;
    let env = h.sh_ok(&format!("tr '\\0' '\\n' < /proc/{pid}/environ"))?;
    ensure(env.lines().any(|l| l == format!("TAG={tag}")), || {
        format!("slow.service does not run the {tag} definition: {env}")
    })?;
    let history = h.history()?;
    ensure(!history.iter().any(|o| o.outcome == "running"), || {
        format!("an operation is still `running` after the restart: {history:#?}")
    })?;
    ensure_eq(h.status()?.health.as_str(), "ok", "status.health")?;
    Ok(())
}

#[test]
fn kill_9_during_a_switch_leaves_a_complete_generation() -> Res {
    with_host("crash", |h| {
        h.install(&definition("v1"))?;
        h.apply_ok()?;
        // Killed right as the new generation appears, then again while the health check runs.
        kill_mid_switch(h, "v2", "0", None)?;
        kill_mid_switch(h, "v3", "2", None)?;
        // Killed during the health check and the definition saved again while it was down.
        kill_mid_switch(h, "v4", "2", Some("v5"))?;
        // Then at random moments: while the generation is built, flipped, services restarted
        // or health checked (the switch takes about 2.5 s).
        let seed: u64 = match std::env::var("STRACKT_CRASH_SEED") {
            Ok(s) => s.parse()?,
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos() as u64,
        };
        println!("crash trials: STRACKT_CRASH_SEED={seed}");
        let mut state = seed;
        for trial in 0..RANDOM_TRIALS {
            // 64-bit LCG (Knuth's MMIX constants): enough to spread the moments.
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let centis = (state >> 33) % 250;
            let delay = format!("{}.{:02}", centis / 100, centis % 100);
            let tag = format!("r{trial}");
            let down = format!("r{trial}-down");
            let saved_while_down = (trial % 3 == 2).then_some(down.as_str());
            kill_mid_switch(h, &tag, &delay, saved_while_down).map_err(|e| {
                format!("trial {trial} (kill {delay}s into the switch, seed {seed}): {e}")
            })?;
        }
        Ok(())
    })
}
