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
