//! Counters of what a subscription did.

/// Counters of what happened.
///
/// ```
/// use eventcore::*;
/// let sub = SubscriptionMachine::new(GlobalPosition::START, EventFilter::all(), SubscriptionPolicy::default(), Time::ZERO, 1);
/// assert_eq!(sub.stats(), &SubscriptionStats::default());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscriptionStats {
    /// Fetches emitted.
    pub fetches: u64,
    /// Batches handled successfully.
    pub batches: u64,
    /// Events handled successfully.
    pub events: u64,
    /// Checkpoints saved (by the machine's request or with a batch).
    pub checkpoints: u64,
    /// Events parked.
    pub parked: u64,
    /// Transient failures (fetch, consumer, checkpoint, park).
    pub transient_errors: u64,
    /// Poison failures reported.
    pub poison_failures: u64,
    /// Events a fetch returned at or below a position already fetched.
    pub duplicates_dropped: u64,
    /// Answers ignored because they were stale or duplicated.
    pub ignored_responses: u64,
    /// Most events ever buffered (fetched, not yet handled).
    pub max_buffered: usize,
    /// Ranges a retention run removed that the subscription skipped (it
    /// had not reached their end when they were removed).
    pub removed_ranges_skipped: u64,
    /// Events in those ranges (some may lie below the checkpoint the
    /// subscription started from, when a range straddles it).
    pub removed_events_skipped: u64,
}
