//! Where persisted view snapshots live: the async [`SnapshotStore`] trait and
//! its in-memory implementation. The PostgreSQL one is
//! `eventcore_postgres::PgSnapshotStore`.

use crate::sync::Mutex;
use eventcore::{Snapshot, StreamId};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

/// Why a snapshot store could not answer. The executor never fails a command
/// because of one: a failed load reads the stream instead, a failed save is
/// logged and counted.
///
/// ```
/// use eventcore_tokio::SnapshotError;
/// let e = SnapshotError::Unavailable("connection refused".into());
/// assert_eq!(e.to_string(), "snapshot store unavailable: connection refused");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The store could not be reached or timed out.
    #[error("snapshot store unavailable: {0}")]
    Unavailable(String),
    /// The store answered with something it should not hold (a row that
    /// does not parse as a snapshot).
    #[error("snapshot store holds a malformed record: {0}")]
    Malformed(String),
    /// Anything else the store reported.
    #[error("snapshot store failed: {0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Persists the newest snapshot of each (stream, view name, view version).
///
/// Every implementation must pass the snapshot conformance suite in `tests/`:
/// a save replaces an older snapshot of the same key and never a newer one,
/// a load returns the newest, views and view versions never mix, and
/// [`SnapshotStore::delete_view`] drops a view's snapshots of every version.
///
/// ```
/// use eventcore_tokio::{MemorySnapshotStore, SnapshotStore};
/// fn takes_any(_: &impl SnapshotStore) {}
/// takes_any(&MemorySnapshotStore::new());
/// ```
pub trait SnapshotStore: Send + Sync + 'static {
    /// The newest snapshot of `stream` folded by `view` at `view_version`.
    fn load(
        &self,
        stream: &StreamId,
        view: &str,
        view_version: u32,
    ) -> impl Future<Output = Result<Option<Snapshot>, SnapshotError>> + Send;

    /// Keeps `snapshot` unless one at a higher stream version is held for the
    /// same key.
    fn save(&self, snapshot: &Snapshot) -> impl Future<Output = Result<(), SnapshotError>> + Send;

    /// Drops `snapshot` if it is still the one held for its key (same stream
    /// version and last event): the executor calls it when the stream proved
    /// not to hold that history, so that a snapshot claiming more than the
    /// stream has cannot block every later, true one. Returns whether a
    /// record was dropped.
    fn discard(&self, snapshot: &Snapshot) -> impl Future<Output = Result<bool, SnapshotError>> + Send;

    /// Drops every snapshot of `view` (all versions), e.g. after its fold
    /// changed; returns how many were dropped.
    fn delete_view(&self, view: &str) -> impl Future<Output = Result<u64, SnapshotError>> + Send;
}

impl<S: SnapshotStore> SnapshotStore for Arc<S> {
    fn load(
        &self,
        stream: &StreamId,
        view: &str,
        view_version: u32,
    ) -> impl Future<Output = Result<Option<Snapshot>, SnapshotError>> + Send {
        (**self).load(stream, view, view_version)
    }

    fn save(&self, snapshot: &Snapshot) -> impl Future<Output = Result<(), SnapshotError>> + Send {
        (**self).save(snapshot)
    }

    fn discard(&self, snapshot: &Snapshot) -> impl Future<Output = Result<bool, SnapshotError>> + Send {
        (**self).discard(snapshot)
    }

    fn delete_view(&self, view: &str) -> impl Future<Output = Result<u64, SnapshotError>> + Send {
        (**self).delete_view(view)
    }
}

type Key = (StreamId, String, u32);

/// Snapshots in process memory: for tests, demos and single-process services
/// whose cold start after a crash may re-fold.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use eventcore::{EventId, Snapshot, StreamId, StreamVersion, Time};
/// use eventcore_tokio::{MemorySnapshotStore, SnapshotStore};
/// let store = MemorySnapshotStore::new();
/// let stream = StreamId::new("account-1").unwrap();
/// let snapshot = Snapshot { stream: stream.clone(), view: "account".into(), view_version: 1,
///     stream_version: StreamVersion::new(100), last_event_id: EventId::v7(Time::ZERO, [1; 10]),
///     payload: "{}".into(), taken_at: Time::ZERO };
/// store.save(&snapshot).await.unwrap();
/// assert_eq!(store.load(&stream, "account", 1).await.unwrap(), Some(snapshot));
/// assert_eq!(store.load(&stream, "account", 2).await.unwrap(), None);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct MemorySnapshotStore {
    inner: Arc<Mutex<BTreeMap<Key, Snapshot>>>,
}

impl Default for MemorySnapshotStore {
    fn default() -> Self {
        MemorySnapshotStore::new()
    }
}

impl MemorySnapshotStore {
    /// An empty store.
    pub fn new() -> Self {
        MemorySnapshotStore {
            inner: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    /// Snapshots held.
    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    /// True when none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces or inserts a record as is, bypassing the newest-wins rule:
    /// for tests that plant corrupt or lying snapshots.
    pub fn put_raw(&self, snapshot: Snapshot) {
        let key = (snapshot.stream.clone(), snapshot.view.clone(), snapshot.view_version);
        self.inner.lock().insert(key, snapshot);
    }
}

impl SnapshotStore for MemorySnapshotStore {
    async fn load(&self, stream: &StreamId, view: &str, view_version: u32) -> Result<Option<Snapshot>, SnapshotError> {
        let key = (stream.clone(), view.to_owned(), view_version);
        Ok(self.inner.lock().get(&key).cloned())
    }

    async fn save(&self, snapshot: &Snapshot) -> Result<(), SnapshotError> {
        let key = (snapshot.stream.clone(), snapshot.view.clone(), snapshot.view_version);
        let mut inner = self.inner.lock();
        match inner.get(&key) {
            Some(held) if held.stream_version > snapshot.stream_version => {}
            _ => {
                inner.insert(key, snapshot.clone());
            }
        }
        Ok(())
    }

    async fn discard(&self, snapshot: &Snapshot) -> Result<bool, SnapshotError> {
        let key = (snapshot.stream.clone(), snapshot.view.clone(), snapshot.view_version);
        let mut inner = self.inner.lock();
        let same = inner.get(&key).is_some_and(|held| {
            held.stream_version == snapshot.stream_version && held.last_event_id == snapshot.last_event_id
        });
        if same {
            inner.remove(&key);
        }
        Ok(same)
    }

    async fn delete_view(&self, view: &str) -> Result<u64, SnapshotError> {
        let mut inner = self.inner.lock();
        let before = inner.len();
        inner.retain(|(_, name, _), _| name != view);
        Ok((before - inner.len()) as u64)
    }
}
