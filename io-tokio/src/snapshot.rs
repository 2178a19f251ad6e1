//! The in-memory [`SnapshotStore`]. The trait lives in `eventcore-store`;
//! the PostgreSQL implementation is `eventcore_postgres::PgSnapshotStore`.

use crate::sync::Mutex;
use eventcore::{Snapshot, StreamId};
use eventcore_store::{SnapshotError, SnapshotStore};
use std::collections::BTreeMap;
use std::sync::Arc;

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
