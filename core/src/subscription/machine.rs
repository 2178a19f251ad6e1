//! The subscription machine's state, its constructor and accessors, `poll`,
//! and the inputs that are about neither fetching nor consuming
//! (notifications, wakes, shutdown).

use super::consumer::ConsumerPhase;
use super::fetch::FetchPhase;
use super::poison::Suspect;
use super::{PoisonEvent, SubscriptionError, SubscriptionPolicy, SubscriptionStats, SubscriptionStep};
use crate::entropy::Entropy;
use crate::store::{EventFilter, Operation, RemovedRange, StoreError};
use crate::{GlobalPosition, RecordedEvent, RequestId, RequestIds, Time};
use std::collections::VecDeque;

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
/// let SubscriptionStep::Fetch { id, request, .. } = sub.poll() else { panic!("fetches first") };
/// assert_eq!(request.after, GlobalPosition::START);
/// sub.on_fetched(id, Ok(ReadAllResponse { events: vec![event(1), event(2)], complete_through: GlobalPosition::new(2), removed: vec![] }), now);
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
    pub(super) policy: SubscriptionPolicy,
    pub(super) filter: EventFilter,
    pub(super) entropy: Entropy,
    pub(super) now: Time,
    pub(super) request_ids: RequestIds,
    /// Every matching event at or below this is buffered, handled or parked.
    pub(super) fetched_through: GlobalPosition,
    /// The highest committed position the store announced.
    pub(super) known_head: GlobalPosition,
    /// The highest position handled or parked.
    pub(super) handled_through: GlobalPosition,
    /// The last checkpoint known to be saved.
    pub(super) saved: GlobalPosition,
    pub(super) buffer: VecDeque<RecordedEvent>,
    pub(super) fetch: FetchPhase,
    /// A notification arrived while a fetch was in flight: fetch again even
    /// if the answer is short.
    pub(super) notified_in_flight: bool,
    pub(super) consumer: ConsumerPhase,
    /// A save decided on but not yet handed out by `poll`.
    pub(super) pending_save: Option<(RequestId, GlobalPosition)>,
    /// A park decided on but not yet handed out by `poll`.
    pub(super) pending_park: Option<(RequestId, PoisonEvent)>,
    pub(super) suspect: Option<Suspect>,
    pub(super) fetch_failures: u32,
    pub(super) consumer_failures: u32,
    pub(super) shutting_down: bool,
    pub(super) outcome: Option<Result<GlobalPosition, SubscriptionError>>,
    pub(super) finished: bool,
    pub(super) stats: SubscriptionStats,
    /// Removed ranges skipped and not yet taken by the driver
    /// ([`SubscriptionMachine::take_skipped`]); at most
    /// [`SKIPPED_KEPT`] are kept, the counts in the stats are exact.
    pub(super) skipped: Vec<RemovedRange>,
}

/// The most skipped ranges a machine keeps for its driver to take; a driver
/// that never takes them costs no more memory than this.
pub(super) const SKIPPED_KEPT: usize = 1_024;

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
            request_ids: RequestIds::default(),
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
            skipped: Vec::new(),
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

    /// Takes the ranges a retention run removed that the subscription moved
    /// past since the last call, so the driver can say so (a log line, a
    /// metric). The subscription skips them on its own: positions do not
    /// change and the checkpoint moves over them like over filtered-out
    /// events. [`SubscriptionStats::removed_ranges_skipped`] counts them
    /// all, taken or not.
    ///
    /// ```
    /// use eventcore::*;
    /// let mut sub = SubscriptionMachine::new(GlobalPosition::START, EventFilter::all(), SubscriptionPolicy::default(), Time::ZERO, 1);
    /// let SubscriptionStep::Fetch { id, .. } = sub.poll() else { panic!("fetches first") };
    /// let gone = RemovedRange {
    ///     stream: StreamId::new("s")?, first_version: StreamVersion::new(1), last_version: StreamVersion::new(2),
    ///     first_position: GlobalPosition::new(1), last_position: GlobalPosition::new(2),
    ///     reason: RemovalReason::MaxAge, removed_at: Time::ZERO,
    /// };
    /// sub.on_fetched(id, Ok(ReadAllResponse { events: vec![], complete_through: GlobalPosition::new(2), removed: vec![gone.clone()] }), Time::ZERO);
    /// assert_eq!(sub.take_skipped(), vec![gone]);
    /// assert_eq!(sub.stats().removed_events_skipped, 2);
    /// # Ok::<(), InvalidStreamId>(())
    /// ```
    pub fn take_skipped(&mut self) -> Vec<RemovedRange> {
        std::mem::take(&mut self.skipped)
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

    pub(super) fn stopping(&self) -> bool {
        self.outcome.is_some() || self.finished
    }

    pub(super) fn observe(&mut self, now: Time) {
        self.now = self.now.max(now);
    }

    pub(super) fn new_request_id(&mut self) -> RequestId {
        self.request_ids.next_id()
    }

    pub(super) fn stop(&mut self, error: SubscriptionError) {
        if self.outcome.is_none() && !self.finished {
            self.outcome = Some(Err(error));
        }
    }

    /// Every matching event up to the returned position is handled or
    /// parked (nothing unhandled is buffered below it).
    pub(super) fn safe_through(&self) -> GlobalPosition {
        match self.buffer.front() {
            Some(first) => GlobalPosition::new(first.position.get().saturating_sub(1)).max(self.handled_through),
            None => self.fetched_through,
        }
    }

    pub(super) fn backoff(&mut self, failures: u32) -> Time {
        let wait = self.policy.retry.jittered_backoff(failures, &mut self.entropy);
        self.now.saturating_add(wait)
    }
}
