//! Package updates on a real host, against the local archive with a normal and a `-security`
//! suite (`apt_repo`): `strackt updates` tells a security candidate from a newer normal one
//! (text, `--json`, exit 2, `/status`, `/metrics`); `strackt upgrade --security` rewrites only
//! that version string (the rest of the file byte for byte), the package is upgraded and the
//! log names the trigger and old → new; a package not in the definition and a definition that
//! does not parse are refused with nothing changed; an upgrade whose switch fails rolls back and
//! the definition file is back to its exact bytes; and a `strackt.updates` policy with
//! `apply: security` does the upgrade on its own at its scheduled time.

use std::time::Duration;

use strackt_integration::{ensure, ensure_eq, wait_until, with_host, Host, Operation, Res};

use crate::apt_repo::{publish, Deb, Suite};

const DEFINITION: &str = "/etc/strackt/server.yaml";

/// `strackt-demo` 1.0 and 2.0 in the normal suite, 1.1 in the security suite; `strackt-extra`
/// 1 in the normal suite (nothing newer).
fn archive(h: &Host) -> Res {
    let files_10: &[(&str, &str)] = &[("/usr/share/strackt-demo/version", "1.0\n")];
    let files_11: &[(&str, &str)] = &[("/usr/share/strackt-demo/version", "1.1\n")];
    let files_20: &[(&str, &str)] = &[("/usr/share/strackt-demo/version", "2.0\n")];
    let files_x: &[(&str, &str)] = &[("/usr/share/strackt-extra/version", "1\n")];
    let deb = |name, version, suite, files| Deb {
        name,
        version,
        suite,
        depends: "",
        files,
    };
    publish(
        h,
        &[
            deb("strackt-demo", "1.0", Suite::Main, files_10),
            deb("strackt-demo", "1.1", Suite::Security, files_11),
            deb("strackt-demo", "2.0", Suite::Main, files_20),
            deb("strackt-extra", "1", Suite::Main, files_x),
        ],
    )
}

/// The definition as a person writes it: comments (one trailing), odd spacing, the version's
/// own quoting. `demo` is strackt-demo's version as written, quotes included.
fn definition(policy: &str, demo: &str) -> String {
    format!(
        "version: 1\nstrackt:\n  interval: 1h\n{policy}# Pinned by hand; `strackt upgrade` may move them.\npackages:\n  strackt-demo:   {demo}    # the app's library\n  strackt-extra: \"1\"\n"
    )
}

fn installed(h: &Host, name: &str) -> Res<String> {
    Ok(h.sh_ok(&format!(
        "dpkg-query -W -f '${{Version}}' {name} 2>/dev/null || true"
    ))?
    .trim()
    .to_string())
}

fn updates_json(h: &Host) -> Res<(Option<i32>, serde_json::Value)> {
    let out = h.strackt(&["updates", "--json"])?;
    Ok((out.code, out.json()?))
}

fn package<'a>(report: &'a serde_json::Value, name: &str) -> Res<&'a serde_json::Value> {
    report["packages"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name))
        .ok_or_else(|| format!("{name} not in {report:#}").into())
}

/// The operations with `trigger`, newest first.
fn by_trigger(h: &Host, trigger: &str) -> Res<Vec<Operation>> {
    Ok(h.history()?
        .into_iter()
        .filter(|o| o.trigger == trigger)
        .collect())
}

