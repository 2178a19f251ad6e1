//! The relay: a [`Sink`] that publishes every event of the global log to a
//! JetStream stream, in order and exactly once, and saves the subscription's
//! checkpoint only once the server acknowledged everything below it.
//!
//! How it keeps its promises (docs/relay.md has the long version):
//! - every message carries `Nats-Msg-Id` = the event id (the server's
//!   duplicate window drops a re-publish) **and**
//!   `Nats-Expected-Last-Sequence` = the stream sequence the previous event
//!   got. The server stores a message only right after its predecessor, so
//!   a publish that failed (a full stream, a lost connection) makes every
//!   later one in flight fail too: the JetStream stream never holds a gap
//!   or an inversion, whatever happened in the pipeline;
//! - after any failure, and at start, the relay *resynchronises*: it reads
//!   the stream's last message and skips every event at or below the global
//!   position it carries. A relay that crashed after publishing and before
//!   saving its checkpoint therefore re-publishes nothing, independent of
//!   the duplicate window;
//! - the subscription's checkpoint is saved (by the runner) only after the
//!   batch is fully acknowledged.
//!
//! The relay must be the only writer of its JetStream stream.

use crate::headers::{headers_of, position_of};
use crate::SubjectFn;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{self, ErrorCode};
use eventcore::{
    Batch, CheckpointMode, ConsumerError, EventFilter, GlobalPosition, HandleError, PoisonEvent, RecordedEvent,
    SubscriptionPolicy,
};
use eventcore_store::{CheckpointError, CheckpointStore, EventStore, FencingToken};
use eventcore_tokio::{Runner, Sink};
use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::watch;

/// How a relay publishes.
///
/// ```
/// use eventcore_nats::RelayOptions;
/// let options = RelayOptions::new("EVENTS", "events").with_max_in_flight(64);
/// assert_eq!(options.max_in_flight(), 64);
/// assert_eq!(options.stream(), "EVENTS");
/// ```
#[derive(Clone, Debug)]
pub struct RelayOptions {
    stream: String,
    subjects: SubjectFn,
    max_in_flight: usize,
    ack_timeout: Duration,
}

impl RelayOptions {
    /// Publishes to the JetStream stream named `stream` (which must exist
    /// and capture the subjects), under [`crate::default_subject`] with
    /// `subject_prefix`, at most 256 publishes awaiting their ack.
    pub fn new(stream: impl Into<String>, subject_prefix: impl Into<String>) -> Self {
        RelayOptions {
            stream: stream.into(),
            subjects: SubjectFn::default_under(subject_prefix),
            max_in_flight: 256,
            ack_timeout: Duration::from_secs(5),
        }
    }

    /// How long a publish may wait for its ack, counted from when it was
    /// sent (default 5 s). A publish that times out counts as failed: the
    /// relay resynchronises and publishes again what the stream lacks.
    pub fn with_ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = timeout;
        self
    }

    /// Replaces the subject function.
    pub fn with_subjects(mut self, subjects: SubjectFn) -> Self {
        self.subjects = subjects;
        self
    }

    /// At most `n` publishes awaiting their ack (at least 1).
    pub fn with_max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// The JetStream stream's name.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The bound on publishes awaiting their ack.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }
}

/// What the relay is waiting for, when it is not making progress.
///
/// ```
/// use eventcore_nats::Waiting;
/// let w = Waiting::StreamFull { error: "maximum messages exceeded".into() };
/// assert_eq!(w.to_string(), "the JetStream stream is full and refuses new messages: maximum messages exceeded");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Waiting {
    /// The server does not answer: it is down, the connection dropped, or
    /// acks time out. Retried with the runner's backoff.
    Connection {
        /// The last error.
        error: String,
    },
    /// The stream refuses messages because a limit (`max_msgs`,
    /// `max_bytes`, account storage) is reached and it discards new ones.
    /// The relay resumes once room is made.
    StreamFull {
        /// The server's refusal.
        error: String,
    },
    /// No JetStream stream of that name, or none captures the subject.
    StreamMissing {
        /// The error.
        error: String,
    },
    /// The server refused for another reason.
    Refused {
        /// The server's refusal.
        error: String,
    },
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Waiting::Connection { error } => write!(f, "waiting for the NATS server to answer: {error}"),
            Waiting::StreamFull { error } => {
                write!(f, "the JetStream stream is full and refuses new messages: {error}")
            }
            Waiting::StreamMissing { error } => write!(f, "the JetStream stream is missing: {error}"),
            Waiting::Refused { error } => write!(f, "the JetStream server refused a message: {error}"),
        }
    }
}

