//! Dead letters in one process: [`MemoryDeadLetterStore`] and
//! [`NoDeadLetters`]. The trait and [`DeadLetter`] live in `eventcore-store`.

use eventcore::{GlobalPosition, PoisonEvent, Time};
use eventcore_store::{DeadLetter, DeadLetterError, DeadLetterStore, ReplaySelection};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// No dead-letter store: parking fails permanently, so a subscription whose
/// poison policy says park stops instead of dropping the event.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use eventcore_tokio::{DeadLetterStore, NoDeadLetters};
/// assert!(NoDeadLetters.list("p").await.unwrap().is_empty());
/// # });
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct NoDeadLetters;

impl DeadLetterStore for NoDeadLetters {
    async fn park(&self, _letter: DeadLetter) -> Result<(), DeadLetterError> {
        Err(DeadLetterError::Unavailable)
    }

    async fn list(&self, _subscription: &str) -> Result<Vec<DeadLetter>, DeadLetterError> {
        Ok(Vec::new())
    }

    async fn remove(&self, _subscription: &str, _position: GlobalPosition) -> Result<bool, DeadLetterError> {
        Ok(false)
    }

    async fn request_replay(
        &self,
        _subscription: &str,
        _which: &ReplaySelection,
        _at: Time,
    ) -> Result<Vec<GlobalPosition>, DeadLetterError> {
        Ok(Vec::new())
    }

    async fn replay_requested(&self, _subscription: &str) -> Result<Vec<DeadLetter>, DeadLetterError> {
        Ok(Vec::new())
    }

    async fn replay_failed(&self, _subscription: &str, _poison: &PoisonEvent) -> Result<bool, DeadLetterError> {
        Ok(false)
    }
}

/// Dead letters in memory, shared by every clone.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use eventcore_tokio::{DeadLetterStore, MemoryDeadLetterStore};
/// let dlq = MemoryDeadLetterStore::new();
/// assert!(dlq.list("balances").await.unwrap().is_empty());
/// # });
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryDeadLetterStore {
    letters: Arc<Mutex<BTreeMap<(String, GlobalPosition), DeadLetter>>>,
}

impl MemoryDeadLetterStore {
    /// No letters.
    pub fn new() -> Self {
        MemoryDeadLetterStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<(String, GlobalPosition), DeadLetter>> {
        self.letters.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl DeadLetterStore for MemoryDeadLetterStore {
    async fn park(&self, letter: DeadLetter) -> Result<(), DeadLetterError> {
        let key = (letter.subscription.clone(), letter.event.position);
        self.lock().entry(key).or_insert(letter);
        Ok(())
    }

    async fn list(&self, subscription: &str) -> Result<Vec<DeadLetter>, DeadLetterError> {
        Ok(self
            .lock()
            .iter()
            .filter(|((name, _), _)| name == subscription)
            .map(|(_, letter)| letter.clone())
            .collect())
    }

    async fn remove(&self, subscription: &str, position: GlobalPosition) -> Result<bool, DeadLetterError> {
        Ok(self.lock().remove(&(subscription.to_owned(), position)).is_some())
    }

    async fn request_replay(
        &self,
        subscription: &str,
        which: &ReplaySelection,
        at: Time,
    ) -> Result<Vec<GlobalPosition>, DeadLetterError> {
        let mut letters = self.lock();
        let mut requested = Vec::new();
        for ((name, position), letter) in letters.iter_mut() {
            if name == subscription && which.includes(*position) {
                letter.replay_requested_at.get_or_insert(at);
                requested.push(*position);
            }
        }
        Ok(requested)
    }

    async fn replay_failed(&self, subscription: &str, poison: &PoisonEvent) -> Result<bool, DeadLetterError> {
        match self.lock().get_mut(&(subscription.to_owned(), poison.position)) {
            Some(letter) => {
                letter.poison = poison.clone();
                letter.replay_requested_at = None;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}
