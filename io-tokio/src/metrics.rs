//! The metrics the tokio driver records, through the [`metrics`](::metrics)
//! facade: nothing is exported unless the application installs a recorder
//! (an exporter such as `metrics-exporter-prometheus`), and without one
//! every call is a no-op on a static key.
//!
//! Every name starts with `eventcore_`; the table of names, types, labels
//! and meanings is in `docs/operations.md` ("Metrics"). Labels are bounded:
//! `command` is the command's type name (one value per command type),
//! `outcome`, `operation` and `kind` come from fixed lists, `subscription`
//! is a runner's name.
//!
//! Install the recorder before building executors and starting runners: a
//! runner registers its subscription's gauges when it starts consuming.
//!
//! ```
//! use eventcore_tokio::metrics;
//! // Descriptions and units for an exporter's HELP lines (optional).
//! metrics::describe();
//! assert!(metrics::COMMANDS.starts_with("eventcore_"));
//! ```

use ::metrics::{counter, gauge, histogram, Counter, Gauge, Histogram, Unit};
use eventcore::{CommandError, ExecutionStats, GlobalPosition, StoreError, Time};
use std::time::{Duration, Instant};

/// Counter: executions finished, by `command` (type name) and `outcome`
/// (`ok`, `rejected`, `retries_exhausted`, `outcome_unknown`, `deadline`,
/// `store_error`, `codec`, `invalid_command`, `other`).
pub const COMMANDS: &str = "eventcore_commands_total";
/// Histogram: attempts per finished execution (1 = no retry).
pub const COMMAND_ATTEMPTS: &str = "eventcore_command_attempts";
/// Histogram: seconds from the start of an execution to its result, by
/// `command`.
pub const COMMAND_DURATION: &str = "eventcore_command_duration_seconds";
/// Counter: appends refused with a version conflict (each one retried or
/// ending the execution).
pub const CONFLICTS: &str = "eventcore_command_conflicts_total";
/// Counter: attempts after the first (after a conflict, a transient error
/// or an unknown outcome).
pub const RETRIES: &str = "eventcore_command_retries_total";
/// Counter: appends whose outcome was unknown (a timeout or a lost
/// acknowledgement), each one re-sent or ending the execution.
pub const UNKNOWN_OUTCOMES: &str = "eventcore_command_unknown_outcomes_total";
/// Counter: transient store errors and read timeouts met by executions.
pub const TRANSIENT_ERRORS: &str = "eventcore_command_transient_errors_total";
/// Counter: errors answered by a store operation, by `operation` and `kind`
/// (`conflict`, `invalid_append`, `invalid_request`, `transient`,
/// `outcome_unknown`, `timeout`, `contract_violation`, `permanent`,
/// `other`).
pub const STORE_ERRORS: &str = "eventcore_store_errors_total";
/// Histogram: seconds per store operation, by `operation`.
pub const STORE_DURATION: &str = "eventcore_store_operation_duration_seconds";
/// Histogram: appends per group commit of a `BatchingStore`.
pub const APPEND_BATCH_REQUESTS: &str = "eventcore_append_batch_requests";
/// Histogram: events per group commit of a `BatchingStore`.
pub const APPEND_BATCH_EVENTS: &str = "eventcore_append_batch_events";
/// Counter: stream-cache lookups that found the stream.
pub const STREAM_CACHE_HITS: &str = "eventcore_stream_cache_hits_total";
/// Counter: stream-cache lookups that did not.
pub const STREAM_CACHE_MISSES: &str = "eventcore_stream_cache_misses_total";
/// Counter: view-cache lookups that primed a view.
pub const VIEW_CACHE_HITS: &str = "eventcore_view_cache_hits_total";
/// Counter: view-cache lookups that did not.
pub const VIEW_CACHE_MISSES: &str = "eventcore_view_cache_misses_total";
/// Histogram: events per batch handed to a subscriber or projection, by
/// `subscription`.
pub const SUBSCRIPTION_BATCH_EVENTS: &str = "eventcore_subscription_batch_events";
/// Counter: events handed to a subscriber or projection, by
/// `subscription`.
pub const SUBSCRIPTION_EVENTS: &str = "eventcore_subscription_events_total";
/// Gauge: how far behind the known head of the log the subscription has
/// handled, in global positions, by `subscription` (0: caught up).
pub const SUBSCRIPTION_LAG_POSITIONS: &str = "eventcore_subscription_lag_positions";
/// Gauge: age of the newest event handed to the subscription when it was
/// handed over, in seconds, by `subscription` (0 once caught up).
pub const SUBSCRIPTION_LAG_SECONDS: &str = "eventcore_subscription_lag_seconds";
/// Counter: failures a subscription met and retried or stopped on, by
/// `subscription` and `kind` (`fetch`, `handle`, `checkpoint`, `park`).
pub const SUBSCRIPTION_ERRORS: &str = "eventcore_subscription_errors_total";
/// Counter: events a subscription moved past because a retention run had
/// removed them before it read them (label `subscription`).
pub const SUBSCRIPTION_REMOVED_EVENTS: &str = "eventcore_subscription_removed_events_total";

