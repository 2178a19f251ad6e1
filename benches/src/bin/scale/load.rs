//! Filling the store through `EventStore::append`, and what the run knows
//! about what it wrote.

use crate::Result;
use eventcore::{AppendReceipt, AppendRequest, Event, EventId, EventMetadata, ExpectedVersion, NewEvent, StreamAppend};
use eventcore::{StreamId, StreamVersion, Time};
use eventcore_benches::bank::AccountEvent;
use eventcore_benches::{command_id, entropy, stream};
use eventcore_postgres::PostgresStore;
use eventcore_tokio::EventStore;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Streams per loading append, and events per stream in each.
pub const FILL_STREAMS: usize = 10;
pub const FILL_EVENTS: u64 = 100;
/// Loading appends per group of streams (streams of 300 events).
const FILL_APPENDS: u64 = 3;
/// Streams of the constant working set that appends go to at every level.
pub const HOT_STREAMS: usize = 1_000;

/// A stream the bench wrote and its version. Appending clients own disjoint
/// sets of streams (index modulo client count), so the version is exact.
pub struct Slot {
    pub id: StreamId,
    pub version: AtomicU64,
}

/// Everything the run keeps between phases.
pub struct State {
    pub store: PostgresStore,
    /// Every stream of 100 events or more (the base's 10, then the loaded).
    pub slots: Arc<Vec<Slot>>,
    /// The hot streams (`hot-0000`..), created by the base with one event each.
    pub hot: Arc<Vec<Slot>>,
    /// Where a catch-up may start: (`after`, events stored before it), in
    /// position order.
    pub anchors: Vec<(u64, u64)>,
    /// Events in the store.
    pub stored: u64,
    /// Appends committed (rows of `commands`).
    pub commands: u64,
    /// Groups of 10 streams created so far.
    pub groups: u64,
    /// Next command number (distinct command and event ids).
    pub next: Arc<AtomicU64>,
}

fn now() -> Time {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Time::from_unix_nanos(nanos)
}

fn group_streams(group: u64) -> Vec<StreamId> {
    (0..FILL_STREAMS as u64)
        .map(|j| stream(format!("account-{:08}", group * FILL_STREAMS as u64 + j)))
        .collect()
}

/// An append of `events_each` `Deposited` events to each of `streams`, each
/// pinned to its version `expected` (one payload shared by every event).
pub fn request(streams: &[(StreamId, u64)], events_each: u64, n: u64) -> AppendRequest {
    let now = now();
    let encoded = AccountEvent::Deposited { amount: n % 1_000 + 1 }
        .encode()
        .expect("bank events encode");
    let mut k = 0u64;
    let streams = streams
        .iter()
        .map(|(id, expected)| StreamAppend {
            stream: id.clone(),
            expected: ExpectedVersion::from_read(StreamVersion::new(*expected)),
            events: (0..events_each)
                .map(|_| {
                    k += 1;
                    NewEvent {
                        event_id: EventId::v7(now, entropy(n, k)),
                        event_type: encoded.event_type.clone(),
                        schema_version: encoded.schema_version,
                        payload: encoded.payload.clone(),
                    }
                })
                .collect(),
            tombstone: false,
        })
        .collect();
    AppendRequest {
        metadata: Arc::new(EventMetadata::new(command_id(now, n), now)),
        streams,
    }
}

/// The position of the first event an append wrote.
pub fn first_position(receipt: &AppendReceipt) -> u64 {
    let first = receipt.streams.iter().filter_map(|s| s.positions.first()).min();
    first.map_or(0, |p| p.get())
}

/// The base every level starts from (2,000 events): one loading append
/// (10 streams of 100 events, for reads) and one append of one event to
/// each of the 1,000 hot streams.
pub async fn base(state: &mut State) -> Result<()> {
    fill(state, 1, 1).await?;
    let hot: Vec<(StreamId, u64)> = (0..HOT_STREAMS).map(|i| (stream(format!("hot-{i:04}")), 0)).collect();
    let request = request(&hot, 1, state.next.fetch_add(1, Relaxed));
    let receipt = state.store.append(&request).await.map_err(|e| format!("base: {e}"))?;
    state
        .anchors
        .push((first_position(&receipt).saturating_sub(1), state.stored));
    state.stored += HOT_STREAMS as u64;
    state.commands += 1;
    state.hot = Arc::new(
        hot.into_iter()
            .map(|(id, _)| Slot {
                id,
                version: AtomicU64::new(1),
            })
            .collect(),
    );
    Ok(())
}

/// Appends until the store holds at least `target` events; returns the
/// events loaded and the time it took.
pub async fn fill(state: &mut State, target: u64, in_flight: usize) -> Result<Option<(u64, Duration)>> {
    if state.stored >= target {
        return Ok(None);
    }
    let per_append = FILL_STREAMS as u64 * FILL_EVENTS;
    let appends = (target - state.stored).div_ceil(per_append);
    // Appends per group: three, but fewer for the last.
    let plan: Arc<Vec<u64>> = Arc::new(
        (0..appends.div_ceil(FILL_APPENDS))
            .map(|g| (appends - g * FILL_APPENDS).min(FILL_APPENDS))
            .collect(),
    );
    let cursor = Arc::new(AtomicUsize::new(0));
    let first_group = state.groups;
    let began = Instant::now();
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let (plan, cursor, store, next) = (plan.clone(), cursor.clone(), state.store.clone(), state.next.clone());
            tokio::spawn(async move {
                let mut firsts = Vec::new();
                loop {
                    let k = cursor.fetch_add(1, Relaxed);
                    let Some(&count) = plan.get(k) else { break };
                    let names = group_streams(first_group + k as u64);
                    for a in 0..count {
                        let pinned: Vec<_> = names.iter().map(|id| (id.clone(), a * FILL_EVENTS)).collect();
                        let request = request(&pinned, FILL_EVENTS, next.fetch_add(1, Relaxed));
                        let receipt = store.append(&request).await.map_err(|e| e.to_string())?;
                        firsts.push(first_position(&receipt));
                    }
                }
                Ok::<_, String>(firsts)
            })
        })
        .collect();
    let mut firsts = Vec::new();
    let mut failed = None;
    for task in tasks {
        match task.await.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok(more) => firsts.extend(more),
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    if let Some(e) = failed {
        return Err(format!("loading failed: {e}"));
    }
    let took = began.elapsed();
    firsts.sort_unstable();
    for (rank, first) in firsts.iter().enumerate() {
        state
            .anchors
            .push((first.saturating_sub(1), state.stored + rank as u64 * per_append));
    }
    state.stored += appends * per_append;
    state.commands += appends;
    let slots = Arc::get_mut(&mut state.slots).ok_or("stream slots still shared after loading")?;
    for (k, &count) in plan.iter().enumerate() {
        for id in group_streams(first_group + k as u64) {
            slots.push(Slot {
                id,
                version: AtomicU64::new(count * FILL_EVENTS),
            });
        }
    }
    state.groups += plan.len() as u64;
    Ok(Some((appends * per_append, took)))
}
