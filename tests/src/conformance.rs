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
//! Cases are grouped by the rule they check:
//!
//! 1. streams and reads: versions, heads, multi-stream reads, `after`, paging;
//! 2. atomic multi-stream appends, including pure version checks;
//! 3. expected versions, and what a conflict reports;
//! 4. idempotency by command id, and batches of appends;
//! 5. global order and `read_all` (filters, limits, `complete_through`);
//! 6. bad input, refused with a typed error and without changing anything;
//! 7. exact round trip of events and their metadata;
//! 8. concurrency and cancellation: no lost update, one commit per command
//!    id, atomic visibility, a global reader that never misses an event, and
//!    appends dropped part-way that are all-or-nothing.

use crate::StoreFactory;
use eventcore::*;
use eventcore_tokio::EventStore;
use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

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
        id: RequestId::new(u64::from(seed)),
        metadata,
        streams: vec![StreamAppend {
            stream: stream.clone(),
            expected,
            events: tested_events(count),
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
        });
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
            id: RequestId::new(1),
            metadata: Arc::new(self.metadata),
            streams: self.streams,
        }
    }
}

/// Reads `streams` whole in one request.
pub async fn read<S: EventStore>(store: &S, streams: &[StreamId]) -> Vec<StreamSlice> {
    store
        .read(&ReadRequest::new(RequestId::new(1), streams.iter().cloned()))
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

/// Whether an error may be retried by a writer racing others (a conflict, or
/// a transient failure such as a serialization failure or deadlock victim).
fn is_race_loss(error: &StoreError) -> bool {
    matches!(error, StoreError::Conflict(_) | StoreError::Transient { .. })
}

// ---------------------------------------------------------------------------
// 1. Streams and reads
// ---------------------------------------------------------------------------

/// Versions start at 1 and stay contiguous across appends.
pub async fn versions_start_at_one_and_are_contiguous<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("contiguous");
    let first = commit(&store, &Append::new().to(&s, ExpectedVersion::NoStream, 2).build()).await;
    assert_eq!(first.streams[0].first_version, StreamVersion::new(1));
    assert_eq!(first.streams[0].last_version, StreamVersion::new(2));
    let second = commit(
        &store,
        &Append::new()
            .to(&s, ExpectedVersion::Exact(StreamVersion::new(2)), 3)
            .build(),
    )
    .await;
    assert_eq!(second.streams[0].first_version, StreamVersion::new(3));
    assert_eq!(second.streams[0].last_version, StreamVersion::new(5));
    let slice = &read(&store, std::slice::from_ref(&s)).await[0];
    assert_eq!(versions(slice), vec![1, 2, 3, 4, 5]);
    assert_eq!(slice.head, StreamVersion::new(5));
    assert!(slice.events.iter().all(|e| e.stream_id == s));
}

/// A stream that was never written reads as head 0 with no events.
pub async fn reading_a_missing_stream_gives_head_zero_and_no_events<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    commit(
        &store,
        &Append::new().to(&stream("exists"), ExpectedVersion::Any, 1).build(),
    )
    .await;
    let slices = read(&store, &[stream("never-written")]).await;
    assert_eq!(slices.len(), 1);
    assert_eq!(slices[0].stream, stream("never-written"));
    assert_eq!(slices[0].head, StreamVersion::NONE);
    assert!(slices[0].events.is_empty());
}

/// The head is the version of the last event, whatever part was asked for.
pub async fn the_head_is_the_version_of_the_last_event<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("headed");
    for n in 1..=3u64 {
        commit(&store, &Append::new().to(&s, ExpectedVersion::Any, 2).build()).await;
        assert_eq!(head(&store, &s).await, StreamVersion::new(2 * n));
    }
    let request = ReadRequest {
        id: RequestId::new(1),
        streams: vec![StreamRead {
            stream: s.clone(),
            after: StreamVersion::new(4),
        }],
        page_size: None,
    };
    let response = store.read(&request).await.expect("read");
    let slice = &response.streams[0];
    assert_eq!(versions(slice), vec![5, 6]);
    assert_eq!(
        slice.head,
        StreamVersion::new(6),
        "reading a suffix still reports the head"
    );
}

/// One request reads many streams; slices come back in request order, a
/// missing stream included, each with only its own events.
pub async fn reading_many_streams_preserves_request_order<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let (a, b, c, missing) = (stream("m-a"), stream("m-b"), stream("m-c"), stream("m-missing"));
    commit(&store, &Append::new().to(&a, ExpectedVersion::Any, 1).build()).await;
    commit(&store, &Append::new().to(&b, ExpectedVersion::Any, 2).build()).await;
    commit(&store, &Append::new().to(&c, ExpectedVersion::Any, 3).build()).await;

    let order = [c.clone(), missing.clone(), a.clone(), b.clone()];
    let slices = read(&store, &order).await;
    let names: Vec<&StreamId> = slices.iter().map(|s| &s.stream).collect();
    assert_eq!(
        names,
        order.iter().collect::<Vec<_>>(),
        "slices follow the request order"
    );
    let heads: Vec<u64> = slices.iter().map(|s| s.head.get()).collect();
    assert_eq!(heads, vec![3, 0, 1, 2]);
    for slice in &slices {
        assert_eq!(slice.events.len() as u64, slice.head.get());
        assert!(slice.events.iter().all(|e| e.stream_id == slice.stream));
    }
}

/// `after` returns only the events with a later version; at or beyond the
/// head it returns none, but still the head.
pub async fn reading_after_a_version_returns_only_later_events<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("after");
    commit(&store, &Append::new().to(&s, ExpectedVersion::NoStream, 5).build()).await;
    let read_after = |after: u64| ReadRequest {
        id: RequestId::new(after),
        streams: vec![StreamRead {
            stream: s.clone(),
            after: StreamVersion::new(after),
        }],
        page_size: None,
    };
    let cases: [(u64, Vec<u64>); 4] = [(0, vec![1, 2, 3, 4, 5]), (2, vec![3, 4, 5]), (4, vec![5]), (5, vec![])];
    for (after, expected) in cases {
        let response = store.read(&read_after(after)).await.expect("read");
        let slice = &response.streams[0];
        assert_eq!(versions(slice), expected, "events after version {after}");
        assert_eq!(slice.head, StreamVersion::new(5));
    }
    let beyond = store.read(&read_after(9)).await.expect("read beyond the head");
    assert!(beyond.streams[0].events.is_empty());
    assert_eq!(beyond.streams[0].head, StreamVersion::new(5));
}

/// `page_size` caps the events per stream; reading on from the last version
/// received walks every stream to its head without gaps or repeats.
pub async fn page_size_caps_events_per_stream<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let (a, b, c) = (stream("page-a"), stream("page-b"), stream("page-c"));
    commit(&store, &Append::new().to(&a, ExpectedVersion::Any, 5).build()).await;
    commit(&store, &Append::new().to(&b, ExpectedVersion::Any, 1).build()).await;

    let page_size = NonZeroU32::new(2);
    let first = store
        .read(&ReadRequest {
            page_size,
            ..ReadRequest::new(RequestId::new(1), [a.clone(), b.clone(), c.clone()])
        })
        .await
        .expect("paged read");
    assert_eq!(
        versions(&first.streams[0]),
        vec![1, 2],
        "a long stream is cut at the page size"
    );
    assert_eq!(
        first.streams[0].head,
        StreamVersion::new(5),
        "a cut slice still reports the head"
    );
    assert_eq!(versions(&first.streams[1]), vec![1], "a short stream comes whole");
    assert_eq!(first.streams[2].head, StreamVersion::NONE);

    let mut seen = Vec::new();
    let mut after = StreamVersion::NONE;
    loop {
        let response = store
            .read(&ReadRequest {
                id: RequestId::new(2),
                streams: vec![StreamRead {
                    stream: a.clone(),
                    after,
                }],
                page_size,
            })
            .await
            .expect("paged read");
        let slice = &response.streams[0];
        assert!(slice.events.len() <= 2);
        let Some(last) = slice.events.last() else { break };
        seen.extend(versions(slice));
        after = last.version;
    }
    assert_eq!(seen, vec![1, 2, 3, 4, 5]);
}

/// Stream ids are compared exactly: ids that share a prefix, differ in case
/// or contain pattern characters are separate streams.
pub async fn similar_stream_ids_are_separate_streams<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let ids = [
        stream("acct"),
        stream("acct-1"),
        stream("ACCT"),
        stream("acc%"),
        stream("acc_"),
        stream("ac\\ct"),
        stream("akkount ünïcødé ✓"),
    ];
    for (n, id) in ids.iter().enumerate() {
        commit(&store, &Append::new().to(id, ExpectedVersion::NoStream, n + 1).build()).await;
    }
    let slices = read(&store, &ids).await;
    for (n, slice) in slices.iter().enumerate() {
        assert_eq!(slice.stream, ids[n]);
        assert_eq!(slice.head, StreamVersion::new(n as u64 + 1), "stream `{}`", ids[n]);
        assert!(slice.events.iter().all(|e| e.stream_id == ids[n]));
    }
}

