//! The subscription machine: one consumer of the global log as a value that
//! is fed store answers and consumer acknowledgements and asked for its next
//! step.
//!
//! ```text
//!            ┌──────────── full batch: fetch again at once ───────────┐
//! new ─► Fetch ─► on_fetched ─┤                                        │
//!            ▲                └─ short batch: caught up ─► Wait ───────┤
//!            │                     (until notified or poll interval)   │
//!            └─────────────────────────────────────────────────────────┘
//! buffer ─► Deliver ─► on_handled ─┬─ Ok ─► SaveCheckpoint ─► on_checkpoint_saved
//!                                  ├─ Transient ─► Wait(backoff) ─► Deliver again
//!                                  └─ Poison at p ─► isolate p ─► retry / Park / stop
//! ```
//!
//! Catch-up and live are one code path: a batch shorter than the limit means
//! the subscription has caught up, so it waits for a notification
//! ([`SubscriptionMachine::on_notified`]) or the poll interval, then fetches
//! again. Fetching runs ahead of the consumer into a bounded buffer (at most
//! [`SubscriptionPolicy::buffer_limit`] events), so a slow consumer slows its
//! subscription and memory does not grow.
//!
//! Like the command machine it never blocks, sleeps or reads a clock: inputs
//! carry `now`, timers are deadlines returned in [`SubscriptionStep::Wait`],
//! requests carry [`RequestId`]s and an answer to anything but the request in
//! flight is counted and ignored.
//!
//! Guarantees, whatever the driver and the store do:
//! - events reach the consumer in strictly increasing global order; an event
//!   at or below a position already handled is never delivered again in the
//!   same run (overlapping store pages are dropped and counted);
//! - the checkpoint requested is always a position through which every
//!   matching event has been handled or parked, so resuming from it never
//!   skips an event (at-least-once; exactly-once when the consumer commits
//!   the checkpoint with its own writes, [`CheckpointMode::WithBatch`]);
//! - a poison event is never dropped silently: it is retried, parked through
//!   [`SubscriptionStep::Park`] or it stops the subscription with its
//!   position and stream.

use crate::entropy::Entropy;
use crate::store::{EventFilter, Operation, ReadAllRequest, ReadAllResponse, StoreError};
use crate::{
    DecodeError, DecodeErrorKind, EventType, GlobalPosition, RecordedEvent, RequestId, RetryPolicy, StreamId,
    StreamVersion, Time,
};
use std::collections::VecDeque;
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

    fn effective_buffer_limit(&self) -> usize {
        self.buffer_limit.max(self.batch_size.get() as usize)
    }
}

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
    /// What went wrong.
    #[source]
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

/// Events handed to the consumer, in global order.
///
/// ```
/// use eventcore::{Batch, GlobalPosition, RequestId};
/// let b = Batch { id: RequestId::new(3), events: vec![], checkpoint: GlobalPosition::new(9) };
/// assert_eq!(b.last_position(), None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Correlates [`SubscriptionMachine::on_handled`] with this batch.
    pub id: RequestId,
    /// The events, strictly increasing in position.
    pub events: Vec<RecordedEvent>,
    /// Once this batch is handled, every matching event up to here has been
    /// handled: the position to save (at or above the last event's; above
    /// it when filtered-out or parked events follow).
    pub checkpoint: GlobalPosition,
}

impl Batch {
    /// Position of the last event.
    pub fn last_position(&self) -> Option<GlobalPosition> {
        self.events.last().map(|e| e.position)
    }
}