/// What a relay reports while it runs ([`JetStreamSink::status`]); the
/// subscription side (checkpoint, lease, buffer) is the runner's
/// `RunnerStatus`.
///
/// ```
/// use eventcore_nats::RelayStatus;
/// let s = RelayStatus::default();
/// assert!(s.waiting.is_none());
/// assert_eq!(s.published, 0);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelayStatus {
    /// What it waits for; `None` while publishing goes through.
    pub waiting: Option<Waiting>,
    /// Every event at or below this position is in the JetStream stream
    /// (or was parked).
    pub confirmed_through: GlobalPosition,
    /// The JetStream stream's last sequence, as the relay knows it.
    pub stream_sequence: u64,
    /// Messages the server stored (acknowledged, not duplicates).
    pub published: u64,
    /// Acks the server flagged as duplicates (a re-publish its duplicate
    /// window caught).
    pub duplicates: u64,
    /// Events not re-published because a resynchronisation found them in
    /// the stream already.
    pub skipped: u64,
    /// Resynchronisations with the stream (start, and after every failure).
    pub resyncs: u64,
    /// Publishes that failed (each failure is retried).
    pub failures: u64,
    /// The most publishes ever awaiting their ack at once (at most
    /// [`RelayOptions::max_in_flight`]).
    pub max_in_flight_seen: usize,
}

/// The relay's [`Sink`]: publishes batches to JetStream and keeps the
/// checkpoint in a [`CheckpointStore`]. Built by [`relay`].
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use eventcore::CheckpointMode;
/// use eventcore_nats::{relay, RelayOptions};
/// use eventcore_tokio::{MemoryCheckpointStore, MemoryEventStore, Sink};
/// // A client that connects in the background: nothing is sent until the runner runs.
/// let client = async_nats::ConnectOptions::new()
///     .retry_on_initial_connect()
///     .connect("127.0.0.1:4222")
///     .await
///     .unwrap();
/// let runner = relay("to-nats", MemoryEventStore::new(), MemoryCheckpointStore::new(),
///     async_nats::jetstream::new(client), RelayOptions::new("EVENTS", "events"));
/// let sink = runner.sink();
/// assert_eq!(sink.checkpoint_mode(), CheckpointMode::AfterBatch);
/// assert_eq!(sink.options().max_in_flight(), 256);
/// assert!(sink.status().borrow().waiting.is_none());
/// # });
/// ```
pub struct JetStreamSink<C> {
    checkpoints: C,
    claimed: Option<(String, FencingToken)>,
    jetstream: jetstream::Context,
    options: RelayOptions,
    /// The stream's last sequence, when known (`None`: resynchronise
    /// before publishing).
    last_sequence: Option<u64>,
    confirmed_through: GlobalPosition,
    /// The event acknowledged last (stored or duplicate).
    last_acked: Option<eventcore::EventId>,
    status: watch::Sender<RelayStatus>,
}

impl<C> fmt::Debug for JetStreamSink<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamSink")
            .field("options", &self.options)
            .field("last_sequence", &self.last_sequence)
            .field("confirmed_through", &self.confirmed_through)
            .finish_non_exhaustive()
    }
}

