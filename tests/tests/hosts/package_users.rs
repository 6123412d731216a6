//! What uses a changed package (issue 12, items 4–6), on a real host with the sample app
//! deployed by strackt and importing a library from the test archive (`strackt-demo-lib`:
//! 1.0, a 1.1 in the security suite, and a 2.0 whose module raises on import):
//!
//! 1. The definition moves the library from 1.0 to 1.1: the package is upgraded, the app is
//!    restarted through its socket (new main PID, answers the new VERSION) with no failed
//!    request under load and its health passed; a managed service not using the library
//!    keeps its PID. Moving to 2.0 breaks the app: the host is rolled back, the reason names
//!    the app, 1.1 is back (from strackt's cache: the archive no longer has it) and the app
//!    serves on it again.
//! 2. A downgrade by hand is repaired like any drift, and `strackt plan` names the app's
//!    restart beforehand. Dropping the library from `packages:` removes what the app needs:
//!    rolled back, named.
//!    `postgresql` installed by hand, on a host whose app requires `postgresql.service`, is
//!    kept by every pass with a `packages:` section, and `strackt plan` says why.

use strackt_integration::{ensure, ensure_eq, with_app_host, Host, Operation, Res};

use crate::apt_repo::{publish, Deb, Suite, ROOT};
use crate::deploy::{self, deploy_ok, get};
use crate::running_pid;

const MODULE: &str = "/usr/lib/python3/dist-packages/strackt_demo_lib.py";

/// The library's three versions in the test archive.
fn library(h: &Host) -> Res {
    let deb = |version, suite, files| Deb {
        name: "strackt-demo-lib",
        version,
        suite,
        depends: "",
        files,
    };
    publish(
        h,
        &[
            deb("1.0", Suite::Main, &[(MODULE, "VERSION = \"1.0\"\n")]),
            deb("1.1", Suite::Security, &[(MODULE, "VERSION = \"1.1\"\n")]),
            deb(
                "2.0",
                Suite::Main,
                &[(
                    MODULE,
                    "raise RuntimeError(\"strackt-demo-lib 2.0 is broken\")\n",
                )],
            ),
        ],
    )
}

/// The deploy tests' app, requiring the library, plus a managed service that does not use it;
/// `lib` is the library's version in `packages:` (empty: no `packages:` section).
fn definition(lib: &str) -> String {
    let app = deploy::definition(5).replace(
        "      APP_ENV: production\n",
        "      APP_ENV: production\n      DEMO_LIB: required\n",
    );
    let packages = if lib.is_empty() {
        String::new()
    } else {
        format!("packages:\n  strackt-demo-lib: \"{lib}\"\n")
    };
    format!("{app}services:\n  idle: {{ exec: /bin/sleep infinity }}\n{packages}")
}

fn version(h: &Host) -> Res<String> {
    Ok(
        h.sh_ok("dpkg-query -W -f '${Version}' strackt-demo-lib 2>/dev/null || true")?
            .trim()
            .to_string(),
    )
}

/// Start wrk against the app's `path` on 127.0.0.1:8000 in the background (a transient unit).
pub(crate) fn start_load(h: &Host, path: &str) -> Res {
    h.sh_ok(&format!(
        "rm -f /tmp/wrk.out; systemd-run --quiet --collect --unit=pkg-wrk -p StandardOutput=file:/tmp/wrk.out \
         wrk -t2 -c8 --timeout 5s -d600s http://127.0.0.1:8000{path} && sleep 1"
    ))?;
    Ok(())
}