// ---------------------------------------------------------------------------
// 2. Atomic multi-stream appends
// ---------------------------------------------------------------------------

/// One append to several streams writes all of them; the receipt lists each
/// stream in request order with its versions and positions, which match what
/// is stored.
pub async fn a_multi_stream_append_writes_every_stream<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let (a, b, c) = (stream("multi-a"), stream("multi-b"), stream("multi-c"));
    commit(&store, &Append::new().to(&b, ExpectedVersion::NoStream, 2).build()).await;

    let request = Append::new()
        .to(&c, ExpectedVersion::NoStream, 1)
        .to(&a, ExpectedVersion::Any, 3)
        .to(&b, ExpectedVersion::Exact(StreamVersion::new(2)), 2)
        .build();
    let receipt = commit(&store, &request).await;
    assert_eq!(receipt.command_id, request.command_id());
    assert!(!receipt.deduplicated);
    let order: Vec<&StreamId> = receipt.streams.iter().map(|s| &s.stream).collect();
    assert_eq!(order, vec![&c, &a, &b], "the receipt follows the request order");
    let ranges: Vec<(u64, u64)> = receipt
        .streams
        .iter()
        .map(|s| (s.first_version.get(), s.last_version.get()))
        .collect();
    assert_eq!(ranges, vec![(1, 1), (1, 3), (3, 4)]);

    let slices = read(&store, &[c.clone(), a.clone(), b.clone()]).await;
    for (commit, slice) in receipt.streams.iter().zip(&slices) {
        let written: Vec<&RecordedEvent> = slice
            .events
            .iter()
            .filter(|e| e.metadata.command_id == request.command_id())
            .collect();
        assert_eq!(written.len(), commit.positions.len());
        let stored_positions: Vec<GlobalPosition> = written.iter().map(|e| e.position).collect();
        assert_eq!(
            stored_positions, commit.positions,
            "receipt positions match the stored events"
        );
        assert_eq!(written[0].version, commit.first_version);
        assert_eq!(written[written.len() - 1].version, commit.last_version);
    }
    for (entry, slice) in request.streams.iter().zip(&slices) {
        let stored: Vec<EventId> = slice
            .events
            .iter()
            .filter(|e| e.metadata.command_id == request.command_id())
            .map(|e| e.event_id)
            .collect();
        let sent: Vec<EventId> = entry.events.iter().map(|e| e.event_id).collect();
        assert_eq!(
            stored, sent,
            "each stream holds exactly the events addressed to it, in order"
        );
    }
    assert_eq!(
        receipt.last_position(),
        *receipt.streams[2].positions.last().expect("b got events")
    );
}

async fn conflict_leaves_every_stream_untouched<F: StoreFactory>(factory: F, conflicting: usize) {
    let store = factory.fresh().await;
    let streams = [stream("atomic-a"), stream("atomic-b"), stream("atomic-c")];
    for s in &streams {
        commit(&store, &Append::new().to(s, ExpectedVersion::NoStream, 2).build()).await;
    }
    let before = global_log(&store).await;
    let mut append = Append::new();
    for (i, s) in streams.iter().enumerate() {
        let expected = if i == conflicting {
            ExpectedVersion::Exact(StreamVersion::new(1))
        } else {
            ExpectedVersion::Exact(StreamVersion::new(2))
        };
        append = append.to(s, expected, 2);
    }
    let request = append.build();
    assert_conflict(
        store.append(&request).await,
        &streams[conflicting],
        ExpectedVersion::Exact(StreamVersion::new(1)),
        2,
    );
    let slices = read(&store, &streams).await;
    assert!(
        slices.iter().all(|s| s.head == StreamVersion::new(2)),
        "no stream moved: {slices:?}"
    );
    assert_eq!(global_log(&store).await, before, "nothing was written anywhere");

    // The refused command id was not recorded: the same id commits later.
    let retry = Append::new()
        .with_command_id(request.command_id())
        .to(&streams[conflicting], ExpectedVersion::Exact(StreamVersion::new(2)), 1)
        .build();
    let receipt = commit(&store, &retry).await;
    assert!(
        !receipt.deduplicated,
        "a conflicting append does not claim its command id"
    );
}

/// A conflict on the first stream of an append writes nothing to any stream.
pub async fn a_conflict_on_the_first_stream_writes_nothing<F: StoreFactory>(factory: F) {
    conflict_leaves_every_stream_untouched(factory, 0).await;
}

/// A conflict on a middle stream of an append writes nothing to any stream.
pub async fn a_conflict_on_a_middle_stream_writes_nothing<F: StoreFactory>(factory: F) {
    conflict_leaves_every_stream_untouched(factory, 1).await;
}

/// A conflict on the last stream of an append writes nothing to any stream.
pub async fn a_conflict_on_the_last_stream_writes_nothing<F: StoreFactory>(factory: F) {
    conflict_leaves_every_stream_untouched(factory, 2).await;
}

/// When several expectations of one append fail, the conflict names the
/// first failing stream in request order (not in the store's lock order).
pub async fn a_conflict_names_the_first_failing_stream_in_request_order<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    // Request order z, m, a: the reverse of byte order.
    let (z, m, a) = (stream("order-z"), stream("order-m"), stream("order-a"));
    for s in [&z, &m, &a] {
        commit(&store, &Append::new().to(s, ExpectedVersion::NoStream, 1).build()).await;
    }
    let request = Append::new()
        .to(&z, ExpectedVersion::Exact(StreamVersion::new(1)), 1)
        .to(&m, ExpectedVersion::Exact(StreamVersion::new(7)), 1)
        .check(&a, ExpectedVersion::NoStream)
        .build();
    assert_conflict(
        store.append(&request).await,
        &m,
        ExpectedVersion::Exact(StreamVersion::new(7)),
        1,
    );
    let request = Append::new()
        .check(&z, ExpectedVersion::Exact(StreamVersion::new(1)))
        .to(&m, ExpectedVersion::Exact(StreamVersion::new(1)), 1)
        .to(&a, ExpectedVersion::StreamExists, 1)
        .to(&stream("order-b"), ExpectedVersion::StreamExists, 1)
        .build();
    assert_conflict(
        store.append(&request).await,
        &stream("order-b"),
        ExpectedVersion::StreamExists,
        0,
    );
    let heads: Vec<u64> = read(&store, &[z, m, a]).await.iter().map(|s| s.head.get()).collect();
    assert_eq!(heads, vec![1, 1, 1], "nothing was written");
}

/// An entry without events is a pure version check: when the stream is
/// still at the expected version the append commits, the checked stream is
/// not written, and the receipt lists only streams that received events.
pub async fn a_passing_version_check_writes_nothing_to_its_stream<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let (written, checked, absent) = (stream("vc-written"), stream("vc-checked"), stream("vc-absent"));
    commit(
        &store,
        &Append::new().to(&checked, ExpectedVersion::NoStream, 3).build(),
    )
    .await;
    let before = read(&store, std::slice::from_ref(&checked)).await;

    let receipt = commit(
        &store,
        &Append::new()
            .check(&checked, ExpectedVersion::Exact(StreamVersion::new(3)))
            .to(&written, ExpectedVersion::NoStream, 1)
            .check(&absent, ExpectedVersion::NoStream)
            .build(),
    )
    .await;
    let receipt_streams: Vec<&StreamId> = receipt.streams.iter().map(|s| &s.stream).collect();
    assert_eq!(
        receipt_streams,
        vec![&written],
        "only streams that received events are in the receipt"
    );
    assert_eq!(
        read(&store, std::slice::from_ref(&checked)).await,
        before,
        "the checked stream is untouched"
    );
    assert_eq!(
        head(&store, &absent).await,
        StreamVersion::NONE,
        "a checked missing stream is not created"
    );
    assert_eq!(head(&store, &written).await, StreamVersion::new(1));
    let log = global_log(&store).await;
    assert!(log.iter().all(|e| e.stream_id != absent));
}

/// A version check on a stream that moved fails the whole append.
pub async fn a_failing_version_check_fails_the_whole_append<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let (written, checked) = (stream("vcf-written"), stream("vcf-checked"));
    commit(
        &store,
        &Append::new().to(&checked, ExpectedVersion::NoStream, 1).build(),
    )
    .await;
    let decided_at = head(&store, &checked).await;
    commit(&store, &Append::new().to(&checked, ExpectedVersion::Any, 1).build()).await;
    let before = global_log(&store).await;

    let result = store
        .append(
            &Append::new()
                .to(&written, ExpectedVersion::NoStream, 2)
                .check(&checked, ExpectedVersion::Exact(decided_at))
                .build(),
        )
        .await;
    assert_conflict(result, &checked, ExpectedVersion::Exact(StreamVersion::new(1)), 2);
    assert_eq!(head(&store, &written).await, StreamVersion::NONE);
    assert_eq!(global_log(&store).await, before);
}

