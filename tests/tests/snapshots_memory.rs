//! The snapshot-store conformance suite against
//! [`eventcore_tokio::MemorySnapshotStore`].

eventcore_tests::snapshot_store_conformance!(eventcore_tests::snapshot_conformance::MemorySnapshotFactory);
