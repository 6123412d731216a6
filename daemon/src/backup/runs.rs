//! A run's identity in the repository: the tags its snapshots carry, and snapshots grouped
//! back into runs (complete or not) for `backup list`, restore and rebuild.
//!
//! Owns only the reading and writing of those tags: pure functions over snapshot lists. It must
//! not run restic or touch the host.

use std::collections::BTreeMap;

use crate::definition::BackupSpec;
use restic::Snapshot;

use super::{is_commit, restic, RunView};

/// How a run's snapshots are tagged.
pub(super) struct RunTags<'a> {
    pub(super) app: &'a str,
    pub(super) run: &'a str,
    pub(super) trigger: &'a str,
    /// The app's live commit.
    pub(super) commit: Option<&'a str>,
}

impl RunTags<'_> {
    /// The tags of the run's own snapshot of `kind`.
    pub(super) fn of(&self, kind: &str) -> Vec<String> {
        vec![
            "strackt".to_string(),
            format!("app={}", self.app),
            format!("run={}", self.run),
            format!("trigger={}", self.trigger),
            format!("kind={kind}"),
        ]
        .into_iter()
        .chain(self.commit.map(|c| format!("commit={c}")))
        .collect()
    }

    /// The tags added to an earlier run's snapshot that this run shares. The trigger goes
    /// under a tag of its own: the snapshot's plain `trigger=` stays the first run's, and
    /// restic adds no tag twice, so two `trigger=` tags could not be paired with their runs.
    pub(super) fn shared(&self) -> Vec<String> {
        vec![
            format!("run={}", self.run),
            format!("trigger:{}={}", self.run, self.trigger),
        ]
        .into_iter()
        .chain(self.commit.map(|c| format!("commit:{}={c}", self.run)))
        .collect()
    }
}

/// The snapshots a complete run of `spec` has.
fn expected_kinds(spec: &BackupSpec) -> impl Iterator<Item = &'static str> {
    let db = spec.database.then_some("database");
    let files = (!spec.paths.is_empty()).then_some("files");
    db.into_iter().chain(files)
}

/// The runs of `spec` that have every snapshot they should, newest first.
pub(super) fn complete_runs(snaps: &[Snapshot], spec: &BackupSpec) -> Vec<RunView> {
    group_runs(snaps)
        .into_iter()
        .filter(|r| expected_kinds(spec).all(|k| r.snapshots.contains_key(k)))
        .collect()
}

/// Group snapshots by their run tag, newest first. A part that did not change is one snapshot
/// shared by consecutive runs (several `run=` tags); a run's time is the one in its id.
pub(super) fn group_runs(snaps: &[Snapshot]) -> Vec<RunView> {
    let mut runs: BTreeMap<String, RunView> = BTreeMap::new();
    for s in snaps {
        for run in s.tags_of("run") {
            let view = runs.entry(run.to_string()).or_insert_with(|| RunView {
                run: run.to_string(),
                time: run_time(run).unwrap_or_else(|| s.time.clone()),
                server: s.hostname.clone(),
                trigger: "?".into(),
                snapshots: BTreeMap::new(),
                commit: None,
            });
            // Like the trigger: a shared snapshot's plain `commit=` is its first run's.
            let first = s.tags_of("run").next() == Some(run);
            let commit = s
                .tag(&format!("commit:{run}"))
                .or_else(|| s.tag("commit").filter(|_| first))
                .filter(|c| is_commit(c));
            if let Some(c) = commit {
                view.commit = Some(c.to_string());
            }
            // A run that reused a snapshot recorded its trigger as `trigger:RUN=…`.
            let trigger = s
                .tag(&format!("trigger:{run}"))
                .or_else(|| s.tag("trigger"));
            if let Some(t) = trigger {
                view.trigger = t.to_string();
            }
            view.snapshots.insert(
                s.tag("kind").unwrap_or("files").to_string(),
                s.short_id.clone(),
            );
        }
    }
    let mut list: Vec<RunView> = runs.into_values().collect();
    list.sort_by(|a, b| b.time.cmp(&a.time));
    list
}