/// While appends to several streams commit, a single read of those streams
/// never sees part of an append: every append here adds one event to two of
/// three streams, so the heads read together always sum to an even number.
pub async fn a_multi_stream_read_never_sees_half_an_append<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let streams = [stream("vis-x"), stream("vis-y"), stream("vis-z")];
    let done = Arc::new(AtomicBool::new(false));

    let reader = {
        let (store, streams, done) = (store.clone(), streams.clone(), done.clone());
        tokio::spawn(async move {
            let mut reads = 0u32;
            while !done.load(Ordering::Acquire) || reads == 0 {
                let response = store
                    .read(&ReadRequest::new(RequestId::new(1), streams.iter().cloned()))
                    .await
                    .expect("read");
                let sum: u64 = response.streams.iter().map(|s| s.head.get()).sum();
                assert_eq!(sum % 2, 0, "a read saw half an append: {:?}", response.streams);
                for slice in &response.streams {
                    assert_eq!(slice.events.len() as u64, slice.head.get(), "slice and head agree");
                }
                reads += 1;
                tokio::task::yield_now().await;
            }
            reads
        })
    };
    let mut writers = Vec::new();
    for w in 0..3usize {
        let (store, streams) = (store.clone(), streams.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..20usize {
                let first = (w + i) % 3;
                let second = (w + i + 1) % 3;
                let request = Append::new()
                    .to(&streams[first], ExpectedVersion::Any, 1)
                    .to(&streams[second], ExpectedVersion::Any, 1)
                    .build();
                loop {
                    match store.append(&request).await {
                        Ok(_) => break,
                        Err(e) if is_race_loss(&e) => tokio::task::yield_now().await,
                        Err(e) => panic!("append failed: {e}"),
                    }
                }
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer task");
    }
    done.store(true, Ordering::Release);
    reader.await.expect("reader task");
    let total: u64 = read(&store, &streams).await.iter().map(|s| s.head.get()).sum();
    assert_eq!(total, 3 * 20 * 2);
}

// ---------------------------------------------------------------------------
// 3. Expected versions
// ---------------------------------------------------------------------------

/// `Any` commits whatever the stream's version, existing or not.
pub async fn expected_any_always_passes<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("any");
    let first = commit(&store, &Append::new().to(&s, ExpectedVersion::Any, 1).build()).await;
    assert_eq!(first.streams[0].first_version, StreamVersion::new(1));
    let second = commit(&store, &Append::new().to(&s, ExpectedVersion::Any, 2).build()).await;
    assert_eq!(second.streams[0].first_version, StreamVersion::new(2));
    assert_eq!(head(&store, &s).await, StreamVersion::new(3));
}

/// `NoStream` commits only to a stream that does not exist yet.
pub async fn expected_no_stream_passes_only_on_a_missing_stream<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("no-stream");
    commit(&store, &Append::new().to(&s, ExpectedVersion::NoStream, 2).build()).await;
    let before = global_log(&store).await;
    assert_conflict(
        store
            .append(&Append::new().to(&s, ExpectedVersion::NoStream, 1).build())
            .await,
        &s,
        ExpectedVersion::NoStream,
        2,
    );
    assert_eq!(global_log(&store).await, before);
}

/// `StreamExists` commits only to a stream that has events.
pub async fn expected_stream_exists_passes_only_on_an_existing_stream<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("exists");
    assert_conflict(
        store
            .append(&Append::new().to(&s, ExpectedVersion::StreamExists, 1).build())
            .await,
        &s,
        ExpectedVersion::StreamExists,
        0,
    );
    assert_eq!(head(&store, &s).await, StreamVersion::NONE);
    assert!(global_log(&store).await.is_empty());
    commit(&store, &Append::new().to(&s, ExpectedVersion::NoStream, 1).build()).await;
    let receipt = commit(&store, &Append::new().to(&s, ExpectedVersion::StreamExists, 1).build()).await;
    assert_eq!(receipt.streams[0].first_version, StreamVersion::new(2));
}

/// `Exact(n)` commits only at version `n`: a stale (lower) or a future
/// (higher) expectation conflicts and reports the actual version.
pub async fn expected_exact_passes_only_at_that_version<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("exact");
    commit(&store, &Append::new().to(&s, ExpectedVersion::NoStream, 3).build()).await;
    let before = global_log(&store).await;
    for wrong in [1u64, 2, 4, 10] {
        let expected = ExpectedVersion::Exact(StreamVersion::new(wrong));
        assert_conflict(
            store.append(&Append::new().to(&s, expected, 1).build()).await,
            &s,
            expected,
            3,
        );
    }
    assert_eq!(global_log(&store).await, before, "no conflicting append wrote anything");
    let receipt = commit(
        &store,
        &Append::new()
            .to(&s, ExpectedVersion::Exact(StreamVersion::new(3)), 1)
            .build(),
    )
    .await;
    assert_eq!(receipt.streams[0].first_version, StreamVersion::new(4));
}

/// `Exact(0)` means the same as `NoStream`.
pub async fn expected_exact_zero_means_no_stream<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("exact-zero");
    let zero = ExpectedVersion::Exact(StreamVersion::NONE);
    let receipt = commit(&store, &Append::new().to(&s, zero, 1).build()).await;
    assert_eq!(receipt.streams[0].first_version, StreamVersion::new(1));
    assert_conflict(store.append(&Append::new().to(&s, zero, 1).build()).await, &s, zero, 1);
    assert_eq!(head(&store, &s).await, StreamVersion::new(1));
}

/// `Exact(n)` against a stream that does not exist conflicts with actual 0.
pub async fn expected_exact_on_a_missing_stream_reports_version_zero<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("exact-missing");
    let expected = ExpectedVersion::Exact(StreamVersion::new(2));
    assert_conflict(
        store.append(&Append::new().to(&s, expected, 1).build()).await,
        &s,
        expected,
        0,
    );
    assert!(global_log(&store).await.is_empty());
}

// ---------------------------------------------------------------------------
// 4. Idempotency
// ---------------------------------------------------------------------------

/// Re-sending a committed append returns the original receipt, flagged as
/// deduplicated, and writes nothing.
pub async fn a_repeated_append_returns_the_original_receipt<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let (a, b) = (stream("idem-a"), stream("idem-b"));
    let request = Append::new()
        .to(&a, ExpectedVersion::NoStream, 2)
        .to(&b, ExpectedVersion::NoStream, 1)
        .build();
    let original = commit(&store, &request).await;
    assert!(!original.deduplicated);
    let log = global_log(&store).await;

    let again = commit(&store, &request).await;
    assert!(again.deduplicated, "the repeat is flagged");
    assert_eq!(again.command_id, original.command_id);
    assert_eq!(again.streams, original.streams, "same streams, versions and positions");
    assert!(again.same_commit(&original));
    assert_eq!(global_log(&store).await, log, "nothing was written again");
}

/// A repeat with the same command id but other events (or other streams)
/// still returns the first receipt and writes none of them.
pub async fn a_repeated_command_id_with_other_events_writes_nothing<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let (a, other) = (stream("idem2-a"), stream("idem2-other"));
    let first = Append::new().to(&a, ExpectedVersion::NoStream, 1);
    let command_id = first.command_id();
    let original = commit(&store, &first.build()).await;
    let log = global_log(&store).await;

    let different = Append::new()
        .with_command_id(command_id)
        .to(&a, ExpectedVersion::Any, 3)
        .to(&other, ExpectedVersion::Any, 2)
        .build();
    let again = commit(&store, &different).await;
    assert!(again.deduplicated);
    assert!(again.same_commit(&original));
    assert_eq!(global_log(&store).await, log);
    assert_eq!(head(&store, &other).await, StreamVersion::NONE);
}

/// A repeat whose expected versions are stale by now is deduplicated, not
/// refused as a conflict: the command id is checked first.
pub async fn a_repeated_command_id_with_stale_versions_is_deduplicated<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("idem-stale");
    let request = Append::new().to(&s, ExpectedVersion::NoStream, 1).build();
    let original = commit(&store, &request).await;
    // Other commands move the stream on.
    commit(&store, &Append::new().to(&s, ExpectedVersion::Any, 2).build()).await;
    let log = global_log(&store).await;

    let again = store
        .append(&request)
        .await
        .expect("a repeat is answered with its receipt");
    assert!(again.deduplicated);
    assert!(again.same_commit(&original));
    assert_eq!(global_log(&store).await, log);
    assert_eq!(head(&store, &s).await, StreamVersion::new(3));
}

