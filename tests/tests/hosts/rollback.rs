//! 6. `strackt rollback [ID]` puts back exactly the files and units of that generation, without
//!    a rebuild, and without the `settle` wait an apply makes: that generation already ran
//!    here and passed its settle.

use std::collections::BTreeMap;

use strackt_integration::{ensure, ensure_eq, with_host, Host, Res};

use crate::HEADER;

const V1: &str = r#"files:
  /etc/app/a.conf: { content: "a=1\n" }
  /etc/app/b.conf: { content: "b=1\n", mode: "0640" }
services:
  s1:
    exec: /usr/bin/sleep infinity
    environment: { V: "1" }
"#;

const V2: &str = r#"files:
  /etc/app/a.conf: { content: "a=2\n" }
  /etc/app/c.conf: { content: "c=2\n" }
services:
  s1:
    exec: /usr/bin/sleep infinity
    environment: { V: "2" }
  s2:
    exec: /usr/bin/sleep infinity
"#;

const V3: &str = r#"files:
  /etc/app/a.conf: { content: "a=3\n", mode: "0600" }
  /etc/app/c.conf: { content: "c=3\n" }
services:
  s1:
    exec: /usr/bin/sleep 1000000
  s3:
    exec: /usr/bin/sleep infinity
"#;

/// Everything the three definitions touch, as seen on the host.
fn snapshot(h: &Host) -> Res<BTreeMap<String, String>> {
    let mut snap = BTreeMap::new();
    for path in [
        "/etc/app/a.conf",
        "/etc/app/b.conf",
        "/etc/app/c.conf",
        "/etc/systemd/system/s1.service",
        "/etc/systemd/system/s2.service",
        "/etc/systemd/system/s3.service",
    ] {
        let seen = if h.exists(path)? {
            format!("{} {}", h.stat(path)?, h.read(path)?)
        } else {
            "<absent>".to_string()
        };
        snap.insert(path.to_string(), seen);
    }
    for unit in ["s1.service", "s2.service", "s3.service"] {
        snap.insert(format!("{unit} is-active"), h.is_active(unit)?);
    }
    let s1 = h.main_pid("s1.service")?;
    if s1 != 0 {
        let env = h.sh_ok(&format!(
            "tr '\\0' '\\n' < /proc/{s1}/environ | grep '^V=' || true"
        ))?;
        snap.insert("s1 environment V".into(), env.trim().to_string());
    }
    Ok(snap)
}

fn diff(got: &BTreeMap<String, String>, want: &BTreeMap<String, String>) -> String {
    want.iter()
        .filter(|(k, v)| got.get(*k) != Some(v))
        .map(|(k, v)| format!("  {k}: got {:?}, want {v:?}\n", got.get(k)))
        .collect()
}

fn ensure_state(h: &Host, want: &BTreeMap<String, String>, generation: u64, when: &str) -> Res {
    let got = snapshot(h)?;
    ensure(&got == want, || {
        format!(
            "{when}: the host is not generation {generation}:\n{}",
            diff(&got, want)
        )
    })?;
    ensure_eq(
        h.active_generation()?,
        generation,
        &format!("{when}: active generation"),
    )?;
    ensure_eq(
        h.current_link()?,
        format!("generations/{generation}"),
        &format!("{when}: /var/lib/strackt/current"),
    )?;
    ensure_eq(
        h.status()?.current_generation,
        Some(generation),
        &format!("{when}: status.current_generation"),
    )
}

/// How long the last pass or rollback waited for its units to settle (0: not at all).
fn settle_us(h: &Host) -> Res<u64> {
    Ok(h.status()?
        .last_pass_phases_us
        .get("settle")
        .copied()
        .unwrap_or(0))
}

#[test]
fn rollback_restores_exactly_the_older_generation() -> Res {
    with_host("rollback", |h| {
        // A settle long enough that an apply is seen to wait it.
        let header = HEADER.replace("interval: 1h\n", "interval: 1h\n  settle: 3s\n");
        ensure(header != HEADER, || {
            "HEADER has no `interval: 1h` line".into()
        })?;
        h.install(&format!("{header}{V1}"))?;
        h.apply_ok()?;
        let g1 = h.active_generation()?;
        let snap1 = snapshot(h)?;

        h.put_definition(&format!("{header}{V2}"))?;
        h.apply_ok()?;
        let g2 = h.active_generation()?;
        ensure(g2 > g1, || format!("generation {g2} after {g1}"))?;
        let snap2 = snapshot(h)?;
        ensure(snap2 != snap1, || "v2 changed nothing on the host".into())?;

        // The apply that built g2 restarted s1 and waited the settle before verifying.
        let history = h.history()?;
        let built = history
            .iter()
            .find(|o| o.kind == "apply" && o.generation == Some(g2));
        ensure(
            built.is_some_and(|o| o.duration_ms.is_some_and(|ms| ms >= 3_000)),
            || format!("the apply that built {g2} did not wait `settle: 3s`: {built:#?}"),
        )?;

        // Default: the previous generation.
        let out = h.strackt(&["rollback"])?;
        ensure(out.success(), || format!("`strackt rollback`: {out}"))?;
        ensure_state(h, &snap1, g1, "after `strackt rollback`")?;
        ensure_eq(
            settle_us(h)?,
            0,
            "µs the rollback (which restarted s1) waited to settle",
        )?;

        let out = h.strackt(&["rollback", &g2.to_string()])?;
        ensure(out.success(), || format!("`strackt rollback {g2}`: {out}"))?;
        ensure_state(h, &snap2, g2, &format!("after `strackt rollback {g2}`"))?;

        h.put_definition(&format!("{header}{V3}"))?;
        h.apply_ok()?;
        let g3 = h.active_generation()?;
        ensure(g3 > g2, || format!("generation {g3} after {g2}"))?;
        let snap3 = snapshot(h)?;

        let out = h.strackt(&["rollback", &g1.to_string()])?;
        ensure(out.success(), || format!("`strackt rollback {g1}`: {out}"))?;
        ensure_state(
            h,
            &snap1,
            g1,
            &format!("after `strackt rollback {g1}` from {g3}"),
        )?;
        ensure(
            h.exists(&format!("/var/lib/strackt/generations/{g1}/manifest.json"))?,
            || "no manifest.json in the generation rolled back to".into(),
        )?;
        let history = h.history()?;
        ensure(
            history.first().is_some_and(|o| {
                o.kind == "rollback" && o.generation == Some(g1) && o.outcome == "success"
            }),
            || format!("newest operation should be the rollback to {g1}: {history:#?}"),
        )?;

        // A generation that does not exist: refused, nothing changes.
        let out = h.strackt(&["rollback", "9999"])?;
        ensure(!out.success(), || {
            format!("`strackt rollback 9999` must fail: {out}")
        })?;
        ensure_state(h, &snap1, g1, "after the refused `strackt rollback 9999`")?;
        // Asked for JSON, the refusal is JSON on stdout (for scripts), naming the generation.
        let out = h.strackt(&["--json", "rollback", "9999"])?;
        let error: serde_json::Value = serde_json::from_str(&out.stdout)
            .map_err(|e| format!("`strackt --json rollback 9999` printed no JSON ({e}): {out}"))?;
        ensure(
            out.code == Some(1) && error["error"].as_str().is_some_and(|m| m.contains("9999")),
            || format!("`strackt --json rollback 9999`: {out}"),
        )?;
        ensure(snap3 != snap1, || {
            "v3 and v1 look the same; the test proves nothing".into()
        })?;
        Ok(())
    })
}
