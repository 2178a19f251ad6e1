//! Executing commands synchronously against the [`MemoryEventStore`]: the
//! same [`CommandMachine`] the async [`Executor`](crate::Executor) drives,
//! driven instead by plain calls to the store's synchronous critical
//! sections, with time advanced by hand.
//!
//! Its use is a user's own loom model. loom cannot drive tokio, so a model
//! of concurrent command execution runs each execution on a loom thread
//! through [`BlockingExecutor`]; built with `--cfg eventcore_loom`, the
//! memory store's lock and head notifier and the [`StreamCache`] are loom's,
//! so loom explores every interleaving of the real critical sections
//! (`docs/testing-your-domain.md`, "Loom"). In a normal build it is a plain
//! synchronous executor, handy in unit tests that want no runtime.

use crate::codec_context::Context;
use crate::{MemoryEventStore, StreamCache};
use eventcore::{
    Command, CommandError, CommandId, CommandMachine, Entropy, Executed, ExecutionContext, ExecutionError,
    ExecutionPolicy, Operation, Step, StoreError, StreamCacheUse, Time,
};
use std::sync::atomic::{AtomicU64, Ordering};

/// Executes commands to completion against a [`MemoryEventStore`], on the
/// calling thread, with no runtime and no clock.
///
/// Each step of the [`CommandMachine`] becomes one synchronous store call
/// ([`MemoryEventStore::read_sync`], [`MemoryEventStore::append_sync`]); a
/// backoff (`Step::Wait`) advances the execution's time to its end at once
/// instead of sleeping, so retries after a conflict cost no wall time.
/// Timeouts never fire: every store call finishes. Optionally, a
/// [`StreamCache`] primes executions and learns from reads and appends
/// exactly as the async executor's does.
///
/// It is `Sync`: share one between threads (by reference or in an `Arc`),
/// or give each thread its own clone of the store.
///
/// ```
/// use eventcore::{Command, CommandError, Decision, Event, ExecutionError, StreamId};
/// use eventcore_tokio::{BlockingExecutor, MemoryEventStore};
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
/// let executor = BlockingExecutor::new(MemoryEventStore::new());
/// let done = executor.execute(Open(StreamId::new("acc-1").unwrap())).unwrap();
/// assert_eq!(done.attempts, 1);
/// let again = executor.execute(Open(StreamId::new("acc-1").unwrap()));
/// assert!(matches!(again, Err(ExecutionError { error: CommandError::Domain(AlreadyOpen), .. })));
/// ```
#[derive(Debug)]
pub struct BlockingExecutor {
    store: MemoryEventStore,
    policy: ExecutionPolicy,
    cache: Option<StreamCache>,
    now: Time,
    seed: u64,
    executions: AtomicU64,
    codec_context: Context,
}

impl BlockingExecutor {
    /// An executor over `store` with the default policy, no stream cache,
    /// time starting at [`Time::ZERO`] and seed 0 (so runs are
    /// reproducible, as a loom model requires).
    ///
    /// ```
    /// use eventcore_tokio::{BlockingExecutor, MemoryEventStore};
    /// let store = MemoryEventStore::new();
    /// let executor = BlockingExecutor::new(store.clone());
    /// assert_eq!(executor.store().head().position(), store.head().position());
    /// ```
    pub fn new(store: MemoryEventStore) -> Self {
        BlockingExecutor {
            store,
            policy: ExecutionPolicy::default(),
            cache: None,
            now: Time::ZERO,
            seed: 0,
            executions: AtomicU64::new(0),
            codec_context: Context::default(),
        }
    }

    /// Installs `context` around the machine's calls, as
    /// [`Executor::with_codec_context`](crate::Executor::with_codec_context)
    /// does. With no runtime to wait on, its preparation must finish when
    /// first polled (`eventcore_shred::PersonalData` over a
    /// `MemoryKeyStore` does); a step whose preparation would wait fails
    /// with a permanent store error.
    ///
    /// ```
    /// use eventcore::{Payload, StoreError};
    /// use eventcore_store::{BoxFuture, CodecContext, CodecSession};
    /// use eventcore_tokio::{BlockingExecutor, MemoryEventStore};
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
    /// let executor = BlockingExecutor::new(MemoryEventStore::new()).with_codec_context(Plain);
    /// # let _ = executor;
    /// ```
    pub fn with_codec_context(mut self, context: impl eventcore_store::CodecContext) -> Self {
        self.codec_context = Context(Some(std::sync::Arc::new(context)));
        self
    }

