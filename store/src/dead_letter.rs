//! Dead letters: poison events parked so that a subscription can continue,
//! to be listed, fixed and replayed later.

use crate::BoxFuture;
use eventcore::{GlobalPosition, PoisonEvent, RecordedEvent, Time};
use std::future::Future;
use std::sync::Arc;

/// One parked event.
///
/// ```
/// use eventcore::*;
/// use eventcore_store::DeadLetter;
/// # use std::sync::Arc;
/// # let event = RecordedEvent {
/// #     event_id: EventId::v7(Time::ZERO, [1; 10]), stream_id: StreamId::new("acc-1").expect("valid"),
/// #     version: StreamVersion::new(1), position: GlobalPosition::new(4),
/// #     event_type: EventType::new("Deposited").expect("valid"), schema_version: 1,
/// #     payload: Payload::from_trusted_json("{}"),
/// #     metadata: Arc::new(EventMetadata::new(CommandId::v7(Time::ZERO, [0; 10]), Time::ZERO)) };
/// let poison = PoisonEvent::handler(&event, "bad amount");
/// let letter = DeadLetter {
///     subscription: "balances".into(), event, poison, parked_at: Time::ZERO, replay_requested_at: None,
/// };
/// assert_eq!(letter.poison.position, GlobalPosition::new(4));
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
    /// When an operator asked for it to be replayed
    /// ([`DeadLetterStore::request_replay`]), on the requester's clock;
    /// `None` when no replay is pending. The subscription's runner replays
    /// requested letters through its own handler and removes those it
    /// handles; one that fails again stays parked with this cleared.
    pub replay_requested_at: Option<Time>,
}

/// Which letters of a subscription a replay request names.
///
/// ```
/// use eventcore::GlobalPosition;
/// use eventcore_store::ReplaySelection;
/// let two = ReplaySelection::Positions(vec![GlobalPosition::new(4), GlobalPosition::new(9)]);
/// assert!(two.includes(GlobalPosition::new(9)));
/// assert!(!two.includes(GlobalPosition::new(5)));
/// assert!(ReplaySelection::All.includes(GlobalPosition::new(5)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplaySelection {
    /// Every letter the subscription has parked.
    All,
    /// The letters at these positions (positions with no letter are ignored).
    Positions(Vec<GlobalPosition>),
}

impl ReplaySelection {
    /// Whether the letter at `position` is selected.
    pub fn includes(&self, position: GlobalPosition) -> bool {
        match self {
            ReplaySelection::All => true,
            ReplaySelection::Positions(positions) => positions.contains(&position),
        }
    }
}

/// Why a dead-letter operation failed.
///
/// ```
/// use eventcore_store::DeadLetterError;
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

    /// Records an operator's request to replay the `which` letters of
    /// `subscription` (at `at`, the requester's clock); the subscription's
    /// running runner replays them through its handler. Returns the
    /// positions now requested, in order (positions with no letter are
    /// left out). Requesting a letter already requested keeps the first
    /// request's time.
    fn request_replay(
        &self,
        subscription: &str,
        which: &ReplaySelection,
        at: Time,
    ) -> impl Future<Output = Result<Vec<GlobalPosition>, DeadLetterError>> + Send;

    /// The letters of `subscription` with a pending replay request, in
    /// position order. Runners call it at most once per poll interval;
    /// the default filters [`DeadLetterStore::list`].
    fn replay_requested(
        &self,
        subscription: &str,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, DeadLetterError>> + Send {
        async move {
            let mut letters = self.list(subscription).await?;
            letters.retain(|letter| letter.replay_requested_at.is_some());
            Ok(letters)
        }
    }

    /// A requested replay of the letter at `poison.position` failed again:
    /// the letter stays parked with `poison` as its new cause and its
    /// request cleared. `false` if the letter is not there.
    fn replay_failed(
        &self,
        subscription: &str,
        poison: &PoisonEvent,
    ) -> impl Future<Output = Result<bool, DeadLetterError>> + Send;
}

/// [`DeadLetterStore`] as a trait object (boxed futures). Every
/// `DeadLetterStore` is one; `Box<dyn DynDeadLetterStore>` and
/// `Arc<dyn DynDeadLetterStore>` are `DeadLetterStore`s again.
pub trait DynDeadLetterStore: Send + Sync + 'static {
    /// [`DeadLetterStore::park`], boxed.
    fn park_boxed(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), DeadLetterError>>;

    /// [`DeadLetterStore::list`], boxed.
    fn list_boxed<'a>(&'a self, subscription: &'a str) -> BoxFuture<'a, Result<Vec<DeadLetter>, DeadLetterError>>;

    /// [`DeadLetterStore::remove`], boxed.
    fn remove_boxed<'a>(
        &'a self,
        subscription: &'a str,
        position: GlobalPosition,
    ) -> BoxFuture<'a, Result<bool, DeadLetterError>>;

    /// [`DeadLetterStore::request_replay`], boxed.
    fn request_replay_boxed<'a>(
        &'a self,
        subscription: &'a str,
        which: &'a ReplaySelection,
        at: Time,
    ) -> BoxFuture<'a, Result<Vec<GlobalPosition>, DeadLetterError>>;

    /// [`DeadLetterStore::replay_requested`], boxed.
    fn replay_requested_boxed<'a>(
        &'a self,
        subscription: &'a str,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, DeadLetterError>>;

    /// [`DeadLetterStore::replay_failed`], boxed.
    fn replay_failed_boxed<'a>(
        &'a self,
        subscription: &'a str,
        poison: &'a PoisonEvent,
    ) -> BoxFuture<'a, Result<bool, DeadLetterError>>;
}

