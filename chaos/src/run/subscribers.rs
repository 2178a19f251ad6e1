//! The subscribers that read through the proxy for the whole run: a plain
//! `read_all` poller and the real subscription runner.

use eventcore::{Batch, EventFilter, GlobalPosition, HandleError, ReadAllRequest, RecordedEvent, SubscriptionPolicy};
use eventcore_postgres::{PgCheckpointStore, PgNotifier, PostgresStore};
use eventcore_tokio::{DeadLetterStore, EventStore, LeaseStore, Runner, Sink, Subscriber};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Polls the global log through the proxy until told to stop and caught up
/// with the store; returns what it saw and how many reads failed.
pub(super) async fn subscribe(store: PostgresStore, stop: Arc<AtomicBool>) -> (Vec<RecordedEvent>, u64) {
    let mut seen: Vec<RecordedEvent> = Vec::new();
    let mut failed = 0;
    let mut after = GlobalPosition::START;
    let mut idle_after_stop = 0;
    // Bounded: at most this many reads (a read is at least a round trip
    // or a pause).
    for _ in 0..1_000_000 {
        let request = ReadAllRequest {
            after,
            limit: NonZeroU32::new(500).unwrap_or(NonZeroU32::MIN),
            filter: EventFilter::all(),
        };
        match store.read_all(&request).await {
            Ok(response) => {
                let empty = response.events.is_empty();
                after = response.complete_through.max(after);
                seen.extend(response.events);
                if empty {
                    if stop.load(Ordering::SeqCst) {
                        idle_after_stop += 1;
                        if idle_after_stop >= 3 {
                            break;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Err(_) => {
                failed += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    (seen, failed)
}

/// Collects what a subscription runner delivers.
struct Collect(Arc<std::sync::Mutex<Vec<RecordedEvent>>>);

impl Subscriber for Collect {
    async fn handle(&mut self, batch: &Batch) -> Result<(), HandleError> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(batch.events.iter().cloned());
        Ok(())
    }
}

/// Runs a subscription — the real runner, its checkpoint in PostgreSQL,
/// woken by the LISTEN/NOTIFY notifier — through the proxy until `stop`,
/// restarting it from its checkpoint after an error; then catches up.
/// Returns what it delivered, how often it restarted, and the notifier's
/// notification and reconnect counts.
pub(super) async fn run_subscription(
    store: PostgresStore,
    stop: Arc<AtomicBool>,
) -> (Vec<RecordedEvent>, u64, u64, u64) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let notifier = PgNotifier::start(&store).await.ok();
    let policy = SubscriptionPolicy {
        fetch_timeout: Duration::from_secs(1),
        ..SubscriptionPolicy::default()
    };
    let mut runner = Runner::subscription(
        "chaos",
        store.clone(),
        PgCheckpointStore::new(&store),
        Collect(seen.clone()),
    )
    .with_policy(policy);
    if let Some(notifier) = &notifier {
        runner = runner.with_wakeups(notifier.subscribe());
    }
    let restarts = drive(&mut runner, &stop).await;
    let delivered = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let (notifications, reconnects) = notifier.map_or((0, 0), |n| (n.notifications(), n.reconnects()));
    (delivered, restarts, notifications, reconnects)
}

/// Runs `runner` until `stop` is set, restarting it after errors, then until
/// caught up; returns the restarts after an error.
pub(super) async fn drive<S, K, L, D>(runner: &mut Runner<S, K, L, D>, stop: &Arc<AtomicBool>) -> u64
where
    S: EventStore,
    K: Sink,
    L: LeaseStore,
    D: DeadLetterStore,
{
    let stopped = || {
        let stop = stop.clone();
        async move {
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let mut restarts = 0;
    for _ in 0..1_000 {
        match runner.run_until(stopped()).await {
            Ok(_) => break,
            Err(_) => {
                restarts += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    for _ in 0..20 {
        if runner.run_until_caught_up().await.is_ok() {
            break;
        }
        restarts += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    restarts
}