/// Registers a description and unit for every metric above with the
/// installed recorder (what an exporter prints as HELP). Optional; call it
/// once after installing the recorder.
///
/// ```
/// eventcore_tokio::metrics::describe();
/// ```
pub fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(COMMANDS, "Command executions finished, by command type and outcome");
    describe_histogram!(COMMAND_ATTEMPTS, Unit::Count, "Attempts per command execution");
    describe_histogram!(COMMAND_DURATION, Unit::Seconds, "Command execution latency");
    describe_counter!(CONFLICTS, "Appends refused with a version conflict");
    describe_counter!(RETRIES, "Command attempts after the first");
    describe_counter!(UNKNOWN_OUTCOMES, "Appends whose outcome was unknown");
    describe_counter!(TRANSIENT_ERRORS, "Transient store errors met by command executions");
    describe_counter!(STORE_ERRORS, "Store operation errors, by operation and kind");
    describe_histogram!(STORE_DURATION, Unit::Seconds, "Store operation latency, by operation");
    describe_histogram!(APPEND_BATCH_REQUESTS, Unit::Count, "Appends per group commit");
    describe_histogram!(APPEND_BATCH_EVENTS, Unit::Count, "Events per group commit");
    describe_counter!(STREAM_CACHE_HITS, "Stream cache lookups answered");
    describe_counter!(STREAM_CACHE_MISSES, "Stream cache lookups not answered");
    describe_counter!(VIEW_CACHE_HITS, "View cache lookups answered");
    describe_counter!(VIEW_CACHE_MISSES, "View cache lookups not answered");
    describe_histogram!(SUBSCRIPTION_BATCH_EVENTS, Unit::Count, "Events per subscription batch");
    describe_counter!(SUBSCRIPTION_EVENTS, "Events handed to a subscription");
    describe_gauge!(
        SUBSCRIPTION_LAG_POSITIONS,
        "Global positions between the known head and the last handled event"
    );
    describe_gauge!(
        SUBSCRIPTION_LAG_SECONDS,
        Unit::Seconds,
        "Age of the newest event handed to the subscription"
    );
    describe_counter!(SUBSCRIPTION_ERRORS, "Subscription failures, by kind");
    describe_counter!(
        SUBSCRIPTION_REMOVED_EVENTS,
        "Events a subscription skipped because retention had removed them"
    );
}

/// One static key per store operation, so recording costs no allocation.
#[cfg_attr(not(feature = "memory"), allow(dead_code))] // the memory store's (feature `memory`)
#[derive(Clone, Copy, Debug)]
pub(crate) enum StoreOp {
    Read,
    Append,
    ReadAll,
}

#[cfg_attr(not(feature = "memory"), allow(dead_code))] // the memory store's (feature `memory`)
impl StoreOp {
    pub(crate) fn name(self) -> &'static str {
        match self {
            StoreOp::Read => "read",
            StoreOp::Append => "append",
            StoreOp::ReadAll => "read_all",
        }
    }

    /// The latency histogram of this operation (a static key: no
    /// allocation).
    fn duration(self) -> Histogram {
        match self {
            StoreOp::Read => histogram!(STORE_DURATION, "operation" => "read"),
            StoreOp::Append => histogram!(STORE_DURATION, "operation" => "append"),
            StoreOp::ReadAll => histogram!(STORE_DURATION, "operation" => "read_all"),
        }
    }
}

