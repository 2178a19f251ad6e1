//! The soak's executors and clients.
//!
//! Every executor has a stream cache, a view cache and persisted snapshots
//! (`PgSnapshotStore`), bounded far below the working set; every odd one
//! appends through its own `BatchingStore`. Each client loops over the
//! bank's commands until told to stop:
//!
//! - one in `open_one_in` opens a new account (the set of streams grows
//!   for the whole soak);
//! - about half the rest are `Transfer`s (view commands: the view cache and
//!   snapshots) between accounts picked among the hot ones, the most recent
//!   ones and all of them;
//! - the others are `PlainTransfer`s (whole-fold commands: the stream
//!   cache) between recent or any accounts, never hot ones, whose streams
//!   grow for the whole soak and would make every whole fold longer;
//! - one in `2 × open_one_in` is a transfer to an account never opened,
//!   refused after reading an empty stream (such streams are cached too).
//!
//! The clients keep no per-command state: what they did is a handful of
//! counters.

use super::sample::ExecutorSample;
use super::SoakConfig;
use eventcore::{CommandError, Entropy, Executed, ExecutionError, StreamId};
use eventcore_examples::bank::{account, BankError, OpenAccount, PlainTransfer, Transfer};
use eventcore_postgres::{PgSnapshotStore, PostgresStore};
use eventcore_tokio::{BatchingStore, EventStore, Executor};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

/// Every account opens with this balance.
pub(super) const INITIAL_BALANCE: u64 = 1_000;
/// Errors kept for the report (the rest are only counted).
const ERRORS_KEPT: usize = 10;

/// What the clients share: the next account to open and the counters.
pub(super) struct Shared {
    hot: u32,
    window: u32,
    open_one_in: u64,
    next_account: AtomicU32,
    committed: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    events: AtomicU64,
    errors: Mutex<Vec<String>>,
}

/// The clients' counters at one moment.
///
/// ```
/// let totals = eventcore_chaos::soak::Totals::default();
/// assert_eq!(totals.committed + totals.refused + totals.failed, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Commands that committed (or decided to write nothing).
    pub committed: u64,
    /// Commands the bank refused (not open, insufficient funds, ...).
    pub refused: u64,
    /// Commands that failed otherwise (timeouts, store errors).
    pub failed: u64,
    /// Events the committed commands appended.
    pub events: u64,
    /// Account numbers handed out so far (hot accounts included).
    pub accounts: u32,
}

impl Shared {
    pub(super) fn new(config: &SoakConfig) -> Self {
        Shared {
            hot: config.hot_accounts.max(1),
            window: config.recent_window.max(1),
            open_one_in: config.open_one_in.max(2),
            next_account: AtomicU32::new(config.hot_accounts.max(1) + 1),
            committed: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            events: AtomicU64::new(0),
            errors: Mutex::new(Vec::new()),
        }
    }

    pub(super) fn totals(&self) -> Totals {
        Totals {
            committed: self.committed.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            accounts: self.next_account.load(Ordering::Relaxed).saturating_sub(1),
        }
    }

    /// The first few failures, in words.
    pub(super) fn errors(&self) -> Vec<String> {
        self.errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn record(&self, result: Result<Executed, ExecutionError<BankError>>) {
        match result {
            Ok(done) => {
                self.committed.fetch_add(1, Ordering::Relaxed);
                let events: usize = done
                    .appended
                    .map_or(0, |receipt| receipt.streams.iter().map(|s| s.positions.len()).sum());
                self.events.fetch_add(events as u64, Ordering::Relaxed);
            }
            Err(ExecutionError {
                error: CommandError::Domain(_),
                ..
            }) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut kept = self.errors.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if kept.len() < ERRORS_KEPT {
                    kept.push(error.to_string());
                }
            }
        }
    }

    /// The opened (or being opened) accounts that are not hot: `hot + 1 ..
    /// next`.
    fn opened(&self) -> (u32, u32) {
        (self.hot + 1, self.next_account.load(Ordering::Relaxed))
    }

