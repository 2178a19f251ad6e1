//! Opt-in append batching: appends that arrive together share one
//! [`EventStore::append_batch`] call — on PostgreSQL one round trip and one
//! transaction (one WAL flush) for the whole group — while each caller still
//! gets its own outcome.
//!
//! How a batch forms: one worker task takes the first queued append, waits
//! for a free slot (at most [`BatchingOptions::max_in_flight`] batches run at
//! once), optionally lingers, then takes every append queued by then, up to
//! [`BatchingOptions::max_batch`] requests and
//! [`BatchingOptions::max_batch_events`] events. With the default of no
//! linger, an idle store adds no latency: a lone append goes out at once,
//! and appends that arrive while a batch is in flight form the next one.
//!
//! What does not change: each request is still atomic on its own, one
//! request's conflict or bad input never fails its neighbours (that is the
//! contract of `append_batch`), idempotency by command id holds per request,
//! and a caller that gives up waiting (a timeout drops its future) leaves
//! its append to commit or not exactly as a dropped plain append would —
//! an unknown outcome that re-sending with the same command id settles.

use crate::EventStore;
use eventcore::{
    AppendReceipt, AppendRequest, Operation, ReadAllRequest, ReadAllResponse, ReadRequest, ReadResponse, StoreError,
};
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::Instrument;

/// How appends are grouped.
///
/// ```
/// use eventcore_tokio::BatchingOptions;
/// use std::time::Duration;
/// let options = BatchingOptions::default().max_batch(32).linger(Duration::from_micros(200));
/// assert_eq!(options.max_batch, 32);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchingOptions {
    /// Most requests in one batch.
    pub max_batch: usize,
    /// Most events in one batch, across its requests (a single larger
    /// request still goes out, alone).
    pub max_batch_events: usize,
    /// How long the worker waits for more appends after the first one of a
    /// batch. Zero (the default): never wait; batches form only from appends
    /// that queued up while earlier batches were in flight.
    pub linger: Duration,
    /// Most batches in flight at once.
    pub max_in_flight: usize,
}

impl Default for BatchingOptions {
    /// 64 requests, 10,000 events, no linger, 1 batch in flight.
    fn default() -> Self {
        BatchingOptions {
            max_batch: 64,
            max_batch_events: 10_000,
            linger: Duration::ZERO,
            max_in_flight: 1,
        }
    }
}

impl BatchingOptions {
    /// Sets the most requests per batch (at least 1).
    pub fn max_batch(mut self, max: usize) -> Self {
        self.max_batch = max.max(1);
        self
    }

    /// Sets the most events per batch.
    pub fn max_batch_events(mut self, max: usize) -> Self {
        self.max_batch_events = max.max(1);
        self
    }

    /// Sets the linger time.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Sets the most batches in flight (at least 1).
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max.max(1);
        self
    }
}

/// Counters of what the batching layer did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchingStats {
    /// `append_batch` calls made on the inner store.
    pub batches: u64,
    /// Appends sent through them.
    pub appends: u64,
}

struct Job {
    request: AppendRequest,
    reply: oneshot::Sender<Result<AppendReceipt, StoreError>>,
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    appends: AtomicU64,
    /// Appends handed in and not yet sent in a batch.
    queued: AtomicUsize,
}

struct Shared<S> {
    inner: Arc<S>,
    options: BatchingOptions,
    queue: OnceLock<mpsc::UnboundedSender<Job>>,
    counters: Arc<Counters>,
}

/// An [`EventStore`] that groups concurrent appends into
/// [`EventStore::append_batch`] calls on the store it wraps. Reads pass
/// straight through. Clones share one queue.
///
/// The worker task starts with the first append (so the store can be built
/// outside a runtime) and ends when the last clone is dropped.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use eventcore_tokio::{BatchingStore, Executor, MemoryEventStore};
/// let store = BatchingStore::new(MemoryEventStore::new());
/// let executor = Executor::new(store);
/// # let _ = executor;
/// # });
/// ```
pub struct BatchingStore<S> {
    shared: Arc<Shared<S>>,
}

impl<S> Clone for BatchingStore<S> {
    fn clone(&self) -> Self {
        BatchingStore {
            shared: self.shared.clone(),
        }
    }
}