#[test]
fn updates_are_listed_and_a_security_upgrade_rewrites_only_its_version() -> Res {
    with_host("updates", |h| {
        archive(h)?;
        let original = definition("", "'1.0'");
        h.install(&original)?;
        h.apply_ok()?;
        ensure_eq(installed(h, "strackt-demo")?.as_str(), "1.0", "pinned")?;

        // The list: the security candidate and the newer normal one, told apart.
        let out = h.strackt(&["updates"])?;
        ensure(
            out.code == Some(2)
                && out.stdout.contains("1.1 (bookworm-security)")
                && out.stdout.contains("2.0 (bookworm)")
                && out.stdout.contains("1 pending, 1 from a security suite"),
            || format!("strackt updates: {out}"),
        )?;
        let (code, report) = updates_json(h)?;
        ensure_eq(code, Some(2), "updates --json exit code")?;
        ensure_eq(
            (report["pending"].as_u64(), report["security"].as_u64()),
            (Some(1), Some(1)),
            "pending, security",
        )?;
        let demo = package(&report, "strackt-demo")?;
        ensure(
            demo["pinned"] == "1.0"
                && demo["newest"]["version"] == "2.0"
                && demo["newest"]["security"] == false
                && demo["security"]["version"] == "1.1"
                && demo["security"]["security"] == true
                && demo["security"]["suites"][0] == "bookworm-security",
            || format!("strackt-demo in {report:#}"),
        )?;
        let extra = package(&report, "strackt-extra")?;
        ensure(
            extra["newest"].is_null() && extra["security"].is_null(),
            || format!("strackt-extra in {report:#}"),
        )?;

        // The same counts in status, /status and /metrics.
        let status = h.strackt(&["status"])?.ok()?;
        ensure(
            status.contains("updates:            1 pending (1 security)"),
            || status.clone(),
        )?;
        let (code, body) = h.http_get("/status")?;
        let json: serde_json::Value = serde_json::from_str(&body)?;
        ensure(
            code == 200 && json["updates"]["pending"] == 1 && json["updates"]["security"] == 1,
            || format!("/status: {body}"),
        )?;
        let (_, metrics) = h.http_get("/metrics")?;
        ensure(
            metrics.contains("strackt_updates_pending{kind=\"all\"} 1\n")
                && metrics.contains("strackt_updates_pending{kind=\"security\"} 1\n"),
            || format!("/metrics: {metrics}"),
        )?;

        // A package the definition does not pin: refused by name, nothing changes.
        let generation = h.active_generation()?;
        let out = h.strackt(&["upgrade", "nginx"])?;
        ensure(
            out.code == Some(1)
                && out.stderr.contains("not in the definition's `packages:`")
                && out.stderr.contains("nginx"),
            || format!("upgrade of a package not in the definition: {out}"),
        )?;
        ensure_eq(
            h.read(DEFINITION)?,
            original.clone(),
            "definition after the refusal",
        )?;
        ensure_eq(
            h.active_generation()?,
            generation,
            "generation after the refusal",
        )?;

        // Only the security version: exactly that string changes, quotes and comments stay.
        let out = h.strackt(&["upgrade", "--security"])?;
        ensure(
            out.success() && out.stdout.contains("upgraded strackt-demo 1.0 → 1.1"),
            || format!("strackt upgrade --security: {out}"),
        )?;
        let upgraded = definition("", "'1.1'");
        ensure_eq(
            h.read(DEFINITION)?,
            upgraded.clone(),
            "the rewritten definition",
        )?;
        ensure_eq(installed(h, "strackt-demo")?.as_str(), "1.1", "upgraded")?;
        ensure_eq(
            h.read("/usr/share/strackt-demo/version")?.as_str(),
            "1.1\n",
            "the new version's file",
        )?;
        ensure(h.active_generation()? > generation, || {
            "no new generation".into()
        })?;
        let ops = by_trigger(h, "security")?;
        let op = ops.first().ok_or("no operation with trigger security")?;
        ensure(
            op.outcome == "success"
                && op
                    .summary
                    .as_deref()
                    .unwrap_or("")
                    .contains("strackt-demo 1.0 → 1.1")
                && op.steps.iter().any(|s| {
                    s.action == "upgrade"
                        && s.target == "strackt-demo"
                        && s.detail
                            .as_deref()
                            .unwrap_or("")
                            .starts_with("1.0 → 1.1 (security update")
                }),
            || format!("the upgrade's operation: {}", op.text()),
        )?;
        // The watcher saw strackt's write and found nothing new to build.
        std::thread::sleep(Duration::from_secs(2));
        ensure_eq(
            h.active_generation()?,
            op.generation.unwrap_or(0),
            "no second generation",
        )?;

        // Fewer pending: the normal 2.0 is left.
        let (code, report) = updates_json(h)?;
        ensure(
            code == Some(2) && report["pending"] == 1 && report["security"] == 0,
            || format!("after the upgrade: {report:#}"),
        )?;
        let (_, metrics) = h.http_get("/metrics")?;
        ensure(
            metrics.contains("strackt_updates_pending{kind=\"security\"} 0\n"),
            || format!("/metrics after the upgrade: {metrics}"),
        )?;
        // Nothing security pending any more: said so, exit 0, the file untouched.
        let out = h.strackt(&["upgrade", "--security"])?;
        ensure(
            out.success() && out.stdout.contains("no security updates pending"),
            || format!("nothing pending: {out}"),
        )?;
        ensure_eq(h.read(DEFINITION)?, upgraded.clone(), "untouched")?;

        // A definition that does not parse is not touched.
        let broken = format!("{upgraded}services:\n  web: {{ exec: [\n");
        h.put_definition(&broken)?;
        let out = h.strackt(&["upgrade"])?;
        ensure(
            out.code == Some(1)
                && out.stderr.contains("does not parse")
                && out.stderr.contains(&format!("{DEFINITION}:")),
            || format!("upgrade of a broken definition: {out}"),
        )?;
        ensure_eq(
            h.read(DEFINITION)?,
            broken,
            "the broken definition is left alone",
        )?;
        ensure_eq(
            installed(h, "strackt-demo")?.as_str(),
            "1.1",
            "after the refusal",
        )?;
        h.put_definition(&upgraded)?;
        h.apply_ok()?;

        // A security version that cannot be installed (an unmet dependency): the switch
        // fails, the host goes back, and so does the file, byte for byte.
        let files_3: &[(&str, &str)] = &[("/usr/share/strackt-demo/version", "3.0\n")];
        publish(
            h,
            &[Deb {
                name: "strackt-demo",
                version: "3.0",
                suite: Suite::Security,
                depends: "strackt-missing-library",
                files: files_3,
            }],
        )?;
        let generation = h.active_generation()?;
        let out = h.strackt(&["upgrade", "--security", "strackt-demo"])?;
        ensure(
            out.code == Some(1)
                && out.stdout.contains("did not stay")
                && out.stdout.contains("is back to its previous text"),
            || format!("an upgrade whose switch fails: {out}"),
        )?;
        ensure_eq(
            h.read(DEFINITION)?,
            upgraded.clone(),
            "the definition after the rollback",
        )?;
        ensure_eq(
            installed(h, "strackt-demo")?.as_str(),
            "1.1",
            "after the rollback",
        )?;
        ensure_eq(
            h.active_generation()?,
            generation,
            "generation after the rollback",
        )?;
        let ops = by_trigger(h, "security")?;
        let op = ops.first().ok_or("no operation")?;
        ensure(
            op.outcome == "rolled-back"
                && op.steps.iter().any(|s| s.action == "restore-definition")
                && op
                    .summary
                    .as_deref()
                    .unwrap_or("")
                    .contains("strackt-demo 1.1 → 3.0"),
            || format!("the rolled-back upgrade: {}", op.text()),
        )?;

        // A package written `latest` is not rewritten: the upgrade rebuilds the generation,
        // which resolves it to the newer version.
        let tool = |version| Deb {
            name: "strackt-tool",
            version,
            suite: Suite::Main,
            depends: "",
            files: &[],
        };
        publish(h, &[tool("1")])?;
        let with_latest = format!("{upgraded}  strackt-tool: latest\n");
        h.put_definition(&with_latest)?;
        h.apply_ok()?;
        ensure_eq(
            installed(h, "strackt-tool")?.as_str(),
            "1",
            "latest at first",
        )?;
        publish(h, &[tool("2")])?;
        let out = h.strackt(&["upgrade", "strackt-tool"])?;
        ensure(
            out.success() && out.stdout.contains("upgraded strackt-tool 1 → 2"),
            || format!("upgrade of a `latest` package: {out}"),
        )?;
        ensure_eq(installed(h, "strackt-tool")?.as_str(), "2", "latest moved")?;
        ensure_eq(
            installed(h, "strackt-demo")?.as_str(),
            "1.1",
            "the other pin",
        )?;
        ensure_eq(
            h.read(DEFINITION)?,
            with_latest,
            "`latest` stays as written",
        )?;
        ensure(
            by_trigger(h, "upgrade")?
                .first()
                .is_some_and(|o| o.outcome == "success"),
            || "no successful operation with trigger upgrade".into(),
        )
    })
}

