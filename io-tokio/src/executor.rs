//! Runs command machines against an [`EventStore`] on tokio.

use crate::codec_context::Context;
use crate::views::ViewSupport;
use crate::{Clock, EventStore, SnapshotStats, SnapshotStore, StreamCache};
use eventcore::{
    Command, CommandError, CommandErrorKind, CommandId, Executed, ExecutionContext, ExecutionError, ExecutionPolicy,
    Step, StreamCacheUse, Time, ViewCacheStats,
};
use eventcore_store::CodecContext;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tracing::Instrument;

/// Executes commands: drives a [`eventcore::CommandMachine`] per call, with
/// the real clock, per-operation timeouts, backoff sleeps and a tracing span
/// per command.
///
/// ```
/// # use eventcore::*;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)] enum Ev { Opened }
/// # impl Event for Ev {}
/// # #[derive(Debug, thiserror::Error)] #[error("already open")] struct AlreadyOpen;
/// # struct Open(StreamId);
/// # impl Command for Open {
/// #     type Event = Ev; type State = bool; type Error = AlreadyOpen;
/// #     fn streams(&self) -> Vec<StreamId> { vec![self.0.clone()] }
/// #     fn apply(&self, open: &mut bool, _: &StreamId, _: &Ev) { *open = true; }
/// #     fn decide(&self, open: &bool, out: &mut Decision<Ev>) -> Result<(), AlreadyOpen> {
/// #         if *open { return Err(AlreadyOpen); }
/// #         out.emit(&self.0, Ev::Opened); Ok(())
/// #     }
/// # }
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use eventcore_tokio::{Executor, MemoryEventStore};
/// let executor = Executor::new(MemoryEventStore::new());
/// let done = executor.execute(Open(StreamId::new("acc-1").unwrap())).await.unwrap();
/// assert_eq!(done.attempts, 1);
/// let again = executor.execute(Open(StreamId::new("acc-1").unwrap())).await;
/// assert!(matches!(again, Err(ExecutionError { error: CommandError::Domain(AlreadyOpen), .. })));
/// # });
/// ```
#[derive(Debug)]
pub struct Executor<S> {
    store: S,
    policy: ExecutionPolicy,
    clock: Clock,
    seed_base: u64,
    executions: AtomicU64,
    cache: Option<StreamCache>,
    views: ViewSupport,
    codec_context: Context,
}

/// The view cache's default bound: 64 MiB of views.
pub const DEFAULT_VIEW_CACHE_BYTES: usize = 64 << 20;

impl<S: EventStore> Executor<S> {
    /// An executor with the default policy.
    pub fn new(store: S) -> Self {
        Executor {
            store,
            policy: ExecutionPolicy::default(),
            clock: Clock::new(),
            seed_base: RandomState::new().build_hasher().finish(),
            executions: AtomicU64::new(0),
            cache: None,
            views: ViewSupport::new(Some(DEFAULT_VIEW_CACHE_BYTES)),
            codec_context: Context::default(),
        }
    }

