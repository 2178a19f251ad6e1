//! Runs [`SubscriptionMachine`]s on tokio: fetches from an [`EventStore`],
//! hands batches to a [`Sink`] (an at-least-once [`Subscriber`] with a
//! [`CheckpointStore`], or a transactional [`crate::Projection`]), parks poison
//! events, holds a lease, and shuts down gracefully.
//!
//! One task drives everything. The fetch in flight and the consumer's work
//! in flight are two futures polled side by side, so the next batch is read
//! while the current one is handled; the machine bounds how far fetching
//! runs ahead ([`SubscriptionPolicy::buffer_limit`]), so a slow consumer
//! slows its subscription instead of growing memory.

use crate::{
    CheckpointError, CheckpointStore, Clock, DeadLetter, DeadLetterStore, EventStore, FencingToken, Lease, LeaseError,
    LeaseStore, NoDeadLetters, NoLease,
};
use eventcore::{
    Batch, CheckpointMode, ConsumerError, EventFilter, GlobalPosition, HandleError, PoisonEvent, ReadAllResponse,
    RecordedEvent, RequestId, StoreError, SubscriptionError, SubscriptionMachine, SubscriptionPolicy,
    SubscriptionStats, SubscriptionStep,
};
use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

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
    checkpoints: C,
    subscriber: H,
    claimed: Option<(String, FencingToken)>,
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

/// Where a runner is.
///
/// ```
/// use eventcore_tokio::RunnerState;
/// assert_eq!(RunnerState::default(), RunnerState::Idle);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RunnerState {
    /// Not started.
    #[default]
    Idle,
    /// Waiting for the lease, held by another instance.
    Standby,
    /// Holding the lease and consuming.
    Running,
    /// Stopped (cleanly or not).
    Stopped,
}

/// What a runner reports while it runs (see [`Runner::status`]).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use eventcore::{Batch, HandleError};
/// use eventcore_tokio::{MemoryCheckpointStore, MemoryEventStore, Runner, RunnerState, Subscriber};
/// # struct Ignore;
/// # impl Subscriber for Ignore {
/// #     async fn handle(&mut self, _: &Batch) -> Result<(), HandleError> { Ok(()) }
/// # }
/// let mut runner = Runner::subscription("s", MemoryEventStore::new(), MemoryCheckpointStore::new(), Ignore);
/// let status = runner.status();
/// runner.run_until_caught_up().await.unwrap();
/// assert_eq!(status.borrow().state, RunnerState::Stopped);
/// # });
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunnerStatus {
    /// Where the runner is.
    pub state: RunnerState,
    /// The token of the lease held, if any.
    pub token: Option<FencingToken>,
    /// The last checkpoint saved.
    pub checkpoint: GlobalPosition,
    /// The highest position handled or parked.
    pub handled_through: GlobalPosition,
    /// Live and idle: everything fetched is handled and checkpointed.
    pub caught_up: bool,
    /// The machine's counters.
    pub stats: SubscriptionStats,
}

/// How a run ended without error.
///
/// ```
/// use eventcore_tokio::RunSummary;
/// let never_held_the_lease = RunSummary { checkpoint: None, stats: Default::default() };
/// assert!(never_held_the_lease.checkpoint.is_none());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSummary {
    /// The checkpoint saved last (`None` if the run never held the lease).
    pub checkpoint: Option<GlobalPosition>,
    /// The machine's counters.
    pub stats: SubscriptionStats,
}

