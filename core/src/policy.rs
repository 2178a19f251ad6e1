//! How long and how often a command execution may try.

use std::num::NonZeroU32;
use std::time::Duration;

/// Retries after conflicts and transient store errors: how many attempts,
/// and how long to back off between them (exponential, full jitter).
///
/// ```
/// use eventcore::RetryPolicy;
/// use std::time::Duration;
/// let p = RetryPolicy::default();
/// assert!(p.max_attempts >= 1);
/// assert_eq!(p.backoff_ceiling(1), p.initial_backoff);
/// assert!(p.backoff_ceiling(50) <= p.max_backoff);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first included; 1 means "never retry".
    ///
    /// The default is unbounded: an execution is bounded by its deadline
    /// ([`ExecutionPolicy::timeout`], 30 s by default) rather than by a count,
    /// so a command on a hot stream keeps competing (with growing, jittered
    /// backoff) for as long as its caller is willing to wait, however many
    /// writers it loses to. Set a count for a hard bound on attempts.
    pub max_attempts: u32,
    /// Backoff ceiling before the second attempt.
    pub initial_backoff: Duration,
    /// The ceiling grows by this factor per attempt.
    pub multiplier: u32,
    /// The ceiling never exceeds this.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: u32::MAX,
            initial_backoff: Duration::from_millis(2),
            multiplier: 2,
            max_backoff: Duration::from_millis(500),
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn no_retries() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// A wait drawn with full jitter after `failed_attempt` failures:
    /// uniform in `0..=backoff_ceiling(failed_attempt)`. The one backoff every
    /// machine and driver uses.
    ///
    /// ```
    /// use eventcore::{Entropy, RetryPolicy};
    /// let policy = RetryPolicy::default();
    /// let wait = policy.jittered_backoff(3, &mut Entropy::new(1));
    /// assert!(wait <= policy.backoff_ceiling(3));
    /// ```
    pub fn jittered_backoff(&self, failed_attempt: u32, entropy: &mut crate::Entropy) -> Duration {
        let ceiling = self.backoff_ceiling(failed_attempt);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(entropy.up_to(nanos))
    }

    /// The upper bound of the (uniformly jittered) wait after `failed_attempt`
    /// failed attempts: `min(max_backoff, initial * multiplier^(n-1))`.
    pub fn backoff_ceiling(&self, failed_attempt: u32) -> Duration {
        let exponent = failed_attempt.saturating_sub(1);
        let factor = self.multiplier.max(1).checked_pow(exponent).unwrap_or(u32::MAX);
        self.initial_backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// Everything that bounds one command execution.
///
/// ```
/// use eventcore::ExecutionPolicy;
/// use std::time::Duration;
/// let p = ExecutionPolicy::default().with_timeout(Duration::from_secs(2));
/// assert_eq!(p.timeout, Some(Duration::from_secs(2)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutionPolicy {
    /// Conflict and transient-error retries.
    pub retry: RetryPolicy,
    /// How many times `decide` may ask for more streams before the command
    /// fails with a discovery-limit error.
    pub discovery_limit: u32,
    /// How long a read may take before it counts as a transient failure.
    ///
    /// Default 5 s: longer than a store's own bounds (the PostgreSQL
    /// store's statement timeout, 2 s, and operation timeout, 4.5 s), so that
    /// the store reports a slow read itself, with its cause, first.
    pub read_timeout: Duration,
    /// How long an append may take before its outcome counts as unknown
    /// (the append may still commit; the execution then re-sends it under
    /// the same command id, which cannot apply it twice).
    ///
    /// Default 5 s: longer than a store's own bounds (the PostgreSQL
    /// store's statement timeout, 2 s, and operation timeout, 4.5 s), so that
    /// a slow append is cancelled by the server first, a known "not
    /// committed" that is retried, rather than given up on here
    /// with an unknown outcome. Keep it above the store's operation
    /// timeout when changing either (`docs/operations.md`, "Timeouts").
    pub append_timeout: Duration,
    /// Overall bound on the execution, from its start: retries, backoff
    /// and every read and append included. Default 30 s, room for several
    /// timed-out attempts.
    pub timeout: Option<Duration>,
    /// Read at most this many events per stream per request.
    pub page_size: Option<NonZeroU32>,
}

impl Default for ExecutionPolicy {
    fn default() -> Self {
        ExecutionPolicy {
            retry: RetryPolicy::default(),
            discovery_limit: 8,
            read_timeout: Duration::from_secs(5),
            append_timeout: Duration::from_secs(5),
            timeout: Some(Duration::from_secs(30)),
            page_size: None,
        }
    }
}

impl ExecutionPolicy {
    /// Replaces the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Replaces the overall timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Replaces the discovery limit.
    pub fn with_discovery_limit(mut self, limit: u32) -> Self {
        self.discovery_limit = limit;
        self
    }

    /// Replaces the page size.
    pub fn with_page_size(mut self, page_size: Option<NonZeroU32>) -> Self {
        self.page_size = page_size;
        self
    }
}