    /// Installs `context` around every call where an execution decodes or
    /// encodes (events read, cached events, snapshots, the decided
    /// events), fetching what it needs before each, asynchronously: what
    /// crypto-shredding needs (`eventcore_shred::PersonalData`: `Personal`
    /// fields sealed when appended, opened when read, read as forgotten
    /// once their subject is).
    ///
    /// With a context, an append is checked before it is sent: one that
    /// still holds a draft (a placeholder for data whose key was never
    /// fetched) is not sent and fails the command. State folded in an
    /// execution whose session held secrets (decrypted personal data) is
    /// not kept in the view cache; snapshots of it are encoded under the
    /// context (sealed), and skipped if they would hold a draft. The
    /// stream cache keeps events as stored (sealed), so it stays on.
    ///
    /// ```
    /// use eventcore::{Payload, StoreError};
    /// use eventcore_store::{BoxFuture, CodecContext, CodecSession};
    /// use eventcore_tokio::{Executor, MemoryEventStore};
    /// struct Plain;
    /// struct PlainSession;
    /// impl CodecContext for Plain {
    ///     fn session(&self) -> Box<dyn CodecSession> { Box::new(PlainSession) }
    /// }
    /// impl CodecSession for PlainSession {
    ///     fn want(&mut self, _: &Payload) {}
    ///     fn prepare(&mut self) -> BoxFuture<'_, Result<(), StoreError>> { Box::pin(async { Ok(()) }) }
    ///     fn within(&mut self, f: &mut dyn FnMut()) { f() }
    ///     fn needs_prepare(&self) -> bool { false }
    ///     fn check_outgoing(&self, _: &Payload) -> Result<(), String> { Ok(()) }
    ///     fn holds_secrets(&self) -> bool { false }
    /// }
    /// let executor = Executor::new(MemoryEventStore::new()).with_codec_context(Plain);
    /// assert!(executor.codec_context().is_some());
    /// ```
    pub fn with_codec_context(mut self, context: impl CodecContext) -> Self {
        self.codec_context = Context(Some(Arc::new(context)));
        self
    }

    /// The context installed with [`Executor::with_codec_context`], if any.
    pub fn codec_context(&self) -> Option<&Arc<dyn CodecContext>> {
        self.codec_context.0.as_ref()
    }

    /// Bounds the view cache to about `max_bytes` of views (by
    /// `View::approximate_bytes`), or turns it off with `None`. On by default
    /// ([`DEFAULT_VIEW_CACHE_BYTES`]).
    ///
    /// The cache keeps each stream's view as of the last execution that read
    /// or wrote it, shared by every command that reads the stream through
    /// that view; an execution starts from it instead of reading the stream.
    /// It is safe whoever else writes: the append pins the stream to the
    /// cached version, so a stale entry costs one conflict and a read of the
    /// newer events, never a wrong decision. Used only for executions with a
    /// fresh command id ([`Executor::execute`]); re-executions with a known
    /// id read, so that they find their own commit.
    pub fn with_view_cache(mut self, max_bytes: Option<usize>) -> Self {
        self.views.set_cache(max_bytes);
        self
    }

    /// Entries, approximate bytes and counters of the view cache, if on.
    pub fn view_cache_stats(&self) -> Option<(usize, usize, ViewCacheStats)> {
        self.views.cache_stats()
    }

    /// The view cache's bound in bytes (what [`Executor::view_cache_stats`]
    /// reports as bytes never exceeds it once an execution returns), or
    /// `None` when the cache is off.
    ///
    /// ```
    /// use eventcore_tokio::{Executor, MemoryEventStore, DEFAULT_VIEW_CACHE_BYTES};
    /// let executor = Executor::new(MemoryEventStore::new());
    /// assert_eq!(executor.view_cache_capacity(), Some(DEFAULT_VIEW_CACHE_BYTES));
    /// let executor = executor.with_view_cache(Some(1 << 20));
    /// assert_eq!(executor.view_cache_capacity(), Some(1 << 20));
    /// assert_eq!(executor.with_view_cache(None).view_cache_capacity(), None);
    /// ```
    pub fn view_cache_capacity(&self) -> Option<usize> {
        self.views.cache_capacity()
    }

    /// Persists view snapshots in `store` and starts views from them on a
    /// cache miss (a new process, an evicted entry), so a stream of any
    /// length costs a read of the events after its newest snapshot.
    ///
    /// A snapshot is written, off the command's path, when a stream crosses a
    /// multiple of its view's `View::SNAPSHOT_EVERY`: a command never
    /// waits for a snapshot write and never fails because of one. A snapshot
    /// of another view version, one that does not decode, or one that claims
    /// versions the stream does not have is ignored (logged, counted) and the
    /// view folded from events.
    pub fn with_snapshots(mut self, store: impl SnapshotStore) -> Self {
        self.views.set_snapshots(store);
        self
    }

