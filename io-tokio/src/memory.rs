//! The in-memory store behind a mutex, for services and tests on tokio.

use crate::metrics::{self, StoreOp};
use crate::notify::HeadWatch;
use crate::sync::{Arc, Mutex, MutexGuard};
use crate::{EventStore, RetentionStore};
use eventcore::{
    AppendLimits, AppendReceipt, AppendRequest, Codec, GlobalPosition, ReadAllRequest, ReadAllResponse, ReadRequest,
    ReadResponse, RemovedRange, RetentionOptions, RetentionPlan, RetentionReport, StoreError, Time,
};
use eventcore_memory::MemoryStore;
use std::num::NonZeroU32;
use tokio::sync::watch;

/// A shared, cloneable handle to an in-memory store. The lock is held only
/// for the synchronous store call, never across an await.
///
/// Every operation is a plain synchronous critical section
/// ([`append_sync`](MemoryEventStore::append_sync),
/// [`read_sync`](MemoryEventStore::read_sync),
/// [`read_all_sync`](MemoryEventStore::read_all_sync)); the async
/// [`EventStore`] methods only call them. That is what lets the loom models
/// (`tests/loom_*.rs`, built with `--cfg eventcore_loom`) run the real code
/// from loom threads.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use eventcore::{ReadRequest, RequestId, StreamId};
/// use eventcore_tokio::{EventStore, MemoryEventStore};
/// let store = MemoryEventStore::new();
/// let read = ReadRequest::new([StreamId::new("a").unwrap()]);
/// let answer = store.read(&read).await.unwrap();
/// assert!(answer.streams[0].events.is_empty());
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct MemoryEventStore {
    inner: Arc<Mutex<MemoryStore>>,
    head: HeadWatch,
    watch: std::sync::Arc<watch::Sender<GlobalPosition>>,
    /// The inner store's codec, kept here so that asking costs no lock.
    codec: Codec,
}

impl Default for MemoryEventStore {
    fn default() -> Self {
        MemoryEventStore::from_store(MemoryStore::new())
    }
}

impl MemoryEventStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryEventStore::default()
    }

    /// An empty store with the given limits.
    pub fn with_limits(limits: AppendLimits) -> Self {
        MemoryEventStore::from_store(MemoryStore::with_limits(limits))
    }

    /// Wraps an existing store.
    pub fn from_store(store: MemoryStore) -> Self {
        let (watch, _) = watch::channel(store.last_position());
        MemoryEventStore {
            codec: store.codec(),
            head: HeadWatch::new(store.last_position()),
            inner: Arc::new(Mutex::new(store)),
            watch: std::sync::Arc::new(watch),
        }
    }

    /// Keeps the payloads of later appends in `codec`
    /// ([`MemoryStore::with_codec`]); executors over this store encode in
    /// it. Clones made after this share the codec.
    ///
    /// ```
    /// use eventcore::Codec;
    /// use eventcore_tokio::{EventStore, MemoryEventStore};
    /// let codec = *Codec::ALL.last().unwrap_or(&Codec::Json);
    /// assert_eq!(MemoryEventStore::new().with_codec(codec).codec(), codec);
    /// ```
    pub fn with_codec(mut self, codec: Codec) -> Self {
        self.lock().set_codec(codec);
        self.codec = codec;
        self
    }

    /// Runs `f` on the store under the lock (for inspection in tests and
    /// examples).
    pub fn inspect<T>(&self, f: impl FnOnce(&MemoryStore) -> T) -> T {
        f(&self.lock())
    }

    /// A receiver that sees the position of the last committed event; it
    /// changes after every commit, which is how subscribers are woken.
    /// Published at the same point as [`head`](MemoryEventStore::head).
    pub fn watch_head(&self) -> watch::Receiver<GlobalPosition> {
        self.watch.subscribe()
    }

    /// The position of the last committed event, and a way to wait until it
    /// moves past a position (see [`HeadWatch::wait_past`] for the
    /// check-then-wait protocol that cannot lose a wake-up).
    pub fn head(&self) -> HeadWatch {
        self.head.clone()
    }

    /// Appends under the lock, then publishes the new head: the whole of
    /// [`EventStore::append`], synchronously. Every append is all or
    /// nothing, and one command id commits at most once.
    pub fn append_sync(&self, request: &AppendRequest) -> Result<AppendReceipt, StoreError> {
        let (receipt, head) = {
            let mut store = self.lock();
            let receipt = store.append(request)?;
            (receipt, store.last_position())
        };
        // Published after the lock is released: publication only raises the
        // head, so two appenders publishing out of order still leave it at
        // the larger position, and a subscriber that read before this commit
        // waits past a smaller position and is woken here.
        if !receipt.deduplicated {
            self.publish(head);
        }
        Ok(receipt)
    }

    /// [`EventStore::read`], synchronously.
    pub fn read_sync(&self, request: &ReadRequest) -> Result<ReadResponse, StoreError> {
        self.lock().read(request)
    }

    /// [`EventStore::read_all`], synchronously.
    pub fn read_all_sync(&self, request: &ReadAllRequest) -> Result<ReadAllResponse, StoreError> {
        self.lock().read_all(request)
    }

    fn publish(&self, head: GlobalPosition) {
        self.head.publish(head);
        self.watch.send_if_modified(|current| {
            let moved = head > *current;
            *current = (*current).max(head);
            moved
        });
    }

    fn lock(&self) -> MutexGuard<'_, MemoryStore> {
        // A panic while holding the lock cannot leave the store half-written
        // (append checks everything before it writes), so the shim's lock
        // ignores poisoning.
        self.inner.lock()
    }
}

