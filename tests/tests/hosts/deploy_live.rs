//! A deploy followed live (issue 13): the sample app's build step prints a line (with a secret
//! in it), waits, then prints another.
//!
//! 1. `strackt deploy shop` prints the first line while the build is still running, with the
//!    secret masked; a second follower (`strackt history --operation ID --follow`) sees the
//!    same lines.
//! 2. `/operations/{id}` shows the running step with how long it has run and how much it
//!    printed, and none of what it printed.
//! 3. The validation boot leaves no unit behind, and a deploy whose units did not change does
//!    not make systemd reload (the validation units are transient).
//! 4. strackt killed during a validation boot: the next start stops the validation units it
//!    left running.

use std::time::Duration;

use strackt_integration::{ensure, ensure_eq, wait_until, with_app_host, Host, Res};

use crate::deploy::{background, commit, deploy_ok, setup};

/// A build that prints a line and the app's secret `APP_KEY` (`key-123`), then takes a while.
const SLOW_BUILD: &str = "printf 'echo first-line\\necho \"key is $APP_KEY\"\\nsleep 8\\necho second-line\\n' > scripts/build";

/// The build step of operation `id` as `/operations/{id}` shows it, and the whole answer.
fn build_over_http(h: &Host, id: u64) -> Res<(serde_json::Value, String)> {
    let (code, body) = h.http_get(&format!("/operations/{id}"))?;
    ensure_eq(code, 200, "GET /operations/{id}")?;
    let op: serde_json::Value = serde_json::from_str(&body)?;
    let build = op["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["action"] == "build"))
        .cloned()
        .unwrap_or_default();
    Ok((build, body))
}

/// The validation units systemd has loaded, one per line.
fn validation_units(h: &Host) -> Res<String> {
    Ok(
        h.sh_ok("systemctl list-units --all --plain --no-legend 'strackt-validate-*'")?
            .trim()
            .to_string(),
    )
}

/// How many times systemd has reloaded its units since the host booted.
fn reloads(h: &Host) -> Res<usize> {
    Ok(
        h.sh_ok("journalctl _PID=1 -o cat --no-pager | grep -c '^Reloading' || true")?
            .trim()
            .parse()?,
    )
}

#[test]
fn a_deploy_shows_each_line_while_its_step_runs_masked_and_never_over_http() -> Res {
    with_app_host("deploy-live", |h| {
        setup(h, 5)?;
        // The first deploy writes and enables the live units.
        deploy_ok(h)?;
        let reloaded = reloads(h)?;
        commit(h, SLOW_BUILD, "slow build")?;
        background(h, "strackt deploy shop > /tmp/follow.out 2>&1")?;
        wait_until(
            "the build's first line in the output of `strackt deploy`",
            Duration::from_secs(120),
            || Ok(h.read("/tmp/follow.out")?.contains("| first-line")),
        )?;
        let seen = h.read("/tmp/follow.out")?;
        let id: u64 = seen
            .lines()
            .find_map(|l| l.strip_prefix("deploy #"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("no operation id in: {seen}"))?;
        background(
            h,
            &format!("strackt history --operation {id} --follow > /tmp/follow2.out 2>&1"),
        )?;
        // Read after the follower's first line: the build is still running, so that line was
        // shown while the step ran, not at its end.
        wait_until(
            "the running build step with its elapsed time and output counts over HTTP",
            Duration::from_secs(30),
            || {
                let (build, _) = build_over_http(h, id)?;
                Ok(build["outcome"] == "running"
                    && build["duration_ms"].as_u64().is_some()
                    && build["detail"]
                        .as_str()
                        .is_some_and(|d| d.starts_with("output: 2 lines")))
            },
        )?;
        let (build, body) = build_over_http(h, id)?;
        ensure(!seen.contains("second-line"), || {
            format!("the follower saw the end of the step before it ended: {seen}")
        })?;
        ensure(build.get("output").is_none(), || {
            format!("HTTP serves step output: {body}")
        })?;
        for text in ["first-line", "key is", "key-123"] {
            ensure(!body.contains(text), || {
                format!("HTTP shows {text:?} of what the step printed: {body}")
            })?;
        }
        ensure(seen.contains("| key is ***"), || {
            format!("the secret printed by the build is not masked in the live view: {seen}")
        })?;

        wait_until("the deploy to end", Duration::from_secs(120), || {
            Ok(h.read("/tmp/follow.out")?.contains("deployed shop"))
        })?;
        let done = h.read("/tmp/follow.out")?;
        let at = |text: &str| done.find(text).unwrap_or(usize::MAX);
        ensure(
            at("| first-line") < at("| second-line") && at("| second-line") < at("ok     build"),
            || format!("lines not shown in order inside their step: {done}"),
        )?;
        wait_until(
            "`strackt history --operation ID --follow` to end",
            Duration::from_secs(30),
            || Ok(h.read("/tmp/follow2.out")?.contains("deployed shop")),
        )?;
        let second = h.read("/tmp/follow2.out")?;
        for text in [
            "| first-line",
            "| key is ***",
            "| second-line",
            "ok     build",
        ] {
            ensure(second.contains(text), || {
                format!("the second follower did not show {text:?}: {second}")
            })?;
        }
        for (who, text) in [("deploy", &done), ("history --follow", &second)] {
            ensure(!text.contains("key-123"), || {
                format!("`strackt {who}` shows the secret: {text}")
            })?;
        }

        ensure_eq(
            validation_units(h)?,
            String::new(),
            "validation units left after the deploy",
        )?;
        ensure_eq(
            reloads(h)?,
            reloaded,
            "systemd reloads during a deploy whose live units did not change",
        )
    })
}

#[test]
fn validation_units_left_by_a_killed_strackt_are_stopped_at_its_next_start() -> Res {
    with_app_host("deploy-live-kill", |h| {
        setup(h, 5)?;
        deploy_ok(h)?;
        // A release that passes `validate` but takes 30 s to start serving.
        commit(
            h,
            "cp app.py /tmp/app.ok && printf 'import sys, time\\nif \"--check\" not in sys.argv:\\n    time.sleep(30)\\n' | cat - /tmp/app.ok > app.py",
            "slow to boot",
        )?;
        background(h, "strackt deploy shop > /tmp/killed.log 2>&1")?;
        wait_until(
            "the validation boot's service started",
            Duration::from_secs(120),
            || {
                Ok(validation_units(h)?.lines().any(|unit| {
                    let words: Vec<&str> = unit.split_whitespace().collect();
                    words.first().is_some_and(|name| name.ends_with(".service"))
                        && words.get(2) == Some(&"active")
                }))
            },
        )?;
        h.sh_ok(
            "systemctl kill -s KILL strackt.service; sleep 0.5; systemctl start strackt.service",
        )?;
        ensure_eq(
            validation_units(h)?,
            String::new(),
            "validation units after strackt started again",
        )?;
        ensure_eq(
            crate::deploy::get(h, "/")?,
            (200, "version 1; items: apple, pear\n".to_string()),
            "the live release serving",
        )
    })
}
