//! `strackt rebuild` (issue 14): the server goes off-host with its data, and a fresh server
//! becomes it again.
//!
//! Host A has every kind (packages at `latest` from a local archive, users, firewall, sysctl,
//! files, services, `databases:`, an app with a database and uploads, backups to the test S3
//! server). A backup run also stores the server bundle, readable with restic and jq alone, and
//! so does a new generation. A is then destroyed; a fresh B with nothing but strackt (started
//! without a definition), the team key and the S3 credentials — and a newer version of A's
//! `latest` package in its archive — runs `strackt rebuild`: a wrong key, an unknown server or
//! run and an unreachable destination are refused with nothing changed; then the rebuild gives
//! the same digest as A at the run, the package at A's locked version, the app serving A's
//! rows and files at A's commit (the branch has moved on since).

use std::time::Duration;

use strackt_integration::{ensure, ensure_eq, wait_until, with_app_host_binds, Host, Res};

use crate::apt_repo::{publish, Deb, Suite};
use crate::backup::{backup_ok, items, key_init, start_s3, uploads, Bucket};
use crate::deploy::{definition, deploy_ok, get, setup_with};
use crate::receiver::{certificate, install_receiver};
use crate::HEADER;

/// Everything beyond the app: the kinds of `export.rs`, a package, a firewall.
const KINDS: &str = r#"databases:
  shop: { owner: shop, password: { secret: shop_db_password } }
packages:
  strackt-demo: latest
firewall:
  input: drop
  allow:
    - { port: 22 }
files:
  /etc/motd: { content: "rebuilt\n" }
  /etc/app/app.conf: { content: "x=1\n", mode: "0640", group: adm }
services:
  hello:
    exec: /usr/bin/sleep infinity
    user: nobody
settings:
  sysctl:
    net.ipv4.ip_forward: 1
"#;

const S3_CREDENTIALS: &str = "AWS_ACCESS_KEY_ID=strackt-ak\nAWS_SECRET_ACCESS_KEY=strackt-sk\n";
const REPOSITORY: &str = "s3:http://127.0.0.1:9000/backups/shop";

/// The receiver A sends to, and B reads from (the same storage, mounted in both).
const RECEIVER: &str = r#"receiver:
  listen: "127.0.0.1:8443"
  tls: { certificate: /etc/strackt/receiver.crt, key: /etc/strackt/receiver.key }
  clients:
    web1: { credentials: { secret: receiver_web1 } }
"#;

/// Where the backups go: the test S3 server or a receiver, both inside the hosts.
#[derive(Clone, Copy)]
enum Dest {
    S3,
    Receiver,
}

impl Dest {
    /// A's definition.
    fn definition(self) -> String {
        let (to, more) = match self {
            Dest::S3 => (
                r#"s3: { endpoint: "http://127.0.0.1:9000", bucket: backups, prefix: shop, path_style: true, credentials: { secret: s3_backup } }"#,
                "",
            ),
            Dest::Receiver => (
                r#"receiver: { url: "https://127.0.0.1:8443/", credentials: { secret: receiver_web1 }, ca: /etc/strackt/receiver.crt }"#,
                RECEIVER,
            ),
        };
        format!(
            "{}{KINDS}backups:\n  shop:\n    database: true\n    paths: [storage/uploads]\n    to:\n      {to}\n    schedule: daily\n    keep: {{ last: 10 }}\n{more}",
            definition(5)
        )
    }

    /// The destination's secret (name, content).
    fn secret(self) -> (&'static str, &'static str) {
        match self {
            Dest::S3 => ("s3_backup", S3_CREDENTIALS),
            Dest::Receiver => ("receiver_web1", "web1:pw-web1\n"),
        }
    }

    /// The official restic CLI's environment for it (`$R`: its options).
    fn restic(self, key: &str) -> String {
        match self {
            Dest::S3 => format!(
                "export RESTIC_REPOSITORY={REPOSITORY} RESTIC_PASSWORD='{key}' {}; R='-o s3.bucket-lookup=path'",
                S3_CREDENTIALS.replace('\n', " ")
            ),
            Dest::Receiver => format!("export RESTIC_REPOSITORY=rest:https://web1:pw-web1@127.0.0.1:8443/web1/ RESTIC_PASSWORD='{key}'; R='--cacert /etc/strackt/receiver.crt'"),
        }
    }

