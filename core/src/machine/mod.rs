//! The command-execution machine: one execution of one command as a value
//! that is fed store responses and asked for its next step.
//!
//! ```text
//! new ─► Read ─► (fold) ─► decide ─┬─► Read more streams (discovery) ─► ...
//!                                  ├─► Append ─┬─► Committed ─► Done
//!                                  │           ├─► Conflict ─► Wait(backoff) ─► Read ─► ...
//!                                  │           ├─► Transient ─► Wait(backoff) ─► Read ─► ...
//!                                  │           └─► Unknown ─► Wait(backoff) ─► re-send same Append
//!                                  └─► domain error / nothing to do ─► Done
//! ```
//!
//! The machine never blocks, sleeps or reads a clock: every input carries
//! `now`, and `poll` returns the deadline it wants to be woken at. Every
//! request carries a [`RequestId`]; a response with any other id is counted
//! and ignored, so drivers may deliver responses late, twice or out of order.

use crate::entropy::Entropy;
use crate::store::{AppendReceipt, AppendRequest, Operation, ReadRequest, ReadResponse, StoreError, StreamRead};
use crate::view::ViewKind;
use crate::{
    Codec, Command, CommandId, EventId, ExecutionPolicy, GlobalPosition, RecordedEvent, RequestId, RequestIds,
    StreamId, StreamVersion, Time,
};
use std::sync::Arc;

mod context;
mod decide;
#[cfg(test)]
mod ending_tests;
mod kinds;
mod outcome;
mod reads;
#[cfg(test)]
mod removal_tests;
mod retry;
#[cfg(test)]
mod tests;
mod views;

pub use context::ExecutionContext;
pub use kinds::{AnyCommandError, CommandErrorKind, ExecutionError};
pub use outcome::{CommandError, Executed, ExecutionStats, Step};

#[derive(Debug)]
struct StreamCursor {
    stream: StreamId,
    /// Version of the last event we hold.
    read_to: StreamVersion,
    /// The stream's version when last read.
    head: StreamVersion,
    /// Whether a read is still owed for this stream.
    pending: bool,
    /// Whether what we hold came from a cache ([`CommandMachine::prime`])
    /// and no store read has confirmed it yet.
    primed: bool,
    /// The view this stream is folded into, instead of the command's
    /// `apply` in global order.
    view: Option<ViewKind>,
    /// The version the execution started this stream from (a primed view's
    /// version, else 0).
    base: StreamVersion,
    /// The id of the event at `read_to`, when known (view streams).
    last_event: Option<EventId>,
    /// A snapshot's version and last event id, until the read that starts
    /// at that event confirms them.
    verify: Option<(StreamVersion, EventId)>,
    /// A primed view that conflicted and was not read since, or whose commit
    /// showed the store behind it: not handed back, reported stale.
    distrusted: bool,
}

impl StreamCursor {
    fn new(stream: StreamId, view: Option<ViewKind>) -> Self {
        StreamCursor {
            stream,
            read_to: StreamVersion::NONE,
            head: StreamVersion::NONE,
            pending: true,
            primed: false,
            view,
            base: StreamVersion::NONE,
            last_event: None,
            verify: None,
            distrusted: false,
        }
    }
}

