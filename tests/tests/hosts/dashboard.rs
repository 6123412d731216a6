//! The dashboard (issue 15) in a real browser, while a deploy runs.
//!
//! Headless Chromium (Debian's `chromium`, installed on the machine by `tests/run`) runs on the
//! machine inside the test host's network namespace (`nsenter --net`), so it reaches the
//! daemon's `127.0.0.1:7477` as a browser on the server would, without putting a browser into
//! a testhost base. The test reads the DOM Chromium built (`--dump-dom`: what a person sees,
//! after parsing and any script) and takes a screenshot (`target/strackt-it/dashboard.png`,
//! the one in `docs/`).
//!
//! The deploy runs from a branch whose name is markup (`x"><script>…`): git accepts it, so it
//! reaches the page through the release, the fetch step and the summary, and must be shown as
//! text there, never run.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use strackt_integration::{
    ensure, ensure_eq, repo_root, run, testhost_for, wait_until, with_app_host, Base, Host, Out,
    Res,
};

use crate::deploy::{deploy_ok, setup};

/// A branch name git accepts that is also markup.
const EVIL: &str = "x\"><script>document.title=1</script>";
/// The secret values `deploy::setup` writes.
const SECRETS: [&str; 2] = ["key-123", "pw-shop"];
const URL: &str = "http://127.0.0.1:7477";