    /// Counters of snapshot loads and writes.
    pub fn snapshot_stats(&self) -> SnapshotStats {
        self.views.snapshot_stats()
    }

    /// Waits for the snapshot writes in flight to finish (before a process
    /// exits, or in tests).
    pub async fn flush_snapshots(&self) {
        self.views.flush().await;
    }

    /// Keeps up to `max_events` events of recently used streams in memory so
    /// that commands skip reading streams this executor has already seen.
    ///
    /// Worth it when this process is the main writer of its streams: a
    /// command then costs one round trip (the append) instead of two. When
    /// another process wrote in between, the append conflicts on the stale
    /// version and the command re-reads only the newer events, so the cache
    /// never changes results, only costs.
    pub fn with_stream_cache(mut self, max_events: usize) -> Self {
        self.cache = Some(StreamCache::new(max_events));
        self
    }

    /// The stream cache, if enabled.
    pub fn stream_cache(&self) -> Option<&StreamCache> {
        self.cache.as_ref()
    }

    /// Replaces the execution policy.
    pub fn with_policy(mut self, policy: ExecutionPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The store commands run against.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The policy every execution starts with.
    pub fn policy(&self) -> &ExecutionPolicy {
        &self.policy
    }

    /// A fresh, time-ordered command id.
    pub fn new_command_id(&self) -> CommandId {
        let seed = self.next_seed();
        let mut bytes = [0u8; 10];
        bytes[..8].copy_from_slice(&mix(seed).to_le_bytes());
        bytes[8..].copy_from_slice(&mix(seed ^ 0xA5A5).to_le_bytes()[..2]);
        CommandId::v7(self.clock.now(), bytes)
    }

    /// Executes `command` with a fresh command id and the executor's policy.
    ///
    /// Every outcome names the command id it ran under: [`Executed`] on
    /// success, [`ExecutionError`] on failure. Log it; after an unknown
    /// outcome, re-execute with it ([`Executor::execute_with`]) to settle
    /// whether the command committed.
    pub async fn execute<C: Command>(&self, command: C) -> Result<Executed, ExecutionError<C::Error>> {
        let context = ExecutionContext::new(self.new_command_id());
        self.run(command, context, self.policy.clone(), IdUse::Fresh).await
    }

    /// Executes `command` under a command id the caller chose (an
    /// `Idempotency-Key` from a request) that is expected to be new, with
    /// the speed of [`Executor::execute`]: views start from the view cache
    /// and snapshots.
    ///
    /// It is safe when the id was used before (a client retrying a request
    /// whose response it lost): an append under a known command id is
    /// answered with the original commit's receipt, whatever the cached
    /// state; and a verdict that sent no append (a refusal, an empty
    /// decision) reached from cached views, which do not show which command
    /// wrote their events, is confirmed by executing again on a fresh read
    /// ([`Executor::execute_with`]), which finds an earlier commit. So a
    /// repeated request costs at most one more execution, and returns the
    /// original result.
    ///
    /// ```
    /// # use eventcore::*;
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] enum Ev { Opened }
    /// # impl Event for Ev {}
    /// # #[derive(Debug, thiserror::Error)] #[error("already open")] struct AlreadyOpen;
    /// # struct Open(StreamId);
    /// # impl Command for Open {
    /// #     type Event = Ev; type State = bool; type Error = AlreadyOpen;
    /// #     fn streams(&self) -> Vec<StreamId> { vec![self.0.clone()] }
    /// #     fn apply(&self, open: &mut bool, _: &StreamId, _: &Ev) { *open = true; }
    /// #     fn decide(&self, open: &bool, out: &mut Decision<Ev>) -> Result<(), AlreadyOpen> {
    /// #         if *open { return Err(AlreadyOpen); }
    /// #         out.emit(&self.0, Ev::Opened); Ok(())
    /// #     }
    /// # }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use eventcore_tokio::{Executor, MemoryEventStore};
    /// let executor = Executor::new(MemoryEventStore::new());
    /// let key = executor.new_command_id(); // or CommandId::from_uuid(the request's key)
    /// let first = executor.execute_as(Open(StreamId::new("acc-1").unwrap()), ExecutionContext::new(key)).await.unwrap();
    /// // The response was lost; the client sends the same request again.
    /// let again = executor.execute_as(Open(StreamId::new("acc-1").unwrap()), ExecutionContext::new(key)).await.unwrap();
    /// assert!(first.appended.unwrap().same_commit(&again.appended.unwrap()), "the original result, not AlreadyOpen");
    /// # });
    /// ```
    pub async fn execute_as<C: Command>(
        &self,
        command: C,
        context: ExecutionContext,
    ) -> Result<Executed, ExecutionError<C::Error>> {
        self.run(command, context, self.policy.clone(), IdUse::First).await
    }

