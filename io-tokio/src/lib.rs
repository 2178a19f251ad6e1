//! # eventcore-tokio
//!
//! The tokio driver for EventCore: the async [`EventStore`] trait, the
//! [`Executor`] that runs [`eventcore::CommandMachine`]s against a store with
//! real time, timeouts and backoff, and [`MemoryEventStore`], the in-memory
//! store for services and tests.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // off the simulated path: real clocks and hash maps are fine here (see clippy.toml)

mod batching;
mod cache;
mod checkpoint;
mod clock;
mod dead_letter;
mod executor;
mod lease;
mod memory;
mod notify;
mod projection;
mod snapshot;
mod store;
mod subscription;
mod sync;
mod views;

pub use batching::{BatchingOptions, BatchingStats, BatchingStore};
pub use cache::StreamCache;
pub use checkpoint::{CheckpointError, CheckpointStore, MemoryCheckpointStore};
pub use clock::Clock;
pub use dead_letter::{DeadLetter, DeadLetterError, DeadLetterStore, MemoryDeadLetterStore, NoDeadLetters};
pub use executor::{Executor, DEFAULT_VIEW_CACHE_BYTES};
pub use lease::{FencingToken, Lease, LeaseError, LeaseStore, MemoryLeaseStore, NoLease};
pub use memory::MemoryEventStore;
pub use notify::{HeadWatch, WaitPast};
pub use projection::{
    MemoryReadModel, MemoryTransaction, Projection, ProjectionError, ProjectionSink, ProjectionStore, Serving,
};
pub use snapshot::{MemorySnapshotStore, SnapshotError, SnapshotStore};
pub use store::EventStore;
pub use subscription::{
    poison, ReplayReport, RunError, RunSummary, Runner, RunnerState, RunnerStatus, Sink, Subscriber, SubscriberSink,
};
pub use views::SnapshotStats;
