//! Schedules (backups, update checks): a preset or a 5-field cron expression, evaluated in an
//! IANA timezone (croner + chrono-tz, which handle the days a clock jumps). Pure: callers pass
//! the time.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;

use super::ScheduleError;

/// The shortest gap between two runs strackt accepts.
pub const MIN_GAP_MINUTES: i64 = 15;

/// Presets and the cron expressions they stand for.
pub const PRESETS: &[(&str, &str)] = &[
    ("15min", "*/15 * * * *"),
    ("30min", "*/30 * * * *"),
    ("hourly", "0 * * * *"),
    ("daily", "0 3 * * *"),
    ("weekly", "0 3 * * 0"),
];

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
}

impl Schedule {
    /// Parse `text` (a preset or 5-field cron) in timezone `tz`.
    ///
    /// # Errors
    /// What is wrong, in words for the user: a bad expression, an unknown timezone, or runs
    /// closer together than 15 minutes.
    pub fn parse(text: &str, tz: &str) -> Result<Schedule, ScheduleError> {
        let tz: Tz = tz
            .parse()
            .map_err(|_| ScheduleError::Timezone(tz.to_string()))?;
        let expr = PRESETS
            .iter()
            .find(|(name, _)| *name == text)
            .map_or(text, |(_, cron)| *cron);
        if expr.split_whitespace().count() != 5 {
            let presets: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
            return Err(ScheduleError::Form {
                text: text.to_string(),
                presets: presets.join(", "),
            });
        }
        let cron = Cron::from_str(expr).map_err(|e| ScheduleError::Cron {
            text: text.to_string(),
            message: e.to_string(),
        })?;
        let schedule = Schedule { cron, tz };
        schedule.check_gap(text)?;
        Ok(schedule)
    }

    /// Runs closer than 15 minutes are refused. The gaps of a cron expression come from its
    /// minute and hour fields and repeat in every matching hour and day, so the first 200 runs
    /// (two days of a 15-minute schedule, midnight included) show the smallest one. Bounded
    /// because every parse of the definition — each reconcile pass — runs this.
    fn check_gap(&self, text: &str) -> Result<(), ScheduleError> {
        let start = DateTime::<Utc>::from_timestamp(1_767_225_600, 0).unwrap_or_default(); // 2026-01-01
        let mut prev: Option<DateTime<Utc>> = None;
        for t in self.upcoming(start).take(200) {
            if let Some(p) = prev {
                let gap = (t - p).num_minutes();
                if gap < MIN_GAP_MINUTES {
                    return Err(ScheduleError::TooClose {
                        text: text.to_string(),
                        gap,
                        first: p
                            .with_timezone(&self.tz)
                            .format("%Y-%m-%d %H:%M %Z")
                            .to_string(),
                        second: t.with_timezone(&self.tz).format("%H:%M %Z").to_string(),
                    });
                }
            }
            prev = Some(t);
        }
        if prev.is_none() {
            return Err(ScheduleError::Never {
                text: text.to_string(),
            });
        }
        Ok(())
    }

    /// Runs strictly after `after`, in UTC.
    pub fn upcoming(&self, after: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let mut at = after.with_timezone(&self.tz);
        std::iter::from_fn(move || {
            let next = self.cron.find_next_occurrence(&at, false).ok()?;
            at = next;
            Some(next.with_timezone(&Utc))
        })
    }

    /// The first run strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.upcoming(after).next()
    }

    /// The timezone.
    pub fn tz(&self) -> Tz {
        self.tz
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn runs(s: &Schedule, from: &str, n: usize) -> Vec<String> {
        s.upcoming(utc(from))
            .take(n)
            .map(|t| {
                t.with_timezone(&s.tz())
                    .format("%m-%d %H:%M %Z")
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn daily_runs_keep_local_time_across_both_dst_changes_in_berlin() {
        let s = Schedule::parse("30 2 * * *", "Europe/Berlin").expect("parse");
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day, so the run
        // happens at the jump (as Vixie cron does), once.
        let spring = runs(&s, "2026-03-27T12:00:00Z", 4);
        assert_eq!(
            spring,
            [
                "03-28 02:30 CET",
                "03-29 03:00 CEST",
                "03-30 02:30 CEST",
                "03-31 02:30 CEST"
            ]
        );
        // 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice, runs once.
        let autumn = runs(&s, "2026-10-23T12:00:00Z", 4);
        assert_eq!(
            autumn,
            [
                "10-24 02:30 CEST",
                "10-25 02:30 CEST",
                "10-26 02:30 CET",
                "10-27 02:30 CET"
            ]
        );
    }

    #[test]
    fn every_15_minutes_stays_15_minutes_in_utc_across_the_jump() {
        let s = Schedule::parse("15min", "Europe/Berlin").expect("parse");
        let t: Vec<DateTime<Utc>> = s.upcoming(utc("2026-03-29T00:40:00Z")).take(4).collect();
        // 01:45 CET (00:45Z), then 03:00 CEST (01:00Z): 15 real minutes apart.
        assert_eq!(t[0], utc("2026-03-29T00:45:00Z"));
        assert_eq!(t[1], utc("2026-03-29T01:00:00Z"));
        assert_eq!(
            t[1].with_timezone(&s.tz()).format("%H:%M").to_string(),
            "03:00"
        );
    }

    #[test]
    fn too_frequent_unknown_zones_and_bad_expressions_are_refused() {
        let err = Schedule::parse("*/5 * * * *", "UTC").expect_err("too often");
        assert!(
            matches!(err, ScheduleError::TooClose { gap: 5, .. }),
            "{err}"
        );
        assert!(!err.is_transient());
        let err = err.to_string();
        assert!(err.contains("5 minutes apart"), "{err}");
        let err = Schedule::parse("0,10 * * * *", "UTC")
            .expect_err("10 min gap")
            .to_string();
        assert!(err.contains("10 minutes apart"), "{err}");
        let err = Schedule::parse("0,55 0,23 * * *", "UTC")
            .expect_err("23:55 then 00:00")
            .to_string();
        assert!(err.contains("5 minutes apart"), "{err}");
        let err = Schedule::parse("hourly", "Europe/Berlni")
            .expect_err("zone")
            .to_string();
        assert!(err.contains("unknown timezone \"Europe/Berlni\""), "{err}");
        assert!(Schedule::parse("every day", "UTC").is_err());
        assert!(Schedule::parse("61 * * * *", "UTC").is_err());
        assert!(Schedule::parse("weekly", "America/New_York").is_ok());
    }
}
