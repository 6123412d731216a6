//! Deploys of an app that binds its own port (issue 13, `mode: proxy`) on a real host with
//! Debian's nginx and nodejs: the plain Node app in `tests/apps/hello` is made a git repository
//! inside the host and deployed with `strackt deploy hello`, with wrk driving GET / through
//! nginx the whole time.
//!
//! 1. A first deploy writes the nginx site and starts release 1 on the first port; a second
//!    deploy under load starts release 2 on the other port, moves the traffic with a reload and
//!    stops release 1 — 0 failed requests, and a slow request in flight at the switch finishes.
//!    `rollback-release` under load goes back the same way, 0 failed requests.
//! 2. A deploy whose build fails, one whose release never answers its health path on its own
//!    port, and one whose site `nginx -t` refuses fail under load with 0 failed requests: the
//!    site is unchanged (put back) and the live release keeps serving. Preflight names nginx
//!    when it is missing.
//! 3. A release that fails to start after its migration ran: the database is put back from the
//!    pre-migrate dump, the site is unchanged, and no request fails.
//! 4. An app changes mode both ways: socket → proxy retires its socket units, proxy → socket
//!    removes its site and its release units.
//! 5. A host switch upgrading a library the live release loaded (a Node module from the test
//!    archive, required at start) restarts that release's instance: new MainPID, the new
//!    module loaded, the app answering through nginx, the restart and health steps recorded.

use strackt_integration::{ensure, ensure_eq, repo_root, with_app_host, Host, Out, Res};

use crate::apt_repo::{publish, Deb, Suite};
use crate::deploy::{background, get};
use crate::package_users::{package_switch, start_load, step_of, stop_load};
use crate::{running_pid, HEADER};

/// The app's definition; `extra` goes into the app (e.g. its database).
fn definition(extra: &str) -> String {
    format!(
        r#"{HEADER}users:
  hello: {{}}
apps:
  hello:
    repo: /srv/src/hello
    path: /srv/hello
    user: hello
{extra}    steps:
      build: sh build.sh
      validate: node server.js --check
      migrate: sh migrate.sh
    service:
      exec: node server.js
      listen: "127.0.0.1:8000"
      health: /health
      within: 10s
      mode: proxy
      ports: [8001, 8002]
"#
    )
}

/// The sample app as a git repository in the host (its migration `migrate.sh`), and strackt
/// with `definition`.
fn setup_with(h: &Host, definition: &str, migrate: &str) -> Res {
    let app = repo_root().join("tests/apps/hello");
    for rel in ["server.js", "build.sh", "VERSION", "README.md"] {
        h.copy_in(&app.join(rel), &format!("/srv/src/hello/{rel}"))?;
    }
    h.write("/srv/src/hello/migrate.sh", migrate, 0o644)?;
    commit(h, "true", "version 1")?;
    h.install(definition)
}

/// The app without a database.
fn setup(h: &Host) -> Res {
    setup_with(h, &definition(""), "true\n")
}

/// Run `script` in the app's repository and commit the result.
fn commit(h: &Host, script: &str, message: &str) -> Res {
    h.sh_ok(&format!(
        "cd /srv/src/hello && {{ {script}; }} && git init -q -b main 2>/dev/null; git add -A && git -c user.name=dev -c user.email=dev@example.com commit -q -m '{message}'"
    ))?;
    Ok(())
}

fn deploy(h: &Host) -> Res<Out> {
    h.strackt(&["deploy", "hello"])
}

/// Run `action` with wrk on GET / through nginx around it; every request must succeed.
fn no_failed_request<T>(h: &Host, what: &str, action: impl FnOnce() -> Res<T>) -> Res<T> {
    start_load(h, "/")?;
    let result = action();
    std::thread::sleep(std::time::Duration::from_secs(1));
    let (requests, failed, wrk) = stop_load(h)?;
    // Shown with --nocapture: the figures behind the verdict.
    eprintln!("{what}: {requests} requests, {failed} failed");
    let value = result?;
    ensure(requests > 100 && failed == 0, || {
        format!("{what}: {requests} requests, {failed} failed:\n{wrk}")
    })?;
    Ok(value)
}