    fn hot_account(&self, rng: &mut Entropy) -> StreamId {
        account(1 + rng.below(u64::from(self.hot)) as u32)
    }

    /// A recent account (among the last `window` opened), or `None` before
    /// any was.
    fn recent_account(&self, rng: &mut Entropy) -> Option<StreamId> {
        let (first, next) = self.opened();
        let low = next.saturating_sub(self.window).max(first);
        (next > low).then(|| account(low + rng.below(u64::from(next - low)) as u32))
    }

    /// Any opened account that is not hot, or `None` before any was.
    fn any_account(&self, rng: &mut Entropy) -> Option<StreamId> {
        let (first, next) = self.opened();
        (next > first).then(|| account(first + rng.below(u64::from(next - first)) as u32))
    }

    /// An account for a view command: hot, recent or any, a third each.
    fn view_account(&self, rng: &mut Entropy) -> StreamId {
        let picked = match rng.below(3) {
            0 => None,
            1 => self.recent_account(rng),
            _ => self.any_account(rng),
        };
        picked.unwrap_or_else(|| self.hot_account(rng))
    }

    /// An account for a whole-fold command: recent or any, never hot.
    fn plain_account(&self, rng: &mut Entropy) -> Option<StreamId> {
        if rng.below(2) == 0 {
            self.recent_account(rng)
        } else {
            self.any_account(rng)
        }
    }

    /// An account number far beyond any the soak will open.
    fn never_opened(&self, rng: &mut Entropy) -> StreamId {
        let (_, next) = self.opened();
        account(
            next.saturating_add(1_000_000)
                .saturating_add(rng.below(1_000_000) as u32),
        )
    }
}

/// One executor, plain or batching.
pub(super) enum Exec {
    Plain(Arc<Executor<PostgresStore>>),
    Batching(Arc<Executor<BatchingStore<PostgresStore>>>),
}

/// The soak's executors.
pub(super) struct Executors {
    pub(super) list: Vec<Exec>,
    clients_per_executor: usize,
}

impl Executors {
    pub(super) fn build(config: &SoakConfig, store: &PostgresStore) -> Self {
        let snapshots = PgSnapshotStore::new(store);
        let list = (0..config.executors.max(1))
            .map(|i| {
                if i % 2 == 1 {
                    let batching = BatchingStore::with_options(store.clone(), config.batching.clone());
                    let executor = Executor::new(batching)
                        .with_stream_cache(config.stream_cache_events)
                        .with_view_cache(Some(config.view_cache_bytes))
                        .with_snapshots(snapshots.clone());
                    Exec::Batching(Arc::new(executor))
                } else {
                    let executor = Executor::new(store.clone())
                        .with_stream_cache(config.stream_cache_events)
                        .with_view_cache(Some(config.view_cache_bytes))
                        .with_snapshots(snapshots.clone());
                    Exec::Plain(Arc::new(executor))
                }
            })
            .collect();
        Executors {
            list,
            clients_per_executor: config.clients_per_executor.max(1),
        }
    }

    /// Opens the hot accounts (through the first executor).
    pub(super) async fn open_hot_accounts(&self, config: &SoakConfig, shared: &Shared) -> Result<(), String> {
        for n in 1..=config.hot_accounts.max(1) {
            let open = OpenAccount {
                account: account(n),
                initial: INITIAL_BALANCE,
            };
            let result = match &self.list[0] {
                Exec::Plain(e) => e.execute(open).await,
                Exec::Batching(e) => e.execute(open).await,
            };
            match result {
                Ok(done) => shared.record(Ok(done)),
                Err(error) => return Err(format!("opening hot account {n}: {error}")),
            }
        }
        Ok(())
    }

