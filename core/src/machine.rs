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

use crate::codec::{DecodeError, EncodeError};
use crate::entropy::Entropy;
use crate::store::{
    AppendReceipt, AppendRequest, Operation, ReadRequest, ReadResponse, StoreError, StreamAppend, StreamRead,
};
use crate::view::{view_mut, AnyEvent, StreamView, ViewKind};
use crate::{
    CausationId, Command, CommandId, CorrelationId, Decision, Event, EventId, EventMetadata, ExecutionPolicy,
    ExpectedVersion, GlobalPosition, NewEvent, RecordedEvent, RequestId, StreamId, StreamVersion, Time,
};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Who is executing and why: the identity and metadata of one execution.
///
/// ```
/// use eventcore::{CommandId, ExecutionContext, Time};
/// let ctx = ExecutionContext::new(CommandId::v7(Time::ZERO, [0; 10])).with_user("user", "ada");
/// assert_eq!(ctx.user["user"], "ada");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutionContext {
    /// Shared by every attempt; the store's idempotency key.
    pub command_id: CommandId,
    /// Defaults to the command id.
    pub correlation_id: CorrelationId,
    /// What caused this command, if anything.
    pub causation_id: Option<CausationId>,
    /// Copied into every event's metadata.
    pub user: BTreeMap<String, String>,
    /// An absolute deadline, in addition to the policy's relative timeout.
    pub deadline: Option<Time>,
}

impl ExecutionContext {
    /// A context for `command_id` with default metadata.
    pub fn new(command_id: CommandId) -> Self {
        ExecutionContext {
            command_id,
            correlation_id: CorrelationId::from_uuid(command_id.as_uuid()),
            causation_id: None,
            user: BTreeMap::new(),
            deadline: None,
        }
    }

    /// Sets the correlation id.
    pub fn with_correlation(mut self, id: CorrelationId) -> Self {
        self.correlation_id = id;
        self
    }

    /// Sets the causation id.
    pub fn with_causation(mut self, id: CausationId) -> Self {
        self.causation_id = Some(id);
        self
    }

    /// Adds a user metadata key/value.
    pub fn with_user(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.user.insert(key.into(), value.into());
        self
    }

    /// Sets an absolute deadline.
    pub fn with_deadline(mut self, deadline: Time) -> Self {
        self.deadline = Some(deadline);
        self
    }
}

/// What the driver should do next.
///
/// ```
/// use eventcore::*;
/// // The shape of every driver loop (the tokio executor and the simulator):
/// fn drive<C: Command>(mut machine: CommandMachine<C>) {
///     loop {
///         match machine.poll() {
///             Step::Read(_request) => { /* send; later machine.on_read(id, answer, now) */ return; }
///             Step::Append(_request) => { /* send; later machine.on_append(id, answer, now) */ return; }
///             Step::Wait { until: _ } => { /* sleep; then machine.on_wake(now) */ return; }
///             Step::Done(_result) => return,
///             Step::Finished => return,
///         }
///     }
/// }
/// ```
#[derive(Debug)]
pub enum Step<E> {
    /// Send this read to the store and report the answer with
    /// [`CommandMachine::on_read`].
    Read(ReadRequest),
    /// Send this append and report the answer with
    /// [`CommandMachine::on_append`]. Shared with the machine, which keeps
    /// the append in flight to re-send it unchanged if its outcome turns out
    /// unknown; handing out a reference count instead of a copy keeps the
    /// common path (one attempt) free of a clone of every event.
    Append(Arc<AppendRequest>),
    /// Nothing to send: a request is in flight or a backoff is running. Call
    /// [`CommandMachine::on_wake`] at `until` unless a response arrives first.
    Wait {
        /// When to wake the machine.
        until: Time,
    },
    /// The execution ended. Returned exactly once.
    Done(Result<Executed, CommandError<E>>),
    /// The result was already returned; there is nothing left to do.
    Finished,
}

/// Counters of what happened during one execution.
///
/// ```
/// use eventcore::ExecutionStats;
/// let stats = ExecutionStats { conflicts: 2, ..ExecutionStats::default() };
/// assert_eq!(stats.unknown_outcomes, 0);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecutionStats {
    /// Read requests emitted.
    pub reads: u32,
    /// Append requests emitted (re-sends included).
    pub appends: u32,
    /// Appends refused with a version conflict.
    pub conflicts: u32,
    /// Transient errors and read timeouts.
    pub transient_errors: u32,
    /// Appends whose outcome was unknown (timeouts, lost acknowledgements).
    pub unknown_outcomes: u32,
    /// Times `decide` asked for more streams.
    pub discovery_rounds: u32,
    /// Responses ignored because they were stale or duplicated.
    pub ignored_responses: u32,
    /// Views a driver started from (cache or snapshot) that proved ahead of
    /// the store and were rebuilt from events.
    pub stale_views: u32,
}

/// A successful execution.
///
/// ```
/// use eventcore::*;
/// let done = Executed { command_id: CommandId::v7(Time::ZERO, [0; 10]), attempts: 1, appended: None, stats: ExecutionStats::default() };
/// assert!(done.appended.is_none(), "decide emitted nothing; nothing was written");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Executed {
    /// The execution's command id.
    pub command_id: CommandId,
    /// Attempts used, the first included.
    pub attempts: u32,
    /// What was committed; `None` when `decide` emitted no events.
    pub appended: Option<AppendReceipt>,
    /// What happened on the way.
    pub stats: ExecutionStats,
}

/// Why an execution failed.
///
/// ```
/// use eventcore::*;
/// let unknown: CommandError<std::convert::Infallible> = CommandError::OutcomeUnknown {
///     command_id: CommandId::v7(Time::ZERO, [0; 10]),
///     attempts: 3,
///     last: StoreError::Timeout { operation: Operation::Append, after: std::time::Duration::from_secs(5) },
/// };
/// assert!(unknown.may_have_committed(), "re-execute with the same command id to settle it");
/// assert!(!CommandError::<std::convert::Infallible>::NoStreams.may_have_committed());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError<E> {
    /// The command declared no streams to read.
    #[error("command declares no streams to read")]
    NoStreams,
    /// The decision wrote to, or set an expectation on, a stream it never read.
    #[error(
        "command wrote to stream `{stream}` without reading it; add it to streams() or request it with Decision::read"
    )]
    UnreadStream {
        /// The stream concerned.
        stream: StreamId,
    },
    /// `decide` kept asking for new streams.
    #[error("stream discovery did not settle within {limit} rounds; still requesting {pending:?}")]
    DiscoveryLimit {
        /// The policy's limit.
        limit: u32,
        /// The streams requested in the round that hit the limit.
        pending: Vec<StreamId>,
    },
    /// The domain refused the command. Never retried.
    #[error("command rejected: {0}")]
    Domain(#[source] E),
    /// A stored event could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// An emitted event could not be encoded.
    #[error("event for stream `{stream}` could not be encoded: {source}")]
    Encode {
        /// Where the event was addressed.
        stream: StreamId,
        /// Why.
        #[source]
        source: EncodeError,
    },
    /// Every attempt failed with a retryable error; nothing was committed.
    #[error("gave up after {attempts} attempts; last error: {last}")]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// The error of the last attempt.
        last: StoreError,
    },
    /// The execution stopped while an append's outcome was unknown: it may
    /// have committed (exactly once) or not at all. Executing again with the
    /// same command id resolves it.
    #[error("outcome unknown for command {command_id} after {attempts} attempts: {last}")]
    OutcomeUnknown {
        /// The command id to re-execute with.
        command_id: CommandId,
        /// Attempts made.
        attempts: u32,
        /// The error that left the outcome open.
        last: StoreError,
    },
    /// The overall deadline passed (possibly before the first attempt).
    #[error("deadline exceeded after {attempts} attempts{}", last.as_ref().map(|e| format!("; last error: {e}")).unwrap_or_default())]
    DeadlineExceeded {
        /// Attempts made.
        attempts: u32,
        /// The last store error, if any.
        last: Option<StoreError>,
    },
    /// The store failed in a way retrying cannot fix, or refused the append.
    #[error("store error: {0}")]
    Store(#[source] StoreError),
    /// A view command's state needed the view of a stream that was not read
    /// through it (the command's `streams()` and its state disagree).
    #[error("stream `{stream}` was not read through view {view}; declare it with #[stream] or Emit::read")]
    MissingView {
        /// The stream concerned.
        stream: StreamId,
        /// The view the state asked for.
        view: ViewKind,
    },
    /// An event was addressed to a stream whose view cannot fold it (its
    /// type is not the view's event type). Nothing was written.
    #[error("event for stream `{stream}` cannot be folded by its view {view}: {source}")]
    ViewCannotFold {
        /// The stream concerned.
        stream: StreamId,
        /// The stream's view.
        view: ViewKind,
        /// Why the view's event type does not decode it.
        #[source]
        source: crate::DecodeErrorKind,
    },
}

