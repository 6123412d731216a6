//! 4. A pass whose service does not come up is rolled back automatically: `strackt apply` exits
//!    non-zero naming the service, the previous generation is active again with its files and
//!    its service, and the failed generation and its reason are in the history.

use strackt_integration::{ensure, ensure_eq, with_host, Host, Res};

use crate::{running_pid, HEADER};

fn definition(motd: &str, hello: &str) -> String {
    format!(
        r#"{HEADER}files:
  /etc/motd: {{ content: "{motd}\n" }}
services:
  hello:
{hello}  steady:
    exec: /usr/bin/sleep infinity
"#
    )
}

const GOOD: &str = "    exec: /usr/bin/sleep infinity\n";

fn bad_pass_rolls_back(h: &Host, bad_hello: &str) -> Res {
    h.install(&definition("good", GOOD))?;
    h.apply_ok()?;
    let good_gen = h.active_generation()?;
    let good_unit = h.read("/etc/systemd/system/hello.service")?;
    let steady = running_pid(h, "steady.service")?;
    let gens_before = h.generations()?.len();

    let check = h.strackt(&["status", "--check"])?;
    ensure(check.success(), || {
        format!("`strackt status --check` on the good generation: {check}")
    })?;

    h.put_definition(&definition("bad", bad_hello))?;
    let out = h.apply()?;
    ensure(!out.success(), || {
        format!("`strackt apply` of a broken service must fail: {out}")
    })?;
    ensure(out.text().contains("hello"), || {
        format!("`strackt apply` does not name the failed service: {out}")
    })?;

    // Back on the previous generation, exactly.
    ensure_eq(
        h.active_generation()?,
        good_gen,
        "active generation after the rollback",
    )?;
    ensure_eq(
        h.status()?.current_generation,
        Some(good_gen),
        "status.current_generation",
    )?;
    ensure_eq(
        h.current_link()?,
        format!("generations/{good_gen}"),
        "/var/lib/strackt/current",
    )?;
    ensure_eq(
        h.read("/etc/motd")?.as_str(),
        "good\n",
        "/etc/motd after the rollback",
    )?;
    ensure_eq(
        h.read("/etc/systemd/system/hello.service")?,
        good_unit,
        "hello.service after the rollback",
    )?;
    ensure_eq(
        h.is_active("hello.service")?.as_str(),
        "active",
        "hello after the rollback",
    )?;
    ensure_eq(
        h.is_active("steady.service")?.as_str(),
        "active",
        "steady after the rollback",
    )?;
    ensure_eq(
        running_pid(h, "steady.service")?,
        steady,
        "MainPID of steady (untouched by both passes)",
    )?;

    // The attempt is recorded as such.
    let gens = h.generations()?;
    ensure(gens.len() > gens_before, || {
        format!("the failed attempt left no generation: {gens:#?}")
    })?;
    for g in gens.iter().filter(|g| g.id != good_gen) {
        ensure(
            g.id < good_gen || ["failed", "rolled-back"].contains(&g.state.as_str()),
            || {
                format!(
                    "generation {} should be failed/rolled-back: {gens:#?}",
                    g.id
                )
            },
        )?;
    }
    let history = h.history()?;
    let op = history
        .iter()
        .find(|o| ["failed", "rolled-back"].contains(&o.outcome.as_str()))
        .ok_or_else(|| format!("no failed or rolled-back operation in {history:#?}"))?;
    let reason = op.reason.clone().unwrap_or_default();
    ensure(reason.contains("hello"), || {
        format!("the reason does not name hello: {op:#?}")
    })?;
    ensure(!history.iter().any(|o| o.outcome == "running"), || {
        format!("an operation still running: {history:#?}")
    })?;
    // For monitoring: the host runs the old generation while the file says otherwise.
    let check = h.strackt(&["status", "--check"])?;
    ensure(
        check.code == Some(1) && check.text().contains("definition not applied"),
        || format!("`strackt status --check` after the rollback: {check}"),
    )?;
    Ok(())
}

#[test]
fn service_that_exits_at_once_is_rolled_back() -> Res {
    with_host("fail-exit", |h| {
        bad_pass_rolls_back(h, "    exec: /bin/false\n")
    })
}

#[test]
fn service_with_missing_binary_is_rolled_back() -> Res {
    with_host("fail-missing", |h| {
        bad_pass_rolls_back(h, "    exec: /usr/local/bin/no-such-program --serve\n")
    })
}

#[test]
fn service_whose_health_check_fails_is_rolled_back() -> Res {
    with_host("fail-health", |h| {
        bad_pass_rolls_back(
            h,
            "    exec: /usr/bin/sleep 1000000\n    health: { command: \"/bin/false\" }\n",
        )
    })
}