/// Stop wrk (it prints its summary when interrupted): (requests, failed), failed being socket
/// errors plus non-2xx answers.
pub(crate) fn stop_load(h: &Host) -> Res<(u64, u64, String)> {
    let out = h.sh_ok(
        "systemctl kill -s INT pkg-wrk.service; for i in $(seq 100); do systemctl is-active -q pkg-wrk.service || break; sleep 0.1; done; cat /tmp/wrk.out",
    )?;
    let number_after = |label: &str| -> u64 {
        out.lines()
            .find_map(|l| l.split_once(label))
            .and_then(|(_, rest)| rest.trim().split([' ', ',']).next()?.parse().ok())
            .unwrap_or(0)
    };
    let requests = out
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no wrk summary: {out}"))?;
    let errors: u64 = ["connect ", "read ", "write ", "timeout "]
        .iter()
        .map(|k| number_after(k))
        .sum();
    Ok((
        requests,
        errors + number_after("Non-2xx or 3xx responses:"),
        out,
    ))
}

/// The newest failed operation, which must be a rollback whose reason names the app.
/// The last operation that installed a package (the host switch of an upgrade).
pub(crate) fn package_switch(h: &Host) -> Res<Operation> {
    let mut history = h.history()?;
    let found = history
        .iter()
        .position(|o| o.steps.iter().any(|s| s.action == "install-package"));
    match found {
        Some(i) => Ok(history.swap_remove(i)),
        None => Err(format!("no operation installed a package: {history:#?}").into()),
    }
}

/// `(outcome, detail)` of `op`'s step `action` on `target`.
pub(crate) fn step_of(op: &Operation, action: &str, target: &str) -> Option<(String, String)> {
    op.steps
        .iter()
        .find(|s| s.action == action && s.target == target)
        .map(|s| (s.outcome.clone(), s.detail.clone().unwrap_or_default()))
}

fn rolled_back_naming_the_app(h: &Host, what: &str) -> Res {
    let history = h.history()?;
    let op = history
        .iter()
        .find(|o| ["failed", "rolled-back"].contains(&o.outcome.as_str()))
        .ok_or_else(|| format!("{what}: no failed operation in {history:#?}"))?;
    ensure(
        op.outcome == "rolled-back" && op.reason.as_deref().is_some_and(|r| r.contains("app shop")),
        || format!("{what}: the operation must be rolled back naming app shop: {op:#?}"),
    )
}

#[test]
fn a_library_upgrade_restarts_the_app_without_a_failed_request_and_a_breaking_one_rolls_back() -> Res
{
    with_app_host("pkgusers", |h| {
        library(h)?;
        deploy::setup_with(h, &definition("1.0"))?;
        h.apply_ok()?;
        ensure_eq(version(h)?.as_str(), "1.0", "library installed")?;
        deploy_ok(h)?;
        ensure_eq(get(h, "/lib")?, (200, "lib 1.0\n".into()), "the app on 1.0")?;
        let app = running_pid(h, "strackt-app-shop.service")?;
        let idle = running_pid(h, "idle.service")?;

        // 1.1 under load.
        start_load(h, "/lib")?;
        h.put_definition(&definition("1.1"))?;
        h.apply_ok()?;
        let (requests, failed, wrk) = stop_load(h)?;
        ensure(requests > 0 && failed == 0, || {
            format!("requests during the upgrade: {requests}, failed {failed}:\n{wrk}")
        })?;
        ensure_eq(version(h)?.as_str(), "1.1", "library upgraded")?;
        ensure(running_pid(h, "strackt-app-shop.service")? != app, || {
            "the app was not restarted".into()
        })?;
        ensure_eq(get(h, "/lib")?, (200, "lib 1.1\n".into()), "the app on 1.1")?;
        ensure_eq(
            running_pid(h, "idle.service")?,
            idle,
            "MainPID of idle (uses no file of the library)",
        )?;
        let op = package_switch(h)?;
        let step = |action: &str, target: &str| step_of(&op, action, target);
        ensure_eq(
            step("restart", "strackt-app-shop.service"),
            Some((
                "ok".into(),
                "uses strackt-demo-lib (upgraded 1.0 → 1.1)".into(),
            )),
            "the restart step",
        )?;
        ensure_eq(
            step("health", "app shop").map(|s| s.0),
            Some("ok".into()),
            "the app's health step",
        )?;
        ensure(step("restart", "idle.service").is_none(), || {
            format!("idle was restarted: {op:#?}")
        })?;

        // 2.0 breaks the app: back to 1.1, serving. 1.1 is gone from the archive and from
        // apt's cache first, so it can only come back from strackt's.
        h.sh_ok(&format!(
            "rm {ROOT}/pool/bookworm-security/strackt-demo-lib_1.1_all.deb && apt-get clean"
        ))?;
        publish(h, &[])?;
        h.put_definition(&definition("2.0"))?;
        let out = h.apply()?;
        ensure(!out.success() && out.text().contains("app shop"), || {
            format!("`strackt apply` of a breaking upgrade must fail naming the app: {out}")
        })?;
        rolled_back_naming_the_app(h, "2.0")?;
        ensure_eq(version(h)?.as_str(), "1.1", "library after the rollback")?;
        ensure_eq(
            get(h, "/lib")?,
            (200, "lib 1.1\n".into()),
            "the app after the rollback",
        )?;
        Ok(())
    })
}

