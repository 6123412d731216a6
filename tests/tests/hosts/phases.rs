//! Issue 16: where a pass's time goes. After a pass, `strackt status --json` names the time the
//! daemon spent in each phase of it (`last_pass_phases_us`), which `tests/bench` prints for the
//! no-op pass. Only presence is asserted here: performance is shown by the benchmark.

use strackt_integration::{ensure, with_host, Res};

use crate::HEADER;

#[test]
fn status_names_the_time_of_each_phase_of_the_last_pass() -> Res {
    with_host("phases", |h| {
        let curl = h.sh_ok("dpkg-query -W -f '${Version}' curl")?;
        h.install(&format!(
            "{HEADER}files:\n  /etc/phases.conf: {{ content: \"x\\n\" }}\n\
             services:\n  phases:\n    exec: /usr/bin/sleep infinity\n\
             users:\n  phases: {{}}\n\
             packages:\n  curl: \"{}\"\n\
             settings:\n  sysctl:\n    net.ipv4.ip_forward: 1\n\
             firewall:\n  input: drop\n  allow:\n    - {{ port: 22 }}\n",
            curl.trim()
        ))?;
        h.apply_ok()?;
        // The converged host: this pass changes nothing, like the bench's no-op passes.
        h.apply_ok()?;
        let status: serde_json::Value = h.strackt(&["status", "--json"])?.json_ok()?;
        let phases = status["last_pass_phases_us"]
            .as_object()
            .ok_or_else(|| format!("no last_pass_phases_us in {status:#}"))?;
        for phase in [
            "load.definition",
            "load.generation",
            "load.ownership",
            "observe.files",
            "observe.packages",
            "observe.accounts",
            "observe.owners",
            "observe.firewall",
            "observe.sysctl",
            "observe.units",
            "observe.unit-files",
            "plan",
            "digest",
            "record",
        ] {
            ensure(phases.get(phase).is_some_and(|us| us.is_u64()), || {
                format!("phase {phase} missing from {phases:?}")
            })?;
        }
        ensure(status["last_pass"]["summary"] == "no drift", || {
            format!("the second pass was not a no-op: {status:#}")
        })?;
        Ok(())
    })
}
