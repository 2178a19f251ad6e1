//! The async face of the store contract: [`EventStore`] and its
//! object-safe twin [`DynEventStore`].

use crate::BoxFuture;
use eventcore::{
    AppendReceipt, AppendRequest, Codec, ReadAllRequest, ReadAllResponse, ReadRequest, ReadResponse, StoreError,
};
use std::future::Future;
use std::sync::Arc;

/// A store the drivers can run commands against. Every implementation
/// must pass the conformance suite in `tests/`.
///
/// Futures may be dropped at any await point (the executor does so when an
/// operation times out); an implementation must then leave no partial write
/// behind. A dropped append has an unknown outcome, which the command id
/// makes safe to resolve by re-sending.
///
/// To hold a store as a trait object, box it as a [`DynEventStore`]:
/// `Box<dyn DynEventStore>` and `Arc<dyn DynEventStore>` are event stores.
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

    /// The codec the store keeps payloads in, so that executors encode in
    /// it and the store takes their payloads as they are. Any codec is
    /// correct with any store (a JSON store converts MessagePack payloads
    /// to JSON; a MessagePack store keeps JSON ones as JSON:
    /// [`AppendRequest::for_store`]), only slower. The default is
    /// [`Codec::Json`]; a wrapper forwards its inner store's.
    ///
    /// ```
    /// use eventcore::Codec;
    /// use eventcore_store::{DynEventStore, EventStore};
    /// use std::sync::Arc;
    /// fn codec_of(store: &impl EventStore) -> Codec {
    ///     store.codec()
    /// }
    /// // Trait objects and pointers answer their store's codec.
    /// fn shared(store: Arc<dyn DynEventStore>) -> Codec {
    ///     codec_of(&store)
    /// }
    /// # let _ = shared;
    /// ```
    fn codec(&self) -> Codec {
        Codec::Json
    }
}

/// [`EventStore`] as a trait object: the same operations returning boxed
/// futures. Every `EventStore` is one; `Box<dyn DynEventStore>` and
/// `Arc<dyn DynEventStore>` are `EventStore`s again.
///
/// ```
/// use eventcore_store::{DynEventStore, EventStore};
/// use std::sync::Arc;
/// fn share(store: impl EventStore) -> Arc<dyn DynEventStore> {
///     Arc::new(store)
/// }
/// fn needs_a_store(_: &impl EventStore) {}
/// fn check(store: Arc<dyn DynEventStore>) {
///     needs_a_store(&store);
/// }
/// // An `Arc<dyn DynEventStore>` is itself a store, so it can be shared again.
/// fn reshare(store: Arc<dyn DynEventStore>) -> Arc<dyn DynEventStore> {
///     share(store)
/// }
/// # let _ = (reshare, check);
/// ```
pub trait DynEventStore: Send + Sync + 'static {
    /// [`EventStore::read`], boxed.
    fn read_boxed<'a>(&'a self, request: &'a ReadRequest) -> BoxFuture<'a, Result<ReadResponse, StoreError>>;

    /// [`EventStore::append`], boxed.
    fn append_boxed<'a>(&'a self, request: &'a AppendRequest) -> BoxFuture<'a, Result<AppendReceipt, StoreError>>;

    /// [`EventStore::read_all`], boxed.
    fn read_all_boxed<'a>(&'a self, request: &'a ReadAllRequest) -> BoxFuture<'a, Result<ReadAllResponse, StoreError>>;

    /// [`EventStore::append_batch`], boxed.
    fn append_batch_boxed<'a>(
        &'a self,
        requests: &'a [AppendRequest],
    ) -> BoxFuture<'a, Vec<Result<AppendReceipt, StoreError>>>;

    /// [`EventStore::codec`].
    fn codec_dyn(&self) -> Codec;
}

impl<S: EventStore> DynEventStore for S {
    fn read_boxed<'a>(&'a self, request: &'a ReadRequest) -> BoxFuture<'a, Result<ReadResponse, StoreError>> {
        Box::pin(self.read(request))
    }

    fn append_boxed<'a>(&'a self, request: &'a AppendRequest) -> BoxFuture<'a, Result<AppendReceipt, StoreError>> {
        Box::pin(self.append(request))
    }

    fn read_all_boxed<'a>(&'a self, request: &'a ReadAllRequest) -> BoxFuture<'a, Result<ReadAllResponse, StoreError>> {
        Box::pin(self.read_all(request))
    }

    fn append_batch_boxed<'a>(
        &'a self,
        requests: &'a [AppendRequest],
    ) -> BoxFuture<'a, Vec<Result<AppendReceipt, StoreError>>> {
        Box::pin(self.append_batch(requests))
    }

    fn codec_dyn(&self) -> Codec {
        self.codec()
    }
}

impl EventStore for dyn DynEventStore {
    async fn read(&self, request: &ReadRequest) -> Result<ReadResponse, StoreError> {
        self.read_boxed(request).await
    }

    async fn append(&self, request: &AppendRequest) -> Result<AppendReceipt, StoreError> {
        self.append_boxed(request).await
    }

    async fn read_all(&self, request: &ReadAllRequest) -> Result<ReadAllResponse, StoreError> {
        self.read_all_boxed(request).await
    }

    async fn append_batch(&self, requests: &[AppendRequest]) -> Vec<Result<AppendReceipt, StoreError>> {
        self.append_batch_boxed(requests).await
    }

    fn codec(&self) -> Codec {
        self.codec_dyn()
    }
}

/// Forwards every operation to the pointee (`$ptr<S>` for any store `S`,
/// a `dyn DynEventStore` included).
macro_rules! forward_event_store {
    ($ptr:ident) => {
        impl<S: EventStore + ?Sized> EventStore for $ptr<S> {
            fn read(&self, request: &ReadRequest) -> impl Future<Output = Result<ReadResponse, StoreError>> + Send {
                (**self).read(request)
            }

            fn append(
                &self,
                request: &AppendRequest,
            ) -> impl Future<Output = Result<AppendReceipt, StoreError>> + Send {
                (**self).append(request)
            }

            fn read_all(
                &self,
                request: &ReadAllRequest,
            ) -> impl Future<Output = Result<ReadAllResponse, StoreError>> + Send {
                (**self).read_all(request)
            }

            fn append_batch(
                &self,
                requests: &[AppendRequest],
            ) -> impl Future<Output = Vec<Result<AppendReceipt, StoreError>>> + Send {
                (**self).append_batch(requests)
            }

            fn codec(&self) -> Codec {
                (**self).codec()
            }
        }
    };
}

forward_event_store!(Arc);
forward_event_store!(Box);
