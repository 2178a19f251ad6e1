//! Checkpoint stores: where an at-least-once subscription remembers how far
//! it got, fenced by the lease token of its current holder.

use crate::{BoxFuture, FencingToken};
use eventcore::{ConsumerError, GlobalPosition};
use std::future::Future;
use std::sync::Arc;

/// Why a checkpoint (or a projection transaction) was not saved.
///
/// ```
/// use eventcore::ConsumerError;
/// use eventcore_store::{CheckpointError, FencingToken};
/// let e = CheckpointError::Fenced { name: "audit".into(), token: FencingToken::new(1), current: FencingToken::new(2) };
/// assert!(matches!(ConsumerError::from(e), ConsumerError::Fenced(_)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// A newer holder has claimed the subscription; this write is rejected.
    #[error("checkpoint `{name}` is fenced: write with {token} rejected, current is {current}")]
    Fenced {
        /// The subscription.
        name: String,
        /// The token the write carried.
        token: FencingToken,
        /// The store's current fence.
        current: FencingToken,
    },
    /// A passing failure; nothing was written.
    #[error("transient checkpoint failure: {0}")]
    Transient(String),
    /// A failure retrying will not fix.
    #[error("permanent checkpoint failure: {0}")]
    Permanent(String),
}

impl From<CheckpointError> for ConsumerError {
    fn from(error: CheckpointError) -> Self {
        match error {
            CheckpointError::Fenced { .. } => ConsumerError::Fenced(error.to_string()),
            CheckpointError::Transient(message) => ConsumerError::Transient(message),
            CheckpointError::Permanent(message) => ConsumerError::Permanent(message),
        }
    }
}

/// Where subscriptions keep their checkpoints.
///
/// The fence protocol: a new holder calls [`CheckpointStore::claim`] with
/// its lease token, which raises the stored fence to that token (refused
/// when a higher token already claimed) and returns the checkpoint to resume
/// from. [`CheckpointStore::save`] succeeds only with the current fence, so
/// a stale holder can never move the checkpoint again.
pub trait CheckpointStore: Send + Sync + 'static {
    /// Raises the fence of `name` to `token` and returns its checkpoint
    /// ([`GlobalPosition::START`] if none).
    fn claim(
        &self,
        name: &str,
        token: FencingToken,
    ) -> impl Future<Output = Result<GlobalPosition, CheckpointError>> + Send;

    /// Saves `position` for `name` if `token` is the current fence. A
    /// position below the stored one is ignored (checkpoints never go back).
    fn save(
        &self,
        name: &str,
        token: FencingToken,
        position: GlobalPosition,
    ) -> impl Future<Output = Result<(), CheckpointError>> + Send;
}

/// [`CheckpointStore`] as a trait object (boxed futures). Every
/// `CheckpointStore` is one; `Box<dyn DynCheckpointStore>` and
/// `Arc<dyn DynCheckpointStore>` are `CheckpointStore`s again.
pub trait DynCheckpointStore: Send + Sync + 'static {
    /// [`CheckpointStore::claim`], boxed.
    fn claim_boxed<'a>(
        &'a self,
        name: &'a str,
        token: FencingToken,
    ) -> BoxFuture<'a, Result<GlobalPosition, CheckpointError>>;

    /// [`CheckpointStore::save`], boxed.
    fn save_boxed<'a>(
        &'a self,
        name: &'a str,
        token: FencingToken,
        position: GlobalPosition,
    ) -> BoxFuture<'a, Result<(), CheckpointError>>;
}

impl<S: CheckpointStore> DynCheckpointStore for S {
    fn claim_boxed<'a>(
        &'a self,
        name: &'a str,
        token: FencingToken,
    ) -> BoxFuture<'a, Result<GlobalPosition, CheckpointError>> {
        Box::pin(self.claim(name, token))
    }

    fn save_boxed<'a>(
        &'a self,
        name: &'a str,
        token: FencingToken,
        position: GlobalPosition,
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        Box::pin(self.save(name, token, position))
    }
}

impl CheckpointStore for dyn DynCheckpointStore {
    async fn claim(&self, name: &str, token: FencingToken) -> Result<GlobalPosition, CheckpointError> {
        self.claim_boxed(name, token).await
    }

    async fn save(&self, name: &str, token: FencingToken, position: GlobalPosition) -> Result<(), CheckpointError> {
        self.save_boxed(name, token, position).await
    }
}

macro_rules! forward_checkpoint_store {
    ($ptr:ident) => {
        impl<S: CheckpointStore + ?Sized> CheckpointStore for $ptr<S> {
            fn claim(
                &self,
                name: &str,
                token: FencingToken,
            ) -> impl Future<Output = Result<GlobalPosition, CheckpointError>> + Send {
                (**self).claim(name, token)
            }

            fn save(
                &self,
                name: &str,
                token: FencingToken,
                position: GlobalPosition,
            ) -> impl Future<Output = Result<(), CheckpointError>> + Send {
                (**self).save(name, token, position)
            }
        }
    };
}

forward_checkpoint_store!(Arc);
forward_checkpoint_store!(Box);