/// Records one store operation of the memory store: its latency, and its
/// error's kind if it failed.
#[cfg_attr(not(feature = "memory"), allow(dead_code))] // the memory store's (feature `memory`)
pub(crate) fn store_operation<T>(op: StoreOp, started: Instant, result: &Result<T, StoreError>) {
    op.duration().record(started.elapsed().as_secs_f64());
    if let Err(error) = result {
        store_error(op.name(), error);
    }
}

/// Counts a store error by operation and kind (off the hot path: errors
/// only).
#[cfg_attr(not(feature = "memory"), allow(dead_code))] // the memory store's (feature `memory`)
pub(crate) fn store_error(operation: &'static str, error: &StoreError) {
    counter!(STORE_ERRORS, "operation" => operation, "kind" => store_error_kind(error)).increment(1);
}

/// The `kind` label of a store error.
#[cfg_attr(not(feature = "memory"), allow(dead_code))] // the memory store's (feature `memory`)
pub(crate) fn store_error_kind(error: &StoreError) -> &'static str {
    match error {
        StoreError::Conflict(_) => "conflict",
        StoreError::InvalidAppend(_) => "invalid_append",
        StoreError::InvalidRequest(_) => "invalid_request",
        StoreError::Transient { .. } => "transient",
        StoreError::OutcomeUnknown { .. } => "outcome_unknown",
        StoreError::Timeout { .. } => "timeout",
        StoreError::ContractViolation { .. } => "contract_violation",
        StoreError::Permanent { .. } => "permanent",
        _ => "other",
    }
}

/// The `outcome` label of a finished execution.
pub(crate) fn outcome<T, E>(result: &Result<T, CommandError<E>>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(CommandError::Domain(_)) => "rejected",
        Err(CommandError::RetriesExhausted { .. }) => "retries_exhausted",
        Err(CommandError::OutcomeUnknown { .. }) => "outcome_unknown",
        Err(CommandError::DeadlineExceeded { .. }) => "deadline",
        Err(CommandError::Store(_)) => "store_error",
        Err(CommandError::Decode(_) | CommandError::Encode { .. } | CommandError::ViewCannotFold { .. }) => "codec",
        Err(
            CommandError::NoStreams
            | CommandError::UnreadStream { .. }
            | CommandError::EndWithoutEvent { .. }
            | CommandError::DiscoveryLimit { .. }
            | CommandError::MissingView { .. },
        ) => "invalid_command",
        Err(_) => "other",
    }
}

/// Records a finished execution of the command type `command` that started
/// at `started`: its outcome, attempts, latency and what its counters say.
/// Failures an operator needs (everything but a domain refusal and a
/// misdeclared command) are logged at `warn`.
pub(crate) fn command_finished<T, E: std::error::Error + 'static>(
    command: &'static str,
    started: Instant,
    attempts: u32,
    stats: &ExecutionStats,
    result: &Result<T, CommandError<E>>,
) {
    let outcome = outcome(result);
    counter!(COMMANDS, "command" => command, "outcome" => outcome).increment(1);
    histogram!(COMMAND_DURATION, "command" => command).record(started.elapsed().as_secs_f64());
    histogram!(COMMAND_ATTEMPTS).record(f64::from(attempts));
    count(CONFLICTS, stats.conflicts);
    count(RETRIES, attempts.saturating_sub(1));
    count(UNKNOWN_OUTCOMES, stats.unknown_outcomes);
    count(TRANSIENT_ERRORS, stats.transient_errors);
    if let Err(error) = result {
        match outcome {
            "retries_exhausted" | "outcome_unknown" | "deadline" | "store_error" | "codec" | "other" => {
                tracing::warn!(
                    command,
                    outcome,
                    attempts,
                    error = error as &dyn std::error::Error,
                    "command failed"
                );
            }
            _ => {}
        }
    }
}

fn count(name: &'static str, n: u32) {
    if n > 0 {
        counter!(name).increment(u64::from(n));
    }
}

/// Records one group commit of a `BatchingStore`.
pub(crate) fn append_batch(requests: usize, events: usize) {
    histogram!(APPEND_BATCH_REQUESTS).record(requests as f64);
    histogram!(APPEND_BATCH_EVENTS).record(events as f64);
}