impl<E> CommandError<E> {
    /// True only for [`CommandError::OutcomeUnknown`]: every other error
    /// guarantees that this execution wrote nothing. (An earlier execution
    /// with the same command id may have committed; re-executing with that id
    /// until it succeeds or is refused by the domain settles it.)
    pub fn may_have_committed(&self) -> bool {
        matches!(self, CommandError::OutcomeUnknown { .. })
    }
}

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
enum Phase {
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
    Done,
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
/// let Step::Read(read) = m.poll() else { panic!("reads first") };
/// m.on_read(read.id, Ok(ReadResponse { streams: vec![StreamSlice {
///     stream: read.streams[0].stream.clone(), head: StreamVersion::NONE, events: vec![] }] }), now);
/// let Step::Append(append) = m.poll() else { panic!("then appends") };
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
    next_request: u64,
    attempts: u32,
    cursors: Vec<StreamCursor>,
    held: Vec<HeldEvent<C::Event>>,
    applied: usize,
    state: C::State,
    discovery_rounds: u32,
    phase: Phase,
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
    /// The events of the append in flight, kept (for commands that read
    /// through views) to fold into the written streams' views once they
    /// commit, so the views handed back to a cache are up to date.
    decided: Vec<(StreamId, C::Event)>,
    /// View streams whose cached or snapshotted starting point proved ahead
    /// of the store: the driver must drop those cache entries.
    stale_views: Vec<(StreamId, ViewKind)>,
    stats: ExecutionStats,
    outcome: Option<Result<Executed, CommandError<C::Error>>>,
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
            next_request: 0,
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
            stale_views: Vec::new(),
            stats: ExecutionStats::default(),
            outcome: None,
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

    /// The streams read so far, in the order they were first requested.
    pub fn streams(&self) -> impl Iterator<Item = &StreamId> {
        self.cursors.iter().map(|c| &c.stream)
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

    /// Seeds a declared stream with events the driver already holds (a
    /// cache), so the first attempt can skip reading it. `events` must be the
    /// stream's events from version 1 on, contiguous; they may be stale — the
    /// append pins the stream to the last version given, so a stale prefix
    /// only costs a conflict and an incremental re-read of what is newer.
    ///
    /// Returns `false` and ignores the events when they cannot be used: the
    /// stream is not declared, the machine has already started, or the
    /// events are not a contiguous prefix of that stream. Decode failures end
    /// the execution exactly as they would after a read.
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
    /// #     fn decide(&self, _: &(), out: &mut Decision<Ev>) -> Result<(), Never> { out.emit(&self.0, Ev::Opened); Ok(()) }
    /// # }
    /// let stream = StreamId::new("s")?;
    /// let now = Time::from_unix_millis(1);
    /// let ctx = ExecutionContext::new(CommandId::v7(now, [0; 10]));
    /// let mut m = CommandMachine::new(Touch(stream.clone()), ExecutionPolicy::default(), ctx, now, 7);
    /// assert!(m.prime(&stream, &[])); // known to be empty
    /// let Step::Append(append) = m.poll() else { panic!("no read needed") };
    /// assert_eq!(append.streams[0].expected, ExpectedVersion::NoStream);
    /// # Ok::<(), InvalidStreamId>(())
    /// ```
    pub fn prime<'a>(&mut self, stream: &StreamId, events: impl IntoIterator<Item = &'a RecordedEvent>) -> bool {
        if self.next_request != 0 || !matches!(self.phase, Phase::ReadDue) {
            return false;
        }
        let Some(cursor) = self
            .cursors
            .iter()
            .position(|c| &c.stream == stream && c.read_to.is_none())
        else {
            return false;
        };
        let events: Vec<RecordedEvent> = events.into_iter().cloned().collect();
        let contiguous = events
            .iter()
            .enumerate()
            .all(|(i, e)| &e.stream_id == stream && e.version.get() == i as u64 + 1);
        if !contiguous {
            return false;
        }
        let head = StreamVersion::new(events.len() as u64);
        let slice = ReadResponse {
            streams: vec![crate::StreamSlice {
                stream: stream.clone(),
                head,
                events,
            }],
        };
        if let Err(error) = self.absorb(&[(cursor, StreamVersion::NONE)], slice) {
            self.finish(Err(error));
        }
        self.cursors[cursor].primed = true;
        true
    }

    /// Starts a view stream from a fold this driver made itself (its view
    /// cache) instead of reading it from version 1: the machine reads only
    /// what is newer when it must, and pins the append to the view's
    /// version, so a stale view costs a conflict and a read of the tail,
    /// never a wrong decision. A refusal or an empty decision is confirmed by
    /// a read before it is final, and a view that proves ahead of the store
    /// is dropped and the stream folded from the start
    /// ([`CommandMachine::stale_views`]). The view is trusted to be a fold of
    /// this store's history; a persisted snapshot goes through
    /// [`CommandMachine::prime_snapshot`], which checks that.
    ///
    /// When this primes the last stream due to be read, the machine decides
    /// at once; a decision that discovers more streams leaves them in
    /// [`CommandMachine::unprimed_views`], so a driver primes until that is
    /// empty, then polls.
    ///
    /// Returns `false` and ignores the view when it does not fit: no read is
    /// due, the stream is not read through a view of this kind, or it
    /// already holds events.
    pub fn prime_view(&mut self, view: StreamView) -> bool {
        let version = view.version;
        let last_event = view.last_event;
        let Some(cursor) = self.primable(&view) else {
            return false;
        };
        let cursor = &mut self.cursors[cursor];
        cursor.read_to = version;
        cursor.head = version;
        cursor.base = version;
        cursor.last_event = last_event;
        cursor.pending = false;
        cursor.primed = true;
        if !self.cursors.iter().any(|c| c.pending) {
            // Deciding here rather than in `poll` gives the driver a chance
            // to prime the streams this decision discovers before they are
            // read.
            self.decide();
        }
        true
    }