/// The loopback port nginx sends the app's traffic to.
fn site_port(h: &Host) -> Res<String> {
    Ok(h.sh_ok(
        "sed -n 's/^ *server 127.0.0.1:\\([0-9]*\\);/\\1/p' /etc/nginx/conf.d/strackt-hello.conf",
    )?
    .trim()
    .to_string())
}

#[test]
fn proxy_deploys_and_rollback_under_load_fail_no_request() -> Res {
    with_app_host("proxy-deploy", |h| {
        // No migrate step: the release that passed its validation boot keeps running into the
        // switch (the other tests, with one, cover the second boot).
        let plain = definition("").replace("      migrate: sh migrate.sh\n", "");
        setup_with(h, &plain, "true\n")?;
        let out = deploy(h)?;
        ensure(out.success(), || format!("first deploy failed: {out}"))?;
        for step in ["validate-boot", "start", "switch", "health", "drain"] {
            ensure(out.stdout.contains(&format!("ok     {step}")), || {
                format!("step {step} not shown as done:\n{out}")
            })?;
        }
        ensure_eq(get(h, "/")?, (200, "version 1\n".into()), "served by nginx")?;
        ensure_eq(site_port(h)?, "8001".to_string(), "release 1's port")?;
        ensure_eq(
            h.sh_ok("ps -o user= -p $(systemctl show -P MainPID strackt-app-hello@1.service)")?
                .trim()
                .to_string(),
            "hello".to_string(),
            "the release runs as the app's user",
        )?;
        ensure_eq(
            h.is_enabled("strackt-app-hello@1.service")?,
            "enabled".to_string(),
            "the live release starts at boot",
        )?;

        commit(h, "echo 2 > VERSION", "version 2")?;
        // A slow request in flight at the switch, on release 1.
        background(
            h,
            "curl -s -w ' %{http_code}' --max-time 20 http://127.0.0.1:8000/slow > /tmp/slow.out",
        )?;
        let out = no_failed_request(h, "deploy of release 2", || deploy(h))?;
        ensure(out.success(), || format!("second deploy failed: {out}"))?;
        ensure_eq(get(h, "/")?, (200, "version 2\n".into()), "release 2 live")?;
        ensure_eq(
            site_port(h)?,
            "8002".to_string(),
            "release 2 on the other port",
        )?;
        h.sh_ok("for i in $(seq 100); do [ -s /tmp/slow.out ] && exit 0; sleep 0.1; done; exit 1")?;
        ensure_eq(
            h.read("/tmp/slow.out")?,
            "slow 1\n 200".to_string(),
            "the request in flight at the switch finished on release 1",
        )?;
        ensure_eq(
            h.is_active("strackt-app-hello@1.service")?,
            "inactive".to_string(),
            "release 1 stopped after draining",
        )?;
        ensure_eq(
            h.is_enabled("strackt-app-hello@1.service")?,
            "disabled".to_string(),
            "release 1 no longer starts at boot",
        )?;
        ensure_eq(
            h.sh_ok("readlink /srv/hello/current")?.trim().to_string(),
            "releases/2".to_string(),
            "current",
        )?;
        ensure_eq(
            h.sh_ok(
                "journalctl --no-pager -o cat -u strackt-app-hello@2.service | grep -c '^Started '",
            )?
            .trim()
            .to_string(),
            "1".to_string(),
            "release 2 booted once: its validation boot ran on into the switch",
        )?;

        let out = no_failed_request(h, "rollback-release", || {
            h.strackt(&["rollback-release", "hello"])
        })?;
        ensure(out.success(), || format!("rollback-release failed: {out}"))?;
        ensure_eq(get(h, "/")?, (200, "version 1\n".into()), "release 1 back")?;
        ensure_eq(
            site_port(h)?,
            "8001".to_string(),
            "release 1 on the free port",
        )?;
        ensure_eq(
            h.is_active("strackt-app-hello@2.service")?,
            "inactive".to_string(),
            "release 2 stopped",
        )?;
        Ok(())
    })
}

