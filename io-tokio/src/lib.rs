//! # eventcore-tokio
//!
//! The tokio driver for EventCore: the [`Executor`] that runs
//! [`eventcore::CommandMachine`]s against a store with real time, timeouts
//! and backoff, the subscription and projection [`Runner`], and the
//! in-memory stores for services and tests ([`MemoryEventStore`],
//! [`MemorySnapshotStore`], [`MemoryCheckpointStore`], [`MemoryLeaseStore`],
//! [`MemoryDeadLetterStore`], [`MemoryReadModel`]).
//!
//! The store traits ([`EventStore`], [`SnapshotStore`], [`CheckpointStore`],
//! [`LeaseStore`], [`DeadLetterStore`], [`ProjectionStore`]) live in
//! `eventcore-store`, which needs no runtime, and are re-exported here. Any
//! store can be held as a trait object through its `Dyn…` twin:
//!
//! ```
//! use eventcore_tokio::{DynEventStore, Executor, MemoryEventStore};
//! // Chosen at run time, e.g. from configuration; `PostgresStore` works the same.
//! let store: Box<dyn DynEventStore> = Box::new(MemoryEventStore::new());
//! let executor = Executor::new(store);
//! # let _ = executor;
//! ```
//!
//! [`BlockingExecutor`] runs the same command machine synchronously against
//! the [`MemoryEventStore`], with no runtime: for unit tests, and for loom
//! models of a user's own concurrent code, built with
//! `RUSTFLAGS="--cfg eventcore_loom"` (see `docs/testing-your-domain.md`).
//!
//! ## Features
//!
//! - `memory` (default): `MemoryEventStore`, the in-memory event store on
//!   `eventcore-memory`, and `BlockingExecutor` / `execute_blocking`. A
//!   service that runs only on another store (e.g. `eventcore-postgres`)
//!   may turn it off with `default-features = false`; the other memory
//!   stores (snapshots, checkpoints, leases, dead letters, read models)
//!   need no extra crate and are always there.
//!
//! From tokio the crate asks only for `rt`, `time`, `sync` and `macros`:
//! bring your own runtime (`rt-multi-thread` or current-thread).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // off the simulated path: real clocks and hash maps are fine here (see clippy.toml)

mod batching;
#[cfg(feature = "memory")]
mod blocking;
mod cache;
mod checkpoint;
mod clock;
mod codec_context;
mod dead_letter;
mod executor;
mod lease;
#[cfg(feature = "memory")]
mod memory;
pub mod metrics;
mod notify;
mod projection;
mod snapshot;
mod subscription;
mod sync;
mod views;

pub use batching::{BatchingOptions, BatchingStats, BatchingStore};
#[cfg(feature = "memory")]
pub use blocking::{execute_blocking, BlockingExecutor};
pub use cache::StreamCache;
pub use checkpoint::MemoryCheckpointStore;
pub use clock::Clock;
pub use codec_context::BatchDecoder;
pub use dead_letter::{MemoryDeadLetterStore, NoDeadLetters};
/// What [`Executor`] returns on failure (from `eventcore`, named here too).
pub use eventcore::ExecutionError;
pub use eventcore_store::{
    CheckpointError, CheckpointStore, DeadLetter, DeadLetterError, DeadLetterStore, DynCheckpointStore,
    DynDeadLetterStore, DynEventStore, DynLeaseStore, DynRetentionStore, DynSnapshotStore, EventStore, FencingToken,
    Lease, LeaseError, LeaseStore, ProjectionStore, ReplaySelection, RetentionStore, SnapshotError, SnapshotStore,
};
pub use eventcore_store::{CodecContext, CodecSession};
pub use executor::{Executor, DEFAULT_VIEW_CACHE_BYTES};
pub use lease::{MemoryLeaseStore, NoLease};
#[cfg(feature = "memory")]
pub use memory::MemoryEventStore;
pub use notify::{HeadWatch, WaitPast};
pub use projection::{MemoryReadModel, MemoryTransaction, Projection, ProjectionError, ProjectionSink, Serving};
pub use snapshot::MemorySnapshotStore;
pub use subscription::{
    poison, ReplayReport, RunError, RunSummary, Runner, RunnerState, RunnerStatus, Sink, Subscriber, SubscriberSink,
};
pub use views::SnapshotStats;