    /// Replaces the execution policy (retries, backoff, limits).
    ///
    /// ```
    /// use eventcore::ExecutionPolicy;
    /// use eventcore_tokio::{BlockingExecutor, MemoryEventStore};
    /// let executor = BlockingExecutor::new(MemoryEventStore::new()).with_policy(ExecutionPolicy::default());
    /// # let _ = executor;
    /// ```
    pub fn with_policy(mut self, policy: ExecutionPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Keeps up to `max_events` events of recently used streams, as
    /// [`Executor::with_stream_cache`](crate::Executor::with_stream_cache)
    /// does: executions start from the cached prefix and pin the append to
    /// it, so a stale entry costs a conflict and a re-read, never a wrong
    /// decision. Under loom, the cache's lock is part of the model.
    ///
    /// ```
    /// use eventcore_tokio::{BlockingExecutor, MemoryEventStore};
    /// let executor = BlockingExecutor::new(MemoryEventStore::new()).with_stream_cache(1_000);
    /// assert_eq!(executor.stream_cache().map(|c| c.cached_events()), Some(0));
    /// ```
    pub fn with_stream_cache(mut self, max_events: usize) -> Self {
        self.cache = Some(StreamCache::new(max_events));
        self
    }

    /// Sets the time every execution starts at (event timestamps, the
    /// time part of command ids) and the seed its machines' randomness
    /// (backoff jitter, event and command ids) derives from. Distinct
    /// executors writing to one store should use distinct seeds.
    ///
    /// ```
    /// use eventcore::Time;
    /// use eventcore_tokio::{BlockingExecutor, MemoryEventStore};
    /// let executor = BlockingExecutor::new(MemoryEventStore::new()).starting_at(Time::from_unix_millis(1_000), 7);
    /// # let _ = executor;
    /// ```
    pub fn starting_at(mut self, now: Time, seed: u64) -> Self {
        self.now = now;
        self.seed = seed;
        self
    }

    /// The store commands run against.
    ///
    /// ```
    /// use eventcore_tokio::{BlockingExecutor, MemoryEventStore};
    /// let executor = BlockingExecutor::new(MemoryEventStore::new());
    /// assert_eq!(executor.store().inspect(|s| s.last_position()), eventcore::GlobalPosition::START);
    /// ```
    pub fn store(&self) -> &MemoryEventStore {
        &self.store
    }

    /// The stream cache, if enabled.
    ///
    /// ```
    /// use eventcore_tokio::{BlockingExecutor, MemoryEventStore};
    /// assert!(BlockingExecutor::new(MemoryEventStore::new()).stream_cache().is_none());
    /// ```
    pub fn stream_cache(&self) -> Option<&StreamCache> {
        self.cache.as_ref()
    }

    /// A fresh command id: distinct for every call on this executor, and
    /// across executors with distinct seeds.
    ///
    /// ```
    /// use eventcore_tokio::{BlockingExecutor, MemoryEventStore};
    /// let executor = BlockingExecutor::new(MemoryEventStore::new());
    /// assert_ne!(executor.new_command_id(), executor.new_command_id());
    /// ```
    pub fn new_command_id(&self) -> CommandId {
        let seed = self.next_seed();
        let mut bytes = [0u8; 10];
        bytes[..8].copy_from_slice(&Entropy::mix(seed).to_le_bytes());
        bytes[8..].copy_from_slice(&Entropy::mix(seed ^ 0xA5A5).to_le_bytes()[..2]);
        CommandId::v7(self.now, bytes)
    }

    /// Executes `command` to completion with a fresh command id: reads,
    /// decides, appends, and on a conflict retries under the policy, all on
    /// the calling thread.
    ///
    /// ```
    /// # use eventcore::*;
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] enum Ev { Added }
    /// # impl Event for Ev {}
    /// # struct Add(StreamId);
    /// # impl Command for Add {
    /// #     type Event = Ev; type State = (); type Error = std::convert::Infallible;
    /// #     fn streams(&self) -> Vec<StreamId> { vec![self.0.clone()] }
    /// #     fn apply(&self, _: &mut (), _: &StreamId, _: &Ev) {}
    /// #     fn decide(&self, _: &(), out: &mut Decision<Ev>) -> Result<(), std::convert::Infallible> {
    /// #         out.emit(&self.0, Ev::Added); Ok(())
    /// #     }
    /// # }
    /// use eventcore_tokio::{BlockingExecutor, MemoryEventStore};
    /// let executor = BlockingExecutor::new(MemoryEventStore::new());
    /// let done = executor.execute(Add(StreamId::new("s").unwrap())).unwrap();
    /// assert_eq!(done.appended.unwrap().last_position().get(), 1);
    /// ```
    #[allow(clippy::result_large_err)] // the executors' one error type, unboxed so callers match on it
    pub fn execute<C: Command>(&self, command: C) -> Result<Executed, ExecutionError<C::Error>> {
        let context = ExecutionContext::new(self.new_command_id());
        self.run(command, context, true)
    }