    /// Executes `command` with the given identity and metadata. Pass the
    /// command id of an earlier execution that ended in
    /// [`CommandError::OutcomeUnknown`] to settle it: the store returns the
    /// earlier commit if there was one. Views are read, not started from the
    /// view cache or snapshots, so that the execution sees its own earlier
    /// commit ([`Executor::execute_as`] keeps the caches for an id that is
    /// probably new).
    pub async fn execute_with<C: Command>(
        &self,
        command: C,
        context: ExecutionContext,
    ) -> Result<Executed, ExecutionError<C::Error>> {
        self.execute_with_policy(command, context, self.policy.clone()).await
    }

    /// Executes `command` under a policy other than the executor's, as
    /// [`Executor::execute_with`] does.
    pub async fn execute_with_policy<C: Command>(
        &self,
        command: C,
        context: ExecutionContext,
        policy: ExecutionPolicy,
    ) -> Result<Executed, ExecutionError<C::Error>> {
        self.run(command, context, policy, IdUse::Again).await
    }

    async fn run<C: Command>(
        &self,
        command: C,
        context: ExecutionContext,
        policy: ExecutionPolicy,
        id_use: IdUse,
    ) -> Result<Executed, ExecutionError<C::Error>> {
        let command_id = context.command_id;
        let span = tracing::info_span!(
            "command",
            command = short_name::<C>(),
            command_id = %context.command_id,
            attempts = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        let result = async {
            match self.drive(command, context.clone(), policy.clone(), id_use).await {
                Driven::Done(result) => result,
                Driven::Confirm { command, deadline } => {
                    tracing::debug!("confirming a verdict reached from cached views on a fresh read");
                    let context = ExecutionContext { deadline, ..context };
                    match self.drive(command, context, policy, IdUse::Again).await {
                        Driven::Done(result) => result,
                        Driven::Confirm { .. } => Err(internal("a re-execution asked to be confirmed")),
                    }
                }
            }
        }
        .instrument(span.clone())
        .await;
        match &result {
            Ok(done) => {
                span.record("attempts", done.attempts);
                span.record("outcome", "committed");
                tracing::debug!(parent: &span, stats = ?done.stats, "command executed");
            }
            Err(error) => {
                span.record("outcome", "failed");
                tracing::debug!(parent: &span, error = error as &dyn std::error::Error, "command failed");
            }
        }
        result.map_err(|error| ExecutionError { command_id, error })
    }

    async fn drive<C: Command>(
        &self,
        command: C,
        context: ExecutionContext,
        policy: ExecutionPolicy,
        id_use: IdUse,
    ) -> Driven<C> {
        let started = std::time::Instant::now();
        let mut machine = eventcore::CommandMachine::new(command, policy, context, self.clock.now(), self.next_seed())
            .with_codec(self.store.codec());
        let mut session = self.codec_context.session();
        let use_views = id_use != IdUse::Again && self.views.enabled();
        let mut looked_up = Vec::new();
        let mut loaded = Vec::new();
        if use_views {
            // Views first: a view stream primed from the view cache or a
            // snapshot is not primed again from the stream cache, which
            // would copy and decode the whole stream on every execution.
            self.views
                .prime(&mut machine, &self.clock, &mut looked_up, &mut loaded, &mut session)
                .await;
        }
        if let Some(cache) = self.cache.as_ref() {
            // What `StreamCacheUse::prime` does, with each prefix taken under
            // the lock and primed (copied, decoded) outside it.
            let declared: Vec<_> = machine.streams().cloned().collect();
            let prefixes: Vec<_> = declared
                .into_iter()
                .filter_map(|stream| cache.snapshot(&stream).map(|chunks| (stream, chunks)))
                .collect();
            for (_, chunks) in &prefixes {
                session.want_events(chunks.iter().flat_map(|chunk| chunk.iter()));
            }
            match session.prepare().await {
                Ok(()) => {
                    for (stream, chunks) in &prefixes {
                        session.within(|| machine.prime(stream, chunks.iter().flat_map(|chunk| chunk.iter())));
                    }
                }
                // The streams are read instead, and prepared then.
                Err(error) => tracing::debug!(
                    error = &error as &dyn std::error::Error,
                    "codec context not prepared for cached events; reading the streams"
                ),
            }
        }
        let mut using = StreamCacheUse::default();
        loop {
            if use_views {
                self.views
                    .prime(&mut machine, &self.clock, &mut looked_up, &mut loaded, &mut session)
                    .await;
            }
            match session.within(|| machine.poll()) {
                Step::Read { id, deadline, request } => {
                    let deadline = self.clock.instant_at(deadline);
                    match tokio::time::timeout_at(deadline, self.store.read(&request)).await {
                        Ok(result) => {
                            if let Some(cache) = &self.cache {
                                using.read(&mut cache.lock(), &request, &result);
                            }
                            let result = match result {
                                Ok(response) => {
                                    session.want_response(&response);
                                    match tokio::time::timeout_at(deadline, session.prepare()).await {
                                        Ok(Ok(())) => Ok(response),
                                        Ok(Err(error)) => Err(error),
                                        Err(_elapsed) => {
                                            machine.on_wake(self.clock.now());
                                            continue;
                                        }
                                    }
                                }
                                Err(error) => Err(error),
                            };
                            session.within(|| machine.on_read(id, result, self.clock.now()));
                        }
                        Err(_elapsed) => machine.on_wake(self.clock.now()),
                    }
                }
                Step::Append {
                    id,
                    deadline,
                    mut request,
                } => {
                    let deadline = self.clock.instant_at(deadline);
                    if session.needs_prepare() {
                        // The decided events named data the context lacked
                        // (keys of new subjects): fetch it, encode again.
                        match tokio::time::timeout_at(deadline, session.prepare()).await {
                            Ok(Ok(())) => match session.within(|| machine.reencode_append()) {
                                Some(again) => request = again,
                                // The encode failed; the next poll says why.
                                None => continue,
                            },
                            Ok(Err(error)) => {
                                machine.on_append(id, Err(error), self.clock.now());
                                continue;
                            }
                            Err(_elapsed) => {
                                machine.on_wake(self.clock.now());
                                continue;
                            }
                        }
                    }
                    if let Err(error) = session.check_request(&request) {
                        tracing::error!(
                            error = &error as &dyn std::error::Error,
                            "append holding a draft not sent"
                        );
                        machine.on_append(id, Err(error), self.clock.now());
                        continue;
                    }
                    match tokio::time::timeout_at(deadline, self.store.append(&request)).await {
                        Ok(result) => {
                            if let Some(cache) = &self.cache {
                                using.append(&mut cache.lock(), &request, &result);
                            }
                            session.within(|| machine.on_append(id, result, self.clock.now()));
                        }
                        Err(_elapsed) => machine.on_wake(self.clock.now()),
                    }
                }
                Step::Wait { until } => {
                    tokio::time::sleep_until(self.clock.instant_at(until)).await;
                    session.within(|| machine.on_wake(self.clock.now()));
                }
                Step::Done(result) => {
                    tracing::trace!(attempts = machine.attempts(), "machine done");
                    let result = session.type_encode_refusal(result);
                    if id_use == IdUse::First && use_views && unconfirmed_verdict(&machine, &result) {
                        self.views
                            .keep(&mut machine, &self.clock, std::mem::take(&mut loaded), &mut session);
                        if let Some(cache) = &self.cache {
                            using.finish(&mut cache.lock(), result.is_err());
                        }
                        let deadline = machine.deadline();
                        return Driven::Confirm {
                            command: machine.into_command(),
                            deadline,
                        };
                    }
                    crate::metrics::command_finished(
                        short_name::<C>(),
                        started,
                        machine.attempts(),
                        machine.stats(),
                        &result,
                    );
                    self.views
                        .keep(&mut machine, &self.clock, std::mem::take(&mut loaded), &mut session);
                    if let Some(cache) = &self.cache {
                        using.finish(&mut cache.lock(), result.is_err());
                    }
                    return Driven::Done(result);
                }
                Step::Finished => {
                    // Unreachable with this loop (it returns on Done), kept
                    // total so a future refactor cannot spin.
                    return Driven::Done(Err(internal("command machine polled after it finished")));
                }
            }
        }
    }

    fn next_seed(&self) -> u64 {
        mix(self.seed_base ^ self.executions.fetch_add(1, Ordering::Relaxed))
    }
}

/// How an execution's command id relates to earlier executions, which
/// decides the caches it may start from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IdUse {
    /// Made here just now: nothing was committed under it, so every cache
    /// may be used.
    Fresh,
    /// The caller's, expected to be new: every cache is used, and a verdict
    /// that sent no append from cached views is confirmed on a fresh read.
    First,
    /// A re-execution: views are read, not primed from the view cache or
    /// snapshots (a view does not show which command wrote its events, so a
    /// primed view could hide the execution's own earlier commit). The
    /// stream cache still primes: its events carry their command ids, and
    /// the machine re-reads primed streams before any verdict.
    Again,
}

