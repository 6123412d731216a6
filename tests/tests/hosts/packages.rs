//! `packages:` on a real host with real apt and dpkg, against a small local repository (two
//! versions of a package) so versions are under the test's control: exact version installed,
//! upgraded through the definition, an unavailable version refused with the host unchanged, a
//! rollback with the repository gone, a hand-installed package removed.

use strackt_integration::{ensure, ensure_eq, with_host, Host, Res};

use crate::apt_repo::{publish, Deb, Suite, ROOT};
use crate::HEADER;

/// `strackt-demo` 1.0 and 1.1 and `strackt-extra` 1 in the test archive's normal suite.
pub(crate) fn local_repository(h: &Host) -> Res {
    let deb = |name, version, files| Deb {
        name,
        version,
        suite: Suite::Main,
        depends: "",
        files,
    };
    publish(
        h,
        &[
            deb(
                "strackt-demo",
                "1.0",
                &[("/usr/share/strackt-demo/version", "1.0\n")],
            ),
            deb(
                "strackt-demo",
                "1.1",
                &[("/usr/share/strackt-demo/version", "1.1\n")],
            ),
            deb(
                "strackt-extra",
                "1",
                &[("/usr/share/strackt-extra/version", "1\n")],
            ),
        ],
    )
}

fn version(h: &Host, name: &str) -> Res<String> {
    Ok(h.sh_ok(&format!(
        "dpkg-query -W -f '${{Version}}' {name} 2>/dev/null || true"
    ))?
    .trim()
    .to_string())
}

#[test]
fn exact_versions_upgrade_refuse_roll_back_offline_and_remove_hand_installed() -> Res {
    with_host("packages", |h| {
        local_repository(h)?;
        // Unknown names and versions are found by `strackt check`, located, before any apply.
        h.install_unit()?;
        h.write(
            "/root/bad.yaml",
            &format!("{HEADER}packages:\n  strackt-demo: \"9.9\"\n  no-such-package: latest\n"),
            0o644,
        )?;
        let out = h.strackt(&["check", "/root/bad.yaml"])?;
        ensure(
            out.code == Some(1)
                && out.text().contains("bad.yaml:5:17: packages.strackt-demo: version \"9.9\"")
                && out.text().contains("bad.yaml:6:20: packages.no-such-package: package \"no-such-package\" is not available"),
            || format!("check of unknown packages: {out}"),
        )?;
        h.install(&format!("{HEADER}packages:\n  strackt-demo: \"1.0\"\n"))?;
        h.apply_ok()?;
        ensure_eq(
            version(h, "strackt-demo")?.as_str(),
            "1.0",
            "exact version installed",
        )?;
        ensure(
            h.sh_ok("apt-mark showhold")?.contains("strackt-demo"),
            || "not held".into(),
        )?;
        let lock = h.sh_ok("cat /var/lib/strackt/current/lock.json")?;
        ensure(lock.contains("\"version\": \"1.0\""), || {
            format!("lock.json: {lock}")
        })?;

        h.put_definition(&format!("{HEADER}packages:\n  strackt-demo: latest\n"))?;
        h.apply_ok()?;
        ensure_eq(version(h, "strackt-demo")?.as_str(), "1.1", "latest = 1.1")?;
        // The export folds the lock in: a fresh server would get 1.1 too, not a newer latest.
        let export = h.sh_ok("strackt export")?;
        ensure(
            export.contains("strackt-demo: '1.1'") && !export.contains("latest"),
            || format!("export: {export}"),
        )?;
        let upgraded = h.active_generation()?;

        // An unavailable version: the build fails, nothing on the host changes.
        h.put_definition(&format!("{HEADER}packages:\n  strackt-demo: \"9.9\"\n"))?;
        let out = h.apply()?;
        ensure(
            !out.success()
                && out.text().contains("9.9")
                && out.text().contains("available: 1.1, 1.0"),
            || {
                format!(
                    "an unavailable version must fail the build, naming what is available: {out}"
                )
            },
        )?;
        ensure_eq(
            version(h, "strackt-demo")?.as_str(),
            "1.1",
            "after the refused build",
        )?;
        ensure_eq(
            h.active_generation()?,
            upgraded,
            "generation after the refused build",
        )?;

        // Hand-installed after strackt took over: removed by the next pass.
        h.put_definition(&format!("{HEADER}packages:\n  strackt-demo: latest\n"))?;
        h.apply_ok()?;
        h.sh_ok("DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strackt-extra >/dev/null")?;
        ensure_eq(version(h, "strackt-extra")?.as_str(), "1", "hand-installed")?;
        h.apply_ok()?;
        ensure_eq(
            version(h, "strackt-extra")?.as_str(),
            "",
            "the hand-installed package is removed",
        )?;

        // The repository is gone (a cut mirror): rollback reinstalls 1.0 from strackt's cache.
        h.sh_ok(&format!("mv {ROOT} {ROOT}.cut"))?;
        let out = h.strackt(&["rollback", "1"])?;
        ensure(out.success(), || format!("offline rollback: {out}"))?;
        ensure_eq(
            version(h, "strackt-demo")?.as_str(),
            "1.0",
            "version after the offline rollback",
        )?;
        Ok(())
    })
}
