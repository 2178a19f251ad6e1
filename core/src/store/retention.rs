//! Retention: which events a maintenance job may physically remove, and
//! the record of what it removed.
//!
//! The log is append-only for every path but one: a retention run, which
//! removes a *prefix* of a stream (its oldest events, or all of it once a
//! tombstone ended it) under a [`RetentionPlan`]. What was removed is kept
//! as [`RemovedRange`]s, so that reads can say what is gone
//! ([`StreamSlice::removed_through`](crate::StreamSlice::removed_through),
//! [`ReadAllResponse::removed`](crate::ReadAllResponse::removed)) instead of
//! answering with an unexplained gap. Positions and versions never change:
//! the events after a removed range keep theirs, and so do checkpoints.
//!
//! Core has no clock: the caller passes `now`, the time the ages are
//! measured against.

use crate::{GlobalPosition, StreamId, StreamVersion, Time};
use std::fmt;
use std::time::Duration;

/// What a retention run may remove from the streams of one category (the
/// streams whose id starts with `category`).
///
/// ```
/// use eventcore::RetentionPolicy;
/// use std::time::Duration;
/// let policy = RetentionPolicy::new("session-")
///     .with_max_age(Duration::from_secs(90 * 86_400))
///     .with_max_count(1_000)
///     .removing_tombstoned(Duration::from_secs(7 * 86_400));
/// assert!(policy.applies_to("session-42"));
/// assert!(!policy.applies_to("account-42"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// The stream-id prefix the policy applies to (`"account-"`); an empty
    /// prefix applies to every stream.
    pub category: String,
    /// Remove events whose stored timestamp
    /// ([`EventMetadata::timestamp`](crate::EventMetadata::timestamp)) is
    /// older than this at `now`. Only a prefix of a stream is removed: the
    /// events up to (not including) its first event that is young enough.
    pub max_age: Option<Duration>,
    /// Keep at most this many of each stream's newest events.
    pub max_count: Option<u64>,
    /// Remove a stream ended by a tombstone whole, once its tombstone (the
    /// timestamp of its last event) is at least this old. `None`: leave
    /// tombstoned streams to the other rules.
    pub tombstoned_after: Option<Duration>,
}

impl RetentionPolicy {
    /// A policy for `category` that removes nothing yet.
    pub fn new(category: impl Into<String>) -> Self {
        RetentionPolicy {
            category: category.into(),
            max_age: None,
            max_count: None,
            tombstoned_after: None,
        }
    }

    /// Removes events older than `age`.
    pub fn with_max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// Keeps the newest `count` events of each stream.
    pub fn with_max_count(mut self, count: u64) -> Self {
        self.max_count = Some(count);
        self
    }

    /// Removes tombstoned streams whole once their tombstone is `grace` old
    /// (`Duration::ZERO`: at once).
    pub fn removing_tombstoned(mut self, grace: Duration) -> Self {
        self.tombstoned_after = Some(grace);
        self
    }

    /// Whether the policy covers `stream`.
    pub fn applies_to(&self, stream: &str) -> bool {
        stream.starts_with(&self.category)
    }

    /// Whether the policy can remove anything at all.
    pub fn removes_anything(&self) -> bool {
        self.max_age.is_some() || self.max_count.is_some() || self.tombstoned_after.is_some()
    }

    /// The versions of one stream this policy removes at `now`: everything
    /// up to the returned version, and why (the rule that removes the most
    /// wins; a tombstone removes all). `None` when nothing beyond
    /// `state.removed_through` is due. `timestamps` are the stored times of
    /// the stream's events that are still there, in version order from
    /// `state.removed_through + 1`.
    ///
    /// ```
    /// use eventcore::*;
    /// use std::time::Duration;
    /// let policy = RetentionPolicy::new("s-").with_max_count(2);
    /// let state = StreamRetentionState { head: StreamVersion::new(5), removed_through: StreamVersion::NONE, deleted_at: None };
    /// let times = [Time::ZERO; 5];
    /// assert_eq!(policy.removable(&state, &times, Time::ZERO), Some((StreamVersion::new(3), RemovalReason::MaxCount)));
    /// ```
    pub fn removable(
        &self,
        state: &StreamRetentionState,
        timestamps: &[Time],
        now: Time,
    ) -> Option<(StreamVersion, RemovalReason)> {
        let old_prefix = match self.max_age_cutoff(now) {
            Some(cutoff) => timestamps.iter().take_while(|&&t| t <= cutoff).count() as u64,
            None => 0,
        };
        self.removable_with(state, timestamps.last().copied(), old_prefix, now)
    }