    /// Executes `command` under a command id the caller chose and expects
    /// to be new, primed from the stream cache as [`BlockingExecutor::execute`]
    /// is. Safe when the id was used before: cached events carry the command
    /// id that wrote them, the machine re-reads primed streams before any
    /// refusal or empty decision, and an append under a known id is answered
    /// with the original receipt; so an earlier commit is always found.
    ///
    /// ```
    /// # use eventcore::*;
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] enum Ev { Added }
    /// # impl Event for Ev {}
    /// # struct Add(StreamId);
    /// # impl Command for Add {
    /// #     type Event = Ev; type State = (); type Error = std::convert::Infallible;
    /// #     fn streams(&self) -> Vec<StreamId> { vec![self.0.clone()] }
    /// #     fn apply(&self, _: &mut (), _: &StreamId, _: &Ev) {}
    /// #     fn decide(&self, _: &(), out: &mut Decision<Ev>) -> Result<(), std::convert::Infallible> {
    /// #         out.emit(&self.0, Ev::Added); Ok(())
    /// #     }
    /// # }
    /// use eventcore_tokio::{BlockingExecutor, MemoryEventStore};
    /// let executor = BlockingExecutor::new(MemoryEventStore::new()).with_stream_cache(1_000);
    /// let key = executor.new_command_id();
    /// let first = executor.execute_as(Add(StreamId::new("s").unwrap()), ExecutionContext::new(key)).unwrap();
    /// let again = executor.execute_as(Add(StreamId::new("s").unwrap()), ExecutionContext::new(key)).unwrap();
    /// assert!(first.appended.unwrap().same_commit(&again.appended.unwrap()), "written once");
    /// ```
    #[allow(clippy::result_large_err)] // the executors' one error type, unboxed so callers match on it
    pub fn execute_as<C: Command>(
        &self,
        command: C,
        context: ExecutionContext,
    ) -> Result<Executed, ExecutionError<C::Error>> {
        self.run(command, context, true)
    }

    /// Executes `command` with the given identity and metadata. Pass the
    /// command id of an earlier execution to re-execute it: the store
    /// returns the earlier commit if there was one. Such executions read
    /// every stream (they are never primed from the cache), so they find
    /// their own commit.
    ///
    /// ```
    /// # use eventcore::*;
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] enum Ev { Added }
    /// # impl Event for Ev {}
    /// # struct Add(StreamId);
    /// # impl Command for Add {
    /// #     type Event = Ev; type State = (); type Error = std::convert::Infallible;
    /// #     fn streams(&self) -> Vec<StreamId> { vec![self.0.clone()] }
    /// #     fn apply(&self, _: &mut (), _: &StreamId, _: &Ev) {}
    /// #     fn decide(&self, _: &(), out: &mut Decision<Ev>) -> Result<(), std::convert::Infallible> {
    /// #         out.emit(&self.0, Ev::Added); Ok(())
    /// #     }
    /// # }
    /// use eventcore_tokio::{BlockingExecutor, MemoryEventStore};
    /// let executor = BlockingExecutor::new(MemoryEventStore::new());
    /// let id = executor.new_command_id();
    /// let first = executor.execute_with(Add(StreamId::new("s").unwrap()), ExecutionContext::new(id)).unwrap();
    /// let again = executor.execute_with(Add(StreamId::new("s").unwrap()), ExecutionContext::new(id)).unwrap();
    /// assert!(first.appended.unwrap().same_commit(&again.appended.unwrap()));
    /// ```
    #[allow(clippy::result_large_err)] // the executors' one error type, unboxed so callers match on it
    pub fn execute_with<C: Command>(
        &self,
        command: C,
        context: ExecutionContext,
    ) -> Result<Executed, ExecutionError<C::Error>> {
        self.run(command, context, false)
    }

    /// `cached`: whether the stream cache may prime the execution.
    #[allow(clippy::result_large_err)] // the executors' one error type, unboxed so callers match on it
    fn run<C: Command>(
        &self,
        command: C,
        context: ExecutionContext,
        cached: bool,
    ) -> Result<Executed, ExecutionError<C::Error>> {
        let command_id = context.command_id;
        self.drive(command, context, cached)
            .map_err(|error| ExecutionError { command_id, error })
    }

    fn drive<C: Command>(
        &self,
        command: C,
        context: ExecutionContext,
        cached: bool,
    ) -> Result<Executed, CommandError<C::Error>> {
        let mut now = self.now;
        let mut machine = CommandMachine::new(command, self.policy.clone(), context, now, self.next_seed())
            .with_codec(crate::EventStore::codec(&self.store));
        let mut session = self.codec_context.session();
        let cache = self.cache.as_ref().filter(|_| cached);
        if let Some(cache) = cache {
            let declared: Vec<_> = machine.streams().cloned().collect();
            for stream in declared {
                if let Some(chunks) = cache.snapshot(&stream) {
                    session.want_events(chunks.iter().flat_map(|chunk| chunk.iter()));
                    // Unprepared: the stream is read instead.
                    if session.prepare_now().is_ok() {
                        session.within(|| machine.prime(&stream, chunks.iter().flat_map(|chunk| chunk.iter())));
                    }
                }
            }
        }
        let mut using = StreamCacheUse::default();
        loop {
            match session.within(|| machine.poll()) {
                Step::Read { id, request, .. } => {
                    let result = self.store.read_sync(&request);
                    if let Some(cache) = &self.cache {
                        using.read(&mut cache.lock(), &request, &result);
                    }
                    let result = result.and_then(|response| {
                        session.want_response(&response);
                        session.prepare_now().map(|()| response)
                    });
                    session.within(|| machine.on_read(id, result, now));
                }
                Step::Append { id, mut request, .. } => {
                    if session.needs_prepare() {
                        if let Err(error) = session.prepare_now() {
                            machine.on_append(id, Err(error), now);
                            continue;
                        }
                        match session.within(|| machine.reencode_append()) {
                            Some(again) => request = again,
                            None => continue,
                        }
                    }
                    if let Err(error) = session.check_request(&request) {
                        machine.on_append(id, Err(error), now);
                        continue;
                    }
                    let result = self.store.append_sync(&request);
                    if let Some(cache) = &self.cache {
                        using.append(&mut cache.lock(), &request, &result);
                    }
                    session.within(|| machine.on_append(id, result, now));
                }
                Step::Wait { until } => {
                    now = now.max(until);
                    session.within(|| machine.on_wake(now));
                }
                Step::Done(result) => {
                    let result = session.type_encode_refusal(result);
                    if let Some(cache) = &self.cache {
                        using.finish(&mut cache.lock(), result.is_err());
                    }
                    return result;
                }
                Step::Finished => {
                    return Err(CommandError::Store(StoreError::permanent(
                        Operation::Other,
                        "command machine polled after it finished",
                    )))
                }
            }
        }
    }

    fn next_seed(&self) -> u64 {
        Entropy::mix(self.seed ^ Entropy::mix(self.executions.fetch_add(1, Ordering::Relaxed)))
    }
}

