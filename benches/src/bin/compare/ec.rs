//! The EventCore side of each workload: the library's own command path
//! (`Executor::execute`) on any [`EventStore`].

use crate::harness::{Outcome, Rng};
use eventcore::{
    decode_recorded, AppendReceipt, AppendRequest, EventFilter, Executed, ExecutionError, ExpectedVersion,
    ReadAllRequest, ReadAllResponse, ReadRequest, ReadResponse, StoreError, StreamId, Time,
};
use eventcore_benches::bank::{account, AccountEvent, OpenAccount, PlainTransfer, Transfer};
use eventcore_benches::{append_request_in, Deposit, DepositMany, Replay, Totals};
use eventcore_tokio::{EventStore, Executor};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Events the executors' stream cache may hold.
pub const CACHE_EVENTS: usize = 1_000_000;

fn outcome<E: std::error::Error + 'static>(units: u64, result: Result<Executed, ExecutionError<E>>) -> Outcome {
    match result {
        Ok(done) => Outcome {
            units,
            conflicts: u64::from(done.stats.conflicts),
            retries: u64::from(done.attempts.saturating_sub(1)),
            round_trips: u64::from(done.stats.reads + done.stats.appends),
            error: None,
        },
        Err(e) => Outcome::failed(e),
    }
}

/// W1 client: deposits into its own stream through a shared executor.
pub struct StreamClient<S> {
    executor: Arc<Executor<S>>,
    base: StreamId,
    stream: StreamId,
    max_len: Option<u64>,
    written: u64,
    generation: u64,
}

impl<S: EventStore> StreamClient<S> {
    /// A client for `stream`; with `max_len`, it moves on to a fresh stream
    /// after that many events.
    pub fn new(executor: Arc<Executor<S>>, stream: StreamId, max_len: Option<u64>) -> Self {
        StreamClient {
            executor,
            base: stream.clone(),
            stream,
            max_len,
            written: 0,
            generation: 0,
        }
    }

    /// One single-stream command.
    pub async fn deposit(mut self) -> (Self, Outcome) {
        if self.max_len.is_some_and(|max| self.written >= max) {
            self.generation += 1;
            self.stream = eventcore_benches::stream(format!("{}-{}", self.base, self.generation));
            self.written = 0;
        }
        let command = Deposit {
            account: self.stream.clone(),
            amount: 1,
        };
        let result = self.executor.execute(command).await;
        if result.is_ok() {
            self.written += 1;
        }
        (self, outcome(1, result))
    }
}

/// W2 client: transfers between random pairs through a shared executor.
pub struct TransferClient<S> {
    executor: Arc<Executor<S>>,
    accounts: Arc<Vec<StreamId>>,
    rng: Rng,
    /// Run the whole-fold `PlainTransfer` instead of the view `Transfer`.
    plain: bool,
}

impl<S: EventStore> TransferClient<S> {
    /// A client over `accounts`.
    pub fn new(executor: Arc<Executor<S>>, accounts: Arc<Vec<StreamId>>, seed: u64) -> Self {
        TransferClient {
            executor,
            accounts,
            rng: Rng::new(seed),
            plain: false,
        }
    }

    /// The same client running the plain whole-fold `PlainTransfer` (one
    /// state folded from both streams' events on every execution).
    pub fn plain(mut self) -> Self {
        self.plain = true;
        self
    }

    /// Opens accounts `0..n` straight in the store (setup), each a stream of
    /// `events` events: `Opened { initial }` then `Deposited { 1 }`s, in
    /// appends of up to 5,000 events. Returns their ids.
    pub async fn fill_all(store: &S, n: u32, events: usize, initial: u64) -> Result<Vec<StreamId>, String> {
        let history = account_history(events, initial);
        let mut ids = Vec::with_capacity(n as usize);
        for i in 0..n {
            let id = account(i);
            load(store, &id, &history, FILL_APPEND).await?;
            ids.push(id);
        }
        Ok(ids)
    }

    /// Opens accounts `0..n` with `initial` each (setup), returning their ids.
    pub async fn open_all(executor: &Executor<S>, n: u32, initial: u64) -> Result<Vec<StreamId>, String> {
        let mut ids = Vec::with_capacity(n as usize);
        for i in 0..n {
            let id = account(i);
            executor
                .execute(OpenAccount {
                    account: id.clone(),
                    initial,
                })
                .await
                .map_err(|e| e.to_string())?;
            ids.push(id);
        }
        Ok(ids)
    }

