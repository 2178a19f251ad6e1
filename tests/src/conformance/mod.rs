//! The store conformance suite: the store contract of DESIGN.md, checked
//! case by case. Each `pub async fn` is one case; [`crate::conformance_suite!`]
//! turns every case into its own `#[tokio::test]` for a given factory.
//!
//! The suite talks to stores only through [`EventStore`], so it runs
//! unchanged against every store. It assumes nothing the contract does not
//! promise: global positions only ever *increase* (a PostgreSQL sequence
//! leaves gaps), and payloads are compared as JSON values, not as text (a
//! JSONB column normalizes whitespace and key order).
//!
//! Cases are grouped by the rule they check, one file per group; this file
//! holds the helpers every group shares and the [`crate::conformance_suite!`]
//! macro, and re-exports every case, so a case's path is
//! `eventcore_tests::conformance::<case>` whatever its file:
//!
//! 1. `reads`: streams and reads: versions, heads, multi-stream reads,
//!    `after`, paging;
//! 2. `atomic_appends`: atomic multi-stream appends, including pure version
//!    checks;
//! 3. `expected_versions`: expected versions, and what a conflict reports;
//! 4. `idempotency`: idempotency by command id; `batches`: batches of
//!    appends;
//! 5. `read_all`: global order and `read_all` (filters, limits,
//!    `complete_through`);
//! 6. `bad_input`: bad input, refused with a typed error and without
//!    changing anything;
//! 7. `round_trip`: exact round trip of events and their metadata, and of
//!    payloads in either codec;
//! 8. `concurrency`: concurrency and cancellation: no lost update, one
//!    commit per command id, atomic visibility, a global reader that never
//!    misses an event, and appends dropped part-way that are all-or-nothing;
//! 9. `tombstones`: ending a stream: later writes refused with a typed
//!    error, reads that say so with the events intact, idempotent and
//!    atomic like any append.
//! 10. `retention`: removing events (max age, max count, tombstoned
//!     streams) and telling every reader what is gone; its own macro,
//!     [`crate::retention_suite!`], as it needs a `RetentionStore`.
//! 11. `personal_data`: crypto-shredding: the key store contract (one
//!     stable key per subject, `forget` idempotent and final, no key left
//!     by a forget racing creates) and personal data through the executor
//!     (sealed when stored, `Known` until forgotten, `Forgotten` after,
//!     new data of a forgotten subject refused with nothing appended, no
//!     event changed, a `BatchDecoder` alike); its own macro,
//!     [`crate::personal_data_suite!`], as it needs a key store beside the
//!     event store ([`PersonalDataFactory`]).

use crate::StoreFactory;
use eventcore::*;
use eventcore_tokio::EventStore;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

mod atomic_appends;
mod bad_input;
mod batches;
mod concurrency;
mod expected_versions;
mod idempotency;
mod personal_data;
mod read_all;
mod reads;
mod retention;
mod round_trip;
mod tombstones;

pub use atomic_appends::*;
pub use bad_input::*;
pub use batches::*;
pub use concurrency::*;
pub use expected_versions::*;
pub use idempotency::*;
pub use personal_data::*;
pub use read_all::*;
pub use reads::*;
pub use retention::*;
pub use round_trip::*;
pub use tombstones::*;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

static UNIQUE: AtomicU64 = AtomicU64::new(1);

/// Ten bytes of entropy never handed out before in this process, so that
/// every command id and event id the suite builds is distinct.
///
/// A UUIDv7 overwrites the high nibble of the first byte (version) and the
/// top two bits of the third (variant), so the counter goes into the last
/// seven bytes, which survive intact.
fn unique_entropy() -> [u8; 10] {
    let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id().to_le_bytes();
    let mut bytes = [0u8; 10];
    bytes[1] = pid[0];
    bytes[2] = pid[1] & 0x3F;
    bytes[3..].copy_from_slice(&n.to_le_bytes()[..7]);
    bytes
}

