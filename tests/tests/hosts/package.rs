//! The .deb from `packaging/build-deb` (debhelper, `packaging/debian/`): lintian-clean; installed
//! with `apt-get install ./strackt_….deb` on a fresh host it brings its dependencies and
//! recommendations, ships the units, the schema, the example, the manual and the completions,
//! and neither enables nor starts strackt; `systemctl enable --now strackt` works; an upgrade
//! restarts the running daemon and keeps it enabled; `dpkg -r` keeps the definition, the state
//! and the enablement, `dpkg -P` deletes them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use strackt_integration::{ensure, ensure_eq, repo_root, run, strackt_bin, with_host, Host, Res};

use crate::HEADER;

/// The first line of the shipped example: editors with yaml-language-server check and complete
/// the definition against the schema the package installs.
const MODELINE: &str =
    "# yaml-language-server: $schema=file:///usr/share/strackt/server.schema.json";

/// The packages this test binary builds (once, for all its tests) from the binary under test.
struct Debs {
    /// The workspace's version, gzip-compressed (what lintian checks and the host installs).
    current: PathBuf,
    version: String,
    /// The same binary as version `<version>+1`, for the upgrade.
    bumped: PathBuf,
    bumped_version: String,
}

fn debs() -> Res<&'static Debs> {
    static DEBS: OnceLock<Result<Debs, String>> = OnceLock::new();
    DEBS.get_or_init(|| build_debs().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| e.clone().into())
}

fn build_debs() -> Res<Debs> {
    let tmp = std::env::temp_dir();
    // Directories of earlier test processes that are gone.
    for entry in fs::read_dir(&tmp)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("strackt-deb-") {
            if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
    let out = tmp.join(format!("strackt-deb-{}", std::process::id()));
    let _ = fs::remove_dir_all(&out);
    let current = build_deb(&out.join("current"), "gzip", None)?;
    let version = deb_field(&current, "Version")?;
    let bumped_version = format!("{version}+1");
    let bumped = build_deb(&out.join("bumped"), "none", Some(&bumped_version))?;
    ensure_eq(
        deb_field(&bumped, "Version")?,
        bumped_version.clone(),
        "the bumped package's version",
    )?;
    Ok(Debs {
        current,
        version,
        bumped,
        bumped_version,
    })
}

/// `packaging/build-deb --binary <binary under test> --out DIR --compression C [--version V]`.
fn build_deb(out: &Path, compression: &str, version: Option<&str>) -> Res<PathBuf> {
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join("packaging/build-deb"))
        .arg("--binary")
        .arg(strackt_bin())
        .arg("--out")
        .arg(out)
        .args(["--compression", compression]);
    if let Some(v) = version {
        cmd.args(["--version", v]);
    }
    let built = run(&mut cmd, Duration::from_secs(400))?.ok()?;
    let deb = fs::read_dir(out)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| format!("build-deb made no .deb in {}: {built}", out.display()))?;
    let name = deb
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    ensure(
        name.starts_with("strackt_") && name.ends_with("_amd64.deb"),
        || format!("package name {}", deb.display()),
    )?;
    Ok(deb)
}

/// A field of the package's control file (`dpkg-deb --field`).
fn deb_field(deb: &Path, field: &str) -> Res<String> {
    let out = run(
        Command::new("dpkg-deb").arg("--field").arg(deb).arg(field),
        Duration::from_secs(60),
    )?
    .ok()?;
    Ok(out.trim().to_string())
}

#[test]
fn deb_is_lintian_clean() -> Res {
    // Every override carries its reason: the comment lines right above it.
    let overrides =
        fs::read_to_string(repo_root().join("packaging/debian/strackt.lintian-overrides"))?;
    let mut reason = false;
    for line in overrides.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            reason = true;
        } else if line.is_empty() {
            reason = false;
        } else {
            ensure(reason, || {
                format!("lintian override without a reason (a comment right above it): {line}")
            })?;
        }
    }

    // The package of the workspace's version (gzip: dpkg-deb -Znone, which the upgrade's package
    // uses for speed, is an error for lintian).
    let deb = &debs()?.current;
    let linted = run(
        Command::new("lintian")
            .args(["--fail-on", "error,warning", "--display-info"])
            .arg(deb),
        Duration::from_secs(400),
    )
    .map_err(|e| {
        format!("running lintian: {e} (apt-get install lintian; tests/run installs it)")
    })?;
    let tags: Vec<&str> = linted
        .stdout
        .lines()
        .filter(|l| l.starts_with("E: ") || l.starts_with("W: "))
        .collect();
    ensure(linted.success() && tags.is_empty(), || {
        format!("lintian {}: {linted}", deb.display())
    })?;
    Ok(())
}

/// `apt-get install ./<file>` of a package copied into the host's /root, as the README says.
fn apt_install(h: &Host, deb: &Path) -> Res<String> {
    let name = file_name(deb);
    h.copy_in(deb, &format!("/root/{name}"))?;
    h.exec_limit(
        Duration::from_secs(400),
        &[
            "bash",
            "-c",
            &format!(
                "cd /root && DEBIAN_FRONTEND=noninteractive apt-get install -y -q ./{name} 2>&1"
            ),
        ],
    )?
    .ok()
}