/// An append refused as invalid does not claim its command id.
pub async fn an_invalid_append_does_not_claim_its_command_id<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("idem-invalid");
    let invalid = Append::new().check(&s, ExpectedVersion::Any);
    let command_id = invalid.command_id();
    let result = store.append(&invalid.build()).await;
    assert!(
        matches!(result, Err(StoreError::InvalidAppend(InvalidAppend::NoEvents))),
        "{result:?}"
    );
    let receipt = commit(
        &store,
        &Append::new()
            .with_command_id(command_id)
            .to(&s, ExpectedVersion::Any, 1)
            .build(),
    )
    .await;
    assert!(!receipt.deduplicated);
    assert_eq!(head(&store, &s).await, StreamVersion::new(1));
}

/// `append_batch` answers each request on its own, in request order: a
/// conflict or invalid request fails only itself, a repeated command id is
/// deduplicated, and each request stays atomic across its streams.
pub async fn a_batch_gives_each_request_its_own_outcome<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let (a, b, c, d) = (
        stream("batch-a"),
        stream("batch-b"),
        stream("batch-c"),
        stream("batch-d"),
    );
    let earlier = Append::new().to(&b, ExpectedVersion::NoStream, 1).build();
    let earlier_receipt = commit(&store, &earlier).await;
    assert!(
        store.append_batch(&[]).await.is_empty(),
        "an empty batch has no outcomes"
    );

    let batch = [
        Append::new().to(&a, ExpectedVersion::NoStream, 2).build(),
        // Writes to `d`, but conflicts on `b`: nothing of it may land.
        Append::new()
            .to(&d, ExpectedVersion::NoStream, 1)
            .to(&b, ExpectedVersion::NoStream, 1)
            .build(),
        Append::new().check(&c, ExpectedVersion::Any).build(),
        earlier.clone(),
        Append::new().to(&c, ExpectedVersion::NoStream, 1).build(),
    ];
    let outcomes = store.append_batch(&batch).await;
    assert_eq!(outcomes.len(), batch.len(), "one outcome per request");
    let first = outcomes[0].as_ref().expect("an independent request commits");
    assert!(!first.deduplicated);
    assert_eq!(first.streams[0].stream, a);
    assert_conflict(outcomes[1].clone(), &b, ExpectedVersion::NoStream, 1);
    assert!(
        matches!(outcomes[2], Err(StoreError::InvalidAppend(InvalidAppend::NoEvents))),
        "{:?}",
        outcomes[2]
    );
    let repeat = outcomes[3]
        .as_ref()
        .expect("a repeated command id is answered with its receipt");
    assert!(repeat.deduplicated && repeat.same_commit(&earlier_receipt));
    let last = outcomes[4]
        .as_ref()
        .expect("a request after failed neighbours still commits");
    assert_eq!(last.streams[0].stream, c);

    let slices = read(&store, &[a.clone(), b.clone(), c.clone(), d.clone()]).await;
    let heads: Vec<u64> = slices.iter().map(|s| s.head.get()).collect();
    assert_eq!(
        heads,
        vec![2, 1, 1, 0],
        "a, b (untouched), c, d (the conflicting request left nothing)"
    );
    for (outcome, request) in outcomes.iter().zip(&batch) {
        if let Ok(receipt) = outcome {
            assert_eq!(
                receipt.command_id,
                request.command_id(),
                "outcomes are in request order"
            );
        }
    }
}

/// Requests of one batch are decided in request order: each sees what the
/// requests before it in the batch wrote, as if they had been sent one after
/// another.
pub async fn a_batch_decides_its_requests_in_order<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let (a, b) = (stream("ordered-a"), stream("ordered-b"));
    let batch = [
        Append::new().to(&a, ExpectedVersion::NoStream, 2).build(),
        // Sees the first request's two events.
        Append::new()
            .to(&a, ExpectedVersion::Exact(StreamVersion::new(2)), 1)
            .to(&b, ExpectedVersion::NoStream, 1)
            .build(),
        // Expects what `a` was before the batch: refused, with the head the
        // batch had reached by then.
        Append::new().to(&a, ExpectedVersion::NoStream, 1).build(),
        Append::new().to(&b, ExpectedVersion::StreamExists, 1).build(),
        Append::new()
            .check(&a, ExpectedVersion::Exact(StreamVersion::new(3)))
            .to(&b, ExpectedVersion::Any, 1)
            .build(),
    ];
    let outcomes = store.append_batch(&batch).await;
    assert_eq!(outcomes.len(), batch.len());
    let second = outcomes[1].as_ref().expect("the second request sees the first");
    assert_eq!(second.streams[0].first_version, StreamVersion::new(3));
    assert_eq!(second.streams[1].first_version, StreamVersion::new(1));
    assert_conflict(outcomes[2].clone(), &a, ExpectedVersion::NoStream, 3);
    let fourth = outcomes[3].as_ref().expect("b exists by then");
    assert_eq!(fourth.streams[0].first_version, StreamVersion::new(2));
    let fifth = outcomes[4].as_ref().expect("a is at 3 by then");
    assert_eq!(fifth.streams[0].stream, b);
    assert_eq!(fifth.streams.len(), 1, "a pure check writes nothing");
    assert_eq!(fifth.streams[0].first_version, StreamVersion::new(3));

    let slices = read(&store, &[a.clone(), b.clone()]).await;
    assert_eq!(slices[0].head, StreamVersion::new(3));
    assert_eq!(slices[1].head, StreamVersion::new(3));
    let mut positions: Vec<GlobalPosition> = outcomes
        .iter()
        .flatten()
        .flat_map(|r| r.streams.iter().flat_map(|c| c.positions.iter().copied()))
        .collect();
    let stored: Vec<GlobalPosition> = slices
        .iter()
        .flat_map(|s| s.events.iter().map(|e| e.position))
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "receipts follow request order"
    );
    positions.sort();
    let mut stored_sorted = stored.clone();
    stored_sorted.sort();
    assert_eq!(positions, stored_sorted, "the receipts name exactly the stored events");
}

/// A command id repeated within one batch commits at most once: a repeat of
/// a request that committed gets its receipt; a repeat of one that was
/// refused is decided on its own.
pub async fn a_command_id_repeated_in_a_batch_commits_once<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let (a, b) = (stream("repeat-a"), stream("repeat-b"));
    let first = Append::new().to(&a, ExpectedVersion::NoStream, 1).build();
    let refused = Append::new().to(&b, ExpectedVersion::StreamExists, 1);
    let retried = Append::new()
        .with_command_id(refused.command_id())
        .to(&b, ExpectedVersion::NoStream, 2)
        .build();
    let refused = refused.build();
    let batch = [first.clone(), refused, first.clone(), retried.clone(), retried.clone()];
    let outcomes = store.append_batch(&batch).await;
    assert_eq!(outcomes.len(), batch.len());
    let original = outcomes[0].as_ref().expect("the first request commits");
    assert!(!original.deduplicated);
    assert_conflict(outcomes[1].clone(), &b, ExpectedVersion::StreamExists, 0);
    let repeat = outcomes[2].as_ref().expect("the repeat is answered");
    assert!(repeat.deduplicated && repeat.same_commit(original), "{repeat:?}");
    let committed = outcomes[3].as_ref().expect("same id, refused before: decided anew");
    assert!(!committed.deduplicated);
    assert_eq!(committed.streams[0].first_version, StreamVersion::new(1));
    let again = outcomes[4].as_ref().expect("its repeat is answered");
    assert!(again.deduplicated && again.same_commit(committed), "{again:?}");

    let slices = read(&store, &[a.clone(), b.clone()]).await;
    assert_eq!(slices[0].head, StreamVersion::new(1), "a written once");
    assert_eq!(slices[1].head, StreamVersion::new(2), "b written once");
    // Sent again later, alone: the stored receipt, for both ids.
    let resent = store.append(&retried).await.expect("a re-send is answered");
    assert!(resent.deduplicated && resent.same_commit(committed), "{resent:?}");
    let resent = store.append(&first).await.expect("a re-send is answered");
    assert!(resent.deduplicated && resent.same_commit(original), "{resent:?}");
}

// ---------------------------------------------------------------------------
// 5. Global order and read_all
// ---------------------------------------------------------------------------

/// Positions strictly increase in commit order, across streams and within
/// one append (never assumed contiguous).
pub async fn positions_increase_in_commit_order_across_streams<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let (a, b, c) = (stream("order-a"), stream("order-b"), stream("order-c"));
    let mut receipts = Vec::new();
    for request in [
        Append::new().to(&a, ExpectedVersion::Any, 2).build(),
        Append::new().to(&b, ExpectedVersion::Any, 1).build(),
        Append::new()
            .to(&c, ExpectedVersion::Any, 2)
            .to(&a, ExpectedVersion::Any, 1)
            .build(),
        Append::new().to(&b, ExpectedVersion::Any, 3).build(),
    ] {
        receipts.push(commit(&store, &request).await);
    }
    let mut previous = GlobalPosition::START;
    for receipt in &receipts {
        for commit in &receipt.streams {
            for &position in &commit.positions {
                assert!(position > previous, "{position} after {previous}");
                previous = position;
            }
        }
    }
    let log = global_log(&store).await;
    let receipt_positions: Vec<GlobalPosition> = receipts
        .iter()
        .flat_map(|r| r.streams.iter().flat_map(|s| s.positions.iter().copied()))
        .collect();
    let log_positions: Vec<GlobalPosition> = log.iter().map(|e| e.position).collect();
    assert_eq!(log_positions, receipt_positions, "the global log is in commit order");
    assert!(log.windows(2).all(|w| w[0].position < w[1].position));
    assert!(log[0].position > GlobalPosition::START);
}

