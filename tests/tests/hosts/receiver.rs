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

use strackt_integration::{ensure, ensure_eq, wait_until, with_app_host, Host, Res};

use crate::backup::{backup_ok, items, runs, uploads};
use crate::deploy::{definition, deploy_ok, get, setup_with};

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
        h.sh_ok("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -subj /CN=backup-host -addext subjectAltName=IP:127.0.0.1 -keyout /etc/strackt/receiver.key -out /etc/strackt/receiver.crt 2>/dev/null && chmod 600 /etc/strackt/receiver.key")?;
        let out = h.strackt(&["backup", "key", "init"])?;
        ensure(out.success(), || format!("key init: {out}"))?;
        h.copy_in(
            &strackt_integration::repo_root().join("systemd/strackt-receiver.service"),
            "/etc/systemd/system/strackt-receiver.service",
        )?;
        // A missing client secret: the unit does not start, and says which file to create.
        let out =
            h.sh("systemctl daemon-reload && systemctl enable --now strackt-receiver.service")?;
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
            Some(2),
            "snapshots restic lists over rest:",
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
        ensure_eq(stored(h)?, 2, "snapshots after the refusals")?;
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

        // Retention is the receiver's: keep last 1 leaves one run (two snapshots).
        backup_ok(h)?;
        let newest = backup_ok(h)?;
        wait_until(
            "the receiver applies keep: last 1",
            std::time::Duration::from_secs(90),
            || Ok(stored(h)? == 2),
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