#[test]
fn a_scheduled_security_policy_upgrades_on_its_own() -> Res {
    with_host("updates-sched", |h| {
        archive(h)?;
        let bad = definition("  updates: { check: daily, apply: sometimes }\n", "\"1.0\"");
        h.install_unit()?;
        h.write("/root/bad.yaml", &bad, 0o644)?;
        let out = h.strackt(&["check", "--offline", "/root/bad.yaml"])?;
        ensure(
            out.code == Some(1)
                && out.stderr.contains(
                    "/root/bad.yaml:4:35: strackt.updates.apply: unknown variant `sometimes`",
                ),
            || format!("a bad policy: {out}"),
        )?;

        h.install(&definition("", "\"1.0\""))?;
        h.apply_ok()?;
        ensure_eq(installed(h, "strackt-demo")?.as_str(), "1.0", "pinned")?;
        // A daily check a bit over a minute from now (cron has minutes), in UTC.
        let at = h.sh_ok("date -u -d '+80 seconds' '+%M %H'")?;
        let policy = format!(
            "  updates: {{ check: \"{} * * *\", apply: security, timezone: UTC }}\n",
            at.trim()
        );
        h.put_definition(&definition(&policy, "\"1.0\""))?;
        h.apply_ok()?;
        // The upgrade's own record: several operations carry the trigger (the pass it runs
        // too), and the newest may still be running when the first one has succeeded.
        let scheduled = |o: &Operation| {
            let summary = o.summary.as_deref().unwrap_or("");
            o.outcome == "success"
                && summary.starts_with("scheduled (strackt.updates: check")
                && summary.contains("strackt-demo 1.0 → 1.1")
        };
        wait_until(
            "the scheduled security upgrade, recorded",
            Duration::from_secs(200),
            || Ok(by_trigger(h, "security")?.iter().any(scheduled)),
        )?;
        ensure_eq(
            installed(h, "strackt-demo")?.as_str(),
            "1.1",
            "upgraded on its own",
        )?;
        ensure_eq(
            h.read(DEFINITION)?,
            definition(&policy, "\"1.1\""),
            "the definition the policy rewrote",
        )?;
        let status = h.strackt(&["status", "--json"])?.ok()?;
        let status: serde_json::Value = serde_json::from_str(&status)?;
        ensure(
            status["updates"]["security"] == 0 && status["updates"]["pending"] == 1,
            || format!("status after the scheduled upgrade: {status:#}"),
        )
    })
}