// Each operation runs in a `store.*` span and is timed
// (`eventcore_store_operation_duration_seconds`); see `metrics.rs`.
impl EventStore for MemoryEventStore {
    async fn read(&self, request: &ReadRequest) -> Result<ReadResponse, StoreError> {
        let span = tracing::info_span!(
            "store.read",
            store = "memory",
            operation = "read",
            streams = request.streams.len()
        );
        let _entered = span.enter();
        let started = std::time::Instant::now();
        let result = self.read_sync(request);
        metrics::store_operation(StoreOp::Read, started, &result);
        result
    }

    async fn append(&self, request: &AppendRequest) -> Result<AppendReceipt, StoreError> {
        let span = tracing::info_span!(
            "store.append",
            store = "memory",
            operation = "append",
            streams = request.streams.len(),
            events = request.event_count()
        );
        let _entered = span.enter();
        let started = std::time::Instant::now();
        let result = self.append_sync(request);
        metrics::store_operation(StoreOp::Append, started, &result);
        result
    }

    async fn read_all(&self, request: &ReadAllRequest) -> Result<ReadAllResponse, StoreError> {
        let span = tracing::info_span!(
            "store.read_all",
            store = "memory",
            operation = "read_all",
            after = request.after.get(),
            limit = request.limit.get()
        );
        let _entered = span.enter();
        let started = std::time::Instant::now();
        let result = self.read_all_sync(request);
        metrics::store_operation(StoreOp::ReadAll, started, &result);
        result
    }

    fn codec(&self) -> Codec {
        self.codec
    }
}

/// Retention on the memory store: the run happens under the lock, in one
/// step ([`MemoryStore::apply_retention`]); it cannot fail.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use eventcore::{GlobalPosition, RetentionOptions, RetentionPlan, RetentionPolicy, Time};
/// use eventcore_tokio::{MemoryEventStore, RetentionStore};
/// use std::num::NonZeroU32;
/// let store = MemoryEventStore::new();
/// let plan = RetentionPlan::new([RetentionPolicy::new("session-").with_max_count(10)]);
/// let report = store.apply_retention(&plan, Time::ZERO, RetentionOptions::default()).await.unwrap();
/// assert_eq!(report.events_removed(), 0);
/// let limit = NonZeroU32::new(100).unwrap();
/// assert!(store.removed_ranges(GlobalPosition::START, limit).await.unwrap().is_empty());
/// # });
/// ```
impl RetentionStore for MemoryEventStore {
    async fn apply_retention(
        &self,
        plan: &RetentionPlan,
        now: Time,
        options: RetentionOptions,
    ) -> Result<RetentionReport, StoreError> {
        let span = tracing::info_span!("store.retention", store = "memory", dry_run = options.dry_run);
        let _entered = span.enter();
        Ok(self.lock().apply_retention(plan, now, options))
    }

    async fn removed_ranges(&self, after: GlobalPosition, limit: NonZeroU32) -> Result<Vec<RemovedRange>, StoreError> {
        let store = self.lock();
        let ranges = store.removed_ranges();
        let from = ranges.partition_point(|r| r.last_position <= after);
        Ok(ranges[from..].iter().take(limit.get() as usize).cloned().collect())
    }
}
