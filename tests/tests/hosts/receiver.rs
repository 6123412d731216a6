//! `strackt receiver` (issue 5) on a real host: `strackt-receiver.service` serves restic's
//! REST protocol over TLS on loopback, and the same host's strackt backs up into it — the
//! receiver and the sender are two units, as they would be on two servers (testhost hosts
//! have no network between them).
//!
//! A run lands in the receiver and is listed and restored through it; the official restic CLI
//! reads it over `rest:` with the receiver's CA; the receiver refuses deletes and overwrites
//! (restic's own `forget`, raw DELETE and re-POST of an existing file), a wrong password and
//! one client reaching another's repository; and it applies `keep:` itself. Clients and the
//! certificate change without a restart (definition edit, `systemctl reload`); a reload that
//! does not load changes nothing.
//!
//! Issue 10: a sender holding the team key forges snapshots dated in 2099 and the receiver's
//! retention still keeps the real history (it decides by the time it stored each snapshot);
//! an upload over the client's quota is 413 and one into the disk's reserve 507, nothing
//! stored; the unit runs as its own user with `systemd-analyze security` ≤ 2.0; a wrong
//! password is logged with the peer's address and answered slower each time.

use std::time::{Duration, Instant};

use strackt_integration::{ensure, ensure_eq, repo_root, wait_until, with_app_host, Host, Res};

use crate::backup::{backup_ok, items, runs, uploads};
use crate::deploy::{definition, deploy_ok, get, setup_with};
use crate::HEADER;

const SECTIONS: &str = r#"backups:
  shop:
    database: true
    paths: [storage/uploads]
    to:
      receiver: { url: "https://127.0.0.1:8443/", credentials: { secret: receiver_web1 }, ca: /etc/strackt/receiver.crt }
    schedule: daily
receiver:
  listen: "127.0.0.1:8443"
  tls: { certificate: /etc/strackt/receiver.crt, key: /etc/strackt/receiver.key }
  clients:
    web1: { credentials: { secret: receiver_web1 } }
    web2: { credentials: { secret: receiver_web2 } }
  keep: { last: 1 }
  retention_after: 3s
"#;

const STORE: &str = "/var/lib/strackt-receiver/web1";

/// Install the receiver the way the package does: its units, its system user
/// (`systemd-sysusers`, as the package's postinst), `systemctl daemon-reload`.
pub fn install_receiver(h: &Host) -> Res {
    for unit in [
        "strackt-receiver.service",
        "strackt-receiver-reload.path",
        "strackt-receiver-reload.service",
    ] {
        h.copy_in(
            &repo_root().join("systemd").join(unit),
            &format!("/etc/systemd/system/{unit}"),
        )?;
    }
    h.copy_in(
        &repo_root().join("systemd/strackt-receiver.sysusers"),
        "/etc/sysusers.d/strackt-receiver.conf",
    )?;
    h.sh_ok("systemd-sysusers strackt-receiver.conf && systemctl daemon-reload")?;
    Ok(())
}

/// A self-signed certificate for 127.0.0.1 at /etc/strackt/receiver.{crt,key}.
pub fn certificate(h: &Host) -> Res {
    h.sh_ok("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -subj /CN=backup-host -addext subjectAltName=IP:127.0.0.1 -keyout /etc/strackt/receiver.key -out /etc/strackt/receiver.crt 2>/dev/null && chmod 600 /etc/strackt/receiver.key")?;
    Ok(())
}

/// A host with only the receiver: `receiver_section` as the definition, web1's secret, a
/// certificate, the team key, the receiver started.
fn receiver_only(h: &Host, receiver_section: &str) -> Res {
    h.install_unit()?;
    h.sh_ok("mkdir -p /etc/strackt/secrets && chmod 700 /etc/strackt/secrets")?;
    h.put_definition(&format!("{HEADER}{receiver_section}"))?;
    h.write(
        "/etc/strackt/secrets/receiver_web1",
        "web1:pw-web1\n",
        0o600,
    )?;
    certificate(h)?;
    let out = h.strackt(&["backup", "key", "init"])?;
    ensure(out.success(), || format!("key init: {out}"))?;
    install_receiver(h)?;
    h.sh_ok("systemctl start strackt-receiver.service")
        .map_err(|e| format!("starting the receiver: {e}\n{}", receiver_journal(h)))?;
    Ok(())
}