    /// One transfer of 1 between a random pair.
    pub async fn transfer(mut self) -> (Self, Outcome) {
        let (from, to) = self.rng.pair(self.accounts.len() as u32);
        let command = Transfer {
            from: self.accounts[from as usize].clone(),
            to: self.accounts[to as usize].clone(),
            amount: 1,
        };
        let result = if self.plain {
            self.executor.execute(PlainTransfer(command)).await
        } else {
            self.executor.execute(command).await
        };
        (self, outcome(1, result))
    }
}

/// Events per append when filling long streams (the store takes up to
/// 10,000 per transaction by default).
pub const FILL_APPEND: usize = 5_000;

/// An account's history of `events` events: opened with `initial`, then
/// deposits of 1 (the same rows the raw floor loads).
pub fn account_history(events: usize, initial: u64) -> Vec<AccountEvent> {
    let mut history = Vec::with_capacity(events);
    history.push(AccountEvent::Opened { initial });
    history.resize(events.max(1), AccountEvent::Deposited { amount: 1 });
    history
}

/// An [`EventStore`] that counts what reads hand back: the cold-start row's
/// "events fetched from the stream".
#[derive(Debug, Clone)]
pub struct Counting<S> {
    inner: S,
    reads: Arc<AtomicU64>,
    events: Arc<AtomicU64>,
}

impl<S> Counting<S> {
    /// Counts reads of `inner` from zero.
    pub fn new(inner: S) -> Self {
        Counting {
            inner,
            reads: Arc::default(),
            events: Arc::default(),
        }
    }

    /// Read requests answered so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Events returned by reads so far (all streams).
    pub fn events_read(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }
}

impl<S: EventStore> EventStore for Counting<S> {
    async fn read(&self, request: &ReadRequest) -> Result<ReadResponse, StoreError> {
        let result = self.inner.read(request).await;
        if let Ok(response) = &result {
            let events: usize = response.streams.iter().map(|s| s.events.len()).sum();
            self.reads.fetch_add(1, Ordering::Relaxed);
            self.events.fetch_add(events as u64, Ordering::Relaxed);
        }
        result
    }

    async fn append(&self, request: &AppendRequest) -> Result<AppendReceipt, StoreError> {
        self.inner.append(request).await
    }

    async fn read_all(&self, request: &ReadAllRequest) -> Result<ReadAllResponse, StoreError> {
        self.inner.read_all(request).await
    }

    async fn append_batch(&self, requests: &[AppendRequest]) -> Vec<Result<AppendReceipt, StoreError>> {
        self.inner.append_batch(requests).await
    }

    fn codec(&self) -> eventcore::Codec {
        self.inner.codec()
    }
}

/// The first command of a fresh executor on a stream, timed.
#[derive(Debug, Clone, Copy)]
pub struct FirstCommand {
    /// Wall time of `execute`, snapshot load, reads and append included.
    pub micros: u64,
    /// Events the store's reads returned.
    pub events_read: u64,
    /// Read requests.
    pub reads: u64,
}

/// Runs one `Deposit` (a view command over `Account`) on `stream` through
/// `executor` (a fresh executor over a counting store) and times it.
pub async fn first_command<S: EventStore>(
    executor: &Executor<Counting<S>>,
    stream: &StreamId,
) -> Result<FirstCommand, String> {
    let store = executor.store();
    let (events_before, reads_before) = (store.events_read(), store.reads());
    let began = std::time::Instant::now();
    executor
        .execute(Deposit {
            account: stream.clone(),
            amount: 1,
        })
        .await
        .map_err(|e| e.to_string())?;
    let micros = began.elapsed().as_micros() as u64;
    Ok(FirstCommand {
        micros,
        events_read: store.events_read() - events_before,
        reads: store.reads() - reads_before,
    })
}

static REQUESTS: AtomicU64 = AtomicU64::new(1 << 40);

/// Loads `events` into `stream` in appends of at most `per_append` events
/// (data set setup, straight to the store).
pub async fn load<S: EventStore>(
    store: &S,
    stream: &StreamId,
    events: &[AccountEvent],
    per_append: usize,
) -> Result<(), String> {
    let mut version = 0u64;
    for chunk in events.chunks(per_append) {
        let expected = ExpectedVersion::from_read(eventcore::StreamVersion::new(version));
        let n = REQUESTS.fetch_add(1, Ordering::Relaxed);
        let request = append_request_in(store.codec(), stream, expected, chunk, now(), n);
        store.append(&request).await.map_err(|e| e.to_string())?;
        version += chunk.len() as u64;
    }
    Ok(())
}