#[test]
fn the_dashboard_shows_a_running_deploy_in_a_real_browser() -> Res {
    with_app_host("dashboard", |h| {
        setup(h, 5)?;
        deploy_ok(h)?;
        // A slow install on the markup branch, deployed in the background.
        h.sh_ok(&format!(
            "cd /srv/src/shop && git checkout -q -b '{EVIL}' && printf 'sleep 20\\n' >> scripts/install \
             && git -c user.name=dev -c user.email=dev@example.com commit -qam slow"
        ))?;
        crate::deploy::background(
            h,
            &format!("strackt deploy shop --branch '{EVIL}' > /tmp/deploy.log 2>&1; echo $? > /tmp/deploy.rc"),
        )?;
        let mut op_id = 0;
        wait_until(
            "the deploy's install step running",
            Duration::from_secs(60),
            || {
                let (_, body) = h.http_get("/operations")?;
                let ops: serde_json::Value = serde_json::from_str(&body)?;
                let running = ops.as_array().and_then(|a| {
                    a.iter()
                        .find(|o| o["kind"] == "deploy" && o["outcome"] == "running")
                });
                let Some(op) = running else { return Ok(false) };
                op_id = op["id"].as_i64().ok_or("operation id")?;
                Ok(op["steps"].as_array().is_some_and(|s| {
                    s.iter()
                        .any(|s| s["action"] == "install" && s["outcome"] == "running")
                }))
            },
        )?;
        let status = h.status()?;
        let generation = status
            .current_generation
            .ok_or("no current generation")?
            .to_string();

        let dom = browse(h, "/")?;
        let shot = screenshot(h, "/")?;
        ensure(
            std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000),
            || format!("no screenshot at {}", shot.display()),
        )?;
        eprintln!("dashboard screenshot: {}", shot.display());
        ensure_eq(
            text_of_id(&dom, "generation"),
            generation,
            "current generation",
        )?;
        ensure_eq(text_of_id(&dom, "health"), status.health.clone(), "health")?;
        ensure_eq(status.health.as_str(), "ok", "health of the host")?;
        ensure(dom.contains("http-equiv=\"refresh\" content=\"2\""), || {
            format!("the page reloads itself while the deploy runs: {dom}")
        })?;
        // The running deploy with its steps: those done, and install running.
        let running = section(&dom, "running");
        ensure(
            text(running).contains(&format!("#{op_id} deploy running")),
            || format!("running deploy #{op_id} not shown: {}", text(running)),
        )?;
        let steps: Vec<(String, String)> = rows(running)
            .into_iter()
            .filter(|r| r.len() >= 4)
            .map(|r| (r[1].clone(), r[3].clone()))
            .collect();
        let want: Vec<(String, String)> = ["preflight", "fetch", "link-shared"]
            .iter()
            .map(|s| (s.to_string(), "ok".to_string()))
            .chain([("install".to_string(), "running".to_string())])
            .collect();
        ensure(steps.starts_with(&want), || {
            format!("steps of the running deploy: {steps:?}, want {want:?} first")
        })?;
        // The app's releases: 1 live, 2 building from the branch, shown as text.
        let releases = rows(section(&dom, "releases"));
        ensure(
            releases
                .iter()
                .any(|r| r.starts_with(&cells(&["2", "building", EVIL]))),
            || format!("release 2 building from {EVIL:?}: {releases:?}"),
        )?;
        ensure(
            releases
                .iter()
                .any(|r| r.starts_with(&cells(&["1", "live", "main"]))),
            || format!("release 1 live: {releases:?}"),
        )?;
        no_markup_from_git(&dom)?;
        no_secrets(&dom)?;

        // The operation's own page: its steps (never their output), reloading while it runs.
        let op_page = browse(h, &format!("/ui/operations/{op_id}"))?;
        let op_steps = rows(&op_page);
        ensure(
            op_steps
                .iter()
                .any(|r| r.len() >= 4 && r[1] == "fetch" && r[2].contains(EVIL) && r[3] == "ok"),
            || format!("fetch step on the branch: {op_steps:?}"),
        )?;
        ensure(op_page.contains("content=\"2\""), || {
            "the operation's page reloads while it runs".to_string()
        })?;
        no_markup_from_git(&op_page)?;
        no_secrets(&op_page)?;

        // Once it is done: nothing running, release 2 live, the deploy a success.
        h.sh_ok(
            "for i in $(seq 300); do [ -e /tmp/deploy.rc ] && exit 0; sleep 0.2; done; exit 1",
        )?;
        ensure_eq(
            h.read("/tmp/deploy.rc")?.trim().to_string(),
            "0".to_string(),
            &format!("the deploy: {}", h.read("/tmp/deploy.log")?),
        )?;
        let dom = browse(h, "/")?;
        ensure(
            text(section(&dom, "running")).contains("No operation is running."),
            || format!("still running: {}", text(section(&dom, "running"))),
        )?;
        let releases = rows(section(&dom, "releases"));
        ensure(
            releases
                .iter()
                .any(|r| r.starts_with(&cells(&["2", "live", EVIL]))),
            || format!("release 2 live: {releases:?}"),
        )?;
        let ops = rows(section(&dom, "operations"));
        ensure(
            ops.iter().any(|r| {
                r.len() >= 8
                    && r[0] == op_id.to_string()
                    && r[1] == "deploy"
                    && r[4] == "success"
                    && r[7].contains(&format!("from {EVIL}"))
            }),
            || format!("deploy #{op_id} a success in the operations: {ops:?}"),
        )?;
        ensure(
            dom.contains("http-equiv=\"refresh\" content=\"30\""),
            || "the slow reload once nothing runs".to_string(),
        )?;
        let op_page = browse(h, &format!("/ui/operations/{op_id}"))?;
        ensure(
            rows(&op_page)
                .iter()
                .any(|r| r.len() >= 4 && r[1] == "health" && r[3] == "ok"),
            || format!("health step done: {:?}", rows(&op_page)),
        )?;
        ensure(!op_page.contains("http-equiv=\"refresh\""), || {
            "a finished operation's page does not reload".to_string()
        })?;
        no_markup_from_git(&dom)?;
        no_secrets(&dom)?;
        no_secrets(&op_page)?;
        // No operation: a page that says so. Every page forbids scripts and framing.
        let (code, body) = h.http_get("/ui/operations/999999")?;
        ensure_eq(code, 404, "HTTP status of an unknown operation's page")?;
        ensure(text(&body).contains("no operation 999999"), || body.clone())?;
        let headers = h.sh_ok(&format!("curl -sS -o /dev/null -D - {URL}/"))?;
        ensure(
            headers
                .to_ascii_lowercase()
                .contains("content-security-policy: default-src 'none'; style-src 'unsafe-inline'")
                && headers.contains("text/html; charset=utf-8"),
            || format!("headers of /: {headers}"),
        )
    })
}