    /// The rebuild's flags beyond `--key` and `--server`.
    fn flags(self) -> &'static [&'static str] {
        match self {
            Dest::S3 => &[
                "--repository",
                REPOSITORY,
                "--credentials",
                "/root/credentials",
                "--path-style",
            ],
            Dest::Receiver => &[
                "--repository",
                "rest:https://127.0.0.1:8443/web1/",
                "--credentials",
                "/root/credentials",
                "--cacert",
                "/etc/strackt/receiver.crt",
            ],
        }
    }

    /// The destination's secret written, its server started (on A: before strackt).
    fn serve(self, h: &Host) -> Res {
        h.sh_ok("mkdir -p /etc/strackt/secrets && chmod 700 /etc/strackt/secrets")?;
        let (name, content) = self.secret();
        h.write(&format!("/etc/strackt/secrets/{name}"), content, 0o600)?;
        match self {
            Dest::S3 => start_s3(h),
            Dest::Receiver => {
                certificate(h)?;
                install_receiver(h)
            }
        }
    }
}

/// The archive of `strackt-demo` versions `versions`.
fn archive(h: &Host, versions: &[&str]) -> Res {
    let debs: Vec<Deb> = versions
        .iter()
        .map(|&version| Deb {
            name: "strackt-demo",
            version,
            suite: Suite::Main,
            depends: "",
            files: &[],
        })
        .collect();
    publish(h, &debs)
}

fn digest(h: &Host) -> Res<String> {
    let status: serde_json::Value = h.strackt(&["status", "--json"])?.json_ok()?;
    status["digest"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("no digest in {status}").into())
}

/// What A looked like at the run B is rebuilt from.
#[derive(Default)]
struct Lost {
    server: String,
    key: String,
    run: String,
    digest: String,
    commit: String,
    page: String,
    sums: String,
}

/// Host A: every kind, the app with rows and uploads, one backup run; what it was at that run.
fn lost_server(a: &Host, dest: Dest) -> Res<Lost> {
    archive(a, &["1.0", "1.1"])?;
    dest.serve(a)?;
    setup_with(a, &dest.definition())?;
    deploy_ok(a)?;
    a.sh_ok("runuser -u postgres -- psql -d shop -qc \"INSERT INTO items (name) VALUES ('kiwi'), ('fig')\"")?;
    a.sh_ok("cd /srv/shop/shared/storage/uploads && mkdir -p 2026 && head -c 200000 /dev/urandom > 2026/photo.jpg && echo hi > note.txt && chown -R shop: .")?;
    let key = key_init(a)?;
    if let Dest::Receiver = dest {
        // The receiver keeps the team key for its retention, and reads A's definition.
        a.sh_ok("systemctl start strackt-receiver.service")?;
    }
    a.apply_ok()?;
    let run = backup_ok(a)?;
    let releases: serde_json::Value = a.strackt(&["releases", "shop", "--json"])?.json_ok()?;
    let commit = releases["releases"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["id"] == releases["live"]))
        .and_then(|r| r["commit"].as_str())
        .ok_or_else(|| format!("no live commit: {releases}"))?
        .to_string();
    let lost = Lost {
        server: a.sh_ok("hostname")?.trim().to_string(),
        key,
        run,
        digest: digest(a)?,
        commit,
        page: get(a, "/")?.1,
        sums: uploads(a, "/srv/shop/shared/storage/uploads")?,
    };
    // The bundle with restic and jq alone, as the README's restic layout says.
    let restic = dest.restic(&lost.key);
    let bundle = a.sh_ok(&format!(
        "{restic}
         id=$(restic $R snapshots --json --tag strackt,kind=server,server={},run={} | jq -r '.[0].id')
         restic $R dump \"$id\" /server.json",
        lost.server, lost.run
    ))?;
    let bundle: serde_json::Value = serde_json::from_str(&bundle)?;
    ensure_eq(
        bundle["definition"].as_str(),
        Some(a.read("/var/lib/strackt/current/definition.yaml")?.as_str()),
        "the bundle's definition is the live generation's",
    )?;
    ensure_eq(
        bundle["lock"]["strackt-demo"]["version"].as_str(),
        Some("1.1"),
        "the bundle's lock",
    )?;
    ensure_eq(
        bundle["secrets"]["shop_db_password"].as_str(),
        Some("pw-shop"),
        "a secret in the bundle",
    )?;
    ensure_eq(
        bundle["apps"]["shop"]["commit"].as_str(),
        Some(lost.commit.as_str()),
        "the live commit in the bundle",
    )?;
    ensure_eq(
        bundle["digest"].as_str(),
        Some(lost.digest.as_str()),
        "the digest in the bundle",
    )?;
    // The branch moves on after the run (not deployed): B must run the commit A ran.
    crate::deploy::commit(a, "echo 2 > VERSION", "version 2, never live on A")?;
    // A new generation stores a bundle too (the rebuild below still takes the backup run's).
    a.put_definition(&dest.definition().replace("rebuilt\\n", "changed\\n"))?;
    a.apply_ok()?;
    let newer = format!(
        "{restic}
         id=$(restic $R snapshots --json --tag strackt,kind=server,trigger=generation | jq -r '.[-1].id')
         [ \"$id\" != null ] && restic $R dump \"$id\" /server.json | jq -r .definition"
    );
    wait_until(
        "a bundle of the new generation",
        Duration::from_secs(60),
        || Ok(a.sh(&newer)?.stdout.contains("changed\\n")),
    )?;
    ensure(!a.journal(2000).contains("pw-shop"), || {
        "a secret is in the journal".to_string()
    })?;
    Ok(lost)
}

