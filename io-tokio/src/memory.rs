//! The in-memory store behind a mutex, for services and tests on tokio.

use crate::EventStore;
use eventcore::{
    AppendLimits, AppendReceipt, AppendRequest, GlobalPosition, ReadAllRequest, ReadAllResponse, ReadRequest,
    ReadResponse, StoreError,
};
use eventcore_memory::MemoryStore;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;

/// A shared, cloneable handle to an in-memory store. The lock is held only
/// for the synchronous store call, never across an await.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use eventcore::{ReadRequest, RequestId, StreamId};
/// use eventcore_tokio::{EventStore, MemoryEventStore};
/// let store = MemoryEventStore::new();
/// let read = ReadRequest::new(RequestId::new(1), [StreamId::new("a").unwrap()]);
/// let answer = store.read(&read).await.unwrap();
/// assert!(answer.streams[0].events.is_empty());
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct MemoryEventStore {
    inner: Arc<Mutex<MemoryStore>>,
    head: Arc<watch::Sender<GlobalPosition>>,
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
        let (head, _) = watch::channel(store.last_position());
        MemoryEventStore {
            inner: Arc::new(Mutex::new(store)),
            head: Arc::new(head),
        }
    }

    /// Runs `f` on the store under the lock (for inspection in tests and
    /// examples).
    pub fn inspect<T>(&self, f: impl FnOnce(&MemoryStore) -> T) -> T {
        f(&self.lock())
    }

    /// A receiver that sees the position of the last committed event; it
    /// changes after every commit, which is how subscribers are woken.
    pub fn watch_head(&self) -> watch::Receiver<GlobalPosition> {
        self.head.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, MemoryStore> {
        // A panic while holding the lock cannot leave the store half-written
        // (append checks everything before it writes), so a poisoned lock is
        // still consistent and safe to use.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl EventStore for MemoryEventStore {
    async fn read(&self, request: &ReadRequest) -> Result<ReadResponse, StoreError> {
        self.lock().read(request)
    }

    async fn append(&self, request: &AppendRequest) -> Result<AppendReceipt, StoreError> {
        let (receipt, head) = {
            let mut store = self.lock();
            let receipt = store.append(request)?;
            (receipt, store.last_position())
        };
        if !receipt.deduplicated {
            self.head.send_if_modified(|current| {
                let moved = head > *current;
                *current = (*current).max(head);
                moved
            });
        }
        Ok(receipt)
    }

    async fn read_all(&self, request: &ReadAllRequest) -> Result<ReadAllResponse, StoreError> {
        self.lock().read_all(request)
    }
}
