//! `/metrics` (issue 15, point 4) on a real host: labelled series a user alerts on, linted by
//! `promtool check metrics` on a live scrape, and `docs/alerts.yaml` checked by `promtool check
//! rules` and against that scrape.
//!
//! 1. After a deploy and a backup of the sample app, its per-app series exist with the app's
//!    label and the operations' own finish times; a service passing its health probe is 1, and
//!    0 once it fails it; `strackt hold` shows 1; a failed pass shows in the last pass's outcome.
//! 2. After `systemctl restart strackt` the per-app last outcomes and last-success timestamps
//!    and the per-service health are the same (read back from the operations log).
//!
//! promtool runs on this machine (`STRACKT_PROMTOOL`; tests/run takes it out of Debian's
//! `prometheus` package into /var/cache/strackt-tools) against what the host served.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use strackt_integration::{ensure, ensure_eq, repo_root, with_app_host_binds, Host, Res};

use crate::backup::{backup_ok, prepare, Bucket};

/// The promtool binary.
fn promtool() -> Res<PathBuf> {
    let path = std::env::var_os("STRACKT_PROMTOOL").map_or_else(
        || PathBuf::from("/var/cache/strackt-tools/promtool/promtool"),
        PathBuf::from,
    );
    ensure(path.is_file(), || {
        format!(
            "{} missing: tests/run installs it from Debian's prometheus package",
            path.display()
        )
    })?;
    Ok(path)
}

/// Run `promtool ARGS` with `input` on its standard input; its output, or an error with it.
fn promtool_ok(args: &[&str], input: &str) -> Res<String> {
    let mut child = Command::new(promtool()?)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or("no stdin for promtool")?
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure(out.status.success(), || {
        format!("promtool {args:?} failed: {text}")
    })?;
    Ok(text)
}

/// The alerting rules shipped in docs/.
fn alerts() -> Res<String> {
    Ok(std::fs::read_to_string(
        repo_root().join("docs/alerts.yaml"),
    )?)
}

#[test]
fn the_alerting_rules_pass_promtool() -> Res {
    let path = repo_root().join("docs/alerts.yaml");
    let out = promtool_ok(&["check", "rules", &path.to_string_lossy()], "")?;
    ensure(out.contains("SUCCESS"), || {
        format!("promtool check rules: {out}")
    })
}

/// A scrape of the daemon's `/metrics`, as Prometheus would take it.
fn scrape(h: &Host) -> Res<String> {
    let (code, text) = h.http_get("/metrics")?;
    ensure_eq(code, 200, "HTTP status of GET /metrics")?;
    Ok(text)
}

/// The value of the one sample whose name and labels are exactly `series`.
fn value(text: &str, series: &str) -> Res<f64> {
    let found: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .collect();
    match found.as_slice() {
        [v] => Ok(v.trim().parse()?),
        _ => Err(format!("want one sample `{series}`, got {found:?} in:\n{text}").into()),
    }
}

/// When operation `id` finished, in unix seconds (from `strackt history`).
fn finished(h: &Host, id: i64) -> Res<f64> {
    let ops: serde_json::Value = h
        .strackt(&["history", "--operation", &id.to_string(), "--json"])?
        .json_ok()?;
    let at = ops[0]["finished"]
        .as_str()
        .ok_or_else(|| format!("operation {id} has no finish time: {ops}"))?;
    Ok(h.sh_ok(&format!("date -d '{at}' +%s"))?.trim().parse()?)
}

/// The newest operation of `kind`.
fn newest(h: &Host, kind: &str) -> Res<i64> {
    let ops: serde_json::Value = h.strackt(&["history", "--json"])?.json_ok()?;
    ops.as_array()
        .and_then(|ops| ops.iter().find(|o| o["kind"] == kind))
        .and_then(|o| o["id"].as_i64())
        .ok_or_else(|| format!("no {kind} operation in {ops}").into())
}

/// The series a user alerts on per app, service and state: (series, value).
const AFTER_THE_FAILED_PROBE: &[(&str, f64)] = &[
    (
        "strackt_deploy_last_outcome{app=\"shop\",outcome=\"success\"}",
        1.0,
    ),
    (
        "strackt_deploy_last_outcome{app=\"shop\",outcome=\"failed\"}",
        0.0,
    ),
    (
        "strackt_backup_last_outcome{app=\"shop\",outcome=\"success\"}",
        1.0,
    ),
    ("strackt_service_healthy{service=\"probe.service\"}", 0.0),
    ("strackt_hold", 1.0),
    ("strackt_pending_confirmation", 0.0),
];

