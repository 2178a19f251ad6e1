//! Dead letters: poison events parked so that a subscription can continue,
//! to be listed, fixed and replayed later.

use eventcore::{GlobalPosition, PoisonEvent, RecordedEvent, Time};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

/// One parked event.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use eventcore::*;
/// use eventcore_tokio::{DeadLetter, DeadLetterStore, MemoryDeadLetterStore};
/// # use std::sync::Arc;
/// # let event = RecordedEvent {
/// #     event_id: EventId::v7(Time::ZERO, [1; 10]), stream_id: StreamId::new("acc-1").expect("valid"),
/// #     version: StreamVersion::new(1), position: GlobalPosition::new(4),
/// #     event_type: EventType::new("Deposited").expect("valid"), schema_version: 1,
/// #     payload: Payload::from_trusted_json("{}"),
/// #     metadata: Arc::new(EventMetadata::new(CommandId::v7(Time::ZERO, [0; 10]), Time::ZERO)) };
/// let dlq = MemoryDeadLetterStore::new();
/// let poison = PoisonEvent::handler(&event, "bad amount");
/// dlq.park(DeadLetter { subscription: "balances".into(), event, poison, parked_at: Time::ZERO }).await.unwrap();
/// assert_eq!(dlq.list("balances").await.unwrap()[0].poison.position, GlobalPosition::new(4));
/// assert!(dlq.remove("balances", GlobalPosition::new(4)).await.unwrap());
/// # });
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The subscription (or projection) that parked it.
    pub subscription: String,
    /// The event itself.
    pub event: RecordedEvent,
    /// Why it was parked.
    pub poison: PoisonEvent,
    /// When it was parked, on the parking runner's clock.
    pub parked_at: Time,
}

/// Why a dead-letter operation failed.
///
/// ```
/// use eventcore_tokio::DeadLetterError;
/// assert!(DeadLetterError::Unavailable.to_string().contains("no dead-letter store"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeadLetterError {
    /// The runner has no dead-letter store, so parking is impossible.
    #[error("no dead-letter store is configured; poison events cannot be parked")]
    Unavailable,
    /// A passing failure; try again.
    #[error("transient dead-letter failure: {0}")]
    Transient(String),
    /// A failure retrying will not fix.
    #[error("permanent dead-letter failure: {0}")]
    Permanent(String),
}

impl From<DeadLetterError> for eventcore::ConsumerError {
    fn from(error: DeadLetterError) -> Self {
        match error {
            DeadLetterError::Transient(message) => eventcore::ConsumerError::Transient(message),
            other => eventcore::ConsumerError::Permanent(other.to_string()),
        }
    }
}

/// Where parked events live. Parking the same position twice (a crash
/// between parking and moving on) keeps one letter.
///
/// ```
/// use eventcore_tokio::{DeadLetterStore, MemoryDeadLetterStore};
/// fn takes_any(_: &impl DeadLetterStore) {}
/// takes_any(&MemoryDeadLetterStore::new());
/// ```
pub trait DeadLetterStore: Send + Sync + 'static {
    /// Parks a letter (idempotent per subscription and position).
    fn park(&self, letter: DeadLetter) -> impl Future<Output = Result<(), DeadLetterError>> + Send;

    /// The letters of `subscription`, in position order.
    fn list(&self, subscription: &str) -> impl Future<Output = Result<Vec<DeadLetter>, DeadLetterError>> + Send;

    /// Removes one letter; `false` if it was not there.
    fn remove(
        &self,
        subscription: &str,
        position: GlobalPosition,
    ) -> impl Future<Output = Result<bool, DeadLetterError>> + Send;
}

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
}