/// The branch is text on the page: no element came from it, and its script did not run.
fn no_markup_from_git(dom: &str) -> Res {
    ensure(!dom.contains("<script"), || {
        format!("a script element in the page: {dom}")
    })?;
    ensure(text(dom).contains(EVIL), || {
        format!("the branch {EVIL:?} is not shown as text: {}", text(dom))
    })?;
    let title = dom
        .split_once("<title>")
        .and_then(|(_, t)| t.split_once("</title>"))
        .map(|(t, _)| t)
        .unwrap_or_default();
    ensure(title.contains("strackt on"), || {
        format!("the title was changed: {title:?}")
    })
}

fn no_secrets(dom: &str) -> Res {
    for s in SECRETS {
        ensure(!dom.contains(s), || format!("secret {s:?} on the page"))?;
    }
    Ok(())
}

/// Headless Chromium in the host's network namespace: `args`, then the page at `path`.
fn chromium(h: &Host, args: &[&str], path: &str) -> Res<Out> {
    if Command::new("chromium").arg("--version").output().is_err() {
        return Err(
            "no `chromium` on this machine: apt-get install chromium (tests/run does)".into(),
        );
    }
    let pid = run(
        testhost_for(Base::Apps).args(["pid", h.name()]),
        Duration::from_secs(30),
    )?
    .ok()?;
    // A profile of its own per call: runs side by side share nothing.
    let profile = scratch(&format!("chromium-{}-{}", h.name(), std::process::id()))?;
    let mut cmd = Command::new("nsenter");
    cmd.args(["--target", pid.trim(), "--net", "--", "chromium"])
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("{URL}{path}"))
        .env("HOME", &profile);
    let out = run(&mut cmd, Duration::from_secs(90))?;
    let _ = std::fs::remove_dir_all(&profile);
    ensure(out.success(), || format!("chromium failed: {out}"))?;
    Ok(out)
}

/// The DOM Chromium built from the page at `path`.
fn browse(h: &Host, path: &str) -> Res<String> {
    let dom = chromium(h, &["--dump-dom"], path)?.stdout;
    ensure(dom.contains("</html>"), || {
        format!("no page at {path}: {dom}")
    })?;
    Ok(dom)
}

/// A screenshot of the page at `path`, in `target/strackt-it/dashboard.png`.
fn screenshot(h: &Host, path: &str) -> Res<PathBuf> {
    let file = scratch("")?.join("dashboard.png");
    let _ = std::fs::remove_file(&file);
    chromium(
        h,
        &[
            &format!("--screenshot={}", file.display()),
            "--window-size=1280,1300",
        ],
        path,
    )?;
    Ok(file)
}

/// `target/strackt-it/NAME` (created).
fn scratch(name: &str) -> Res<PathBuf> {
    let dir = repo_root().join("target/strackt-it").join(name);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The part of `dom` from the element with id `id` to the next section.
fn section<'a>(dom: &'a str, id: &str) -> &'a str {
    let Some(start) = dom.find(&format!("id=\"{id}\"")) else {
        return "";
    };
    let rest = &dom[start..];
    rest.find("<section").map_or(rest, |end| &rest[..end])
}

/// The text of the element with id `id`.
fn text_of_id(dom: &str, id: &str) -> String {
    let inner = section(dom, id)
        .split_once('>')
        .map(|(_, t)| t)
        .unwrap_or_default();
    text(inner.split("</").next().unwrap_or_default())
}

/// Each table row's cells, as text.
fn rows(html: &str) -> Vec<Vec<String>> {
    html.split("<tr")
        .skip(1)
        .map(|row| {
            let row = row.split("</tr>").next().unwrap_or_default();
            row.split("<td")
                .skip(1)
                .map(|cell| text(&format!("<td{cell}")))
                .collect()
        })
        .filter(|r: &Vec<String>| !r.is_empty())
        .collect()
}

fn cells(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|s| s.to_string()).collect()
}

/// What a person reads: tags dropped, entities decoded, blanks collapsed.
fn text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    let out = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn text_is_read_as_a_person_reads_it() {
    let html = "<table><tr><td>2</td><td class=\"x\">building</td><td><code>x\"&gt;&lt;b&gt;</code></td></tr></table>";
    assert_eq!(rows(html), vec![cells(&["2", "building", "x\"><b>"])]);
    assert_eq!(
        text_of_id("<dd id=\"g\">7</dd><dd>8</dd>", "g"),
        "7".to_string()
    );
}