/// `read_all` returns exactly the events after the given position.
pub async fn read_all_returns_the_events_after_a_position<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("global");
    for _ in 0..3 {
        commit(&store, &Append::new().to(&s, ExpectedVersion::Any, 2).build()).await;
    }
    let log = global_log(&store).await;
    assert_eq!(log.len(), 6);
    for k in 0..log.len() {
        let after = log[k].position;
        let page = store
            .read_all(&read_all_request(after, 100, EventFilter::all()))
            .await
            .expect("read_all");
        assert_eq!(event_ids(&page.events), event_ids(&log[k + 1..]), "after {after}");
        assert!(page.complete_through >= log[log.len() - 1].position);
    }
    let everything = store
        .read_all(&read_all_request(GlobalPosition::START, 100, EventFilter::all()))
        .await
        .expect("read_all");
    assert_eq!(everything.events, log);
}

/// `limit` caps the number of events returned, counted after filtering.
pub async fn read_all_limit_counts_matching_events<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let (wanted, noise) = (stream("lim-wanted"), stream("lim-noise"));
    for _ in 0..3 {
        commit(&store, &Append::new().to(&noise, ExpectedVersion::Any, 4).build()).await;
        commit(&store, &Append::new().to(&wanted, ExpectedVersion::Any, 1).build()).await;
    }
    let all = store
        .read_all(&read_all_request(GlobalPosition::START, 5, EventFilter::all()))
        .await
        .expect("read_all");
    assert_eq!(all.events.len(), 5);
    let filtered = store
        .read_all(&read_all_request(
            GlobalPosition::START,
            2,
            EventFilter::all().with_streams([wanted.clone()]),
        ))
        .await
        .expect("read_all");
    let versions: Vec<u64> = filtered.events.iter().map(|e| e.version.get()).collect();
    assert_eq!(versions, vec![1, 2], "two matching events, however many were skipped");
    assert!(filtered.events.iter().all(|e| e.stream_id == wanted));
}

async fn seed_filter_fixture<S: EventStore>(store: &S) {
    let typed = |t: &str, n: u64| new_event(t, serde_json::json!({ "n": n }));
    let writes: [(&str, &str); 8] = [
        ("account-1", "Opened"),
        ("account-2", "Opened"),
        ("order-1", "Placed"),
        ("account-1", "Deposited"),
        ("accounting", "Closed"),
        ("order-1", "Shipped"),
        ("account-2", "Deposited"),
        ("account-10", "Opened"),
    ];
    for (n, (s, t)) in writes.iter().enumerate() {
        commit(
            store,
            &Append::new()
                .with_events(&stream(s), ExpectedVersion::Any, vec![typed(t, n as u64)])
                .build(),
        )
        .await;
    }
}

async fn filtered<S: EventStore>(store: &S, filter: EventFilter) -> Vec<(String, String)> {
    let page = store
        .read_all(&read_all_request(GlobalPosition::START, 100, filter))
        .await
        .expect("read_all");
    assert!(page.events.windows(2).all(|w| w[0].position < w[1].position));
    page.events
        .iter()
        .map(|e| (e.stream_id.as_str().to_owned(), e.event_type.as_str().to_owned()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(s, t)| ((*s).to_owned(), (*t).to_owned())).collect()
}

fn event_type(name: &str) -> EventType {
    EventType::new(name).expect("valid event type")
}

/// Filtering by stream returns only events of the listed streams.
pub async fn read_all_filters_by_stream<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    seed_filter_fixture(&store).await;
    let got = filtered(
        &store,
        EventFilter::all().with_streams([stream("order-1"), stream("account-2")]),
    )
    .await;
    assert_eq!(
        got,
        pairs(&[
            ("account-2", "Opened"),
            ("order-1", "Placed"),
            ("order-1", "Shipped"),
            ("account-2", "Deposited"),
        ])
    );
    let none = filtered(&store, EventFilter::all().with_streams([stream("nobody")])).await;
    assert!(none.is_empty());
}

/// Filtering by prefix matches ids that start with it, literally.
pub async fn read_all_filters_by_stream_prefix<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    seed_filter_fixture(&store).await;
    let got = filtered(&store, EventFilter::all().with_stream_prefix("account-")).await;
    assert_eq!(
        got,
        pairs(&[
            ("account-1", "Opened"),
            ("account-2", "Opened"),
            ("account-1", "Deposited"),
            ("account-2", "Deposited"),
            ("account-10", "Opened"),
        ])
    );
    let wider = filtered(&store, EventFilter::all().with_stream_prefix("account")).await;
    assert_eq!(wider.len(), 6, "`accounting` starts with `account`");
    // Pattern characters in a prefix are literal.
    assert!(filtered(&store, EventFilter::all().with_stream_prefix("acc%"))
        .await
        .is_empty());
    assert!(filtered(&store, EventFilter::all().with_stream_prefix("account_"))
        .await
        .is_empty());
}

/// Filtering by event type returns only events of the listed types.
pub async fn read_all_filters_by_event_type<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    seed_filter_fixture(&store).await;
    let got = filtered(
        &store,
        EventFilter::all().with_event_types([event_type("Deposited"), event_type("Shipped")]),
    )
    .await;
    assert_eq!(
        got,
        pairs(&[
            ("account-1", "Deposited"),
            ("order-1", "Shipped"),
            ("account-2", "Deposited"),
        ])
    );
}

/// Filter conditions combine with AND.
pub async fn read_all_filter_conditions_combine<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    seed_filter_fixture(&store).await;
    let prefix_and_type = filtered(
        &store,
        EventFilter::all()
            .with_stream_prefix("account-")
            .with_event_types([event_type("Opened")]),
    )
    .await;
    assert_eq!(
        prefix_and_type,
        pairs(&[
            ("account-1", "Opened"),
            ("account-2", "Opened"),
            ("account-10", "Opened")
        ])
    );
    let stream_and_type = filtered(
        &store,
        EventFilter::all()
            .with_streams([stream("account-1"), stream("order-1")])
            .with_event_types([event_type("Deposited"), event_type("Placed")]),
    )
    .await;
    assert_eq!(
        stream_and_type,
        pairs(&[("order-1", "Placed"), ("account-1", "Deposited")])
    );
    let all_three = filtered(
        &store,
        EventFilter::all()
            .with_streams([stream("account-1"), stream("order-1")])
            .with_stream_prefix("order")
            .with_event_types([event_type("Shipped")]),
    )
    .await;
    assert_eq!(all_three, pairs(&[("order-1", "Shipped")]));
    let contradictory = filtered(
        &store,
        EventFilter::all()
            .with_streams([stream("account-1")])
            .with_stream_prefix("order"),
    )
    .await;
    assert!(contradictory.is_empty());
}

/// `complete_through` never goes back, covers every returned event, and lets
/// a reader page through the filtered log with no gap and no repeat, however
/// small the limit.
pub async fn paging_by_complete_through_reassembles_the_log<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    seed_filter_fixture(&store).await;
    let log = global_log(&store).await;
    let filters = [
        EventFilter::all(),
        EventFilter::all().with_stream_prefix("account-"),
        EventFilter::all().with_event_types([event_type("Opened")]),
        EventFilter::all().with_streams([stream("order-1")]),
    ];
    for filter in filters {
        let expected: Vec<EventId> = log.iter().filter(|e| filter.matches(e)).map(|e| e.event_id).collect();
        for limit in 1..=3u32 {
            let mut after = GlobalPosition::START;
            let mut seen = Vec::new();
            for _ in 0..100 {
                let page = store
                    .read_all(&read_all_request(after, limit, filter.clone()))
                    .await
                    .expect("read_all");
                assert!(page.events.len() <= limit as usize);
                assert!(page.complete_through >= after, "complete_through went back");
                for event in &page.events {
                    assert!(event.position > after, "an event at or before `after`");
                    assert!(
                        event.position <= page.complete_through,
                        "an event beyond complete_through"
                    );
                    assert!(filter.matches(event), "an event the filter excludes");
                }
                if page.events.is_empty() {
                    break;
                }
                seen.extend(event_ids(&page.events));
                after = page.complete_through;
            }
            assert_eq!(seen, expected, "filter {filter:?}, limit {limit}");
        }
    }
}

