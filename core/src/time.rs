//! Time as the core sees it: a number handed in by the driver.
//!
//! The core never reads a clock. Every input carries `now`, and every timer
//! is a deadline the machine returns. The tokio driver feeds the wall clock
//! (kept monotonic); the simulator feeds its virtual clock.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// A point in time on the driver's clock, in nanoseconds since the Unix epoch.
///
/// Drivers must keep it monotonic within one machine's life. It doubles as
/// the wall-clock timestamp written into event metadata, which is why it is
/// anchored at the Unix epoch rather than at an arbitrary origin.
///
/// ```
/// use eventcore::Time;
/// use std::time::Duration;
///
/// let t = Time::from_unix_millis(1_000);
/// assert_eq!(t.saturating_add(Duration::from_millis(5)).as_unix_millis(), 1_005);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Time(u64);

impl Time {
    /// The Unix epoch.
    pub const ZERO: Time = Time(0);
    /// The latest representable time; used as "never".
    pub const MAX: Time = Time(u64::MAX);

    /// A time from nanoseconds since the Unix epoch.
    pub const fn from_unix_nanos(nanos: u64) -> Self {
        Time(nanos)
    }

    /// A time from milliseconds since the Unix epoch (saturating).
    pub const fn from_unix_millis(millis: u64) -> Self {
        Time(millis.saturating_mul(1_000_000))
    }

    /// Nanoseconds since the Unix epoch.
    pub const fn as_unix_nanos(self) -> u64 {
        self.0
    }

    /// Whole milliseconds since the Unix epoch.
    pub const fn as_unix_millis(self) -> u64 {
        self.0 / 1_000_000
    }

    /// `self + duration`, saturating at [`Time::MAX`].
    pub fn saturating_add(self, duration: Duration) -> Time {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        Time(self.0.saturating_add(nanos))
    }

    /// How long after `earlier` this time is; zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Time) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Debug for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0 / 1_000_000_000;
        let nanos = self.0 % 1_000_000_000;
        write!(f, "Time({secs}.{nanos:09})")
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturates_instead_of_overflowing() {
        assert_eq!(Time::MAX.saturating_add(Duration::from_secs(1)), Time::MAX);
        assert_eq!(
            Time::ZERO.saturating_duration_since(Time::from_unix_millis(3)),
            Duration::ZERO
        );
    }
}