impl<S: DeadLetterStore> DynDeadLetterStore for S {
    fn park_boxed(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), DeadLetterError>> {
        Box::pin(self.park(letter))
    }

    fn list_boxed<'a>(&'a self, subscription: &'a str) -> BoxFuture<'a, Result<Vec<DeadLetter>, DeadLetterError>> {
        Box::pin(self.list(subscription))
    }

    fn remove_boxed<'a>(
        &'a self,
        subscription: &'a str,
        position: GlobalPosition,
    ) -> BoxFuture<'a, Result<bool, DeadLetterError>> {
        Box::pin(self.remove(subscription, position))
    }

    fn request_replay_boxed<'a>(
        &'a self,
        subscription: &'a str,
        which: &'a ReplaySelection,
        at: Time,
    ) -> BoxFuture<'a, Result<Vec<GlobalPosition>, DeadLetterError>> {
        Box::pin(self.request_replay(subscription, which, at))
    }

    fn replay_requested_boxed<'a>(
        &'a self,
        subscription: &'a str,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, DeadLetterError>> {
        Box::pin(self.replay_requested(subscription))
    }

    fn replay_failed_boxed<'a>(
        &'a self,
        subscription: &'a str,
        poison: &'a PoisonEvent,
    ) -> BoxFuture<'a, Result<bool, DeadLetterError>> {
        Box::pin(self.replay_failed(subscription, poison))
    }
}

impl DeadLetterStore for dyn DynDeadLetterStore {
    async fn park(&self, letter: DeadLetter) -> Result<(), DeadLetterError> {
        self.park_boxed(letter).await
    }

    async fn list(&self, subscription: &str) -> Result<Vec<DeadLetter>, DeadLetterError> {
        self.list_boxed(subscription).await
    }

    async fn remove(&self, subscription: &str, position: GlobalPosition) -> Result<bool, DeadLetterError> {
        self.remove_boxed(subscription, position).await
    }

    async fn request_replay(
        &self,
        subscription: &str,
        which: &ReplaySelection,
        at: Time,
    ) -> Result<Vec<GlobalPosition>, DeadLetterError> {
        self.request_replay_boxed(subscription, which, at).await
    }

    async fn replay_requested(&self, subscription: &str) -> Result<Vec<DeadLetter>, DeadLetterError> {
        self.replay_requested_boxed(subscription).await
    }

    async fn replay_failed(&self, subscription: &str, poison: &PoisonEvent) -> Result<bool, DeadLetterError> {
        self.replay_failed_boxed(subscription, poison).await
    }
}

macro_rules! forward_dead_letter_store {
    ($ptr:ident) => {
        impl<S: DeadLetterStore + ?Sized> DeadLetterStore for $ptr<S> {
            fn park(&self, letter: DeadLetter) -> impl Future<Output = Result<(), DeadLetterError>> + Send {
                (**self).park(letter)
            }

            fn list(
                &self,
                subscription: &str,
            ) -> impl Future<Output = Result<Vec<DeadLetter>, DeadLetterError>> + Send {
                (**self).list(subscription)
            }

            fn remove(
                &self,
                subscription: &str,
                position: GlobalPosition,
            ) -> impl Future<Output = Result<bool, DeadLetterError>> + Send {
                (**self).remove(subscription, position)
            }

            fn request_replay(
                &self,
                subscription: &str,
                which: &ReplaySelection,
                at: Time,
            ) -> impl Future<Output = Result<Vec<GlobalPosition>, DeadLetterError>> + Send {
                (**self).request_replay(subscription, which, at)
            }

            fn replay_requested(
                &self,
                subscription: &str,
            ) -> impl Future<Output = Result<Vec<DeadLetter>, DeadLetterError>> + Send {
                (**self).replay_requested(subscription)
            }

            fn replay_failed(
                &self,
                subscription: &str,
                poison: &PoisonEvent,
            ) -> impl Future<Output = Result<bool, DeadLetterError>> + Send {
                (**self).replay_failed(subscription, poison)
            }
        }
    };
}

forward_dead_letter_store!(Arc);
forward_dead_letter_store!(Box);