/// The timestamp written into the suite's metadata. It has sub-microsecond
/// digits on purpose: metadata must round-trip exactly.
pub fn suite_time() -> Time {
    Time::from_unix_nanos(1_700_000_000_123_456_789)
}

/// A fresh command id, distinct from every other the suite uses.
pub fn fresh_command_id() -> CommandId {
    CommandId::v7(suite_time(), unique_entropy())
}

/// A stream id the suite knows to be valid.
pub fn stream(name: &str) -> StreamId {
    StreamId::new(name).expect("the suite only uses valid stream ids")
}

/// A new event of type `event_type` with the given payload and a fresh id.
pub fn new_event(event_type: &str, payload: serde_json::Value) -> NewEvent {
    NewEvent {
        event_id: EventId::v7(suite_time(), unique_entropy()),
        event_type: EventType::new(event_type).expect("the suite only uses valid event types"),
        schema_version: 1,
        payload: Payload::from_value(&payload).expect("a JSON value serializes"),
    }
}

/// `count` events of type `Tested`, with payloads `{"i": 0}`, `{"i": 1}`, ...
pub fn tested_events(count: usize) -> Vec<NewEvent> {
    (0..count)
        .map(|i| new_event("Tested", serde_json::json!({ "i": i })))
        .collect()
}

/// Builds an append of `count` events to one stream (test helper).
///
/// The command id is derived from `seed`: two calls with the same seed
/// build appends with the same command id (the second one deduplicates).
pub fn append_to(stream: &StreamId, expected: ExpectedVersion, count: usize, seed: u8) -> AppendRequest {
    let metadata = Arc::new(EventMetadata::new(
        CommandId::v7(Time::from_unix_millis(1), [seed; 10]),
        Time::from_unix_millis(1),
    ));
    AppendRequest {
        metadata,
        streams: vec![StreamAppend {
            stream: stream.clone(),
            expected,
            events: tested_events(count),
            tombstone: false,
        }],
    }
}

/// Builder of an [`AppendRequest`] with a fresh command id.
///
/// ```
/// use eventcore::ExpectedVersion;
/// use eventcore_tests::conformance::{stream, Append};
/// let request = Append::new()
///     .to(&stream("a"), ExpectedVersion::NoStream, 2)
///     .check(&stream("b"), ExpectedVersion::Any)
///     .build();
/// assert_eq!(request.streams.len(), 2);
/// assert_eq!(request.event_count(), 2);
/// ```
#[derive(Clone, Debug)]
pub struct Append {
    metadata: EventMetadata,
    streams: Vec<StreamAppend>,
}

impl Default for Append {
    fn default() -> Self {
        Append::new()
    }
}

impl Append {
    /// An empty append with a fresh command id.
    pub fn new() -> Self {
        Append {
            metadata: EventMetadata::new(fresh_command_id(), suite_time()),
            streams: Vec::new(),
        }
    }

    /// Adds `count` `Tested` events for `stream`.
    pub fn to(self, stream: &StreamId, expected: ExpectedVersion, count: usize) -> Self {
        self.with_events(stream, expected, tested_events(count))
    }

    /// Adds the given events for `stream`.
    pub fn with_events(mut self, stream: &StreamId, expected: ExpectedVersion, events: Vec<NewEvent>) -> Self {
        self.streams.push(StreamAppend {
            stream: stream.clone(),
            expected,
            events,
            tombstone: false,
        });
        self
    }

    /// Adds `count` `Tested` events for `stream` that end it: the entry
    /// carries a tombstone ([`StreamAppend::tombstone`]).
    ///
    /// ```
    /// use eventcore::ExpectedVersion;
    /// use eventcore_tests::conformance::{stream, Append};
    /// let request = Append::new().ending(&stream("a"), ExpectedVersion::Any, 1).build();
    /// assert!(request.streams[0].tombstone);
    /// ```
    pub fn ending(mut self, stream: &StreamId, expected: ExpectedVersion, count: usize) -> Self {
        self = self.to(stream, expected, count);
        if let Some(entry) = self.streams.last_mut() {
            entry.tombstone = true;
        }
        self
    }

