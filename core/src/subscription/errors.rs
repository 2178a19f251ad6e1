//! What can go wrong: poison events, consumer failures and how a
//! subscription ends.

use crate::store::StoreError;
use crate::{DecodeError, DecodeErrorKind, EventType, GlobalPosition, RecordedEvent, StreamId, StreamVersion};

/// Why an event is poison.
///
/// ```
/// use eventcore::{DecodeErrorKind, PoisonCause};
/// let c = PoisonCause::Decode(DecodeErrorKind::UnknownEventType);
/// assert_eq!(c.to_string(), "cannot decode: unknown event type");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoisonCause {
    /// The payload does not decode into the consumer's event type.
    #[error("cannot decode: {0}")]
    Decode(DecodeErrorKind),
    /// The consumer's handler refused the event.
    #[error("handler failed: {0}")]
    Handler(String),
}

/// An event the consumer could not handle, with where it is.
///
/// ```
/// use eventcore::*;
/// # use std::sync::Arc;
/// # let event = RecordedEvent {
/// #     event_id: EventId::v7(Time::ZERO, [1; 10]), stream_id: StreamId::new("acc-1")?,
/// #     version: StreamVersion::new(2), position: GlobalPosition::new(7),
/// #     event_type: EventType::new("Deposited").expect("valid"), schema_version: 1,
/// #     payload: Payload::from_trusted_json("{}"),
/// #     metadata: Arc::new(EventMetadata::new(CommandId::v7(Time::ZERO, [0; 10]), Time::ZERO)) };
/// let poison = PoisonEvent::handler(&event, "amount overflow");
/// assert_eq!(poison.to_string(), "poison event Deposited at acc-1@2 (position 7): handler failed: amount overflow");
/// # Ok::<(), InvalidStreamId>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("poison event {event_type} at {stream}@{version} (position {position}): {cause}")]
pub struct PoisonEvent {
    /// Its global position.
    pub position: GlobalPosition,
    /// Its stream.
    pub stream: StreamId,
    /// Its version in the stream.
    pub version: StreamVersion,
    /// Its stored type name.
    pub event_type: EventType,
    /// What went wrong. Its text is part of this error's message, so it is
    /// not also given as the source (a `{:#}` chain would print it twice).
    pub cause: PoisonCause,
}

impl PoisonEvent {
    /// A handler failure on `event`.
    pub fn handler(event: &RecordedEvent, message: impl Into<String>) -> Self {
        PoisonEvent {
            position: event.position,
            stream: event.stream_id.clone(),
            version: event.version,
            event_type: event.event_type.clone(),
            cause: PoisonCause::Handler(message.into()),
        }
    }
}

impl From<DecodeError> for PoisonEvent {
    fn from(error: DecodeError) -> Self {
        PoisonEvent {
            position: error.position,
            stream: error.stream,
            version: error.version,
            event_type: error.event_type,
            cause: PoisonCause::Decode(error.kind),
        }
    }
}

/// A failure of the consumer's side that is not about one event: saving a
/// checkpoint, parking an event, or the infrastructure under a handler.
///
/// ```
/// use eventcore::ConsumerError;
/// assert!(ConsumerError::Transient("connection reset".into()).is_retryable());
/// assert!(!ConsumerError::Fenced("lease taken over".into()).is_retryable());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumerError {
    /// A passing failure; nothing was applied. Retried with backoff.
    #[error("transient consumer failure: {0}")]
    Transient(String),
    /// This instance no longer owns the subscription (its lease was taken
    /// over); its writes were rejected. Stops the subscription.
    #[error("fenced: {0}")]
    Fenced(String),
    /// A failure retrying cannot fix. Stops the subscription.
    #[error("permanent consumer failure: {0}")]
    Permanent(String),
}

impl ConsumerError {
    /// Whether a later attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ConsumerError::Transient(_))
    }
}

/// Why the consumer did not handle a batch. Whatever the variant, the batch
/// counts as not applied at all (a transactional consumer rolled it back;
/// an at-least-once consumer may see it again).
///
/// ```
/// use eventcore::{ConsumerError, HandleError};
/// let e: HandleError = ConsumerError::Transient("pool exhausted".into()).into();
/// assert!(matches!(e, HandleError::Consumer(ConsumerError::Transient(_))));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandleError {
    /// One event of the batch is poison.
    #[error(transparent)]
    Poison(#[from] PoisonEvent),
    /// Not about one event.
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
}

/// How a subscription ended.
///
/// ```
/// use eventcore::{SubscriptionError, StoreError, Operation};
/// let e = SubscriptionError::Store(StoreError::permanent(Operation::ReadAll, "no such table"));
/// assert!(e.to_string().contains("no such table"));
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum SubscriptionError {
    /// A poison event whose policy says stop.
    Poison(PoisonEvent),
    /// The store failed in a way that retrying cannot fix, or broke its
    /// contract. Displays the store error.
    Store(StoreError),
    /// Transient store failures went on for `attempts` consecutive fetches.
    FetchRetriesExhausted {
        /// Consecutive failed fetches.
        attempts: u32,
        /// The last error.
        last: StoreError,
    },
    /// The consumer failed in a way that retrying cannot fix, or transient
    /// failures went on for `max_attempts` consecutive tries.
    Consumer {
        /// Consecutive failed tries.
        attempts: u32,
        /// The last error.
        last: ConsumerError,
    },
}

impl std::fmt::Display for SubscriptionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubscriptionError::Poison(poison) => std::fmt::Display::fmt(poison, f),
            SubscriptionError::Store(error) => std::fmt::Display::fmt(error, f),
            SubscriptionError::FetchRetriesExhausted { attempts, last } => {
                write!(f, "fetching gave up after {attempts} attempts; last error: {last}")
            }
            SubscriptionError::Consumer { attempts, last } => {
                write!(f, "consumer error after {attempts} attempts: {last}")
            }
        }
    }
}

/// Written out rather than derived: each variant displays its inner error,
/// and the chain continues with that error's source (a store's driver
/// error), so a `{:#}` chain prints every cause once and none is lost.
impl std::error::Error for SubscriptionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SubscriptionError::Poison(poison) => poison.source(),
            SubscriptionError::Store(last) | SubscriptionError::FetchRetriesExhausted { last, .. } => last.source(),
            SubscriptionError::Consumer { last, .. } => last.source(),
        }
    }
}

impl SubscriptionError {
    /// True when another instance took the subscription over.
    pub fn is_fenced(&self) -> bool {
        matches!(
            self,
            SubscriptionError::Consumer {
                last: ConsumerError::Fenced(_),
                ..
            }
        )
    }
}
