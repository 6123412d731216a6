use axum::body::Body;
use axum::http::HeaderValue;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::SeekFrom;
use std::net::IpAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use super::read::{stream_file, READ_CHUNK};
use super::store::MAX_FAILURE_DELAY;
use super::*;

const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn paths_are_routed_inside_one_client() {
    assert_eq!(route("/web1/"), Some(("web1", Target::Repo)));
    assert_eq!(route("/web1/config"), Some(("web1", Target::Config)));
    assert_eq!(
        route("/web1/data/"),
        Some(("web1", Target::List(Kind::Data)))
    );
    assert_eq!(
        route("/web1/keys"),
        Some(("web1", Target::List(Kind::Keys)))
    );
    assert_eq!(
        route(&format!("/web1/snapshots/{ID}")),
        Some(("web1", Target::Object(Kind::Snapshots, ID.into())))
    );
    for bad in [
        "/",
        "/../x/config",
        "/web1/data/../../etc",
        "/web1/data/abc",
        "/web1/other/",
        "//config",
    ] {
        assert_eq!(route(bad), None, "{bad}");
    }
}

#[test]
fn only_locks_can_be_deleted() {
    let obj = |k| Target::Object(k, ID.into());
    for k in [Kind::Data, Kind::Keys, Kind::Snapshots, Kind::Index] {
        assert_eq!(
            decide(&Method::DELETE, &obj(k), false).map_err(|e| e.0),
            Err(StatusCode::FORBIDDEN)
        );
    }
    assert_eq!(
        decide(&Method::DELETE, &Target::Config, false).map_err(|e| e.0),
        Err(StatusCode::FORBIDDEN)
    );
    assert_eq!(
        decide(&Method::DELETE, &Target::Repo, false).map_err(|e| e.0),
        Err(StatusCode::FORBIDDEN)
    );
    assert_eq!(
        decide(&Method::DELETE, &obj(Kind::Locks), false),
        Ok(Action::Unlock)
    );
    assert_eq!(
        decide(&Method::POST, &obj(Kind::Data), false),
        Ok(Action::Save)
    );
    assert_eq!(
        decide(&Method::POST, &Target::Repo, true),
        Ok(Action::Create)
    );
    assert!(decide(&Method::PUT, &obj(Kind::Data), false).is_err());
}

#[test]
fn a_reload_replaces_the_clients_and_keeps_the_locks_of_those_that_stay() {
    let login = |c: &str, p: &str| {
        let mut h = HeaderMap::new();
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{c}:{p}"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {v}")).expect("header"),
        );
        h
    };
    let pw = |list: &[(&str, &str)]| -> BTreeMap<String, String> {
        list.iter()
            .map(|(c, p)| (c.to_string(), p.to_string()))
            .collect()
    };
    let (tx, _rx) = mpsc::unbounded_channel();
    let store = Store::new(
        "/nowhere".into(),
        &pw(&[("web1", "a"), ("web2", "b")]),
        Limits::default(),
        tx,
    );
    let held = store.pruning("web1").expect("web1's lock");
    store.set_clients(&pw(&[("web1", "new"), ("web3", "c")]), Limits::default());
    assert_eq!(store.client_of(&login("web1", "a")), None, "old password");
    assert_eq!(
        store.client_of(&login("web1", "new")).as_deref(),
        Some("web1")
    );
    assert_eq!(store.client_of(&login("web2", "b")), None, "removed client");
    assert_eq!(
        store.client_of(&login("web3", "c")).as_deref(),
        Some("web3")
    );
    assert!(store.pruning("web2").is_none());
    assert!(Arc::ptr_eq(&held, &store.pruning("web1").expect("kept")));
}

#[test]
fn cut_off_uploads_are_swept_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = &dir.path().join("web1");
    std::fs::create_dir_all(repo.join("data/ab")).expect("mkdir");
    std::fs::create_dir_all(repo.join("snapshots")).expect("mkdir");
    std::fs::write(repo.join(format!("data/ab/{ID}")), b"pack").expect("write");
    std::fs::write(repo.join(format!("data/ab/.{ID}.7.0")), b"pa").expect("write");
    std::fs::write(repo.join(format!("snapshots/.{ID}.7.1")), b"s").expect("write");
    std::fs::write(repo.join("config"), b"c").expect("write");
    std::fs::write(repo.join(".config.7.2"), b"c").expect("write");
    let (tx, _rx) = mpsc::unbounded_channel();
    let store = Store::new(
        dir.path().to_path_buf(),
        &BTreeMap::new(),
        Limits::default(),
        tx,
    );
    assert_eq!(store.sweep("web1"), 2);
    assert!(repo.join(format!("data/ab/{ID}")).exists());
    assert!(repo.join("config").exists());
    assert!(
        repo.join(".config.7.2").exists(),
        "not in a directory of uploads"
    );
    assert_eq!(store.sweep("web1"), 0);
}

