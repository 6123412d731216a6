//! `databases:`: roles and databases created, completed and never dropped.

use super::*;

const DATABASES: &str = "version: 1\ndatabases:\n  shop: { password: { secret: dbpw } }\n  shop_log: { owner: shop, password: { secret: dbpw } }\n";

#[tokio::test]
async fn databases_are_created_completed_and_never_dropped() {
    let mut w = World::new();
    let g1 = w.build(DATABASES);
    let r = w.switch(Some(&g1), None).await;
    assert_eq!(r.failure, None, "{:#?}", r.steps);
    let verifier = {
        let s = w.host.state();
        assert_eq!(s.pg.databases["shop"], "shop");
        assert_eq!(s.pg.databases["shop_log"], "shop");
        s.pg.roles["shop"].verifier.clone().expect("a password")
    };
    assert!(
        crate::host::databases::scram_matches(&verifier, "pw-1").expect("ascii"),
        "the role's password is the secret's"
    );
    assert!(w.plan_for(&g1).await.is_empty());
    // Drift: a database dropped and the password changed by hand come back, as drift.
    w.host.state().pg.databases.remove("shop_log");
    w.host.state().files.insert(
        Path::new(crate::definition::SECRETS_DIR).join("dbpw"),
        (b"pw-2\n".to_vec(), 0o600, 0, 0),
    );
    let r = w.switch(Some(&g1), Some(&g1)).await;
    assert_eq!(r.failure, None, "{:#?}", r.steps);
    assert_eq!(
        r.drift,
        vec![
            "set-role-password shop: password differs from its secret".to_string(),
            "create-database shop_log: missing (owner shop)".to_string()
        ]
    );
    assert!(w.plan_for(&g1).await.is_empty());
    // Removed from the definition: left as it is, said so.
    let g2 = w.build("version: 1\ndatabases:\n  shop: { password: { secret: dbpw } }\n");
    let snap = observe(machine(&w.host), &g2, &w.owned, w.store.root(), &w.apps)
        .await
        .expect("observe");
    let p = plan(&g2, Some(&g1), &snap);
    assert!(p.is_empty(), "{p}");
    assert!(
        p.to_string()
            .contains("leave database shop_log  (no longer in the definition"),
        "{p}"
    );
    let r = w.switch(Some(&g2), Some(&g1)).await;
    assert_eq!(r.failure, None);
    assert!(w.host.state().pg.databases.contains_key("shop_log"));
}

#[tokio::test]
async fn databases_without_postgresql_fail_naming_the_entry_and_roll_back() {
    let mut w = World::new();
    let g0 = w.build(V1);
    let _ = w.switch(Some(&g0), None).await;
    w.host.state().pg_running = false;
    let g1 = w.build(&format!("{V1}databases:\n  shop: {{}}\n"));
    let snap = observe(machine(&w.host), &g1, &w.owned, w.store.root(), &w.apps)
        .await
        .expect("an unreachable cluster is no observe error");
    assert!(plan(&g1, Some(&g0), &snap)
        .to_string()
        .contains("would create-role shop  (PostgreSQL could not be read"));
    let r = w.switch(Some(&g1), Some(&g0)).await;
    let failure = r.failure.unwrap_or_default();
    assert!(
        failure.contains("create-role shop: postgresql: databases.shop: PostgreSQL is not installed or not running"),
        "{failure}"
    );
    assert!(r.rolled_back);
}
