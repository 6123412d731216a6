//! `firewall:`: applied, repaired, rolled back and removed.

use super::*;

const FIREWALL: &str = "version: 1\nfirewall:\n  allow:\n    - { port: 22 }\nservices:\n  other: { exec: /bin/sleep 100 }\n";

#[tokio::test]
async fn the_firewall_is_applied_repaired_rolled_back_and_removed() {
    let mut w = World::new();
    let g1 = w.build(FIREWALL);
    let r = w.switch(Some(&g1), None).await;
    assert_eq!(r.failure, None, "{:#?}", r.steps);
    let applied = w.host.state().nft_table.clone().expect("table applied");
    assert!(w.plan_for(&g1).await.is_empty());
    // Drift: flushed by hand.
    w.host.state().nft_table = Some("flushed".into());
    let r = w.switch(Some(&g1), Some(&g1)).await;
    assert_eq!(
        r.drift,
        vec!["apply-firewall inet strackt: rules changed by hand".to_string()]
    );
    assert_eq!(w.host.state().nft_table.as_ref(), Some(&applied));
    // A new ruleset whose switch fails elsewhere: the old ruleset comes back.
    let g2 = w.build(
        &FIREWALL
            .replace("port: 22", "port: 2222")
            .replace("/bin/sleep 100", "/bin/false"),
    );
    let r = w.switch(Some(&g2), Some(&g1)).await;
    assert!(r.rolled_back && r.rollback_failure.is_none(), "{r:?}");
    assert_eq!(w.host.state().nft_table.as_ref(), Some(&applied));
    // Dropped from the definition: strackt's table goes.
    let g3 = w.build("version: 1\n");
    let r = w.switch(Some(&g3), Some(&g1)).await;
    assert_eq!(r.failure, None, "{:#?}", r.steps);
    assert_eq!(w.host.state().nft_table, None);
    assert_eq!(w.owned.firewall, None);
}
