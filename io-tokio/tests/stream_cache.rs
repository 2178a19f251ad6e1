//! The executor's stream cache saves reads without ever changing results.

use eventcore::{
    AppendReceipt, AppendRequest, Command, Decision, Event, ReadAllRequest, ReadAllResponse, ReadRequest, ReadResponse,
    StoreError, StreamId, StreamVersion,
};
use eventcore_tokio::{EventStore, Executor, MemoryEventStore};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

#[derive(Debug, Serialize, Deserialize)]
enum Tick {
    Ticked { n: u64 },
}
impl Event for Tick {}

#[derive(Debug, thiserror::Error)]
#[error("unreachable")]
struct Never;

/// Appends `Ticked { n }` where n is the stream's event count: the decision
/// depends on the whole history, so a wrong fold shows up as a wrong `n`.
struct TickCmd(StreamId);

impl Command for TickCmd {
    type Event = Tick;
    type State = u64;
    type Error = Never;
    fn streams(&self) -> Vec<StreamId> {
        vec![self.0.clone()]
    }
    fn apply(&self, count: &mut u64, _: &StreamId, _: &Tick) {
        *count += 1;
    }
    fn decide(&self, count: &u64, out: &mut Decision<Tick>) -> Result<(), Never> {
        out.emit(&self.0, Tick::Ticked { n: *count });
        Ok(())
    }
}

/// Counts reads on the way to a memory store.
#[derive(Clone, Default)]
struct CountingStore {
    inner: MemoryEventStore,
    reads: Arc<AtomicU32>,
}

impl EventStore for CountingStore {
    async fn read(&self, request: &ReadRequest) -> Result<ReadResponse, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.read(request).await
    }
    async fn append(&self, request: &AppendRequest) -> Result<AppendReceipt, StoreError> {
        self.inner.append(request).await
    }
    async fn read_all(&self, request: &ReadAllRequest) -> Result<ReadAllResponse, StoreError> {
        self.inner.read_all(request).await
    }
}

fn ticks(store: &MemoryEventStore, stream: &StreamId) -> Vec<u64> {
    store.inspect(|s| {
        s.events()
            .iter()
            .filter(|e| &e.stream_id == stream)
            .map(|e| match eventcore::decode_recorded::<Tick>(e).expect("decodes") {
                Tick::Ticked { n } => n,
            })
            .collect()
    })
}

#[tokio::test]
async fn a_cached_stream_is_not_read_again() {
    let store = CountingStore::default();
    let executor = Executor::new(store.clone()).with_stream_cache(1_000);
    let stream = StreamId::new("ticks").expect("valid");
    for _ in 0..5 {
        executor.execute(TickCmd(stream.clone())).await.expect("commits");
    }
    assert_eq!(store.reads.load(Ordering::SeqCst), 1, "only the first command reads");
    assert_eq!(ticks(&store.inner, &stream), vec![0, 1, 2, 3, 4]);
    assert_eq!(executor.stream_cache().map(|c| c.cached_events()), Some(5));
}

#[tokio::test]
async fn a_stale_cache_costs_a_conflict_and_never_a_wrong_decision() {
    let store = CountingStore::default();
    let cached = Executor::new(store.clone()).with_stream_cache(1_000);
    let other = Executor::new(store.clone());
    let stream = StreamId::new("shared").expect("valid");
    cached.execute(TickCmd(stream.clone())).await.expect("commits");
    other.execute(TickCmd(stream.clone())).await.expect("commits");
    other.execute(TickCmd(stream.clone())).await.expect("commits");
    let done = cached
        .execute(TickCmd(stream.clone()))
        .await
        .expect("commits after re-reading");
    assert_eq!(done.stats.conflicts, 1, "the stale version conflicts once");
    assert_eq!(
        ticks(&store.inner, &stream),
        vec![0, 1, 2, 3],
        "every decision saw the whole history"
    );
    assert_eq!(
        cached.stream_cache().map(|c| c.cached_events()),
        Some(4),
        "the re-read and the commit refreshed the cache"
    );
}

#[tokio::test]
async fn the_cache_stays_within_its_bound() {
    let store = MemoryEventStore::new();
    let executor = Executor::new(store.clone()).with_stream_cache(10);
    for n in 0..8 {
        let stream = StreamId::new(format!("s-{n}")).expect("valid");
        for _ in 0..3 {
            executor.execute(TickCmd(stream.clone())).await.expect("commits");
        }
        let cached = executor.stream_cache().map(|c| c.cached_events()).unwrap_or(0);
        assert!(cached <= 10, "cache holds {cached} events, bound is 10");
    }
    let last = StreamId::new("s-7").expect("valid");
    assert_eq!(store.inspect(|s| s.stream_version(&last)), StreamVersion::new(3));
}

#[tokio::test]
async fn an_execution_that_gives_up_on_a_conflict_does_not_leave_a_stale_cache_behind() {
    let store = CountingStore::default();
    let no_retries = eventcore::ExecutionPolicy::default().with_retry(eventcore::RetryPolicy::no_retries());
    let cached = Executor::new(store.clone())
        .with_stream_cache(1_000)
        .with_policy(no_retries);
    let other = Executor::new(store.clone());
    let stream = StreamId::new("contended").expect("valid");
    cached.execute(TickCmd(stream.clone())).await.expect("commits");
    other.execute(TickCmd(stream.clone())).await.expect("commits");
    let gave_up = cached.execute(TickCmd(stream.clone())).await;
    assert!(
        matches!(
            gave_up,
            Err(eventcore::ExecutionError {
                error: eventcore::CommandError::RetriesExhausted { .. },
                ..
            })
        ),
        "one attempt, stale cache: conflict, {gave_up:?}"
    );
    cached
        .execute(TickCmd(stream.clone()))
        .await
        .expect("the next execution reads afresh instead of conflicting forever");
    assert_eq!(ticks(&store.inner, &stream), vec![0, 1, 2]);
}

/// The tick count of one stream, as a stream view.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct TickCount(u64);

impl eventcore::View for TickCount {
    type Event = Tick;
    const NAME: &'static str = "tick-count";
    fn apply(&mut self, _: &Tick) {
        self.0 += 1;
    }
}

/// `TickCmd` on a stream view.
#[derive(Clone, Debug, eventcore::Command)]
struct ViewTick {
    #[stream(TickCount)]
    stream: StreamId,
}

impl eventcore::Decide for ViewTick {
    type Error = Never;
    fn decide(&self, state: &ViewTickState<'_>, out: &mut eventcore::Emit<'_>) -> Result<(), Never> {
        out.emit(&self.stream, Tick::Ticked { n: state.stream.0 });
        Ok(())
    }
}

#[tokio::test]
async fn a_view_stream_is_primed_from_the_view_cache_not_refolded_from_the_stream_cache() {
    // With both caches on, a view stream must come from the view cache:
    // priming it from the stream cache instead would copy and decode the
    // whole stream on every execution (a cost that grows with the stream).
    let store = MemoryEventStore::new();
    let stream = StreamId::new("view-ticks").expect("valid stream id");
    let executor = Executor::new(store.clone()).with_stream_cache(10_000);
    for _ in 0..5 {
        executor
            .execute(ViewTick { stream: stream.clone() })
            .await
            .expect("a tick commits");
    }
    assert_eq!(
        ticks(&store, &stream),
        vec![0, 1, 2, 3, 4],
        "decisions see the whole fold"
    );
    let (_, _, stats) = executor.view_cache_stats().expect("the view cache is on by default");
    assert_eq!(
        stats.hits, 4,
        "every execution after the first starts from the cached view"
    );
}