    /// The newest timestamp `max_age` counts as old at `now`; `None` when
    /// the policy has no `max_age` or nothing can be that old yet.
    ///
    /// ```
    /// use eventcore::{RetentionPolicy, Time};
    /// use std::time::Duration;
    /// let policy = RetentionPolicy::new("").with_max_age(Duration::from_secs(1));
    /// assert_eq!(policy.max_age_cutoff(Time::from_unix_millis(3_000)), Some(Time::from_unix_millis(2_000)));
    /// assert_eq!(policy.max_age_cutoff(Time::ZERO), None);
    /// ```
    pub fn max_age_cutoff(&self, now: Time) -> Option<Time> {
        let age = u64::try_from(self.max_age?.as_nanos()).unwrap_or(u64::MAX);
        now.as_unix_nanos().checked_sub(age).map(Time::from_unix_nanos)
    }

    /// [`RetentionPolicy::removable`] from what a store can tell without
    /// loading the stream: the timestamp of its last event (for the
    /// tombstone's grace) and how many of its stored events, from
    /// `removed_through + 1` on, are at or before
    /// [`RetentionPolicy::max_age_cutoff`] before the first younger one.
    ///
    /// ```
    /// use eventcore::*;
    /// use std::time::Duration;
    /// let policy = RetentionPolicy::new("").with_max_age(Duration::from_secs(60));
    /// let state = StreamRetentionState { head: StreamVersion::new(9), removed_through: StreamVersion::new(2), deleted_at: None };
    /// assert_eq!(policy.removable_with(&state, None, 4, Time::ZERO), Some((StreamVersion::new(6), RemovalReason::MaxAge)));
    /// ```
    pub fn removable_with(
        &self,
        state: &StreamRetentionState,
        last_event_at: Option<Time>,
        old_prefix: u64,
        now: Time,
    ) -> Option<(StreamVersion, RemovalReason)> {
        let base = state.removed_through.get();
        let mut best: Option<(u64, RemovalReason)> = None;
        let mut consider = |through: u64, reason: RemovalReason| {
            if through > base && through <= state.head.get() && best.is_none_or(|(b, _)| through > b) {
                best = Some((through, reason));
            }
        };
        if let (Some(grace), Some(_)) = (self.tombstoned_after, state.deleted_at) {
            if last_event_at.is_none_or(|t| t.saturating_add(grace) <= now) {
                consider(state.head.get(), RemovalReason::Tombstoned);
            }
        }
        if let Some(count) = self.max_count {
            consider(state.head.get().saturating_sub(count), RemovalReason::MaxCount);
        }
        if self.max_age.is_some() {
            consider(base + old_prefix, RemovalReason::MaxAge);
        }
        best.map(|(through, reason)| (StreamVersion::new(through), reason))
    }
}

/// What a store knows of one stream when it applies a policy to it.
///
/// ```
/// use eventcore::*;
/// let state = StreamRetentionState { head: StreamVersion::new(3), removed_through: StreamVersion::NONE, deleted_at: None };
/// assert_eq!(state.remaining(), 3);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamRetentionState {
    /// The stream's version.
    pub head: StreamVersion,
    /// Versions up to this were removed before.
    pub removed_through: StreamVersion,
    /// The version its tombstone ended it at, if any.
    pub deleted_at: Option<StreamVersion>,
}

impl StreamRetentionState {
    /// How many of its events are still stored.
    pub fn remaining(&self) -> u64 {
        self.head.get().saturating_sub(self.removed_through.get())
    }
}

