//! `firewall:`: strackt's own nftables table, applied as one transaction, checked by
//! `nft list ruleset`, drift in the table put back, other tables never touched, the table
//! removed when the section goes.

use strackt_integration::{ensure, with_host, Host, Res};

use crate::HEADER;

const FW: &str = "firewall:\n  input: drop\n  allow:\n    - { port: 22 }\n    - { port: \"8000-8100\", from: [10.0.0.0/8, \"2001:db8::/32\"] }\n    - { port: 53, proto: udp }\n";

fn ruleset(h: &Host) -> Res<String> {
    h.sh_ok("nft list ruleset")
}

fn has_strackt_rules(h: &Host) -> Res<bool> {
    let r = ruleset(h)?;
    Ok(r.contains("table inet strackt")
        && r.contains("policy drop;")
        && r.contains("tcp dport 22 accept")
        && r.contains("10.0.0.0/8")
        && r.contains("tcp dport 8000-8100 accept")
        && r.contains("2001:db8::/32")
        && r.contains("udp dport 53 accept"))
}

#[test]
fn firewall_applied_repaired_and_removed_leaving_other_tables_alone() -> Res {
    with_host("firewall", |h| {
        h.sh_ok("nft add table ip theirs && nft add chain ip theirs keep")?;
        h.install(&format!("{HEADER}{FW}"))?;
        h.apply_ok()?;
        ensure(has_strackt_rules(h)?, || {
            format!(
                "rules missing from `nft list ruleset`:\n{}",
                ruleset(h).unwrap_or_default()
            )
        })?;
        ensure(ruleset(h)?.contains("table ip theirs"), || {
            "another table was touched".into()
        })?;

        for (what, break_it) in [
            ("chain flushed", "nft flush chain inet strackt input"),
            (
                "rule added",
                "nft add rule inet strackt input tcp dport 9999 accept",
            ),
            ("table deleted", "nft delete table inet strackt"),
        ] {
            h.sh_ok(break_it)?;
            let plan = h.strackt(&["plan"])?;
            ensure(
                plan.code == Some(2) && plan.text().contains("apply-firewall"),
                || format!("{what}: plan: {plan}"),
            )?;
            h.apply_ok()?;
            let r = ruleset(h)?;
            ensure(has_strackt_rules(h)? && !r.contains("9999"), || {
                format!("{what}: not repaired:\n{r}")
            })?;
        }
        let history = h.history()?;
        ensure(
            history
                .iter()
                .any(|op| op.told().contains("drift repaired: apply-firewall")),
            || format!("no firewall drift repair recorded: {history:#?}"),
        )?;

        // Section removed: strackt's table goes, theirs stays.
        h.put_definition(HEADER)?;
        h.apply_ok()?;
        let r = ruleset(h)?;
        ensure(
            !r.contains("inet strackt") && r.contains("table ip theirs"),
            || format!("after removal:\n{r}"),
        )?;
        Ok(())
    })
}

/// A connected SSH client (here: a TCP client from 192.0.2.2 to port 22, which is all the
/// guard looks at) must still be able to connect after the change, or it is refused.
#[test]
fn lockout_guard_refuses_rules_that_would_shut_out_the_connected_client() -> Res {
    with_host("lockout", |h| {
        h.sh_ok(
            "ip addr add 192.0.2.1/32 dev lo && ip addr add 192.0.2.2/32 dev lo && \
             printf '[Socket]\\nListenStream=22\\nAccept=yes\\n' > /etc/systemd/system/fakessh.socket && \
             printf '[Service]\\nExecStart=/bin/cat\\nStandardInput=socket\\n' > /etc/systemd/system/fakessh@.service && \
             systemctl daemon-reload && systemctl start fakessh.socket && \
             systemd-run --unit=sshclient sh -c 'sleep infinity | curl -s --interface 192.0.2.2 telnet://192.0.2.1:22'",
        )?;
        strackt_integration::wait_until(
            "the client's connection",
            std::time::Duration::from_secs(10),
            || {
                Ok(h.sh_ok("ss -Htn state established '( sport = :22 )'")?
                    .contains("192.0.2.2"))
            },
        )?;
        h.install(HEADER)?;
        h.apply_ok()?;

        let shut_out = format!("{HEADER}firewall:\n  allow:\n    - {{ port: 8080 }}\n");
        h.put_definition(&shut_out)?;
        let out = h.apply()?;
        ensure(
            !out.success()
                && out.text().contains("192.0.2.2 (port 22)")
                && out.text().contains("allow_lockout"),
            || format!("apply of rules that shut out the client must be refused, naming it: {out}"),
        )?;
        let plan = h.strackt(&["plan"])?;
        ensure(
            plan.code == Some(1) && plan.text().contains("192.0.2.2"),
            || format!("plan: {plan}"),
        )?;
        ensure(!ruleset(h)?.contains("inet strackt"), || {
            "a refused firewall reached the host".into()
        })?;

        h.put_definition(&format!(
            "{HEADER}firewall:\n  allow:\n    - {{ port: 22, from: [192.0.2.0/24] }}\n"
        ))?;
        h.apply_ok()?;
        ensure(ruleset(h)?.contains("inet strackt"), || {
            "the safe firewall was not applied".into()
        })?;

        h.put_definition(&format!(
            "{HEADER}firewall:\n  allow_lockout: true\n  allow:\n    - {{ port: 8080 }}\n"
        ))?;
        h.apply_ok()?;
        ensure(
            h.sh_ok("ss -Htn state established '( sport = :22 )'")?
                .contains("192.0.2.2"),
            || "the established session was cut".into(),
        )?;
        Ok(())
    })
}
