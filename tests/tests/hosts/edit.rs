//! `strackt edit` (visudo for the definition), `strackt plan --definition FILE` and `strackt
//! diff A B`, driven the way an admin or a script would: the editor is a shell script that
//! edits the copy strackt hands it (as `sed -i` would), and the interactive prompts are answered
//! through a terminal (`script` gives the command a pty).

use strackt_integration::{ensure, ensure_eq, Host, Res};

use crate::HEADER;

const DEFINITION: &str = "/etc/strackt/server.yaml";

fn definition(motd: &str) -> String {
    format!(
        r#"{HEADER}  keep_generations: 2
files:
  /etc/motd: {{ content: "{motd}" }}
services:
  hello:
    exec: /usr/bin/sleep infinity
"#
    )
}

/// Install `script` as an editor at `path` (it gets the copy's path as `$1`).
fn editor(h: &Host, path: &str, script: &str) -> Res {
    h.write(path, &format!("#!/bin/sh\nset -e\n{script}\n"), 0o755)
}

fn sha(h: &Host, path: &str) -> Res<String> {
    Ok(h.sh_ok(&format!("sha256sum {path} | cut -c1-64"))?
        .trim()
        .to_string())
}

#[test]
fn edit_shows_the_diff_saves_and_the_new_generation_goes_live() -> Res {
    strackt_integration::with_host("edit", |h| {
        h.install(&definition("one\\ntwo\\nthree\\n"))?;
        h.apply_ok()?;
        ensure_eq(h.active_generation()?, 1, "generation after install")?;

        // Without a terminal, edit refuses to ask (and so to hang) unless told --yes.
        editor(h, "/usr/local/bin/two-to-2", "sed -i 's/two/2/' \"$1\"")?;
        let before = sha(h, DEFINITION)?;
        let out = h.sh("EDITOR=/usr/local/bin/two-to-2 strackt edit </dev/null")?;
        ensure(out.code == Some(1) && out.stderr.contains("--yes"), || {
            format!("edit without a terminal nor --yes must refuse: {out}")
        })?;
        ensure_eq(
            sha(h, DEFINITION)?,
            before.clone(),
            "definition after the refusal",
        )?;

        // plan --definition: the change, as a script sees it; nothing saved.
        h.sh_ok(&format!(
            "sed 's/two/2/' {DEFINITION} > /root/next.yaml && cp {DEFINITION} /root/same.yaml && sed 's|/usr/bin/sleep|sleep|' {DEFINITION} > /root/broken.yaml"
        ))?;
        let plan = h.strackt(&["plan", "--definition", "/root/next.yaml"])?;
        ensure(
            plan.code == Some(2)
                && plan.stdout.contains(
                    "--- /etc/motd\t(generation 1)\n+++ /etc/motd\t(new generation)\n@@ -1,3 +1,3 @@\n one\n-two\n+2\n three\n",
                )
                && plan.stdout.contains("would write-file /etc/motd"),
            || format!("plan --definition of a change: exit 2 and the unified diff: {plan}"),
        )?;
        let same = h.strackt(&["plan", "--definition", "/root/same.yaml"])?;
        ensure(same.code == Some(0) && !same.stdout.contains("---"), || {
            format!("plan --definition of the running text: exit 0, no diff: {same}")
        })?;
        let broken = h.strackt(&["plan", "--definition", "/root/broken.yaml"])?;
        ensure(
            broken.code == Some(1)
                && broken.stderr.contains(
                    "/root/broken.yaml:9:11: services.hello.exec: must start with an absolute path",
                ),
            || format!("plan --definition of a broken file: exit 1 at FILE:LINE:COL: {broken}"),
        )?;
        ensure_eq(sha(h, DEFINITION)?, before, "definition after the plans")?;
        ensure_eq(h.active_generation()?, 1, "generation after the plans")?;

        // The edit: diff shown, saved, applied, followed to the end.
        let out = h.sh("EDITOR=/usr/local/bin/two-to-2 strackt edit --yes </dev/null")?;
        ensure(
            out.success()
                && out
                    .stdout
                    .contains("changes from generation 1 (running) to the new generation:")
                && out.stdout.contains("-two\n+2\n")
                && out.stdout.contains("saved /etc/strackt/server.yaml")
                && out.stdout.contains("apply (edit) generation 2: success"),
            || format!("strackt edit --yes: {out}"),
        )?;
        ensure(
            h.read(DEFINITION)?
                .contains("content: \"one\\n2\\nthree\\n\""),
            || "the saved definition lacks the edit".into(),
        )?;
        ensure_eq(
            h.stat(DEFINITION)?.as_str(),
            "644 root root",
            "mode and owner kept",
        )?;
        ensure_eq(
            h.read("/etc/motd")?.as_str(),
            "one\n2\nthree\n",
            "/etc/motd live",
        )?;
        ensure_eq(h.active_generation()?, 2, "generation after the edit")?;
        let gens = h.generations()?;
        ensure(gens[0].id == 2 && gens[0].trigger == "edit", || {
            format!("generation 2 made by the edit: {gens:#?}")
        })?;

        // An editor that changes nothing: nothing to save, exit 0, no generation.
        let out = h.sh("EDITOR=true strackt edit --yes </dev/null")?;
        ensure(out.success() && out.stdout.contains("no changes"), || {
            format!("an edit that changed nothing: {out}")
        })?;

        // diff between generations (default: previous → current).
        let diff = h.strackt(&["diff"])?;
        ensure(
            diff.success()
                && diff.stdout.contains(
                    "--- /etc/motd\t(generation 1)\n+++ /etc/motd\t(generation 2)\n@@ -1,3 +1,3 @@\n one\n-two\n+2\n three\n",
                ),
            || format!("strackt diff: {diff}"),
        )?;

        // A third generation prunes generation 1's directory (keep_generations: 2); its record
        // still compares.
        editor(h, "/usr/local/bin/three-to-3", "sed -i 's/three/3/' \"$1\"")?;
        h.sh_ok("EDITOR=/usr/local/bin/three-to-3 strackt edit --yes </dev/null")?;
        ensure_eq(
            h.active_generation()?,
            3,
            "generation after the second edit",
        )?;
        ensure(!h.exists("/var/lib/strackt/generations/1")?, || {
            "generation 1's directory should be pruned".into()
        })?;
        let diff = h.strackt(&["diff", "1", "3"])?;
        ensure(
            diff.success()
                && diff.stdout.contains(
                    "--- /etc/motd\t(generation 1)\n+++ /etc/motd\t(generation 3)\n@@ -1,3 +1,3 @@\n one\n-two\n-three\n+2\n+3\n",
                ),
            || format!("strackt diff 1 3 (1 pruned): {diff}"),
        )?;
        let missing = h.strackt(&["diff", "1", "99"])?;
        ensure(
            missing.code == Some(1) && missing.stderr.contains("there is no generation 99"),
            || format!("diff with a generation that does not exist: {missing}"),
        )?;
        Ok(())
    })
}