    /// Starts a view stream from a persisted snapshot: the stream is read
    /// from the snapshot's last event on, and the snapshot is used only if
    /// that event is the one it was taken at (same version, same event id).
    /// Otherwise (the stream is shorter, or another history reached that
    /// version) it is dropped, counted in [`ExecutionStats::stale_views`],
    /// reported by [`CommandMachine::stale_views`], and the stream folded
    /// from the start. Costs one read of the tail plus the snapshot's last
    /// event. Returns `false` when the view does not fit (see
    /// [`CommandMachine::prime_view`]) or carries no last event id.
    pub fn prime_snapshot(&mut self, view: StreamView) -> bool {
        let (Some(last_event), Some(before)) = (view.last_event, view.version.get().checked_sub(1)) else {
            return false;
        };
        let version = view.version;
        let Some(cursor) = self.primable(&view) else {
            return false;
        };
        let cursor = &mut self.cursors[cursor];
        cursor.read_to = StreamVersion::new(before);
        cursor.head = StreamVersion::new(before);
        cursor.base = version;
        cursor.verify = Some((version, last_event));
        true
    }

    /// The cursor a view may be primed into, with the view put in its slot.
    fn primable(&mut self, view: &StreamView) -> Option<usize> {
        if !matches!(self.phase, Phase::ReadDue) {
            return None;
        }
        let cursor = self.cursors.iter().position(|c| {
            c.stream == view.stream
                && c.view == Some(view.kind)
                && c.read_to.is_none()
                && c.pending
                && c.base.is_none()
                && c.verify.is_none()
        })?;
        let slot = C::views_mut(&mut self.state).and_then(|views| views.slot_mut(&view.stream))?;
        slot.view = Arc::clone(&view.view);
        Some(cursor)
    }

    /// View streams that are due to be read from the start: what a driver
    /// may prime from a cache or a snapshot before the next
    /// [`CommandMachine::poll`] (including streams discovered by `decide`).
    pub fn unprimed_views(&self) -> Vec<(StreamId, ViewKind)> {
        if !matches!(self.phase, Phase::ReadDue) {
            return Vec::new();
        }
        self.cursors
            .iter()
            .filter(|c| c.pending && c.read_to.is_none() && c.base.is_none() && c.verify.is_none())
            .filter_map(|c| c.view.map(|kind| (c.stream.clone(), kind)))
            .collect()
    }

    /// The view of every stream read through one that the execution could
    /// confirm, each with the version it is folded to (this execution's own
    /// commit included once it is known). Each is exactly the fold of the
    /// stream's first `version` events, so a driver may cache all of them.
    /// Left out: streams never read, snapshots not yet checked, and views in
    /// [`CommandMachine::stale_views`]. Call it once the execution ended.
    pub fn take_views(&mut self) -> Vec<StreamView> {
        let Some(views) = C::views_mut(&mut self.state) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(views.slots.len());
        for cursor in &self.cursors {
            let Some(kind) = cursor.view else { continue };
            if (cursor.read_to.is_none() && cursor.pending) || cursor.verify.is_some() || cursor.distrusted {
                continue;
            }
            if let Some(slot) = views.slots.iter().find(|s| s.stream == cursor.stream) {
                out.push(StreamView {
                    stream: cursor.stream.clone(),
                    kind,
                    version: cursor.read_to,
                    base_version: cursor.base,
                    last_event: cursor.last_event,
                    view: Arc::clone(&slot.view),
                });
            }
        }
        out
    }

    /// View streams whose starting point must not be used again: primed
    /// views that proved ahead of the store (or, for a snapshot, of another
    /// history), and primed views that conflicted and were not read again
    /// before the execution ended. A driver drops them from its cache (and a
    /// snapshot it loaded for them from its snapshot store).
    pub fn stale_views(&self) -> Vec<(StreamId, ViewKind)> {
        let mut stale = self.stale_views.clone();
        for cursor in self.cursors.iter().filter(|c| c.distrusted) {
            if let Some(kind) = cursor.view {
                if !stale.iter().any(|(s, _)| s == &cursor.stream) {
                    stale.push((cursor.stream.clone(), kind));
                }
            }
        }
        stale
    }

    /// Drops a view stream's starting point: the slot goes back to the empty
    /// view and the stream is read from the start.
    fn drop_view_start(&mut self, cursor: usize) {
        let Some(kind) = self.cursors[cursor].view else { return };
        let stream = self.cursors[cursor].stream.clone();
        self.stats.stale_views += 1;
        self.stale_views.push((stream.clone(), kind));
        if let Some(slot) = C::views_mut(&mut self.state).and_then(|v| v.slot_mut(&stream)) {
            slot.view = kind.empty();
        }
        self.cursors[cursor] = StreamCursor::new(stream, Some(kind));
    }

    /// A conflict on a stream primed from a cache says the cached view is
    /// behind (or, below its version, ahead of the store): until a read
    /// confirms the stream again, its view must not go back to the cache.
    fn distrust_primed_view(&mut self, conflict: &crate::Conflict) {
        let Some(cursor) = self
            .cursors
            .iter()
            .position(|c| c.stream == conflict.stream && c.view.is_some() && c.primed)
        else {
            return;
        };
        if conflict.actual < self.cursors[cursor].base {
            self.drop_view_start(cursor);
        } else {
            self.cursors[cursor].distrusted = true;
        }
    }

