//! How long a lease lasts and how the machine paces its requests.

use crate::RetryPolicy;
use std::time::Duration;

/// The timing of one lease holder.
///
/// ```
/// use eventcore::LeasePolicy;
/// use std::time::Duration;
/// let p = LeasePolicy::new(Duration::from_secs(9));
/// assert_eq!(p.renew_every, Duration::from_secs(3));
/// assert_eq!(p.renew_retry, Duration::from_millis(750));
/// assert_eq!(p.standby_retry, Duration::from_millis(2_250));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeasePolicy {
    /// How long a tenure lasts unless renewed (what the store is asked for).
    pub ttl: Duration,
    /// A held lease is renewed this long after it was won or last renewed
    /// (a third of the TTL by default).
    pub renew_every: Duration,
    /// After a transient renewal failure, while the lease is still valid,
    /// the renewal is retried after this long (a quarter of `renew_every`).
    pub renew_retry: Duration,
    /// While someone else holds the lease, try again after this long (a
    /// quarter of the TTL).
    pub standby_retry: Duration,
    /// Backoff (jittered) after transient failures to acquire.
    pub retry: RetryPolicy,
    /// How long a lease-store request may take before it counts as a
    /// transient failure. A renewal is never given longer than the tenure
    /// has left.
    pub request_timeout: Duration,
}

impl LeasePolicy {
    /// The defaults for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        let renew_every = (ttl / 3).max(MIN_INTERVAL);
        LeasePolicy {
            ttl,
            renew_every,
            renew_retry: (renew_every / 4).max(MIN_INTERVAL),
            standby_retry: (ttl / 4).max(MIN_INTERVAL),
            retry: RetryPolicy::default(),
            request_timeout: ttl.max(MIN_INTERVAL),
        }
    }

    /// Replaces the acquisition backoff.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Replaces the standby retry interval.
    pub fn with_standby_retry(mut self, standby_retry: Duration) -> Self {
        self.standby_retry = standby_retry.max(MIN_INTERVAL);
        self
    }

    /// Replaces the request timeout.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout.max(MIN_INTERVAL);
        self
    }
}

const MIN_INTERVAL: Duration = Duration::from_millis(1);
