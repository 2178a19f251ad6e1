//! The metrics an application sees through the `metrics` facade, recorded
//! by a `DebuggingRecorder` installed for this thread only: a successful
//! command, a domain refusal, a conflict that is retried, and a
//! subscription batch with its lag, on the memory store.

use eventcore::{Batch, Command, Decision, Event, HandleError, StreamId};
use eventcore_tokio::metrics::*;
use eventcore_tokio::{Executor, MemoryCheckpointStore, MemoryEventStore, Runner, Subscriber};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::MetricKind;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

#[derive(Serialize, Deserialize)]
enum Account {
    Opened,
    Deposited { amount: u64 },
}
impl Event for Account {}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(&'static str);

struct Open(StreamId);
impl Command for Open {
    type Event = Account;
    type State = bool;
    type Error = Refused;
    fn streams(&self) -> Vec<StreamId> {
        vec![self.0.clone()]
    }
    fn apply(&self, open: &mut bool, _: &StreamId, _: &Account) {
        *open = true;
    }
    fn decide(&self, open: &bool, out: &mut Decision<Account>) -> Result<(), Refused> {
        if *open {
            return Err(Refused("already open"));
        }
        out.emit(&self.0, Account::Opened);
        Ok(())
    }
}

struct Deposit(StreamId, u64);
impl Command for Deposit {
    type Event = Account;
    type State = bool;
    type Error = Refused;
    fn streams(&self) -> Vec<StreamId> {
        vec![self.0.clone()]
    }
    fn apply(&self, open: &mut bool, _: &StreamId, event: &Account) {
        *open |= matches!(event, Account::Opened);
    }
    fn decide(&self, open: &bool, out: &mut Decision<Account>) -> Result<(), Refused> {
        if !*open {
            return Err(Refused("no such account"));
        }
        out.emit(&self.0, Account::Deposited { amount: self.1 });
        Ok(())
    }
}

fn account(name: &str) -> StreamId {
    StreamId::new(name).expect("valid stream id")
}

/// One metric as recorded: its kind, name, labels and value.
type Recorded = (MetricKind, String, Vec<(String, String)>, DebugValue);

/// What the lag gauges read while a batch of so many events was handled.
type LagReading = (usize, Option<f64>, Option<f64>);

/// Everything recorded since the last look (a look drains the recorder).
#[derive(Default)]
struct Seen(Vec<Recorded>);

impl Seen {
    fn take(snapshotter: &Snapshotter) -> Seen {
        Seen(
            snapshotter
                .snapshot()
                .into_vec()
                .into_iter()
                .map(|(key, _, _, value)| {
                    let (kind, key) = key.into_parts();
                    let labels = key
                        .labels()
                        .map(|l| (l.key().to_owned(), l.value().to_owned()))
                        .collect();
                    (kind, key.name().to_owned(), labels, value)
                })
                .collect(),
        )
    }

    fn matching<'a>(&'a self, name: &'a str, labels: &'a [(&str, &str)]) -> impl Iterator<Item = &'a DebugValue> {
        self.0.iter().filter_map(move |(_, n, have, value)| {
            let all = labels
                .iter()
                .all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v));
            (n == name && all).then_some(value)
        })
    }

    /// Sum of the matching counters.
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.matching(name, labels)
            .map(|v| match v {
                DebugValue::Counter(n) => *n,
                other => panic!("{name} is not a counter: {other:?}"),
            })
            .sum()
    }

    /// Every value recorded in the matching histograms.
    fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.matching(name, labels)
            .flat_map(|v| match v {
                DebugValue::Histogram(values) => values.iter().map(|x| x.into_inner()).collect::<Vec<_>>(),
                other => panic!("{name} is not a histogram: {other:?}"),
            })
            .collect()
    }

    /// The matching gauge's value, if it was ever set.
    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.matching(name, labels).next().map(|v| match v {
            DebugValue::Gauge(x) => x.into_inner(),
            other => panic!("{name} is not a gauge: {other:?}"),
        })
    }
}

/// A subscriber that looks at the lag gauges while it handles each batch.
struct LagProbe {
    snapshotter: Snapshotter,
    during: Arc<Mutex<Vec<LagReading>>>,
}

impl Subscriber for LagProbe {
    async fn handle(&mut self, batch: &Batch) -> Result<(), HandleError> {
        let seen = Seen::take(&self.snapshotter);
        let audit = [("subscription", "audit")];
        let lag = (
            batch.events.len(),
            seen.gauge(SUBSCRIPTION_LAG_POSITIONS, &audit),
            seen.gauge(SUBSCRIPTION_LAG_SECONDS, &audit),
        );
        self.during.lock().expect("probe lock").push(lag);
        Ok(())
    }
}

/// Runs `test` on a current-thread runtime with a recorder installed for
/// this thread only (every task of that runtime runs here, so everything
/// the driver records reaches it).
fn with_recorder(test: impl AsyncFnOnce(&Snapshotter)) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    metrics::with_local_recorder(&recorder, || runtime.block_on(test(&snapshotter)));
}

