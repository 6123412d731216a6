//! The .deb from `packaging/build-deb`: installs the binary, the unit and the docs, reloads
//! systemd without enabling or starting strackt, works once enabled, and is removed cleanly.

use std::fs;
use std::process::Command;
use std::time::Duration;

use strackt_integration::{ensure, ensure_eq, repo_root, run, strackt_bin, with_host, Res};

use crate::HEADER;

#[test]
fn deb_installs_disabled_then_runs_and_removes_cleanly() -> Res {
    let out = std::env::temp_dir().join(format!("strackt-deb-{}", std::process::id()));
    let _ = fs::remove_dir_all(&out);
    let bin = strackt_bin();
    let built = run(
        Command::new("bash")
            .arg(repo_root().join("packaging/build-deb"))
            .arg("--binary")
            .arg(&bin)
            .arg("--out")
            .arg(&out)
            .args(["--compression", "none"]),
        Duration::from_secs(300),
    )?
    .ok()?;
    let deb = fs::read_dir(&out)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| format!("build-deb made no .deb in {}: {built}", out.display()))?;
    ensure(
        deb.file_name().is_some_and(|n| {
            n.to_string_lossy().starts_with("strackt_")
                && n.to_string_lossy().ends_with("_amd64.deb")
        }),
        || format!("package name {}", deb.display()),
    )?;

    let result = with_host("deb", |h| {
        h.copy_in(&deb, "/root/strackt.deb")?;
        let installed = h.sh_ok("dpkg -i /root/strackt.deb 2>&1")?;
        ensure_eq(
            h.is_enabled("strackt.service")?.as_str(),
            "disabled",
            &format!("strackt after dpkg -i ({installed})"),
        )?;
        ensure_eq(
            h.is_active("strackt.service")?.as_str(),
            "inactive",
            "strackt after dpkg -i",
        )?;
        let unit = fs::read_to_string(repo_root().join("systemd/strackt.service"))?;
        ensure_eq(
            h.read("/lib/systemd/system/strackt.service")?,
            unit,
            "the installed unit",
        )?;
        ensure(h.exists("/usr/share/doc/strackt/README.md")?, || {
            "no /usr/share/doc/strackt/README.md".into()
        })?;
        // The manual and completions are installed and work: `man strackt-deploy` renders (with
        // man-db from the Debian mirror), systemd finds the unit's `Documentation=man:strackt(8)`,
        // and bash completes subcommands.
        h.sh_ok("apt-get install -y -qq --no-install-recommends man-db >/dev/null 2>&1")?;
        let page = h.sh_ok("MANWIDTH=100 man -P cat strackt-deploy 2>/dev/null")?;
        ensure(
            page.contains("strackt-deploy") && page.contains("--branch"),
            || format!("`man strackt-deploy`: {page}"),
        )?;
        let verify = h.sh("systemd-analyze verify /lib/systemd/system/strackt.service")?;
        ensure(verify.success() && verify.text().trim().is_empty(), || {
            format!("systemd-analyze verify strackt.service: {verify}")
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

        // daemon-reload ran: systemd knows the unit without being told.
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
            "NeedDaemonReload of strackt.service after dpkg -i",
        )?;

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

        h.sh_ok("dpkg -r strackt")?;
        ensure_eq(
            h.is_active("strackt.service")?.as_str(),
            "inactive",
            "strackt after dpkg -r",
        )?;
        ensure(!h.exists("/usr/bin/strackt")?, || {
            "/usr/bin/strackt still there after dpkg -r".into()
        })?;
        ensure(!h.exists("/lib/systemd/system/strackt.service")?, || {
            "the unit is still there after dpkg -r".into()
        })?;
        Ok(())
    });
    let _ = fs::remove_dir_all(&out);
    result
}