#[test]
fn failed_logins_wait_longer_each_time_up_to_a_limit() {
    assert_eq!(failure_delay(1), Duration::from_millis(500));
    assert_eq!(failure_delay(2), Duration::from_secs(1));
    assert_eq!(failure_delay(3), Duration::from_secs(2));
    assert_eq!(failure_delay(100), MAX_FAILURE_DELAY);
    let (tx, _rx) = mpsc::unbounded_channel();
    let store = Store::new("/nowhere".into(), &BTreeMap::new(), Limits::default(), tx);
    let a: IpAddr = "192.0.2.1".parse().expect("ip");
    let b: IpAddr = "192.0.2.2".parse().expect("ip");
    assert_eq!(store.failed_login(a).0, 1);
    assert_eq!(store.failed_login(a).0, 2);
    assert_eq!(store.failed_login(b).0, 1, "counted per peer");
    assert!(Arc::ptr_eq(
        &store.failed_login(a).1,
        &store.failed_login(a).1
    ));
}

#[test]
fn reserve_and_sizes() {
    assert_eq!(Reserve::Percent(5).of(1000), 50);
    assert_eq!(Reserve::Bytes(7).of(1000), 7);
    assert_eq!(Reserve::default(), Reserve::Percent(5));
}

#[tokio::test]
async fn uploads_within_the_quota_are_counted_and_beyond_it_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tx, _rx) = mpsc::unbounded_channel();
    let limits = Limits {
        quotas: BTreeMap::from([("web1".to_string(), 100)]),
        reserve: Reserve::Bytes(0),
    };
    let store = Store::new(
        dir.path().to_path_buf(),
        &BTreeMap::from([("web1".to_string(), "pw".to_string())]),
        limits,
        tx,
    );
    create_repo(&store, "web1").await.expect("repo");
    let upload = |content: &'static [u8]| {
        let name = hex::encode(Sha256::digest(content));
        let target = Target::Object(Kind::Data, name);
        let path = store.path_of("web1", &target);
        (target, path, Body::from(content))
    };
    let exists = |rel: &std::path::Path| store.repository().path(rel).exists();
    let (target, path, body) = upload(&[1u8; 60]);
    let reply = save(&store, "web1", &target, &path, &HeaderMap::new(), body).await;
    assert!(reply.is_ok(), "{:?}", reply.err());
    assert_eq!(store.usage("web1").total(), 60);
    // No declared length: refused while streaming, and nothing is left behind.
    let (target, path, body) = upload(&[2u8; 60]);
    let reply = save(&store, "web1", &target, &path, &HeaderMap::new(), body).await;
    assert_eq!(
        reply.err().map(|e| e.0),
        Some(StatusCode::PAYLOAD_TOO_LARGE)
    );
    assert!(!exists(&path));
    assert_eq!(store.usage("web1").total(), 60);
    // A declared length that does not fit: refused up front.
    let (target, path, body) = upload(&[3u8; 50]);
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("50"));
    let reply = save(&store, "web1", &target, &path, &headers, body).await;
    assert_eq!(
        reply.err().map(|e| e.0),
        Some(StatusCode::PAYLOAD_TOO_LARGE)
    );
    // A lock still fits (a client over its quota can still restore).
    let (_, _, body) = upload(&[4u8; 50]);
    let lock = Target::Object(Kind::Locks, hex::encode(Sha256::digest([4u8; 50])));
    let lock_path = store.path_of("web1", &lock);
    let reply = save(&store, "web1", &lock, &lock_path, &HeaderMap::new(), body).await;
    assert!(reply.is_ok(), "{:?}", reply.err());
    assert_eq!(store.measure("web1"), 110);
    // The reserve: a filesystem never has u64::MAX bytes free.
    store.set_clients(
        &BTreeMap::from([("web1".to_string(), "pw".to_string())]),
        Limits {
            quotas: BTreeMap::new(),
            reserve: Reserve::Bytes(u64::MAX / 2),
        },
    );
    let (target, path, body) = upload(&[5u8; 10]);
    let reply = save(&store, "web1", &target, &path, &HeaderMap::new(), body).await;
    assert_eq!(
        reply.err().map(|e| e.0),
        Some(StatusCode::INSUFFICIENT_STORAGE)
    );
    assert!(!exists(&path));
}

#[tokio::test]
async fn reads_are_streamed_in_chunks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pack");
    let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &content).expect("write");
    let mut file = tokio::fs::File::open(&path).await.expect("open");
    file.seek(SeekFrom::Start(10)).await.expect("seek");
    let chunks: Vec<axum::body::Bytes> = stream_file(file.take(150_000), path)
        .map(|c| c.expect("chunk"))
        .collect()
        .await;
    assert!(chunks.len() >= 3, "{} chunk(s)", chunks.len());
    assert!(chunks.iter().all(|c| c.len() <= READ_CHUNK));
    let joined: Vec<u8> = chunks.concat();
    assert_eq!(joined, content[10..150_010]);
}

#[test]
fn ranges() {
    assert_eq!(byte_range("bytes=0-9", 100), Some((0, 10)));
    assert_eq!(byte_range("bytes=90-", 100), Some((90, 10)));
    assert_eq!(byte_range("bytes=90-200", 100), Some((90, 10)));
    assert_eq!(byte_range("bytes=100-", 100), None);
    assert_eq!(byte_range("bytes=5-4", 100), None);
    assert_eq!(byte_range("items=0-1", 100), None);
}
