//! 8. Broken definitions: `strackt check` reports every problem as FILE:LINE:COL (without a
//!    daemon); saved as server.yaml, a broken definition changes nothing on the host and
//!    `strackt apply` fails naming the problem.

use std::thread;
use std::time::Duration;

use strackt_integration::{ensure, ensure_eq, problems, with_host, Host, Res};

use crate::HEADER;

/// (name, definition, lines the problem may be reported at, a word the report must contain)
/// Every definition also changes /etc/motd to "broken", which must never reach the host.
fn cases() -> Vec<(&'static str, String, Vec<u32>, &'static str)> {
    let motd = "  /etc/motd: { content: \"broken\\n\" }\n";
    vec![
        (
            "malformed YAML",
            format!("{HEADER}files:\n{motd}  /etc/app/x.conf: {{ content: \"x\"\n"),
            vec![],
            "",
        ),
        (
            "unknown key",
            format!("{HEADER}files:\n{motd}  /etc/app/x.conf: {{ content: \"x\", colour: red }}\n"),
            vec![6],
            "colour",
        ),
        (
            "relative path",
            format!("{HEADER}files:\n{motd}  etc/app/x.conf: {{ content: \"x\" }}\n"),
            vec![6],
            "etc/app/x.conf",
        ),
        (
            "invalid unit name",
            format!("{HEADER}files:\n{motd}services:\n  cron:\n    unit: \"cron job\"\n"),
            vec![7, 8],
            "cron job",
        ),
        (
            "file under /proc",
            format!("{HEADER}files:\n{motd}  /proc/sys/kernel/hostname: {{ content: \"x\" }}\n"),
            vec![6],
            "/proc/sys/kernel/hostname",
        ),
        (
            "file under /etc/strackt",
            format!("{HEADER}files:\n{motd}  /etc/strackt/other.yaml: {{ content: \"x\" }}\n"),
            vec![6],
            "/etc/strackt/other.yaml",
        ),
        (
            "unknown section",
            format!("{HEADER}files:\n{motd}packages: [nginx]\n"),
            vec![6],
            "packages",
        ),
    ]
}

pub(crate) const GOOD: &str = "files:\n  /etc/motd: { content: \"good\\n\" }\nservices:\n  hello:\n    exec: /usr/bin/sleep infinity\n";

#[test]
fn check_reports_every_problem_with_its_position() -> Res {
    with_host("check", |h| {
        // Binary and unit installed, daemon never started: check needs no daemon.
        h.install_unit()?;
        h.write("/root/good.yaml", &format!("{HEADER}{GOOD}"), 0o644)?;
        let out = h.strackt(&["check", "/root/good.yaml"])?;
        ensure_eq(
            out.code,
            Some(0),
            &format!("check of a valid definition: {out}"),
        )?;

        for (i, (name, yaml, lines, word)) in cases().into_iter().enumerate() {
            let path = format!("/root/broken-{i}.yaml");
            h.write(&path, &yaml, 0o644)?;
            let out = h.strackt(&["check", &path])?;
            ensure_eq(
                out.code,
                Some(1),
                &format!("{name}: exit code of check: {out}"),
            )?;
            let found = problems(&out.text());
            ensure(!found.is_empty(), || {
                format!("{name}: no FILE:LINE:COL: line in {out}")
            })?;
            for p in &found {
                ensure(p.file.ends_with(&format!("broken-{i}.yaml")), || {
                    format!("{name}: problem names file {:?}: {out}", p.file)
                })?;
                ensure(p.line >= 1 && p.col >= 1, || {
                    format!("{name}: position {}:{}: {out}", p.line, p.col)
                })?;
            }
            ensure(
                lines.is_empty() || found.iter().any(|p| lines.contains(&p.line)),
                || format!("{name}: want a problem at line {lines:?}: {out}"),
            )?;
            ensure(found.iter().any(|p| p.rest.contains(word)), || {
                format!("{name}: no problem mentions {word:?}: {out}")
            })?;
        }

        // Every problem at once, each at its own line.
        let many = format!("{HEADER}files:\n  etc/relative: {{ content: x }}\n  /proc/x: {{ content: x }}\n  /etc/ok: {{ content: x, mode: \"999\" }}\n");
        h.write("/root/many.yaml", &many, 0o644)?;
        let out = h.strackt(&["check", "/root/many.yaml"])?;
        ensure_eq(
            out.code,
            Some(1),
            &format!("exit code of check with 3 problems: {out}"),
        )?;
        let mut lines: Vec<u32> = problems(&out.text()).iter().map(|p| p.line).collect();
        lines.dedup();
        ensure_eq(
            lines,
            vec![5, 6, 7],
            &format!("lines of the 3 problems in {out}"),
        )?;
        Ok(())
    })
}