/// Host A built, backed up, and destroyed: what it was.
fn lose(tag: &str, binds: &[String], dest: Dest) -> Res<Lost> {
    let mut lost = Lost::default();
    with_app_host_binds(tag, binds, |a| {
        lost = lost_server(a, dest)?;
        Ok(())
    })?;
    Ok(lost)
}

/// `strackt rebuild --key /root/team.key` to `dest`, and `args`, on B.
fn rebuild(b: &Host, dest: Dest, args: &[&str]) -> Res<strackt_integration::Out> {
    let mut all = vec!["rebuild", "--key", "/root/team.key"];
    all.extend_from_slice(dest.flags());
    all.extend_from_slice(args);
    b.strackt(&all)
}

/// A refused rebuild: fails, says `why`, and nothing on B changed.
fn refused(b: &Host, args: &[&str], why: &str) -> Res {
    let out = b.strackt(&[&["rebuild"], args].concat())?;
    ensure(!out.success(), || {
        format!("rebuild {args:?} succeeded: {out}")
    })?;
    ensure(out.stdout.contains(why) || out.stderr.contains(why), || {
        format!("rebuild {args:?} does not say `{why}`: {out}")
    })?;
    ensure_eq(
        b.sh_ok("ls -A /etc/strackt; ls /srv; test -e /var/lib/strackt/vault/backup.key && echo key; true")?,
        "apt\ns3\nsrc\n".to_string(),
        "B after a refused rebuild (no definition, secret, app or key)",
    )
}

/// B rebuilt from A's run through `dest`: A's digest, locked package version, rows, files,
/// commit; secrets and key root-only; a second rebuild refused.
fn rebuilt(b: &Host, dest: Dest, lost: &Lost) -> Res {
    let out = rebuild(b, dest, &["--server", &lost.server, "--run", &lost.run])?;
    ensure(out.success(), || format!("rebuild: {out}"))?;
    for step in [
        "check",
        "put-back",
        "switch",
        "restore-database",
        "restore-files",
        "health",
        "verify",
    ] {
        ensure(out.stdout.contains(&format!(" {step} ")), || {
            format!("no live step {step}: {out}")
        })?;
    }
    ensure_eq(
        digest(b)?,
        lost.digest.clone(),
        "B's digest, A's at the run",
    )?;
    ensure_eq(
        b.sh_ok("dpkg-query -W -f '${Version}' strackt-demo")?,
        "1.1".to_string(),
        "the package at A's locked version, not the newest",
    )?;
    ensure_eq(
        get(b, "/")?,
        (200, lost.page.clone()),
        "the app serves A's rows",
    )?;
    ensure_eq(items(b, "shop")?.contains("kiwi,fig"), true, "A's rows")?;
    ensure_eq(
        uploads(b, "/srv/shop/shared/storage/uploads")?,
        lost.sums.clone(),
        "A's uploads",
    )?;
    let releases: serde_json::Value = b.strackt(&["releases", "shop", "--json"])?.json_ok()?;
    ensure(
        releases["releases"].as_array().is_some_and(|r| {
            r.iter()
                .any(|r| r["id"] == releases["live"] && r["commit"] == lost.commit.as_str())
        }),
        || format!("not live at A's commit {}: {releases}", lost.commit),
    )?;
    let (secret, _) = dest.secret();
    ensure_eq(
        b.sh_ok(&format!("stat -c '%a %U' /etc/strackt/secrets/shop_db_password /etc/strackt/secrets/{secret} /var/lib/strackt/vault/backup.key"))?,
        "600 root\n600 root\n600 root\n".to_string(),
        "secrets and key root-only",
    )?;
    // Now it has a definition: another rebuild is refused without --force.
    let out = rebuild(b, dest, &["--server", &lost.server])?;
    ensure(
        !out.success()
            && (out.stdout.contains("already has a definition")
                || out.stderr.contains("already has a definition")),
        || format!("a second rebuild: {out}"),
    )
}

