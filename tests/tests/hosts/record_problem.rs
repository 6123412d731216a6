//! A write to the operations log that fails is reported, never swallowed: while another
//! program holds strackt's state database locked, `strackt apply` refuses the switch it could
//! not record (the host stays as it was), `strackt status --check` names the problem and exits
//! non-zero, and the next operation that is recorded clears it.

use std::time::Duration;

use strackt_integration::{ensure, ensure_eq, wait_until, with_app_host, Res};

fn definition(motd: &str) -> String {
    format!("version: 1\nfiles:\n  /etc/motd: {{ content: \"{motd}\\n\" }}\n")
}

#[test]
fn a_log_write_that_fails_is_reported_and_the_switch_refused() -> Res {
    // The apps base carries python3 (and its sqlite3 module), the stand-in for any program
    // that takes the database's write lock: a backup tool, an admin's sqlite3 shell.
    with_app_host("recprob", |h| {
        h.install(&definition("one"))?;
        h.apply_ok()?;
        let fresh = h.strackt(&["status", "--check"])?;
        ensure(fresh.success(), || {
            format!("a fresh host has no problem to report: {fresh}")
        })?;

        // Hold the write lock longer than the daemon's busy timeout (5 s), until told to stop.
        h.sh_ok(
            "rm -f /run/locked /run/unlock; nohup python3 -c \"
import os, sqlite3, time
c = sqlite3.connect('/var/lib/strackt/state.db', isolation_level=None)
c.execute('BEGIN EXCLUSIVE')
open('/run/locked', 'w').close()
while not os.path.exists('/run/unlock'):
    time.sleep(0.1)
c.execute('ROLLBACK')
\" >/run/locker.log 2>&1 &",
        )?;
        wait_until("the locker holds the lock", Duration::from_secs(20), || {
            h.exists("/run/locked")
        })?;

        h.put_definition(&definition("two"))?;
        let refused = h.apply()?;
        ensure(
            !refused.success()
                && refused.stdout.contains("database is locked")
                && refused.stdout.contains("host unchanged"),
            || format!("apply must fail, naming the locked database: {refused}"),
        )?;
        ensure_eq(
            h.read("/etc/motd")?.as_str(),
            "one\n",
            "the host is unchanged",
        )?;
        let check = h.strackt(&["status", "--check"])?;
        ensure(
            !check.success() && check.stdout.contains("state database:"),
            || format!("status --check must name the state database: {check}"),
        )?;

        h.sh_ok("touch /run/unlock")?;
        wait_until("the locker let go", Duration::from_secs(20), || {
            Ok(h.sh("pgrep -f 'BEGIN EXCLUSIVE'")?.stdout.trim().is_empty())
        })?;
        h.apply_ok()?;
        ensure_eq(
            h.read("/etc/motd")?.as_str(),
            "two\n",
            "applied once recorded",
        )?;
        let check = h.strackt(&["status", "--check"])?;
        ensure(check.success(), || {
            format!("a recorded operation clears the problem: {check}")
        })
    })
}
