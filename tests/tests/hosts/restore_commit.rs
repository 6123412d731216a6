//! A restore redeploys the code that ran with the data (issue 14), through the shared S3
//! bucket of `backup.rs`, onto another server of the team.
//!
//! Host A deploys commit A (version 1), writes a row and backs up: the run records commit A.
//! Then the branch moves on to commit B (version 2, with a migration adding a row) and A
//! deploys it. A fresh host B, with A's repository and the team key, restores A's run: it
//! serves version 1 with A's rows, the migration of B not run. `--latest` serves version 2,
//! B's migration run on the restored rows. A commit no longer on the branch (history
//! rewritten) is refused before the app is touched; a run whose commit tag is gone (what an
//! older strackt wrote) redeploys the tip and says so.

use strackt_integration::{ensure, ensure_eq, with_app_host_binds, Res};

use crate::backup::{backup_ok, prepare, runs, Bucket};
use crate::deploy::{commit, deploy_ok, get};

#[test]
fn a_restore_redeploys_the_recorded_commit_even_after_the_branch_moved_on() -> Res {
    let bucket = Bucket::new("commit")?;
    // Carries A's git repository to B, beside the bucket.
    let xfer = std::env::temp_dir().join(format!("strackt-xfer-{}", std::process::id()));
    std::fs::create_dir_all(&xfer)?;
    let mut binds = bucket.binds()?;
    binds.push(format!("{}:/srv/xfer", xfer.display()));
    let (mut key, mut run, mut commit_a) = (String::new(), String::new(), String::new());
    let result = with_app_host_binds("commit-a", &binds, |a| {
        key = prepare(a, None, true)?;
        commit_a = a.sh_ok("git -C /srv/src/shop rev-parse HEAD")?.trim().to_string();
        a.sh_ok(
            "runuser -u postgres -- psql -d shop -qc \"INSERT INTO items (name) VALUES ('kiwi')\"",
        )?;
        run = backup_ok(a)?;
        let listed = runs(a, None)?;
        ensure_eq(
            listed[0]["commit"].as_str(),
            Some(commit_a.as_str()),
            "the run records the live commit",
        )?;
        let list = a.strackt(&["backup", "list", "shop"])?;
        ensure(list.stdout.contains(&commit_a[..12]), || {
            format!("`backup list` shows the commit: {list}")
        })?;
        commit(
            a,
            "echo 2 > VERSION && printf \"INSERT INTO items (name) VALUES ('fig');\\n\" > migrations/002_fig.sql",
            "version 2",
        )?;
        deploy_ok(a)?;
        ensure_eq(
            get(a, "/")?,
            (200, "version 2; items: apple, pear, kiwi, fig\n".to_string()),
            "A moved on to commit B",
        )?;
        a.sh_ok("tar -C /srv/src -cf /srv/xfer/shop.tar shop")?;
        Ok(())
    })
    .and_then(|()| {
        with_app_host_binds("commit-b", &binds, |b| {
            prepare(b, Some(&key), false)?;
            // The app's repository as the team has it: A's history, B at its tip.
            b.sh_ok("rm -rf /srv/src/shop && tar -C /srv/src -xf /srv/xfer/shop.tar")?;
            let out = b.strackt(&["restore", "shop", &run])?;
            ensure(out.success(), || format!("restore: {out}"))?;
            ensure(
                out.text()
                    .contains(&format!("redeploys commit {commit_a}, live when the run was taken")),
                || format!("the restore names the commit: {out}"),
            )?;
            ensure_eq(
                get(b, "/")?,
                (200, "version 1; items: apple, pear, kiwi\n".to_string()),
                "A's code on A's rows, B's migration not run",
            )?;
            ensure_eq(
                b.sh_ok("git -c safe.directory=* -C /srv/shop/current rev-parse HEAD")?
                    .trim()
                    .to_string(),
                commit_a.clone(),
                "the live release's commit",
            )?;

            let out = b.strackt(&["restore", "shop", &run, "--latest"])?;
            ensure(
                out.success() && out.text().contains("--latest: redeploys the tip of main"),
                || format!("restore --latest: {out}"),
            )?;
            ensure_eq(
                get(b, "/")?,
                (200, "version 2; items: apple, pear, kiwi, fig\n".to_string()),
                "--latest: the tip, its migration run on the restored rows",
            )?;

            // History rewritten: the run's commit is gone from the branch. Refused in
            // `check`, before the app is stopped or its data touched.
            b.sh_ok("cd /srv/src/shop && git checkout -q --orphan rewritten && git -c user.name=x -c user.email=x@example.com commit -qm rewritten && git branch -M rewritten main")?;
            let out = b.strackt(&["restore", "shop", &run])?;
            ensure(
                !out.success()
                    && out.text().contains(&format!("commit {commit_a} is not on branch main"))
                    && !out.text().contains("ok     stop"),
                || format!("a commit no longer on the branch: {out}"),
            )?;
            ensure_eq(
                get(b, "/")?,
                (200, "version 2; items: apple, pear, kiwi, fig\n".to_string()),
                "the app untouched by the refused restore",
            )?;
            b.sh_ok("rm -rf /srv/src/shop && tar -C /srv/src -xf /srv/xfer/shop.tar")?;

            // What an older strackt wrote: no commit tag on the run.
            b.sh_ok(&format!(
                "export RESTIC_REPOSITORY=s3:http://127.0.0.1:9000/backups/shop AWS_ACCESS_KEY_ID=strackt-ak AWS_SECRET_ACCESS_KEY=strackt-sk RESTIC_PASSWORD='{key}'; restic -o s3.bucket-lookup=path tag --quiet --tag run={run} --remove commit={commit_a}"
            ))?;
            let out = b.strackt(&["restore", "shop", &run])?;
            ensure(
                out.success()
                    && out
                        .text()
                        .contains("no commit was recorded with this run (an older strackt, or no release was live): redeploys the tip of main"),
                || format!("a run without a commit: {out}"),
            )?;
            ensure_eq(
                get(b, "/")?,
                (200, "version 2; items: apple, pear, kiwi, fig\n".to_string()),
                "no commit recorded: the tip",
            )
        })
    });
    let _ = std::fs::remove_dir_all(&xfer);
    result
}