/// Executes `command` once against `store` with a fresh executor: a
/// shorthand for `BlockingExecutor::new(store.clone()).starting_at(Time::ZERO,
/// seed).execute(command)`. Use distinct seeds for the executions of one
/// model, so their command ids differ.
///
/// ```
/// # use eventcore::*;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)] enum Ev { Added }
/// # impl Event for Ev {}
/// # struct Add(StreamId);
/// # impl Command for Add {
/// #     type Event = Ev; type State = (); type Error = std::convert::Infallible;
/// #     fn streams(&self) -> Vec<StreamId> { vec![self.0.clone()] }
/// #     fn apply(&self, _: &mut (), _: &StreamId, _: &Ev) {}
/// #     fn decide(&self, _: &(), out: &mut Decision<Ev>) -> Result<(), std::convert::Infallible> {
/// #         out.emit(&self.0, Ev::Added); Ok(())
/// #     }
/// # }
/// use eventcore_tokio::{execute_blocking, MemoryEventStore};
/// let store = MemoryEventStore::new();
/// execute_blocking(&store, Add(StreamId::new("s").unwrap()), 1).unwrap();
/// execute_blocking(&store, Add(StreamId::new("s").unwrap()), 2).unwrap();
/// assert_eq!(store.inspect(|s| s.last_position()).get(), 2);
/// ```
#[allow(clippy::result_large_err)] // as BlockingExecutor::execute
pub fn execute_blocking<C: Command>(
    store: &MemoryEventStore,
    command: C,
    seed: u64,
) -> Result<Executed, ExecutionError<C::Error>> {
    BlockingExecutor::new(store.clone())
        .starting_at(Time::ZERO, seed)
        .execute(command)
}
