//! Operations other than a deploy on an app in `mode: proxy` (nginx in front, the app binding
//! the port strackt gives it), on a real host with Debian's nginx and nodejs.
//!
//! A restore takes the live release's instance down before it puts the files back (else the
//! app would serve on while its data is replaced), and the redeploy brings the restored
//! release up behind nginx; a restore failing after the stop starts that instance again.

use strackt_integration::{ensure, ensure_eq, with_app_host_binds, Host, Res};

use crate::backup::{key_init, start_s3, Bucket};
use crate::deploy::get;
use crate::HEADER;

/// A plain Node app: GET /note answers the note in its uploads (shared between releases); on
/// SIGTERM it logs the note it sees at that moment, which tells whether it was stopped before
/// or after a restore replaced the file.
const SERVER: &str = r#""use strict";
const fs = require("fs");
const http = require("http");
const NOTE = "/srv/hello/shared/storage/uploads/note.txt";
const note = () => { try { return fs.readFileSync(NOTE, "utf8").trim(); } catch (e) { return "none"; } };
const server = http.createServer((req, res) => {
  res.writeHead(200, { "Content-Type": "text/plain" });
  res.end(req.url === "/note" ? `${note()}\n` : "ok\n");
});
server.listen(Number(process.env.PORT), process.env.HOST || "127.0.0.1");
process.on("SIGTERM", () => {
  console.log(`stopping; note: ${note()}`);
  server.close(() => process.exit(0));
  server.closeIdleConnections();
});
"#;

const DEFINITION: &str = r#"users:
  hello: {}
apps:
  hello:
    repo: /srv/src/hello
    path: /srv/hello
    user: hello
    shared: [storage/uploads]
    service:
      exec: node server.js
      listen: "127.0.0.1:8000"
      health: /health
      within: 10s
      mode: proxy
      ports: [8001, 8002]
backups:
  hello:
    paths: [storage/uploads]
    to:
      s3: { endpoint: "http://127.0.0.1:9000", bucket: backups, prefix: hello, credentials: { secret: s3_backup } }
    keep: { last: 10 }
"#;

/// The app's note, as its user writes it.
fn set_note(h: &Host, text: &str) -> Res {
    h.sh_ok(&format!(
        "install -d -o hello -g hello /srv/hello/shared/storage /srv/hello/shared/storage/uploads && runuser -u hello -- sh -c 'echo {text} > /srv/hello/shared/storage/uploads/note.txt'"
    ))?;
    Ok(())
}

#[test]
fn a_restore_stops_the_live_release_and_brings_the_restored_one_up() -> Res {
    let bucket = Bucket::new("proxy-restore")?;
    let binds = bucket.binds()?;
    with_app_host_binds("proxy-restore", &binds, |h| {
        h.write("/srv/src/hello/server.js", SERVER, 0o644)?;
        h.sh_ok("cd /srv/src/hello && git init -q -b main && git add -A && git -c user.name=dev -c user.email=dev@example.com commit -q -m app")?;
        h.write(
            "/etc/strackt/secrets/s3_backup",
            "AWS_ACCESS_KEY_ID=strackt-ak\nAWS_SECRET_ACCESS_KEY=strackt-sk\n",
            0o600,
        )?;
        h.install(&format!("{HEADER}{DEFINITION}"))?;
        start_s3(h)?;
        let out = h.strackt(&["deploy", "hello"])?;
        ensure(out.success(), || format!("deploy: {out}"))?;
        key_init(h)?;
        set_note(h, "backed-up")?;
        ensure_eq(get(h, "/note")?, (200, "backed-up\n".into()), "the note")?;

        let out = h.strackt(&["backup", "run", "hello"])?;
        ensure(out.success(), || format!("backup run: {out}"))?;
        let run = out
            .stdout
            .lines()
            .find(|l| l.starts_with("backup ") && l.contains(" of hello: "))
            .and_then(|l| l.split_whitespace().nth(1))
            .ok_or_else(|| format!("no run id: {out}"))?
            .to_string();

        set_note(h, "changed")?;
        ensure_eq(get(h, "/note")?, (200, "changed\n".into()), "the new note")?;
        let old = "strackt-app-hello@1.service";
        ensure_eq(h.is_active(old)?, "active".to_string(), "release 1 runs")?;

        // A restore failing after the stop (its scratch directory cannot be made): the
        // release it stopped is started again and serves what it had.
        let pid = h.main_pid(old)?;
        h.sh_ok("rm -rf /var/lib/strackt/apps/hello/restore && touch /var/lib/strackt/apps/hello/restore")?;
        let out = h.strackt(&["restore", "hello", &run])?;
        ensure(!out.success() && out.stdout.contains("ok     stop"), || {
            format!("restore with no scratch directory: {out}")
        })?;
        ensure_eq(
            h.is_active(old)?,
            "active".to_string(),
            "release 1 started again",
        )?;
        ensure(h.main_pid(old)? != pid, || {
            "release 1 was not stopped".to_string()
        })?;
        ensure_eq(
            get(h, "/note")?,
            (200, "changed\n".into()),
            "the note as it was",
        )?;
        h.sh_ok("rm /var/lib/strackt/apps/hello/restore")?;

        let out = h.strackt(&["restore", "hello", &run])?;
        ensure(out.success(), || format!("restore: {out}"))?;
        for step in [
            "stop",
            "restore-files",
            "start",
            "switch",
            "health",
            "drain",
        ] {
            ensure(out.stdout.contains(&format!("ok     {step}")), || {
                format!("{step} not done: {out}")
            })?;
        }
        let ops: serde_json::Value = h.strackt(&["history", "--json"])?.json_ok()?;
        let stop = ops[0]["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|x| x["action"] == "stop"))
            .cloned()
            .unwrap_or_default();
        ensure(
            stop["output"]
                .as_str()
                .is_some_and(|o| o.contains(&format!("{old} stopped"))),
            || format!("the restore's stop step: {stop}"),
        )?;
        // Stopped before the files were put back: it still saw the note they replaced (the
        // last stop it logged; the first deploy's validate-boot stopped it once before).
        let said = h.sh_ok(&format!(
            "journalctl --no-pager -o cat -u {old} | grep 'stopping; note:'"
        ))?;
        ensure_eq(
            said.lines().last().unwrap_or_default().to_string(),
            "stopping; note: changed".to_string(),
            "what release 1 saw when it was stopped",
        )?;
        ensure_eq(
            h.is_active(old)?,
            "inactive".to_string(),
            "release 1 stays stopped",
        )?;
        ensure_eq(
            h.is_active("strackt-app-hello@2.service")?,
            "active".to_string(),
            "the restored release runs",
        )?;
        ensure_eq(
            get(h, "/note")?,
            (200, "backed-up\n".into()),
            "the restored note, served through nginx",
        )
    })
}
