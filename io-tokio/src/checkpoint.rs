//! The in-memory [`CheckpointStore`] (the trait lives in `eventcore-store`).

use eventcore::GlobalPosition;
use eventcore_store::{CheckpointError, CheckpointStore, FencingToken};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

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