#[test]
fn dropping_a_library_an_app_needs_rolls_back_and_postgresql_installed_by_hand_is_kept() -> Res {
    with_app_host("pkgkeep", |h| {
        library(h)?;
        // strackt takes the host over without the `postgresql` package (the server keeps
        // running: postgresql-15 stays); the admin installs it by hand afterwards.
        h.sh_ok("DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq postgresql >/dev/null")?;
        deploy::setup_with(h, &definition("1.1"))?;
        h.apply_ok()?;
        h.sh_ok("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null")?;
        ensure(
            h.sh_ok("apt-mark showmanual postgresql")?
                .contains("postgresql"),
            || "postgresql is not marked installed by hand".into(),
        )?;
        let plan = h.strackt(&["plan"])?;
        ensure(
            plan.success()
                && plan.text().contains("keep postgresql ")
                && plan
                    .text()
                    .contains("provides postgresql.service required by app shop")
                && !plan.text().contains("remove-package postgresql"),
            || format!("`strackt plan` must keep postgresql and say why: {plan}"),
        )?;
        h.apply_ok()?;
        deploy_ok(h)?;
        ensure_eq(get(h, "/lib")?, (200, "lib 1.1\n".into()), "the app on 1.1")?;

        // A downgrade by hand is drift: `strackt plan` says the app would be restarted, and
        // the pass does so.
        h.sh_ok("DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --allow-downgrades --allow-change-held-packages strackt-demo-lib=1.0 >/dev/null")?;
        let plan = h.strackt(&["plan"])?;
        ensure(
            plan.text().contains(
                "would restart strackt-app-shop.service  (uses strackt-demo-lib (upgraded 1.0 → 1.1)",
            ),
            || format!("`strackt plan` must name the app's restart: {plan}"),
        )?;
        let app = running_pid(h, "strackt-app-shop.service")?;
        h.apply_ok()?;
        ensure_eq(version(h)?.as_str(), "1.1", "library after the repair")?;
        ensure(running_pid(h, "strackt-app-shop.service")? != app, || {
            "the app was not restarted by the repair".into()
        })?;

        // The library leaves the definition: the app cannot start without it.
        h.put_definition(&definition(""))?;
        let out = h.apply()?;
        ensure(!out.success() && out.text().contains("app shop"), || {
            format!("`strackt apply` removing the app's library must fail naming the app: {out}")
        })?;
        rolled_back_naming_the_app(h, "removal")?;
        ensure_eq(version(h)?.as_str(), "1.1", "library after the rollback")?;
        ensure_eq(
            get(h, "/lib")?,
            (200, "lib 1.1\n".into()),
            "the app after the rollback",
        )?;
        ensure(
            h.sh("dpkg-query -W -f '${Status}' postgresql")?
                .text()
                .contains("install ok installed"),
            || "postgresql was removed".into(),
        )?;
        Ok(())
    })
}
