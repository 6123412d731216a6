//! A long apt run does not starve the daemon: while `apt-get install` sits in a 45 s
//! `DPkg::Pre-Invoke` hook (longer than the unit's `WatchdogSec=30s`), the watchdog keeps being
//! pinged (strackt is not killed and restarted), `strackt status` over the control socket and
//! `/healthz` keep answering, and the pass finishes with the package installed. And a strackt
//! killed while dpkg runs a package's maintainer script does not take dpkg down with it.

use std::thread;
use std::time::Duration;

use strackt_integration::{ensure, ensure_eq, run, testhost, wait_until, with_host, Res};

use crate::apt_repo::{publish, Deb, Suite};
use crate::packages::local_repository;
use crate::HEADER;

#[test]
fn a_45s_dpkg_hook_neither_trips_the_watchdog_nor_freezes_status() -> Res {
    with_host("watchdog", |h| {
        local_repository(h)?;
        h.install(HEADER)?;
        h.apply_ok()?;
        let daemon = h.main_pid("strackt.service")?;
        h.write(
            "/etc/apt/apt.conf.d/99strackt-test-slow",
            "DPkg::Pre-Invoke { \"sleep 45\"; };\n",
            0o644,
        )?;
        h.put_definition(&format!("{HEADER}packages:\n  strackt-demo: \"1.0\"\n"))?;
        let name = h.name().to_string();
        let apply = thread::spawn(move || {
            run(
                testhost().args(["exec", &name, "--", "strackt", "apply"]),
                Duration::from_secs(240),
            )
        });
        // Inside the host, once the hook runs: ask the control socket and the HTTP endpoint
        // every second for 35 s (past the 30 s watchdog), each within 5 s, and print how long
        // each answer took (ms).
        let probe = h.sh(
            "for i in $(seq 600); do pgrep -f 'sleep 45' >/dev/null && break; sleep 0.1; done
             pgrep -f 'sleep 45' >/dev/null || { echo 'the dpkg hook never ran'; exit 1; }
             for i in $(seq 35); do
                 s=$(date +%s%N)
                 timeout 5 strackt status --json >/dev/null || { echo \"status did not answer at ${i}s\"; exit 1; }
                 m=$(date +%s%N)
                 curl -sf --max-time 5 http://127.0.0.1:7477/healthz >/dev/null || { echo \"healthz did not answer at ${i}s\"; exit 1; }
                 e=$(date +%s%N)
                 echo \"status $(( (m - s) / 1000000 )) healthz $(( (e - m) / 1000000 ))\"
                 sleep 1
             done",
        )?;
        let applied = apply.join().map_err(|_| "the apply thread panicked")??;
        eprintln!("latencies during the dpkg hook (ms):\n{}", probe.text());
        ensure(probe.success(), || {
            format!("strackt stopped answering during a long dpkg run: {probe}")
        })?;
        ensure(applied.success(), || {
            format!("`strackt apply` through the slow dpkg hook failed: {applied}")
        })?;
        ensure_eq(
            h.main_pid("strackt.service")?,
            daemon,
            "strackt's PID (a watchdog timeout restarts it)",
        )?;
        let restarts = h.sh_ok("systemctl show -p NRestarts --value strackt.service")?;
        ensure_eq(restarts.trim(), "0", "NRestarts of strackt.service")?;
        let version = h.sh_ok("dpkg-query -W -f '${Version}' strackt-demo")?;
        ensure_eq(version.trim(), "1.0", "strackt-demo installed by the pass")?;
        Ok(())
    })
}

/// `kill -9` of strackt (what the watchdog, the OOM killer or a crash amount to: systemd then
/// stops everything left in strackt's cgroup) while dpkg is inside a package's `postinst`: dpkg
/// runs on to the end, the package is fully configured, dpkg needs no repair, and the restarted
/// daemon converges on the definition.
#[test]
fn killing_strackt_mid_dpkg_lets_dpkg_finish() -> Res {
    with_host("dpkgkill", |h| {
        let postinst = "#!/bin/sh\nset -e\nif [ \"$1\" = configure ]; then\n\
                        touch /run/strackt-slow-started\n  sleep 15\n\
                        touch /var/lib/strackt-slow-configured\nfi\n";
        publish(
            h,
            &[Deb {
                name: "strackt-slow",
                version: "1",
                suite: Suite::Main,
                depends: "",
                files: &[("/DEBIAN/postinst", postinst)],
            }],
        )?;
        h.install(HEADER)?;
        h.apply_ok()?;
        let daemon = h.main_pid("strackt.service")?;
        // The daemon's watcher applies the saved definition on its own.
        h.put_definition(&format!("{HEADER}packages:\n  strackt-slow: \"1\"\n"))?;
        h.sh_ok(
            "for i in $(seq 900); do [ -e /run/strackt-slow-started ] && exit 0; sleep 0.1; done
             echo 'the postinst never started'; exit 1",
        )?;
        h.sh_ok("systemctl kill -s KILL strackt.service")?;
        let after = h.sh_ok(
            "sleep 1; pgrep -f strackt-slow.postinst >/dev/null && echo running || echo killed",
        )?;
        ensure_eq(
            after.trim(),
            "running",
            "the postinst one second after strackt was killed",
        )?;
        h.sh_ok(
            "for i in $(seq 600); do [ -e /var/lib/strackt-slow-configured ] && exit 0; sleep 0.1; done
             echo 'the postinst never finished'; exit 1",
        )?;
        let state = h.sh_ok("dpkg-query -W -f '${db:Status-Abbrev}' strackt-slow")?;
        ensure_eq(state.trim(), "ii", "dpkg's state of strackt-slow")?;
        let audit = h.sh_ok("dpkg --audit")?;
        ensure(audit.trim().is_empty(), || {
            format!("dpkg needs repair after the kill: {audit}")
        })?;
        wait_until("strackt restarted", Duration::from_secs(60), || {
            let pid = h.main_pid("strackt.service")?;
            Ok(pid != 0 && pid != daemon)
        })?;
        h.apply_ok()?;
        let held = h.sh_ok("apt-mark showhold")?;
        ensure(held.lines().any(|l| l.trim() == "strackt-slow"), || {
            format!("strackt-slow is not pinned by the converged pass: {held}")
        })?;
        Ok(())
    })
}