/// When every event is filtered out, `complete_through` still advances to
/// the end of the log, so a filtered subscriber can checkpoint; on an empty
/// store, or past the end, it stays at `after`.
pub async fn complete_through_advances_past_filtered_out_events<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let empty = store
        .read_all(&read_all_request(GlobalPosition::START, 10, EventFilter::all()))
        .await
        .expect("read_all on an empty store");
    assert!(empty.events.is_empty());
    assert_eq!(empty.complete_through, GlobalPosition::START);

    seed_filter_fixture(&store).await;
    let last = global_log(&store).await.last().expect("fixture written").position;
    let nothing = store
        .read_all(&read_all_request(
            GlobalPosition::START,
            10,
            EventFilter::all().with_stream_prefix("no-such-prefix"),
        ))
        .await
        .expect("read_all");
    assert!(nothing.events.is_empty());
    assert!(
        nothing.complete_through >= last,
        "a quiescent store reports every position up to {last} complete, got {}",
        nothing.complete_through
    );

    let beyond = GlobalPosition::new(last.get() + 1_000);
    let past_end = store
        .read_all(&read_all_request(beyond, 10, EventFilter::all()))
        .await
        .expect("read_all past the end");
    assert!(past_end.events.is_empty());
    assert!(
        past_end.complete_through >= beyond,
        "complete_through never goes below `after`"
    );
}

// ---------------------------------------------------------------------------
// 6. Bad input
// ---------------------------------------------------------------------------

/// Snapshot of everything a bad request might have touched.
async fn contents<S: EventStore>(store: &S, streams: &[StreamId]) -> (Vec<RecordedEvent>, Vec<StreamSlice>) {
    (global_log(store).await, read(store, streams).await)
}

async fn seeded_store<F: StoreFactory>(factory: F) -> (F::Store, Vec<StreamId>) {
    let store = factory.fresh().await;
    let streams = vec![stream("bad-a"), stream("bad-b")];
    commit(
        &store,
        &Append::new()
            .to(&streams[0], ExpectedVersion::NoStream, 2)
            .to(&streams[1], ExpectedVersion::NoStream, 1)
            .build(),
    )
    .await;
    (store, streams)
}

/// An append naming no streams is refused with `NoStreams`.
pub async fn an_append_with_no_streams_is_refused<F: StoreFactory>(factory: F) {
    let (store, streams) = seeded_store(factory).await;
    let before = contents(&store, &streams).await;
    let result = store.append(&Append::new().build()).await;
    assert!(
        matches!(result, Err(StoreError::InvalidAppend(InvalidAppend::NoStreams))),
        "{result:?}"
    );
    assert_eq!(contents(&store, &streams).await, before);
}

/// An append carrying no events (only version checks) is refused with
/// `NoEvents`.
pub async fn an_append_with_no_events_is_refused<F: StoreFactory>(factory: F) {
    let (store, streams) = seeded_store(factory).await;
    let before = contents(&store, &streams).await;
    let result = store
        .append(
            &Append::new()
                .check(&streams[0], ExpectedVersion::Exact(StreamVersion::new(2)))
                .check(&stream("bad-new"), ExpectedVersion::NoStream)
                .build(),
        )
        .await;
    assert!(
        matches!(result, Err(StoreError::InvalidAppend(InvalidAppend::NoEvents))),
        "{result:?}"
    );
    assert_eq!(contents(&store, &streams).await, before);
}

/// A stream named twice in one append is refused with `DuplicateStream`.
pub async fn an_append_naming_a_stream_twice_is_refused<F: StoreFactory>(factory: F) {
    let (store, streams) = seeded_store(factory).await;
    let before = contents(&store, &streams).await;
    let result = store
        .append(
            &Append::new()
                .to(&streams[0], ExpectedVersion::Any, 1)
                .to(&streams[1], ExpectedVersion::Any, 1)
                .to(&streams[0], ExpectedVersion::Any, 1)
                .build(),
        )
        .await;
    match result {
        Err(StoreError::InvalidAppend(InvalidAppend::DuplicateStream { stream })) => assert_eq!(stream, streams[0]),
        other => panic!("expected DuplicateStream, got {other:?}"),
    }
    assert_eq!(contents(&store, &streams).await, before);
}

/// More events than [`AppendLimits::default`] allows in one append are
/// refused with `TooManyEvents`.
pub async fn an_append_with_too_many_events_is_refused<F: StoreFactory>(factory: F) {
    let (store, streams) = seeded_store(factory).await;
    let before = contents(&store, &streams).await;
    let max = AppendLimits::default().max_events;
    let half = max / 2 + 1;
    let result = store
        .append(
            &Append::new()
                .to(&streams[0], ExpectedVersion::Any, half)
                .to(&stream("bad-c"), ExpectedVersion::Any, max + 1 - half)
                .build(),
        )
        .await;
    match result {
        Err(StoreError::InvalidAppend(InvalidAppend::TooManyEvents { count, max: limit })) => {
            assert_eq!((count, limit), (max + 1, max), "counted across all streams");
        }
        other => panic!("expected TooManyEvents, got {other:?}"),
    }
    assert_eq!(contents(&store, &streams).await, before);
    assert_eq!(head(&store, &stream("bad-c")).await, StreamVersion::NONE);
}

/// More streams than [`AppendLimits::default`] allows in one append are
/// refused with `TooManyStreams`.
pub async fn an_append_to_too_many_streams_is_refused<F: StoreFactory>(factory: F) {
    let (store, streams) = seeded_store(factory).await;
    let before = contents(&store, &streams).await;
    let max = AppendLimits::default().max_streams;
    let mut append = Append::new().to(&streams[0], ExpectedVersion::Any, 1);
    for i in 0..max {
        append = append.to(&stream(&format!("bad-many-{i}")), ExpectedVersion::Any, 1);
    }
    match store.append(&append.build()).await {
        Err(StoreError::InvalidAppend(InvalidAppend::TooManyStreams { count, max: limit })) => {
            assert_eq!((count, limit), (max + 1, max));
        }
        other => panic!("expected TooManyStreams, got {other:?}"),
    }
    assert_eq!(contents(&store, &streams).await, before);
}

/// A payload that is not storable JSON (malformed, or holding `\u0000`,
/// which PostgreSQL's JSONB refuses) is refused naming its stream, and
/// nothing is written.
pub async fn a_payload_that_is_not_storable_json_is_refused<F: StoreFactory>(factory: F) {
    let (store, streams) = seeded_store(factory).await;
    let before = contents(&store, &streams).await;
    for text in ["{not json", "\"nul \\u0000 inside\""] {
        let bad = NewEvent {
            payload: Payload::from_trusted_json(text),
            ..new_event("Bad", serde_json::Value::Null)
        };
        let result = store
            .append(
                &Append::new()
                    .to(&streams[0], ExpectedVersion::Any, 1)
                    .with_events(&streams[1], ExpectedVersion::Any, vec![bad])
                    .build(),
            )
            .await;
        match result {
            Err(StoreError::InvalidAppend(InvalidAppend::Rejected { stream, .. })) => {
                assert_eq!(
                    stream, streams[1],
                    "the error names the stream of the bad payload ({text})"
                );
            }
            other => panic!("expected InvalidAppend::Rejected for {text:?}, got {other:?}"),
        }
        assert_eq!(contents(&store, &streams).await, before, "nothing was written");
    }
}

