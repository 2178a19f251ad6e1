//! The store-operation metrics and spans of the PostgreSQL stores, through
//! the [`metrics`](::metrics) facade: nothing is exported unless the
//! application installs a recorder, and without one every call is a no-op
//! on a static key.
//!
//! Every operation (event store, snapshots, checkpoints, projections,
//! leases, dead letters) runs in a span named after it (`store.read`,
//! `checkpoint.save`, ...) and records its latency, its error's kind, and
//! the pool's size and idle connections. The table of names is in
//! `docs/operations.md` ("Metrics").
//!
//! ```
//! use eventcore_postgres::metrics;
//! metrics::describe();
//! assert_eq!(metrics::POOL_CONNECTIONS, "eventcore_postgres_pool_connections");
//! ```

use ::metrics::{counter, gauge, histogram, Histogram, Unit};
use eventcore::{AppendRequest, StoreError};
use eventcore_store::{CheckpointError, DeadLetterError, LeaseError, SnapshotError};
use sqlx::PgPool;
use std::future::Future;
use std::time::Instant;
use tracing::Instrument;

/// Histogram: seconds per store operation, by `operation` (`read`,
/// `append`, `read_all`, `append_batch`, `snapshot_load`, ...). The same
/// name as the memory store's in `eventcore_tokio::metrics`.
pub const STORE_DURATION: &str = "eventcore_store_operation_duration_seconds";
/// Counter: errors answered by a store operation, by `operation` and
/// `kind`. The same name as the memory store's.
pub const STORE_ERRORS: &str = "eventcore_store_errors_total";
/// Gauge: connections open in the pool, sampled after every operation.
pub const POOL_CONNECTIONS: &str = "eventcore_postgres_pool_connections";
/// Gauge: of those, connections idle, sampled after every operation.
pub const POOL_IDLE: &str = "eventcore_postgres_pool_idle_connections";
/// Histogram: appends per `append_batch` call (group commit).
pub const APPEND_BATCH_REQUESTS: &str = "eventcore_postgres_append_batch_requests";

/// Registers a description and unit for every metric above with the
/// installed recorder. Optional; call it once after installing the
/// recorder.
///
/// ```
/// eventcore_postgres::metrics::describe();
/// ```
pub fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(STORE_DURATION, Unit::Seconds, "Store operation latency, by operation");
    describe_counter!(STORE_ERRORS, "Store operation errors, by operation and kind");
    describe_gauge!(POOL_CONNECTIONS, Unit::Count, "Connections open in the PostgreSQL pool");
    describe_gauge!(POOL_IDLE, Unit::Count, "Idle connections in the PostgreSQL pool");
    describe_histogram!(APPEND_BATCH_REQUESTS, Unit::Count, "Appends per append_batch call");
}

/// Every operation the PostgreSQL stores time. (Some exist only with the
/// `subscriptions`, `leases` or `projections` feature.)
#[allow(dead_code)]
#[derive(Clone, Copy, Debug)]
pub(crate) enum Op {
    Read,
    Append,
    ReadAll,
    AppendBatch,
    SnapshotLoad,
    SnapshotSave,
    SnapshotDiscard,
    SnapshotDelete,
    CheckpointClaim,
    CheckpointSave,
    ProjectionBegin,
    ProjectionCommit,
    LeaseAcquire,
    LeaseRenew,
    LeaseRelease,
    DeadLetterPark,
    DeadLetterList,
    DeadLetterRemove,
    DeadLetterRequestReplay,
    DeadLetterReplayFailed,
}

/// What a span says about an operation besides its name.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Fields<'a> {
    /// Streams read or written.
    pub(crate) streams: Option<usize>,
    /// Events written (or the most read).
    pub(crate) events: Option<usize>,
    /// The checkpoint, lease, subscription or view concerned.
    pub(crate) name: Option<&'a str>,
    /// Appends in a group commit.
    pub(crate) requests: Option<usize>,
}

impl<'a> Fields<'a> {
    pub(crate) fn streams(streams: usize) -> Self {
        Fields {
            streams: Some(streams),
            ..Fields::default()
        }
    }

    pub(crate) fn named(name: &'a str) -> Self {
        Fields {
            name: Some(name),
            ..Fields::default()
        }
    }

    pub(crate) fn events(mut self, events: usize) -> Self {
        self.events = Some(events);
        self
    }
}

/// Declares, for each operation, its label, its span and its histogram,
/// all from literals: recording costs no allocation.
macro_rules! operations {
    ($($op:ident => $label:literal, $span:literal;)*) => {
        impl Op {
            pub(crate) fn label(self) -> &'static str {
                match self { $(Op::$op => $label,)* }
            }

            fn duration(self) -> Histogram {
                match self { $(Op::$op => histogram!(STORE_DURATION, "operation" => $label),)* }
            }

            fn span(self, fields: Fields<'_>) -> tracing::Span {
                match self {
                    $(Op::$op => tracing::info_span!(
                        $span,
                        store = "postgres",
                        operation = $label,
                        streams = fields.streams,
                        events = fields.events,
                        name = fields.name,
                        requests = fields.requests,
                    ),)*
                }
            }
        }
    };
}