/// After a failed deploy: release 1 serves, nginx's site is still release 1's, and no other
/// release instance runs.
fn release_1_alone(h: &Host, site: &str, what: &str) -> Res {
    ensure_eq(
        get(h, "/")?,
        (200, "version 1\n".into()),
        &format!("{what}: release 1 serves on"),
    )?;
    ensure_eq(
        h.read("/etc/nginx/conf.d/strackt-hello.conf")?,
        site.to_string(),
        &format!("{what}: the site is release 1's"),
    )?;
    ensure_eq(
        h.sh_ok(
            "systemctl list-units --plain --no-legend 'strackt-app-hello@*' | awk '{print $1, $3}'",
        )?,
        "strackt-app-hello@1.service active\n".to_string(),
        &format!("{what}: only release 1 runs"),
    )
}

#[test]
fn failed_proxy_deploys_under_load_fail_no_request() -> Res {
    with_app_host("proxy-failed", |h| {
        setup(h)?;
        let out = deploy(h)?;
        ensure(out.success(), || format!("first deploy failed: {out}"))?;
        let site = h.read("/etc/nginx/conf.d/strackt-hello.conf")?;

        commit(
            h,
            "printf 'echo broken >&2; exit 1\\n' > build.sh",
            "broken build",
        )?;
        let out = no_failed_request(h, "deploy with a failing build", || deploy(h))?;
        ensure(
            !out.success() && out.stdout.contains("FAILED build"),
            || format!("the build must fail the deploy: {out}"),
        )?;
        release_1_alone(h, &site, "after a failing build")?;

        // Builds, but its health path fails on its own port: no request may reach it.
        commit(
            h,
            "git checkout -q HEAD~1 -- build.sh && echo 3 > VERSION && touch FAIL_HEALTH",
            "unhealthy",
        )?;
        let out = no_failed_request(h, "deploy of a release failing its health", || deploy(h))?;
        ensure(
            !out.success() && out.stdout.contains("FAILED validate-boot"),
            || format!("the health check on its own port must fail the deploy: {out}"),
        )?;
        release_1_alone(h, &site, "after a release failing its health")?;

        // A release that starts fine, but nginx refuses the configuration (another site is
        // broken): the site is put back, nginx was never reloaded, the new release stopped.
        commit(h, "rm FAIL_HEALTH && echo 4 > VERSION", "version 4")?;
        h.write(
            "/etc/nginx/conf.d/zz-broken.conf",
            "this is not nginx\n",
            0o644,
        )?;
        let out = no_failed_request(h, "deploy refused by nginx -t", || deploy(h))?;
        h.sh_ok("rm /etc/nginx/conf.d/zz-broken.conf")?;
        ensure(
            !out.success()
                && out.stdout.contains("FAILED switch")
                && out
                    .text()
                    .contains("nginx -t failed with the new site in place"),
            || format!("nginx -t must fail the switch: {out}"),
        )?;
        release_1_alone(
            h,
            &site,
            "after nginx -t refused (site put back, new release stopped)",
        )?;

        // Without nginx, preflight says what to install and nothing starts.
        h.sh_ok("mv /usr/sbin/nginx /usr/sbin/nginx.away")?;
        let out = deploy(h)?;
        h.sh_ok("mv /usr/sbin/nginx.away /usr/sbin/nginx")?;
        ensure(
            !out.success()
                && out.text().contains(
                    "apps.hello.service: `nginx` is not installed: add `nginx: latest` under `packages:`",
                ),
            || format!("preflight must name nginx: {out}"),
        )?;
        Ok(())
    })
}

