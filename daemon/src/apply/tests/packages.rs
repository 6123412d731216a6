//! `packages:`: installed, upgraded, rolled back offline, and hand-installed ones removed.

use super::*;

#[tokio::test]
async fn packages_install_upgrade_roll_back_offline_and_hand_installed_ones_go() {
    let mut w = World::new();
    {
        let mut s = w.host.state();
        s.repository
            .insert("demo".into(), vec!["1.0".into(), "1.1".into()]);
        s.repository.insert("extra".into(), vec!["3".into()]);
        let base = crate::host::packages::Installed {
            version: "5".into(),
            held: false,
            auto: false,
            essential: false,
        };
        s.installed.insert("vim-tiny".into(), base.clone());
        s.installed.insert(
            "bash".into(),
            crate::host::packages::Installed {
                essential: true,
                ..base
            },
        );
    }
    w.owned.base_packages = Some(
        ["vim-tiny".to_string(), "bash".to_string()]
            .into_iter()
            .collect(),
    );
    let g1 = build_locked(&mut w, "version: 1\npackages:\n  demo: \"1.0\"\n").expect("lock 1.0");
    assert_eq!(w.switch(Some(&g1), None).await.failure, None);
    assert_eq!(w.host.state().installed["demo"].version, "1.0");
    assert!(w.host.state().installed["demo"].held, "pinned");
    let g2 = build_locked(&mut w, "version: 1\npackages:\n  demo: latest\n").expect("lock latest");
    assert_eq!(
        g2.manifest.packages["demo"].version, "1.1",
        "latest resolved at build"
    );
    assert_eq!(w.switch(Some(&g2), Some(&g1)).await.failure, None);
    assert_eq!(w.host.state().installed["demo"].version, "1.1");
    // An unavailable version fails the build: no generation, nothing touched.
    let err = build_locked(&mut w, "version: 1\npackages:\n  demo: \"9.9\"\n")
        .expect_err("9.9 does not exist");
    assert!(err.to_string().contains("available: 1.0, 1.1"), "{err}");
    // Hand-installed: removed by the next pass; base and essential packages stay.
    w.host.state().installed.insert(
        "extra".into(),
        crate::host::packages::Installed {
            version: "3".into(),
            held: false,
            auto: false,
            essential: false,
        },
    );
    let r = w.switch(Some(&g2), Some(&g2)).await;
    assert_eq!(
        r.drift,
        vec!["remove-package extra: installed by hand".to_string()]
    );
    assert!(!w.host.state().installed.contains_key("extra"));
    assert!(
        w.host.state().installed.contains_key("vim-tiny")
            && w.host.state().installed.contains_key("bash")
    );
    // Rollback with the mirror gone: the cached 1.0 .deb is reinstalled.
    w.host.state().offline = true;
    let r = w.switch(Some(&g1), Some(&g2)).await;
    assert_eq!(r.failure, None, "{:#?}", r.steps);
    assert_eq!(w.host.state().installed["demo"].version, "1.0");
    // Dropped from the definition: removed.
    let g3 = build_locked(&mut w, "version: 1\n").expect("empty");
    assert_eq!(w.switch(Some(&g3), Some(&g1)).await.failure, None);
    assert!(!w.host.state().installed.contains_key("demo"));
}
