//! A replay an operator asks for (`DeadLetterStore::request_replay`, what
//! `eventcore dead-letters replay` records) is done by the running
//! subscription, through its own handler, without a restart.
//!
//! Runs on tokio's paused clock: poll intervals pass deterministically.

use eventcore::{
    AppendRequest, Batch, CommandId, EventId, EventMetadata, EventType, ExpectedVersion, GlobalPosition, HandleError,
    NewEvent, Payload, PoisonAction, PoisonCause, PoisonPolicy, StreamAppend, StreamId, SubscriptionPolicy, Time,
};
use eventcore_tokio::{
    poison, DeadLetterStore, EventStore, MemoryCheckpointStore, MemoryDeadLetterStore, MemoryEventStore,
    ReplaySelection, Runner, RunnerStatus, Subscriber,
};
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, watch};

static NEXT: AtomicU64 = AtomicU64::new(1);

fn entropy() -> [u8; 10] {
    let n = NEXT.fetch_add(1, Ordering::Relaxed).to_le_bytes();
    [0, n[0], 0, n[1], n[2], n[3], n[4], n[5], n[6], n[7]]
}

async fn deposit(store: &MemoryEventStore, stream: &str, amount: i64) -> GlobalPosition {
    let request = AppendRequest {
        metadata: Arc::new(EventMetadata::new(
            CommandId::v7(Time::from_unix_millis(1), entropy()),
            Time::from_unix_millis(1),
        )),
        streams: vec![StreamAppend {
            stream: StreamId::new(stream).expect("valid stream"),
            expected: ExpectedVersion::Any,
            events: vec![NewEvent {
                event_id: EventId::v7(Time::from_unix_millis(1), entropy()),
                event_type: EventType::new("Deposited").expect("valid type"),
                schema_version: 1,
                payload: Payload::from_json(format!(r#"{{"amount":{amount}}}"#)).expect("valid json"),
            }],
            tombstone: false,
        }],
    };
    store.append(&request).await.expect("append").last_position()
}

/// Refuses negative deposits (as poison) until `accept_negative` is set;
/// counts how often it saw each position, and what it applied.
#[derive(Clone, Default)]
struct Deposits {
    accept_negative: Arc<AtomicBool>,
    seen: Arc<Mutex<BTreeMap<u64, usize>>>,
    applied: Arc<Mutex<Vec<u64>>>,
}

impl Deposits {
    fn seen(&self, position: GlobalPosition) -> usize {
        let seen = self.seen.lock().expect("lock");
        seen.get(&position.get()).copied().unwrap_or(0)
    }
}

impl Subscriber for Deposits {
    async fn handle(&mut self, batch: &Batch) -> Result<(), HandleError> {
        for event in &batch.events {
            *self.seen.lock().expect("lock").entry(event.position.get()).or_default() += 1;
            if event.payload.as_json().contains('-') && !self.accept_negative.load(Ordering::SeqCst) {
                return Err(poison(event, "negative deposit"));
            }
            self.applied.lock().expect("lock").push(event.position.get());
        }
        Ok(())
    }
}

async fn until(status: &mut watch::Receiver<RunnerStatus>, what: &str, done: impl FnMut(&RunnerStatus) -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(60), status.wait_for(done))
        .await
        .map(|answer| answer.is_ok());
    match waited {
        Ok(open) => assert!(open, "the runner's status channel closed waiting for {what}"),
        Err(_) => panic!("timed out waiting for {what}: {:?}", *status.borrow()),
    }
}

#[tokio::test(start_paused = true)]
async fn a_requested_replay_is_done_by_the_running_subscription_without_a_restart() {
    let store = MemoryEventStore::new();
    for i in 0..3 {
        deposit(&store, &format!("acc-{i}"), 1).await;
    }
    let bad = deposit(&store, "acc-9", -5).await;
    let last = deposit(&store, "acc-1", 2).await;

    let dead_letters = MemoryDeadLetterStore::new();
    let handler = Deposits::default();
    let policy = SubscriptionPolicy::default()
        .with_batch_size(NonZeroU32::new(10).expect("non-zero"))
        .with_poll_interval(Duration::from_millis(100))
        .with_poison(PoisonPolicy::retry(1, PoisonAction::Park));
    let mut runner = Runner::subscription("deposits", store.clone(), MemoryCheckpointStore::new(), handler.clone())
        .with_policy(policy)
        .with_dead_letters(dead_letters.clone())
        .with_wakeups(store.watch_head());
    let mut status = runner.status();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        runner
            .run_until(async {
                let _ = stopped.await;
            })
            .await
    });

    until(&mut status, "the poison event parked", |s| {
        s.stats.parked == 1 && s.handled_through >= last
    })
    .await;
    assert_eq!(dead_letters.list("deposits").await.expect("list").len(), 1);
    let seen_when_parked = handler.seen(bad);
    assert!(seen_when_parked >= 1);

    // A request while the handler still refuses it: tried once more, left
    // parked with the request cleared and the new failure.
    let requested = dead_letters
        .request_replay("deposits", &ReplaySelection::All, Time::from_unix_millis(10))
        .await
        .expect("request");
    assert_eq!(requested, vec![bad]);
    until(&mut status, "the first replay to fail", |s| s.replay_failed == 1).await;
    let parked = dead_letters.list("deposits").await.expect("list");
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].replay_requested_at, None, "the failed request is cleared");
    assert!(matches!(&parked[0].poison.cause, PoisonCause::Handler(m) if m == "negative deposit"));
    assert_eq!(handler.seen(bad), seen_when_parked + 1);
    assert!(!handler.applied.lock().expect("lock").contains(&bad.get()));

    // Nothing more happens without a request, however long it runs.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(handler.seen(bad), seen_when_parked + 1);

    // The handler is fixed; the operator asks again for that position.
    handler.accept_negative.store(true, Ordering::SeqCst);
    let requested = dead_letters
        .request_replay(
            "deposits",
            &ReplaySelection::Positions(vec![bad]),
            Time::from_unix_millis(20),
        )
        .await
        .expect("request");
    assert_eq!(requested, vec![bad]);
    until(&mut status, "the replay", |s| s.replayed == 1).await;
    assert!(dead_letters.list("deposits").await.expect("list").is_empty());
    assert_eq!(
        handler.seen(bad),
        seen_when_parked + 2,
        "handled once more, and only once"
    );
    assert!(handler.applied.lock().expect("lock").contains(&bad.get()));

    // The subscription carries on as before.
    let after = deposit(&store, "acc-2", 3).await;
    until(&mut status, "the next event", |s| s.checkpoint >= after).await;
    assert_eq!(handler.seen(after), 1);
    assert_eq!(status.borrow().replayed, 1);

    stop.send(()).expect("the runner is running");
    let summary = task.await.expect("joined").expect("a clean stop");
    assert_eq!(summary.checkpoint, Some(after));
}