/// What one drive of a machine ended with.
enum Driven<C: Command> {
    /// The result.
    Done(Result<Executed, CommandError<C::Error>>),
    /// A verdict reached from cached views with no append sent, under a
    /// caller's command id: execute again on a fresh read, by `deadline`.
    Confirm { command: C, deadline: Option<Time> },
}

/// Whether `result` is a verdict the execution reached without sending an
/// append (so no store checked its command id): an empty decision, a
/// refusal, or a misdeclared command. Store failures and timeouts are not
/// verdicts: executing again would not settle anything they leave open.
fn unconfirmed_verdict<C: Command>(
    machine: &eventcore::CommandMachine<C>,
    result: &Result<Executed, CommandError<C::Error>>,
) -> bool {
    let verdict = match result {
        Ok(done) => done.appended.is_none(),
        Err(error) => matches!(
            error.kind(),
            CommandErrorKind::Rejected | CommandErrorKind::Invalid | CommandErrorKind::Encode
        ),
    };
    verdict && machine.stats().appends == 0
}

/// A state the executor never reaches, reported rather than panicking.
fn internal<E>(message: &str) -> CommandError<E> {
    CommandError::Store(eventcore::StoreError::permanent(eventcore::Operation::Other, message))
}

fn mix(z: u64) -> u64 {
    eventcore::Entropy::mix(z)
}

fn short_name<C>() -> &'static str {
    let full = std::any::type_name::<C>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}
