//! Rebuild from nothing: `strackt export` of one server, given to a fresh one, reaches the same
//! managed state (the same digest in `strackt status --json`); a hand-made change shows as a
//! different digest until it is repaired.

use strackt_integration::{ensure, ensure_eq, with_host, Host, Res};

use crate::HEADER;

const DEF: &str = "files:\n  /etc/motd: { content: \"rebuilt\\n\" }\n  /etc/app/app.conf: { content: \"x=1\\n\", mode: \"0640\", group: adm }\nservices:\n  hello:\n    exec: /usr/bin/sleep infinity\n    user: nobody\nsettings:\n  sysctl:\n    net.ipv4.ip_forward: 1\n";

fn digest(h: &Host) -> Res<String> {
    let status: serde_json::Value = serde_json::from_str(&h.sh_ok("strackt status --json")?)?;
    status["digest"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("no digest in {status}").into())
}

#[test]
fn two_fresh_hosts_from_one_export_share_a_digest() -> Res {
    with_host("export-a", |a| {
        a.install(&format!("{HEADER}{DEF}"))?;
        a.apply_ok()?;
        let export = a.sh_ok("strackt export")?;
        ensure_eq(
            export.as_str(),
            format!("{HEADER}{DEF}").as_str(),
            "export is the current generation's definition",
        )?;
        with_host("export-b", |b| {
            b.install(&export)?;
            b.apply_ok()?;
            let (da, db) = (digest(a)?, digest(b)?);
            ensure_eq(
                db.as_str(),
                da.as_str(),
                "digests of two hosts built from one export",
            )?;
            ensure_eq(
                b.read("/etc/app/app.conf")?.as_str(),
                "x=1\n",
                "file on the rebuilt host",
            )?;

            // A hand-made change (kept by a hold so it is not repaired at once) shows.
            ensure(b.strackt(&["hold", "--for", "10m"])?.success(), || {
                "hold".into()
            })?;
            b.write("/etc/motd", "hand-made\n", 0o644)?;
            b.apply_ok()?;
            let changed = digest(b)?;
            ensure(changed != da, || {
                format!("a hand-modified host reports the same digest {changed}")
            })?;
            ensure(b.strackt(&["hold", "--release"])?.success(), || {
                "hold --release".into()
            })?;
            ensure_eq(digest(b)?.as_str(), da.as_str(), "digest once repaired")?;
            Ok(())
        })
    })
}
