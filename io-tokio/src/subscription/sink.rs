//! Where batches go: the [`Sink`] a runner delivers to, the at-least-once
//! [`Subscriber`] and its [`SubscriberSink`], and [`poison`] for handlers.

use crate::{CheckpointError, CheckpointStore, FencingToken};
use eventcore::{Batch, CheckpointMode, GlobalPosition, HandleError, PoisonEvent, RecordedEvent};
use std::future::Future;

#[cfg(doc)]
use super::Runner;

/// An at-least-once consumer of batches. A batch that fails (any error) may
/// be delivered again; a crash after handling and before the checkpoint is
/// saved delivers it again after restart. Make handling idempotent, or use a
/// [`crate::Projection`] for exactly-once.
///
/// ```
/// use eventcore::{Batch, HandleError};
/// use eventcore_tokio::Subscriber;
/// struct Count(usize);
/// impl Subscriber for Count {
///     async fn handle(&mut self, batch: &Batch) -> Result<(), HandleError> {
///         self.0 += batch.events.len();
///         Ok(())
///     }
/// }
/// ```
pub trait Subscriber: Send + 'static {
    /// Handles a batch, in global order. Return
    /// [`HandleError::Poison`] naming the event that cannot be handled, or
    /// [`HandleError::Consumer`] for failures not about one event.
    fn handle(&mut self, batch: &Batch) -> impl Future<Output = Result<(), HandleError>> + Send;
}

/// The consumer side of a [`Runner`]: where batches go and where the
/// checkpoint is kept. [`SubscriberSink`] and [`crate::ProjectionSink`]
/// are the two provided; implement it for a consumer of your own.
pub trait Sink: Send + 'static {
    /// Whether handling a batch also commits its checkpoint.
    fn checkpoint_mode(&self) -> CheckpointMode;

    /// Becomes the holder of `name` with `token` (fencing out older tokens)
    /// and returns the checkpoint to resume from.
    fn claim(
        &mut self,
        name: &str,
        token: FencingToken,
    ) -> impl Future<Output = Result<GlobalPosition, CheckpointError>> + Send;

    /// Handles a batch under the claimed token.
    fn handle(&mut self, batch: &Batch) -> impl Future<Output = Result<(), HandleError>> + Send;

    /// Handles a parked event replayed by [`Runner::replay_parked`] or at
    /// an operator's request ([`crate::DeadLetterStore::request_replay`])
    /// (a batch of one, at or below the checkpoint: it was parked, not
    /// handled, when the checkpoint passed it). Default: [`Sink::handle`].
    fn replay(&mut self, batch: &Batch) -> impl Future<Output = Result<(), HandleError>> + Send {
        self.handle(batch)
    }

    /// Saves the checkpoint under the claimed token.
    fn save(&mut self, position: GlobalPosition) -> impl Future<Output = Result<(), CheckpointError>> + Send;
}

/// A [`Subscriber`] with a [`CheckpointStore`]: at-least-once delivery,
/// checkpoint saved after every batch. Built by [`Runner::subscription`].
///
/// ```
/// use eventcore::{Batch, CheckpointMode, HandleError};
/// use eventcore_tokio::{MemoryCheckpointStore, MemoryEventStore, Runner, Sink, Subscriber};
/// struct Ignore;
/// impl Subscriber for Ignore {
///     async fn handle(&mut self, _: &Batch) -> Result<(), HandleError> { Ok(()) }
/// }
/// let runner = Runner::subscription("s", MemoryEventStore::new(), MemoryCheckpointStore::new(), Ignore);
/// assert_eq!(runner.sink().checkpoint_mode(), CheckpointMode::AfterBatch);
/// ```
#[derive(Debug)]
pub struct SubscriberSink<C, H> {
    pub(super) checkpoints: C,
    pub(super) subscriber: H,
    pub(super) claimed: Option<(String, FencingToken)>,
}

impl<C, H> SubscriberSink<C, H> {
    /// The subscriber.
    pub fn subscriber(&self) -> &H {
        &self.subscriber
    }

    /// The subscriber, mutably.
    pub fn subscriber_mut(&mut self) -> &mut H {
        &mut self.subscriber
    }
}

impl<C: CheckpointStore, H: Subscriber> Sink for SubscriberSink<C, H> {
    fn checkpoint_mode(&self) -> CheckpointMode {
        CheckpointMode::AfterBatch
    }

    async fn claim(&mut self, name: &str, token: FencingToken) -> Result<GlobalPosition, CheckpointError> {
        let position = self.checkpoints.claim(name, token).await?;
        self.claimed = Some((name.to_owned(), token));
        Ok(position)
    }

    async fn handle(&mut self, batch: &Batch) -> Result<(), HandleError> {
        self.subscriber.handle(batch).await
    }

    async fn save(&mut self, position: GlobalPosition) -> Result<(), CheckpointError> {
        let Some((name, token)) = &self.claimed else {
            return Err(CheckpointError::Permanent(
                "checkpoint saved before it was claimed".into(),
            ));
        };
        self.checkpoints.save(name, *token, position).await
    }
}

/// Wraps a decode failure or a handler message about `event` as poison.
///
/// ```
/// # use eventcore::*;
/// # use std::sync::Arc;
/// # let event = RecordedEvent {
/// #     event_id: EventId::v7(Time::ZERO, [1; 10]), stream_id: StreamId::new("s").expect("valid"),
/// #     version: StreamVersion::new(1), position: GlobalPosition::new(3),
/// #     event_type: EventType::new("E").expect("valid"), schema_version: 1,
/// #     payload: Payload::from_trusted_json("{}"),
/// #     metadata: Arc::new(EventMetadata::new(CommandId::v7(Time::ZERO, [0; 10]), Time::ZERO)) };
/// let e = eventcore_tokio::poison(&event, "negative amount");
/// assert!(matches!(e, HandleError::Poison(p) if p.position == GlobalPosition::new(3)));
/// ```
pub fn poison(event: &RecordedEvent, message: impl Into<String>) -> HandleError {
    HandleError::Poison(PoisonEvent::handler(event, message))
}
