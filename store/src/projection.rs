//! Where a projection's read model and checkpoint live: [`ProjectionStore`].
//! The projection itself (`Projection`) and its runner are in
//! `eventcore-tokio`.

use crate::{CheckpointError, FencingToken};
use eventcore::GlobalPosition;
use std::future::Future;
use std::sync::Arc;

/// Where a projection's read model and checkpoint live, written together.
///
/// The contract, which makes projections exactly-once and fenced:
/// - [`ProjectionStore::claim`] raises the fence of `name` to `token`
///   (refusing a token below the current fence) and returns the checkpoint;
/// - [`ProjectionStore::begin`] opens a transaction for the holder of
///   `token`;
/// - [`ProjectionStore::commit`] writes the checkpoint (keeping the maximum)
///   and commits the read-model writes made through the transaction, all or
///   nothing, and only if `token` is still the current fence; otherwise it
///   fails with [`CheckpointError::Fenced`] and nothing is written.
/// - dropping a transaction rolls it back.
///
/// It has no object-safe twin: a projection writes through its store's own
/// [`ProjectionStore::Transaction`] type, so the store is part of the
/// projection's type. `Arc<S>` is a `ProjectionStore` for every `S`.
pub trait ProjectionStore: Send + Sync + 'static {
    /// The handle through which a projection writes its read model.
    type Transaction: Send;

    /// Raises the fence of `name` to `token` and returns its checkpoint.
    fn claim(
        &self,
        name: &str,
        token: FencingToken,
    ) -> impl Future<Output = Result<GlobalPosition, CheckpointError>> + Send;

    /// Opens a transaction on behalf of the holder of `token`.
    fn begin(
        &self,
        name: &str,
        token: FencingToken,
    ) -> impl Future<Output = Result<Self::Transaction, CheckpointError>> + Send;

    /// Saves `checkpoint` and commits, if the fence still holds.
    fn commit(
        &self,
        transaction: Self::Transaction,
        checkpoint: GlobalPosition,
    ) -> impl Future<Output = Result<(), CheckpointError>> + Send;

    /// The checkpoint already committed when `transaction` began, read
    /// inside it (after any commit still in flight finished), if the store
    /// can tell. The projection runner skips the events at or below it, so
    /// that a batch whose commit succeeded but whose answer was lost (a
    /// dropped connection, a server crash after the commit) is not applied
    /// a second time when it is delivered again. Default: `None` (every
    /// event of a batch is applied).
    fn committed(transaction: &Self::Transaction) -> Option<GlobalPosition> {
        let _ = transaction;
        None
    }
}

impl<S: ProjectionStore + ?Sized> ProjectionStore for Arc<S> {
    type Transaction = S::Transaction;

    fn claim(
        &self,
        name: &str,
        token: FencingToken,
    ) -> impl Future<Output = Result<GlobalPosition, CheckpointError>> + Send {
        (**self).claim(name, token)
    }

    fn begin(
        &self,
        name: &str,
        token: FencingToken,
    ) -> impl Future<Output = Result<Self::Transaction, CheckpointError>> + Send {
        (**self).begin(name, token)
    }

    fn commit(
        &self,
        transaction: Self::Transaction,
        checkpoint: GlobalPosition,
    ) -> impl Future<Output = Result<(), CheckpointError>> + Send {
        (**self).commit(transaction, checkpoint)
    }

    fn committed(transaction: &Self::Transaction) -> Option<GlobalPosition> {
        S::committed(transaction)
    }
}
