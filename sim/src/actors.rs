//! The actors' bookkeeping: clients, the commands they issued, and the
//! executions running on their behalf.

use crate::exec::Execution;
use crate::history::{CommandRecord, ExecutionRecord};
use crate::DomainCommand;
use eventcore::{CommandId, Time};
use std::collections::BTreeSet;

/// Identifies one running execution across the whole simulation.
pub type ExecId = u64;

/// A simulated client process: issues commands, runs several at once, and
/// may crash (losing every execution in flight) and restart.
#[derive(Debug)]
pub struct Client {
    /// Accepting work and receiving responses.
    pub up: bool,
    /// Executions in flight.
    pub running: BTreeSet<ExecId>,
    /// Commands still to issue in the safety phase.
    pub remaining: u32,
    /// Commands whose outcome a crash left unknown, waiting to be
    /// re-executed with their command id (indices into the command list).
    pub orphans: Vec<usize>,
    /// The client's stream cache (the core's `CachedStreams`, kept with
    /// `StreamCacheUse` exactly as the tokio executor keeps it), used to
    /// prime every execution. Lost in a crash.
    pub cache: eventcore::CachedStreams,
    /// The client's view cache (the core's, used as the tokio executor uses
    /// it). Lost in a crash.
    pub views: eventcore::ViewCache,
}

/// One command issued by a client, with every execution of it.
pub struct CommandEntry {
    /// What to execute.
    pub job: DomainCommand,
    /// Its idempotency key.
    pub command_id: CommandId,
    /// The client that owns it (and re-executes it after a crash).
    pub client: usize,
    /// Its executions so far.
    pub executions: Vec<ExecutionRecord>,
    /// The execution running now, if any.
    pub running: Option<ExecId>,
}

impl CommandEntry {
    /// See [`CommandRecord::is_resolved`].
    pub fn resolved(&self) -> bool {
        crate::history::resolved(&self.executions)
    }

    /// The history record.
    pub fn record(&self) -> CommandRecord {
        CommandRecord {
            command_id: self.command_id,
            label: self.job.label().to_owned(),
            executions: self.executions.clone(),
        }
    }
}

/// An execution in flight.
pub struct Running {
    /// Owner.
    pub client: usize,
    /// Index into the command list.
    pub command: usize,
    /// Index into that command's executions.
    pub execution: usize,
    /// The machine.
    pub machine: Box<dyn Execution>,
    /// The policy it runs under (the run's policy when it started).
    pub policy: eventcore::ExecutionPolicy,
    /// What the execution does with its client's stream cache.
    pub cache_use: eventcore::StreamCacheUse,
    /// Requests sent and not yet answered, so the cache can learn from an
    /// answer as the executor does (it needs what was asked).
    pub sent: std::collections::BTreeMap<eventcore::RequestId, SentRequest>,
    /// The wake-up already queued, to avoid queueing duplicates.
    pub wake: Option<Time>,
    /// For a view command: what its decisions saw.
    pub probe: Option<crate::probe::DecisionProbe>,
    /// Prime view streams from the cache and snapshots (a fresh command id).
    pub use_views: bool,
    /// View streams already looked up in this execution.
    pub tried: Vec<eventcore::StreamId>,
    /// View streams primed, with the version and where it came from.
    pub primed: Vec<(eventcore::StreamId, eventcore::StreamVersion, crate::views::Source)>,
    /// The `StreamDeleted` refusal the machine took, in words: from then
    /// on it must end, with that error, and ask for nothing more.
    pub met_deleted: Option<String>,
    /// Subjects whose keys the execution holds: those in the answers it
    /// read, and the new ones whose keys were created for its append.
    pub subjects: std::collections::BTreeSet<eventcore_shred::SubjectId>,
    /// Subjects its encoding wrote without a key (placeholders): their
    /// keys are created before the append is encoded again and sent.
    pub missing: std::collections::BTreeSet<eventcore_shred::SubjectId>,
    /// The first personal-data error met while encoding or decoding.
    pub personal_error: Option<eventcore_shred::PersonalError>,
    /// Whether any stream was primed from the client's stream cache: a
    /// decision on it is confirmed by a read before a refusal or an encode
    /// failure ends the command.
    pub primed_from_cache: bool,
}

/// A request an execution sent, kept for its stream cache.
pub enum SentRequest {
    /// A read.
    Read(eventcore::ReadRequest),
    /// An append.
    Append(eventcore::AppendRequest),
}

/// A subscription consumer: a [`eventcore::SubscriptionMachine`], a handler
/// that records what it handled, and a durable checkpoint that survives its
/// crashes.
pub struct Subscriber {
    /// The machine of the current run (`None` while crashed or after the end).
    pub machine: Option<eventcore::SubscriptionMachine>,
    /// Its policy.
    pub policy: eventcore::SubscriptionPolicy,
    /// Bumped at every restart; messages for older incarnations are dropped.
    pub incarnation: u32,
    /// The durable checkpoint.
    pub checkpoint: eventcore::GlobalPosition,
    /// Every position some run finished with (handled, or parked): what the
    /// checkpoint may cover.
    pub finished: std::collections::BTreeSet<eventcore::GlobalPosition>,
    /// Every matching event at or below this position is finished (checked
    /// up to here).
    pub covered: eventcore::GlobalPosition,
    /// The wake-up already queued.
    pub wake: Option<Time>,
    /// Stopped on purpose at the end of the run.
    pub shut_down: bool,
    /// What it did, for the checker.
    pub record: crate::check::SubscriberRecord,
    /// Instances competing for the subscription's lease; `None`: one
    /// instance, no coordination.
    pub lease: Option<Leased>,
    /// For a user projection: its read model as committed with the
    /// checkpoint (a crash loses nothing committed, and nothing else is
    /// kept).
    pub projection: Option<Box<dyn crate::domain::DomainProjection>>,
}

/// A subscription whose instances compete for a lease: the simulated lease
/// store (by simulated time, fence raised at every grant) and the instances,
/// each driving an [`eventcore::LeaseMachine`]. The run in
/// [`Subscriber::machine`] belongs to the instance that won last.
pub struct Leased {
    /// The lease timing every instance uses.
    pub policy: eventcore::LeasePolicy,
    /// Per-mille chance that a holder pauses between deciding a fenced write
    /// and making it, for longer than the TTL.
    pub pause: u32,
    /// Per-mille chance that a renewal's answer is slower than the TTL.
    pub slow_renewal: u32,
    /// The store's slot: who holds the lease (instance and the generation
    /// of its lease machine: a restarted instance is a new holder).
    pub holder: Option<(usize, u32)>,
    /// The newest token granted.
    pub token: u64,
    /// When the slot lapses (store clock).
    pub expires_at: Time,
    /// The checkpoint store's fence: writes carrying an older token are
    /// refused. Raised at every grant (lease and checkpoint share a store).
    pub fence: u64,
    /// The instances.
    pub instances: Vec<Instance>,
    /// Which instance owns the current run, and the token it runs with.
    pub runner: Option<(usize, eventcore::LeaseToken)>,
}

/// One competing instance of a leased subscription.
pub struct Instance {
    /// Its lease machine (`None` while crashed or after the end).
    pub machine: Option<eventcore::LeaseMachine>,
    /// Bumped for every new lease machine; older messages are dropped.
    pub generation: u32,
    /// The wake-up already queued.
    pub wake: Option<Time>,
    /// Paused (a GC pause, a frozen VM) until then: its lease traffic waits.
    pub paused_until: Option<Time>,
    /// Its last renewal was refused (so a loss is a refusal, not expiry).
    pub refused: bool,
}
