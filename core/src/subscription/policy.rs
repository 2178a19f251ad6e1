//! What shapes a subscription: batch and buffer sizes, timing, retries,
//! the poison policy and who commits checkpoints.

#[cfg(doc)]
use super::{Batch, SubscriptionError, SubscriptionMachine, SubscriptionStep};
use crate::RetryPolicy;
use std::num::NonZeroU32;
use std::time::Duration;

/// Who commits the checkpoint.
///
/// ```
/// use eventcore::CheckpointMode;
/// assert_eq!(CheckpointMode::default(), CheckpointMode::AfterBatch);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CheckpointMode {
    /// The machine asks for [`SubscriptionStep::SaveCheckpoint`] after every
    /// handled batch: at-least-once delivery (a crash between handling and
    /// saving replays that batch).
    #[default]
    AfterBatch,
    /// The consumer commits [`Batch::checkpoint`] in the same transaction as
    /// its own writes, so a handled batch is a saved checkpoint:
    /// exactly-once. The machine still asks for a save to move past events
    /// that were filtered out or parked when no batch carries the position.
    WithBatch,
}

/// What to do once a poison event has used up its attempts.
///
/// ```
/// use eventcore::PoisonAction;
/// assert_ne!(PoisonAction::Stop, PoisonAction::Park);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoisonAction {
    /// Stop the subscription with [`SubscriptionError::Poison`].
    Stop,
    /// Ask the driver to park the event in a dead-letter store
    /// ([`SubscriptionStep::Park`]) and continue after it.
    Park,
}

/// How a subscription treats an event that fails to decode or whose handler
/// fails: how many times the event is tried alone (with backoff between
/// tries) and what happens after the last failure.
///
/// A failure inside a batch first *isolates* the event: the events before it
/// are delivered again as their own batch, then the event alone. Only
/// failures of the event alone count against [`PoisonPolicy::attempts`].
///
/// ```
/// use eventcore::{PoisonAction, PoisonPolicy};
/// assert_eq!(PoisonPolicy::stop().attempts, 1);
/// let p = PoisonPolicy::retry(5, PoisonAction::Park);
/// assert_eq!((p.attempts, p.then), (5, PoisonAction::Park));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoisonPolicy {
    /// Tries of the isolated event, the first included (at least 1).
    pub attempts: u32,
    /// What to do after the last try failed.
    pub then: PoisonAction,
}

impl PoisonPolicy {
    /// Stop at the first failure of the isolated event.
    pub const fn stop() -> Self {
        PoisonPolicy {
            attempts: 1,
            then: PoisonAction::Stop,
        }
    }

    /// Park at the first failure of the isolated event and continue.
    pub const fn park() -> Self {
        PoisonPolicy {
            attempts: 1,
            then: PoisonAction::Park,
        }
    }

    /// Try the isolated event `attempts` times with backoff, then `then`.
    pub const fn retry(attempts: u32, then: PoisonAction) -> Self {
        PoisonPolicy { attempts, then }
    }
}

impl Default for PoisonPolicy {
    fn default() -> Self {
        PoisonPolicy::retry(3, PoisonAction::Stop)
    }
}

/// Everything that shapes one subscription.
///
/// ```
/// use eventcore::{CheckpointMode, PoisonPolicy, SubscriptionPolicy};
/// use std::num::NonZeroU32;
/// let p = SubscriptionPolicy::default()
///     .with_batch_size(NonZeroU32::new(50).expect("non-zero"))
///     .with_poison(PoisonPolicy::park())
///     .with_checkpoint_mode(CheckpointMode::WithBatch);
/// assert!(p.buffer_limit >= 50);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionPolicy {
    /// Most events per fetch and per delivered batch (the limit is applied
    /// by the store after filtering).
    pub batch_size: NonZeroU32,
    /// Most events fetched but not yet handled. Fetching pauses while a
    /// full batch would not fit. Raised to `batch_size` if lower.
    pub buffer_limit: usize,
    /// Once caught up, fetch again after this long even without a
    /// notification (notifications may be lost).
    pub poll_interval: Duration,
    /// When a short answer stops below a head the store announced
    /// ([`SubscriptionMachine::on_head`]) — events held back by a
    /// transaction still in flight — fetch again after this long instead of
    /// the poll interval.
    pub held_back_retry: Duration,
    /// A fetch not answered within this long counts as a transient failure.
    pub fetch_timeout: Duration,
    /// Backoff after transient failures (fetches, handler infrastructure,
    /// checkpoint saves, parking); `max_attempts` consecutive failures of one
    /// kind stop the subscription. The backoff between poison retries uses
    /// the same ceilings.
    pub retry: RetryPolicy,
    /// Poison-event handling.
    pub poison: PoisonPolicy,
    /// Who commits checkpoints.
    pub checkpoint: CheckpointMode,
}

impl Default for SubscriptionPolicy {
    fn default() -> Self {
        SubscriptionPolicy {
            batch_size: NonZeroU32::new(256).unwrap_or(NonZeroU32::MIN),
            buffer_limit: 1024,
            poll_interval: Duration::from_secs(1),
            held_back_retry: Duration::from_millis(20),
            fetch_timeout: Duration::from_secs(10),
            retry: RetryPolicy {
                max_attempts: u32::MAX,
                initial_backoff: Duration::from_millis(10),
                multiplier: 2,
                max_backoff: Duration::from_secs(5),
            },
            poison: PoisonPolicy::default(),
            checkpoint: CheckpointMode::AfterBatch,
        }
    }
}

impl SubscriptionPolicy {
    /// Replaces the batch size (and raises the buffer limit to fit at least
    /// two batches).
    pub fn with_batch_size(mut self, batch_size: NonZeroU32) -> Self {
        self.batch_size = batch_size;
        self.buffer_limit = self.buffer_limit.max(2 * batch_size.get() as usize);
        self
    }

    /// Replaces the buffer limit.
    pub fn with_buffer_limit(mut self, limit: usize) -> Self {
        self.buffer_limit = limit;
        self
    }

    /// Replaces the poll interval.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Replaces the poison policy.
    pub fn with_poison(mut self, poison: PoisonPolicy) -> Self {
        self.poison = poison;
        self
    }

    /// Replaces the retry policy for transient failures.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Replaces the checkpoint mode.
    pub fn with_checkpoint_mode(mut self, mode: CheckpointMode) -> Self {
        self.checkpoint = mode;
        self
    }

    pub(super) fn effective_buffer_limit(&self) -> usize {
        self.buffer_limit.max(self.batch_size.get() as usize)
    }
}