fn now() -> Time {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Time::from_unix_nanos(nanos)
}

/// W3: folds one whole stream through the command path (an executor
/// without a stream cache, so every replay reads the stream).
pub async fn replay_stream<S: EventStore>(executor: &Executor<S>, stream: &StreamId, events: u64) -> Outcome {
    let result = executor.execute(Replay { stream: stream.clone() }).await;
    outcome(events, result)
}

/// W3: folds the whole store from position 0 through `read_all`, in pages
/// of `page` events.
pub async fn replay_all<S: EventStore>(store: &S, page: NonZeroU32) -> Result<Totals, String> {
    let mut totals = Totals::default();
    let mut after = eventcore::GlobalPosition::START;
    loop {
        let request = ReadAllRequest {
            after,
            limit: page,
            filter: EventFilter::all(),
        };
        let response = store.read_all(&request).await.map_err(|e| e.to_string())?;
        for recorded in &response.events {
            let event: AccountEvent = decode_recorded(recorded).map_err(|e| e.to_string())?;
            totals.apply(&event);
        }
        let full = response.events.len() == page.get() as usize;
        after = response
            .events
            .last()
            .map_or(response.complete_through, |e| e.position)
            .max(response.complete_through);
        if !full {
            return Ok(totals);
        }
    }
}

/// W4 client through the command path: one command appends `count` events.
pub struct BatchClient<S> {
    executor: Arc<Executor<S>>,
    stream: StreamId,
    count: usize,
}

impl<S: EventStore> BatchClient<S> {
    /// A writer of `stream`.
    pub fn new(executor: Arc<Executor<S>>, stream: StreamId, count: usize) -> Self {
        BatchClient {
            executor,
            stream,
            count,
        }
    }

    /// One command appending `count` events.
    pub async fn append(self) -> (Self, Outcome) {
        let command = DepositMany {
            account: self.stream.clone(),
            count: self.count,
        };
        let result = self.executor.execute(command).await;
        let units = self.count as u64;
        (self, outcome(units, result))
    }
}

/// W4 straight to the store (no command): the sole writer appends `count`
/// events per request at the version it knows.
pub struct DirectWriter<S> {
    store: Arc<S>,
    stream: StreamId,
    version: u64,
    count: usize,
}

impl<S: EventStore> DirectWriter<S> {
    /// A writer of an empty `stream`.
    pub fn new(store: Arc<S>, stream: StreamId, count: usize) -> Self {
        DirectWriter {
            store,
            stream,
            version: 0,
            count,
        }
    }

    /// One append of `count` events.
    pub async fn append(mut self) -> (Self, Outcome) {
        let events = vec![AccountEvent::Deposited { amount: 1 }; self.count];
        let expected = ExpectedVersion::from_read(eventcore::StreamVersion::new(self.version));
        let request = append_request_in(
            self.store.codec(),
            &self.stream,
            expected,
            &events,
            now(),
            REQUESTS.fetch_add(1, Ordering::Relaxed),
        );
        match self.store.append(&request).await {
            Ok(_) => {
                self.version += self.count as u64;
                let units = self.count as u64;
                (self, Outcome::done(units))
            }
            Err(e) => (self, Outcome::failed(e)),
        }
    }
}

/// W5: a subscriber that decodes and folds every event it is handed.
#[derive(Debug, Default)]
pub struct Folding(pub Totals);

impl eventcore_tokio::Subscriber for Folding {
    async fn handle(&mut self, batch: &eventcore::Batch) -> Result<(), eventcore::HandleError> {
        for recorded in &batch.events {
            match decode_recorded::<AccountEvent>(recorded) {
                Ok(event) => self.0.apply(&event),
                Err(e) => return Err(eventcore_tokio::poison(recorded, e.to_string())),
            }
        }
        Ok(())
    }
}

/// W5: a fresh subscription (checkpoints in memory) caught up from position
/// 0 through the subscription runner, folding every event.
pub async fn catch_up<S: EventStore>(store: S, batch: NonZeroU32) -> Result<Totals, String> {
    let mut runner = eventcore_tokio::Runner::subscription(
        "bench-catch-up",
        store,
        eventcore_tokio::MemoryCheckpointStore::new(),
        Folding::default(),
    )
    .with_policy(eventcore::SubscriptionPolicy::default().with_batch_size(batch));
    runner.run_until_caught_up().await.map_err(|e| e.to_string())?;
    Ok(runner.sink().subscriber().0)
}