#[test]
fn commands_store_operations_caches_and_subscriptions_move_their_metrics() {
    with_recorder(async |snapshotter| {
        let store = MemoryEventStore::new();
        let a = Executor::new(store.clone()).with_stream_cache(1_000);
        let b = Executor::new(store.clone());

        // A command that commits: one execution, one attempt, a read and an append.
        a.execute(Open(account("acc-1"))).await.expect("opens");
        let seen = Seen::take(snapshotter);
        assert_eq!(seen.counter(COMMANDS, &[("command", "Open"), ("outcome", "ok")]), 1);
        assert_eq!(seen.counter(COMMANDS, &[]), 1, "exactly one execution counted");
        assert_eq!(seen.histogram(COMMAND_ATTEMPTS, &[]), vec![1.0]);
        let latency = seen.histogram(COMMAND_DURATION, &[("command", "Open")]);
        assert!(
            latency.len() == 1 && latency[0] > 0.0,
            "one latency, in seconds: {latency:?}"
        );
        assert_eq!(seen.histogram(STORE_DURATION, &[("operation", "read")]).len(), 1);
        assert_eq!(seen.histogram(STORE_DURATION, &[("operation", "append")]).len(), 1);
        assert_eq!(seen.counter(STREAM_CACHE_MISSES, &[]), 1, "a cold cache misses");
        assert_eq!(seen.counter(CONFLICTS, &[]) + seen.counter(RETRIES, &[]), 0);
        assert_eq!(seen.counter(STORE_ERRORS, &[]), 0);

        // A domain refusal: counted as rejected, not as a store error.
        let refused = a.execute(Open(account("acc-1"))).await;
        assert!(refused.is_err(), "an account opens once");
        let seen = Seen::take(snapshotter);
        assert_eq!(
            seen.counter(COMMANDS, &[("command", "Open"), ("outcome", "rejected")]),
            1
        );
        assert_eq!(seen.counter(COMMANDS, &[("outcome", "ok")]), 0);
        assert_eq!(seen.counter(STORE_ERRORS, &[]), 0);
        assert_eq!(
            seen.counter(STREAM_CACHE_HITS, &[]),
            1,
            "acc-1 was cached by the first command"
        );

        // A conflict that is retried: `a` caches acc-2, `b` writes to it,
        // `a` decides on its stale copy, conflicts, re-reads and commits.
        a.execute(Open(account("acc-2"))).await.expect("opens");
        b.execute(Deposit(account("acc-2"), 5)).await.expect("deposits");
        let _ = Seen::take(snapshotter);
        let done = a
            .execute(Deposit(account("acc-2"), 7))
            .await
            .expect("deposits after a retry");
        assert_eq!(done.attempts, 2);
        let seen = Seen::take(snapshotter);
        assert_eq!(seen.counter(COMMANDS, &[("command", "Deposit"), ("outcome", "ok")]), 1);
        assert_eq!(seen.counter(CONFLICTS, &[]), 1);
        assert_eq!(seen.counter(RETRIES, &[]), 1);
        assert_eq!(seen.histogram(COMMAND_ATTEMPTS, &[]), vec![2.0]);
        assert_eq!(
            seen.counter(STORE_ERRORS, &[("operation", "append"), ("kind", "conflict")]),
            1,
            "the store answered the conflict"
        );
        assert_eq!(seen.counter(UNKNOWN_OUTCOMES, &[]), 0);

        // A subscription over the four events: batches counted, and the lag
        // gauges set while a batch is handled and zero once caught up.
        let during = Arc::new(Mutex::new(Vec::new()));
        let probe = LagProbe {
            snapshotter: snapshotter.clone(),
            during: during.clone(),
        };
        let mut runner = Runner::subscription("audit", store.clone(), MemoryCheckpointStore::new(), probe)
            .with_wakeups(store.watch_head());
        runner.run_until_caught_up().await.expect("catches up");
        let during = during.lock().expect("probe lock").clone();
        assert!(!during.is_empty(), "at least one batch");
        let (events, positions, seconds) = during[0];
        assert_eq!(events, 4, "one batch of the four events");
        assert_eq!(
            positions,
            Some(4.0),
            "four positions behind while the first batch is handled"
        );
        assert!(
            seconds.is_some_and(|s| s > 0.0),
            "the batch's events are older than its delivery: {seconds:?}"
        );
        let seen = Seen::take(snapshotter);
        let audit = [("subscription", "audit")];
        assert_eq!(seen.gauge(SUBSCRIPTION_LAG_POSITIONS, &audit), Some(0.0), "caught up");
        assert_eq!(seen.gauge(SUBSCRIPTION_LAG_SECONDS, &audit), Some(0.0), "caught up");
        assert_eq!(seen.counter(SUBSCRIPTION_ERRORS, &audit), 0);
    });
}

#[test]
fn a_batch_is_counted_with_its_size() {
    struct Ignore;
    impl Subscriber for Ignore {
        async fn handle(&mut self, _: &Batch) -> Result<(), HandleError> {
            Ok(())
        }
    }
    with_recorder(async |snapshotter| {
        let store = MemoryEventStore::new();
        let executor = Executor::new(store.clone());
        for n in 0..3 {
            executor
                .execute(Open(account(&format!("acc-{n}"))))
                .await
                .expect("opens");
        }
        let _ = Seen::take(snapshotter);
        let mut runner = Runner::subscription("ledger", store.clone(), MemoryCheckpointStore::new(), Ignore);
        runner.run_until_caught_up().await.expect("catches up");
        let seen = Seen::take(snapshotter);
        let ledger = [("subscription", "ledger")];
        assert_eq!(seen.counter(SUBSCRIPTION_EVENTS, &ledger), 3);
        assert_eq!(
            seen.histogram(SUBSCRIPTION_BATCH_EVENTS, &ledger).iter().sum::<f64>(),
            3.0
        );
        assert_eq!(
            seen.counter(SUBSCRIPTION_EVENTS, &[("subscription", "audit")]),
            0,
            "labelled by name"
        );
        assert!(
            !seen.histogram(STORE_DURATION, &[("operation", "read_all")]).is_empty(),
            "the fetches are store operations"
        );
    });
}