/// A payload above [`AppendLimits::default`]'s maximum is refused with
/// `PayloadTooLarge`, naming the stream, type and sizes; one of exactly the
/// maximum is accepted.
pub async fn an_oversized_payload_is_refused<F: StoreFactory>(factory: F) {
    let (store, streams) = seeded_store(factory).await;
    let before = contents(&store, &streams).await;
    let max = AppendLimits::default().max_payload_bytes;
    // A JSON string of `len` bytes: two quotes around `len - 2` letters.
    let payload_of = |len: usize| Payload::from_json(format!("\"{}\"", "x".repeat(len - 2))).expect("valid JSON");
    let event_of = |len: usize| NewEvent {
        payload: payload_of(len),
        ..new_event("Big", serde_json::Value::Null)
    };
    let result = store
        .append(
            &Append::new()
                .to(&streams[1], ExpectedVersion::Any, 1)
                .with_events(&streams[0], ExpectedVersion::Any, vec![event_of(max + 1)])
                .build(),
        )
        .await;
    match result {
        Err(StoreError::InvalidAppend(InvalidAppend::PayloadTooLarge {
            stream,
            event_type,
            size,
            max: limit,
        })) => {
            assert_eq!(stream, streams[0]);
            assert_eq!(event_type.as_str(), "Big");
            assert_eq!((size, limit), (max + 1, max));
        }
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    assert_eq!(contents(&store, &streams).await, before);

    let at_limit = commit(
        &store,
        &Append::new()
            .with_events(&streams[0], ExpectedVersion::Any, vec![event_of(max)])
            .build(),
    )
    .await;
    assert_eq!(at_limit.streams[0].first_version, StreamVersion::new(3));
    let stored = &read(&store, &streams[..1]).await[0].events[2];
    assert_eq!(json_of(&stored.payload), json_of(&payload_of(max)));
}

/// A stream named twice in one read is refused with `DuplicateStream`.
pub async fn a_read_naming_a_stream_twice_is_refused<F: StoreFactory>(factory: F) {
    let (store, streams) = seeded_store(factory).await;
    let before = contents(&store, &streams).await;
    let request = ReadRequest::new(
        RequestId::new(1),
        [streams[0].clone(), streams[1].clone(), streams[0].clone()],
    );
    match store.read(&request).await {
        Err(StoreError::InvalidRequest(InvalidRequest::DuplicateStream { stream })) => assert_eq!(stream, streams[0]),
        other => panic!("expected DuplicateStream, got {other:?}"),
    }
    assert_eq!(contents(&store, &streams).await, before);
}

// ---------------------------------------------------------------------------
// 7. Round trip
// ---------------------------------------------------------------------------

/// Every field of an event and its metadata reads back exactly as written,
/// through a stream read and through `read_all`.
pub async fn events_and_metadata_round_trip_exactly<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let (a, b) = (stream("trip-a"), stream("trip-b"));
    let metadata = EventMetadata {
        command_id: fresh_command_id(),
        correlation_id: CorrelationId::v7(suite_time(), unique_entropy()),
        causation_id: Some(CausationId::v7(suite_time(), unique_entropy())),
        timestamp: suite_time(),
        user: BTreeMap::from([
            ("user".to_owned(), "ada".to_owned()),
            ("tenant ✓".to_owned(), "acme \"quoted\" \\ back".to_owned()),
            ("empty".to_owned(), String::new()),
        ]),
    };
    let payloads = [
        serde_json::json!({ "amount": 5, "note": "café ☕", "nested": { "list": [1, 2.5, -3, null, true] } }),
        serde_json::json!("just a string with \"quotes\" and \\ and \n newline"),
        serde_json::json!([{"b": 1, "a": 2}, u64::MAX, i64::MIN]),
        serde_json::json!(null),
    ];
    let mut sent: Vec<NewEvent> = payloads.iter().map(|p| new_event("RoundTripped", p.clone())).collect();
    sent[1].schema_version = 7;
    sent[2].event_type = event_type("Other.Type-v2");
    let request = Append::new()
        .with_metadata(metadata.clone())
        .with_events(&a, ExpectedVersion::NoStream, sent[..3].to_vec())
        .with_events(&b, ExpectedVersion::NoStream, sent[3..].to_vec())
        .build();
    let receipt = commit(&store, &request).await;

    let slices = read(&store, &[a.clone(), b.clone()]).await;
    let stored: Vec<&RecordedEvent> = slices.iter().flat_map(|s| s.events.iter()).collect();
    assert_eq!(stored.len(), sent.len());
    let places = [(&a, 1u64), (&a, 2), (&a, 3), (&b, 1)];
    let positions: Vec<GlobalPosition> = receipt.streams.iter().flat_map(|s| s.positions.clone()).collect();
    for (i, (got, want)) in stored.iter().zip(&sent).enumerate() {
        assert_eq!(got.event_id, want.event_id, "event {i}: id");
        assert_eq!(got.event_type, want.event_type, "event {i}: type");
        assert_eq!(got.schema_version, want.schema_version, "event {i}: schema version");
        assert_eq!(json_of(&got.payload), json_of(&want.payload), "event {i}: payload");
        assert_eq!(json_of(&got.payload), payloads[i], "event {i}: payload value");
        assert_eq!(&got.stream_id, places[i].0, "event {i}: stream");
        assert_eq!(got.version, StreamVersion::new(places[i].1), "event {i}: version");
        assert_eq!(got.position, positions[i], "event {i}: position");
        assert_eq!(got.metadata.command_id, metadata.command_id, "event {i}: command id");
        assert_eq!(
            got.metadata.correlation_id, metadata.correlation_id,
            "event {i}: correlation id"
        );
        assert_eq!(
            got.metadata.causation_id, metadata.causation_id,
            "event {i}: causation id"
        );
        assert_eq!(
            got.metadata.timestamp, metadata.timestamp,
            "event {i}: the timestamp keeps nanosecond precision"
        );
        assert_eq!(got.metadata.user, metadata.user, "event {i}: user metadata");
        assert_eq!(*got.metadata, metadata, "event {i}: metadata as a whole");
    }
    let global = global_log(&store).await;
    let from_streams: Vec<RecordedEvent> = stored.into_iter().cloned().collect();
    assert_eq!(global, from_streams, "read_all returns the very same events");

    // Without a causation id and without user metadata.
    let plain = EventMetadata::new(fresh_command_id(), Time::from_unix_nanos(1));
    commit(
        &store,
        &Append::new()
            .with_metadata(plain.clone())
            .to(&a, ExpectedVersion::Any, 1)
            .build(),
    )
    .await;
    let last = read(&store, std::slice::from_ref(&a)).await[0].events[3].clone();
    assert_eq!(*last.metadata, plain);
}

// ---------------------------------------------------------------------------
// 8. Concurrency
// ---------------------------------------------------------------------------

/// Many writers appending to one stream with `Exact` expectations lose no
/// update: every success got its own version, conflicts report a newer
/// version, and the stream ends with exactly one event per success.
pub async fn concurrent_exact_appends_lose_no_update<F: StoreFactory>(factory: F) {
    const WRITERS: usize = 8;
    const SUCCESSES_EACH: usize = 5;
    let store = factory.fresh().await;
    let s = stream("contended");
    let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let (store, s, barrier) = (store.clone(), s.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut wins: Vec<(StreamVersion, EventId)> = Vec::new();
            let mut tries = 0;
            while wins.len() < SUCCESSES_EACH {
                tries += 1;
                assert!(tries < 10_000, "a writer starved");
                let seen = head(&store, &s).await;
                let expected = ExpectedVersion::from_read(seen);
                let request = Append::new().to(&s, expected, 1).build();
                match store.append(&request).await {
                    Ok(receipt) => {
                        let commit = &receipt.streams[0];
                        assert_eq!(commit.first_version, seen.next());
                        assert_eq!(commit.last_version, seen.next());
                        wins.push((commit.first_version, request.streams[0].events[0].event_id));
                    }
                    Err(StoreError::Conflict(conflict)) => {
                        assert_eq!(conflict.stream, s);
                        assert_eq!(conflict.expected, expected);
                        assert!(conflict.actual > seen, "the stream moved on, it cannot go back");
                    }
                    Err(StoreError::Transient { .. }) => {}
                    Err(other) => panic!("unexpected error: {other}"),
                }
                tokio::task::yield_now().await;
            }
            wins
        }));
    }
    let mut wins = Vec::new();
    for task in tasks {
        wins.extend(task.await.expect("writer task"));
    }
    wins.sort();
    let won_versions: Vec<u64> = wins.iter().map(|(v, _)| v.get()).collect();
    let total = (WRITERS * SUCCESSES_EACH) as u64;
    assert_eq!(
        won_versions,
        (1..=total).collect::<Vec<_>>(),
        "distinct, gap-free versions"
    );
    let slice = &read(&store, std::slice::from_ref(&s)).await[0];
    assert_eq!(slice.head, StreamVersion::new(total));
    let stored: Vec<(StreamVersion, EventId)> = slice.events.iter().map(|e| (e.version, e.event_id)).collect();
    assert_eq!(stored, wins, "each version holds the event of the writer that won it");
}

/// The same append sent concurrently many times commits once; every other
/// answer is the deduplicated original receipt.
pub async fn concurrent_appends_with_one_command_id_commit_once<F: StoreFactory>(factory: F) {
    const SENDERS: usize = 8;
    let store = factory.fresh().await;
    let (a, b) = (stream("dup-a"), stream("dup-b"));
    let request = Append::new()
        .to(&a, ExpectedVersion::NoStream, 2)
        .to(&b, ExpectedVersion::Any, 1)
        .build();
    let barrier = Arc::new(tokio::sync::Barrier::new(SENDERS));
    let mut tasks = Vec::new();
    for _ in 0..SENDERS {
        let (store, request, barrier) = (store.clone(), request.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            for _ in 0..1_000 {
                match store.append(&request).await {
                    Ok(receipt) => return receipt,
                    Err(StoreError::Transient { .. }) => tokio::task::yield_now().await,
                    Err(other) => panic!("a repeated append must be answered with its receipt: {other}"),
                }
            }
            panic!("transient errors never stopped");
        }));
    }
    let mut receipts = Vec::new();
    for task in tasks {
        receipts.push(task.await.expect("sender task"));
    }
    let originals: Vec<&AppendReceipt> = receipts.iter().filter(|r| !r.deduplicated).collect();
    assert_eq!(originals.len(), 1, "exactly one send committed: {receipts:?}");
    assert!(receipts.iter().all(|r| r.same_commit(originals[0])));
    let slices = read(&store, &[a, b]).await;
    assert_eq!(slices[0].head, StreamVersion::new(2));
    assert_eq!(slices[1].head, StreamVersion::new(1));
    let log = global_log(&store).await;
    assert_eq!(log.len(), 3);
    assert!(log.iter().all(|e| e.metadata.command_id == request.command_id()));
}