#[test]
fn a_proxy_release_failing_to_start_after_its_migration_puts_the_database_back() -> Res {
    with_app_host("proxy-db", |h| {
        h.sh_ok(
            "runuser -u postgres -- psql -q -c \"CREATE ROLE hello LOGIN PASSWORD 'pw-hello'\" -c 'CREATE DATABASE hello OWNER hello'",
        )?;
        h.sh_ok("mkdir -p /etc/strackt/secrets && chmod 700 /etc/strackt/secrets")?;
        h.write("/etc/strackt/secrets/hello_db", "pw-hello\n", 0o600)?;
        let database = "    database: { engine: postgresql, name: hello, user: hello, password: { secret: hello_db } }\n    requires: [postgresql.service]\n";
        setup_with(
            h,
            &definition(database),
            "psql -X -q -v ON_ERROR_STOP=1 -c 'CREATE TABLE marks (n int)'\n",
        )?;
        let out = deploy(h)?;
        ensure(out.success(), || format!("first deploy failed: {out}"))?;
        let site = h.read("/etc/nginx/conf.d/strackt-hello.conf")?;

        // Release 2 migrates, then leaves itself a FAIL_HEALTH file: it passed its validation
        // boot (before the migration) and fails on its port at the switch.
        commit(
            h,
            "echo 2 > VERSION && printf \"psql -X -q -v ON_ERROR_STOP=1 -c 'INSERT INTO marks VALUES (2)' && touch FAIL_HEALTH\\n\" > migrate.sh",
            "migrates, then cannot start",
        )?;
        let out = no_failed_request(h, "deploy failing at its start", || deploy(h))?;
        ensure(
            !out.success()
                && out.stdout.contains("FAILED start")
                && out.text().contains("the database was put back"),
            || format!("the failed start must put the database back: {out}"),
        )?;
        ensure_eq(
            h.sh_ok("runuser -u postgres -- psql -X -At -d hello -c 'SELECT count(*) FROM marks'")?
                .trim()
                .to_string(),
            "0".to_string(),
            "the migration's row is gone",
        )?;
        ensure_eq(
            get(h, "/")?,
            (200, "version 1\n".into()),
            "release 1 serves on",
        )?;
        ensure_eq(
            h.read("/etc/nginx/conf.d/strackt-hello.conf")?,
            site,
            "the site is unchanged",
        )?;
        Ok(())
    })
}

#[test]
fn an_app_changes_from_socket_to_proxy_mode_and_back() -> Res {
    with_app_host("proxy-mode-change", |h| {
        let proxy = definition("");
        let socket = proxy.replace("      mode: proxy\n      ports: [8001, 8002]\n", "");
        ensure(socket != proxy, || "the socket-mode definition".to_string())?;
        setup_with(h, &socket, "true\n")?;
        let out = deploy(h)?;
        ensure(out.success(), || {
            format!("socket-mode deploy failed: {out}")
        })?;
        ensure_eq(get(h, "/")?, (200, "version 1\n".into()), "socket mode")?;

        h.put_definition(&proxy)?;
        commit(h, "echo 2 > VERSION", "version 2")?;
        let out = deploy(h)?;
        ensure(out.success(), || {
            format!("deploy into proxy mode failed: {out}")
        })?;
        ensure_eq(get(h, "/")?, (200, "version 2\n".into()), "proxy mode")?;
        ensure_eq(site_port(h)?, "8001".to_string(), "through nginx")?;
        ensure(
            !h.exists("/etc/systemd/system/strackt-app-hello.socket")?
                && h.is_active("strackt-app-hello.socket")? != "active",
            || "the socket unit is gone".to_string(),
        )?;

        h.put_definition(&socket)?;
        commit(h, "echo 3 > VERSION", "version 3")?;
        let out = deploy(h)?;
        ensure(out.success(), || {
            format!("deploy back into socket mode failed: {out}")
        })?;
        ensure_eq(
            get(h, "/")?,
            (200, "version 3\n".into()),
            "socket mode again",
        )?;
        ensure(
            !h.exists("/etc/nginx/conf.d/strackt-hello.conf")?
                && !h.exists("/etc/systemd/system/strackt-app-hello@.service")?,
            || "the site and the template unit are gone".to_string(),
        )?;
        ensure_eq(
            h.is_active("strackt-app-hello@2.service")?,
            "inactive".to_string(),
            "the proxy-mode release stopped",
        )?;
        Ok(())
    })
}

