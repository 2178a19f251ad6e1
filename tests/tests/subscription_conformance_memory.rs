//! The subscription-store conformance suite against the memory stores of
//! `eventcore-tokio`: `MemoryCheckpointStore`, `MemoryLeaseStore`,
//! `MemoryDeadLetterStore` and `MemoryReadModel`. One test per case, in
//! modules `checkpoints`, `leases`, `dead_letters` and `projections`.

eventcore_tests::subscription_store_conformance!(eventcore_tests::subscription_conformance::MemorySubscriptionStores);