/// What a refused definition must leave as it was, on a host running [`GOOD`].
pub(crate) struct Baseline {
    generation: u64,
    count: usize,
    hello: u32,
}

impl Baseline {
    /// The host as it is now.
    pub(crate) fn take(h: &Host) -> Res<Baseline> {
        Ok(Baseline {
            generation: h.active_generation()?,
            count: h.generations()?.len(),
            hello: h.main_pid("hello.service")?,
        })
    }

    /// /etc/motd, the active generation, the number of generations, hello's process and the
    /// daemon are as they were.
    pub(crate) fn unchanged(&self, h: &Host, name: &str) -> Res {
        ensure_eq(
            h.read("/etc/motd")?.as_str(),
            "good\n",
            &format!("{name}: /etc/motd"),
        )?;
        ensure_eq(
            h.active_generation()?,
            self.generation,
            &format!("{name}: active generation"),
        )?;
        ensure_eq(
            h.generations()?.len(),
            self.count,
            &format!("{name}: number of generations"),
        )?;
        ensure_eq(
            h.main_pid("hello.service")?,
            self.hello,
            &format!("{name}: MainPID of hello"),
        )?;
        ensure_eq(
            h.is_active("strackt.service")?.as_str(),
            "active",
            &format!("{name}: the daemon"),
        )
    }
}

#[test]
fn broken_definition_changes_nothing() -> Res {
    with_host("broken", |h| {
        h.install(&format!("{HEADER}{GOOD}"))?;
        h.apply_ok()?;
        let before = Baseline::take(h)?;

        for (name, yaml, _, word) in cases() {
            h.put_definition(&yaml)?;
            thread::sleep(Duration::from_millis(1500)); // the watcher sees it; it must do nothing
            let out = h.apply()?;
            ensure(!out.success(), || {
                format!("{name}: `strackt apply` of a broken server.yaml must fail: {out}")
            })?;
            ensure(
                out.text().contains("server.yaml") && out.text().contains(word),
                || format!("{name}: `strackt apply` does not name the problem ({word:?}): {out}"),
            )?;
            before.unchanged(h, name)?;
        }

        // Fixed again: the next save goes through.
        h.put_definition(&format!("{HEADER}{}", GOOD.replace("good", "fixed")))?;
        h.apply_ok()?;
        ensure_eq(
            h.read("/etc/motd")?.as_str(),
            "fixed\n",
            "/etc/motd after the fix",
        )?;
        ensure(h.active_generation()? > before.generation, || {
            "the fixed definition made no new generation".into()
        })?;
        Ok(())
    })
}

/// An owner that does not exist on the host is only known when the host is read: the switch
/// must stop before the flip, with the host exactly as it was.
#[test]
fn unknown_owner_fails_before_touching_the_host() -> Res {
    with_host("owner", |h| {
        h.install(&format!("{HEADER}{GOOD}"))?;
        h.apply_ok()?;
        let generation = h.active_generation()?;
        let hello = h.main_pid("hello.service")?;
        let current = h.sh_ok("readlink /var/lib/strackt/current")?;
        let bad = format!(
            "{HEADER}files:\n  /etc/motd: {{ content: \"changed\\n\", owner: nosuchuser }}\nservices:\n  hello:\n    exec: /usr/bin/sleep 1000\n"
        );
        h.put_definition(&bad)?;
        let out = h.apply()?;
        ensure(!out.success(), || {
            format!("apply with an unknown owner must fail: {out}")
        })?;
        ensure(
            out.text().contains("user \"nosuchuser\" does not exist"),
            || format!("apply does not name the missing user: {out}"),
        )?;
        ensure(!out.text().contains("rolled back"), || {
            format!("nothing was changed, so nothing may be rolled back: {out}")
        })?;
        ensure_eq(h.read("/etc/motd")?.as_str(), "good\n", "/etc/motd")?;
        ensure_eq(h.active_generation()?, generation, "active generation")?;
        ensure_eq(h.main_pid("hello.service")?, hello, "MainPID of hello")?;
        ensure_eq(
            h.sh_ok("readlink /var/lib/strackt/current")?,
            current,
            "current",
        )?;
        Ok(())
    })
}