fn dpkg(h: &Host, args: &str) -> Res<String> {
    let out = h.sh_ok(&format!("dpkg {args} 2>&1"))?;
    ensure(!out.contains("warning"), || {
        format!("dpkg {args} warned: {out}")
    })?;
    Ok(out)
}

#[test]
fn deb_installs_disabled_then_runs_upgrades_and_purges() -> Res {
    let debs = debs()?;
    with_host("deb", |h| {
        let installed = apt_install(h, &debs.current)?;
        ensure(installed.contains("systemctl enable --now strackt"), || {
            format!("the install does not say how to start strackt: {installed}")
        })?;
        for unit in ["strackt.service", "strackt-receiver.service"] {
            ensure_eq(
                h.is_enabled(unit)?.as_str(),
                "disabled",
                &format!("{unit} after the install ({installed})"),
            )?;
            ensure_eq(
                h.is_active(unit)?.as_str(),
                "inactive",
                &format!("{unit} after the install"),
            )?;
        }
        // Depends and Recommends came along (apt-get install's default).
        let states = h.sh_ok(
            "dpkg-query -W -f='${Package} ${Status}\\n' restic nftables git postgresql-client dbus",
        )?;
        ensure(
            states.lines().count() == 5
                && states.lines().all(|l| l.ends_with("install ok installed")),
            || format!("dependencies and recommendations: {states}"),
        )?;
        ensure_eq(
            h.stat("/etc/strackt")?.as_str(),
            "755 root root",
            "/etc/strackt",
        )?;
        ensure_eq(
            h.stat("/etc/strackt/secrets")?.as_str(),
            "700 root root",
            "/etc/strackt/secrets",
        )?;
        h.sh_ok("getent passwd strackt-receiver")?;
        // Every shipped file is as packaged (md5sums), and nothing is shipped under /etc (the
        // definition is the admin's, created by no package file, so nothing there is a conffile).
        let verified = h.sh("dpkg --verify strackt")?;
        ensure(
            verified.success() && verified.text().trim().is_empty(),
            || format!("dpkg --verify strackt: {verified}"),
        )?;
        let etc = h.sh_ok("dpkg -L strackt | grep '^/etc' || true")?;
        ensure(etc.trim().is_empty(), || format!("files under /etc: {etc}"))?;
        ensure_eq(
            h.exec(&[
                "systemctl",
                "show",
                "-p",
                "NeedDaemonReload",
                "--value",
                "strackt.service",
            ])?
            .ok()?
            .trim(),
            "no",
            "NeedDaemonReload of strackt.service after the install",
        )?;

        // What is shipped.
        for unit in [
            "strackt.service",
            "strackt-receiver.service",
            "strackt-receiver-reload.path",
            "strackt-receiver-reload.service",
        ] {
            let want = fs::read_to_string(repo_root().join("systemd").join(unit))?;
            ensure_eq(
                h.read(&format!("/lib/systemd/system/{unit}"))?,
                want,
                &format!("the installed {unit}"),
            )?;
        }
        let schema = fs::read_to_string(repo_root().join("definitions/schema.json"))?;
        ensure(
            h.read("/usr/share/strackt/server.schema.json")?.trim() == schema.trim(),
            || "/usr/share/strackt/server.schema.json is not `strackt schema`".into(),
        )?;
        let example = fs::read_to_string(repo_root().join("definitions/example.yaml"))?;
        ensure_eq(
            example.lines().next(),
            Some(MODELINE),
            "definitions/example.yaml's first line",
        )?;
        let shipped = "/usr/share/doc/strackt/examples/example.yaml";
        ensure_eq(h.read(shipped)?, example, shipped)?;
        let check = h.exec(&["strackt", "check", shipped])?;
        ensure_eq(
            check.code,
            Some(0),
            &format!("strackt check {shipped}: {check}"),
        )?;
        for doc in ["README.md", "README.Debian", "copyright", "changelog.gz"] {
            let path = format!("/usr/share/doc/strackt/{doc}");
            ensure(h.exists(&path)?, || format!("no {path}"))?;
        }
        // The manual and completions work: `man strackt-deploy` renders (with man-db from the
        // Debian mirror), systemd finds the units' `Documentation=man:strackt(8)`, bash
        // completes subcommands.
        h.sh_ok("apt-get install -y -qq --no-install-recommends man-db >/dev/null 2>&1")?;
        let page = h.sh_ok("MANWIDTH=100 man -P cat strackt-deploy 2>/dev/null")?;
        ensure(
            page.contains("strackt-deploy") && page.contains("--branch"),
            || format!("`man strackt-deploy`: {page}"),
        )?;
        let verify = h.sh(
            "systemd-analyze verify /lib/systemd/system/strackt.service \
             /lib/systemd/system/strackt-receiver.service \
             /lib/systemd/system/strackt-receiver-reload.path \
             /lib/systemd/system/strackt-receiver-reload.service",
        )?;
        ensure(verify.success() && verify.text().trim().is_empty(), || {
            format!("systemd-analyze verify: {verify}")
        })?;
        let completed = h.sh_ok(
            "bash -c 'source /usr/share/bash-completion/completions/strackt; COMP_WORDS=(strackt dep); COMP_CWORD=1; _strackt strackt dep strackt; echo ${COMPREPLY[@]}'",
        )?;
        ensure_eq(
            completed.trim(),
            "deploy",
            "bash completion of `strackt dep`",
        )?;
        for file in [
            "/usr/share/zsh/vendor-completions/_strackt",
            "/usr/share/fish/vendor_completions.d/strackt.fish",
        ] {
            ensure(h.exists(file)?, || format!("{file} is not installed"))?;
        }

        // The admin writes a definition and starts strackt.
        h.put_definition(&format!(
            "{HEADER}files:\n  /etc/motd: {{ content: \"from the package\\n\" }}\n"
        ))?;
        let check = h.exec(&["strackt", "check"])?;
        ensure_eq(check.code, Some(0), &format!("strackt check: {check}"))?;
        h.sh_ok("systemctl enable --now strackt.service")?;
        h.apply_ok()?;
        ensure_eq(
            h.read("/etc/motd")?.as_str(),
            "from the package\n",
            "/etc/motd",
        )?;
        let generation = h.active_generation()?;

        // Upgrades: the same package again (dpkg -i), then a newer version (apt-get install).
        // Each restarts the running daemon on the new binary and keeps it enabled, the receiver
        // disabled, the state.
        let mut pid = h.main_pid("strackt.service")?;
        for (deb, version) in [
            (&debs.current, &debs.version),
            (&debs.bumped, &debs.bumped_version),
        ] {
            let upgraded = if deb == &debs.current {
                dpkg(h, &format!("-i /root/{}", file_name(deb)))?
            } else {
                apt_install(h, deb)?
            };
            let new_pid = h.main_pid("strackt.service")?;
            ensure(new_pid != 0 && new_pid != pid, || {
                format!("strackt was not restarted by the upgrade to {version} (MainPID {pid} → {new_pid}): {upgraded}")
            })?;
            pid = new_pid;
            ensure_eq(
                h.is_enabled("strackt.service")?.as_str(),
                "enabled",
                "strackt after an upgrade",
            )?;
            ensure_eq(
                h.is_active("strackt.service")?.as_str(),
                "active",
                "strackt after an upgrade",
            )?;
            ensure_eq(
                h.is_enabled("strackt-receiver.service")?.as_str(),
                "disabled",
                "the receiver after an upgrade",
            )?;
            ensure_eq(
                h.sh_ok("dpkg-query -W -f='${Version}' strackt")?.as_str(),
                version.as_str(),
                "the installed version",
            )?;
            ensure_eq(
                h.active_generation()?,
                generation,
                "the active generation after an upgrade",
            )?;
        }

        // Remove: the program goes, the definition, its secrets directory, the state and the
        // enablement stay (installing again carries on).
        dpkg(h, "-r strackt")?;
        ensure_eq(
            h.is_active("strackt.service")?.as_str(),
            "inactive",
            "strackt after dpkg -r",
        )?;
        for gone in ["/usr/bin/strackt", "/lib/systemd/system/strackt.service"] {
            ensure(!h.exists(gone)?, || {
                format!("{gone} is still there after dpkg -r")
            })?;
        }
        ensure(
            h.read("/etc/strackt/server.yaml")?
                .contains("from the package"),
            || "/etc/strackt/server.yaml changed by dpkg -r".into(),
        )?;
        ensure_eq(
            h.stat("/etc/strackt/secrets")?.as_str(),
            "700 root root",
            "/etc/strackt/secrets after dpkg -r",
        )?;
        let wants = "/etc/systemd/system/multi-user.target.wants/strackt.service";
        for kept in ["/var/lib/strackt/state.db", wants] {
            ensure(h.exists(kept)?, || format!("{kept} is gone after dpkg -r"))?;
        }
        dpkg(h, &format!("-i /root/{}", file_name(&debs.bumped)))?;
        ensure_eq(
            h.is_active("strackt.service")?.as_str(),
            "active",
            "strackt installed again",
        )?;
        ensure_eq(
            h.active_generation()?,
            generation,
            "the active generation installed again",
        )?;

        // Purge: strackt's own files go; what it wrote on the server stays.
        dpkg(h, "-P strackt")?;
        for gone in [
            "/etc/strackt",
            "/var/lib/strackt",
            "/var/cache/strackt",
            wants,
        ] {
            ensure(!h.exists(gone)?, || {
                format!("{gone} is still there after dpkg -P")
            })?;
        }
        ensure(!h.sh("dpkg-query -W strackt")?.success(), || {
            "strackt is still known to dpkg after dpkg -P".into()
        })?;
        ensure_eq(
            h.read("/etc/motd")?.as_str(),
            "from the package\n",
            "/etc/motd after dpkg -P",
        )?;
        Ok(())
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