/// The time in a run id `<server>-YYYYMMDDTHHMMSSZ`, as RFC 3339.
pub(crate) fn run_time(run: &str) -> Option<String> {
    let (_, stamp) = run.rsplit_once('-')?;
    let t = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ").ok()?;
    Some(
        t.and_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::restore::code_to_deploy;

    fn snap(id: &str, time: &str, kind: &str, run: &str) -> Snapshot {
        Snapshot {
            id: id.into(),
            short_id: id.into(),
            time: time.into(),
            hostname: "web1".into(),
            paths: Vec::new(),
            tags: vec![
                "strackt".into(),
                format!("run={run}"),
                "trigger=cli".into(),
                format!("kind={kind}"),
            ],
        }
    }

    #[test]
    fn snapshots_group_into_runs_and_incomplete_runs_are_told() {
        let snaps = [
            snap("a", "2026-11-22T10:00:01Z", "database", "r1"),
            snap("b", "2026-11-22T10:00:05Z", "files", "r1"),
            snap("c", "2026-11-22T11:00:01Z", "database", "r2"),
        ];
        let runs = group_runs(&snaps);
        assert_eq!(runs.len(), 2);
        assert_eq!((runs[0].run.as_str(), runs[1].run.as_str()), ("r2", "r1"));
        assert_eq!(runs[1].time, "2026-11-22T10:00:01Z");
        assert_eq!(
            runs[1].snapshots.get("files").map(String::as_str),
            Some("b")
        );
        let spec: BackupSpec = serde_json::from_value(serde_json::json!({
            "database": true, "paths": ["storage/uploads"],
            "to": { "s3": { "endpoint": "http://x", "bucket": "b",
                            "credentials": { "secret": "s" } } }
        }))
        .expect("spec");
        let complete: Vec<String> = complete_runs(&snaps, &spec)
            .into_iter()
            .map(|r| r.run)
            .collect();
        assert_eq!(complete, ["r1"], "r2 has no files snapshot");
    }

    #[test]
    fn an_unchanged_part_is_shared_by_consecutive_runs() {
        let (r1, r2) = ("web1-20261122T100000Z", "web1-20261122T101500Z");
        let mut db = snap("a", "2026-11-22T10:00:01Z", "database", r1);
        // What the second run adds to the first run's database snapshot it shares.
        db.tags.extend(
            RunTags {
                app: "shop",
                run: r2,
                trigger: "schedule",
                commit: None,
            }
            .shared(),
        );
        let mut files2 = snap("c", "2026-11-22T10:15:02Z", "files", r2);
        files2.tags[2] = "trigger=schedule".into();
        let snaps = [db, snap("b", "2026-11-22T10:00:05Z", "files", r1), files2];
        let runs = group_runs(&snaps);
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].run, r2);
        assert_eq!(runs[0].time, "2026-11-22T10:15:00Z", "the run's own time");
        assert_eq!(
            runs[0].snapshots.get("database").map(String::as_str),
            Some("a")
        );
        assert_eq!(
            runs[0].snapshots.get("files").map(String::as_str),
            Some("c")
        );
        assert_eq!(runs[0].trigger, "schedule");
        assert_eq!(
            runs[1].snapshots.get("database").map(String::as_str),
            Some("a")
        );
        assert_eq!(runs[1].trigger, "cli");
    }

    #[test]
    fn each_run_tells_the_commit_live_when_it_was_taken() {
        let (a, b) = ("a".repeat(40), "b".repeat(40));
        let (r1, r2, r3) = (
            "web1-20261122T100000Z",
            "web1-20261122T101500Z",
            "old-20261122T090000Z",
        );
        let tags = |run, commit| RunTags {
            app: "shop",
            run,
            trigger: "cli",
            commit,
        };
        let mut db = snap("a", "2026-11-22T10:00:01Z", "database", r1);
        db.tags = tags(r1, Some(a.as_str())).of("database");
        // r2 shares r1's snapshot, at another commit; r3 (an older strackt) recorded none,
        // and a tag that is not a commit id is never taken for one.
        db.tags.extend(tags(r2, Some(b.as_str())).shared());
        let mut old = snap("o", "2026-11-22T09:00:01Z", "database", r3);
        old.tags.push("commit=--upload-pack=evil".into());
        let runs = group_runs(&[db, old]);
        let commit_of = |run: &str| {
            runs.iter()
                .find(|r| r.run == run)
                .and_then(|r| r.commit.clone())
        };
        assert_eq!(commit_of(r1), Some(a.clone()));
        assert_eq!(commit_of(r2), Some(b.clone()));
        assert_eq!(commit_of(r3), None);
        assert_eq!(
            code_to_deploy(Some(a.clone()), false, "main").0,
            Some(a.clone())
        );
        assert_eq!(code_to_deploy(Some(a), true, "main").0, None);
        let (at, said) = code_to_deploy(None, false, "main");
        assert!(
            at.is_none() && said.contains("no commit was recorded"),
            "{said}"
        );
    }
}