/// Every policy of one retention run. A stream is governed by the policy
/// with the longest category that is a prefix of its id, so that a narrow
/// category can override a wide one.
///
/// ```
/// use eventcore::*;
/// let plan = RetentionPlan::new([RetentionPolicy::new("a-").with_max_count(1), RetentionPolicy::new("a-x-")]);
/// assert_eq!(plan.policy_for("a-x-1").map(|p| p.category.as_str()), Some("a-x-"));
/// assert_eq!(plan.policy_for("a-1").map(|p| p.category.as_str()), Some("a-"));
/// assert!(plan.policy_for("b-1").is_none());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionPlan {
    /// The policies, one per category.
    pub policies: Vec<RetentionPolicy>,
}

impl RetentionPlan {
    /// A plan of these policies.
    pub fn new(policies: impl IntoIterator<Item = RetentionPolicy>) -> Self {
        RetentionPlan {
            policies: policies.into_iter().collect(),
        }
    }

    /// The policy that governs `stream`, if any.
    pub fn policy_for(&self, stream: &str) -> Option<&RetentionPolicy> {
        self.policies
            .iter()
            .filter(|p| p.applies_to(stream))
            .max_by_key(|p| p.category.len())
    }
}

/// How a retention run goes.
///
/// ```
/// use eventcore::RetentionOptions;
/// let options = RetentionOptions::default().dry_run().archived();
/// assert!(options.dry_run && options.archive);
/// assert_eq!(options.batch_size, 1_000);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionOptions {
    /// Work out and report what would be removed, remove nothing.
    pub dry_run: bool,
    /// Copy every removed event to the archive first (a store without an
    /// archive refuses the run rather than lose them).
    pub archive: bool,
    /// At most this many events removed per transaction, so that locks are
    /// held briefly.
    pub batch_size: u32,
}

impl Default for RetentionOptions {
    fn default() -> Self {
        RetentionOptions {
            dry_run: false,
            archive: false,
            batch_size: 1_000,
        }
    }
}

impl RetentionOptions {
    /// Reports without removing.
    pub fn dry_run(mut self) -> Self {
        self.dry_run = true;
        self
    }

    /// Archives before removing.
    pub fn archived(mut self) -> Self {
        self.archive = true;
        self
    }
}

/// Why a range was removed.
///
/// ```
/// use eventcore::RemovalReason;
/// assert_eq!(RemovalReason::MaxAge.as_str(), "max_age");
/// assert_eq!("tombstoned".parse::<RemovalReason>(), Ok(RemovalReason::Tombstoned));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RemovalReason {
    /// Older than the policy's `max_age`.
    MaxAge,
    /// Beyond the policy's `max_count` newest events.
    MaxCount,
    /// The stream was ended by a tombstone and removed whole.
    Tombstoned,
}

impl RemovalReason {
    /// The stable name (`max_age`, `max_count`, `tombstoned`), as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            RemovalReason::MaxAge => "max_age",
            RemovalReason::MaxCount => "max_count",
            RemovalReason::Tombstoned => "tombstoned",
        }
    }
}

impl fmt::Display for RemovalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A removal reason's name was not one of the known ones.
///
/// ```
/// use eventcore::RemovalReason;
/// let error = "lost".parse::<RemovalReason>().unwrap_err();
/// assert_eq!(error.to_string(), "unknown removal reason `lost` (expected max_age, max_count or tombstoned)");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown removal reason `{0}` (expected max_age, max_count or tombstoned)")]
pub struct UnknownRemovalReason(pub String);

impl std::str::FromStr for RemovalReason {
    type Err = UnknownRemovalReason;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "max_age" => Ok(RemovalReason::MaxAge),
            "max_count" => Ok(RemovalReason::MaxCount),
            "tombstoned" => Ok(RemovalReason::Tombstoned),
            other => Err(UnknownRemovalReason(other.to_owned())),
        }
    }
}