    /// Starts every client.
    pub(super) fn spawn_clients(
        &self,
        config: &SoakConfig,
        shared: &Arc<Shared>,
        stop: &Arc<AtomicBool>,
    ) -> Vec<JoinHandle<()>> {
        let mut handles = Vec::new();
        for (e, exec) in self.list.iter().enumerate() {
            for c in 0..self.clients_per_executor {
                let seed = Entropy::mix(config.seed ^ ((e as u64) << 32) ^ c as u64);
                let (shared, stop) = (shared.clone(), stop.clone());
                handles.push(match exec {
                    Exec::Plain(executor) => tokio::spawn(client(executor.clone(), shared, seed, stop)),
                    Exec::Batching(executor) => tokio::spawn(client(executor.clone(), shared, seed, stop)),
                });
            }
        }
        handles
    }

    /// Waits for the snapshot writes in flight.
    pub(super) async fn flush_snapshots(&self) {
        for exec in &self.list {
            match exec {
                Exec::Plain(e) => e.flush_snapshots().await,
                Exec::Batching(e) => e.flush_snapshots().await,
            }
        }
    }

    /// What every executor holds now.
    pub(super) fn sample(&self) -> Vec<ExecutorSample> {
        self.list
            .iter()
            .map(|exec| match exec {
                Exec::Plain(e) => observe(e, None, self.clients_per_executor),
                Exec::Batching(e) => observe(e, Some(e.store().queued()), self.clients_per_executor),
            })
            .collect()
    }
}

fn observe<S: EventStore>(executor: &Executor<S>, queued: Option<usize>, clients: usize) -> ExecutorSample {
    let (stream_streams, stream_events, stream_capacity) = executor
        .stream_cache()
        .map_or((0, 0, 0), |c| (c.len(), c.cached_events(), c.capacity()));
    let (view_entries, view_bytes, view_evictions) = executor
        .view_cache_stats()
        .map_or((0, 0, 0), |(entries, bytes, stats)| (entries, bytes, stats.evictions));
    let snapshots = executor.snapshot_stats();
    ExecutorSample {
        stream_streams,
        stream_events,
        stream_capacity,
        view_entries,
        view_bytes,
        view_capacity: executor.view_cache_capacity().unwrap_or(0),
        view_evictions,
        snapshots_written: snapshots.written,
        snapshots_loaded: snapshots.loaded,
        batching_queued: queued,
        clients,
    }
}

/// One client: commands until `stop`.
async fn client<S: EventStore>(executor: Arc<Executor<S>>, shared: Arc<Shared>, seed: u64, stop: Arc<AtomicBool>) {
    let mut rng = Entropy::new(seed);
    let slots = shared.open_one_in * 2;
    while !stop.load(Ordering::Relaxed) {
        let amount = 1 + rng.below(20);
        let roll = rng.below(slots);
        let result = if roll < 2 {
            let n = shared.next_account.fetch_add(1, Ordering::Relaxed);
            let open = OpenAccount {
                account: account(n),
                initial: INITIAL_BALANCE,
            };
            executor.execute(open).await
        } else if roll == slots - 1 {
            let from = shared.view_account(&mut rng);
            let to = shared.never_opened(&mut rng);
            let transfer = Transfer { from, to, amount };
            if rng.below(2) == 0 {
                executor.execute(transfer).await
            } else {
                executor.execute(PlainTransfer(transfer)).await
            }
        } else if roll % 2 == 0 {
            let from = shared.view_account(&mut rng);
            let to = shared.view_account(&mut rng);
            executor.execute(Transfer { from, to, amount }).await
        } else {
            match (shared.plain_account(&mut rng), shared.plain_account(&mut rng)) {
                (Some(from), Some(to)) => executor.execute(PlainTransfer(Transfer { from, to, amount })).await,
                _ => {
                    let from = shared.view_account(&mut rng);
                    let to = shared.view_account(&mut rng);
                    executor.execute(Transfer { from, to, amount }).await
                }
            }
        };
        shared.record(result);
    }
}