operations! {
    Read => "read", "store.read";
    Append => "append", "store.append";
    ReadAll => "read_all", "store.read_all";
    AppendBatch => "append_batch", "store.append_batch";
    SnapshotLoad => "snapshot_load", "snapshot.load";
    SnapshotSave => "snapshot_save", "snapshot.save";
    SnapshotDiscard => "snapshot_discard", "snapshot.discard";
    SnapshotDelete => "snapshot_delete", "snapshot.delete";
    CheckpointClaim => "checkpoint_claim", "checkpoint.claim";
    CheckpointSave => "checkpoint_save", "checkpoint.save";
    ProjectionBegin => "projection_begin", "projection.begin";
    ProjectionCommit => "projection_commit", "projection.commit";
    LeaseAcquire => "lease_acquire", "lease.acquire";
    LeaseRenew => "lease_renew", "lease.renew";
    LeaseRelease => "lease_release", "lease.release";
    DeadLetterPark => "dead_letter_park", "dead_letter.park";
    DeadLetterList => "dead_letter_list", "dead_letter.list";
    DeadLetterRemove => "dead_letter_remove", "dead_letter.remove";
    DeadLetterRequestReplay => "dead_letter_request_replay", "dead_letter.request_replay";
    DeadLetterReplayFailed => "dead_letter_replay_failed", "dead_letter.replay_failed";
}

/// Runs `work` in the operation's span, then records its latency, its
/// error's kind (and logs the errors an operator needs at `warn`), and
/// samples the pool.
pub(crate) async fn observe<T, E: ErrorKind>(
    pool: &PgPool,
    op: Op,
    fields: Fields<'_>,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let span = op.span(fields);
    let started = Instant::now();
    let result = work.instrument(span.clone()).await;
    op.duration().record(started.elapsed().as_secs_f64());
    if let Err(error) = &result {
        failed(op, error, &span);
    }
    sample_pool(pool);
    result
}

/// Records one failed operation (off the hot path).
pub(crate) fn failed<E: ErrorKind>(op: Op, error: &E, span: &tracing::Span) {
    counter!(STORE_ERRORS, "operation" => op.label(), "kind" => error.kind()).increment(1);
    if error.needs_operator() {
        tracing::warn!(parent: span, operation = op.label(), kind = error.kind(), error = error as &dyn std::error::Error, "store operation failed");
    }
}

/// [`observe`] for `append_batch`, which answers each request on its own:
/// one span and one latency for the call, its size, and each request's
/// error.
pub(crate) async fn observe_batch<T>(
    pool: &PgPool,
    requests: &[AppendRequest],
    work: impl Future<Output = Vec<Result<T, StoreError>>>,
) -> Vec<Result<T, StoreError>> {
    let fields = Fields {
        streams: Some(requests.iter().map(|r| r.streams.len()).sum()),
        events: Some(requests.iter().map(AppendRequest::event_count).sum()),
        name: None,
        requests: Some(requests.len()),
    };
    let span = Op::AppendBatch.span(fields);
    histogram!(APPEND_BATCH_REQUESTS).record(requests.len() as f64);
    let started = Instant::now();
    let outcomes = work.instrument(span.clone()).await;
    Op::AppendBatch.duration().record(started.elapsed().as_secs_f64());
    for error in outcomes.iter().filter_map(|outcome| outcome.as_ref().err()) {
        failed(Op::AppendBatch, error, &span);
    }
    sample_pool(pool);
    outcomes
}

/// Sets the pool gauges from the pool's current counts.
pub(crate) fn sample_pool(pool: &PgPool) {
    gauge!(POOL_CONNECTIONS).set(f64::from(pool.size()));
    gauge!(POOL_IDLE).set(pool.num_idle() as f64);
}

/// The `kind` label of an operation's error, and whether an operator
/// should hear of it (a conflict, bad input or a fenced writer is an
/// answer, not a failure).
pub(crate) trait ErrorKind: std::error::Error + 'static {
    fn kind(&self) -> &'static str;
    fn needs_operator(&self) -> bool;
}

impl ErrorKind for StoreError {
    fn kind(&self) -> &'static str {
        match self {
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

    fn needs_operator(&self) -> bool {
        !matches!(
            self,
            StoreError::Conflict(_) | StoreError::InvalidAppend(_) | StoreError::InvalidRequest(_)
        )
    }
}

impl ErrorKind for CheckpointError {
    fn kind(&self) -> &'static str {
        match self {
            CheckpointError::Fenced { .. } => "fenced",
            CheckpointError::Transient(_) => "transient",
            CheckpointError::Permanent(_) => "permanent",
            _ => "other",
        }
    }

    fn needs_operator(&self) -> bool {
        !matches!(self, CheckpointError::Fenced { .. })
    }
}

impl ErrorKind for LeaseError {
    fn kind(&self) -> &'static str {
        match self {
            LeaseError::Lost { .. } => "lost",
            LeaseError::Transient(_) => "transient",
            LeaseError::Permanent(_) => "permanent",
            _ => "other",
        }
    }

    fn needs_operator(&self) -> bool {
        !matches!(self, LeaseError::Lost { .. })
    }
}

impl ErrorKind for DeadLetterError {
    fn kind(&self) -> &'static str {
        match self {
            DeadLetterError::Unavailable => "unavailable",
            DeadLetterError::Transient(_) => "transient",
            DeadLetterError::Permanent(_) => "permanent",
            _ => "other",
        }
    }

    fn needs_operator(&self) -> bool {
        true
    }
}

impl ErrorKind for SnapshotError {
    fn kind(&self) -> &'static str {
        match self {
            SnapshotError::Unavailable(_) => "unavailable",
            SnapshotError::Malformed(_) => "malformed",
            _ => "other",
        }
    }

    fn needs_operator(&self) -> bool {
        true
    }
}
