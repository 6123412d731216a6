//! Component tests: plans applied to the in-memory host. This file is the world they share;
//! each file under `tests/` is one concern.

mod accounts;
mod app_checks;
mod databases;
mod firewall;
mod packages;
mod switch;
mod sysctl;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;

use super::switch::switch;
use super::*;
use crate::definition::parse;
use crate::generation::{render, Generation, Store};
use crate::host::fake::FakeHost;
use crate::host::Systemd;
use crate::plan::plan;

fn machine(h: &FakeHost) -> &FakeHost {
    h
}

struct World {
    _dir: tempfile::TempDir,
    store: Store,
    host: FakeHost,
    owned: Ownership,
    next: u64,
    apps: Apps,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let host = FakeHost::default();
        host.state().vendor_units.insert("cron.service".into());
        host.state().pg_running = true;
        host.state().files.insert(
            Path::new(crate::definition::SECRETS_DIR).join("dbpw"),
            (b"pw-1\n".to_vec(), 0o600, 0, 0),
        );
        World {
            _dir: dir,
            store,
            host,
            owned: Ownership::default(),
            next: 1,
            apps: Apps::default(),
        }
    }
    fn build(&mut self, src: &str) -> Generation {
        let def = parse(src, Path::new("t.yaml")).expect("valid definition");
        self.store
            .build(self.next, &render(&def), "now")
            .expect("build");
        self.next += 1;
        self.store.load(self.next - 1).expect("load")
    }
    async fn switch(
        &mut self,
        to: Option<&Generation>,
        from: Option<&Generation>,
    ) -> super::switch::SwitchReport {
        switch(
            machine(&self.host),
            &self.store,
            &mut self.owned,
            to,
            from,
            Duration::ZERO,
            true,
            &self.apps,
        )
        .await
    }
    async fn plan_for(&self, g: &Generation) -> crate::plan::Plan {
        let snap = observe(
            machine(&self.host),
            g,
            &self.owned,
            self.store.root(),
            &self.apps,
        )
        .await
        .expect("observe");
        plan(g, Some(g), &snap)
    }
}

const V1: &str = "version: 1\nfiles:\n  /etc/motd: { content: \"one\\n\" }\n  /etc/app.conf: { content: \"a=1\\n\", mode: \"0640\", group: adm }\nservices:\n  hello: { exec: /bin/sleep infinity, restart_on: [/etc/app.conf] }\n  other: { exec: /bin/sleep 100 }\n  cron: { unit: cron.service }\n";

/// Lock a definition's packages the way the daemon's build does (resolve + fetch).
fn build_locked(w: &mut World, src: &str) -> Result<Generation, crate::host::HostError> {
    use crate::host::packages::Packages;
    let def = parse(src, Path::new("t.yaml")).expect("valid definition");
    let mut r = render(&def);
    let versions =
        crate::host::packages::all_resolved(w.host.resolve(&def.definition().packages)?)?;
    let mut debs = w.host.fetch(&versions)?;
    for (name, version) in versions {
        let deb = debs.remove(&name).unwrap_or_default();
        r.manifest
            .packages
            .insert(name, crate::generation::PackageLock { version, deb });
    }
    w.store.build(w.next, &r, "now").expect("build");
    w.next += 1;
    Ok(w.store.load(w.next - 1).expect("load"))
}
