//! # eventcore-store
//!
//! The async store traits of EventCore, with no runtime attached: the
//! [`EventStore`] that commands run against, and the stores a service keeps
//! beside it — [`SnapshotStore`], [`CheckpointStore`], [`LeaseStore`],
//! [`DeadLetterStore`], [`ProjectionStore`] and [`RetentionStore`] (the
//! maintenance job that removes events) — with their error and value
//! types. Drivers (`eventcore-tokio`) run against these traits; stores
//! (`eventcore-postgres`, the memory stores in `eventcore-tokio`) implement
//! them, so a store needs neither the driver nor its runtime.
//!
//! The traits return `impl Future` (static dispatch, no allocation per
//! call). Each has an object-safe twin (`Dyn…`, boxed futures) implemented
//! for every implementation of the trait, and the trait is implemented for
//! `Box<dyn Dyn…>` and `Arc<dyn Dyn…>`, so a service can hold any store as a
//! trait object and hand it to anything that takes the trait:
//!
//! ```
//! use eventcore_store::{DynEventStore, EventStore};
//! fn takes_any_store(_store: impl EventStore) {}
//! fn hand_over(store: Box<dyn DynEventStore>) {
//!     takes_any_store(store);
//! }
//! # let _ = hand_over;
//! ```
//!
//! [`ProjectionStore`] has no object-safe twin: its transaction is an
//! associated type that the projection's own code writes through.

mod checkpoint;
mod context;
mod dead_letter;
mod event;
mod lease;
mod projection;
mod retention;
mod snapshot;

use std::future::Future;
use std::pin::Pin;

pub use checkpoint::{CheckpointError, CheckpointStore, DynCheckpointStore};
pub use context::{CodecContext, CodecSession};
pub use dead_letter::{DeadLetter, DeadLetterError, DeadLetterStore, DynDeadLetterStore, ReplaySelection};
pub use event::{DynEventStore, EventStore};
pub use lease::{DynLeaseStore, FencingToken, Lease, LeaseError, LeaseStore};
pub use projection::ProjectionStore;
pub use retention::{DynRetentionStore, RetentionStore};
pub use snapshot::{DynSnapshotStore, SnapshotError, SnapshotStore};

/// The future an object-safe store method returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