/// A Node module in the test archive, in Node's module directory (where strackt looks for what
/// a `node` process may have loaded), saying at load which version it is.
const NODE_LIB: &str = "/usr/share/nodejs/strackt-demo-nodelib/index.js";

/// The app loading [`NODE_LIB`] at start (`NODE_OPTIONS=--require`), with the library at
/// `lib` in `packages:`.
fn definition_with_library(lib: &str) -> String {
    let app = definition(&format!(
        "    settings:\n      NODE_OPTIONS: \"--require {NODE_LIB}\"\n"
    ))
    .replace("      migrate: sh migrate.sh\n", "");
    format!("{app}packages:\n  strackt-demo-nodelib: \"{lib}\"\n")
}

/// Whether process `pid`'s output says it loaded version `version` of the library.
fn loaded(h: &Host, pid: u32, version: &str) -> Res<bool> {
    Ok(h
        .sh(&format!(
            "for i in $(seq 50); do journalctl -q --no-pager -o cat _PID={pid} | grep -qx 'strackt-demo-nodelib {version} loaded' && exit 0; sleep 0.1; done; exit 1"
        ))?
        .success())
}

#[test]
fn a_library_upgrade_restarts_the_live_proxy_release_which_answers_again() -> Res {
    with_app_host("proxy-library", |h| {
        let module = |v: &str| format!("console.log(\"strackt-demo-nodelib {v} loaded\");\n");
        let (m10, m11) = (module("1.0"), module("1.1"));
        let files_10 = [(NODE_LIB, m10.as_str())];
        let files_11 = [(NODE_LIB, m11.as_str())];
        let deb = |version, suite, files| Deb {
            name: "strackt-demo-nodelib",
            version,
            suite,
            depends: "",
            files,
        };
        publish(
            h,
            &[
                deb("1.0", Suite::Main, &files_10),
                deb("1.1", Suite::Security, &files_11),
            ],
        )?;
        setup_with(h, &definition_with_library("1.0"), "true\n")?;
        h.apply_ok()?;
        let out = deploy(h)?;
        ensure(out.success(), || format!("deploy failed: {out}"))?;
        let unit = "strackt-app-hello@1.service";
        let before = running_pid(h, unit)?;
        ensure(loaded(h, before, "1.0")?, || {
            format!("release 1 did not load the library 1.0:\n{}", h.journal(40))
        })?;

        // The upgrade, under load through nginx: the release restarts in place, so nginx
        // answers 502 until it listens again (counted, not required to be 0).
        start_load(h, "/")?;
        h.put_definition(&definition_with_library("1.1"))?;
        let applied = h.apply_ok();
        let (requests, failed, wrk) = stop_load(h)?;
        eprintln!("library upgrade under load: {requests} requests, {failed} failed");
        applied?;
        ensure(requests > 0, || format!("no request got through:\n{wrk}"))?;
        let after = running_pid(h, unit)?;
        ensure(after != before, || {
            format!("{unit} was not restarted (MainPID {before})")
        })?;
        ensure(loaded(h, after, "1.1")?, || {
            "the restarted release did not load the library 1.1".to_string()
        })?;
        ensure_eq(get(h, "/")?, (200, "version 1\n".into()), "answering again")?;
        ensure_eq(site_port(h)?, "8001".to_string(), "still on its port")?;

        let op = package_switch(h)?;
        let step = |action: &str, target: &str| step_of(&op, action, target);
        ensure_eq(
            step("restart", unit),
            Some((
                "ok".into(),
                "uses strackt-demo-nodelib (upgraded 1.0 → 1.1)".into(),
            )),
            "the restart step",
        )?;
        ensure_eq(
            step("health", "app hello").map(|s| s.0),
            Some("ok".into()),
            "the app's health step",
        )?;
        Ok(())
    })
}
