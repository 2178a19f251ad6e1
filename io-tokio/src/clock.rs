//! The bridge between the core's [`Time`] and tokio's clock.

use eventcore::Time;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Reads the wall clock once, then advances with tokio's monotonic clock,
/// so `now()` never goes backwards even if the system clock is stepped. Under
/// `tokio::time::pause` it follows tokio's paused clock.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let clock = eventcore_tokio::Clock::new();
/// let a = clock.now();
/// assert!(clock.now() >= a);
/// # });
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    wall_at_start: Time,
    start: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    /// Anchors a clock at the current wall time.
    pub fn new() -> Self {
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let nanos = u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX);
        Clock {
            wall_at_start: Time::from_unix_nanos(nanos),
            start: Instant::now(),
        }
    }

    /// The current time.
    pub fn now(&self) -> Time {
        self.wall_at_start.saturating_add(self.start.elapsed())
    }

    /// The tokio instant at which this clock reads `time`.
    pub fn instant_at(&self, time: Time) -> Instant {
        let offset = time.saturating_duration_since(self.wall_at_start);
        self.start.checked_add(offset).unwrap_or_else(far_future)
    }
}

fn far_future() -> Instant {
    // About 30 years: what tokio itself uses for "never".
    Instant::now() + std::time::Duration::from_secs(86_400 * 365 * 30)
}
