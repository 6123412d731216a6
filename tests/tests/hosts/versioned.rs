//! Backups into a bucket with versioning on (moto's S3 server, `tests/tools/install-moto`,
//! run inside the host with the host's Python): retention and restore work through delete
//! markers, the restic CLI checks the repository, and no multipart upload is left behind.

use std::path::PathBuf;

use strackt_integration::{ensure, ensure_eq, with_app_host_binds, Host, Res};

use crate::backup::{backup_ok, items, runs};
use crate::deploy::{definition, deploy_ok, get, setup_with};

const BACKUPS: &str = r#"backups:
  shop:
    database: true
    paths: [storage/uploads]
    to:
      s3: { endpoint: "http://127.0.0.1:5000", bucket: versioned, prefix: shop, credentials: { secret: s3_backup } }
    keep: { last: 1 }
"#;

/// The moto install (`STRACKT_TEST_MOTO`; tests/run installs it).
fn moto_lib() -> Res<PathBuf> {
    let lib = std::env::var_os("STRACKT_TEST_MOTO").map_or_else(
        || PathBuf::from("/var/cache/strackt-tools/moto/lib"),
        PathBuf::from,
    );
    ensure(lib.join("moto").is_dir(), || {
        format!(
            "no moto in {}: tests/run installs it with tests/tools/install-moto",
            lib.display()
        )
    })?;
    Ok(lib)
}

/// boto3 against moto, inside the host: `script` sees `s3` (a client) and the bucket name.
fn boto(h: &Host, script: &str) -> Res<String> {
    h.write(
        "/root/boto.py",
        &format!(
            "import boto3\ns3 = boto3.client('s3', endpoint_url='http://127.0.0.1:5000', region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')\nbucket = 'versioned'\n{script}\n"
        ),
        0o600,
    )?;
    h.sh_ok("PYTHONPATH=/opt/moto/lib python3 /root/boto.py")
}

#[test]
fn backups_into_a_versioned_bucket_are_pruned_and_restored() -> Res {
    let binds = vec![format!("{}:/opt/moto/lib", moto_lib()?.display())];
    with_app_host_binds("backup-moto", &binds, |h| {
        setup_with(h, &format!("{}{BACKUPS}", definition(5)))?;
        h.write(
            "/etc/strackt/secrets/s3_backup",
            "AWS_ACCESS_KEY_ID=testing\nAWS_SECRET_ACCESS_KEY=testing\n",
            0o600,
        )?;
        // moto keeps large objects in temporary files: /var/tmp, not the small /tmp tmpfs.
        h.sh_ok("systemd-run --quiet --unit=moto --collect -p Environment=PYTHONPATH=/opt/moto/lib -p Environment=TMPDIR=/var/tmp /usr/bin/python3 -m moto.server -H 127.0.0.1 -p 5000 && for i in $(seq 300); do curl -fs -o /dev/null http://127.0.0.1:5000/moto-api/ && exit 0; sleep 0.1; done; exit 1")?;
        ensure_eq(
            boto(h, "s3.create_bucket(Bucket=bucket)\ns3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={'Status': 'Enabled'})\nprint(s3.get_bucket_versioning(Bucket=bucket)['Status'])")?.trim().to_string(),
            "Enabled".to_string(),
            "bucket versioning",
        )?;
        deploy_ok(h)?;
        let key = h.strackt(&["backup", "key", "init"])?;
        ensure(key.success(), || format!("key init: {key}"))?;
        let key = key
            .stdout
            .split_whitespace()
            .find(|w| w.starts_with("stk1-"))
            .ok_or("no key printed")?
            .to_string();

        // Three runs, each with new rows and a new upload: keep last 1 forgets two and prunes.
        for (i, fruit) in ["fig", "lime", "plum"].iter().enumerate() {
            h.sh_ok(&format!("runuser -u postgres -- psql -d shop -qc \"INSERT INTO items (name) VALUES ('{fruit}')\" && head -c 3000000 /dev/urandom > /srv/shop/shared/storage/uploads/u{i}.bin && chown shop: /srv/shop/shared/storage/uploads/u{i}.bin"))?;
            backup_ok(h)?;
        }
        let listed = runs(h, None)?;
        ensure_eq(listed.len(), 1, "runs after keep: last 1")?;
        let run = listed[0]["run"].as_str().ok_or("no run id")?.to_string();

        // Versioning keeps what restic deleted as noncurrent versions behind delete markers;
        // restic (and strackt) see only the current objects, and no multipart upload is open.
        let state = boto(h, "p = s3.get_paginator('list_object_versions')\nm = sum(len(x.get('DeleteMarkers', [])) for x in p.paginate(Bucket=bucket))\nu = len(s3.list_multipart_uploads(Bucket=bucket).get('Uploads', []))\nprint(m, u)")?;
        let (markers, uploads) = state.trim().split_once(' ').ok_or("boto output")?;
        ensure(markers.parse::<u32>()? > 0, || {
            format!("no delete markers after a prune: {state}")
        })?;
        ensure_eq(uploads, "0", "multipart uploads left open")?;
        let checked = h.sh_ok(&format!("RESTIC_REPOSITORY=s3:http://127.0.0.1:5000/versioned/shop AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing RESTIC_PASSWORD='{key}' restic --no-cache -o s3.bucket-lookup=path check --read-data 2>&1"))?;
        ensure(checked.contains("no errors were found"), || {
            format!("restic check: {checked}")
        })?;

        // Restore the one run left: the rows and uploads of the last run come back.
        h.sh_ok("runuser -u postgres -- psql -d shop -qc \"DELETE FROM items\" && rm /srv/shop/shared/storage/uploads/u2.bin")?;
        let out = h.strackt(&["restore", "shop", &run])?;
        ensure(out.success(), || {
            format!("restore from the versioned bucket: {out}")
        })?;
        ensure_eq(
            items(h, "shop")?,
            "apple,pear,fig,lime,plum".to_string(),
            "rows restored",
        )?;
        ensure(
            h.sh("test -s /srv/shop/shared/storage/uploads/u2.bin")?
                .success(),
            || "upload not restored".into(),
        )?;
        ensure_eq(get(h, "/")?.0, 200, "app serving")
    })
}
