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
    ///
    /// ```
    /// use eventcore::RetryPolicy;
    /// assert_eq!(RetryPolicy::no_retries().max_attempts, 1);
    /// ```
    pub fn no_retries() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// Sets the total number of attempts, the first included (1: never
    /// retry; 0 is taken as 1).
    ///
    /// ```
    /// use eventcore::RetryPolicy;
    /// let p = RetryPolicy::default().with_max_attempts(5);
    /// assert_eq!(p.max_attempts, 5);
    /// assert_eq!(RetryPolicy::default().with_max_attempts(0).max_attempts, 1);
    /// ```
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the backoff ceiling before the second attempt.
    ///
    /// ```
    /// use eventcore::RetryPolicy;
    /// use std::time::Duration;
    /// let p = RetryPolicy::default().with_initial_backoff(Duration::from_millis(10));
    /// assert_eq!(p.backoff_ceiling(1), Duration::from_millis(10));
    /// ```
    pub fn with_initial_backoff(mut self, backoff: Duration) -> Self {
        self.initial_backoff = backoff;
        self
    }

    /// Sets the factor the backoff ceiling grows by per attempt (0 is taken
    /// as 1: a constant ceiling).
    ///
    /// ```
    /// use eventcore::RetryPolicy;
    /// use std::time::Duration;
    /// let p = RetryPolicy::default().with_initial_backoff(Duration::from_millis(10)).with_multiplier(3);
    /// assert_eq!(p.backoff_ceiling(3), Duration::from_millis(90));
    /// ```
    pub fn with_multiplier(mut self, multiplier: u32) -> Self {
        self.multiplier = multiplier.max(1);
        self
    }

    /// Sets the ceiling no backoff exceeds.
    ///
    /// ```
    /// use eventcore::RetryPolicy;
    /// use std::time::Duration;
    /// let p = RetryPolicy::default().with_max_backoff(Duration::from_millis(50));
    /// assert_eq!(p.backoff_ceiling(30), Duration::from_millis(50));
    /// ```
    pub fn with_max_backoff(mut self, backoff: Duration) -> Self {
        self.max_backoff = backoff;
        self
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
    ///
    /// ```
    /// use eventcore::{ExecutionPolicy, RetryPolicy};
    /// let p = ExecutionPolicy::default().with_retry(RetryPolicy::default().with_max_attempts(3));
    /// assert_eq!(p.retry.max_attempts, 3);
    /// ```
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the overall bound on an execution, retries and backoff
    /// included.
    ///
    /// ```
    /// use eventcore::ExecutionPolicy;
    /// use std::time::Duration;
    /// let p = ExecutionPolicy::default().with_timeout(Duration::from_secs(2));
    /// assert_eq!(p.timeout, Some(Duration::from_secs(2)));
    /// ```
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Removes the overall bound: an execution then ends only when it
    /// commits, is refused, or runs out of attempts
    /// ([`RetryPolicy::max_attempts`], unbounded by default, so set one).
    /// Each read and append keeps its own timeout.
    ///
    /// ```
    /// use eventcore::{ExecutionPolicy, RetryPolicy};
    /// let p = ExecutionPolicy::default()
    ///     .without_timeout()
    ///     .with_retry(RetryPolicy::default().with_max_attempts(10));
    /// assert_eq!(p.timeout, None);
    /// ```
    pub fn without_timeout(mut self) -> Self {
        self.timeout = None;
        self
    }

    /// Sets how long a read may take before it counts as a transient
    /// failure (see [`ExecutionPolicy::read_timeout`]).
    ///
    /// ```
    /// use eventcore::ExecutionPolicy;
    /// use std::time::Duration;
    /// let p = ExecutionPolicy::default().with_read_timeout(Duration::from_secs(1));
    /// assert_eq!(p.read_timeout, Duration::from_secs(1));
    /// ```
    pub fn with_read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// Sets how long an append may take before its outcome counts as
    /// unknown (see [`ExecutionPolicy::append_timeout`]: keep it above the
    /// store's own timeouts).
    ///
    /// ```
    /// use eventcore::ExecutionPolicy;
    /// use std::time::Duration;
    /// let p = ExecutionPolicy::default().with_append_timeout(Duration::from_secs(8));
    /// assert_eq!(p.append_timeout, Duration::from_secs(8));
    /// ```
    pub fn with_append_timeout(mut self, timeout: Duration) -> Self {
        self.append_timeout = timeout;
        self
    }

    /// Sets how many times `decide` may ask for more streams.
    ///
    /// ```
    /// use eventcore::ExecutionPolicy;
    /// let p = ExecutionPolicy::default().with_discovery_limit(2);
    /// assert_eq!(p.discovery_limit, 2);
    /// ```
    pub fn with_discovery_limit(mut self, limit: u32) -> Self {
        self.discovery_limit = limit;
        self
    }

    /// Sets the most events read per stream per request (`None`: no
    /// limit).
    ///
    /// ```
    /// use eventcore::ExecutionPolicy;
    /// use std::num::NonZeroU32;
    /// let p = ExecutionPolicy::default().with_page_size(NonZeroU32::new(500));
    /// assert_eq!(p.page_size.map(NonZeroU32::get), Some(500));
    /// ```
    pub fn with_page_size(mut self, page_size: Option<NonZeroU32>) -> Self {
        self.page_size = page_size;
        self
    }
}
