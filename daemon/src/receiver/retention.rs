//! Which snapshots the receiver's retention forgets, decided by when the receiver **stored**
//! each snapshot, never by the time written inside it.
//!
//! A sender holds the team key, so a compromised sender can write any time into a snapshot:
//! dated in 2099, its snapshots would be "the newest" to restic's own `--keep-*` and the real
//! history would be forgotten. Here a snapshot's time is the modification time of its file in
//! the receiver's storage, which only the receiver writes (an upload is written to a temp file
//! and linked into place; a client can neither rewrite nor delete it). A snapshot whose own
//! time lies beyond that moment (more than [`FUTURE_SKEW`]) is kept and never counted: it
//! cannot take the place of a real one, and a sender with a wrong clock loses nothing.
//!
//! Pure: the caller lists the snapshots and their stored times, and hands restic the ids.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, FixedOffset, TimeZone, Timelike, Utc};

use crate::definition::KeepPolicy;

/// How far a snapshot's own time may lie after the moment the receiver stored it (clocks of
/// two servers differ a little; a backup normally *starts* before its snapshot is stored).
pub const FUTURE_SKEW: chrono::Duration = chrono::Duration::minutes(15);

/// One snapshot of a client's repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// restic's id.
    pub id: String,
    /// restic's default grouping: the host and the paths (sorted).
    pub group: (String, Vec<String>),
    /// When the receiver stored it.
    pub stored: DateTime<Utc>,
    /// The time written inside it by the sender (`None`: unreadable).
    pub written: Option<DateTime<FixedOffset>>,
}

/// What a retention pass does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Forgotten (then pruned).
    pub forget: Vec<String>,
    /// Dated after they were stored (or undated): kept, never counted.
    pub doubtful: Vec<String>,
}