impl<S> std::fmt::Debug for BatchingStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchingStore")
            .field("options", &self.shared.options)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<S> BatchingStore<S> {
    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.shared.inner
    }

    /// The options in force.
    pub fn options(&self) -> &BatchingOptions {
        &self.shared.options
    }

    /// Appends waiting for a batch: handed in by callers and not yet sent to
    /// the wrapped store. The queue has no bound of its own: every caller
    /// waits for its answer, so it holds at most one append per caller
    /// waiting on an append (across clones), and drains as batches go out.
    ///
    /// ```
    /// use eventcore_tokio::{BatchingStore, MemoryEventStore};
    /// let store = BatchingStore::new(MemoryEventStore::new());
    /// assert_eq!(store.queued(), 0);
    /// ```
    pub fn queued(&self) -> usize {
        self.shared.counters.queued.load(Ordering::Relaxed)
    }

    /// What the batching layer has done so far.
    pub fn stats(&self) -> BatchingStats {
        BatchingStats {
            batches: self.shared.counters.batches.load(Ordering::Relaxed),
            appends: self.shared.counters.appends.load(Ordering::Relaxed),
        }
    }
}

impl<S: EventStore> BatchingStore<S> {
    /// Batches appends to `inner` with the default options.
    pub fn new(inner: S) -> Self {
        BatchingStore::with_options(inner, BatchingOptions::default())
    }

    /// Batches appends to `inner` as `options` say.
    pub fn with_options(inner: S, options: BatchingOptions) -> Self {
        BatchingStore {
            shared: Arc::new(Shared {
                inner: Arc::new(inner),
                options,
                queue: OnceLock::new(),
                counters: Arc::default(),
            }),
        }
    }

    fn queue(&self) -> &mpsc::UnboundedSender<Job> {
        self.shared.queue.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            let worker = Worker {
                inner: self.shared.inner.clone(),
                options: self.shared.options.clone(),
                counters: self.shared.counters.clone(),
                slots: Arc::new(Semaphore::new(self.shared.options.max_in_flight.max(1))),
            };
            tokio::spawn(worker.run(receiver));
            sender
        })
    }
}

struct Worker<S> {
    inner: Arc<S>,
    options: BatchingOptions,
    counters: Arc<Counters>,
    slots: Arc<Semaphore>,
}

impl<S: EventStore> Worker<S> {
    async fn run(self, mut queue: mpsc::UnboundedReceiver<Job>) {
        let mut carried: Option<Job> = None;
        loop {
            let first = match carried.take() {
                Some(job) => job,
                None => match queue.recv().await {
                    Some(job) => job,
                    None => return,
                },
            };
            // Wait for a slot before collecting: appends that arrive while
            // every slot is busy join this batch.
            let Ok(slot) = self.slots.clone().acquire_owned().await else {
                return;
            };
            let mut events = first.request.event_count();
            let mut jobs = vec![first];
            let linger_until = tokio::time::Instant::now() + self.options.linger;
            while jobs.len() < self.options.max_batch {
                let next = if self.options.linger.is_zero() {
                    queue.try_recv().ok()
                } else {
                    match queue.try_recv() {
                        Ok(job) => Some(job),
                        Err(_) => tokio::time::timeout_at(linger_until, queue.recv()).await.ok().flatten(),
                    }
                };
                let Some(job) = next else { break };
                let count = job.request.event_count();
                if events + count > self.options.max_batch_events {
                    carried = Some(job);
                    break;
                }
                events += count;
                jobs.push(job);
            }
            self.counters.batches.fetch_add(1, Ordering::Relaxed);
            self.counters.appends.fetch_add(jobs.len() as u64, Ordering::Relaxed);
            self.counters.queued.fetch_sub(jobs.len(), Ordering::Relaxed);
            crate::metrics::append_batch(jobs.len(), events);
            let span = tracing::info_span!("group_commit", requests = jobs.len(), events);
            let inner = self.inner.clone();
            tokio::spawn(
                async move {
                    let _slot = slot;
                    commit(&*inner, jobs).await;
                }
                .instrument(span),
            );
        }
    }
}

async fn commit<S: EventStore>(inner: &S, jobs: Vec<Job>) {
    let (requests, replies): (Vec<AppendRequest>, Vec<_>) = jobs.into_iter().map(|j| (j.request, j.reply)).unzip();
    let mut outcomes = inner.append_batch(&requests).await.into_iter();
    for reply in replies {
        let outcome = outcomes.next().unwrap_or_else(|| {
            Err(StoreError::ContractViolation {
                operation: Operation::Append,
                message: "append_batch answered fewer outcomes than requests".to_owned(),
            })
        });
        // The caller may have stopped waiting; its outcome is then unknown
        // to it, which re-sending with the same command id settles.
        let _ = reply.send(outcome);
    }
}