/// Events of one stream that a retention run removed: versions
/// `first_version..=last_version`, which had global positions from
/// `first_position` to `last_position` (other streams' events lie between
/// them; those stay).
///
/// ```
/// use eventcore::*;
/// let range = RemovedRange {
///     stream: StreamId::new("a")?,
///     first_version: StreamVersion::new(1),
///     last_version: StreamVersion::new(10),
///     first_position: GlobalPosition::new(3),
///     last_position: GlobalPosition::new(40),
///     reason: RemovalReason::MaxCount,
///     removed_at: Time::from_unix_millis(5),
/// };
/// assert_eq!(range.events(), 10);
/// # Ok::<(), InvalidStreamId>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemovedRange {
    /// The stream.
    pub stream: StreamId,
    /// The first version removed.
    pub first_version: StreamVersion,
    /// The last version removed.
    pub last_version: StreamVersion,
    /// The position of the first event removed.
    pub first_position: GlobalPosition,
    /// The position of the last event removed.
    pub last_position: GlobalPosition,
    /// Why.
    pub reason: RemovalReason,
    /// The `now` of the run that removed it.
    pub removed_at: Time,
}

impl RemovedRange {
    /// How many events the range held.
    pub fn events(&self) -> u64 {
        (self.last_version.get() + 1).saturating_sub(self.first_version.get())
    }
}

impl fmt::Display for RemovedRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{}..={} (positions {}..={}, {})",
            self.stream, self.first_version, self.last_version, self.first_position, self.last_position, self.reason
        )
    }
}

/// What one retention run removed (or, dry, would remove).
///
/// ```
/// use eventcore::RetentionReport;
/// let report = RetentionReport::default();
/// assert_eq!(report.events_removed(), 0);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// The ranges removed, one per stream touched, in stream-id order.
    pub ranges: Vec<RemovedRange>,
    /// Events copied to the archive.
    pub archived: u64,
    /// Nothing was removed: the ranges are what a real run would remove.
    pub dry_run: bool,
    /// Transactions the run took (PostgreSQL; 1 per batch).
    pub batches: u64,
}

impl RetentionReport {
    /// Events removed, over every range.
    pub fn events_removed(&self) -> u64 {
        self.ranges.iter().map(RemovedRange::events).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(head: u64, removed: u64, deleted: Option<u64>) -> StreamRetentionState {
        StreamRetentionState {
            head: StreamVersion::new(head),
            removed_through: StreamVersion::new(removed),
            deleted_at: deleted.map(StreamVersion::new),
        }
    }

    const DAY: Duration = Duration::from_secs(86_400);

    fn day(n: u64) -> Time {
        Time::from_unix_millis(n * 86_400_000)
    }

    #[test]
    fn max_age_removes_only_the_old_prefix() {
        let policy = RetentionPolicy::new("").with_max_age(DAY * 10);
        // Days 1, 2, 30, 3: the young event at version 3 stops the prefix,
        // even though version 4 is old again (removal keeps streams whole
        // from removed_through on).
        let times = [day(1), day(2), day(30), day(3)];
        assert_eq!(
            policy.removable(&state(4, 0, None), &times, day(35)),
            Some((StreamVersion::new(2), RemovalReason::MaxAge))
        );
        assert_eq!(
            policy.removable(&state(4, 0, None), &times, day(10)),
            None,
            "nothing 10 days old yet"
        );
    }

    #[test]
    fn max_count_keeps_the_newest_and_counts_from_what_was_removed() {
        let policy = RetentionPolicy::new("").with_max_count(3);
        assert_eq!(
            policy.removable(&state(10, 4, None), &[Time::ZERO; 6], Time::ZERO),
            Some((StreamVersion::new(7), RemovalReason::MaxCount))
        );
        assert_eq!(
            policy.removable(&state(10, 7, None), &[Time::ZERO; 3], Time::ZERO),
            None,
            "a second run removes nothing new"
        );
    }

    #[test]
    fn a_tombstoned_stream_goes_whole_after_its_grace() {
        let policy = RetentionPolicy::new("").with_max_count(100).removing_tombstoned(DAY);
        let times = [day(1), day(2)];
        assert_eq!(policy.removable(&state(2, 0, Some(2)), &times, day(2)), None);
        assert_eq!(
            policy.removable(&state(2, 0, Some(2)), &times, day(3)),
            Some((StreamVersion::new(2), RemovalReason::Tombstoned))
        );
        assert_eq!(
            RetentionPolicy::new("")
                .with_max_count(0)
                .removable(&state(2, 0, Some(2)), &times, day(3)),
            Some((StreamVersion::new(2), RemovalReason::MaxCount)),
            "without the tombstone rule a tombstoned stream is like any other"
        );
    }
}