fn receiver_journal(h: &Host) -> String {
    h.sh_ok("journalctl -u strackt-receiver.service --no-pager")
        .unwrap_or_default()
}

/// restic as the client web1 over REST, with the team key (what a compromised sender has).
const CLIENT: &str = "RESTIC_REPOSITORY=rest:https://web1:pw-web1@127.0.0.1:8443/web1/ RESTIC_PASSWORD_FILE=/var/lib/strackt/vault/backup.key restic --no-cache --cacert /etc/strackt/receiver.crt";

/// The ids of the snapshots in the receiver's storage (read on the receiver, without a lock).
fn stored_ids(h: &Host) -> Res<Vec<String>> {
    let v: serde_json::Value = serde_json::from_str(&h.sh_ok(&format!(
        "restic -r {STORE} --password-file /var/lib/strackt/vault/backup.key --no-cache --no-lock snapshots --json"
    ))?)?;
    Ok(v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default())
}

/// How many retention passes the receiver has logged.
fn retention_passes(h: &Host) -> Res<usize> {
    Ok(
        h.sh_ok("journalctl -u strackt-receiver.service --no-pager")?
            .matches("snapshot(s) forgotten and pruned")
            .count(),
    )
}

#[test]
fn receiver_keeps_the_real_history_when_a_sender_forges_future_dates() -> Res {
    with_app_host("rc-future", |h| {
        receiver_only(
            h,
            r#"receiver:
  listen: "127.0.0.1:8443"
  tls: { certificate: /etc/strackt/receiver.crt, key: /etc/strackt/receiver.key }
  clients:
    web1: { credentials: { secret: receiver_web1 } }
  keep: { last: 2 }
  retention_after: 2s
"#,
        )?;
        // Two real backups of the sender, and the receiver's retention pass after them.
        h.sh_ok(&format!(
            "mkdir -p /data && head -c 100000 /dev/urandom > /data/a && {CLIENT} init -q && {CLIENT} backup -q --tag strackt /data"
        ))?;
        let first = stored_ids(h)?;
        ensure_eq(first.len(), 1, "snapshots after the first backup")?;
        h.sh_ok(&format!(
            "echo b > /data/b && {CLIENT} backup -q --tag strackt /data"
        ))?;
        wait_until(
            "the retention pass after the real backups",
            Duration::from_secs(90),
            || Ok(retention_passes(h)? >= 1),
        )?;
        let real = stored_ids(h)?;
        ensure_eq(real.len(), 2, "real snapshots after the first pass")?;

        // The sender is compromised: it has the team key and dates three snapshots in 2099.
        for day in 1..=3 {
            h.sh_ok(&format!(
                "echo forged{day} > /data/b && {CLIENT} backup -q --tag strackt --time '2099-01-0{day} 00:00:00' /data"
            ))?;
        }
        // Each upload is followed by a pass once the sender is idle for 2 s, so passes may run
        // between the forged uploads: wait for the one that saw all three, to its end.
        wait_until(
            "the retention pass that saw the three forged snapshots",
            Duration::from_secs(90),
            || {
                let journal = receiver_journal(h);
                Ok(journal
                    .rfind("3 snapshot(s) dated after the receiver stored them")
                    .is_some_and(|at| journal[at..].contains("snapshot(s) forgotten and pruned")))
            },
        )?;
        let passes = retention_passes(h)?;
        let after = stored_ids(h)?;
        let lost: Vec<&String> = real.iter().filter(|id| !after.contains(id)).collect();
        ensure(lost.is_empty(), || {
            format!(
                "retention forgot the real history ({lost:?}) because of snapshots dated 2099; kept: {after:?}\n{}",
                receiver_journal(h)
            )
        })?;
        ensure_eq(
            after.len(),
            5,
            "the real snapshots and the three forged ones",
        )?;
        ensure(
            receiver_journal(h).contains("3 snapshot(s) dated after the receiver stored them"),
            || {
                format!(
                    "the forged snapshots were not reported\n{}",
                    receiver_journal(h)
                )
            },
        )?;

        // A later real backup still rotates the real history: keep last 2 by stored time.
        h.sh_ok(&format!(
            "echo c > /data/c && {CLIENT} backup -q --tag strackt /data"
        ))?;
        wait_until(
            "the retention pass after the next real backup",
            Duration::from_secs(90),
            || Ok(retention_passes(h)? > passes),
        )?;
        let last = stored_ids(h)?;
        ensure(!last.contains(&first[0]), || {
            format!("the oldest real snapshot was not rotated out: {last:?}")
        })?;
        ensure_eq(
            last.len(),
            5,
            "two real snapshots kept, three forged ones kept aside",
        )?;
        Ok(())
    })
}