#[derive(Debug)]
struct HeldEvent<E> {
    position: GlobalPosition,
    cursor: usize,
    event: E,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterBackoff {
    /// Re-read what changed and decide again.
    Reread,
    /// Re-send the append whose outcome is unknown.
    Resend,
}

#[derive(Debug)]
enum Phase<E> {
    ReadDue,
    Reading {
        id: RequestId,
        asked: Vec<(usize, StreamVersion)>,
        deadline: Time,
    },
    AppendDue(Arc<AppendRequest>),
    Appending {
        id: RequestId,
        request: Arc<AppendRequest>,
        deadline: Time,
    },
    Backoff {
        until: Time,
        then: AfterBackoff,
    },
    /// The execution ended; the result waits for `poll` to hand it out, once.
    Done(Result<Executed, CommandError<E>>),
    /// The result was handed out: nothing is left to do.
    Finished,
}

/// One execution of one command. See the module docs for the flow.
///
/// ```
/// use eventcore::*;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)] enum Ev { Opened }
/// # impl Event for Ev {}
/// # #[derive(Debug, thiserror::Error)] #[error("never")] struct Never;
/// struct Open(StreamId);
/// impl Command for Open {
///     type Event = Ev;
///     type State = bool;
///     type Error = Never;
///     fn streams(&self) -> Vec<StreamId> { vec![self.0.clone()] }
///     fn apply(&self, opened: &mut bool, _: &StreamId, _: &Ev) { *opened = true; }
///     fn decide(&self, opened: &bool, out: &mut Decision<Ev>) -> Result<(), Never> {
///         if !opened { out.emit(&self.0, Ev::Opened); }
///         Ok(())
///     }
/// }
///
/// let now = Time::from_unix_millis(1_000);
/// let ctx = ExecutionContext::new(CommandId::v7(now, [1; 10]));
/// let mut m = CommandMachine::new(Open(StreamId::new("acc-1")?), ExecutionPolicy::default(), ctx, now, 42);
/// let Step::Read { id, request: read, .. } = m.poll() else { panic!("reads first") };
/// m.on_read(id, Ok(ReadResponse { streams: vec![StreamSlice {
///     stream: read.streams[0].stream.clone(), head: StreamVersion::NONE, events: vec![], deleted_at: None, removed_through: StreamVersion::NONE }] }), now);
/// let Step::Append { request: append, .. } = m.poll() else { panic!("then appends") };
/// assert_eq!(append.streams[0].expected, ExpectedVersion::NoStream);
/// # Ok::<(), InvalidStreamId>(())
/// ```
#[derive(Debug)]
pub struct CommandMachine<C: Command> {
    command: C,
    policy: ExecutionPolicy,
    context: ExecutionContext,
    entropy: Entropy,
    deadline: Time,
    now: Time,
    request_ids: RequestIds,
    attempts: u32,
    cursors: Vec<StreamCursor>,
    held: Vec<HeldEvent<C::Event>>,
    applied: usize,
    state: C::State,
    discovery_rounds: u32,
    phase: Phase<C::Error>,
    /// The append whose outcome is unknown. While set, every retry re-sends
    /// it unchanged; only a commit or a version conflict settles it.
    unresolved: Option<Arc<AppendRequest>>,
    last_error: Option<StoreError>,
    /// Events read back that carry this execution's own command id: an
    /// earlier execution with the same id committed (the caller re-executes
    /// to settle an unknown outcome). Deciding again would act on the request
    /// twice, or refuse it because of its own effects, so the machine asks
    /// the store for the original receipt instead.
    own_commit: Vec<RecordedEvent>,
    /// The events of the append in flight, kept to fold into the written
    /// streams' views once they commit (so the views handed back to a cache
    /// are up to date), and to encode them again on a driver's request
    /// ([`CommandMachine::reencode_append`]).
    decided: Vec<(StreamId, C::Event)>,
    /// The streams the decision in flight ends (tombstones).
    ends: Vec<StreamId>,
    /// View streams whose cached or snapshotted starting point proved ahead
    /// of the store: the driver must drop those cache entries.
    stale_views: Vec<(StreamId, ViewKind)>,
    stats: ExecutionStats,
    /// The codec the append's payloads are encoded in: the store's.
    codec: Codec,
}

impl<C: Command> CommandMachine<C> {
    /// Starts an execution at `now`. `seed` is the only source of the
    /// machine's randomness (backoff jitter, event-id entropy).
    pub fn new(command: C, policy: ExecutionPolicy, context: ExecutionContext, now: Time, seed: u64) -> Self {
        let relative = policy.timeout.map(|t| now.saturating_add(t)).unwrap_or(Time::MAX);
        let deadline = context.deadline.map_or(relative, |d| d.min(relative));
        let streams = command.streams();
        let mut cursors: Vec<StreamCursor> = Vec::with_capacity(streams.len());
        let mut state = C::State::default();
        for stream in streams {
            if !cursors.iter().any(|c| c.stream == stream) {
                let view = command.view_of(&stream);
                if let (Some(kind), Some(views)) = (view, C::views_mut(&mut state)) {
                    views.ensure(&stream, kind);
                }
                cursors.push(StreamCursor::new(stream, view));
            }
        }
        let mut machine = CommandMachine {
            command,
            policy,
            context,
            entropy: Entropy::new(seed),
            deadline,
            now,
            request_ids: RequestIds::default(),
            attempts: 1,
            cursors,
            held: Vec::new(),
            applied: 0,
            state,
            discovery_rounds: 0,
            phase: Phase::ReadDue,
            unresolved: None,
            last_error: None,
            own_commit: Vec::new(),
            decided: Vec::new(),
            ends: Vec::new(),
            stale_views: Vec::new(),
            stats: ExecutionStats::default(),
            codec: Codec::Json,
        };
        if machine.cursors.is_empty() {
            machine.finish(Err(CommandError::NoStreams));
        } else if now >= deadline {
            machine.finish(Err(CommandError::DeadlineExceeded {
                attempts: 0,
                last: None,
            }));
        }
        machine
    }