/// How a subscription ended.
///
/// ```
/// use eventcore::{SubscriptionError, StoreError, Operation};
/// let e = SubscriptionError::Store(StoreError::permanent(Operation::ReadAll, "no such table"));
/// assert!(e.to_string().contains("no such table"));
/// ```
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubscriptionError {
    /// A poison event whose policy says stop.
    #[error(transparent)]
    Poison(PoisonEvent),
    /// The store failed in a way that retrying cannot fix, or broke its
    /// contract.
    #[error("store error: {0}")]
    Store(StoreError),
    /// Transient store failures went on for `attempts` consecutive fetches.
    #[error("fetching gave up after {attempts} attempts; last error: {last}")]
    FetchRetriesExhausted {
        /// Consecutive failed fetches.
        attempts: u32,
        /// The last error.
        last: StoreError,
    },
    /// The consumer failed in a way that retrying cannot fix, or transient
    /// failures went on for `max_attempts` consecutive tries.
    #[error("consumer error after {attempts} attempts: {last}")]
    Consumer {
        /// Consecutive failed tries.
        attempts: u32,
        /// The last error.
        last: ConsumerError,
    },
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

/// What the driver should do next.
///
/// ```
/// use eventcore::*;
/// let mut sub = SubscriptionMachine::new(GlobalPosition::START, EventFilter::all(), SubscriptionPolicy::default(), Time::ZERO, 1);
/// match sub.poll() {
///     SubscriptionStep::Fetch { request, .. } => assert_eq!(request.after, GlobalPosition::START),
///     other => panic!("a new subscription fetches first, not {other:?}"),
/// }
/// ```
#[derive(Debug)]
pub enum SubscriptionStep {
    /// Read the global log and report the answer with
    /// [`SubscriptionMachine::on_fetched`].
    Fetch {
        /// Correlates the answer.
        id: RequestId,
        /// The read.
        request: ReadAllRequest,
    },
    /// Hand these events to the consumer and report with
    /// [`SubscriptionMachine::on_handled`].
    Deliver(Batch),
    /// Persist the checkpoint and report with
    /// [`SubscriptionMachine::on_checkpoint_saved`].
    SaveCheckpoint {
        /// Correlates the answer.
        id: RequestId,
        /// Every matching event up to here has been handled.
        position: GlobalPosition,
    },
    /// Store `event` in the dead-letter store and report with
    /// [`SubscriptionMachine::on_parked`].
    Park {
        /// Correlates the answer.
        id: RequestId,
        /// The event to park.
        event: RecordedEvent,
        /// Why it is poison.
        poison: PoisonEvent,
    },
    /// Nothing to start now. Call [`SubscriptionMachine::on_wake`] at
    /// `until` ([`Time::MAX`]: only an answer or a notification will do)
    /// unless an answer or a notification comes first.
    Wait {
        /// When to wake the machine.
        until: Time,
    },
    /// The subscription ended: `Ok` with the last saved checkpoint after a
    /// shutdown, or the error that stopped it. Returned exactly once.
    Stopped(Result<GlobalPosition, SubscriptionError>),
    /// The end was already returned.
    Finished,
}

/// Counters of what happened.
///
/// ```
/// use eventcore::*;
/// let sub = SubscriptionMachine::new(GlobalPosition::START, EventFilter::all(), SubscriptionPolicy::default(), Time::ZERO, 1);
/// assert_eq!(sub.stats(), &SubscriptionStats::default());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscriptionStats {
    /// Fetches emitted.
    pub fetches: u64,
    /// Batches handled successfully.
    pub batches: u64,
    /// Events handled successfully.
    pub events: u64,
    /// Checkpoints saved (by the machine's request or with a batch).
    pub checkpoints: u64,
    /// Events parked.
    pub parked: u64,
    /// Transient failures (fetch, consumer, checkpoint, park).
    pub transient_errors: u64,
    /// Poison failures reported.
    pub poison_failures: u64,
    /// Events a fetch returned at or below a position already fetched.
    pub duplicates_dropped: u64,
    /// Answers ignored because they were stale or duplicated.
    pub ignored_responses: u64,
    /// Most events ever buffered (fetched, not yet handled).
    pub max_buffered: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FetchPhase {
    Due,
    InFlight { id: RequestId, deadline: Time },
    Backoff { until: Time },
    CaughtUp { until: Time },
}

#[derive(Debug)]
enum ConsumerPhase {
    Idle,
    Delivering {
        id: RequestId,
        len: usize,
        checkpoint: GlobalPosition,
    },
    Saving {
        id: RequestId,
        position: GlobalPosition,
    },
    Parking {
        id: RequestId,
    },
    Backoff {
        until: Time,
    },
}

#[derive(Debug, Clone, Copy)]
struct Suspect {
    position: GlobalPosition,
    /// Failed tries of the event alone.
    attempts: u32,
    /// Not before this time.
    retry_at: Time,
}

/// One subscription to the global log. See the module docs for the flow.
///
/// ```
/// use eventcore::*;
/// # use std::sync::Arc;
/// # fn event(position: u64) -> RecordedEvent { RecordedEvent {
/// #     event_id: EventId::v7(Time::ZERO, [1; 10]), stream_id: StreamId::new("s").expect("valid"),
/// #     version: StreamVersion::new(position), position: GlobalPosition::new(position),
/// #     event_type: EventType::new("Ticked").expect("valid"), schema_version: 1,
/// #     payload: Payload::from_trusted_json("null"),
/// #     metadata: Arc::new(EventMetadata::new(CommandId::v7(Time::ZERO, [0; 10]), Time::ZERO)) } }
/// let now = Time::from_unix_millis(1);
/// let mut sub = SubscriptionMachine::new(GlobalPosition::START, EventFilter::all(), SubscriptionPolicy::default(), now, 7);
/// let SubscriptionStep::Fetch { id, request } = sub.poll() else { panic!("fetches first") };
/// assert_eq!(request.after, GlobalPosition::START);
/// sub.on_fetched(id, Ok(ReadAllResponse { events: vec![event(1), event(2)], complete_through: GlobalPosition::new(2) }), now);
/// let SubscriptionStep::Deliver(batch) = sub.poll() else { panic!("then delivers") };
/// assert_eq!(batch.events.len(), 2);
/// sub.on_handled(batch.id, Ok(()), now);
/// let SubscriptionStep::SaveCheckpoint { id, position } = sub.poll() else { panic!("then checkpoints") };
/// assert_eq!(position, GlobalPosition::new(2));
/// sub.on_checkpoint_saved(id, Ok(()), now);
/// assert!(sub.is_caught_up());
/// assert!(matches!(sub.poll(), SubscriptionStep::Wait { .. }));
/// ```
#[derive(Debug)]
pub struct SubscriptionMachine {
    policy: SubscriptionPolicy,
    filter: EventFilter,
    entropy: Entropy,
    now: Time,
    next_request: u64,
    /// Every matching event at or below this is buffered, handled or parked.
    fetched_through: GlobalPosition,
    /// The highest committed position the store announced.
    known_head: GlobalPosition,
    /// The highest position handled or parked.
    handled_through: GlobalPosition,
    /// The last checkpoint known to be saved.
    saved: GlobalPosition,
    buffer: VecDeque<RecordedEvent>,
    fetch: FetchPhase,
    /// A notification arrived while a fetch was in flight: fetch again even
    /// if the answer is short.
    notified_in_flight: bool,
    consumer: ConsumerPhase,
    /// A save decided on but not yet handed out by `poll`.
    pending_save: Option<(RequestId, GlobalPosition)>,
    /// A park decided on but not yet handed out by `poll`.
    pending_park: Option<(RequestId, PoisonEvent)>,
    suspect: Option<Suspect>,
    fetch_failures: u32,
    consumer_failures: u32,
    shutting_down: bool,
    outcome: Option<Result<GlobalPosition, SubscriptionError>>,
    finished: bool,
    stats: SubscriptionStats,
}

impl SubscriptionMachine {
    /// Starts a subscription that resumes after `checkpoint` (everything
    /// matching at or below it counts as handled). `seed` is the only source
    /// of the machine's randomness (backoff jitter).
    pub fn new(
        checkpoint: GlobalPosition,
        filter: EventFilter,
        policy: SubscriptionPolicy,
        now: Time,
        seed: u64,
    ) -> Self {
        SubscriptionMachine {
            policy,
            filter,
            entropy: Entropy::new(seed),
            now,
            next_request: 0,
            fetched_through: checkpoint,
            known_head: checkpoint,
            handled_through: checkpoint,
            saved: checkpoint,
            buffer: VecDeque::new(),
            fetch: FetchPhase::Due,
            notified_in_flight: false,
            consumer: ConsumerPhase::Idle,
            pending_save: None,
            pending_park: None,
            suspect: None,
            fetch_failures: 0,
            consumer_failures: 0,
            shutting_down: false,
            outcome: None,
            finished: false,
            stats: SubscriptionStats::default(),
        }
    }

    /// The last checkpoint known to be saved.
    pub fn checkpoint(&self) -> GlobalPosition {
        self.saved
    }

    /// The highest position handled or parked.
    pub fn handled_through(&self) -> GlobalPosition {
        self.handled_through
    }

    /// The filter the subscription reads with.
    pub fn filter(&self) -> &EventFilter {
        &self.filter
    }

    /// Counters so far.
    pub fn stats(&self) -> &SubscriptionStats {
        &self.stats
    }

    /// Events fetched but not yet handled.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// True when the last fetch came back short, everything fetched has been
    /// handled and the checkpoint is saved: the subscription is live and
    /// idle.
    pub fn is_caught_up(&self) -> bool {
        matches!(self.fetch, FetchPhase::CaughtUp { .. })
            && self.buffer.is_empty()
            && matches!(self.consumer, ConsumerPhase::Idle)
            && self.saved >= self.fetched_through
            && self.fetched_through >= self.known_head
            && !self.notified_in_flight
    }

    /// True once the end has been handed out by [`SubscriptionMachine::poll`].
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The next thing to do. Call it until it returns
    /// [`SubscriptionStep::Wait`]; each request is returned once.
    pub fn poll(&mut self) -> SubscriptionStep {
        if self.finished {
            return SubscriptionStep::Finished;
        }
        if let Some(outcome) = self.outcome.take() {
            self.finished = true;
            return SubscriptionStep::Stopped(outcome);
        }
        if let Some(step) = self.poll_consumer() {
            return step;
        }
        if self.shutting_down {
            if matches!(self.consumer, ConsumerPhase::Idle) {
                self.finished = true;
                return SubscriptionStep::Stopped(Ok(self.saved));
            }
            return SubscriptionStep::Wait {
                until: self.consumer_deadline().unwrap_or(Time::MAX),
            };
        }
        if let Some(step) = self.poll_fetch() {
            return step;
        }
        let until = [self.fetch_deadline(), self.consumer_deadline()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(Time::MAX);
        SubscriptionStep::Wait { until }
    }

    /// Reports the answer to a fetch. Answers to anything but the fetch in
    /// flight are ignored.
    pub fn on_fetched(&mut self, id: RequestId, result: Result<ReadAllResponse, StoreError>, now: Time) {
        self.observe(now);
        match self.fetch {
            FetchPhase::InFlight { id: pending, .. } if pending == id && !self.stopping() => {}
            _ => {
                self.stats.ignored_responses += 1;
                return;
            }
        }
        let response = match result {
            Ok(response) => response,
            Err(error) if error.is_retryable() => {
                self.fetch_failed(error);
                return;
            }
            Err(error) => {
                self.stop(SubscriptionError::Store(error));
                return;
            }
        };
        let after = self.fetched_through;
        if let Err(message) = self.check_response(after, &response) {
            self.stop(SubscriptionError::Store(StoreError::ContractViolation {
                operation: Operation::ReadAll,
                message,
            }));
            return;
        }
        self.fetch_failures = 0;
        let returned = response.events.len();
        for event in response.events {
            if event.position <= self.fetched_through {
                self.stats.duplicates_dropped += 1;
                continue;
            }
            self.fetched_through = event.position;
            self.buffer.push_back(event);
        }
        self.fetched_through = self.fetched_through.max(response.complete_through);
        self.stats.max_buffered = self.stats.max_buffered.max(self.buffer.len());
        let full = returned >= self.policy.batch_size.get() as usize;
        if full || std::mem::take(&mut self.notified_in_flight) {
            self.fetch = FetchPhase::Due;
        } else {
            let wait = if self.fetched_through < self.known_head {
                self.policy.held_back_retry
            } else {
                self.policy.poll_interval
            };
            self.fetch = FetchPhase::CaughtUp {
                until: self.now.saturating_add(wait),
            };
        }
    }

    /// Reports that the consumer handled (`Ok`) or failed the batch with
    /// this id. Answers to anything but the batch in flight are ignored.
    pub fn on_handled(&mut self, id: RequestId, result: Result<(), HandleError>, now: Time) {
        self.observe(now);
        let (len, checkpoint) = match self.consumer {
            ConsumerPhase::Delivering {
                id: pending,
                len,
                checkpoint,
            } if pending == id && self.outcome.is_none() => (len, checkpoint),
            _ => {
                self.stats.ignored_responses += 1;
                return;
            }
        };
        self.consumer = ConsumerPhase::Idle;
        match result {
            Ok(()) => {
                let len = len.min(self.buffer.len());
                for event in self.buffer.drain(..len) {
                    self.handled_through = event.position;
                }
                if self.suspect.is_some_and(|s| s.position <= self.handled_through) {
                    self.suspect = None;
                }
                self.consumer_failures = 0;
                self.stats.batches += 1;
                self.stats.events += len as u64;
                match self.policy.checkpoint {
                    CheckpointMode::WithBatch => {
                        self.saved = self.saved.max(checkpoint);
                        self.stats.checkpoints += 1;
                    }
                    CheckpointMode::AfterBatch => {
                        let id = self.new_request_id();
                        self.consumer = ConsumerPhase::Saving {
                            id,
                            position: checkpoint,
                        };
                        self.pending_save = Some((id, checkpoint));
                    }
                }
            }
            Err(HandleError::Consumer(error)) => self.consumer_failed(error),
            Err(HandleError::Poison(poison)) => self.poisoned(poison, len),
        }
    }

    /// Reports the outcome of a checkpoint save.
    pub fn on_checkpoint_saved(&mut self, id: RequestId, result: Result<(), ConsumerError>, now: Time) {
        self.observe(now);
        let position = match self.consumer {
            ConsumerPhase::Saving { id: pending, position } if pending == id && self.outcome.is_none() => position,
            _ => {
                self.stats.ignored_responses += 1;
                return;
            }
        };
        self.consumer = ConsumerPhase::Idle;
        match result {
            Ok(()) => {
                self.consumer_failures = 0;
                self.saved = self.saved.max(position);
                self.stats.checkpoints += 1;
            }
            Err(error) => self.consumer_failed(error),
        }
    }

    /// Reports the outcome of parking the poison event.
    pub fn on_parked(&mut self, id: RequestId, result: Result<(), ConsumerError>, now: Time) {
        self.observe(now);
        match self.consumer {
            ConsumerPhase::Parking { id: pending } if pending == id && self.outcome.is_none() => {}
            _ => {
                self.stats.ignored_responses += 1;
                return;
            }
        }
        self.consumer = ConsumerPhase::Idle;
        match result {
            Ok(()) => {
                self.consumer_failures = 0;
                if let Some(event) = self.buffer.pop_front() {
                    self.handled_through = event.position;
                }
                self.suspect = None;
                self.stats.parked += 1;
            }
            Err(error) => self.consumer_failed(error),
        }
    }

    /// New events may exist (a store notification): fetch now if caught up,
    /// or again after the fetch in flight.
    pub fn on_notified(&mut self, now: Time) {
        self.observe(now);
        match self.fetch {
            FetchPhase::CaughtUp { .. } => self.fetch = FetchPhase::Due,
            FetchPhase::InFlight { .. } => self.notified_in_flight = true,
            FetchPhase::Due | FetchPhase::Backoff { .. } => {}
        }
    }

    /// The store announced that events up to `head` have committed (a
    /// notification carrying a position): like
    /// [`SubscriptionMachine::on_notified`], and until the subscription has
    /// fetched through `head` it is not caught up — a short answer below it
    /// (events held back by an older transaction still in flight) is
    /// retried after [`SubscriptionPolicy::held_back_retry`].
    pub fn on_head(&mut self, head: GlobalPosition, now: Time) {
        self.known_head = self.known_head.max(head);
        self.on_notified(now);
    }

    /// Wakes the machine at or after the deadline it asked for. Waking early
    /// is harmless.
    pub fn on_wake(&mut self, now: Time) {
        self.observe(now);
        if self.stopping() {
            return;
        }
        match self.fetch {
            FetchPhase::CaughtUp { until } | FetchPhase::Backoff { until } if now >= until => {
                self.fetch = FetchPhase::Due;
            }
            FetchPhase::InFlight { deadline, .. } if now >= deadline => {
                self.fetch_failed(StoreError::Timeout {
                    operation: Operation::ReadAll,
                    after: self.policy.fetch_timeout,
                });
            }
            _ => {}
        }
        if let ConsumerPhase::Backoff { until } = self.consumer {
            if now >= until {
                self.consumer = ConsumerPhase::Idle;
            }
        }
    }

    /// Starts a graceful shutdown: nothing new is fetched or delivered; the
    /// batch in flight may finish, then the checkpoint is saved and the
    /// machine stops with `Ok(checkpoint)`.
    pub fn on_shutdown(&mut self, now: Time) {
        self.observe(now);
        self.shutting_down = true;
        if let ConsumerPhase::Backoff { .. } = self.consumer {
            self.consumer = ConsumerPhase::Idle;
        }
    }

    fn stopping(&self) -> bool {
        self.outcome.is_some() || self.finished
    }

    fn observe(&mut self, now: Time) {
        self.now = self.now.max(now);
    }

    fn new_request_id(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId::new(self.next_request)
    }

    fn stop(&mut self, error: SubscriptionError) {
        if self.outcome.is_none() && !self.finished {
            self.outcome = Some(Err(error));
        }
    }

    /// Every matching event up to the returned position is handled or
    /// parked (nothing unhandled is buffered below it).
    fn safe_through(&self) -> GlobalPosition {
        match self.buffer.front() {
            Some(first) => GlobalPosition::new(first.position.get().saturating_sub(1)).max(self.handled_through),
            None => self.fetched_through,
        }
    }

    fn backoff(&mut self, failures: u32) -> Time {
        let ceiling = self.policy.retry.backoff_ceiling(failures);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        self.now.saturating_add(Duration::from_nanos(self.entropy.up_to(nanos)))
    }

    fn fetch_failed(&mut self, error: StoreError) {
        self.stats.transient_errors += 1;
        self.fetch_failures = self.fetch_failures.saturating_add(1);
        if self.fetch_failures >= self.policy.retry.max_attempts.max(1) {
            self.stop(SubscriptionError::FetchRetriesExhausted {
                attempts: self.fetch_failures,
                last: error,
            });
            return;
        }
        let until = self.backoff(self.fetch_failures);
        self.fetch = FetchPhase::Backoff { until };
    }

    fn consumer_failed(&mut self, error: ConsumerError) {
        self.consumer_failures = self.consumer_failures.saturating_add(1);
        if !error.is_retryable() || self.consumer_failures >= self.policy.retry.max_attempts.max(1) {
            self.stop(SubscriptionError::Consumer {
                attempts: self.consumer_failures,
                last: error,
            });
            return;
        }
        self.stats.transient_errors += 1;
        let until = self.backoff(self.consumer_failures);
        self.consumer = ConsumerPhase::Backoff { until };
    }

    fn poisoned(&mut self, poison: PoisonEvent, len: usize) {
        self.stats.poison_failures += 1;
        let len = len.min(self.buffer.len());
        let index = self.buffer.iter().take(len).position(|e| e.position == poison.position);
        let Some(index) = index else {
            // The consumer blamed an event that is not in the batch: a bug
            // in the consumer. Blame the batch's first event instead of
            // guessing, so nothing is skipped.
            let blamed = match self.buffer.front() {
                Some(first) => PoisonEvent {
                    position: first.position,
                    stream: first.stream_id.clone(),
                    version: first.version,
                    event_type: first.event_type.clone(),
                    cause: poison.cause,
                },
                None => poison,
            };
            self.stop(SubscriptionError::Poison(blamed));
            return;
        };
        if index > 0 || len > 1 {
            // Isolate: the events before it go again as their own batch,
            // then the event alone. This failure does not count.
            self.suspect = Some(Suspect {
                position: poison.position,
                attempts: 0,
                retry_at: self.now,
            });
            return;
        }
        let attempts = match self.suspect {
            Some(s) if s.position == poison.position => s.attempts + 1,
            _ => 1,
        };
        if attempts < self.policy.poison.attempts.max(1) {
            let retry_at = self.backoff(attempts);
            self.suspect = Some(Suspect {
                position: poison.position,
                attempts,
                retry_at,
            });
            return;
        }
        match self.policy.poison.then {
            PoisonAction::Stop => self.stop(SubscriptionError::Poison(poison)),
            PoisonAction::Park => {
                let id = self.new_request_id();
                self.consumer = ConsumerPhase::Parking { id };
                self.pending_park = Some((id, poison));
            }
        }
    }

    fn check_response(&self, after: GlobalPosition, response: &ReadAllResponse) -> Result<(), String> {
        if response.complete_through < after {
            return Err(format!(
                "complete_through {} is below the requested position {after}",
                response.complete_through
            ));
        }
        if response.events.len() > self.policy.batch_size.get() as usize {
            return Err(format!(
                "asked for at most {} events, got {}",
                self.policy.batch_size,
                response.events.len()
            ));
        }
        let mut previous: Option<GlobalPosition> = None;
        for event in &response.events {
            if previous.is_some_and(|p| event.position <= p) {
                return Err(format!("positions not increasing at {}", event.position));
            }
            if event.position > response.complete_through {
                return Err(format!(
                    "event at {} is beyond complete_through {}",
                    event.position, response.complete_through
                ));
            }
            if !self.filter.matches(event) {
                return Err(format!(
                    "event {}@{} (position {}) does not match the filter",
                    event.stream_id, event.version, event.position
                ));
            }
            previous = Some(event.position);
        }
        Ok(())
    }

    fn poll_consumer(&mut self) -> Option<SubscriptionStep> {
        if let Some((id, position)) = self.pending_save.take() {
            return Some(SubscriptionStep::SaveCheckpoint { id, position });
        }
        if let Some((id, poison)) = self.pending_park.take() {
            let event = self.buffer.front().cloned()?;
            return Some(SubscriptionStep::Park { id, event, poison });
        }
        if !matches!(self.consumer, ConsumerPhase::Idle) {
            return None;
        }
        if !self.shutting_down {
            if let Some(batch) = self.next_batch() {
                return Some(SubscriptionStep::Deliver(batch));
            }
        }
        // Nothing to deliver now: save the checkpoint if it is behind and
        // either the subscription is idle (caught up, or waiting on a
        // poison retry) or it is shutting down.
        let safe = self.safe_through();
        let idle = self.shutting_down || self.buffer.is_empty() && matches!(self.fetch, FetchPhase::CaughtUp { .. });
        if safe > self.saved && idle {
            let id = self.new_request_id();
            self.consumer = ConsumerPhase::Saving { id, position: safe };
            return Some(SubscriptionStep::SaveCheckpoint { id, position: safe });
        }
        None
    }

    fn next_batch(&mut self) -> Option<Batch> {
        let first = self.buffer.front()?;
        let max = self.policy.batch_size.get() as usize;
        let len = match self.suspect {
            Some(s) if first.position == s.position => {
                if self.now < s.retry_at {
                    return None;
                }
                1
            }
            Some(s) if first.position < s.position => self
                .buffer
                .iter()
                .take(max)
                .take_while(|e| e.position < s.position)
                .count(),
            _ => self.buffer.len().min(max),
        };
        let events: Vec<RecordedEvent> = self.buffer.iter().take(len).cloned().collect();
        debug_assert!(events.first().is_some_and(|e| e.position > self.handled_through));
        let checkpoint = match self.buffer.get(len) {
            Some(next) => GlobalPosition::new(next.position.get().saturating_sub(1)),
            None => self.fetched_through,
        };
        let id = self.new_request_id();
        self.consumer = ConsumerPhase::Delivering { id, len, checkpoint };
        Some(Batch { id, events, checkpoint })
    }

    fn poll_fetch(&mut self) -> Option<SubscriptionStep> {
        if self.fetch != FetchPhase::Due {
            return None;
        }
        let room = self.policy.effective_buffer_limit().saturating_sub(self.buffer.len());
        if room < self.policy.batch_size.get() as usize {
            return None;
        }
        let id = self.new_request_id();
        let deadline = self.now.saturating_add(self.policy.fetch_timeout);
        self.fetch = FetchPhase::InFlight { id, deadline };
        self.stats.fetches += 1;
        Some(SubscriptionStep::Fetch {
            id,
            request: ReadAllRequest {
                after: self.fetched_through,
                limit: self.policy.batch_size,
                filter: self.filter.clone(),
            },
        })
    }

    fn fetch_deadline(&self) -> Option<Time> {
        match self.fetch {
            FetchPhase::InFlight { deadline, .. } => Some(deadline),
            FetchPhase::Backoff { until } | FetchPhase::CaughtUp { until } => Some(until),
            FetchPhase::Due => None,
        }
    }

    fn consumer_deadline(&self) -> Option<Time> {
        match self.consumer {
            ConsumerPhase::Backoff { until } => Some(until),
            ConsumerPhase::Idle => match (self.suspect, self.buffer.front()) {
                (Some(s), Some(first)) if first.position == s.position && s.retry_at > self.now => Some(s.retry_at),
                _ => None,
            },
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CommandId, EventId, EventMetadata, Payload};
    use std::sync::Arc;

    const T0: Time = Time::from_unix_millis(1_000);

    fn event(position: u64, stream: &str) -> RecordedEvent {
        RecordedEvent {
            event_id: EventId::v7(T0, [position as u8; 10]),
            stream_id: StreamId::new(stream).expect("valid stream"),
            version: StreamVersion::new(position),
            position: GlobalPosition::new(position),
            event_type: EventType::new("Ticked").expect("valid type"),
            schema_version: 1,
            payload: Payload::from_trusted_json("null"),
            metadata: Arc::new(EventMetadata::new(CommandId::v7(T0, [0; 10]), T0)),
        }
    }

    fn events(positions: impl IntoIterator<Item = u64>) -> Vec<RecordedEvent> {
        positions.into_iter().map(|p| event(p, "s")).collect()
    }

    fn policy(batch: u32) -> SubscriptionPolicy {
        SubscriptionPolicy::default()
            .with_batch_size(NonZeroU32::new(batch).expect("non-zero"))
            .with_poll_interval(Duration::from_secs(1))
    }

    fn machine(batch: u32) -> SubscriptionMachine {
        SubscriptionMachine::new(GlobalPosition::START, EventFilter::all(), policy(batch), T0, 1)
    }

    fn pos(p: u64) -> GlobalPosition {
        GlobalPosition::new(p)
    }

    fn expect_fetch(m: &mut SubscriptionMachine) -> (RequestId, ReadAllRequest) {
        match m.poll() {
            SubscriptionStep::Fetch { id, request } => (id, request),
            other => panic!("expected a fetch, got {other:?}"),
        }
    }

    fn expect_deliver(m: &mut SubscriptionMachine) -> Batch {
        match m.poll() {
            SubscriptionStep::Deliver(batch) => batch,
            other => panic!("expected a delivery, got {other:?}"),
        }
    }

    fn expect_save(m: &mut SubscriptionMachine) -> (RequestId, GlobalPosition) {
        match m.poll() {
            SubscriptionStep::SaveCheckpoint { id, position } => (id, position),
            other => panic!("expected a checkpoint save, got {other:?}"),
        }
    }

    fn expect_wait(m: &mut SubscriptionMachine) -> Time {
        match m.poll() {
            SubscriptionStep::Wait { until } => until,
            other => panic!("expected a wait, got {other:?}"),
        }
    }

    fn answer(m: &mut SubscriptionMachine, id: RequestId, events: Vec<RecordedEvent>, through: u64) {
        m.on_fetched(
            id,
            Ok(ReadAllResponse {
                events,
                complete_through: pos(through),
            }),
            T0,
        );
    }

    fn positions(batch: &Batch) -> Vec<u64> {
        batch.events.iter().map(|e| e.position.get()).collect()
    }

    /// Handles every batch and saves every checkpoint until the machine
    /// waits; returns the positions delivered.
    fn drain(m: &mut SubscriptionMachine) -> Vec<u64> {
        let mut seen = Vec::new();
        loop {
            match m.poll() {
                SubscriptionStep::Deliver(batch) => {
                    seen.extend(positions(&batch));
                    m.on_handled(batch.id, Ok(()), T0);
                }
                SubscriptionStep::SaveCheckpoint { id, .. } => m.on_checkpoint_saved(id, Ok(()), T0),
                SubscriptionStep::Wait { .. } => return seen,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn a_full_batch_fetches_again_and_a_short_one_means_caught_up() {
        let mut m = machine(2);
        let (id, request) = expect_fetch(&mut m);
        assert_eq!((request.after, request.limit.get()), (pos(0), 2));
        answer(&mut m, id, events([1, 2]), 2);
        let first = expect_deliver(&mut m);
        let (id, request) = expect_fetch(&mut m);
        assert_eq!(
            request.after,
            pos(2),
            "full batch: more may exist, fetched while the consumer works"
        );
        answer(&mut m, id, events([3]), 3);
        m.on_handled(first.id, Ok(()), T0);
        let mut seen = positions(&first);
        seen.extend(drain(&mut m));
        assert_eq!(seen, vec![1, 2, 3]);
        assert!(m.is_caught_up());
        assert_eq!(m.checkpoint(), pos(3));
        assert_eq!(expect_wait(&mut m), T0.saturating_add(Duration::from_secs(1)));
    }

    #[test]
    fn caught_up_it_fetches_on_notification_or_at_the_poll_interval() {
        let mut m = machine(10);
        let (id, _) = expect_fetch(&mut m);
        answer(&mut m, id, vec![], 0);
        let until = expect_wait(&mut m);
        m.on_notified(T0);
        let (id, request) = expect_fetch(&mut m);
        assert_eq!(request.after, pos(0));
        answer(&mut m, id, vec![], 0);
        expect_wait(&mut m);
        m.on_wake(until);
        expect_fetch(&mut m);
    }

    #[test]
    fn a_notification_during_a_fetch_fetches_again_even_after_a_short_answer() {
        let mut m = machine(10);
        let (id, _) = expect_fetch(&mut m);
        m.on_notified(T0);
        answer(&mut m, id, events([1]), 1);
        let batch = expect_deliver(&mut m);
        m.on_handled(batch.id, Ok(()), T0);
        let (save, _) = expect_save(&mut m);
        m.on_checkpoint_saved(save, Ok(()), T0);
        let (_, request) = expect_fetch(&mut m);
        assert_eq!(request.after, pos(1));
    }

    #[test]
    fn an_answer_held_back_below_the_announced_head_is_retried_soon_and_is_not_caught_up() {
        let mut m = machine(10);
        m.on_head(pos(5), T0);
        let (id, _) = expect_fetch(&mut m);
        // An older transaction still runs: the store answers only up to 3.
        answer(&mut m, id, events([1, 2]), 3);
        assert_eq!(drain(&mut m), vec![1, 2]);
        assert!(!m.is_caught_up(), "5 was announced, only 3 is final");
        let until = expect_wait(&mut m);
        assert_eq!(until, T0.saturating_add(m.policy.held_back_retry));
        m.on_wake(until);
        let (id, request) = expect_fetch(&mut m);
        assert_eq!(request.after, pos(3));
        answer(&mut m, id, events([4, 5]), 5);
        assert_eq!(drain(&mut m), vec![4, 5]);
        assert!(m.is_caught_up());
    }

    #[test]
    fn filtered_out_events_move_the_checkpoint_through_complete_through() {
        let filter = EventFilter::all().with_stream_prefix("acc-");
        let mut m = SubscriptionMachine::new(pos(0), filter, policy(10), T0, 1);
        let (id, request) = expect_fetch(&mut m);
        assert_eq!(request.filter.stream_prefix.as_deref(), Some("acc-"));
        m.on_fetched(
            id,
            Ok(ReadAllResponse {
                events: vec![event(4, "acc-1")],
                complete_through: pos(9),
            }),
            T0,
        );
        let batch = expect_deliver(&mut m);
        assert_eq!(batch.checkpoint, pos(9), "nothing else matches up to 9");
        m.on_handled(batch.id, Ok(()), T0);
        assert_eq!(expect_save(&mut m).1, pos(9));
    }

    #[test]
    fn an_empty_answer_still_saves_the_checkpoint_once_caught_up() {
        let mut m = machine(10);
        let (id, _) = expect_fetch(&mut m);
        answer(&mut m, id, vec![], 42);
        let (id, position) = expect_save(&mut m);
        assert_eq!(position, pos(42));
        m.on_checkpoint_saved(id, Ok(()), T0);
        assert!(m.is_caught_up());
    }

    #[test]
    fn overlapping_pages_are_dropped_never_delivered_twice() {
        let mut m = machine(3);
        let (id, _) = expect_fetch(&mut m);
        answer(&mut m, id, events([1, 2, 3]), 3);
        let first = expect_deliver(&mut m);
        let (id, request) = expect_fetch(&mut m);
        assert_eq!(request.after, pos(3));
        // A misbehaving page that repeats old events: they are dropped.
        answer(&mut m, id, events([2, 3, 4]), 4);
        assert_eq!(m.stats().duplicates_dropped, 2);
        let (id, _) = expect_fetch(&mut m);
        answer(&mut m, id, vec![], 4);
        m.on_handled(first.id, Ok(()), T0);
        let mut seen = positions(&first);
        seen.extend(drain(&mut m));
        assert_eq!(seen, vec![1, 2, 3, 4]);
    }

    #[test]
    fn an_answer_that_breaks_the_contract_stops_the_subscription() {
        let mut m = machine(3);
        let (id, _) = expect_fetch(&mut m);
        answer(&mut m, id, events([2, 1]), 2);
        match m.poll() {
            SubscriptionStep::Stopped(Err(SubscriptionError::Store(StoreError::ContractViolation { .. }))) => {}
            other => panic!("expected a contract violation, got {other:?}"),
        }
        assert!(matches!(m.poll(), SubscriptionStep::Finished));
    }

    #[test]
    fn stale_answers_are_ignored() {
        let mut m = machine(3);
        let (id, _) = expect_fetch(&mut m);
        m.on_fetched(
            RequestId::new(99),
            Ok(ReadAllResponse {
                events: events([1]),
                complete_through: pos(1),
            }),
            T0,
        );
        m.on_handled(RequestId::new(98), Ok(()), T0);
        assert_eq!(m.stats().ignored_responses, 2);
        answer(&mut m, id, events([1]), 1);
        m.on_fetched(
            id,
            Ok(ReadAllResponse {
                events: events([1]),
                complete_through: pos(1),
            }),
            T0,
        );
        assert_eq!(m.stats().ignored_responses, 3);
        assert_eq!(drain(&mut m), vec![1]);
    }

    #[test]
    fn transient_fetch_errors_back_off_then_retry_from_the_same_position() {
        let mut m = machine(3);
        let (id, _) = expect_fetch(&mut m);
        m.on_fetched(
            id,
            Err(StoreError::transient(Operation::ReadAll, "connection reset")),
            T0,
        );
        let until = expect_wait(&mut m);
        assert!(until <= T0.saturating_add(m.policy.retry.initial_backoff));
        m.on_wake(until);
        let (_, request) = expect_fetch(&mut m);
        assert_eq!(request.after, pos(0));
        assert_eq!(m.stats().transient_errors, 1);
    }

    #[test]
    fn a_fetch_without_answer_times_out_and_is_retried() {
        let mut m = machine(3);
        let (id, _) = expect_fetch(&mut m);
        let deadline = expect_wait(&mut m);
        assert_eq!(deadline, T0.saturating_add(m.policy.fetch_timeout));
        m.on_wake(deadline);
        let until = expect_wait(&mut m);
        m.on_wake(until);
        let (retry, _) = expect_fetch(&mut m);
        assert_ne!(retry, id);
        m.on_fetched(
            id,
            Ok(ReadAllResponse {
                events: events([1]),
                complete_through: pos(1),
            }),
            T0,
        );
        assert_eq!(m.stats().ignored_responses, 1, "the late answer is stale");
    }

    #[test]
    fn permanent_store_errors_stop_the_subscription() {
        let mut m = machine(3);
        let (id, _) = expect_fetch(&mut m);
        m.on_fetched(
            id,
            Err(StoreError::permanent(Operation::ReadAll, "permission denied")),
            T0,
        );
        assert!(matches!(
            m.poll(),
            SubscriptionStep::Stopped(Err(SubscriptionError::Store(_)))
        ));
    }

    #[test]
    fn fetching_runs_ahead_of_the_consumer_only_up_to_the_buffer_limit() {
        let mut m = SubscriptionMachine::new(pos(0), EventFilter::all(), policy(2).with_buffer_limit(4), T0, 1);
        let (id, _) = expect_fetch(&mut m);
        answer(&mut m, id, events([1, 2]), 2);
        let batch = expect_deliver(&mut m);
        let (id, _) = expect_fetch(&mut m);
        answer(&mut m, id, events([3, 4]), 4);
        // Four buffered (two in delivery): no room for another full batch.
        expect_wait(&mut m);
        assert_eq!(m.buffered(), 4);
        m.on_handled(batch.id, Ok(()), T0);
        let (save, _) = expect_save(&mut m);
        m.on_checkpoint_saved(save, Ok(()), T0);
        let next = expect_deliver(&mut m);
        assert_eq!(positions(&next), vec![3, 4]);
        let (_, request) = expect_fetch(&mut m);
        assert_eq!(request.after, pos(4));
        assert_eq!(m.stats().max_buffered, 4);
    }

    #[test]
    fn a_transient_handler_failure_redelivers_the_same_batch_after_backoff() {
        let mut m = machine(3);
        let (id, _) = expect_fetch(&mut m);
        answer(&mut m, id, events([1, 2]), 2);
        let batch = expect_deliver(&mut m);
        m.on_handled(batch.id, Err(ConsumerError::Transient("db down".into()).into()), T0);
        let until = expect_wait(&mut m);
        m.on_wake(until);
        let again = expect_deliver(&mut m);
        assert_eq!(positions(&again), vec![1, 2]);
        assert_ne!(again.id, batch.id);
    }

    #[test]
    fn a_fenced_consumer_stops_the_subscription() {
        let mut m = machine(3);
        let (id, _) = expect_fetch(&mut m);
        answer(&mut m, id, events([1]), 1);
        let batch = expect_deliver(&mut m);
        m.on_handled(batch.id, Ok(()), T0);
        let (save, _) = expect_save(&mut m);
        m.on_checkpoint_saved(save, Err(ConsumerError::Fenced("token 1 < 2".into())), T0);
        match m.poll() {
            SubscriptionStep::Stopped(Err(e)) => assert!(e.is_fenced()),
            other => panic!("expected fenced, got {other:?}"),
        }
    }

    fn poison_machine(policy_: PoisonPolicy) -> SubscriptionMachine {
        let mut m = SubscriptionMachine::new(pos(0), EventFilter::all(), policy(5).with_poison(policy_), T0, 1);
        let (id, _) = expect_fetch(&mut m);
        answer(&mut m, id, events([1, 2, 3]), 3);
        m
    }

    #[test]
    fn a_poison_event_is_isolated_then_parked_and_the_rest_continues() {
        let mut m = poison_machine(PoisonPolicy::park());
        let batch = expect_deliver(&mut m);
        let poison = PoisonEvent::handler(&batch.events[1], "bad amount");
        m.on_handled(batch.id, Err(poison.clone().into()), T0);
        // The events before it go again as their own batch ...
        let before = expect_deliver(&mut m);
        assert_eq!(positions(&before), vec![1]);
        assert_eq!(before.checkpoint, pos(1));
        m.on_handled(before.id, Ok(()), T0);
        let (save, at) = expect_save(&mut m);
        assert_eq!(at, pos(1));
        m.on_checkpoint_saved(save, Ok(()), T0);
        // ... then the event alone, which fails again and is parked.
        let alone = expect_deliver(&mut m);
        assert_eq!(positions(&alone), vec![2]);
        m.on_handled(alone.id, Err(poison.clone().into()), T0);
        let SubscriptionStep::Park {
            id,
            event,
            poison: parked,
        } = m.poll()
        else {
            panic!("expected a park");
        };
        assert_eq!(event.position, pos(2));
        assert_eq!(parked.stream.as_str(), "s");
        m.on_parked(id, Ok(()), T0);
        let rest = expect_deliver(&mut m);
        assert_eq!(positions(&rest), vec![3]);
        m.on_handled(rest.id, Ok(()), T0);
        assert_eq!(expect_save(&mut m).1, pos(3));
        assert_eq!(m.stats().parked, 1);
    }

    #[test]
    fn a_poison_event_under_the_stop_policy_stops_with_its_position_and_stream() {
        let mut m = poison_machine(PoisonPolicy::stop());
        let batch = expect_deliver(&mut m);
        let poison = PoisonEvent::handler(&batch.events[0], "nope");
        m.on_handled(batch.id, Err(poison.clone().into()), T0);
        let alone = expect_deliver(&mut m);
        assert_eq!(positions(&alone), vec![1], "isolated first");
        m.on_handled(alone.id, Err(poison.into()), T0);
        match m.poll() {
            SubscriptionStep::Stopped(Err(SubscriptionError::Poison(p))) => {
                assert_eq!((p.position, p.stream.as_str()), (pos(1), "s"));
            }
            other => panic!("expected a poison stop, got {other:?}"),
        }
    }

    #[test]
    fn a_poison_event_is_retried_alone_with_backoff_before_the_policy_gives_up() {
        let mut m = poison_machine(PoisonPolicy::retry(3, PoisonAction::Stop));
        let batch = expect_deliver(&mut m);
        let poison = PoisonEvent::handler(&batch.events[0], "flaky");
        m.on_handled(batch.id, Err(poison.clone().into()), T0);
        let alone = expect_deliver(&mut m);
        m.on_handled(alone.id, Err(poison.clone().into()), T0);
        // Backing off: nothing to deliver until the retry time.
        let until = expect_wait(&mut m);
        assert!(
            until <= T0.saturating_add(Duration::from_millis(10)),
            "first retry within the initial backoff"
        );
        m.on_wake(until);
        let second = expect_deliver(&mut m);
        assert_eq!(positions(&second), vec![1]);
        m.on_handled(second.id, Ok(()), T0);
        let (save, _) = expect_save(&mut m);
        m.on_checkpoint_saved(save, Ok(()), T0);
        assert_eq!(positions(&expect_deliver(&mut m)), vec![2, 3]);
    }

    #[test]
    fn a_decode_failure_is_poison_with_its_location() {
        let e = event(7, "acc-9");
        let decode = DecodeError::at(&e, DecodeErrorKind::UnknownEventType);
        let poison = PoisonEvent::from(decode);
        assert_eq!((poison.position, poison.stream.as_str()), (pos(7), "acc-9"));
        assert_eq!(poison.cause, PoisonCause::Decode(DecodeErrorKind::UnknownEventType));
    }

    #[test]
    fn with_batch_checkpoints_the_consumer_commits_and_no_save_is_asked() {
        let p = policy(2).with_checkpoint_mode(CheckpointMode::WithBatch);
        let mut m = SubscriptionMachine::new(pos(0), EventFilter::all(), p, T0, 1);
        let (id, _) = expect_fetch(&mut m);
        answer(&mut m, id, events([1, 2]), 2);
        let batch = expect_deliver(&mut m);
        m.on_handled(batch.id, Ok(()), T0);
        assert_eq!(m.checkpoint(), pos(2));
        let (id, _) = expect_fetch(&mut m);
        answer(&mut m, id, vec![], 2);
        expect_wait(&mut m);
        assert!(m.is_caught_up());
    }

    #[test]
    fn shutdown_lets_the_batch_in_flight_finish_then_saves_and_stops() {
        let mut m = machine(2);
        let (id, _) = expect_fetch(&mut m);
        answer(&mut m, id, events([1, 2]), 2);
        let batch = expect_deliver(&mut m);
        expect_fetch(&mut m);
        m.on_shutdown(T0);
        assert_eq!(expect_wait(&mut m), Time::MAX, "waits for the batch in flight");
        m.on_handled(batch.id, Ok(()), T0);
        let (save, position) = expect_save(&mut m);
        assert_eq!(position, pos(2));
        m.on_checkpoint_saved(save, Ok(()), T0);
        match m.poll() {
            SubscriptionStep::Stopped(Ok(checkpoint)) => assert_eq!(checkpoint, pos(2)),
            other => panic!("expected a clean stop, got {other:?}"),
        }
    }

    #[test]
    fn resuming_from_a_checkpoint_fetches_after_it() {
        let mut m = SubscriptionMachine::new(pos(17), EventFilter::all(), policy(4), T0, 1);
        let (_, request) = expect_fetch(&mut m);
        assert_eq!(request.after, pos(17));
        assert_eq!(m.checkpoint(), pos(17));
    }
}
