//! The fake clock: a fixed wall time at its creation, moved on by tokio's clock, so a test with
//! time paused (`#[tokio::test(start_paused = true)]`) reaches a deadline with
//! `tokio::time::advance` (or by waiting, which a paused runtime skips) instead of sleeping.

use chrono::{DateTime, Utc};

use crate::host::clock::Clock;

/// The wall time a fake clock starts at: 2026-01-01T00:00:00Z.
const START: i64 = 1_767_225_600;

/// A clock that starts at [`START`] and advances with `tokio::time::Instant`; a clone reads
/// the same time.
#[derive(Debug, Clone)]
pub struct FakeClock {
    wall: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl Default for FakeClock {
    fn default() -> FakeClock {
        FakeClock {
            wall: DateTime::from_timestamp(START, 0).unwrap_or_default(),
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = self.instant().duration_since(self.start);
        self.wall + chrono::Duration::from_std(elapsed).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn wall_time_follows_the_paused_tokio_clock() {
        let clock = FakeClock::default();
        let before = clock.now();
        tokio::time::advance(std::time::Duration::from_secs(90)).await;
        assert_eq!((clock.now() - before).num_seconds(), 90);
        assert_eq!(before.to_rfc3339(), "2026-01-01T00:00:00+00:00");
    }
}