/// A fresh host for B: the package archive (with a newer version than A had), strackt
/// installed and started without a definition, the team key and the credentials.
fn fresh(b: &Host, lost: &Lost, dest: Dest) -> Res {
    archive(b, &["1.0", "1.1", "1.2"])?;
    b.install_unit()?;
    b.sh_ok("systemctl daemon-reload && systemctl start strackt")?;
    b.write("/root/team.key", &format!("{}\n", lost.key), 0o600)?;
    b.write("/root/credentials", dest.secret().1, 0o600)?;
    Ok(())
}

/// A temporary directory of this machine, removed on drop.
struct Shared(std::path::PathBuf);

impl Shared {
    fn new(tag: &str) -> Res<Shared> {
        let dir =
            std::env::temp_dir().join(format!("strackt-rebuild-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Shared(dir))
    }

    fn bind(&self, at: &str) -> String {
        format!("{}:{at}", self.0.display())
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_lost_server_is_rebuilt_from_its_backups() -> Res {
    let bucket = Bucket::new("rebuild")?;
    let src = Shared::new("src")?;
    let mut binds = bucket.binds()?;
    binds.push(src.bind("/srv/src"));
    let lost = lose("rebuild-a", &binds, Dest::S3)?;
    // A is gone.
    with_app_host_binds("rebuild-b", &binds, |b| {
        fresh(b, &lost, Dest::S3)?;
        start_s3(b)?;
        b.write("/root/wrong.key", "stk1-0000\n", 0o600)?;
        let server = lost.server.as_str();
        let creds = [
            "--key",
            "/root/team.key",
            "--credentials",
            "/root/credentials",
            "--path-style",
        ];
        let at = ["--repository", REPOSITORY];
        refused(
            b,
            &[&creds[..], &["--server", "web9"], &at].concat(),
            &format!("no server web9 at {REPOSITORY} (servers there: {server})"),
        )?;
        refused(
            b,
            &[
                &creds[..],
                &["--server", server, "--run", "web9-20260101T000000Z"],
                &at,
            ]
            .concat(),
            &format!("has no run web9-20260101T000000Z at {REPOSITORY} (its runs, newest first: "),
        )?;
        refused(
            b,
            &[
                &creds[..],
                &[
                    "--server",
                    server,
                    "--repository",
                    "s3:http://127.0.0.1:9009/backups/shop",
                ],
            ]
            .concat(),
            "is unreachable",
        )?;
        let wrong = creds.map(|a| {
            if a == "/root/team.key" {
                "/root/wrong.key"
            } else {
                a
            }
        });
        refused(
            b,
            &[&wrong[..], &["--server", server], &at].concat(),
            "the backup key does not open the repository",
        )?;
        rebuilt(b, Dest::S3, &lost)
    })
}

#[test]
fn a_lost_server_is_rebuilt_through_a_receiver() -> Res {
    let (src, storage) = (Shared::new("rsrc")?, Shared::new("storage")?);
    let binds = [
        src.bind("/srv/src"),
        storage.bind("/var/lib/strackt-receiver"),
    ];
    let lost = lose("rebuild-ra", &binds, Dest::Receiver)?;
    // A is gone; its receiver's storage is not (the receiver is another server). On B the
    // receiver reads a definition of its own, so B itself starts without one.
    with_app_host_binds("rebuild-rb", &binds, |b| {
        fresh(b, &lost, Dest::Receiver)?;
        b.sh_ok(&format!("echo '{}' | strackt backup key import", lost.key))?;
        Dest::Receiver.serve(b)?;
        b.write(
            "/etc/strackt-receiver.yaml",
            &format!("{HEADER}{RECEIVER}"),
            0o644,
        )?;
        b.sh_ok("mkdir -p /etc/systemd/system/strackt-receiver.service.d")?;
        b.write(
            "/etc/systemd/system/strackt-receiver.service.d/definition.conf",
            "[Service]\nEnvironment=STRACKT_DEFINITION=/etc/strackt-receiver.yaml\n",
            0o644,
        )?;
        b.sh_ok("systemctl daemon-reload && systemctl start strackt-receiver.service")?;
        rebuilt(b, Dest::Receiver, &lost)
    })
}
