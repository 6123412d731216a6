//! `users:` and `groups:` on a real host: created with the shadow tools, SSH keys and password
//! from a secret, drift put back, a pre-existing user left alone, removal keeping the home.

use strackt_integration::{ensure, ensure_eq, with_host, Host, Res};

use crate::HEADER;

const HASH: &str = "$6$strackt$0Bq9GrtHt9.6zx9s1j2VH2cQ0wFhWx1s8iC1q0iQ0tP7j2m4cMqk0tVQ4hWf7mS3v0e8a1eX0o8jQ2w5nF3y/";

const ACCOUNTS: &str = "groups:\n  deploy: { gid: 3000 }\nusers:\n  alice:\n    uid: 3001\n    group: deploy\n    groups: [adm]\n    shell: /bin/bash\n    comment: Alice\n    ssh_keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEXAMPLE alice@laptop\"]\n    password: { secret: alice_pw }\nfiles:\n  /etc/alice.conf: { content: \"mine\\n\", owner: alice, group: deploy, mode: \"0600\" }\n";

/// A command's output, trimmed.
fn sh(h: &Host, cmd: &str) -> Res<String> {
    Ok(h.sh_ok(cmd)?.trim().to_string())
}

#[test]
fn users_and_groups_are_created_repaired_and_removed() -> Res {
    with_host("accounts", |h| {
        h.sh_ok("useradd -m -u 1500 bob")?;
        let bob = sh(h, "getent passwd bob")?;
        h.sh_ok("mkdir -p /etc/strackt/secrets && chmod 700 /etc/strackt/secrets")?;
        h.write("/etc/strackt/secrets/alice_pw", &format!("{HASH}\n"), 0o600)?;
        h.install(&format!("{HEADER}{ACCOUNTS}"))?;
        h.apply_ok()?;

        ensure_eq(
            sh(h, "getent group deploy")?.as_str(),
            "deploy:x:3000:",
            "group",
        )?;
        ensure_eq(
            sh(h, "getent passwd alice")?.as_str(),
            "alice:x:3001:3000:Alice:/home/alice:/bin/bash",
            "user",
        )?;
        ensure_eq(sh(h, "id -nG alice")?.as_str(), "deploy adm", "groups")?;
        ensure_eq(
            sh(h, "getent shadow alice | cut -d: -f2")?.as_str(),
            HASH,
            "password hash",
        )?;
        ensure_eq(
            h.stat("/home/alice/.ssh/authorized_keys")?.as_str(),
            "600 alice deploy",
            "authorized_keys",
        )?;
        ensure(
            h.read("/home/alice/.ssh/authorized_keys")?
                .contains("alice@laptop"),
            || "key missing".into(),
        )?;
        ensure_eq(
            h.stat("/etc/alice.conf")?.as_str(),
            "600 alice deploy",
            "a file owned by the new user",
        )?;
        ensure_eq(
            sh(h, "getent passwd bob")?,
            bob.clone(),
            "a user strackt neither created nor names",
        )?;
        ensure(!h.sh_ok("strackt history --json")?.contains(HASH), || {
            "the password hash reached the log".into()
        })?;
        ensure(
            !h.sh_ok("grep -r -l -F '$6$strackt' /var/lib/strackt || true")?
                .contains('/'),
            || "the hash is stored in a generation".into(),
        )?;

        // Drift by hand: shell, groups and password.
        h.sh_ok("usermod -s /bin/sh -G '' alice && echo 'alice:$6$x$y' | chpasswd -e")?;
        h.apply_ok()?;
        ensure_eq(
            sh(h, "getent passwd alice | cut -d: -f7")?.as_str(),
            "/bin/bash",
            "shell repaired",
        )?;
        ensure_eq(
            sh(h, "id -nG alice")?.as_str(),
            "deploy adm",
            "groups repaired",
        )?;
        ensure_eq(
            sh(h, "getent shadow alice | cut -d: -f2")?.as_str(),
            HASH,
            "password repaired",
        )?;

        // A missing secret: refused before anything changes.
        h.sh_ok("mv /etc/strackt/secrets/alice_pw /root/alice_pw")?;
        h.put_definition(&format!(
            "{HEADER}{}",
            ACCOUNTS.replace("comment: Alice", "comment: Alice B")
        ))?;
        let out = h.apply()?;
        ensure(
            !out.success() && out.text().contains("/etc/strackt/secrets/alice_pw"),
            || format!("missing secret: {out}"),
        )?;
        ensure_eq(
            sh(h, "getent passwd alice | cut -d: -f5")?.as_str(),
            "Alice",
            "unchanged without the secret",
        )?;
        h.sh_ok("mv /root/alice_pw /etc/strackt/secrets/alice_pw")?;

        // Removed from the definition: user and group go, the home stays, bob stays.
        h.put_definition(HEADER)?;
        h.apply_ok()?;
        ensure(h.sh("getent passwd alice")?.code != Some(0), || {
            "alice was not removed".into()
        })?;
        ensure(h.sh("getent group deploy")?.code != Some(0), || {
            "deploy was not removed".into()
        })?;
        ensure(h.exists("/home/alice")?, || "the home was removed".into())?;
        ensure_eq(sh(h, "getent passwd bob")?, bob, "bob")?;
        Ok(())
    })
}