/// Writers appending to overlapping pairs of streams, in differing orders,
/// all finish (no deadlock), and every commit landed whole.
pub async fn concurrent_overlapping_multi_stream_appends_stay_atomic<F: StoreFactory>(factory: F) {
    const WRITERS: usize = 6;
    const SUCCESSES_EACH: usize = 4;
    let store = factory.fresh().await;
    let streams = [stream("ring-x"), stream("ring-y"), stream("ring-z")];
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (store, streams) = (store.clone(), streams.clone());
        tasks.push(tokio::spawn(async move {
            // Writer w uses the pair (w, w+1) mod 3, in one order or the other.
            let (i, j) = if w % 2 == 0 {
                (w % 3, (w + 1) % 3)
            } else {
                ((w + 1) % 3, w % 3)
            };
            let pair = [streams[i].clone(), streams[j].clone()];
            let mut receipts = Vec::new();
            let mut tries = 0;
            while receipts.len() < SUCCESSES_EACH {
                tries += 1;
                assert!(tries < 10_000, "a writer starved");
                let slices = read(&store, &pair).await;
                let request = Append::new()
                    .to(&pair[0], ExpectedVersion::from_read(slices[0].head), 1)
                    .to(&pair[1], ExpectedVersion::from_read(slices[1].head), 1)
                    .build();
                match store.append(&request).await {
                    Ok(receipt) => receipts.push(receipt),
                    Err(e) if is_race_loss(&e) => tokio::task::yield_now().await,
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
            receipts
        }));
    }
    let mut receipts = Vec::new();
    for task in tasks {
        receipts.extend(task.await.expect("writer task"));
    }
    let slices = read(&store, &streams).await;
    let total_events: usize = slices.iter().map(|s| s.events.len()).sum();
    assert_eq!(total_events, receipts.len() * 2);
    let by_command: BTreeMap<CommandId, Vec<(StreamId, StreamVersion)>> = slices
        .iter()
        .flat_map(|s| s.events.iter())
        .fold(BTreeMap::new(), |mut map, e| {
            map.entry(e.metadata.command_id)
                .or_default()
                .push((e.stream_id.clone(), e.version));
            map
        });
    for receipt in &receipts {
        let mut landed = by_command.get(&receipt.command_id).cloned().unwrap_or_default();
        landed.sort();
        let mut promised: Vec<(StreamId, StreamVersion)> = receipt
            .streams
            .iter()
            .map(|c| (c.stream.clone(), c.first_version))
            .collect();
        promised.sort();
        assert_eq!(landed, promised, "commit {} landed whole", receipt.command_id);
    }
    for slice in &slices {
        let expected: Vec<u64> = (1..=slice.head.get()).collect();
        assert_eq!(versions(slice), expected, "`{}` is gap-free", slice.stream);
    }
}

/// A reader following `read_all` by `complete_through` while writers commit
/// concurrently sees every event exactly once, in increasing position order,
/// and never an event below a position it already passed.
pub async fn a_global_reader_never_misses_or_reorders_events<F: StoreFactory>(factory: F) {
    const WRITERS: usize = 4;
    const APPENDS_EACH: usize = 25;
    let store = factory.fresh().await;
    let writers_done = Arc::new(AtomicBool::new(false));

    let follower = {
        let (store, writers_done) = (store.clone(), writers_done.clone());
        tokio::spawn(async move {
            let mut checkpoint = GlobalPosition::START;
            let mut seen: Vec<RecordedEvent> = Vec::new();
            let mut idle_after_done = 0u32;
            loop {
                let done = writers_done.load(Ordering::Acquire);
                let page = store
                    .read_all(&read_all_request(checkpoint, 7, EventFilter::all()))
                    .await
                    .expect("read_all");
                assert!(page.complete_through >= checkpoint, "complete_through went back");
                for event in &page.events {
                    assert!(
                        event.position > checkpoint,
                        "saw position {} after checkpointing {checkpoint}",
                        event.position
                    );
                    if let Some(last) = seen.last() {
                        assert!(event.position > last.position, "positions must increase");
                    }
                    assert!(event.position <= page.complete_through);
                    seen.push(event.clone());
                }
                checkpoint = page.complete_through;
                if done && page.events.is_empty() {
                    idle_after_done += 1;
                    if idle_after_done > 3 {
                        return (seen, checkpoint);
                    }
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..APPENDS_EACH {
                let mut append = Append::new().to(&stream(&format!("follow-{w}")), ExpectedVersion::Any, 1 + i % 2);
                if i % 3 == 0 {
                    append = append.to(&stream("follow-shared"), ExpectedVersion::Any, 1);
                }
                let request = append.build();
                loop {
                    match store.append(&request).await {
                        Ok(_) => break,
                        Err(e) if is_race_loss(&e) => tokio::task::yield_now().await,
                        Err(e) => panic!("append failed: {e}"),
                    }
                }
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer task");
    }
    writers_done.store(true, Ordering::Release);
    let (seen, checkpoint) = follower.await.expect("follower task");
    let log = global_log(&store).await;
    let last = log.last().expect("writers wrote").position;
    assert!(
        checkpoint >= last,
        "the reader caught up to {last}, stopped at {checkpoint}"
    );
    assert_eq!(
        event_ids(&seen),
        event_ids(&log),
        "the reader saw the whole log, once, in order"
    );
    let distinct: BTreeSet<EventId> = seen.iter().map(|e| e.event_id).collect();
    assert_eq!(distinct.len(), seen.len());
}

/// An append whose future is dropped part-way (as the executor does on a
/// timeout) leaves all of its events or none, and re-sending it settles the
/// outcome: afterwards every append is stored exactly once, whole.
pub async fn a_dropped_append_is_all_or_nothing_and_settled_by_resending<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let streams = [stream("drop-a"), stream("drop-b"), stream("drop-c")];
    let mut requests = Vec::new();
    for i in 0..24u64 {
        let request = Append::new()
            .to(&streams[0], ExpectedVersion::Any, 2)
            .to(&streams[1], ExpectedVersion::Any, 1)
            .to(&streams[2], ExpectedVersion::Any, 3)
            .build();
        // Cut the append off after a varying amount of work: never polled,
        // polled once, or given a few microseconds to a few milliseconds.
        match i % 4 {
            0 => drop(store.append(&request)),
            1 => {
                let mut future = std::pin::pin!(store.append(&request));
                let waker = std::task::Waker::noop();
                let _ = std::future::Future::poll(future.as_mut(), &mut std::task::Context::from_waker(waker));
            }
            _ => {
                let _ =
                    tokio::time::timeout(std::time::Duration::from_micros(i * i * 10), store.append(&request)).await;
            }
        }
        requests.push(request);
    }
    for request in &requests {
        let mut tries = 0;
        loop {
            tries += 1;
            assert!(tries < 1_000, "re-sending never settled");
            match store.append(request).await {
                Ok(receipt) => {
                    assert_eq!(receipt.command_id, request.command_id());
                    break;
                }
                Err(StoreError::Transient { .. }) => tokio::task::yield_now().await,
                Err(other) => panic!("re-sending a dropped append failed: {other}"),
            }
        }
    }
    let log = global_log(&store).await;
    assert_eq!(log.len(), requests.len() * 6, "every append stored exactly once");
    for request in &requests {
        let stored: Vec<EventId> = log
            .iter()
            .filter(|e| e.metadata.command_id == request.command_id())
            .map(|e| e.event_id)
            .collect();
        let sent: Vec<EventId> = request
            .streams
            .iter()
            .flat_map(|s| s.events.iter().map(|e| e.event_id))
            .collect();
        assert_eq!(stored, sent, "append {} is whole, in order", request.command_id());
    }
    for slice in read(&store, &streams).await {
        let expected: Vec<u64> = (1..=slice.head.get()).collect();
        assert_eq!(versions(&slice), expected, "`{}` is gap-free", slice.stream);
    }
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
            concurrent_exact_appends_lose_no_update,
            concurrent_appends_with_one_command_id_commit_once,
            concurrent_overlapping_multi_stream_appends_stay_atomic,
            a_dropped_append_is_all_or_nothing_and_settled_by_resending,
            a_global_reader_never_misses_or_reorders_events,
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