    /// Encodes the append's payloads in `codec` (the default is
    /// [`Codec::Json`]): drivers pass their store's
    /// (`EventStore::codec`), so that the store keeps the payloads as they
    /// come. Any codec is correct with any store
    /// ([`AppendRequest::for_store`](crate::AppendRequest::for_store)), only
    /// slower.
    ///
    /// ```
    /// # use eventcore::*;
    /// # #[derive(serde::Serialize, serde::Deserialize)] enum Ev { Opened }
    /// # impl Event for Ev {}
    /// # #[derive(Debug, thiserror::Error)] #[error("never")] struct Never;
    /// # struct Open(StreamId);
    /// # impl Command for Open {
    /// #     type Event = Ev; type State = (); type Error = Never;
    /// #     fn streams(&self) -> Vec<StreamId> { vec![self.0.clone()] }
    /// #     fn apply(&self, _: &mut (), _: &StreamId, _: &Ev) {}
    /// #     fn decide(&self, _: &(), out: &mut Decision<Ev>) -> Result<(), Never> { out.emit(&self.0, Ev::Opened); Ok(()) }
    /// # }
    /// let now = Time::from_unix_millis(1);
    /// let ctx = ExecutionContext::new(CommandId::v7(now, [1; 10]));
    /// let codec = *Codec::ALL.last().unwrap_or(&Codec::Json);
    /// let mut m = CommandMachine::new(Open(StreamId::new("s")?), ExecutionPolicy::default(), ctx, now, 1).with_codec(codec);
    /// let Step::Read { id, request, .. } = m.poll() else { panic!("reads first") };
    /// m.on_read(id, Ok(ReadResponse { streams: vec![StreamSlice {
    ///     stream: request.streams[0].stream.clone(), head: StreamVersion::NONE, events: vec![], deleted_at: None, removed_through: StreamVersion::NONE }] }), now);
    /// let Step::Append { request, .. } = m.poll() else { panic!("then appends") };
    /// assert_eq!(request.streams[0].events[0].payload.codec(), codec);
    /// # Ok::<(), InvalidStreamId>(())
    /// ```
    pub fn with_codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// The codec the append's payloads are encoded in.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The execution's command id.
    pub fn command_id(&self) -> CommandId {
        self.context.command_id
    }

    /// Attempts started so far, the first included.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Counters so far.
    pub fn stats(&self) -> &ExecutionStats {
        &self.stats
    }

    /// The command being executed.
    pub fn command(&self) -> &C {
        &self.command
    }

    /// The command, given back: to run it again on another machine (a
    /// driver that confirms, on a fresh read, a verdict reached from cached
    /// state does).
    ///
    /// ```
    /// # use eventcore::*;
    /// # #[derive(serde::Serialize, serde::Deserialize)] enum Ev { Opened }
    /// # impl Event for Ev {}
    /// # #[derive(Debug, PartialEq)] struct Open(StreamId);
    /// # impl Command for Open {
    /// #     type Event = Ev; type State = (); type Error = std::convert::Infallible;
    /// #     fn streams(&self) -> Vec<StreamId> { vec![self.0.clone()] }
    /// #     fn apply(&self, _: &mut (), _: &StreamId, _: &Ev) {}
    /// #     fn decide(&self, _: &(), _: &mut Decision<Ev>) -> Result<(), Self::Error> { Ok(()) }
    /// # }
    /// let stream = StreamId::new("acc-1")?;
    /// let context = ExecutionContext::new(CommandId::v7(Time::ZERO, [1; 10]));
    /// let machine = CommandMachine::new(Open(stream.clone()), ExecutionPolicy::default(), context, Time::ZERO, 7);
    /// assert_eq!(machine.into_command(), Open(stream));
    /// # Ok::<(), InvalidStreamId>(())
    /// ```
    pub fn into_command(self) -> C {
        self.command
    }

    /// The streams read so far, in the order they were first requested.
    pub fn streams(&self) -> impl Iterator<Item = &StreamId> {
        self.cursors.iter().map(|c| &c.stream)
    }

