//! `settings.sysctl`: written, set live, repaired, and refused before the host changes.

use super::*;

const SYSCTL: &str = "version: 1\nsettings:\n  sysctl:\n    net.ipv4.ip_forward: 1\n    net.ipv4.tcp_rmem: \"4096\t87380  6291456\"\n";

fn with_kernel(w: &World) {
    let mut s = w.host.state();
    s.sysctl.insert("net.ipv4.ip_forward".into(), "0".into());
    s.sysctl
        .insert("net.ipv4.tcp_rmem".into(), "4096 131072 6291456".into());
    s.sysctl.insert("net.zz.read_only".into(), "(none)".into());
    s.sysctl_read_only.insert("net.zz.read_only".into());
}

#[tokio::test]
async fn sysctl_is_written_set_live_and_repaired() {
    let mut w = World::new();
    with_kernel(&w);
    let g1 = w.build(SYSCTL);
    let r = w.switch(Some(&g1), None).await;
    assert_eq!(r.failure, None, "{:#?}", r.steps);
    assert_eq!(w.host.state().sysctl["net.ipv4.ip_forward"], "1");
    assert_eq!(
        w.host.state().sysctl["net.ipv4.tcp_rmem"],
        "4096 87380 6291456"
    );
    let file = w
        .host
        .state()
        .files
        .get(Path::new(crate::definition::SYSCTL_FILE))
        .map(|f| f.0.clone())
        .expect("sysctl.d file");
    assert!(String::from_utf8_lossy(&file).contains("net.ipv4.ip_forward = 1\n"));
    assert!(w.plan_for(&g1).await.is_empty());
    w.host
        .state()
        .sysctl
        .insert("net.ipv4.ip_forward".into(), "0".into());
    let r = w.switch(Some(&g1), Some(&g1)).await;
    assert_eq!(
        r.drift,
        vec!["set-sysctl net.ipv4.ip_forward: live value 0, want 1".to_string()]
    );
    assert_eq!(w.host.state().sysctl["net.ipv4.ip_forward"], "1");
}

#[tokio::test]
async fn an_unknown_sysctl_key_fails_before_the_host_is_touched_and_a_read_only_one_rolls_back() {
    let mut w = World::new();
    with_kernel(&w);
    let g1 = w.build(SYSCTL);
    let _ = w.switch(Some(&g1), None).await;
    let g2 = w.build(&format!("{SYSCTL}    net.ipv4.no_such_key: 1\n"));
    let r = w.switch(Some(&g2), Some(&g1)).await;
    assert!(
        r.failure
            .as_deref()
            .is_some_and(|f| f.contains("sysctl key \"net.ipv4.no_such_key\" does not exist")),
        "{r:?}"
    );
    assert!(!r.rolled_back);
    let g3 = w.build(
        &format!("{SYSCTL}    net.zz.read_only: example\n")
            .replace("ip_forward: 1", "ip_forward: 0"),
    );
    let r = w.switch(Some(&g3), Some(&g1)).await;
    assert!(
        r.failure
            .as_deref()
            .is_some_and(|f| f.contains("set-sysctl net.zz.read_only")),
        "{r:?}"
    );
    assert!(r.rolled_back);
    assert_eq!(r.rollback_failure, None);
    assert_eq!(
        w.host.state().sysctl["net.ipv4.ip_forward"],
        "1",
        "rolled back live"
    );
    assert_eq!(w.store.current().expect("current"), Some(1));
}