    /// Folds this execution's own commit into the written streams' views, so
    /// the views handed out by [`CommandMachine::take_views`] include it. A
    /// stream whose commit does not follow the version folded (its
    /// expectation was relaxed and another writer got in between) keeps its
    /// view at the version read, which is still exact; one whose commit
    /// starts at or below that version shows the view was ahead of the
    /// store, and is reported stale.
    fn fold_commit(&mut self, request: &AppendRequest, receipt: &AppendReceipt) {
        let decided = std::mem::take(&mut self.decided);
        if receipt.deduplicated {
            return;
        }
        let Some(views) = C::views_mut(&mut self.state) else {
            return;
        };
        for commit in &receipt.streams {
            let Some(cursor) = self.cursors.iter_mut().find(|c| c.stream == commit.stream) else {
                continue;
            };
            if cursor.view.is_none() {
                continue;
            }
            if commit.first_version <= cursor.read_to {
                cursor.distrusted = true;
                continue;
            }
            let Some(slot) = views.slot_mut(&commit.stream) else {
                continue;
            };
            let events: Vec<&C::Event> = decided
                .iter()
                .filter(|(s, _)| s == &commit.stream)
                .map(|(_, e)| e)
                .collect();
            if cursor.read_to.get() + events.len() as u64 != commit.last_version.get() {
                continue;
            }
            let mut view = Arc::clone(&slot.view);
            let folded = events.iter().all(|event| {
                let erased: &dyn std::any::Any = *event;
                match erased.downcast_ref::<AnyEvent>() {
                    Some(any) => view_mut(&mut view).apply_emitted(any).is_ok(),
                    None => match event.encode() {
                        Ok(encoded) => view_mut(&mut view).apply_emitted(&AnyEvent::stored(encoded)).is_ok(),
                        Err(_) => false,
                    },
                }
            });
            let last_event = request
                .streams
                .iter()
                .find(|s| s.stream == commit.stream)
                .and_then(|s| s.events.last())
                .map(|e| e.event_id);
            if folded && last_event.is_some() {
                slot.view = view;
                cursor.read_to = commit.last_version;
                cursor.head = commit.last_version;
                cursor.last_event = last_event;
            }
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
                    id,
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
                Step::Read(request)
            }
            Phase::AppendDue(mut request) => {
                let id = self.new_request_id();
                // Unique on a first attempt, so this writes in place; a
                // re-send shares the request with `unresolved` and copies it.
                Arc::make_mut(&mut request).id = id;
                let deadline = self.now.saturating_add(self.policy.append_timeout).min(self.deadline);
                self.phase = Phase::Appending {
                    id,
                    request: Arc::clone(&request),
                    deadline,
                };
                self.stats.appends += 1;
                Step::Append(request)
            }
            phase @ (Phase::Reading { deadline: until, .. }
            | Phase::Appending { deadline: until, .. }
            | Phase::Backoff { until, .. }) => {
                self.phase = phase;
                Step::Wait { until }
            }
            Phase::Done => match self.outcome.take() {
                Some(outcome) => Step::Done(outcome),
                None => Step::Finished,
            },
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
            Ok(receipt) if receipt.command_id == self.context.command_id => {
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
            Ok(receipt) => self.finish(Err(CommandError::Store(StoreError::ContractViolation {
                operation: Operation::Append,
                message: format!(
                    "receipt for command {} answered an append of command {}",
                    receipt.command_id, self.context.command_id
                ),
            }))),
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
        if matches!(self.phase, Phase::Done | Phase::Finished) {
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
        self.next_request += 1;
        RequestId::new(self.next_request)
    }

    fn finish(&mut self, outcome: Result<Executed, CommandError<C::Error>>) {
        self.outcome = Some(outcome);
        self.phase = Phase::Done;
    }

    fn deadline_error(&mut self) -> CommandError<C::Error> {
        match (self.unresolved.is_some(), self.last_error.take()) {
            (true, last) => CommandError::OutcomeUnknown {
                command_id: self.context.command_id,
                attempts: self.attempts,
                last: last.unwrap_or(StoreError::Timeout {
                    operation: Operation::Append,
                    after: self.policy.append_timeout,
                }),
            },
            (false, last) => CommandError::DeadlineExceeded {
                attempts: self.attempts,
                last,
            },
        }
    }

    fn retry(&mut self, error: StoreError, then: AfterBackoff) {
        let max_attempts = self.policy.retry.max_attempts.max(1);
        if self.attempts >= max_attempts {
            let outcome = if self.unresolved.is_some() {
                CommandError::OutcomeUnknown {
                    command_id: self.context.command_id,
                    attempts: self.attempts,
                    last: error,
                }
            } else {
                CommandError::RetriesExhausted {
                    attempts: self.attempts,
                    last: error,
                }
            };
            self.finish(Err(outcome));
            return;
        }
        // The first conflict is retried at once: it proves the competing
        // commit has landed, so an immediate re-read sees it. Backoff only
        // pays off once the same command keeps losing (a hot stream).
        let first_conflict = matches!(error, StoreError::Conflict(_)) && self.stats.conflicts == 1;
        let delay = if first_conflict {
            std::time::Duration::ZERO
        } else {
            let ceiling = self.policy.retry.backoff_ceiling(self.attempts);
            let ceiling_nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
            std::time::Duration::from_nanos(self.entropy.up_to(ceiling_nanos))
        };
        let until = self.now.saturating_add(delay);
        self.last_error = Some(error);
        if until >= self.deadline {
            let outcome = self.deadline_error();
            self.finish(Err(outcome));
            return;
        }
        self.attempts += 1;
        if then == AfterBackoff::Reread {
            for cursor in &mut self.cursors {
                cursor.pending = true;
            }
        }
        self.phase = if delay.is_zero() {
            match then {
                AfterBackoff::Reread => Phase::ReadDue,
                AfterBackoff::Resend => match self.unresolved.clone() {
                    Some(request) => Phase::AppendDue(request),
                    None => Phase::ReadDue,
                },
            }
        } else {
            Phase::Backoff { until, then }
        };
    }

    /// Checks a read response against what was asked, decodes its events and
    /// folds them: into the stream's view for a view stream, into the held
    /// set (folded in global order before deciding) otherwise.
    fn absorb(
        &mut self,
        asked: &[(usize, StreamVersion)],
        response: ReadResponse,
    ) -> Result<(), CommandError<C::Error>> {
        let violation = |message: String| {
            CommandError::Store(StoreError::ContractViolation {
                operation: Operation::Read,
                message,
            })
        };
        if response.streams.len() != asked.len() {
            return Err(violation(format!(
                "asked for {} streams, got {}",
                asked.len(),
                response.streams.len()
            )));
        }
        let last_applied = self.applied.checked_sub(1).map(|i| self.held[i].position);
        let mut needs_refold = false;
        for (&(cursor, after), slice) in asked.iter().zip(response.streams) {
            if slice.stream != self.cursors[cursor].stream {
                let stream = &self.cursors[cursor].stream;
                return Err(violation(format!("asked for `{stream}`, got `{}`", slice.stream)));
            }
            let stream = &slice.stream;
            // A snapshot is used only if the stream's event at its version is
            // the one it was taken at; that event is already in the view.
            let mut skip = 0;
            if let Some((at, id)) = self.cursors[cursor].verify.take() {
                let confirmed = slice
                    .events
                    .first()
                    .is_some_and(|e| e.stream_id == *stream && e.version == at && e.event_id == id);
                if !confirmed {
                    self.drop_view_start(cursor);
                    continue;
                }
                skip = 1;
            }
            if slice.head < after {
                if self.cursors[cursor].view.is_some() && self.cursors[cursor].base == after {
                    // The view this stream started from (a cache entry)
                    // claims versions the store does not have: drop it and
                    // fold the stream from the start.
                    self.drop_view_start(cursor);
                    continue;
                }
                return Err(violation(format!(
                    "stream `{stream}` went back from version {after} to {}",
                    slice.head
                )));
            }
            let mut expected = after.next();
            for recorded in &slice.events {
                if recorded.stream_id != *stream || recorded.version != expected {
                    return Err(violation(format!(
                        "stream `{stream}`: expected version {expected}, got `{}`@{}",
                        recorded.stream_id, recorded.version
                    )));
                }
                expected = expected.next();
            }
            let read_to = StreamVersion::new(expected.get() - 1);
            if read_to > slice.head || (slice.head > after && slice.events.is_empty()) {
                return Err(violation(format!(
                    "stream `{stream}` reports head {} but returned events up to {read_to}",
                    slice.head
                )));
            }
            for recorded in &slice.events[skip..] {
                if recorded.metadata.command_id == self.context.command_id {
                    self.own_commit.push(recorded.clone());
                }
            }
            let view_slot = match self.cursors[cursor].view {
                Some(_) => C::views_mut(&mut self.state).and_then(|views| views.slot_mut(&slice.stream)),
                None => None,
            };
            if let Some(slot) = view_slot {
                // A view folds its own stream in stream order; how its events
                // interleave with other streams' does not matter to it.
                let view = view_mut(&mut slot.view);
                for recorded in &slice.events[skip..] {
                    view.apply_recorded(recorded)?;
                }
                if let Some(last) = slice.events.last() {
                    self.cursors[cursor].last_event = Some(last.event_id);
                }
            } else {
                self.held.reserve(slice.events.len());
                for recorded in &slice.events {
                    let event = crate::decode_recorded::<C::Event>(recorded)?;
                    if last_applied.is_some_and(|p| recorded.position <= p) {
                        needs_refold = true;
                    }
                    self.held.push(HeldEvent {
                        position: recorded.position,
                        cursor,
                        event,
                    });
                }
            }
            let state = &mut self.cursors[cursor];
            state.read_to = read_to;
            state.head = slice.head;
            state.pending = read_to < slice.head;
            state.primed = false;
            state.distrusted = false;
        }
        if needs_refold {
            self.held.sort_by_key(|e| e.position);
            // Views are folded per stream and stay; only the global-order
            // fold starts over.
            let views = C::views_mut(&mut self.state).map(std::mem::take);
            self.state = C::State::default();
            if let (Some(views), Some(slot)) = (views, C::views_mut(&mut self.state)) {
                *slot = views;
            }
            self.applied = 0;
        } else {
            // Everything not yet folded (earlier pages included) must be in
            // global order; the folded prefix already is and stays below it.
            self.held[self.applied..].sort_by_key(|e| e.position);
        }
        Ok(())
    }

    fn fold(&mut self) {
        for held in &self.held[self.applied..] {
            self.command
                .apply(&mut self.state, &self.cursors[held.cursor].stream, &held.event);
        }
        self.applied = self.held.len();
    }

    fn decide(&mut self) {
        if !self.own_commit.is_empty() {
            // The command is known to have committed. If settling fails
            // (transient error, timeout, attempts or deadline used up) the
            // result must stay "may have committed": treating the settle
            // append as unresolved keeps retries re-sending it and turns
            // giving up into `OutcomeUnknown`, never "nothing was written".
            // (Found by the simulator; see sim/regression-seeds.txt.)
            let request = Arc::new(self.settle_request());
            self.unresolved = Some(Arc::clone(&request));
            self.phase = Phase::AppendDue(request);
            return;
        }
        self.fold();
        let mut decision = Decision::new();
        let verdict = self.command.decide(&self.state, &mut decision);
        // A refusal or an empty decision is final and no append checks it,
        // so it must not rest on cached events that no read has confirmed
        // (a stale cache would refuse, say, a transfer the real balance
        // covers): read what is newer on those streams and decide again.
        let settles_here = verdict.is_err()
            || (decision.events.is_empty()
                && decision
                    .reads
                    .iter()
                    .all(|s| self.cursors.iter().any(|c| &c.stream == s)));
        if settles_here && self.cursors.iter().any(|c| c.primed) {
            for cursor in self.cursors.iter_mut().filter(|c| c.primed) {
                cursor.pending = true;
            }
            self.phase = Phase::ReadDue;
            return;
        }
        if let Err(error) = verdict {
            self.finish(Err(CommandError::Domain(error)));
            return;
        }
        let Decision {
            events,
            reads,
            read_views,
            expectations,
            missing_view,
        } = decision;
        if let Some((stream, kind)) = missing_view {
            self.finish(Err(CommandError::MissingView { stream, view: kind }));
            return;
        }
        let new_streams: Vec<StreamId> = reads
            .into_iter()
            .filter(|s| !self.cursors.iter().any(|c| &c.stream == s))
            .collect();
        if !new_streams.is_empty() {
            self.discovery_rounds += 1;
            self.stats.discovery_rounds += 1;
            if self.discovery_rounds > self.policy.discovery_limit {
                self.finish(Err(CommandError::DiscoveryLimit {
                    limit: self.policy.discovery_limit,
                    pending: new_streams,
                }));
                return;
            }
            for stream in new_streams {
                let view = read_views
                    .iter()
                    .find(|(s, _)| s == &stream)
                    .map(|(_, kind)| *kind)
                    .or_else(|| self.command.view_of(&stream));
                if let (Some(kind), Some(views)) = (view, C::views_mut(&mut self.state)) {
                    views.ensure(&stream, kind);
                }
                self.cursors.push(StreamCursor::new(stream, view));
            }
            self.phase = Phase::ReadDue;
            return;
        }
        let unread = events
            .iter()
            .map(|(s, _)| s)
            .chain(expectations.iter().map(|(s, _)| s))
            .find(|s| !self.cursors.iter().any(|c| &c.stream == *s));
        if let Some(stream) = unread {
            let stream = stream.clone();
            self.finish(Err(CommandError::UnreadStream { stream }));
            return;
        }
        if let Err(error) = self.check_view_events(&events) {
            self.finish(Err(error));
            return;
        }
        if events.is_empty() {
            let executed = Executed {
                command_id: self.context.command_id,
                attempts: self.attempts,
                appended: None,
                stats: self.stats.clone(),
            };
            self.finish(Ok(executed));
            return;
        }
        match self.build_append(&events, &expectations) {
            Ok(request) => {
                if self.cursors.iter().any(|c| c.view.is_some()) {
                    self.decided = events;
                }
                self.phase = Phase::AppendDue(Arc::new(request));
            }
            Err(error) => self.finish(Err(error)),
        }
    }

    /// Refuses, before anything is sent, an event addressed to a view stream
    /// that the stream's view could not fold: stored, it would make the
    /// stream unreadable through that view for good.
    fn check_view_events(&mut self, events: &[(StreamId, C::Event)]) -> Result<(), CommandError<C::Error>> {
        let Some(views) = C::views_mut(&mut self.state) else {
            return Ok(());
        };
        for (stream, event) in events {
            let Some(slot) = views.slot_mut(stream) else { continue };
            let erased: &dyn std::any::Any = event;
            let verdict = match erased.downcast_ref::<AnyEvent>() {
                Some(any) => slot.view.accepts(any),
                None => match event.encode() {
                    Ok(encoded) => slot.view.accepts(&AnyEvent::stored(encoded)),
                    Err(source) => {
                        return Err(CommandError::Encode {
                            stream: stream.clone(),
                            source,
                        })
                    }
                },
            };
            if let Err(source) = verdict {
                return Err(CommandError::ViewCannotFold {
                    stream: stream.clone(),
                    view: slot.kind,
                    source,
                });
            }
        }
        Ok(())
    }

    /// Re-sends what this command id already committed, so that the store
    /// answers with the original receipt. Each stream is pinned to the
    /// version before its first committed event: the stream is past that
    /// already, so a store that failed to recognise the command id would
    /// refuse with a conflict rather than write twice.
    fn settle_request(&self) -> AppendRequest {
        let mut streams: Vec<StreamAppend> = Vec::new();
        for recorded in &self.own_commit {
            let event = NewEvent {
                event_id: recorded.event_id,
                event_type: recorded.event_type.clone(),
                schema_version: recorded.schema_version,
                payload: recorded.payload.clone(),
            };
            match streams.iter_mut().find(|s| s.stream == recorded.stream_id) {
                Some(entry) => entry.events.push(event),
                None => streams.push(StreamAppend {
                    stream: recorded.stream_id.clone(),
                    expected: ExpectedVersion::Exact(StreamVersion::new(recorded.version.get().saturating_sub(1))),
                    events: vec![event],
                }),
            }
        }
        let metadata = self
            .own_commit
            .first()
            .map(|e| e.metadata.clone())
            .unwrap_or_else(|| Arc::new(EventMetadata::new(self.context.command_id, self.now)));
        AppendRequest {
            id: RequestId::new(0),
            metadata,
            streams,
        }
    }

    fn build_append(
        &mut self,
        events: &[(StreamId, C::Event)],
        expectations: &[(StreamId, ExpectedVersion)],
    ) -> Result<AppendRequest, CommandError<C::Error>> {
        let mut streams = Vec::with_capacity(self.cursors.len());
        for cursor in &self.cursors {
            let expected = expectations
                .iter()
                .find(|(s, _)| s == &cursor.stream)
                .map_or(ExpectedVersion::from_read(cursor.head), |(_, e)| *e);
            // Sized up front: a command emitting many events would otherwise
            // grow (and copy) the vector several times.
            let count = if self.cursors.len() == 1 {
                events.len()
            } else {
                events.iter().filter(|(s, _)| s == &cursor.stream).count()
            };
            let mut new_events = Vec::with_capacity(count);
            for (_, event) in events.iter().filter(|(s, _)| s == &cursor.stream) {
                let encoded = event.encode().map_err(|source| CommandError::Encode {
                    stream: cursor.stream.clone(),
                    source,
                })?;
                new_events.push(NewEvent {
                    event_id: EventId::v7(self.now, self.entropy.bytes10()),
                    event_type: encoded.event_type,
                    schema_version: encoded.schema_version,
                    payload: encoded.payload,
                });
            }
            if new_events.is_empty() && expected == ExpectedVersion::Any {
                continue;
            }
            streams.push(StreamAppend {
                stream: cursor.stream.clone(),
                expected,
                events: new_events,
            });
        }
        let metadata = EventMetadata {
            command_id: self.context.command_id,
            correlation_id: self.context.correlation_id,
            causation_id: self.context.causation_id,
            timestamp: self.now,
            user: self.context.user.clone(),
        };
        Ok(AppendRequest {
            id: RequestId::new(0),
            metadata: Arc::new(metadata),
            streams,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Conflict, EventType, Payload, StreamSlice};
    use serde::{Deserialize, Serialize};
    use std::num::NonZeroU32;

    #[derive(Debug, Serialize, Deserialize)]
    enum Ev {
        At(u64),
    }
    impl Event for Ev {}

    #[derive(Debug, thiserror::Error)]
    #[error("folded out of global order: {0:?}")]
    struct OutOfOrder(Vec<u64>);

    /// Folds the global positions it sees (carried in the payload) and
    /// refuses if they were applied out of order.
    struct Order(Vec<StreamId>);

    impl Command for Order {
        type Event = Ev;
        type State = Vec<u64>;
        type Error = OutOfOrder;
        fn streams(&self) -> Vec<StreamId> {
            self.0.clone()
        }
        fn apply(&self, seen: &mut Vec<u64>, _: &StreamId, event: &Ev) {
            let Ev::At(p) = event;
            seen.push(*p);
        }
        fn decide(&self, seen: &Vec<u64>, _: &mut Decision<Ev>) -> Result<(), OutOfOrder> {
            if seen.windows(2).all(|w| w[0] < w[1]) {
                Ok(())
            } else {
                Err(OutOfOrder(seen.clone()))
            }
        }
    }

    fn stream(name: &str) -> StreamId {
        StreamId::new(name).expect("valid")
    }

    fn recorded(stream: &StreamId, version: u64, position: u64) -> RecordedEvent {
        let encoded = Ev::At(position).encode().expect("encodes");
        RecordedEvent {
            event_id: EventId::v7(Time::ZERO, [0; 10]),
            stream_id: stream.clone(),
            version: StreamVersion::new(version),
            position: GlobalPosition::new(position),
            event_type: EventType::new("At").expect("valid"),
            schema_version: 1,
            payload: Payload::from_trusted_json(encoded.payload.as_json().to_owned()),
            metadata: Arc::new(EventMetadata::new(CommandId::v7(Time::ZERO, [9; 10]), Time::ZERO)),
        }
    }

    /// A store holding the given streams, answering reads with paging.
    fn answer(request: &ReadRequest, data: &[(StreamId, Vec<RecordedEvent>)]) -> ReadResponse {
        let page = request.page_size.map_or(usize::MAX, |p| p.get() as usize);
        ReadResponse {
            streams: request
                .streams
                .iter()
                .map(|read| {
                    let events = data
                        .iter()
                        .find(|(s, _)| s == &read.stream)
                        .map(|(_, e)| e.as_slice())
                        .unwrap_or(&[]);
                    StreamSlice {
                        stream: read.stream.clone(),
                        head: StreamVersion::new(events.len() as u64),
                        events: events
                            .iter()
                            .skip(read.after.get() as usize)
                            .take(page)
                            .cloned()
                            .collect(),
                    }
                })
                .collect(),
        }
    }

    fn run(
        command: Order,
        policy: ExecutionPolicy,
        data: &[(StreamId, Vec<RecordedEvent>)],
    ) -> Result<Executed, CommandError<OutOfOrder>> {
        let now = Time::from_unix_millis(1);
        let ctx = ExecutionContext::new(CommandId::v7(now, [1; 10]));
        let mut machine = CommandMachine::new(command, policy, ctx, now, 3);
        for _ in 0..100 {
            match machine.poll() {
                Step::Read(request) => machine.on_read(request.id, Ok(answer(&request, data)), now),
                Step::Done(result) => return result,
                other => panic!("unexpected step {other:?}"),
            }
        }
        panic!("did not finish");
    }

    #[test]
    fn paged_reads_of_several_streams_fold_in_global_order() {
        let (a, b) = (stream("a"), stream("b"));
        let data = vec![
            (
                a.clone(),
                vec![recorded(&a, 1, 1), recorded(&a, 2, 3), recorded(&a, 3, 5)],
            ),
            (b.clone(), vec![recorded(&b, 1, 2), recorded(&b, 2, 10)]),
        ];
        let policy = ExecutionPolicy::default().with_page_size(NonZeroU32::new(2));
        let done = run(Order(vec![a, b]), policy, &data).expect("folds 1,2,3,5,10 in order");
        assert_eq!(done.stats.reads, 2, "two pages");
    }

    #[test]
    fn a_response_with_a_gap_is_a_contract_violation_not_a_fold() {
        let a = stream("a");
        let data = vec![(a.clone(), vec![recorded(&a, 1, 1), recorded(&a, 3, 2)])];
        let result = run(Order(vec![a]), ExecutionPolicy::default(), &data);
        assert!(
            matches!(result, Err(CommandError::Store(StoreError::ContractViolation { .. }))),
            "{result:?}"
        );
    }

    #[test]
    fn a_stale_response_is_ignored_and_counted() {
        let a = stream("a");
        let now = Time::from_unix_millis(1);
        let ctx = ExecutionContext::new(CommandId::v7(now, [1; 10]));
        let mut machine = CommandMachine::new(Order(vec![a.clone()]), ExecutionPolicy::default(), ctx, now, 3);
        let Step::Read(request) = machine.poll() else {
            panic!("reads first")
        };
        let stale = RequestId::new(request.id.get() + 40);
        machine.on_read(stale, Ok(answer(&request, &[])), now);
        assert_eq!(machine.stats().ignored_responses, 1);
        assert_eq!(
            machine.awaiting(),
            Some(request.id),
            "still waiting for the real answer"
        );
        machine.on_read(request.id, Ok(answer(&request, &[])), now);
        assert!(matches!(machine.poll(), Step::Done(Ok(_))));
        assert!(matches!(machine.poll(), Step::Finished));
    }

    #[test]
    fn an_append_abandoned_at_the_deadline_reports_an_unknown_outcome() {
        struct Write(StreamId);
        impl Command for Write {
            type Event = Ev;
            type State = ();
            type Error = OutOfOrder;
            fn streams(&self) -> Vec<StreamId> {
                vec![self.0.clone()]
            }
            fn apply(&self, _: &mut (), _: &StreamId, _: &Ev) {}
            fn decide(&self, _: &(), out: &mut Decision<Ev>) -> Result<(), OutOfOrder> {
                out.emit(&self.0, Ev::At(0));
                Ok(())
            }
        }
        let a = stream("a");
        let now = Time::from_unix_millis(1);
        let policy = ExecutionPolicy::default().with_timeout(std::time::Duration::from_secs(1));
        let ctx = ExecutionContext::new(CommandId::v7(now, [1; 10]));
        let mut machine = CommandMachine::new(Write(a), policy, ctx, now, 3);
        let Step::Read(request) = machine.poll() else {
            panic!("reads first")
        };
        machine.on_read(request.id, Ok(answer(&request, &[])), now);
        let Step::Append(_) = machine.poll() else {
            panic!("then appends")
        };
        let Step::Wait { until } = machine.poll() else {
            panic!("then waits")
        };
        assert_eq!(
            until,
            now.saturating_add(std::time::Duration::from_secs(1)),
            "bounded by the overall deadline"
        );
        machine.on_wake(until);
        match machine.poll() {
            Step::Done(Err(CommandError::OutcomeUnknown { last, .. })) => {
                assert!(
                    matches!(
                        last,
                        StoreError::Timeout {
                            operation: Operation::Append,
                            ..
                        }
                    ),
                    "{last:?}"
                );
            }
            other => panic!("expected an unknown outcome, got {other:?}"),
        }
    }

    #[test]
    fn a_failed_settle_of_an_own_commit_never_claims_nothing_was_written() {
        // A re-execution finds its own command id already committed; the
        // append that would fetch the original receipt fails transiently and
        // no retries are left. The command did commit, so the error must say
        // it may have, not that nothing was written.
        struct Write(StreamId);
        impl Command for Write {
            type Event = Ev;
            type State = ();
            type Error = OutOfOrder;
            fn streams(&self) -> Vec<StreamId> {
                vec![self.0.clone()]
            }
            fn apply(&self, _: &mut (), _: &StreamId, _: &Ev) {}
            fn decide(&self, _: &(), out: &mut Decision<Ev>) -> Result<(), OutOfOrder> {
                out.emit(&self.0, Ev::At(0));
                Ok(())
            }
        }
        let a = stream("a");
        let now = Time::from_unix_millis(1);
        let command_id = CommandId::v7(now, [1; 10]);
        let mut committed = recorded(&a, 1, 1);
        committed.metadata = Arc::new(EventMetadata::new(command_id, now));
        let data = vec![(a.clone(), vec![committed])];
        let policy = ExecutionPolicy::default().with_retry(crate::RetryPolicy::no_retries());
        let mut machine = CommandMachine::new(Write(a), policy, ExecutionContext::new(command_id), now, 3);
        let Step::Read(request) = machine.poll() else {
            panic!("reads first")
        };
        machine.on_read(request.id, Ok(answer(&request, &data)), now);
        let Step::Append(settle) = machine.poll() else {
            panic!("then settles")
        };
        machine.on_append(
            settle.id,
            Err(StoreError::transient(Operation::Append, "connection reset")),
            now,
        );
        match machine.poll() {
            Step::Done(Err(error)) => assert!(error.may_have_committed(), "{error:?}"),
            other => panic!("expected an unknown outcome, got {other:?}"),
        }
    }

    #[test]
    fn a_refusal_never_rests_on_unconfirmed_cached_events() {
        // The cache says the account is empty; the store says it holds 50.
        // Refusing a withdrawal of 10 from the cache alone would be wrong:
        // the machine must confirm by reading before it refuses.
        #[derive(Debug, thiserror::Error)]
        #[error("insufficient funds: {0}")]
        struct Insufficient(u64);
        struct Withdraw(StreamId, u64);
        impl Command for Withdraw {
            type Event = Ev;
            type State = u64;
            type Error = Insufficient;
            fn streams(&self) -> Vec<StreamId> {
                vec![self.0.clone()]
            }
            fn apply(&self, balance: &mut u64, _: &StreamId, event: &Ev) {
                let Ev::At(amount) = event;
                *balance += amount;
            }
            fn decide(&self, balance: &u64, out: &mut Decision<Ev>) -> Result<(), Insufficient> {
                if *balance < self.1 {
                    return Err(Insufficient(*balance));
                }
                out.emit(&self.0, Ev::At(0));
                Ok(())
            }
        }
        let a = stream("a");
        let now = Time::from_unix_millis(1);
        let ctx = ExecutionContext::new(CommandId::v7(now, [1; 10]));
        let mut machine = CommandMachine::new(Withdraw(a.clone(), 10), ExecutionPolicy::default(), ctx, now, 3);
        assert!(machine.prime(&a, &[]), "stale: the cache saw the stream empty");
        let Step::Read(request) = machine.poll() else {
            panic!("a refusal from cached state must be confirmed by a read first")
        };
        assert_eq!(request.streams[0].after, StreamVersion::NONE);
        let data = vec![(a.clone(), vec![recorded(&a, 1, 50)])];
        machine.on_read(request.id, Ok(answer(&request, &data)), now);
        let Step::Append(append) = machine.poll() else {
            panic!("the real balance covers the withdrawal")
        };
        assert_eq!(
            append.streams[0].expected,
            ExpectedVersion::Exact(StreamVersion::new(1))
        );
    }

    /// A counter view: how many events its stream holds.
    #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
    struct Count(u64);

    impl crate::View for Count {
        type Event = Ev;
        const NAME: &'static str = "count";
        fn apply(&mut self, _: &Ev) {
            self.0 += 1;
        }
    }

    /// A view command written by hand (what `#[derive(Command)]` writes):
    /// reads every stream through `Count`, appends one event to the first.
    struct Bump(Vec<StreamId>);

    impl Command for Bump {
        type Event = AnyEvent;
        type State = crate::Views;
        type Error = OutOfOrder;
        fn streams(&self) -> Vec<StreamId> {
            self.0.clone()
        }
        fn view_of(&self, _: &StreamId) -> Option<ViewKind> {
            Some(ViewKind::of::<Count>())
        }
        fn views_mut(state: &mut crate::Views) -> Option<&mut crate::Views> {
            Some(state)
        }
        fn apply(&self, _: &mut crate::Views, _: &StreamId, _: &AnyEvent) {}
        fn decide(&self, _: &crate::Views, out: &mut Decision<AnyEvent>) -> Result<(), OutOfOrder> {
            crate::Emit::new(out).emit(&self.0[0], Ev::At(0));
            Ok(())
        }
    }

    fn count(stream: &StreamId, n: u64) -> StreamView {
        count_ending(stream, n, None)
    }

    fn count_ending(stream: &StreamId, n: u64, last_event: Option<EventId>) -> StreamView {
        let kind = ViewKind::of::<Count>();
        StreamView {
            stream: stream.clone(),
            kind,
            version: StreamVersion::new(n),
            base_version: StreamVersion::new(n),
            last_event,
            view: kind.decode(&n.to_string()).expect("a count decodes"),
        }
    }

    fn count_of(views: &[StreamView], stream: &StreamId) -> Option<(u64, u64)> {
        views
            .iter()
            .find(|v| &v.stream == stream)
            .map(|v| (v.version.get(), v.view.downcast::<Count>().map_or(u64::MAX, |c| c.0)))
    }

    #[test]
    fn a_primed_view_that_is_stale_costs_a_conflict_and_a_read_of_the_tail() {
        let (a, b) = (stream("a"), stream("b"));
        let now = Time::from_unix_millis(1);
        let ctx = ExecutionContext::new(CommandId::v7(now, [1; 10]));
        let mut machine = CommandMachine::new(
            Bump(vec![a.clone(), b.clone()]),
            ExecutionPolicy::default(),
            ctx,
            now,
            3,
        );
        assert_eq!(machine.unprimed_views().len(), 2);
        assert!(machine.prime_view(count(&a, 1)));
        assert!(machine.prime_view(count(&b, 1)));
        let Step::Append(append) = machine.poll() else {
            panic!("no read needed")
        };
        assert_eq!(
            append.streams[0].expected,
            ExpectedVersion::Exact(StreamVersion::new(1))
        );
        let conflict = Conflict {
            stream: a.clone(),
            expected: append.streams[0].expected,
            actual: StreamVersion::new(2),
        };
        machine.on_append(append.id, Err(StoreError::Conflict(conflict)), now);
        let Step::Read(reread) = machine.poll() else {
            panic!("re-reads after the conflict")
        };
        assert!(
            reread.streams.iter().all(|r| r.after == StreamVersion::new(1)),
            "only the tail: {reread:?}"
        );
        let data = vec![
            (a.clone(), vec![recorded(&a, 1, 90), recorded(&a, 2, 50)]),
            (b.clone(), vec![recorded(&b, 1, 100)]),
        ];
        machine.on_read(reread.id, Ok(answer(&reread, &data)), now);
        let Step::Append(retry) = machine.poll() else {
            panic!("decides again on the tail")
        };
        assert_eq!(retry.streams[0].expected, ExpectedVersion::Exact(StreamVersion::new(2)));
        let receipt = AppendReceipt {
            command_id: retry.command_id(),
            streams: vec![crate::StreamCommit {
                stream: a.clone(),
                first_version: StreamVersion::new(3),
                last_version: StreamVersion::new(3),
                positions: vec![GlobalPosition::new(101)],
            }],
            deduplicated: false,
        };
        machine.on_append(retry.id, Ok(receipt), now);
        assert!(matches!(machine.poll(), Step::Done(Ok(_))));
        let views = machine.take_views();
        assert_eq!(count_of(&views, &a), Some((3, 3)), "cached 1 + tail 1 + own commit 1");
        assert_eq!(count_of(&views, &b), Some((1, 1)));
        assert!(machine.stale_views().is_empty());
    }

    #[test]
    fn a_primed_view_ahead_of_the_store_is_dropped_and_the_stream_folded_from_the_start() {
        let a = stream("a");
        let now = Time::from_unix_millis(1);
        let ctx = ExecutionContext::new(CommandId::v7(now, [1; 10]));
        let mut machine = CommandMachine::new(Bump(vec![a.clone()]), ExecutionPolicy::default(), ctx, now, 3);
        // A snapshot claiming 5 events of a stream that has 2.
        assert!(machine.prime_view(count(&a, 5)));
        let Step::Append(append) = machine.poll() else {
            panic!("no read needed")
        };
        let conflict = Conflict {
            stream: a.clone(),
            expected: append.streams[0].expected,
            actual: StreamVersion::new(2),
        };
        machine.on_append(append.id, Err(StoreError::Conflict(conflict)), now);
        let Step::Read(full) = machine.poll() else {
            panic!("the conflict shows the view ahead of the store: read from the start")
        };
        assert_eq!(full.streams[0].after, StreamVersion::NONE);
        let data = vec![(a.clone(), vec![recorded(&a, 1, 1), recorded(&a, 2, 2)])];
        machine.on_read(full.id, Ok(answer(&full, &data)), now);
        let Step::Append(retry) = machine.poll() else {
            panic!("decides on the real stream")
        };
        assert_eq!(retry.streams[0].expected, ExpectedVersion::Exact(StreamVersion::new(2)));
        assert_eq!(machine.stale_views().len(), 1);
        assert_eq!(machine.stats().stale_views, 1);
        let views = machine.take_views();
        assert_eq!(count_of(&views, &a), Some((2, 2)), "the fold of the store's two events");
    }

    #[test]
    fn a_snapshot_is_used_only_if_the_stream_holds_the_event_it_ends_on() {
        let a = stream("a");
        let now = Time::from_unix_millis(1);
        let history = vec![(a.clone(), (1..=4).map(|v| recorded(&a, v, v)).collect::<Vec<_>>())];
        let at_3 = history[0].1[2].event_id;
        for (claimed, last_event, trusted) in [
            (3, at_3, true),
            // Another history with as many events: same version, other event.
            (3, EventId::v7(now, [0xEE; 10]), false),
            // More events than the stream has.
            (9, at_3, false),
        ] {
            let ctx = ExecutionContext::new(CommandId::v7(now, [1; 10]));
            let mut machine = CommandMachine::new(Bump(vec![a.clone()]), ExecutionPolicy::default(), ctx, now, 3);
            // The snapshot's count is made up (100) so that a fold that used
            // it shows.
            let mut snapshot = count_ending(&a, claimed, Some(last_event));
            snapshot.view = ViewKind::of::<Count>().decode("100").expect("decodes");
            assert!(machine.prime_snapshot(snapshot));
            let Step::Read(read) = machine.poll() else {
                panic!("a snapshot is checked by a read")
            };
            assert_eq!(
                read.streams[0].after,
                StreamVersion::new(claimed - 1),
                "from its last event"
            );
            machine.on_read(read.id, Ok(answer(&read, &history)), now);
            if !trusted {
                let Step::Read(full) = machine.poll() else {
                    panic!("claimed {claimed}: dropped, read from the start")
                };
                assert_eq!(full.streams[0].after, StreamVersion::NONE);
                machine.on_read(full.id, Ok(answer(&full, &history)), now);
            }
            let Step::Append(append) = machine.poll() else {
                panic!("decides")
            };
            assert_eq!(
                append.streams[0].expected,
                ExpectedVersion::Exact(StreamVersion::new(4))
            );
            machine.on_append(append.id, Err(StoreError::transient(Operation::Append, "x")), now);
            let views = machine.take_views();
            let expected = if trusted { 101 } else { 4 };
            assert_eq!(count_of(&views, &a), Some((4, expected)), "claimed {claimed}");
            assert_eq!(machine.stale_views().len(), usize::from(!trusted));
        }
    }

    #[test]
    fn a_cached_view_that_conflicted_and_was_not_read_again_is_not_handed_back() {
        let a = stream("a");
        let now = Time::from_unix_millis(1);
        let ctx = ExecutionContext::new(CommandId::v7(now, [1; 10]));
        let policy = ExecutionPolicy::default().with_retry(crate::RetryPolicy::no_retries());
        let mut machine = CommandMachine::new(Bump(vec![a.clone()]), policy, ctx, now, 3);
        assert!(machine.prime_view(count(&a, 1)));
        let Step::Append(append) = machine.poll() else {
            panic!("no read needed")
        };
        let conflict = Conflict {
            stream: a.clone(),
            expected: append.streams[0].expected,
            actual: StreamVersion::new(2),
        };
        machine.on_append(append.id, Err(StoreError::Conflict(conflict)), now);
        assert!(matches!(
            machine.poll(),
            Step::Done(Err(CommandError::RetriesExhausted { .. }))
        ));
        assert!(machine.take_views().is_empty(), "the stale entry must not go back");
        assert_eq!(machine.stale_views(), vec![(a, ViewKind::of::<Count>())]);
    }
}