/// Why a run failed.
///
/// ```
/// use eventcore_tokio::{LeaseError, RunError};
/// let lost = RunError::from(LeaseError::Lost { name: "p".into(), holder: "a".into() });
/// assert!(lost.is_fenced());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The subscription machine stopped (poison event under the stop
    /// policy, a permanent store error, a fenced write, ...).
    #[error(transparent)]
    Subscription(#[from] SubscriptionError),
    /// The lease changed hands while running; this instance stopped.
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// The checkpoint could not be claimed.
    #[error("cannot claim the checkpoint: {0}")]
    Claim(#[source] CheckpointError),
    /// The dead-letter store failed while listing or removing letters.
    #[error(transparent)]
    DeadLetters(#[from] crate::DeadLetterError),
    /// Another instance holds the lease (replay needs it).
    #[error("lease `{name}` is held by another instance")]
    LeaseHeld {
        /// The lease name.
        name: String,
    },
}

impl RunError {
    /// True when another instance took over and this one's writes were
    /// rejected, or its lease was lost.
    pub fn is_fenced(&self) -> bool {
        match self {
            RunError::Subscription(e) => e.is_fenced(),
            RunError::Lease(LeaseError::Lost { .. }) => true,
            RunError::Claim(CheckpointError::Fenced { .. }) => true,
            _ => false,
        }
    }
}

/// The outcome of [`Runner::replay_parked`].
///
/// ```
/// use eventcore_tokio::ReplayReport;
/// let nothing = ReplayReport::default();
/// assert!(nothing.replayed.is_empty() && nothing.still_failing.is_empty());
/// ```
#[derive(Debug, Default)]
pub struct ReplayReport {
    /// Positions handled and removed from the dead-letter store.
    pub replayed: Vec<GlobalPosition>,
    /// Letters that failed again and stay parked.
    pub still_failing: Vec<(GlobalPosition, HandleError)>,
}

/// Runs one subscription: a [`SubscriptionMachine`] against an
/// [`EventStore`], delivering to a [`Sink`], holding a lease, parking
/// poison events in a dead-letter store.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use eventcore::{Batch, HandleError};
/// use eventcore_tokio::{MemoryCheckpointStore, MemoryEventStore, Runner, Subscriber};
/// struct Count(usize);
/// impl Subscriber for Count {
///     async fn handle(&mut self, batch: &Batch) -> Result<(), HandleError> {
///         self.0 += batch.events.len();
///         Ok(())
///     }
/// }
/// let store = MemoryEventStore::new();
/// let mut runner = Runner::subscription("audit", store.clone(), MemoryCheckpointStore::new(), Count(0))
///     .with_wakeups(store.watch_head());
/// let summary = runner.run_until_caught_up().await.unwrap();
/// assert_eq!(summary.checkpoint, Some(eventcore::GlobalPosition::START));
/// # });
/// ```
#[derive(Debug)]
pub struct Runner<S, K, L = NoLease, D = NoDeadLetters> {
    name: String,
    store: S,
    sink: K,
    leases: L,
    dead_letters: D,
    holder: String,
    lease_ttl: Duration,
    standby_retry: Duration,
    policy: SubscriptionPolicy,
    filter: EventFilter,
    wakeups: Option<watch::Receiver<GlobalPosition>>,
    status: watch::Sender<RunnerStatus>,
    clock: Clock,
    seed_base: u64,
    runs: u64,
}

impl<S: EventStore, C: CheckpointStore, H: Subscriber> Runner<S, SubscriberSink<C, H>> {
    /// An at-least-once subscription named `name` (the checkpoint, lease and
    /// dead-letter key) reading `store`, delivering to `subscriber`.
    pub fn subscription(name: impl Into<String>, store: S, checkpoints: C, subscriber: H) -> Self {
        Runner::with_sink(
            name,
            store,
            SubscriberSink {
                checkpoints,
                subscriber,
                claimed: None,
            },
            EventFilter::all(),
        )
    }
}

impl<S: EventStore, K: Sink> Runner<S, K> {
    /// A runner for any [`Sink`].
    pub fn with_sink(name: impl Into<String>, store: S, sink: K, filter: EventFilter) -> Self {
        let policy = SubscriptionPolicy::default().with_checkpoint_mode(sink.checkpoint_mode());
        let (status, _) = watch::channel(RunnerStatus::default());
        Runner {
            name: name.into(),
            store,
            sink,
            leases: NoLease,
            dead_letters: NoDeadLetters,
            holder: default_holder(),
            lease_ttl: Duration::from_secs(10),
            standby_retry: Duration::from_secs(1),
            policy,
            filter,
            wakeups: None,
            status,
            clock: Clock::new(),
            seed_base: RandomState::new().build_hasher().finish(),
            runs: 0,
        }
    }
}

impl<S: EventStore, K: Sink, L: LeaseStore, D: DeadLetterStore> Runner<S, K, L, D> {
    /// Coordinates with other instances through `leases`: only the holder
    /// runs; the others wait in standby and take over when it expires.
    /// `holder` names this instance; `ttl` is how long a dead holder keeps
    /// the lease (renewed every third of it).
    pub fn with_lease<L2: LeaseStore>(
        self,
        leases: L2,
        holder: impl Into<String>,
        ttl: Duration,
    ) -> Runner<S, K, L2, D> {
        Runner {
            name: self.name,
            store: self.store,
            sink: self.sink,
            leases,
            dead_letters: self.dead_letters,
            holder: holder.into(),
            lease_ttl: ttl,
            standby_retry: (ttl / 4).max(Duration::from_millis(1)),
            policy: self.policy,
            filter: self.filter,
            wakeups: self.wakeups,
            status: self.status,
            clock: self.clock,
            seed_base: self.seed_base,
            runs: self.runs,
        }
    }

    /// Parks poison events in `dead_letters` (when the poison policy says
    /// park).
    pub fn with_dead_letters<D2: DeadLetterStore>(self, dead_letters: D2) -> Runner<S, K, L, D2> {
        Runner {
            name: self.name,
            store: self.store,
            sink: self.sink,
            leases: self.leases,
            dead_letters,
            holder: self.holder,
            lease_ttl: self.lease_ttl,
            standby_retry: self.standby_retry,
            policy: self.policy,
            filter: self.filter,
            wakeups: self.wakeups,
            status: self.status,
            clock: self.clock,
            seed_base: self.seed_base,
            runs: self.runs,
        }
    }

    /// Replaces the policy (the checkpoint mode is the sink's, whatever the
    /// policy says).
    pub fn with_policy(mut self, policy: SubscriptionPolicy) -> Self {
        self.policy = policy.with_checkpoint_mode(self.sink.checkpoint_mode());
        self
    }

    /// Replaces the filter.
    pub fn with_filter(mut self, filter: EventFilter) -> Self {
        self.filter = filter;
        self
    }

    /// Wakes the subscription when the store's head moves
    /// ([`crate::MemoryEventStore::watch_head`], the PostgreSQL listener).
    /// Without it the subscription polls at the policy's interval.
    pub fn with_wakeups(mut self, wakeups: watch::Receiver<GlobalPosition>) -> Self {
        self.wakeups = Some(wakeups);
        self
    }

    /// The subscription's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sink.
    pub fn sink(&self) -> &K {
        &self.sink
    }

    /// The sink, mutably (between runs).
    pub fn sink_mut(&mut self) -> &mut K {
        &mut self.sink
    }

    /// The dead-letter store.
    pub fn dead_letters(&self) -> &D {
        &self.dead_letters
    }

    /// A receiver of the runner's status, updated as it runs.
    pub fn status(&self) -> watch::Receiver<RunnerStatus> {
        self.status.subscribe()
    }

    /// Runs until `shutdown` completes, then finishes the batch in flight,
    /// saves the checkpoint, releases the lease and returns.
    pub async fn run_until(&mut self, shutdown: impl Future<Output = ()> + Send) -> Result<RunSummary, RunError> {
        self.run_inner(shutdown, false).await
    }

    /// Runs forever (until an error).
    pub async fn run(&mut self) -> Result<RunSummary, RunError> {
        self.run_inner(std::future::pending(), false).await
    }

    /// Runs until the subscription has caught up (everything committed when
    /// it last fetched is handled and checkpointed), then stops gracefully.
    /// A projection rebuild uses it to fill a fresh read model.
    pub async fn run_until_caught_up(&mut self) -> Result<RunSummary, RunError> {
        self.run_inner(std::future::pending(), true).await
    }

    /// Replays the parked events of this subscription through the sink, in
    /// position order, removing each one that is handled. Takes the lease
    /// (fencing out a stale holder); fails with [`RunError::LeaseHeld`] while
    /// another instance holds it. Run it while this subscription is not
    /// running elsewhere, after fixing the handler or the data.
    pub async fn replay_parked(&mut self) -> Result<ReplayReport, RunError> {
        let lease = match self
            .leases
            .try_acquire(&self.name, &self.holder, self.lease_ttl, self.clock.now())
            .await?
        {
            Some(lease) => lease,
            None => {
                return Err(RunError::LeaseHeld {
                    name: self.name.clone(),
                })
            }
        };
        let result = self.replay_with(&lease).await;
        let _ = self.leases.release(&lease).await;
        result
    }

    async fn replay_with(&mut self, lease: &Lease) -> Result<ReplayReport, RunError> {
        let checkpoint = self
            .sink
            .claim(&self.name, lease.token)
            .await
            .map_err(RunError::Claim)?;
        let mut report = ReplayReport::default();
        for (n, letter) in self.dead_letters.list(&self.name).await?.into_iter().enumerate() {
            let position = letter.event.position;
            let batch = Batch {
                id: RequestId::new(n as u64 + 1),
                events: vec![letter.event],
                // Never moves the checkpoint back (stores keep the maximum).
                checkpoint: checkpoint.max(position),
            };
            match self.sink.handle(&batch).await {
                Ok(()) => {
                    self.dead_letters.remove(&self.name, position).await?;
                    report.replayed.push(position);
                }
                Err(error) => report.still_failing.push((position, error)),
            }
        }
        Ok(report)
    }

    async fn run_inner(
        &mut self,
        shutdown: impl Future<Output = ()> + Send,
        until_caught_up: bool,
    ) -> Result<RunSummary, RunError> {
        let span = tracing::info_span!("subscription", name = %self.name, holder = %self.holder);
        tokio::pin!(shutdown);
        self.runs += 1;
        let Some(lease) = self.acquire(&mut shutdown).await? else {
            self.update(|s| s.state = RunnerState::Stopped);
            return Ok(RunSummary {
                checkpoint: None,
                stats: SubscriptionStats::default(),
            });
        };
        tracing::debug!(parent: &span, token = %lease.token, "lease acquired");
        let result = self.consume(lease.clone(), &mut shutdown, until_caught_up).await;
        // Best effort: if the lease was lost it is not ours to release, and
        // an unreleased lease simply expires.
        let _ = self.leases.release(&lease).await;
        self.update(|s| s.state = RunnerState::Stopped);
        match &result {
            Ok(summary) => tracing::debug!(parent: &span, checkpoint = ?summary.checkpoint, "subscription stopped"),
            Err(error) => tracing::warn!(parent: &span, %error, "subscription failed"),
        }
        result
    }

    /// Waits in standby until the lease is ours; `None` if shut down first.
    async fn acquire(
        &mut self,
        shutdown: &mut Pin<&mut (impl Future<Output = ()> + Send)>,
    ) -> Result<Option<Lease>, RunError> {
        let mut failures = 0u32;
        loop {
            let outcome = self
                .leases
                .try_acquire(&self.name, &self.holder, self.lease_ttl, self.clock.now())
                .await;
            let retry_in = match outcome {
                Ok(Some(lease)) => return Ok(Some(lease)),
                Ok(None) => {
                    self.update(|s| s.state = RunnerState::Standby);
                    self.standby_retry
                }
                Err(LeaseError::Transient(message)) => {
                    failures = failures.saturating_add(1);
                    tracing::debug!(%message, "lease store unavailable");
                    self.policy.retry.backoff_ceiling(failures)
                }
                Err(error) => return Err(error.into()),
            };
            tokio::select! {
                () = tokio::time::sleep(retry_in) => {}
                () = shutdown.as_mut() => return Ok(None),
            }
        }
    }

    async fn consume(
        &mut self,
        mut lease: Lease,
        shutdown: &mut Pin<&mut (impl Future<Output = ()> + Send)>,
        until_caught_up: bool,
    ) -> Result<RunSummary, RunError> {
        let checkpoint = self
            .sink
            .claim(&self.name, lease.token)
            .await
            .map_err(RunError::Claim)?;
        let seed = mix(self.seed_base ^ self.runs);
        let mut machine = SubscriptionMachine::new(
            checkpoint,
            self.filter.clone(),
            self.policy.clone(),
            self.clock.now(),
            seed,
        );
        self.update(|s| {
            s.state = RunnerState::Running;
            s.token = Some(lease.token);
            s.checkpoint = checkpoint;
            s.handled_through = checkpoint;
            s.caught_up = false;
        });

        let Runner {
            name,
            store,
            sink,
            leases,
            dead_letters,
            wakeups,
            status,
            clock,
            lease_ttl,
            ..
        } = self;
        let clock = *clock;
        let lease_ttl = *lease_ttl;
        let renew_every = (lease_ttl / 3).max(Duration::from_millis(1));
        let mut renew_at = Instant::now() + renew_every;
        let mut wakeups = wakeups.clone();
        if let Some(w) = wakeups.as_mut() {
            let head = *w.borrow_and_update();
            machine.on_head(head, clock.now());
        }

        // The sink is moved into the consumer future and handed back with
        // its result: at most one consumer operation is in flight, and the
        // borrow checker can see it.
        let mut idle_sink: Option<&mut K> = Some(sink);
        let mut fetch: Option<BoxFuture<'_, (RequestId, Result<ReadAllResponse, StoreError>)>> = None;
        let mut work: Option<BoxFuture<'_, (&mut K, Work)>> = None;
        let mut shutting_down = false;

        loop {
            // Start everything the machine asks for, until it waits.
            let until = loop {
                match machine.poll() {
                    SubscriptionStep::Fetch { id, request } => {
                        let store = &*store;
                        fetch = Some(Box::pin(async move { (id, store.read_all(&request).await) }));
                    }
                    SubscriptionStep::Deliver(batch) => {
                        let Some(sink) = idle_sink.take() else {
                            return Err(internal("a delivery while the consumer is busy"));
                        };
                        work = Some(Box::pin(async move {
                            let result = sink.handle(&batch).await;
                            (sink, Work::Handled(batch.id, result))
                        }));
                    }
                    SubscriptionStep::SaveCheckpoint { id, position } => {
                        let Some(sink) = idle_sink.take() else {
                            return Err(internal("a checkpoint save while the consumer is busy"));
                        };
                        work = Some(Box::pin(async move {
                            let result = sink.save(position).await.map_err(ConsumerError::from);
                            (sink, Work::Saved(id, result))
                        }));
                    }
                    SubscriptionStep::Park { id, event, poison } => {
                        let Some(sink) = idle_sink.take() else {
                            return Err(internal("a park while the consumer is busy"));
                        };
                        let letter = DeadLetter {
                            subscription: name.clone(),
                            event,
                            poison,
                            parked_at: clock.now(),
                        };
                        let dead_letters = &*dead_letters;
                        work = Some(Box::pin(async move {
                            tracing::warn!(poison = %letter.poison, "parking poison event");
                            let result = dead_letters.park(letter).await.map_err(ConsumerError::from);
                            (sink, Work::Parked(id, result))
                        }));
                    }
                    SubscriptionStep::Wait { until } => break until,
                    SubscriptionStep::Stopped(outcome) => {
                        let stats = machine.stats().clone();
                        publish(status, &machine, false);
                        return match outcome {
                            Ok(checkpoint) => Ok(RunSummary {
                                checkpoint: Some(checkpoint),
                                stats,
                            }),
                            Err(error) => Err(error.into()),
                        };
                    }
                    SubscriptionStep::Finished => {
                        return Err(internal("subscription machine polled after it stopped"));
                    }
                }
            };
            let caught_up = machine.is_caught_up();
            publish(status, &machine, caught_up);
            if until_caught_up && caught_up && !shutting_down {
                shutting_down = true;
                machine.on_shutdown(clock.now());
                fetch = None;
                continue;
            }

            let input = tokio::select! {
                biased;
                () = shutdown.as_mut(), if !shutting_down => Input::Shutdown,
                done = poll_slot(&mut work) => Input::Work(done),
                (id, result) = poll_slot(&mut fetch) => Input::Fetched(id, result),
                changed = changed(&mut wakeups) => Input::Notified(changed),
                () = tokio::time::sleep_until(renew_at) => Input::Renew,
                () = tokio::time::sleep_until(clock.instant_at(until)), if until != eventcore::Time::MAX => Input::Wake,
            };
            let now = clock.now();
            match input {
                Input::Shutdown => {
                    shutting_down = true;
                    fetch = None;
                    machine.on_shutdown(now);
                }
                Input::Work((sink, done)) => {
                    work = None;
                    idle_sink = Some(sink);
                    match done {
                        Work::Handled(id, result) => machine.on_handled(id, result, now),
                        Work::Saved(id, result) => machine.on_checkpoint_saved(id, result, now),
                        Work::Parked(id, result) => machine.on_parked(id, result, now),
                    }
                }
                Input::Fetched(id, result) => {
                    fetch = None;
                    machine.on_fetched(id, result, now);
                }
                Input::Notified(open) => match wakeups.as_mut() {
                    Some(rx) if open => {
                        let head = *rx.borrow_and_update();
                        machine.on_head(head, now);
                    }
                    _ => {
                        // The notifier is gone: poll at the interval.
                        wakeups = None;
                        machine.on_notified(now);
                    }
                },
                Input::Renew => match leases.renew(&lease, lease_ttl, now).await {
                    Ok(renewed) => {
                        lease = renewed;
                        renew_at = Instant::now() + renew_every;
                    }
                    Err(LeaseError::Transient(message)) if !lease.is_expired(clock.now()) => {
                        tracing::debug!(%message, "lease renewal failed; retrying");
                        renew_at = Instant::now() + (renew_every / 4).max(Duration::from_millis(1));
                    }
                    Err(LeaseError::Transient(_)) => {
                        return Err(LeaseError::Lost {
                            name: lease.name.clone(),
                            holder: lease.holder.clone(),
                        }
                        .into());
                    }
                    Err(error) => return Err(error.into()),
                },
                Input::Wake => machine.on_wake(now),
            }
        }
    }

    fn update(&self, f: impl FnOnce(&mut RunnerStatus)) {
        self.status.send_modify(f);
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

enum Work {
    Handled(RequestId, Result<(), HandleError>),
    Saved(RequestId, Result<(), ConsumerError>),
    Parked(RequestId, Result<(), ConsumerError>),
}

enum Input<'a, K> {
    Shutdown,
    Work((&'a mut K, Work)),
    Fetched(RequestId, Result<ReadAllResponse, StoreError>),
    Notified(bool),
    Renew,
    Wake,
}

async fn poll_slot<F: Future + Unpin>(slot: &mut Option<F>) -> F::Output {
    match slot {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

/// Completes when the head moved (`true`) or the sender is gone (`false`);
/// never without a receiver.
async fn changed(wakeups: &mut Option<watch::Receiver<GlobalPosition>>) -> bool {
    match wakeups {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

fn publish(status: &watch::Sender<RunnerStatus>, machine: &SubscriptionMachine, caught_up: bool) {
    status.send_if_modified(|s| {
        let next = RunnerStatus {
            state: s.state.clone(),
            token: s.token,
            checkpoint: machine.checkpoint(),
            handled_through: machine.handled_through(),
            caught_up,
            stats: machine.stats().clone(),
        };
        let changed = *s != next;
        *s = next;
        changed
    });
}

fn internal(message: &str) -> RunError {
    RunError::Subscription(SubscriptionError::Consumer {
        attempts: 1,
        last: ConsumerError::Permanent(format!("runner bug: {message}")),
    })
}

fn default_holder() -> String {
    format!(
        "pid-{}-{:x}",
        std::process::id(),
        RandomState::new().build_hasher().finish()
    )
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
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
