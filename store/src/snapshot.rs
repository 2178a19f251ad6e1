//! Where persisted view snapshots live: [`SnapshotStore`]. The in-memory
//! implementation is `eventcore_tokio::MemorySnapshotStore`, the PostgreSQL
//! one `eventcore_postgres::PgSnapshotStore`.

use crate::BoxFuture;
use eventcore::{Snapshot, StreamId};
use std::future::Future;
use std::sync::Arc;

/// Why a snapshot store could not answer. The executor never fails a command
/// because of one: a failed load reads the stream instead, a failed save is
/// logged and counted.
///
/// ```
/// use eventcore_store::SnapshotError;
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
    #[error("snapshot store failed")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Persists the newest snapshot of each (stream, view name, view version).
///
/// Every implementation must pass the snapshot conformance suite in `tests/`:
/// a save replaces an older snapshot of the same key and never a newer one,
/// a load returns the newest, views and view versions never mix, and
/// [`SnapshotStore::delete_view`] drops a view's snapshots of every version.
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

/// [`SnapshotStore`] as a trait object (boxed futures). Every
/// `SnapshotStore` is one; `Box<dyn DynSnapshotStore>` and
/// `Arc<dyn DynSnapshotStore>` are `SnapshotStore`s again.
pub trait DynSnapshotStore: Send + Sync + 'static {
    /// [`SnapshotStore::load`], boxed.
    fn load_boxed<'a>(
        &'a self,
        stream: &'a StreamId,
        view: &'a str,
        view_version: u32,
    ) -> BoxFuture<'a, Result<Option<Snapshot>, SnapshotError>>;

    /// [`SnapshotStore::save`], boxed.
    fn save_boxed<'a>(&'a self, snapshot: &'a Snapshot) -> BoxFuture<'a, Result<(), SnapshotError>>;

    /// [`SnapshotStore::discard`], boxed.
    fn discard_boxed<'a>(&'a self, snapshot: &'a Snapshot) -> BoxFuture<'a, Result<bool, SnapshotError>>;

    /// [`SnapshotStore::delete_view`], boxed.
    fn delete_view_boxed<'a>(&'a self, view: &'a str) -> BoxFuture<'a, Result<u64, SnapshotError>>;
}

impl<S: SnapshotStore> DynSnapshotStore for S {
    fn load_boxed<'a>(
        &'a self,
        stream: &'a StreamId,
        view: &'a str,
        view_version: u32,
    ) -> BoxFuture<'a, Result<Option<Snapshot>, SnapshotError>> {
        Box::pin(self.load(stream, view, view_version))
    }

    fn save_boxed<'a>(&'a self, snapshot: &'a Snapshot) -> BoxFuture<'a, Result<(), SnapshotError>> {
        Box::pin(self.save(snapshot))
    }

    fn discard_boxed<'a>(&'a self, snapshot: &'a Snapshot) -> BoxFuture<'a, Result<bool, SnapshotError>> {
        Box::pin(self.discard(snapshot))
    }

    fn delete_view_boxed<'a>(&'a self, view: &'a str) -> BoxFuture<'a, Result<u64, SnapshotError>> {
        Box::pin(self.delete_view(view))
    }
}

impl SnapshotStore for dyn DynSnapshotStore {
    async fn load(&self, stream: &StreamId, view: &str, view_version: u32) -> Result<Option<Snapshot>, SnapshotError> {
        self.load_boxed(stream, view, view_version).await
    }

    async fn save(&self, snapshot: &Snapshot) -> Result<(), SnapshotError> {
        self.save_boxed(snapshot).await
    }

    async fn discard(&self, snapshot: &Snapshot) -> Result<bool, SnapshotError> {
        self.discard_boxed(snapshot).await
    }

    async fn delete_view(&self, view: &str) -> Result<u64, SnapshotError> {
        self.delete_view_boxed(view).await
    }
}

macro_rules! forward_snapshot_store {
    ($ptr:ident) => {
        impl<S: SnapshotStore + ?Sized> SnapshotStore for $ptr<S> {
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
    };
}

forward_snapshot_store!(Arc);
forward_snapshot_store!(Box);
