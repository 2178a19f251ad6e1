//! The store conformance suite against the in-memory store, once with each
//! payload codec; its personal-data group with a `MemoryKeyStore`.

struct Memory;

impl eventcore_tests::StoreFactory for Memory {
    type Store = eventcore_tokio::MemoryEventStore;

    async fn fresh(&self) -> Self::Store {
        eventcore_tokio::MemoryEventStore::new()
    }
}

eventcore_tests::conformance_suite!(Memory);
eventcore_tests::retention_suite!(Memory);
eventcore_tests::personal_data_suite!(eventcore_tests::conformance::MemoryKeys(Memory));

/// The same cases on a store keeping payloads in MessagePack, given them in
/// MessagePack as an executor over it encodes them.
mod messagepack {
    struct Memory;

    impl eventcore_tests::StoreFactory for Memory {
        type Store = eventcore_tokio::MemoryEventStore;

        async fn fresh(&self) -> Self::Store {
            eventcore_tokio::MemoryEventStore::new().with_codec(eventcore::Codec::MessagePack)
        }
    }

    eventcore_tests::conformance_suite!(eventcore_tests::Encoded(Memory));
    eventcore_tests::retention_suite!(eventcore_tests::Encoded(Memory));
    // An executor encodes in the store's codec itself: no `Encoded` needed.
    eventcore_tests::personal_data_suite!(eventcore_tests::conformance::MemoryKeys(Memory));
}
