//! The [`Runner`]: its configuration, its builders and the entry points
//! that run it (acquire the lease, consume, release).

use super::{RunError, RunSummary, RunnerState, RunnerStatus, Sink, Subscriber, SubscriberSink};
use crate::{CheckpointStore, Clock, DeadLetterStore, EventStore, LeaseStore, NoDeadLetters, NoLease};
use eventcore::{EventFilter, GlobalPosition, SubscriptionPolicy, SubscriptionStats};
use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;
use tokio::sync::watch;
use tracing::Instrument;

#[cfg(doc)]
use eventcore::SubscriptionMachine;

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
    pub(super) name: String,
    pub(super) store: S,
    pub(super) sink: K,
    pub(super) leases: L,
    pub(super) dead_letters: D,
    pub(super) holder: String,
    pub(super) lease_ttl: Duration,
    pub(super) standby_retry: Duration,
    pub(super) policy: SubscriptionPolicy,
    pub(super) filter: EventFilter,
    pub(super) wakeups: Option<watch::Receiver<GlobalPosition>>,
    pub(super) status: watch::Sender<RunnerStatus>,
    pub(super) clock: Clock,
    pub(super) seed_base: u64,
    pub(super) runs: u64,
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

    async fn run_inner(
        &mut self,
        shutdown: impl Future<Output = ()> + Send,
        until_caught_up: bool,
    ) -> Result<RunSummary, RunError> {
        let span = tracing::info_span!("subscription", subscription = %self.name, holder = %self.holder);
        tokio::pin!(shutdown);
        self.runs += 1;
        let Some(hold) = self.acquire(&mut shutdown).instrument(span.clone()).await? else {
            self.update(|s| s.state = RunnerState::Stopped);
            return Ok(RunSummary {
                checkpoint: None,
                stats: SubscriptionStats::default(),
            });
        };
        let lease = hold.lease().clone();
        tracing::info!(parent: &span, token = %lease.token, "lease acquired");
        let result = self
            .consume(hold, &mut shutdown, until_caught_up)
            .instrument(span.clone())
            .await;
        // Best effort: if the lease was lost it is not ours to release, and
        // an unreleased lease simply expires.
        let _ = self.leases.release(&lease).await;
        self.update(|s| s.state = RunnerState::Stopped);
        match &result {
            Ok(summary) => tracing::debug!(parent: &span, checkpoint = ?summary.checkpoint, "subscription stopped"),
            Err(error) => {
                tracing::error!(parent: &span, error = error as &dyn std::error::Error, "subscription failed")
            }
        }
        result
    }

    pub(super) fn update(&self, f: impl FnOnce(&mut RunnerStatus)) {
        self.status.send_modify(f);
    }
}

fn default_holder() -> String {
    format!(
        "pid-{}-{:x}",
        std::process::id(),
        RandomState::new().build_hasher().finish()
    )
}

pub(super) fn mix(z: u64) -> u64 {
    eventcore::Entropy::mix(z)
}
