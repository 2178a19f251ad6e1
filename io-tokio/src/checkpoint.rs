//! Checkpoint stores: where an at-least-once subscription remembers how far
//! it got, fenced by the lease token of its current holder.

use crate::FencingToken;
use eventcore::{ConsumerError, GlobalPosition};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

/// Why a checkpoint (or a projection transaction) was not saved.
///
/// ```
/// use eventcore::ConsumerError;
/// use eventcore_tokio::{CheckpointError, FencingToken};
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
///
/// ```
/// use eventcore_tokio::{CheckpointStore, MemoryCheckpointStore};
/// fn takes_any(_: &impl CheckpointStore) {}
/// takes_any(&MemoryCheckpointStore::new());
/// ```
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

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    position: GlobalPosition,
    fence: FencingToken,
}

/// Checkpoints in memory, shared by every clone.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use eventcore::GlobalPosition;
/// use eventcore_tokio::{CheckpointStore, FencingToken, MemoryCheckpointStore};
/// let store = MemoryCheckpointStore::new();
/// let (old, new) = (FencingToken::new(1), FencingToken::new(2));
/// store.claim("audit", old).await.unwrap();
/// store.save("audit", old, GlobalPosition::new(5)).await.unwrap();
/// assert_eq!(store.claim("audit", new).await.unwrap(), GlobalPosition::new(5));
/// assert!(store.save("audit", old, GlobalPosition::new(9)).await.is_err());
/// assert_eq!(store.get("audit"), Some(GlobalPosition::new(5)));
/// # });
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryCheckpointStore {
    entries: Arc<Mutex<BTreeMap<String, Entry>>>,
}

impl MemoryCheckpointStore {
    /// No checkpoints.
    pub fn new() -> Self {
        MemoryCheckpointStore::default()
    }

    /// The saved checkpoint of `name`, if any.
    pub fn get(&self, name: &str) -> Option<GlobalPosition> {
        self.lock().get(name).map(|e| e.position)
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl CheckpointStore for MemoryCheckpointStore {
    async fn claim(&self, name: &str, token: FencingToken) -> Result<GlobalPosition, CheckpointError> {
        let mut entries = self.lock();
        let entry = entries.entry(name.to_owned()).or_default();
        if entry.fence > token {
            return Err(CheckpointError::Fenced {
                name: name.to_owned(),
                token,
                current: entry.fence,
            });
        }
        entry.fence = token;
        Ok(entry.position)
    }

    async fn save(&self, name: &str, token: FencingToken, position: GlobalPosition) -> Result<(), CheckpointError> {
        let mut entries = self.lock();
        let entry = entries.entry(name.to_owned()).or_default();
        if entry.fence != token {
            return Err(CheckpointError::Fenced {
                name: name.to_owned(),
                token,
                current: entry.fence,
            });
        }
        entry.position = entry.position.max(position);
        Ok(())
    }
}