#[test]
fn a_broken_edit_is_refused_at_its_line_and_can_be_edited_again() -> Res {
    strackt_integration::with_host("edit-broken", |h| {
        h.install(&definition("hello\\n"))?;
        h.apply_ok()?;
        let before = sha(h, DEFINITION)?;
        let break_exec = "sed -i 's|exec: /usr/bin/sleep infinity|exec: sleep infinity|' \"$1\"";
        editor(h, "/usr/local/bin/break-exec", break_exec)?;

        // Scripted: refused with FILE:LINE:COL, nothing written, no new generation.
        let out = h.sh("EDITOR=/usr/local/bin/break-exec strackt edit --yes </dev/null")?;
        ensure(
            out.code == Some(1)
                && out.stderr.contains(
                    "/etc/strackt/server.yaml:9:11: services.hello.exec: must start with an absolute path",
                )
                && out.stderr.contains("nothing saved"),
            || format!("a broken edit: {out}"),
        )?;
        ensure_eq(
            sha(h, DEFINITION)?,
            before.clone(),
            "definition after the broken edit",
        )?;
        ensure_eq(
            h.generations()?.len(),
            1,
            "generations after the broken edit",
        )?;

        // At a terminal, like visudo: refused, "e" edits the copy again (the editor now fixes
        // it and changes the command), the plan is shown, "y" saves.
        editor(
            h,
            "/usr/local/bin/twice",
            &format!(
                "n=$(cat /root/runs 2>/dev/null || echo 0); echo $((n + 1)) > /root/runs\nif [ \"$n\" = 0 ]; then {break_exec}; else sed -i 's|exec: sleep infinity|exec: /usr/bin/sleep 1000|' \"$1\"; fi"
            ),
        )?;
        let out = h.sh(
            "printf 'e\\ny\\n' | EDITOR=/usr/local/bin/twice script -qec 'strackt edit' /dev/null",
        )?;
        let text = out.text();
        ensure(
            out.success()
                && text.contains("services.hello.exec: must start with an absolute path")
                && text.contains("What now?")
                && text.contains("-ExecStart=/usr/bin/sleep infinity")
                && text.contains("+ExecStart=/usr/bin/sleep 1000")
                && text.contains("Save /etc/strackt/server.yaml and apply it?")
                && text.contains("generation 2: success"),
            || format!("edit at a terminal, edited again after a refusal: {out}"),
        )?;
        ensure_eq(h.read("/root/runs")?.trim(), "2", "editor runs")?;
        ensure_eq(
            h.active_generation()?,
            2,
            "generation after the terminal edit",
        )?;
        ensure(
            h.sh_ok("systemctl show -p ExecStart --value hello.service")?
                .contains("/usr/bin/sleep 1000"),
            || "hello.service does not run the edited command".into(),
        )?;

        // Saved, but the new generation fails its verification: rolled back, exit 1, the edit
        // stays in the file (like a save made by hand) and the previous generation runs.
        editor(
            h,
            "/usr/local/bin/fail",
            "sed -i 's|exec: /usr/bin/sleep 1000|exec: /usr/bin/false|' \"$1\"",
        )?;
        let out = h.sh("EDITOR=/usr/local/bin/fail strackt edit --yes </dev/null")?;
        ensure(
            out.code == Some(1)
                && out.stdout.contains("saved /etc/strackt/server.yaml")
                && out.stdout.contains("generation 3: rolled-back")
                && out.stdout.contains("does not run"),
            || format!("an edit whose generation fails: {out}"),
        )?;
        ensure_eq(
            h.active_generation()?,
            2,
            "generation after the rolled-back edit",
        )?;
        ensure(h.read(DEFINITION)?.contains("exec: /usr/bin/false"), || {
            "the saved edit should stay in the file".into()
        })?;
        editor(
            h,
            "/usr/local/bin/unfail",
            "sed -i 's|exec: /usr/bin/false|exec: /usr/bin/sleep 1000|' \"$1\"",
        )?;
        h.sh_ok("EDITOR=/usr/local/bin/unfail strackt edit --yes </dev/null")?;

        // Declined at the prompt: nothing saved.
        let before = sha(h, DEFINITION)?;
        editor(h, "/usr/local/bin/motd", "sed -i 's/hello/bye/' \"$1\"")?;
        let out = h.sh(
            "printf 'n\\n' | EDITOR=/usr/local/bin/motd script -qec 'strackt edit' /dev/null",
        )?;
        ensure(out.text().contains("nothing saved"), || {
            format!("declined edit: {out}")
        })?;
        ensure_eq(
            sha(h, DEFINITION)?,
            before,
            "definition after a declined edit",
        )?;
        ensure_eq(
            h.read("/etc/motd")?.as_str(),
            "hello\n",
            "/etc/motd after a declined edit",
        )?;
        Ok(())
    })
}