/// Records a stream-cache lookup.
pub(crate) fn stream_cache(hit: bool) {
    if hit {
        counter!(STREAM_CACHE_HITS).increment(1);
    } else {
        counter!(STREAM_CACHE_MISSES).increment(1);
    }
}

/// Records a round of view-cache lookups.
pub(crate) fn view_cache(hits: u64, misses: u64) {
    if hits > 0 {
        counter!(VIEW_CACHE_HITS).increment(hits);
    }
    if misses > 0 {
        counter!(VIEW_CACHE_MISSES).increment(misses);
    }
}

/// One runner's metric handles, registered once when it starts consuming
/// (the `subscription` label is its name), and the head of the log as far
/// as the runner knows it.
pub(crate) struct SubscriptionMetrics {
    batch_events: Histogram,
    events: Counter,
    lag_positions: Gauge,
    lag_seconds: Gauge,
    fetch_errors: Counter,
    handle_errors: Counter,
    checkpoint_errors: Counter,
    park_errors: Counter,
    removed_events: Counter,
    head: GlobalPosition,
}

impl SubscriptionMetrics {
    pub(crate) fn new(name: &str) -> Self {
        let errors =
            |kind: &'static str| counter!(SUBSCRIPTION_ERRORS, "subscription" => name.to_owned(), "kind" => kind);
        SubscriptionMetrics {
            batch_events: histogram!(SUBSCRIPTION_BATCH_EVENTS, "subscription" => name.to_owned()),
            events: counter!(SUBSCRIPTION_EVENTS, "subscription" => name.to_owned()),
            lag_positions: gauge!(SUBSCRIPTION_LAG_POSITIONS, "subscription" => name.to_owned()),
            lag_seconds: gauge!(SUBSCRIPTION_LAG_SECONDS, "subscription" => name.to_owned()),
            fetch_errors: errors("fetch"),
            handle_errors: errors("handle"),
            checkpoint_errors: errors("checkpoint"),
            park_errors: errors("park"),
            removed_events: counter!(SUBSCRIPTION_REMOVED_EVENTS, "subscription" => name.to_owned()),
            head: GlobalPosition::START,
        }
    }

    /// The log is known to reach `position` (a notification, a fetched
    /// event, a fetch's `complete_through`).
    pub(crate) fn saw_head(&mut self, position: GlobalPosition) {
        self.head = self.head.max(position);
    }

    /// A batch is handed to the consumer at `now`, after `handled_through`
    /// was handled.
    pub(crate) fn delivered(&mut self, events: &[eventcore::RecordedEvent], now: Time) {
        self.batch_events.record(events.len() as f64);
        self.events.increment(events.len() as u64);
        if let Some(last) = events.last() {
            self.saw_head(last.position);
            let age = now.saturating_duration_since(last.metadata.timestamp);
            self.lag_seconds.set(age.as_secs_f64());
        }
    }

    /// Publishes the distance from the known head to `handled_through`;
    /// once caught up, both lags are zero.
    pub(crate) fn progress(&mut self, handled_through: GlobalPosition, caught_up: bool) {
        let behind = self.head.get().saturating_sub(handled_through.get());
        self.lag_positions.set(if caught_up { 0.0 } else { behind as f64 });
        if caught_up {
            self.lag_seconds.set(Duration::ZERO.as_secs_f64());
        }
    }

    /// Counts the events of removed ranges the subscription moved past.
    pub(crate) fn skipped(&self, ranges: &[eventcore::RemovedRange]) {
        self.removed_events
            .increment(ranges.iter().map(eventcore::RemovedRange::events).sum());
    }

    /// Counts a failure of the given kind.
    pub(crate) fn failed(&self, kind: SubscriptionFailure) {
        match kind {
            SubscriptionFailure::Fetch => self.fetch_errors.increment(1),
            SubscriptionFailure::Handle => self.handle_errors.increment(1),
            SubscriptionFailure::Checkpoint => self.checkpoint_errors.increment(1),
            SubscriptionFailure::Park => self.park_errors.increment(1),
        }
    }
}

/// What failed in a subscription.
#[derive(Clone, Copy, Debug)]
pub(crate) enum SubscriptionFailure {
    Fetch,
    Handle,
    Checkpoint,
    Park,
}
