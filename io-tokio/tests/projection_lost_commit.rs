//! A projection batch whose commit succeeded but whose answer was lost (the
//! connection dropped after COMMIT, the server crashed before replying) is
//! delivered again; the runner must not apply it a second time. Found by
//! the chaos suite's projection (`chaos/src/run/projection.rs`): before the
//! fix, a lost acknowledgement applied a batch twice.

use eventcore::{
    AppendRequest, DecodeErrorKind, Event, EventMetadata, ExpectedVersion, GlobalPosition, NewEvent, Payload,
    RecordedEvent, StreamAppend, StreamId, SubscriptionPolicy, Time,
};
use eventcore_tokio::{
    CheckpointError, EventStore, FencingToken, MemoryEventStore, MemoryReadModel, MemoryTransaction, Projection,
    ProjectionError, ProjectionStore, Runner,
};
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Any event: the projection needs only its position.
#[derive(Debug, Serialize, Deserialize)]
struct Seen;

impl Event for Seen {
    fn decode(_: &str, _: u32, _: &Payload) -> Result<Self, DecodeErrorKind> {
        Ok(Seen)
    }
}

/// Records the position of every event it applies.
struct Positions;

impl Projection for Positions {
    type Event = Seen;
    type Store = LostAnswers;

    async fn apply(
        &mut self,
        tx: &mut MemoryTransaction<Vec<u64>>,
        _: Seen,
        recorded: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        tx.state_mut().push(recorded.position.get());
        Ok(())
    }
}

/// A memory read model whose first `lose` commits succeed and then answer
/// with a transient error, as a commit whose reply never arrived.
#[derive(Clone)]
struct LostAnswers {
    inner: MemoryReadModel<Vec<u64>>,
    lose: Arc<AtomicU32>,
}

impl ProjectionStore for LostAnswers {
    type Transaction = MemoryTransaction<Vec<u64>>;

    async fn claim(&self, name: &str, token: FencingToken) -> Result<GlobalPosition, CheckpointError> {
        self.inner.claim(name, token).await
    }

    async fn begin(&self, name: &str, token: FencingToken) -> Result<Self::Transaction, CheckpointError> {
        self.inner.begin(name, token).await
    }

    async fn commit(&self, tx: Self::Transaction, checkpoint: GlobalPosition) -> Result<(), CheckpointError> {
        self.inner.commit(tx, checkpoint).await?;
        let lost = self
            .lose
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if lost {
            return Err(CheckpointError::Transient("the commit's answer was lost".into()));
        }
        Ok(())
    }

    fn committed(tx: &Self::Transaction) -> Option<GlobalPosition> {
        MemoryReadModel::<Vec<u64>>::committed(tx)
    }
}

async fn store_with(events: usize) -> MemoryEventStore {
    let store = MemoryEventStore::new();
    let now = Time::from_unix_millis(1);
    for n in 0..events {
        let request = AppendRequest {
            metadata: Arc::new(EventMetadata::new(eventcore::CommandId::v7(now, [n as u8; 10]), now)),
            streams: vec![StreamAppend {
                stream: StreamId::new(format!("s-{}", n % 3)).expect("valid stream id"),
                expected: ExpectedVersion::Any,
                events: vec![NewEvent {
                    event_id: eventcore::EventId::v7(now, [n as u8 + 100; 10]),
                    event_type: eventcore::EventType::new("Seen").expect("valid type"),
                    schema_version: 1,
                    payload: Payload::from_trusted_json("null"),
                }],
                tombstone: false,
            }],
        };
        store.append(&request).await.expect("append");
    }
    store
}

#[tokio::test]
async fn a_batch_whose_commit_answer_was_lost_is_not_applied_twice() {
    let store = store_with(12).await;
    let read_model = LostAnswers {
        inner: MemoryReadModel::new(),
        lose: Arc::new(AtomicU32::new(3)),
    };
    let policy = SubscriptionPolicy::default().with_batch_size(NonZeroU32::new(4).expect("non-zero"));
    let mut runner = Runner::projection("positions", store.clone(), Positions, read_model.clone()).with_policy(policy);
    runner
        .run_until_caught_up()
        .await
        .expect("caught up despite the lost answers");
    assert_eq!(read_model.lose.load(Ordering::SeqCst), 0, "every lost answer was met");
    let applied = read_model.inner.read(Clone::clone);
    let mut unique = applied.clone();
    unique.dedup();
    assert_eq!(applied, unique, "no event applied twice");
    assert_eq!(applied.len(), 12, "every event applied: {applied:?}");
    assert_eq!(
        read_model.inner.checkpoint("positions").map(|p| p.get()),
        applied.last().copied()
    );
}
