//! What a runner reports: its state and status while it runs, and how a
//! run ended.

use crate::{CheckpointError, FencingToken, LeaseError};
use eventcore::{GlobalPosition, RemovedRange, SubscriptionError, SubscriptionMachine, SubscriptionStats};
use tokio::sync::watch;

#[cfg(doc)]
use super::Runner;

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
    /// Events fetched and not yet handled, now: never more than the
    /// policy's buffer limit (`SubscriptionPolicy::buffer_limit`, at least
    /// the batch size). The most ever is `stats.max_buffered`.
    pub buffered: usize,
    /// The machine's counters.
    pub stats: SubscriptionStats,
    /// Parked events replayed and removed at an operator's request
    /// ([`crate::DeadLetterStore::request_replay`]), since the runner was
    /// built.
    pub replayed: u64,
    /// Requested replays that failed again (the letter stays parked, its
    /// request cleared), since the runner was built.
    pub replay_failed: u64,
    /// The last range a retention run removed that this subscription moved
    /// past without seeing its events (each one is also logged at `warn`
    /// and counted in `stats.removed_ranges_skipped` and the metric
    /// `eventcore_subscription_removed_events_total`).
    pub last_skipped: Option<RemovedRange>,
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
    #[error("cannot claim the checkpoint")]
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

pub(super) fn publish(status: &watch::Sender<RunnerStatus>, machine: &SubscriptionMachine, caught_up: bool) {
    status.send_if_modified(|s| {
        let next = RunnerStatus {
            state: s.state.clone(),
            token: s.token,
            checkpoint: machine.checkpoint(),
            handled_through: machine.handled_through(),
            caught_up,
            buffered: machine.buffered(),
            stats: machine.stats().clone(),
            replayed: s.replayed,
            replay_failed: s.replay_failed,
            last_skipped: s.last_skipped.clone(),
        };
        let changed = *s != next;
        *s = next;
        changed
    });
}
