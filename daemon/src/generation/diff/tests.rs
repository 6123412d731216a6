//! The comparison, its text, and `stored` reading a directory or a record.

use super::*;
use crate::definition::parse;
use crate::generation::{render, GenerationError, PackageLock, Store};
use crate::state::GenerationRecord;

fn rendered(text: &str) -> Rendered {
    render(&parse(text, Path::new("t")).expect("valid"))
}

const SIDES: Sides<'static> = Sides {
    old: "generation 1",
    new: "generation 2",
};

const OLD: &str = "version: 1\nstrackt:\n  interval: 5m\nfiles:\n  /etc/motd: { content: \"one\\ntwo\\nthree\\n\" }\n  /etc/gone.conf: { content: \"bye\\n\" }\nservices:\n  hello: { exec: /usr/bin/sleep 1 }\n  cron: { unit: cron.service }\nusers:\n  alice: { uid: 3001, shell: /bin/sh }\nsettings:\n  sysctl:\n    net.ipv4.ip_forward: 0\n";
const NEW: &str = "version: 1\nstrackt:\n  interval: 1h\nfiles:\n  /etc/motd: { content: \"one\\n2\\nthree\\n\", mode: \"0640\" }\n  /etc/new.conf: { content: \"hi\\n\" }\nservices:\n  hello: { exec: /usr/bin/sleep 2, enabled: false }\nusers:\n  alice: { uid: 3001, shell: /bin/bash }\nsettings:\n  sysctl:\n    net.ipv4.ip_forward: 1\nfirewall:\n  allow: [{ port: 22 }]\n";

#[test]
fn files_and_units_differ_as_unified_diffs_with_their_details() {
    let d = diff(Some(&rendered(OLD)), &rendered(NEW), SIDES);
    let names: Vec<(&str, &str)> = d
        .files
        .iter()
        .map(|c| (c.name.as_str(), c.change.as_str()))
        .collect();
    assert!(names.contains(&("/etc/motd", "changed")), "{names:?}");
    assert!(names.contains(&("/etc/gone.conf", "removed")), "{names:?}");
    assert!(names.contains(&("/etc/new.conf", "added")), "{names:?}");
    let motd = d
        .files
        .iter()
        .find(|c| c.name == "/etc/motd")
        .expect("motd");
    assert_eq!(motd.details, ["mode 0644 → 0640"]);
    assert_eq!(
            motd.diff,
            "--- /etc/motd\t(generation 1)\n+++ /etc/motd\t(generation 2)\n@@ -1,3 +1,3 @@\n one\n-two\n+2\n three\n"
        );
    let gone = d
        .files
        .iter()
        .find(|c| c.name == "/etc/gone.conf")
        .expect("gone");
    assert!(
        gone.diff.contains("+++ /dev/null\n") && gone.diff.contains("-bye\n"),
        "{}",
        gone.diff
    );

    let hello = d
        .units
        .iter()
        .find(|c| c.name == "hello.service")
        .expect("hello");
    assert_eq!(hello.details, ["enabled true → false"]);
    assert!(
        hello
            .diff
            .contains("-ExecStart=/usr/bin/sleep 1\n+ExecStart=/usr/bin/sleep 2\n"),
        "{}",
        hello.diff
    );
    let cron = d
        .units
        .iter()
        .find(|c| c.name == "cron.service")
        .expect("cron");
    assert_eq!((cron.change.as_str(), cron.diff.as_str()), ("removed", ""));

    assert_eq!(d.users.len(), 1);
    assert!(d.users[0]
        .from
        .as_deref()
        .is_some_and(|f| f.contains("shell /bin/sh,")));
    assert!(d.users[0]
        .to
        .as_deref()
        .is_some_and(|t| t.contains("shell /bin/bash,")));
    let fw = d.firewall.as_deref().expect("firewall diff");
    assert!(
        fw.starts_with("--- /dev/null\n+++ firewall.nft\t(generation 2)\n"),
        "{fw}"
    );
    let settings: Vec<String> = d
        .settings
        .iter()
        .map(|c| format!("{} {:?} {:?}", c.name, c.from, c.to))
        .collect();
    assert_eq!(
        settings,
        [
            "sysctl net.ipv4.ip_forward Some(\"0\") Some(\"1\")",
            "strackt.interval Some(\"5m\") Some(\"1h\")"
        ]
    );
}