/// A relay named `name` (its checkpoint, lease and dead-letter key) from
/// `store` to the JetStream stream of `options`, its checkpoint in
/// `checkpoints`. Add a lease, dead letters (for events the subject
/// function refuses) and wake-ups on the returned runner as for any
/// subscription.
///
/// Its default policy is the runner's, except that transient failures back
/// off to at most one second (not five), so that the relay resumes soon
/// after the server comes back or room is made.
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use eventcore_nats::{relay, RelayOptions};
/// use eventcore_tokio::{MemoryCheckpointStore, MemoryEventStore};
/// let client = async_nats::connect("127.0.0.1:4222").await?;
/// let jetstream = async_nats::jetstream::new(client);
/// let events = MemoryEventStore::new();
/// let mut runner = relay("to-nats", events.clone(), MemoryCheckpointStore::new(), jetstream,
///     RelayOptions::new("EVENTS", "events"))
///     .with_wakeups(events.watch_head());
/// runner.run().await?;
/// # Ok(()) }
/// ```
pub fn relay<S: EventStore, C: CheckpointStore>(
    name: impl Into<String>,
    store: S,
    checkpoints: C,
    jetstream: jetstream::Context,
    options: RelayOptions,
) -> Runner<S, JetStreamSink<C>> {
    let (status, _) = watch::channel(RelayStatus::default());
    let sink = JetStreamSink {
        checkpoints,
        claimed: None,
        jetstream,
        options,
        last_sequence: None,
        confirmed_through: GlobalPosition::START,
        last_acked: None,
        status,
    };
    let mut policy = SubscriptionPolicy::default();
    policy.retry.max_backoff = Duration::from_secs(1);
    Runner::with_sink(name, store, sink, EventFilter::all()).with_policy(policy)
}

impl<C> JetStreamSink<C> {
    /// A receiver of the relay's status.
    pub fn status(&self) -> watch::Receiver<RelayStatus> {
        self.status.subscribe()
    }

    /// The options.
    pub fn options(&self) -> &RelayOptions {
        &self.options
    }

    fn update(&self, f: impl FnOnce(&mut RelayStatus)) {
        self.status.send_modify(f);
    }

    fn confirm(&mut self, position: GlobalPosition) {
        if position > self.confirmed_through {
            self.confirmed_through = position;
            self.status.send_modify(|s| s.confirmed_through = position);
        }
    }

