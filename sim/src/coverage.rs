//! Coverage counters: how often each interesting path ran. A sweep sums
//! them and fails when a path it requires never ran, which catches a fault
//! injector or a recovery path that silently stopped working.

use std::collections::BTreeMap;
use std::fmt;

/// Paths a sweep of the default profiles must exercise at least once.
pub const REQUIRED: &[&str] = &[
    "conflict_retried",
    "discovery_ran",
    "discovery_multi_round",
    "discovery_rerun_after_retry",
    "lost_ack_deduplicated",
    "stale_response_ignored",
    "duplicate_response_delivered",
    "duplicate_request_delivered",
    "crash_recovered",
    "crash_before_append",
    "crash_after_commit",
    "unknown_outcome_resolved",
    "transient_retried",
    "read_timeout",
    "append_failed_before_commit",
    "lost_ack_unknown_reported",
    "lost_ack_silent",
    "store_restart",
    "request_dropped_by_restart",
    "clock_jump",
    "domain_rejected",
    "retries_exhausted",
    "discovery_limit",
    "outcome_unknown_error",
    "paged_read",
    "primed_from_cache",
    "cache_invalidated_by_conflict",
    "pure_version_check_sent",
    "relaxed_expectation_sent",
    "zero_retries_policy",
    "liveness_reexecution",
    "subscriber_batch_handled",
    "subscriber_handler_failed",
    "subscriber_checkpoint_failed",
    "subscriber_crash",
    "subscriber_resumed",
    "subscriber_redelivered_after_crash",
    "subscriber_stale_ignored",
    "lease_standby",
    "lease_expired",
    "lease_taken_over",
    "lease_paused_holder_fenced",
    "lease_clock_jump",
    "notification_lost",
    "fetch_timeout",
    "append_batch_shared",
    "append_batch_failed_before_commit",
    "append_batch_ack_lost",
    "append_batch_conflict_alone",
    "view_cache_hit",
    "view_cache_miss",
    "view_cache_stale_entry",
    "view_cache_ahead_dropped",
    "view_cache_evicted",
    "snapshot_loaded",
    "snapshot_stale_served",
    "snapshot_missing",
    "snapshot_rejected_corrupt",
    "snapshot_rejected_view_version",
    "snapshot_rejected_ahead",
    "snapshot_other_history_served",
    "snapshot_write_lost",
    "snapshot_restart_before_write",
    "view_decision_checked",
    "view_primed_after_discovery",
    "tombstone_written",
    "tombstone_refused_write",
    "tombstone_read",
    "tombstone_refusal_ended_command",
    "tombstone_append_deduplicated",
    "personal_key_created",
    "personal_append_reencoded",
    "subject_forgotten",
    "forgotten_field_read",
    "forgotten_subject_write_refused",
];

/// Named counters.
///
/// ```
/// use eventcore_sim::coverage::Coverage;
/// let mut c = Coverage::default();
/// c.hit("x");
/// c.add("x", 2);
/// assert_eq!(c.get("x"), 3);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Coverage(BTreeMap<&'static str, u64>);

impl Coverage {
    /// Counts one.
    pub fn hit(&mut self, name: &'static str) {
        self.add(name, 1);
    }

    /// Counts `n`.
    pub fn add(&mut self, name: &'static str, n: u64) {
        if n > 0 {
            *self.0.entry(name).or_default() += n;
        }
    }

    /// A counter's value.
    pub fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// Adds every counter of `other`.
    pub fn merge(&mut self, other: &Coverage) {
        for (name, n) in &other.0 {
            self.add(name, *n);
        }
    }

    /// Required paths that never ran.
    pub fn missing(&self, required: &[&'static str]) -> Vec<&'static str> {
        required.iter().copied().filter(|name| self.get(name) == 0).collect()
    }
}

impl fmt::Display for Coverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, n) in &self.0 {
            writeln!(f, "  {name:<32} {n}")?;
        }
        Ok(())
    }
}