    /// Adds a pure version check (an entry without events) for `stream`.
    pub fn check(self, stream: &StreamId, expected: ExpectedVersion) -> Self {
        self.with_events(stream, expected, Vec::new())
    }

    /// Replaces the metadata (and with it the command id).
    pub fn with_metadata(mut self, metadata: EventMetadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Uses `command_id` as the idempotency key.
    pub fn with_command_id(mut self, command_id: CommandId) -> Self {
        self.metadata.command_id = command_id;
        self
    }

    /// The idempotency key of the append being built.
    pub fn command_id(&self) -> CommandId {
        self.metadata.command_id
    }

    /// The request.
    pub fn build(self) -> AppendRequest {
        AppendRequest {
            metadata: Arc::new(self.metadata),
            streams: self.streams,
        }
    }
}

/// Reads `streams` whole in one request.
pub async fn read<S: EventStore>(store: &S, streams: &[StreamId]) -> Vec<StreamSlice> {
    store
        .read(&ReadRequest::new(streams.iter().cloned()))
        .await
        .expect("reading valid streams succeeds")
        .streams
}

/// The head version of one stream.
pub async fn head<S: EventStore>(store: &S, stream: &StreamId) -> StreamVersion {
    read(store, std::slice::from_ref(stream)).await[0].head
}

/// A global read request.
pub fn read_all_request(after: GlobalPosition, limit: u32, filter: EventFilter) -> ReadAllRequest {
    ReadAllRequest {
        after,
        limit: NonZeroU32::new(limit).expect("the suite uses positive limits"),
        filter,
    }
}

/// Every event in the store, in global order, read page by page through
/// `read_all` following `complete_through`. Only meaningful while no write is
/// in flight.
pub async fn global_log<S: EventStore>(store: &S) -> Vec<RecordedEvent> {
    let mut after = GlobalPosition::START;
    let mut log = Vec::new();
    loop {
        let page = store
            .read_all(&read_all_request(after, 1_000, EventFilter::all()))
            .await
            .expect("read_all succeeds");
        if page.events.is_empty() {
            return log;
        }
        assert!(
            page.complete_through > after,
            "read_all returned events but complete_through did not advance past {after}"
        );
        after = page.complete_through;
        log.extend(page.events);
    }
}

/// Asserts that `result` is a version conflict on `stream` reporting exactly
/// `expected` and `actual`, and that its message names all three.
pub fn assert_conflict(
    result: Result<AppendReceipt, StoreError>,
    stream: &StreamId,
    expected: ExpectedVersion,
    actual: u64,
) {
    match result {
        Err(StoreError::Conflict(conflict)) => {
            assert_eq!(
                &conflict.stream, stream,
                "the conflict names the stream that did not match"
            );
            assert_eq!(
                conflict.expected, expected,
                "the conflict reports what the append expected"
            );
            assert_eq!(
                conflict.actual,
                StreamVersion::new(actual),
                "the conflict reports the stream's actual version"
            );
            let text = StoreError::Conflict(conflict).to_string();
            assert_eq!(
                text,
                format!("version conflict on stream `{stream}`: expected {expected}, found version {actual}")
            );
        }
        other => panic!("expected a version conflict on `{stream}` ({expected}, actual {actual}), got {other:?}"),
    }
}

/// Appends that must succeed.
async fn commit<S: EventStore>(store: &S, request: &AppendRequest) -> AppendReceipt {
    store.append(request).await.expect("this append must commit")
}

fn json_of(payload: &Payload) -> serde_json::Value {
    serde_json::from_str(payload.as_json()).expect("a stored payload is JSON")
}

fn versions(slice: &StreamSlice) -> Vec<u64> {
    slice.events.iter().map(|e| e.version.get()).collect()
}

fn event_ids(events: &[RecordedEvent]) -> Vec<EventId> {
    events.iter().map(|e| e.event_id).collect()
}

/// A valid event type.
fn event_type(name: &str) -> EventType {
    EventType::new(name).expect("valid event type")
}

/// Whether an error may be retried by a writer racing others (a conflict, or
/// a transient failure such as a serialization failure or deadlock victim).
fn is_race_loss(error: &StoreError) -> bool {
    matches!(error, StoreError::Conflict(_) | StoreError::Transient { .. })
}

/// Expands to one `#[tokio::test]` per conformance case for `$factory`.
#[macro_export]
macro_rules! conformance_suite {
    ($factory:expr) => {
        $crate::conformance_suite!(@cases $factory;
            versions_start_at_one_and_are_contiguous,
            reading_a_missing_stream_gives_head_zero_and_no_events,
            the_head_is_the_version_of_the_last_event,
            reading_many_streams_preserves_request_order,
            reading_after_a_version_returns_only_later_events,
            page_size_caps_events_per_stream,
            similar_stream_ids_are_separate_streams,
            a_multi_stream_append_writes_every_stream,
            a_conflict_on_the_first_stream_writes_nothing,
            a_conflict_on_a_middle_stream_writes_nothing,
            a_conflict_on_the_last_stream_writes_nothing,
            a_passing_version_check_writes_nothing_to_its_stream,
            a_failing_version_check_fails_the_whole_append,
            a_multi_stream_read_never_sees_half_an_append,
            expected_any_always_passes,
            expected_no_stream_passes_only_on_a_missing_stream,
            expected_stream_exists_passes_only_on_an_existing_stream,
            expected_exact_passes_only_at_that_version,
            expected_exact_zero_means_no_stream,
            expected_exact_on_a_missing_stream_reports_version_zero,
            a_repeated_append_returns_the_original_receipt,
            a_repeated_command_id_with_other_events_writes_nothing,
            a_repeated_command_id_with_stale_versions_is_deduplicated,
            an_invalid_append_does_not_claim_its_command_id,
            a_conflict_names_the_first_failing_stream_in_request_order,
            a_batch_gives_each_request_its_own_outcome,
            a_batch_decides_its_requests_in_order,
            a_command_id_repeated_in_a_batch_commits_once,
            positions_increase_in_commit_order_across_streams,
            read_all_returns_the_events_after_a_position,
            read_all_limit_counts_matching_events,
            read_all_filters_by_stream,
            read_all_filters_by_stream_prefix,
            read_all_filters_by_event_type,
            read_all_filter_conditions_combine,
            paging_by_complete_through_reassembles_the_log,
            complete_through_advances_past_filtered_out_events,
            an_append_with_no_streams_is_refused,
            an_append_with_no_events_is_refused,
            an_append_naming_a_stream_twice_is_refused,
            an_append_with_too_many_events_is_refused,
            an_append_to_too_many_streams_is_refused,
            an_oversized_payload_is_refused,
            a_payload_that_is_not_storable_json_is_refused,
            a_read_naming_a_stream_twice_is_refused,
            events_and_metadata_round_trip_exactly,
            payloads_in_either_codec_read_back_as_the_same_event,
            concurrent_exact_appends_lose_no_update,
            concurrent_appends_with_one_command_id_commit_once,
            concurrent_overlapping_multi_stream_appends_stay_atomic,
            a_dropped_append_is_all_or_nothing_and_settled_by_resending,
            a_global_reader_never_misses_or_reorders_events,
            a_tombstoned_stream_refuses_every_later_write,
            a_tombstoned_stream_reads_as_deleted_with_its_events,
            a_repeated_tombstone_returns_the_original_receipt,
            tombstoning_a_tombstoned_stream_is_refused,
            a_tombstone_is_atomic_with_a_multi_stream_append,
            a_pure_version_check_of_a_tombstoned_stream_still_passes,
            a_tombstone_without_events_is_refused,
            a_batch_sees_a_tombstone_of_an_earlier_request,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::conformance::$case($factory).await;
            }
        )*
    };
}
