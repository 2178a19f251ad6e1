//! The virtual clock: the only notion of time in a simulation.
//!
//! It starts at a fixed instant (so event timestamps and UUIDv7 ids are the
//! same in every run of a seed) and only moves when the scheduler delivers
//! the next queued message, or when a clock-jump fault pushes it forward.

use eventcore::Time;
use std::time::Duration;

/// 2026-01-01T00:00:00Z: a fixed, realistic epoch for every run.
pub const SIM_EPOCH: Time = Time::from_unix_millis(1_767_225_600_000);

/// Simulated time, monotonic.
///
/// ```
/// use eventcore_sim::clock::{VirtualClock, SIM_EPOCH};
/// use std::time::Duration;
/// let mut clock = VirtualClock::new();
/// clock.jump(Duration::from_secs(5));
/// assert_eq!(clock.elapsed(), Duration::from_secs(5));
/// assert!(clock.now() > SIM_EPOCH);
/// ```
#[derive(Clone, Debug)]
pub struct VirtualClock {
    now: Time,
}

impl Default for VirtualClock {
    fn default() -> Self {
        VirtualClock::new()
    }
}

impl VirtualClock {
    /// A clock at [`SIM_EPOCH`].
    pub fn new() -> Self {
        VirtualClock { now: SIM_EPOCH }
    }

    /// The current simulated time.
    pub fn now(&self) -> Time {
        self.now
    }

    /// Time since the start of the run.
    pub fn elapsed(&self) -> Duration {
        self.now.saturating_duration_since(SIM_EPOCH)
    }

    /// Moves to `at` if it is later; the clock never goes back.
    pub fn advance_to(&mut self, at: Time) {
        self.now = self.now.max(at);
    }

    /// Jumps forward (a paused VM, an NTP step): everything due in between
    /// becomes due at once.
    pub fn jump(&mut self, by: Duration) {
        self.now = self.now.saturating_add(by);
    }

    /// `now + after`.
    pub fn after(&self, after: Duration) -> Time {
        self.now.saturating_add(after)
    }
}