    /// Every stream the execution holds, at the version of the last event
    /// folded from it: what its latest decision rested on. After a refusal
    /// or an empty decision this is the state that verdict was given on —
    /// what a checker needs to re-decide it on a full fold of the store.
    ///
    /// ```
    /// # use eventcore::*;
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] enum Ev { Opened }
    /// # impl Event for Ev {}
    /// # #[derive(Debug, thiserror::Error)] #[error("never")] struct Never;
    /// # struct Touch(StreamId);
    /// # impl Command for Touch {
    /// #     type Event = Ev; type State = (); type Error = Never;
    /// #     fn streams(&self) -> Vec<StreamId> { vec![self.0.clone()] }
    /// #     fn apply(&self, _: &mut (), _: &StreamId, _: &Ev) {}
    /// #     fn decide(&self, _: &(), _: &mut Decision<Ev>) -> Result<(), Never> { Ok(()) }
    /// # }
    /// let stream = StreamId::new("s")?;
    /// let now = Time::from_unix_millis(1);
    /// let ctx = ExecutionContext::new(CommandId::v7(now, [0; 10]));
    /// let mut m = CommandMachine::new(Touch(stream.clone()), ExecutionPolicy::default(), ctx, now, 7);
    /// assert_eq!(m.decided_at(), vec![(stream.clone(), StreamVersion::NONE)]);
    /// # Ok::<(), InvalidStreamId>(())
    /// ```
    pub fn decided_at(&self) -> Vec<(StreamId, StreamVersion)> {
        self.cursors.iter().map(|c| (c.stream.clone(), c.read_to)).collect()
    }