#[test]
fn receiver_quota_reserve_failed_logins_and_confinement() -> Res {
    with_app_host("rc-limits", |h| {
        let section = r#"receiver:
  listen: "127.0.0.1:8443"
  tls: { certificate: /etc/strackt/receiver.crt, key: /etc/strackt/receiver.key }
  clients:
    web1: { credentials: { secret: receiver_web1 }, quota: 2MiB }
"#;
        receiver_only(h, section)?;

        // Confined: its own user, and systemd's exposure score at most 2.0.
        let pid = h.main_pid("strackt-receiver.service")?;
        let uid = h.sh_ok(&format!("awk '/^Uid:/ {{print $2}}' /proc/{pid}/status"))?;
        let user = h.sh_ok(&format!("getent passwd {} | cut -d: -f1", uid.trim()))?;
        ensure_eq(user.trim(), "strackt-receiver", "the receiver's user")?;
        let score = h.sh_ok("systemd-analyze security strackt-receiver.service --no-pager")?;
        let overall = score
            .lines()
            .find_map(|l| l.split("strackt-receiver.service: ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
            .ok_or_else(|| format!("no overall exposure in:\n{score}"))?;
        ensure(overall <= 2.0, || {
            format!("systemd-analyze security: exposure {overall} > 2.0\n{score}")
        })?;
        ensure_eq(
            h.stat(STORE.trim_end_matches("/web1"))?,
            "700 strackt-receiver strackt-receiver".to_string(),
            "the storage",
        )?;

        // Within the quota an upload is stored (and read back, whole and by range).
        h.sh_ok(&format!("{CLIENT} init -q"))?;
        let url = "https://127.0.0.1:8443/web1";
        let put = |file: &str| -> Res<(String, String)> {
            let sha = h.sh_ok(&format!("sha256sum {file} | cut -d' ' -f1"))?;
            let sha = sha.trim().to_string();
            let code = curl(
                h,
                "web1:pw-web1",
                &format!("--data-binary @{file} {url}/data/{sha}"),
            )?;
            Ok((sha, code))
        };
        h.sh_ok("head -c 1000000 /dev/urandom > /root/small && head -c 3000000 /dev/urandom > /root/big")?;
        let (small, code) = put("/root/small")?;
        ensure_eq(code, "200".to_string(), "an upload within the quota")?;
        let back = h.sh_ok(&format!(
            "tail -c +1001 /root/small | head -c 1000 > /root/range; curl -sf --cacert /etc/strackt/receiver.crt -u web1:pw-web1 {url}/data/{small} | sha256sum | cut -d' ' -f1; curl -sf --cacert /etc/strackt/receiver.crt -u web1:pw-web1 -r 1000-1999 {url}/data/{small} | cmp - /root/range && echo range-ok"
        ));
        let back = back?;
        ensure(back.contains(&small) && back.contains("range-ok"), || {
            format!("reading the upload back: {back}")
        })?;

        // Over the quota: 413, and nothing stored.
        let (big, code) = put("/root/big")?;
        ensure_eq(code, "413".to_string(), "an upload over the quota")?;
        ensure(
            !h.exists(&format!("{STORE}/data/{}/{big}", &big[..2]))?,
            || "the refused upload was stored".into(),
        )?;
        let leftovers = h.sh_ok(&format!("find {STORE}/data -name '.*' | wc -l"))?;
        ensure_eq(leftovers.trim(), "0", "temporary files left by the refusal")?;

        // The disk's reserve, changed by editing the definition: 507 for any client.
        h.put_definition(&format!("{HEADER}{section}  reserve: 1000TiB\n"))?;
        wait_until(
            "the receiver reloading with the new reserve",
            Duration::from_secs(30),
            || Ok(receiver_journal(h).contains("reloaded: 1 client(s)")),
        )?;
        h.sh_ok("head -c 1000 /dev/urandom > /root/tiny")?;
        let (tiny, code) = put("/root/tiny")?;
        ensure_eq(code, "507".to_string(), "an upload into the disk's reserve")?;
        ensure(
            !h.exists(&format!("{STORE}/data/{}/{tiny}", &tiny[..2]))?,
            || "the refused upload was stored".into(),
        )?;

        // A wrong password: 401, logged with the peer's address, each answer slower.
        let timed = || -> Res<(String, Duration)> {
            let start = Instant::now();
            let code = curl(h, "web1:pw-guess-7731", &format!("{url}/config"))?;
            Ok((code, start.elapsed()))
        };
        let (first, _) = timed()?;
        ensure_eq(first, "401".to_string(), "a wrong password")?;
        let (second, slow) = timed()?;
        ensure_eq(second, "401".to_string(), "a wrong password again")?;
        ensure(slow >= Duration::from_millis(900), || {
            format!("the second failed login was answered in {slow:?}, not slowed down")
        })?;
        wait_until(
            "the failed login in the journal with the peer's address",
            Duration::from_secs(15),
            || Ok(receiver_journal(h).contains("failed login from 127.0.0.1:")),
        )?;
        ensure(receiver_journal(h).contains("as \"web1\""), || {
            format!("the login name is not logged\n{}", receiver_journal(h))
        })?;
        ensure(!receiver_journal(h).contains("pw-guess-7731"), || {
            "the tried password is in the journal".into()
        })?;
        Ok(())
    })
}

/// curl against the receiver as `who`: the HTTP status code.
fn curl(h: &Host, who: &str, args: &str) -> Res<String> {
    Ok(h.sh_ok(&format!(
        "curl -s -o /dev/null -w '%{{http_code}}' --cacert /etc/strackt/receiver.crt -u {who} {args}"
    ))?
    .trim()
    .to_string())
}

/// Snapshots in the receiver's storage, read by restic on the receiver with the team key;
/// without a lock, as retention may hold the repository (clients over REST wait for it instead).
fn stored(h: &Host) -> Res<usize> {
    let v: serde_json::Value = serde_json::from_str(&h.sh_ok(&format!(
        "restic -r {STORE} --password-file /var/lib/strackt/vault/backup.key --no-cache --no-lock snapshots --json"
    ))?)?;
    Ok(v.as_array().map_or(0, Vec::len))
}

#[test]
fn receiver_takes_backups_refuses_deletes_and_overwrites_and_applies_retention() -> Res {
    with_app_host("receiver", |h| {
        setup_with(h, &format!("{}{SECTIONS}", definition(5)))?;
        h.write(
            "/etc/strackt/secrets/receiver_web1",
            "web1:pw-web1\n",
            0o600,
        )?;
        certificate(h)?;
        let out = h.strackt(&["backup", "key", "init"])?;
        ensure(out.success(), || format!("key init: {out}"))?;
        install_receiver(h)?;
        // A missing client secret: the unit does not start, and says which file to create.
        let out = h.sh("systemctl enable --now strackt-receiver.service")?;
        ensure(!out.success(), || {
            format!("started without web2's secret: {out}")
        })?;
        // journald takes the line a moment after the unit failed.
        wait_until(
            "the receiver's message naming the missing secret",
            std::time::Duration::from_secs(15),
            || {
                Ok(h.sh_ok("journalctl -u strackt-receiver.service --no-pager")?.contains(
                    "secret `receiver_web2` is missing: create /etc/strackt/secrets/receiver_web2",
                ))
            },
        )?;
        h.write(
            "/etc/strackt/secrets/receiver_web2",
            "web2:pw-web2\n",
            0o600,
        )?;
        h.sh_ok("systemctl reset-failed strackt-receiver.service; systemctl restart strackt-receiver.service")?;
        ensure_eq(
            h.is_active("strackt-receiver.service")?,
            "active".into(),
            "receiver unit",
        )?;
        deploy_ok(h)?;
        h.sh_ok("cd /srv/shop/shared/storage/uploads && head -c 200000 /dev/urandom > photo.jpg && chown shop: photo.jpg")?;

        // A run goes to the receiver, is listed, and restic reads it over rest: with the CA.
        let first = backup_ok(h)?;
        ensure_eq(runs(h, None)?.len(), 1, "runs listed through the receiver")?;
        let rest = "RESTIC_REPOSITORY=rest:https://web1:pw-web1@127.0.0.1:8443/web1/ RESTIC_PASSWORD_FILE=/var/lib/strackt/vault/backup.key restic --no-cache --cacert /etc/strackt/receiver.crt";
        let v: serde_json::Value =
            serde_json::from_str(&h.sh_ok(&format!("{rest} snapshots --json"))?)?;
        ensure_eq(
            v.as_array().map(Vec::len),
            Some(3),
            "snapshots restic lists over rest: (database, files, server bundle)",
        )?;
        let snap = v[0]["id"].as_str().ok_or("no snapshot id")?.to_string();

        // Append-only: restic's forget, a raw DELETE and rewriting an existing file are refused.
        let out = h.sh(&format!("{rest} forget {snap}"))?;
        ensure(!out.success(), || {
            format!("restic forget was allowed: {out}")
        })?;
        let url = "https://127.0.0.1:8443/web1";
        ensure_eq(
            curl(
                h,
                "web1:pw-web1",
                &format!("-X DELETE {url}/snapshots/{snap}"),
            )?,
            "403".into(),
            "DELETE snapshot",
        )?;
        ensure_eq(
            curl(h, "web1:pw-web1", &format!("-X DELETE {url}/config"))?,
            "403".into(),
            "DELETE config",
        )?;
        let pack = h.sh_ok(&format!(
            "cd {STORE}/data && ls */ | grep -v : | grep . | head -1"
        ))?;
        let pack = pack.trim();
        ensure_eq(
            curl(h, "web1:pw-web1", &format!("-X DELETE {url}/data/{pack}"))?,
            "403".into(),
            "DELETE pack",
        )?;
        ensure_eq(
            curl(
                h,
                "web1:pw-web1",
                &format!("--data-binary @{STORE}/snapshots/{snap} {url}/snapshots/{snap}"),
            )?,
            "403".into(),
            "overwriting a snapshot with its own content",
        )?;
        ensure_eq(
            curl(
                h,
                "web1:pw-web1",
                &format!("--data-binary garbage {url}/config"),
            )?,
            "403".into(),
            "overwriting the config",
        )?;
        ensure_eq(stored(h)?, 3, "snapshots after the refusals")?;
        ensure_eq(
            curl(h, "web1:wrong", &format!("{url}/config"))?,
            "401".into(),
            "wrong password",
        )?;
        ensure_eq(
            curl(h, "web2:pw-web2", &format!("{url}/config"))?,
            "403".into(),
            "web2 reading web1's repository",
        )?;
        ensure_eq(
            curl(h, "web1:pw-web1", &format!("{url}/config"))?,
            "200".into(),
            "web1 reading its own config",
        )?;
        wait_until(
            "the receiver logging the refusals",
            std::time::Duration::from_secs(15),
            || {
                Ok(
                    h.sh_ok("journalctl -u strackt-receiver.service --no-pager")?
                        .contains("refused DELETE"),
                )
            },
        )?;

        // Restore through the receiver: the database and the files come back.
        h.sh_ok("runuser -u postgres -- psql -d shop -qc \"INSERT INTO items (name) VALUES ('after')\" && rm /srv/shop/shared/storage/uploads/photo.jpg")?;
        let before = items(h, "shop")?;
        let out = h.strackt(&["restore", "shop", &first])?;
        ensure(out.success(), || {
            format!("restore from the receiver: {out}")
        })?;
        ensure(
            !items(h, "shop")?.contains("after") && before.contains("after"),
            || "the database was not restored".into(),
        )?;
        ensure(
            uploads(h, "/srv/shop/shared/storage/uploads")?.contains("photo.jpg"),
            || "the upload was not restored".into(),
        )?;
        ensure_eq(get(h, "/")?.0, 200, "app serving after the restore")?;

        // Retention is the receiver's: keep last 1 leaves one run (three snapshots).
        backup_ok(h)?;
        let newest = backup_ok(h)?;
        wait_until(
            "the receiver applies keep: last 1",
            std::time::Duration::from_secs(90),
            || Ok(stored(h)? == 3),
        )?;
        let listed = runs(h, None)?;
        ensure_eq(listed.len(), 1, "runs after retention")?;
        ensure_eq(
            listed[0]["run"].as_str(),
            Some(newest.as_str()),
            "the run kept",
        )?;

        // Clients change with the definition, without a restart: web3 in, web2 out.
        let pid = || h.sh_ok("systemctl show -p MainPID --value strackt-receiver.service");
        let before = pid()?;
        let web3 = "https://127.0.0.1:8443/web3/config";
        ensure_eq(curl(h, "web3:pw-web3", web3)?, "401".into(), "web3 unknown")?;
        h.write(
            "/etc/strackt/secrets/receiver_web3",
            "web3:pw-web3\n",
            0o600,
        )?;
        let swapped = SECTIONS.replace(
            "    web2: { credentials: { secret: receiver_web2 } }",
            "    web3: { credentials: { secret: receiver_web3 } }",
        );
        h.put_definition(&format!("{}{swapped}", definition(5)))?;
        wait_until(
            "the receiver taking web3 (no repository yet: 404) and refusing web2",
            std::time::Duration::from_secs(30),
            || {
                Ok(curl(h, "web3:pw-web3", web3)? == "404"
                    && curl(h, "web2:pw-web2", "https://127.0.0.1:8443/web2/config")? == "401")
            },
        )?;
        ensure_eq(
            curl(h, "web1:pw-web1", &format!("{url}/config"))?,
            "200".into(),
            "web1 still served",
        )?;

        // A renewed certificate is served after `systemctl reload`, still in the same process.
        h.sh_ok("cp /etc/strackt/receiver.crt /root/old.crt && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -subj /CN=backup-host -addext subjectAltName=IP:127.0.0.1 -keyout /etc/strackt/receiver.key -out /etc/strackt/receiver.crt 2>/dev/null && systemctl reload strackt-receiver.service")?;
        wait_until(
            "the renewed certificate served",
            std::time::Duration::from_secs(30),
            || Ok(curl(h, "web1:pw-web1", &format!("{url}/config"))? == "200"),
        )?;
        let old = h.sh(&format!(
            "curl -s -o /dev/null --cacert /root/old.crt -u web1:pw-web1 {url}/config"
        ))?;
        ensure(!old.success(), || {
            format!("the old certificate is still served: {old}")
        })?;

        // A client whose secret is missing: the reload is refused, nothing changes.
        let broken = swapped.replace(
            "    web3: {",
            "    web4: { credentials: { secret: receiver_web4 } }\n    web3: {",
        );
        h.put_definition(&format!("{}{broken}", definition(5)))?;
        wait_until(
            "the receiver refusing the reload, naming the missing secret",
            std::time::Duration::from_secs(30),
            || {
                Ok(h.sh_ok("journalctl -u strackt-receiver.service --no-pager")?
                    .contains("reload refused, still serving as before: secret `receiver_web4` is missing"))
            },
        )?;
        ensure_eq(
            curl(h, "web3:pw-web3", web3)?,
            "404".into(),
            "web3 still served",
        )?;
        ensure_eq(pid()?, before, "the receiver's process (no restart)")?;
        ensure_eq(
            h.is_active("strackt-receiver.service")?,
            "active".into(),
            "receiver unit",
        )?;
        Ok(())
    })
}