#[test]
fn packages_show_exact_versions_and_apps_are_named() {
    let mut a = rendered("version: 1\npackages:\n  curl: latest\n  hello: latest\n");
    let mut b = rendered("version: 1\npackages:\n  curl: latest\n  jq: latest\napps:\n  shop: { repo: /srv/git/shop.git, path: /srv/shop, user: shop, service: { exec: /usr/bin/python3 app.py, listen: \"127.0.0.1:8000\" } }\nusers:\n  shop: {}\n");
    let lock = |v: &str| PackageLock {
        version: v.into(),
        deb: format!("x_{v}.deb"),
    };
    a.manifest.packages.insert("curl".into(), lock("7.88.1-10"));
    a.manifest.packages.insert("hello".into(), lock("2.10-3"));
    b.manifest
        .packages
        .insert("curl".into(), lock("7.88.1-10+deb12u8"));
    b.manifest.packages.insert("jq".into(), lock("1.6-2.1"));
    let mut unfetched = a.clone();
    for lock in unfetched.manifest.packages.values_mut() {
        lock.deb.clear();
    }
    assert!(diff(Some(&a), &unfetched, SIDES).packages.is_empty());
    let d = diff(Some(&a), &b, SIDES);
    let text = d.render();
    assert!(
        text.contains(
            "packages:\n  ~ curl 7.88.1-10 → 7.88.1-10+deb12u8\n  - hello 2.10-3\n  + jq 1.6-2.1\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "also changed in the definition (no generation content):\n  apps.shop added\n"
        ),
        "{text}"
    );
}

#[test]
fn the_same_content_has_no_diff_and_a_first_generation_is_all_added() {
    let a = rendered(OLD);
    let d = diff(Some(&a), &a.clone(), SIDES);
    assert!(d.is_empty(), "{d:#?}");
    assert_eq!(d.render(), "");
    let first = diff(None, &a, SIDES);
    assert!(first.files.iter().all(|c| c.change == "added"));
    let text = first.render();
    assert!(text.contains("  added /etc/motd: mode 0644, root:root\n--- /dev/null\n+++ /etc/motd\t(generation 2)\n"), "{text}");
    assert!(
        !text.contains("  + strackt."),
        "defaults are not changes: {text}"
    );
}

#[test]
fn binary_and_unkept_contents_say_so_instead_of_a_diff() {
    let a = rendered(OLD);
    let mut b = a.clone();
    let motd = b.manifest.files.get_mut("/etc/motd").expect("motd");
    motd.sha256 = "ab".repeat(32);
    b.files.insert("/etc/motd".into(), vec![0xff, 0xfe]);
    let d = diff(Some(&a), &b, SIDES);
    assert_eq!(
        d.files[0].diff,
        format!("    text → binary content (sha256 {})\n", "ab".repeat(6))
    );
    b.files.clear();
    let d = diff(Some(&a), &b, SIDES);
    assert!(
        d.files[0].diff.contains("content not kept"),
        "{:?}",
        d.files[0]
    );
}

#[test]
fn a_pruned_generation_is_compared_from_its_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let r = rendered(OLD);
    let built = store.build(1, &r, "t").expect("build");
    let record = store.read_record(1).expect("record");
    let mut notes = vec![];
    let on_disk = read_stored(&store, 1, None, &mut notes).expect("from the directory");
    assert_eq!(on_disk.files, r.files);
    store.remove(1).expect("prune");
    let gone = read_stored(&store, 1, None, &mut notes).expect_err("neither");
    assert!(matches!(gone, GenerationError::NoRecord(1)), "{gone}");
    assert!(!gone.is_transient());
    let again = read_stored(&store, 1, Some(record.clone()), &mut notes).expect("from the record");
    assert_eq!(
        (again.manifest, again.files),
        (built.clone(), r.files.clone())
    );
    assert!(notes.is_empty());
    let broken = GenerationRecord {
        definition: "version: 1\nfiles: 3\n".into(),
        manifest: record.manifest,
    };
    let hashed = read_stored(&store, 1, Some(broken), &mut notes).expect("by hash");
    assert_eq!(hashed.manifest, built);
    assert_eq!(notes.len(), 1, "{notes:?}");
}
