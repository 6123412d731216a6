//! Security issue 10: definitions that try to read a file through a secret name or inject a
//! unit-file line are refused on a running host — `strackt check` names the field at its line,
//! `strackt apply` fails, and nothing on the host changed: no unit written, no generation made,
//! the secret's target read into nothing.

use std::thread;
use std::time::Duration;

use strackt_integration::{ensure, ensure_eq, problems, with_host, Res};

use crate::broken::{Baseline, GOOD};
use crate::HEADER;

/// What only a read of /root/stolen could put anywhere.
const MARKER: &str = "STOLEN-7f3a9c";

/// (name, definition, the field path refused, a line of the definition holding that field)
fn cases() -> Vec<(&'static str, String, &'static str, &'static str)> {
    let motd = "files:\n  /etc/motd: { content: \"broken\\n\" }\n";
    vec![
        (
            "secret name that walks out of the secrets directory",
            format!(
                "{HEADER}{motd}users:\n  shop: {{ system: true, home: /srv/shop }}\napps:\n  shop:\n    repo: /srv/git/shop.git\n    path: /srv/shop\n    user: shop\n    settings:\n      LEAK: {{ secret: ../../../root/stolen }}\n    service: {{ exec: /usr/bin/sleep infinity, listen: \"127.0.0.1:8000\" }}\n"
            ),
            "apps.shop.settings.LEAK.secret",
            "LEAK:",
        ),
        (
            "a newline in a description that adds an ExecStartPre line",
            format!(
                "{HEADER}{motd}services:\n  hello:\n    exec: /usr/bin/sleep infinity\n  evil:\n    exec: /usr/bin/sleep infinity\n    description: \"evil\\nExecStartPre=/usr/bin/touch /root/pwned\"\n"
            ),
            "services.evil.description",
            "description:",
        ),
        (
            "a newline in exec that adds a User line",
            format!(
                "{HEADER}{motd}services:\n  hello:\n    exec: /usr/bin/sleep infinity\n  evil:\n    exec: \"/usr/bin/touch /root/pwned\\nUser=root\"\n"
            ),
            "services.evil.exec",
            "exec: \"/usr/bin/touch",
        ),
    ]
}

#[test]
fn traversal_secrets_and_injected_unit_lines_are_refused_and_change_nothing() -> Res {
    with_host("dc-refuse", |h| {
        h.install(&format!("{HEADER}{GOOD}"))?;
        h.apply_ok()?;
        h.write("/root/stolen", &format!("{MARKER}\n"), 0o600)?;
        let before = Baseline::take(h)?;
        let units = h.sh_ok("ls /etc/systemd/system | sort")?;

        for (name, yaml, path, field_line) in cases() {
            let line = yaml
                .lines()
                .position(|l| l.contains(field_line))
                .map(|i| i + 1)
                .ok_or_else(|| format!("{name}: {field_line:?} not in the definition"))?;
            h.put_definition(&yaml)?;
            thread::sleep(Duration::from_millis(1500)); // the watcher sees it; it must do nothing

            let out = h.strackt(&["check", "/etc/strackt/server.yaml"])?;
            ensure_eq(
                out.code,
                Some(1),
                &format!("{name}: exit code of check: {out}"),
            )?;
            let found = problems(&out.text());
            ensure(
                found
                    .iter()
                    .any(|p| p.line as usize == line && p.col >= 1 && p.rest.starts_with(path)),
                || format!("{name}: no problem at line {line} naming {path}: {out}"),
            )?;

            let out = h.apply()?;
            ensure(!out.success(), || {
                format!("{name}: `strackt apply` must fail: {out}")
            })?;
            ensure(
                out.text().contains(&format!("server.yaml:{line}:")) && out.text().contains(path),
                || format!("{name}: `strackt apply` does not name {path} at line {line}: {out}"),
            )?;

            // Nothing changed.
            before.unchanged(h, name)?;
            ensure_eq(
                h.sh_ok("ls /etc/systemd/system | sort")?,
                units.clone(),
                &format!("{name}: unit files in /etc/systemd/system"),
            )?;
            ensure(!h.exists("/etc/systemd/system/evil.service")?, || {
                format!("{name}: evil.service was written")
            })?;
            ensure(!h.exists("/root/pwned")?, || {
                format!("{name}: /root/pwned exists")
            })?;
            ensure(!h.exists("/srv/shop")?, || {
                format!("{name}: /srv/shop was created")
            })?;
            ensure(
                !h.sh_ok("getent passwd shop >/dev/null && echo yes || echo no")?
                    .contains("yes"),
                || format!("{name}: user shop was created"),
            )?;
            let leaked = h.sh_ok(&format!(
                "grep -rl {MARKER} /var/lib/strackt /etc/systemd /run/systemd/system /etc/strackt /srv 2>/dev/null || true"
            ))?;
            ensure(leaked.trim().is_empty(), || {
                format!("{name}: the secret's target was copied to {leaked}")
            })?;
        }
        Ok(())
    })
}