    /// Encodes the payloads of the append [`poll`](CommandMachine::poll)
    /// just handed out again, from the events the command decided, and
    /// returns the request to send instead; event ids, expectations,
    /// tombstones and metadata are unchanged.
    ///
    /// For a driver whose encoding depends on context it installs around
    /// the machine's calls, and which learns only from the encoding what
    /// context it needs: `eventcore-shred` seals personal data under keys
    /// the driver installs, finds during the encode which subjects' keys it
    /// lacks, fetches them (async, outside the machine), installs them and
    /// calls this before sending. Call it before the append is sent, never
    /// after.
    ///
    /// Returns `None` when no append is due, or when the new encoding
    /// failed: the execution then ended with [`CommandError::Encode`], which
    /// the next `poll` returns. The re-send of an append whose outcome is
    /// unknown, and the re-send that settles an earlier commit, carry what
    /// the store may hold: they are returned as they are.
    ///
    /// ```
    /// # use eventcore::*;
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] enum Ev { Opened }
    /// # impl Event for Ev {}
    /// # #[derive(Debug, thiserror::Error)] #[error("never")] struct Never;
    /// # struct Open(StreamId);
    /// # impl Command for Open {
    /// #     type Event = Ev; type State = (); type Error = Never;
    /// #     fn streams(&self) -> Vec<StreamId> { vec![self.0.clone()] }
    /// #     fn apply(&self, _: &mut (), _: &StreamId, _: &Ev) {}
    /// #     fn decide(&self, _: &(), out: &mut Decision<Ev>) -> Result<(), Never> { out.emit(&self.0, Ev::Opened); Ok(()) }
    /// # }
    /// let now = Time::from_unix_millis(1);
    /// let ctx = ExecutionContext::new(CommandId::v7(now, [0; 10]));
    /// let mut m = CommandMachine::new(Open(StreamId::new("s")?), ExecutionPolicy::default(), ctx, now, 7);
    /// let Step::Read { id, request: read, .. } = m.poll() else { panic!("reads first") };
    /// m.on_read(id, Ok(ReadResponse { streams: vec![StreamSlice {
    ///     stream: read.streams[0].stream.clone(), head: StreamVersion::NONE, events: vec![], deleted_at: None, removed_through: StreamVersion::NONE }] }), now);
    /// let Step::Append { request: first, .. } = m.poll() else { panic!("then appends") };
    /// let again = m.reencode_append().expect("an append is due");
    /// assert_eq!(again.streams[0].events[0].event_id, first.streams[0].events[0].event_id);
    /// # Ok::<(), InvalidStreamId>(())
    /// ```
    pub fn reencode_append(&mut self) -> Option<Arc<AppendRequest>> {
        self.reencode_due_append()
    }

    /// True once the result has been handed out by [`CommandMachine::poll`].
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Finished)
    }

    /// The request the machine is waiting on, if any.
    pub fn awaiting(&self) -> Option<RequestId> {
        match &self.phase {
            Phase::Reading { id, .. } | Phase::Appending { id, .. } => Some(*id),
            _ => None,
        }
    }

    /// The execution's overall deadline (policy timeout and context
    /// deadline), if it has one.
    pub fn deadline(&self) -> Option<Time> {
        (self.deadline != Time::MAX).then_some(self.deadline)
    }

    /// When the machine next wants [`CommandMachine::on_wake`]: the deadline
    /// of the request in flight or the end of a backoff. `None` when a
    /// request is due (poll now) or the execution ended.
    pub fn next_wake(&self) -> Option<Time> {
        match &self.phase {
            Phase::Reading { deadline, .. } | Phase::Appending { deadline, .. } => Some(*deadline),
            Phase::Backoff { until, .. } => Some(*until),
            _ => None,
        }
    }

    /// The next thing to do. Requests are returned once each.
    pub fn poll(&mut self) -> Step<C::Error> {
        if matches!(self.phase, Phase::ReadDue | Phase::AppendDue(_)) && self.now >= self.deadline {
            // A response that arrived at or after the overall deadline must
            // not start new work: no request is ever sent past the deadline.
            let error = self.deadline_error();
            self.finish(Err(error));
        }
        match std::mem::replace(&mut self.phase, Phase::Finished) {
            Phase::ReadDue if !self.cursors.iter().any(|c| c.pending) => {
                // Every stream is already known (primed from a cache):
                // decide straight away.
                self.decide();
                self.poll()
            }
            Phase::ReadDue => {
                let id = self.new_request_id();
                let asked: Vec<(usize, StreamVersion)> = self
                    .cursors
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.pending)
                    .map(|(i, c)| (i, c.read_to))
                    .collect();
                let request = ReadRequest {
                    streams: asked
                        .iter()
                        .map(|&(i, after)| StreamRead {
                            stream: self.cursors[i].stream.clone(),
                            after,
                        })
                        .collect(),
                    page_size: self.policy.page_size,
                };
                let deadline = self.now.saturating_add(self.policy.read_timeout).min(self.deadline);
                self.phase = Phase::Reading { id, asked, deadline };
                self.stats.reads += 1;
                Step::Read { id, deadline, request }
            }
            Phase::AppendDue(request) => {
                let id = self.new_request_id();
                let deadline = self.now.saturating_add(self.policy.append_timeout).min(self.deadline);
                self.phase = Phase::Appending {
                    id,
                    request: Arc::clone(&request),
                    deadline,
                };
                self.stats.appends += 1;
                Step::Append { id, deadline, request }
            }
            phase @ (Phase::Reading { deadline: until, .. }
            | Phase::Appending { deadline: until, .. }
            | Phase::Backoff { until, .. }) => {
                self.phase = phase;
                Step::Wait { until }
            }
            Phase::Done(outcome) => Step::Done(outcome),
            Phase::Finished => Step::Finished,
        }
    }

    /// Reports the answer to a read. Answers to anything but the read in
    /// flight are ignored.
    pub fn on_read(&mut self, id: RequestId, result: Result<ReadResponse, StoreError>, now: Time) {
        self.observe(now);
        let asked = match &mut self.phase {
            Phase::Reading { id: pending, asked, .. } if *pending == id => std::mem::take(asked),
            _ => {
                self.stats.ignored_responses += 1;
                return;
            }
        };
        match result {
            Ok(response) => {
                if let Err(error) = self.absorb(&asked, response) {
                    self.finish(Err(error));
                    return;
                }
                if self.cursors.iter().any(|c| c.pending) {
                    self.phase = Phase::ReadDue;
                } else {
                    self.decide();
                }
            }
            Err(error) if error.is_retryable() => {
                self.stats.transient_errors += 1;
                self.retry(error, AfterBackoff::Reread);
            }
            Err(error) => self.finish(Err(CommandError::Store(error))),
        }
    }

    /// Reports the answer to an append. Answers to anything but the append
    /// in flight are ignored.
    pub fn on_append(&mut self, id: RequestId, result: Result<AppendReceipt, StoreError>, now: Time) {
        self.observe(now);
        let request = match std::mem::replace(&mut self.phase, Phase::Finished) {
            Phase::Appending {
                id: pending, request, ..
            } if pending == id => request,
            other => {
                self.phase = other;
                self.stats.ignored_responses += 1;
                return;
            }
        };
        match result {
            Ok(receipt) => {
                if let Err(message) = decide::check_receipt(&request, &receipt) {
                    // The store says the append committed, but not in a way
                    // that can be trusted: it may or may not have.
                    self.finish(Err(CommandError::OutcomeUnknown {
                        command_id: self.context.command_id,
                        attempts: self.attempts,
                        last: StoreError::ContractViolation {
                            operation: Operation::Append,
                            message,
                        },
                    }));
                    return;
                }
                self.unresolved = None;
                if !self.decided.is_empty() {
                    self.fold_commit(&request, &receipt);
                }
                let executed = Executed {
                    command_id: self.context.command_id,
                    attempts: self.attempts,
                    appended: Some(receipt),
                    stats: self.stats.clone(),
                };
                self.finish(Ok(executed));
            }
            Err(StoreError::Conflict(conflict)) => {
                // A conflict is final: the store checks the command id before
                // versions, so an append that had committed would have been
                // answered with its receipt. Versions never go back, so the
                // earlier attempt can never commit either.
                self.unresolved = None;
                self.stats.conflicts += 1;
                self.distrust_primed_view(&conflict);
                self.retry(StoreError::Conflict(conflict), AfterBackoff::Reread);
            }
            Err(error) if error.may_have_committed() => {
                self.stats.unknown_outcomes += 1;
                self.unresolved = Some(request);
                self.retry(error, AfterBackoff::Resend);
            }
            Err(error) if error.is_retryable() => {
                self.stats.transient_errors += 1;
                let then = if self.unresolved.is_some() {
                    AfterBackoff::Resend
                } else {
                    AfterBackoff::Reread
                };
                self.retry(error, then);
            }
            Err(error) => {
                if self.unresolved.is_some() {
                    self.finish(Err(CommandError::OutcomeUnknown {
                        command_id: self.context.command_id,
                        attempts: self.attempts,
                        last: error,
                    }));
                } else {
                    self.finish(Err(CommandError::Store(error)));
                }
            }
        }
    }

    /// Wakes the machine at or after the deadline it asked for. Waking early
    /// is harmless.
    pub fn on_wake(&mut self, now: Time) {
        self.observe(now);
        if matches!(self.phase, Phase::Done(_) | Phase::Finished) {
            return;
        }
        if now >= self.deadline {
            if let Phase::Appending { request, .. } = std::mem::replace(&mut self.phase, Phase::Finished) {
                // The append in flight is abandoned unanswered: that, not any
                // earlier error, is why the outcome is open.
                self.unresolved = Some(request);
                self.last_error = Some(StoreError::Timeout {
                    operation: Operation::Append,
                    after: self.policy.append_timeout,
                });
            }
            let error = self.deadline_error();
            self.finish(Err(error));
            return;
        }
        match std::mem::replace(&mut self.phase, Phase::Finished) {
            Phase::Backoff { until, then } if now >= until => match then {
                AfterBackoff::Reread => self.phase = Phase::ReadDue,
                AfterBackoff::Resend => match self.unresolved.clone() {
                    Some(request) => self.phase = Phase::AppendDue(request),
                    None => self.phase = Phase::ReadDue,
                },
            },
            Phase::Reading { deadline, .. } if now >= deadline => {
                self.stats.transient_errors += 1;
                let error = StoreError::Timeout {
                    operation: Operation::Read,
                    after: self.policy.read_timeout,
                };
                self.retry(error, AfterBackoff::Reread);
            }
            Phase::Appending { deadline, request, .. } if now >= deadline => {
                self.stats.unknown_outcomes += 1;
                self.unresolved = Some(request);
                let error = StoreError::Timeout {
                    operation: Operation::Append,
                    after: self.policy.append_timeout,
                };
                self.retry(error, AfterBackoff::Resend);
            }
            other => self.phase = other,
        }
    }

    fn observe(&mut self, now: Time) {
        // Tolerate a driver clock that steps back: time never runs backwards
        // inside the machine.
        self.now = self.now.max(now);
    }

    fn new_request_id(&mut self) -> RequestId {
        self.request_ids.next_id()
    }

    fn finish(&mut self, outcome: Result<Executed, CommandError<C::Error>>) {
        self.phase = Phase::Done(outcome);
    }
}
