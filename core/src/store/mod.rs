//! The store contract: the requests a machine emits, the responses a store
//! gives, and the errors it may answer with. Every store (memory, PostgreSQL,
//! any future one) answers exactly this, checked by one conformance suite.
//!
//! Validation that does not depend on stored data lives here, so that every
//! store rejects the same bad input with the same error.

mod append;
mod errors;
mod read;
mod read_all;
mod retention;

pub use append::{AppendLimits, AppendReceipt, AppendRequest, StreamAppend, StreamCommit};
pub use errors::{
    Conflict, ErrorSource, InvalidAppend, InvalidRequest, Operation, StoreError, StoreErrorKind, StreamDeleted,
};
pub use read::{ReadRequest, ReadResponse, StreamRead, StreamSlice};
pub use read_all::{EventFilter, ReadAllRequest, ReadAllResponse};
pub use retention::{
    RemovalReason, RemovedRange, RetentionOptions, RetentionPlan, RetentionPolicy, RetentionReport,
    StreamRetentionState, UnknownRemovalReason,
};