    /// Reads the stream's last sequence and the position its last message
    /// carries; everything at or below that position is in the stream.
    async fn resync(&mut self) -> Result<u64, Waiting> {
        let stream = self
            .jetstream
            .get_stream(&self.options.stream)
            .await
            .map_err(|e| match e.kind() {
                async_nats::jetstream::context::GetStreamErrorKind::JetStream(js)
                    if js.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    Waiting::StreamMissing { error: e.to_string() }
                }
                _ => Waiting::Connection { error: e.to_string() },
            })?;
        let last = stream.cached_info().state.last_sequence;
        if last == 0 {
            // A stream that never held a message (new, or recreated): what
            // this relay published before is not in it.
            self.confirmed_through = GlobalPosition::START;
        } else {
            match stream.get_raw_message(last).await {
                Ok(message) => match position_of(&message.headers) {
                    Ok(position) => self.confirm(position),
                    Err(error) => tracing::warn!(
                        stream = %self.options.stream, sequence = last, %error,
                        "the stream's last message is not a relayed event; is another publisher writing to it?"
                    ),
                },
                Err(e) => match e.kind() {
                    LastRawMessageErrorKind::NoMessageFound => {}
                    LastRawMessageErrorKind::JetStream(js) if js.error_code() == ErrorCode::NO_MESSAGE_FOUND => {}
                    // The last message was deleted (purged, aged out): the
                    // duplicate window is what stops re-publishes now.
                    _ => return Err(Waiting::Connection { error: e.to_string() }),
                },
            }
        }
        self.last_sequence = Some(last);
        let confirmed = self.confirmed_through;
        self.update(|s| {
            s.resyncs += 1;
            s.stream_sequence = last;
            s.confirmed_through = confirmed;
        });
        Ok(last)
    }

    /// Publishes `events` (with their subjects) in order, pipelined; with
    /// `skip_confirmed`, events at or below the confirmed position are left
    /// out (they are in the stream already).
    async fn publish(&mut self, events: &[(&RecordedEvent, String)], skip_confirmed: bool) -> Result<(), Failure> {
        let mut next = match self.last_sequence {
            Some(last) => last,
            None => self.resync().await.map_err(Failure::Wait)?,
        };
        let mut in_flight: VecDeque<Pending<'_>> = VecDeque::new();
        let mut failure: Option<Failure> = None;
        let mut skipped = 0u64;
        for (event, subject) in events {
            if skip_confirmed && event.position <= self.confirmed_through {
                skipped += 1;
                continue;
            }
            while in_flight.len() >= self.options.max_in_flight {
                if let Some(pending) = in_flight.pop_front() {
                    let answer = pending.ack.await;
                    self.settle(pending.event, answer, &mut failure);
                }
                if failure.is_some() {
                    break;
                }
            }
            if failure.is_some() {
                break;
            }
            let message = PublishMessage::build()
                .payload(bytes::Bytes::copy_from_slice(event.payload.as_json().as_bytes()))
                .headers(headers_of(event))
                .expected_last_sequence(next);
            match self.jetstream.send_publish(subject.clone(), message).await {
                Ok(ack) => {
                    let deadline = tokio::time::Instant::now() + self.options.ack_timeout;
                    let ack = ack.into_future();
                    in_flight.push_back(Pending {
                        event,
                        ack: Box::pin(async move {
                            match tokio::time::timeout_at(deadline, ack).await {
                                Ok(answer) => answer,
                                Err(_) => Err(jetstream::context::PublishError::new(PublishErrorKind::TimedOut)),
                            }
                        }),
                    });
                    next += 1;
                    let n = in_flight.len();
                    self.status.send_if_modified(|s| {
                        let more = n > s.max_in_flight_seen;
                        s.max_in_flight_seen = s.max_in_flight_seen.max(n);
                        more
                    });
                }
                Err(error) => {
                    failure = Some(classify(event, &error));
                    break;
                }
            }
        }
        while failure.is_none() {
            let Some(pending) = in_flight.pop_front() else { break };
            let answer = pending.ack.await;
            self.settle(pending.event, answer, &mut failure);
        }
        if failure.is_some() {
            // Every ack still out is awaited (at once: one timeout at most),
            // so that whatever the server stored is known before resyncing.
            let rest: Vec<Pending<'_>> = in_flight.drain(..).collect();
            let events: Vec<&RecordedEvent> = rest.iter().map(|p| p.event).collect();
            let answers = futures_util::future::join_all(rest.into_iter().map(|p| p.ack)).await;
            for (event, answer) in events.into_iter().zip(answers) {
                self.settle(event, answer, &mut failure);
            }
        }
        self.update(|s| s.skipped += skipped);
        match failure {
            None => {
                self.last_sequence = Some(next);
                self.update(|s| {
                    s.stream_sequence = next;
                    s.waiting = None;
                });
                Ok(())
            }
            Some(failure) => {
                self.last_sequence = None;
                self.update(|s| s.failures += 1);
                Err(failure)
            }
        }
    }

    /// Takes in one ack. A stored message proves every message before it
    /// stored too (each expected its predecessor's sequence).
    fn settle(
        &mut self,
        event: &RecordedEvent,
        answer: Result<PublishAck, jetstream::context::PublishError>,
        failure: &mut Option<Failure>,
    ) {
        match answer {
            Ok(ack) if ack.duplicate => {
                self.last_acked = Some(event.event_id);
                // Stored earlier (the duplicate window caught it), but the
                // sequence did not move: the rest of the pipeline expected
                // otherwise. Resynchronise.
                self.confirm(event.position);
                self.update(|s| s.duplicates += 1);
                if failure.is_none() {
                    *failure = Some(Failure::Resync);
                }
            }
            Ok(ack) => {
                self.last_acked = Some(event.event_id);
                self.confirm(event.position);
                self.update(|s| {
                    s.published += 1;
                    s.stream_sequence = s.stream_sequence.max(ack.sequence);
                });
            }
            Err(error) => {
                let this = classify(event, &error);
                // The first real failure explains the rest: once one
                // publish failed, every later one fails its expected
                // sequence.
                match failure {
                    None | Some(Failure::Resync) => *failure = Some(this),
                    Some(_) => {}
                }
            }
        }
    }

    async fn handle_events(&mut self, batch: &Batch, replay: bool) -> Result<(), HandleError> {
        let mut events = Vec::with_capacity(batch.events.len());
        let mut poison = None;
        for event in batch.events.iter() {
            match self.options.subjects.subject(event) {
                Ok(subject) => events.push((event, subject)),
                Err(error) => {
                    poison = Some(PoisonEvent::handler(event, error.to_string()));
                    break;
                }
            }
        }
        self.last_acked = None;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.publish(&events, !replay).await {
                Ok(()) => break,
                // A replayed letter (a batch of one) that the server
                // acknowledged, stored or as a duplicate, is done.
                Err(Failure::Resync)
                    if replay
                        && self.last_acked.is_some()
                        && self.last_acked == events.last().map(|(e, _)| e.event_id) =>
                {
                    break
                }
                Err(Failure::Resync) if attempt < 3 => continue,
                Err(Failure::Resync) => {
                    return Err(ConsumerError::Transient(
                        "the stream's sequence keeps moving: is another publisher writing to it?".into(),
                    )
                    .into())
                }
                Err(Failure::Wait(waiting)) => {
                    tracing::warn!(stream = %self.options.stream, %waiting, "relay waiting");
                    let message = waiting.to_string();
                    self.update(|s| s.waiting = Some(waiting));
                    return Err(ConsumerError::Transient(message).into());
                }
                Err(Failure::Poison(poison)) => return Err(poison.into()),
            }
        }
        match poison {
            Some(poison) => Err(poison.into()),
            None => Ok(()),
        }
    }
}

