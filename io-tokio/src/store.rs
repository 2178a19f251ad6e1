//! The async face of the store contract.

use eventcore::{AppendReceipt, AppendRequest, ReadAllRequest, ReadAllResponse, ReadRequest, ReadResponse, StoreError};
use std::future::Future;
use std::sync::Arc;

/// A store the tokio driver can run commands against. Every implementation
/// must pass the conformance suite in `tests/`.
///
/// Futures may be dropped at any await point (the executor does so when an
/// operation times out); an implementation must then leave no partial write
/// behind. A dropped append has an unknown outcome, which the command id
/// makes safe to resolve by re-sending.
///
/// ```
/// use eventcore_tokio::{EventStore, MemoryEventStore};
/// fn takes_any_store(_store: &impl EventStore) {}
/// takes_any_store(&MemoryEventStore::new());
/// ```
pub trait EventStore: Send + Sync + 'static {
    /// Reads several streams in one round trip.
    fn read(&self, request: &ReadRequest) -> impl Future<Output = Result<ReadResponse, StoreError>> + Send;

    /// Appends atomically across every stream in the request.
    fn append(&self, request: &AppendRequest) -> impl Future<Output = Result<AppendReceipt, StoreError>> + Send;

    /// Reads the global log after a position.
    fn read_all(&self, request: &ReadAllRequest) -> impl Future<Output = Result<ReadAllResponse, StoreError>> + Send;

    /// Appends several independent requests, each atomically, with one
    /// outcome per request in request order: one request's conflict or bad
    /// input never fails its neighbours. Stores that can commit a group in
    /// one round trip override this; the default appends one by one.
    fn append_batch(
        &self,
        requests: &[AppendRequest],
    ) -> impl Future<Output = Vec<Result<AppendReceipt, StoreError>>> + Send {
        async move {
            let mut outcomes = Vec::with_capacity(requests.len());
            for request in requests {
                outcomes.push(self.append(request).await);
            }
            outcomes
        }
    }
}

impl<S: EventStore> EventStore for Arc<S> {
    fn read(&self, request: &ReadRequest) -> impl Future<Output = Result<ReadResponse, StoreError>> + Send {
        (**self).read(request)
    }

    fn append(&self, request: &AppendRequest) -> impl Future<Output = Result<AppendReceipt, StoreError>> + Send {
        (**self).append(request)
    }

    fn read_all(&self, request: &ReadAllRequest) -> impl Future<Output = Result<ReadAllResponse, StoreError>> + Send {
        (**self).read_all(request)
    }

    fn append_batch(
        &self,
        requests: &[AppendRequest],
    ) -> impl Future<Output = Vec<Result<AppendReceipt, StoreError>>> + Send {
        (**self).append_batch(requests)
    }
}
