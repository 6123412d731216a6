//! host/clock — time, as the driver reads it: the wall clock (deadlines, holds and schedules
//! are wall times, stored as RFC 3339 and shown to users) and a monotonic clock (how long ago
//! something happened, unaffected by a wall-clock jump).
//!
//! Owns: reading the time. Must not: decide anything about it (that is `daemon/decide`, which
//! is handed `now`). The fake ([`super::fake::FakeClock`]) follows tokio's clock, so a test
//! with time paused moves both halves with `tokio::time::advance`.

use chrono::{DateTime, Utc};

/// The clock. Real implementation: [`SystemClock`].
pub trait Clock: Send + Sync {
    /// Wall time.
    fn now(&self) -> DateTime<Utc>;
    /// Monotonic time. tokio's `Instant` is the system's monotonic clock at run time and
    /// the paused, test-driven one under `tokio::time::pause`, so one implementation serves
    /// both the real clock and the fake.
    fn instant(&self) -> tokio::time::Instant {
        tokio::time::Instant::now()
    }
}

/// The system's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}
