//! [`Encoding`]: a store wrapper that hands its store every append's
//! payloads in the store's own codec, as an executor over that store encodes
//! them. The conformance suite builds its payloads as JSON; wrapped, a
//! MessagePack store takes them through its binary path, and the whole suite
//! runs on both codecs.

use eventcore::{
    AppendLimits, AppendReceipt, AppendRequest, Codec, ReadAllRequest, ReadAllResponse, ReadRequest, ReadResponse,
    StoreError,
};
use eventcore_tokio::EventStore;
use std::borrow::Cow;

/// Converts every payload of an append to the inner store's codec
/// ([`EventStore::codec`]) before appending, as an executor over that store
/// would have encoded it. A request whose conversion fails, or that the
/// default [`AppendLimits`] refuse as sent or converted (a payload of exactly
/// the maximum size grows as MessagePack), goes as it was sent: the store
/// then answers what the caller sent, bad input included, with the error it
/// deserves.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("runtime").block_on(async {
/// use eventcore::Codec;
/// use eventcore_tests::Encoding;
/// use eventcore_tokio::{EventStore, MemoryEventStore};
/// let store = Encoding::new(MemoryEventStore::new().with_codec(Codec::MessagePack));
/// assert_eq!(store.codec(), Codec::MessagePack);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct Encoding<S> {
    inner: S,
}

impl<S: EventStore> Encoding<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Encoding { inner }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// `request` with its payloads in the store's codec, when that is what
    /// an executor would have sent.
    fn encoded<'r>(&self, request: &'r AppendRequest) -> Cow<'r, AppendRequest> {
        let codec = self.inner.codec();
        let limits = AppendLimits::default();
        let events = || request.streams.iter().flat_map(|entry| &entry.events);
        if events().all(|event| event.payload.codec() == codec) || request.validate(&limits).is_err() {
            return Cow::Borrowed(request);
        }
        let mut converted = request.clone();
        for event in converted.streams.iter_mut().flat_map(|entry| &mut entry.events) {
            match event.payload.to_codec(codec) {
                Ok(payload) => event.payload = payload,
                Err(_) => return Cow::Borrowed(request),
            }
        }
        if converted.validate(&limits).is_err() {
            return Cow::Borrowed(request);
        }
        Cow::Owned(converted)
    }
}

impl<S: EventStore> EventStore for Encoding<S> {
    async fn read(&self, request: &ReadRequest) -> Result<ReadResponse, StoreError> {
        self.inner.read(request).await
    }

    async fn append(&self, request: &AppendRequest) -> Result<AppendReceipt, StoreError> {
        self.inner.append(&self.encoded(request)).await
    }

    async fn read_all(&self, request: &ReadAllRequest) -> Result<ReadAllResponse, StoreError> {
        self.inner.read_all(request).await
    }

    async fn append_batch(&self, requests: &[AppendRequest]) -> Vec<Result<AppendReceipt, StoreError>> {
        let encoded: Vec<AppendRequest> = requests.iter().map(|r| self.encoded(r).into_owned()).collect();
        self.inner.append_batch(&encoded).await
    }

    fn codec(&self) -> Codec {
        self.inner.codec()
    }
}

impl<S: EventStore + eventcore_tokio::RetentionStore> eventcore_tokio::RetentionStore for Encoding<S> {
    async fn apply_retention(
        &self,
        plan: &eventcore::RetentionPlan,
        now: eventcore::Time,
        options: eventcore::RetentionOptions,
    ) -> Result<eventcore::RetentionReport, StoreError> {
        self.inner.apply_retention(plan, now, options).await
    }

    async fn removed_ranges(
        &self,
        after: eventcore::GlobalPosition,
        limit: std::num::NonZeroU32,
    ) -> Result<Vec<eventcore::RemovedRange>, StoreError> {
        self.inner.removed_ranges(after, limit).await
    }
}

/// A [`StoreFactory`](crate::StoreFactory) whose stores are its inner
/// factory's, wrapped in [`Encoding`]: `conformance_suite!(Encoded(factory))`
/// runs the suite with payloads in the store's codec.
///
/// ```
/// use eventcore::Codec;
/// use eventcore_tests::{Encoded, StoreFactory};
/// use eventcore_tokio::MemoryEventStore;
/// struct Binary;
/// impl StoreFactory for Binary {
///     type Store = MemoryEventStore;
///     async fn fresh(&self) -> MemoryEventStore {
///         MemoryEventStore::new().with_codec(Codec::MessagePack)
///     }
/// }
/// let _factory = Encoded(Binary);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Encoded<F>(pub F);

impl<F: crate::StoreFactory> crate::StoreFactory for Encoded<F> {
    type Store = Encoding<F::Store>;

    async fn fresh(&self) -> Self::Store {
        Encoding::new(self.0.fresh().await)
    }
}
