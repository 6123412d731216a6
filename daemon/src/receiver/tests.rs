//! Component test of the receiver's retention on the fake restic: a client's repository in a
//! tempdir (its snapshot files carry the times the receiver stored them), the restic model
//! holding the snapshots, and tokio's clock paused for the settle time.

use std::time::{Duration, SystemTime};

use super::*;
use crate::host::fake::{FakeProcesses, FakeSnapshot};

#[tokio::test(start_paused = true)]
async fn retention_waits_for_the_settle_time_and_forgets_by_the_time_the_receiver_stored_each_snapshot(
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (stored_tx, stored_rx) = mpsc::unbounded_channel();
    let clients = BTreeMap::from([("web1".to_string(), "pw".to_string())]);
    let store = Arc::new(rest::Store::new(
        dir.path().join("storage"),
        &clients,
        rest::Limits::default(),
        stored_tx.clone(),
    ));
    let snapshots = store.repo("web1").join("snapshots");
    std::fs::create_dir_all(&snapshots).expect("snapshots");
    let now = SystemTime::now();
    let ago = |hours: u64| now - Duration::from_secs(hours * 3600);
    let rfc3339 = |t: SystemTime| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339();
    // (id, stored by the receiver, written into it by the sender): `old` and `new` are honest,
    // `forged` claims 2099 although the receiver stored it first.
    let (old, new, forged) = ("a".repeat(64), "b".repeat(64), "f".repeat(64));
    let fake = FakeProcesses::default();
    {
        let mut s = fake.state();
        s.restic.initialized = true;
        for (id, stored, written) in [
            (&old, ago(48), rfc3339(ago(48))),
            (&new, ago(1), rfc3339(ago(1))),
            (&forged, ago(72), "2099-01-01T00:00:00+00:00".to_string()),
        ] {
            let file = std::fs::File::create(snapshots.join(id)).expect("snapshot file");
            file.set_modified(stored).expect("stored time");
            s.restic.snapshots.push(FakeSnapshot {
                id: id.clone(),
                time: written,
                hostname: "web1".into(),
                paths: vec!["/shop.pgdump".into()],
                tags: vec!["strackt".into(), "app=shop".into()],
                content: Vec::new(),
            });
        }
    }
    let settle = Duration::from_secs(60);
    let (_policy_tx, policy) = watch::channel(Policy {
        keeps: BTreeMap::from([(
            "web1".to_string(),
            KeepPolicy {
                last: Some(1),
                ..KeepPolicy::default()
            },
        )]),
        settle,
    });
    let retention = Retention {
        store,
        policy,
        vault: Vault::new(dir.path()),
        cache: dir.path().join("cache"),
        processes: fake.clone(),
    };
    tokio::spawn(retention.run(stored_rx));
    let ids = || -> Vec<String> {
        fake.state()
            .restic
            .snapshots
            .iter()
            .map(|s| s.id.clone())
            .collect()
    };

    // A snapshot arrives: retention waits for the client to settle first.
    stored_tx.send("web1".into()).expect("retention runs");
    tokio::time::sleep(settle / 2).await;
    assert_eq!(ids(), [old.clone(), new.clone(), forged.clone()]);
    for _ in 0..200 {
        tokio::time::sleep(settle / 10).await;
        if ids().len() < 3 {
            break;
        }
    }

    // The newest by stored time is kept; the forged date neither counts nor is forgotten.
    assert_eq!(ids(), [new, forged]);
    let forget = fake
        .state()
        .calls
        .iter()
        .find(|c| c.args.iter().any(|a| a == "forget"))
        .map(|c| c.args.clone())
        .expect("restic forget ran");
    assert!(
        forget.contains(&"--prune".to_string()) && forget.contains(&old),
        "{forget:?}"
    );
}