#[test]
fn labelled_metrics_pass_promtool_and_survive_a_restart() -> Res {
    let bucket = Bucket::new("metrics")?;
    let binds = bucket.binds()?;
    with_app_host_binds("metrics", &binds, |h| {
        prepare(h, None, true)?;
        backup_ok(h)?;
        let (deployed, backed_up) = (newest(h, "deploy")?, newest(h, "backup")?);
        let text = scrape(h)?;
        for (kind, id) in [("deploy", deployed), ("backup", backed_up)] {
            let at = finished(h, id)?;
            for series in [
                format!("strackt_{kind}_last_success_timestamp_seconds{{app=\"shop\"}}"),
                format!("strackt_{kind}_last_timestamp_seconds{{app=\"shop\"}}"),
            ] {
                ensure_eq(value(&text, &series)?, at, &series)?;
            }
            ensure_eq(
                value(&text, &format!("strackt_{kind}s_total{{app=\"shop\"}}"))?,
                1.0,
                &format!("{kind}s counted"),
            )?;
        }
        let version = h.sh_ok("strackt --version")?;
        let version = version.split_whitespace().last().unwrap_or_default();
        ensure_eq(
            value(
                &text,
                &format!("strackt_build_info{{version=\"{version}\"}}"),
            )?,
            1.0,
            "build info",
        )?;

        // A service with a health probe: healthy, then failing it after being stopped by hand.
        let definition = h.read("/etc/strackt/server.yaml")?;
        h.sh_ok("touch /run/probe-ok")?;
        h.put_definition(&format!(
            "{definition}services:\n  probe:\n    exec: /usr/bin/sleep infinity\n    health: {{ command: \"/usr/bin/test -e /run/probe-ok\", within: 2s }}\n"
        ))?;
        h.apply_ok()?;
        let text = scrape(h)?;
        ensure_eq(
            value(&text, "strackt_service_healthy{service=\"probe.service\"}")?,
            1.0,
            "the probe's health after the apply",
        )?;
        let generation = h.active_generation()?;
        ensure_eq(
            value(&text, "strackt_current_generation")?,
            generation as f64,
            "current generation",
        )?;
        ensure_eq(
            value(&text, "strackt_last_pass_outcome{outcome=\"success\"}")?,
            1.0,
            "last pass succeeded",
        )?;
        h.sh_ok("rm /run/probe-ok && systemctl stop probe.service")?;
        ensure(!h.apply()?.success(), || {
            "a pass whose service fails its probe succeeded".into()
        })?;
        let text = scrape(h)?;
        ensure_eq(
            value(&text, "strackt_last_pass_outcome{outcome=\"failed\"}")?,
            1.0,
            "last pass failed",
        )?;
        ensure(
            h.strackt(&["hold", "--for", "1h", "--reason", "metrics"])?
                .success(),
            || "strackt hold failed".into(),
        )?;
        let text = scrape(h)?;
        for (series, want) in AFTER_THE_FAILED_PROBE {
            ensure_eq(value(&text, series)?, *want, series)?;
        }

        // The live scrape passes promtool's linter, and every metric the alerting rules name
        // is in it.
        let lint = promtool_ok(&["check", "metrics"], &text)?;
        ensure(lint.trim().is_empty(), || {
            format!("promtool check metrics: {lint}")
        })?;
        let rules = alerts()?;
        let named: std::collections::BTreeSet<&str> = rules
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("strackt_"))
            .collect();
        ensure(named.len() >= 8, || {
            format!("metrics named by the rules: {named:?}")
        })?;
        for name in named {
            ensure(
                text.lines().any(|l| {
                    l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{"))
                }),
                || format!("docs/alerts.yaml names {name}, which the scrape lacks:\n{text}"),
            )?;
        }

        // A restart keeps what the log knows.
        let before = scrape(h)?;
        h.sh_ok("systemctl restart strackt")?;
        let after = scrape(h)?;
        for kind in ["deploy", "backup"] {
            for series in [
                format!("strackt_{kind}_last_success_timestamp_seconds{{app=\"shop\"}}"),
                format!("strackt_{kind}_last_timestamp_seconds{{app=\"shop\"}}"),
            ] {
                ensure_eq(value(&after, &series)?, value(&before, &series)?, &series)?;
            }
        }
        for (series, want) in AFTER_THE_FAILED_PROBE {
            ensure_eq(
                value(&after, series)?,
                *want,
                &format!("{series} after a restart"),
            )?;
        }
        ensure_eq(
            value(&after, "strackt_deploys_total{app=\"shop\"}")?,
            0.0,
            "the deploy counter starts again",
        )?;
        let lint = promtool_ok(&["check", "metrics"], &after)?;
        ensure(lint.trim().is_empty(), || {
            format!("promtool check metrics after a restart: {lint}")
        })
    })
}