impl<S: EventStore> EventStore for BatchingStore<S> {
    fn read(&self, request: &ReadRequest) -> impl Future<Output = Result<ReadResponse, StoreError>> + Send {
        self.shared.inner.read(request)
    }

    async fn append(&self, request: &AppendRequest) -> Result<AppendReceipt, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            request: request.clone(),
            reply,
        };
        let queued = &self.shared.counters.queued;
        queued.fetch_add(1, Ordering::Relaxed);
        if self.queue().send(job).is_err() {
            queued.fetch_sub(1, Ordering::Relaxed);
            return Err(StoreError::transient(
                Operation::Append,
                "the batching worker has stopped; the append was not sent",
            ));
        }
        match answer.await {
            Ok(outcome) => outcome,
            // The batch was dropped mid-flight (its task panicked or the
            // runtime shut down): it may have committed.
            Err(_) => Err(StoreError::OutcomeUnknown {
                operation: Operation::Append,
                message: "the batch carrying this append ended without an answer".to_owned(),
                source: None,
            }),
        }
    }

    fn read_all(&self, request: &ReadAllRequest) -> impl Future<Output = Result<ReadAllResponse, StoreError>> + Send {
        self.shared.inner.read_all(request)
    }

    fn append_batch(
        &self,
        requests: &[AppendRequest],
    ) -> impl Future<Output = Vec<Result<AppendReceipt, StoreError>>> + Send {
        // Already a batch: hand it over as it is.
        self.shared.inner.append_batch(requests)
    }

    fn codec(&self) -> eventcore::Codec {
        self.shared.inner.codec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryEventStore;
    use eventcore::{
        CommandId, EventId, EventMetadata, EventType, ExpectedVersion, NewEvent, Payload, StreamAppend, StreamId, Time,
    };

    /// A memory store whose batches wait for a permit each.
    struct Gated {
        inner: MemoryEventStore,
        gate: Arc<Semaphore>,
    }

    impl EventStore for Gated {
        async fn read(&self, request: &ReadRequest) -> Result<ReadResponse, StoreError> {
            self.inner.read(request).await
        }
        async fn append(&self, request: &AppendRequest) -> Result<AppendReceipt, StoreError> {
            self.inner.append(request).await
        }
        async fn read_all(&self, request: &ReadAllRequest) -> Result<ReadAllResponse, StoreError> {
            self.inner.read_all(request).await
        }
        async fn append_batch(&self, requests: &[AppendRequest]) -> Vec<Result<AppendReceipt, StoreError>> {
            if let Ok(permit) = self.gate.acquire().await {
                permit.forget();
            }
            self.inner.append_batch(requests).await
        }
    }

    fn append(n: u8) -> AppendRequest {
        AppendRequest {
            metadata: Arc::new(EventMetadata::new(CommandId::v7(Time::ZERO, [n; 10]), Time::ZERO)),
            streams: vec![StreamAppend {
                stream: StreamId::new(format!("s-{n}")).expect("valid"),
                expected: ExpectedVersion::Exact(eventcore::StreamVersion::NONE),
                events: vec![NewEvent {
                    event_id: EventId::v7(Time::ZERO, [n; 10]),
                    event_type: EventType::new("E").expect("valid"),
                    schema_version: 1,
                    payload: Payload::from_trusted_json("null"),
                }],
                tombstone: false,
            }],
        }
    }

    #[tokio::test]
    async fn queued_counts_the_appends_waiting_for_a_batch_and_drains() {
        let gate = Arc::new(Semaphore::new(0));
        let store = BatchingStore::new(Gated {
            inner: MemoryEventStore::new(),
            gate: gate.clone(),
        });
        let first = tokio::spawn({
            let store = store.clone();
            async move { store.append(&append(0)).await }
        });
        // The first append goes out alone and holds the only batch slot.
        while store.stats().batches < 1 {
            tokio::task::yield_now().await;
        }
        assert_eq!(store.queued(), 0);
        let waiting: Vec<_> = (1..=4)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move { store.append(&append(n)).await })
            })
            .collect();
        while store.queued() < 4 {
            assert!(store.queued() <= 4, "never more than the callers waiting");
            tokio::task::yield_now().await;
        }
        gate.add_permits(2);
        for task in std::iter::once(first).chain(waiting) {
            assert!(task.await.expect("no panic").is_ok());
        }
        assert_eq!(store.queued(), 0, "drained");
        assert_eq!(store.stats(), BatchingStats { batches: 2, appends: 5 });
    }
}
