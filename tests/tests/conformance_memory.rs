//! The store conformance suite against the in-memory store.

struct Memory;

impl eventcore_tests::StoreFactory for Memory {
    type Store = eventcore_tokio::MemoryEventStore;

    async fn fresh(&self) -> Self::Store {
        eventcore_tokio::MemoryEventStore::new()
    }
}

eventcore_tests::conformance_suite!(Memory);
