//! # EventCore — the sans-IO core
//!
//! Multi-stream event sourcing with dynamic consistency boundaries. This
//! crate holds every decision the library makes and no I/O at all: domain
//! types, the [`Command`] trait, the [`CommandMachine`] that executes one
//! command, and the store contract ([`store`]) that every store answers.
//! Drivers (the tokio executor, the simulator) feed the machine store
//! responses and the current [`Time`], and do what its [`Step`]s say.
//!
//! ```
//! use eventcore::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! enum Counter { Incremented }
//! impl Event for Counter {}
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("counter is full")]
//! struct Full;
//!
//! struct Increment(StreamId);
//! impl Command for Increment {
//!     type Event = Counter;
//!     type State = u32;
//!     type Error = Full;
//!     fn streams(&self) -> Vec<StreamId> { vec![self.0.clone()] }
//!     fn apply(&self, n: &mut u32, _: &StreamId, _: &Counter) { *n += 1; }
//!     fn decide(&self, n: &u32, out: &mut Decision<Counter>) -> Result<(), Full> {
//!         if *n >= 3 { return Err(Full); }
//!         out.emit(&self.0, Counter::Incremented);
//!         Ok(())
//!     }
//! }
//! # let _ = Increment(StreamId::new("c")?);
//! # Ok::<(), InvalidStreamId>(())
//! ```

mod codec;
mod command;
mod entropy;
mod event;
mod ids;
mod lease;
mod machine;
mod policy;
mod snapshot;
pub mod store;
#[cfg(feature = "proptest")]
pub mod strategies;
mod stream_cache;
mod subscription;
mod time;
mod version;
mod view;
mod view_cache;

pub use codec::{
    decode_json, decode_recorded, encode_event, encode_json, DecodeError, DecodeErrorKind, EncodeError, EncodedEvent,
    Event, Upcast,
};
#[cfg(feature = "binary-codec")]
pub use codec::{decode_msgpack, encode_msgpack};
pub use command::{Command, Decision};
pub use entropy::Entropy;
pub use event::{
    Codec, EventMetadata, EventType, InvalidEventType, NewEvent, Payload, PayloadError, RecordedEvent,
    MAX_EVENT_TYPE_BYTES,
};
/// `#[derive(Command)]`: a command's streams and state from `#[stream(View)]`
/// fields; see [`Decide`].
pub use eventcore_derive::Command;
pub use ids::{
    CausationId, CommandId, CorrelationId, EventId, InvalidStreamId, RequestId, RequestIds, StreamId,
    MAX_STREAM_ID_BYTES,
};
pub use lease::{LeaseFailure, LeaseMachine, LeasePolicy, LeaseStep, LeaseToken};
pub use machine::{
    AnyCommandError, CommandError, CommandErrorKind, CommandMachine, Executed, ExecutionContext, ExecutionError,
    ExecutionStats, Step,
};
pub use policy::{ExecutionPolicy, RetryPolicy};
pub use snapshot::{Snapshot, SnapshotRejected, SnapshotUnavailable};
pub use store::{
    AppendLimits, AppendReceipt, AppendRequest, Conflict, ErrorSource, EventFilter, InvalidAppend, InvalidRequest,
    Operation, ReadAllRequest, ReadAllResponse, ReadRequest, ReadResponse, RemovalReason, RemovedRange,
    RetentionOptions, RetentionPlan, RetentionPolicy, RetentionReport, StoreError, StoreErrorKind, StreamAppend,
    StreamCommit, StreamDeleted, StreamRead, StreamRetentionState, StreamSlice, UnknownRemovalReason,
};
pub use stream_cache::{CachedStreams, StreamCacheUse};
pub use subscription::{
    Batch, CheckpointMode, ConsumerError, HandleError, PoisonAction, PoisonCause, PoisonEvent, PoisonPolicy,
    SubscriptionError, SubscriptionMachine, SubscriptionPolicy, SubscriptionStats, SubscriptionStep,
};
pub use time::Time;
pub use version::{ExpectedVersion, GlobalPosition, StreamVersion};
pub use view::{AnyEvent, AnyView, ComposeViews, Decide, Emit, StreamView, View, ViewKind, Views};
pub use view_cache::{ViewCache, ViewCacheStats};