struct Pending<'a> {
    event: &'a RecordedEvent,
    ack: Pin<Box<dyn Future<Output = Result<PublishAck, jetstream::context::PublishError>> + Send>>,
}

#[derive(Debug)]
enum Failure {
    /// The pipeline's expectations broke (a duplicate, another writer):
    /// resynchronise and go on at once.
    Resync,
    /// Wait and retry with backoff.
    Wait(Waiting),
    /// The event can never be stored (too large for the stream).
    Poison(PoisonEvent),
}

fn classify(event: &RecordedEvent, error: &jetstream::context::PublishError) -> Failure {
    let server = std::error::Error::source(error).and_then(|s| s.downcast_ref::<jetstream::Error>());
    match error.kind() {
        PublishErrorKind::WrongLastSequence | PublishErrorKind::WrongLastMessageId => Failure::Resync,
        PublishErrorKind::StreamNotFound => Failure::Wait(Waiting::StreamMissing {
            error: error.to_string(),
        }),
        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe | PublishErrorKind::MaxAckPending => {
            Failure::Wait(Waiting::Connection {
                error: error.to_string(),
            })
        }
        _ => match server.map(|s| s.error_code()) {
            Some(ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM) | Some(ErrorCode::STREAM_HEADER_EXCEEDS_MAXIMUM) => {
                Failure::Poison(PoisonEvent::handler(
                    event,
                    format!("the JetStream stream refuses this message: {error}"),
                ))
            }
            Some(
                ErrorCode::STREAM_STORE_FAILED
                | ErrorCode::STORAGE_RESOURCES_EXCEEDED
                | ErrorCode::MEMORY_RESOURCES_EXCEEDED
                | ErrorCode::ACCOUNT_RESOURCES_EXCEEDED
                | ErrorCode::STREAM_MAX_STREAM_BYTES_EXCEEDED,
            ) => Failure::Wait(Waiting::StreamFull {
                error: error.to_string(),
            }),
            Some(_) => Failure::Wait(Waiting::Refused {
                error: error.to_string(),
            }),
            None => Failure::Wait(Waiting::Connection {
                error: error.to_string(),
            }),
        },
    }
}

impl<C: CheckpointStore> Sink for JetStreamSink<C> {
    fn checkpoint_mode(&self) -> CheckpointMode {
        CheckpointMode::AfterBatch
    }

    async fn claim(&mut self, name: &str, token: FencingToken) -> Result<GlobalPosition, CheckpointError> {
        let position = self.checkpoints.claim(name, token).await?;
        self.claimed = Some((name.to_owned(), token));
        // A new holder trusts nothing it knew: it resynchronises first.
        self.last_sequence = None;
        Ok(position)
    }

    async fn handle(&mut self, batch: &Batch) -> Result<(), HandleError> {
        self.handle_events(batch, false).await
    }

    async fn replay(&mut self, batch: &Batch) -> Result<(), HandleError> {
        // A parked event sits below the confirmed position by nature: it is
        // published (out of global order, once) rather than skipped.
        self.handle_events(batch, true).await
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
