//! 3. A changed service is restarted (new MainPID) while an untouched one keeps running as it
//!    was; `restart_on` restarts a service when its file changes.

use strackt_integration::{ensure, ensure_eq, with_host, Res};

use crate::{environ, running_pid, HEADER};

fn definition(a_env: &str, a_conf: &str, b_conf: &str) -> String {
    format!(
        r#"{HEADER}files:
  /etc/app/a.conf: {{ content: "{a_conf}\n" }}
  /etc/app/b.conf: {{ content: "{b_conf}\n" }}
services:
  svc-a:
    exec: /usr/bin/sleep infinity
    environment: {{ VERSION: "{a_env}" }}
    restart_on: [/etc/app/a.conf]
  svc-b:
    exec: /usr/bin/sleep infinity
"#
    )
}

#[test]
fn changed_service_restarts_and_untouched_service_keeps_its_pid() -> Res {
    with_host("restart", |h| {
        h.install(&definition("1", "a=1", "b=1"))?;
        h.apply_ok()?;
        let a1 = running_pid(h, "svc-a.service")?;
        let b1 = running_pid(h, "svc-b.service")?;

        // The service itself changes.
        h.put_definition(&definition("2", "a=1", "b=1"))?;
        h.apply_ok()?;
        let a2 = running_pid(h, "svc-a.service")?;
        ensure(a2 != a1, || format!("svc-a changed but kept MainPID {a1}"))?;
        ensure_eq(
            running_pid(h, "svc-b.service")?,
            b1,
            "MainPID of the untouched svc-b",
        )?;
        let env = environ(h, a2)?;
        ensure(env.iter().any(|e| e == "VERSION=2"), || {
            format!("svc-a runs without VERSION=2: {env:?}")
        })?;

        // A file named in svc-a's restart_on changes.
        h.put_definition(&definition("2", "a=2", "b=1"))?;
        h.apply_ok()?;
        ensure_eq(h.read("/etc/app/a.conf")?.as_str(), "a=2\n", "a.conf")?;
        let a3 = running_pid(h, "svc-a.service")?;
        ensure(a3 != a2, || {
            format!("a.conf (restart_on of svc-a) changed but svc-a kept MainPID {a2}")
        })?;
        ensure_eq(
            running_pid(h, "svc-b.service")?,
            b1,
            "MainPID of the untouched svc-b",
        )?;

        // A file no service cares about changes: nobody restarts.
        h.put_definition(&definition("2", "a=2", "b=2"))?;
        h.apply_ok()?;
        ensure_eq(h.read("/etc/app/b.conf")?.as_str(), "b=2\n", "b.conf")?;
        ensure_eq(
            running_pid(h, "svc-a.service")?,
            a3,
            "MainPID of svc-a after an unrelated file change",
        )?;
        ensure_eq(
            running_pid(h, "svc-b.service")?,
            b1,
            "MainPID of svc-b after an unrelated file change",
        )?;
        Ok(())
    })
}
