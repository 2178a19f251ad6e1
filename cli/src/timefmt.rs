//! Times as RFC 3339 (UTC) and durations as short human text, without a
//! date library, and this machine's clock.

use eventcore::Time;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, on this machine's clock.
#[allow(clippy::disallowed_methods)] // the CLI reports against the wall clock
pub fn now() -> Time {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    Time::from_unix_nanos(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}

/// `2024-05-01T12:34:56.789012Z` (microseconds, UTC).
pub fn rfc3339(time: Time) -> String {
    let nanos = time.as_unix_nanos();
    let secs = nanos / 1_000_000_000;
    let micros = (nanos % 1_000_000_000) / 1_000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// `850ms`, `12.3s`, `4m05s`, `2h07m`, `3d04h`.
pub fn short(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs == 0 {
        return format!("{}ms", duration.as_millis());
    }
    if secs < 60 {
        return format!("{:.1}s", duration.as_secs_f64());
    }
    if secs < 3600 {
        return format!("{}m{:02}s", secs / 60, secs % 60);
    }
    if secs < 86_400 {
        return format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60);
    }
    format!("{}d{:02}h", secs / 86_400, (secs % 86_400) / 3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_as_rfc3339() {
        assert_eq!(rfc3339(Time::ZERO), "1970-01-01T00:00:00.000000Z");
        // 2000-02-29 (a leap day of a century leap year), 23:59:59.5.
        assert_eq!(
            rfc3339(Time::from_unix_millis(951_868_799_500)),
            "2000-02-29T23:59:59.500000Z"
        );
        assert_eq!(
            rfc3339(Time::from_unix_nanos(1_700_000_000_123_456_789)),
            "2023-11-14T22:13:20.123456Z"
        );
    }

    #[test]
    fn formats_durations_briefly() {
        assert_eq!(short(Duration::from_millis(850)), "850ms");
        assert_eq!(short(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(short(Duration::from_secs(245)), "4m05s");
        assert_eq!(short(Duration::from_secs(7_620)), "2h07m");
        assert_eq!(short(Duration::from_secs(3 * 86_400 + 4 * 3600)), "3d04h");
    }
}