/// Apply `keep` to `snapshots` by stored time, per group, with calendar periods in `tz`.
/// restic's rules otherwise: newest first, `last` keeps the newest N, each period rule keeps
/// the newest snapshot of each of its N most recent periods that have one.
pub fn select<Tz: TimeZone>(snapshots: &[Stored], keep: &KeepPolicy, tz: &Tz) -> Decision {
    let mut decision = Decision::default();
    let rules_set = [
        keep.last,
        keep.hourly,
        keep.daily,
        keep.weekly,
        keep.monthly,
    ];
    if rules_set.iter().all(Option::is_none) {
        // No policy keeps everything (restic refuses `forget` without one, too).
        return decision;
    }
    let mut groups: BTreeMap<&(String, Vec<String>), Vec<&Stored>> = BTreeMap::new();
    for s in snapshots {
        let future = s
            .written
            .is_none_or(|w| w.with_timezone(&Utc) > s.stored + FUTURE_SKEW);
        if future {
            decision.doubtful.push(s.id.clone());
        } else {
            groups.entry(&s.group).or_default().push(s);
        }
    }
    for mut list in groups.into_values() {
        list.sort_by(|a, b| b.stored.cmp(&a.stored).then_with(|| b.id.cmp(&a.id)));
        // (periods left, the last period kept) per rule.
        type Bucket = fn(i64, i32, u32, u32, u32, u32) -> i64;
        let rules: [(Option<u32>, Bucket); 5] = [
            (keep.last, |nr, _, _, _, _, _| nr),
            (keep.hourly, |_, y, m, d, h, _| {
                i64::from(y) * 1_000_000 + i64::from(m * 10_000 + d * 100 + h)
            }),
            (keep.daily, |_, y, m, d, _, _| {
                i64::from(y) * 10_000 + i64::from(m * 100 + d)
            }),
            (keep.weekly, |_, _, _, _, _, iso| i64::from(iso)),
            (keep.monthly, |_, y, m, _, _, _| {
                i64::from(y) * 100 + i64::from(m)
            }),
        ];
        let mut left: Vec<(u32, Option<i64>)> =
            rules.iter().map(|(n, _)| (n.unwrap_or(0), None)).collect();
        for (nr, s) in list.iter().enumerate() {
            let t = s.stored.with_timezone(tz);
            let week = t.iso_week();
            let iso = u32::try_from(week.year()).unwrap_or(0) * 100 + week.week();
            let nr = i64::try_from(nr).unwrap_or(i64::MAX);
            let mut kept = false;
            for ((count, last), (_, bucket)) in left.iter_mut().zip(rules.iter()) {
                if *count == 0 {
                    continue;
                }
                let value = bucket(nr, t.year(), t.month(), t.day(), t.hour(), iso);
                if *last != Some(value) {
                    *last = Some(value);
                    *count -= 1;
                    kept = true;
                }
            }
            if !kept {
                decision.forget.push(s.id.clone());
            }
        }
    }
    decision.forget.sort();
    decision.doubtful.sort();
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn snap(id: &str, stored: &str, written: &str) -> Stored {
        Stored {
            id: id.into(),
            group: ("web1".into(), vec!["/srv/shop".into()]),
            stored: at(stored),
            written: DateTime::parse_from_rfc3339(written).ok(),
        }
    }

    fn keep(last: Option<u32>, daily: Option<u32>) -> KeepPolicy {
        KeepPolicy {
            last,
            daily,
            ..KeepPolicy::default()
        }
    }

    #[test]
    fn the_stored_time_decides_not_the_written_one() {
        // Three real daily snapshots, then a sender writes "2099" into the newest ones.
        let snaps = [
            snap("a", "2026-11-01T03:00:00Z", "2026-11-01T03:00:00Z"),
            snap("b", "2026-11-02T03:00:00Z", "2026-11-02T03:00:00Z"),
            snap("c", "2026-11-03T03:00:00Z", "2026-11-03T03:00:00Z"),
            snap("x", "2026-11-03T04:00:00Z", "2099-01-01T00:00:00Z"),
            snap("y", "2026-11-03T04:01:00Z", "2099-01-02T00:00:00Z"),
        ];
        let d = select(&snaps, &keep(Some(1), None), &Utc);
        assert_eq!(d.doubtful, vec!["x".to_string(), "y".to_string()]);
        assert_eq!(d.forget, vec!["a".to_string(), "b".to_string()]);
        let d = select(&snaps, &keep(None, Some(7)), &Utc);
        assert!(d.forget.is_empty(), "{d:?}");
    }

    #[test]
    fn old_times_written_into_new_snapshots_do_not_make_them_old() {
        // Backdated snapshots stored today are today's: they cannot push a real day out.
        let snaps = [
            snap("a", "2026-11-01T03:00:00Z", "2026-11-01T03:00:00Z"),
            snap("b", "2026-11-02T03:00:00Z", "2026-11-02T03:00:00Z"),
            snap("old1", "2026-11-02T05:00:00Z", "2001-01-01T00:00:00Z"),
            snap("old2", "2026-11-02T05:01:00Z", "2001-01-02T00:00:00Z"),
        ];
        let d = select(&snaps, &keep(None, Some(2)), &Utc);
        assert_eq!(d.forget, vec!["b".to_string(), "old1".to_string()]);
        assert!(!d.forget.contains(&"a".to_string()));
    }

    #[test]
    fn a_little_skew_is_fine_and_undated_snapshots_are_kept() {
        let snaps = [
            snap("a", "2026-11-01T03:00:00Z", "2026-11-01T03:10:00Z"),
            snap("b", "2026-11-02T03:00:00Z", "not a time"),
            snap("c", "2026-11-03T03:00:00Z", "2026-11-03T03:00:00+01:00"),
        ];
        let d = select(&snaps, &keep(Some(1), None), &Utc);
        assert_eq!(d.doubtful, vec!["b".to_string()]);
        assert_eq!(d.forget, vec!["a".to_string()]);
    }

    #[test]
    fn periods_keep_the_newest_of_each_and_groups_are_separate() {
        let mut snaps = vec![
            snap("d1-early", "2026-11-01T01:00:00Z", "2026-11-01T01:00:00Z"),
            snap("d1-late", "2026-11-01T23:00:00Z", "2026-11-01T23:00:00Z"),
            snap("d2", "2026-11-02T12:00:00Z", "2026-11-02T12:00:00Z"),
            snap("d3", "2026-11-03T12:00:00Z", "2026-11-03T12:00:00Z"),
        ];
        let mut db = snap("db", "2026-10-01T12:00:00Z", "2026-10-01T12:00:00Z");
        db.group.1 = vec!["shop.sql".into()];
        snaps.push(db);
        let d = select(&snaps, &keep(None, Some(2)), &Utc);
        assert_eq!(
            d.forget,
            vec!["d1-early".to_string(), "d1-late".to_string()]
        );
        let policy = KeepPolicy {
            last: Some(1),
            daily: Some(3),
            ..KeepPolicy::default()
        };
        let d = select(&snaps, &policy, &Utc);
        assert_eq!(d.forget, vec!["d1-early".to_string()]);
        let nothing = select(&snaps, &KeepPolicy::default(), &Utc);
        assert!(nothing.forget.is_empty(), "no policy keeps everything");
    }

    #[test]
    fn weeks_and_months() {
        let snaps = [
            snap("oct", "2026-10-20T12:00:00Z", "2026-10-20T12:00:00Z"),
            snap("nov-w45", "2026-11-03T12:00:00Z", "2026-11-03T12:00:00Z"),
            snap("nov-w46", "2026-11-10T12:00:00Z", "2026-11-10T12:00:00Z"),
            snap("nov-w46b", "2026-11-11T12:00:00Z", "2026-11-11T12:00:00Z"),
        ];
        let weekly = KeepPolicy {
            weekly: Some(2),
            ..KeepPolicy::default()
        };
        assert_eq!(
            select(&snaps, &weekly, &Utc).forget,
            vec!["nov-w46".to_string(), "oct".to_string()]
        );
        let monthly = KeepPolicy {
            monthly: Some(2),
            ..KeepPolicy::default()
        };
        assert_eq!(
            select(&snaps, &monthly, &Utc).forget,
            vec!["nov-w45".to_string(), "nov-w46".to_string()]
        );
    }
}
