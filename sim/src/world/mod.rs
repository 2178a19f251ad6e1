//! The simulation loop: one thread, one virtual clock, one queue of timed
//! messages. Clients send requests to the store over a simulated network;
//! the fault layer decides, from the fault stream, what happens to each
//! message; the checker looks at the store after every step.
//!
//! A run has two phases. In the **safety** phase the faults of the seed's
//! plan are active. Once every client has issued its commands, the world
//! **heals**: no new faults, the store up, every client restarted; after the
//! network drains, every command whose outcome is still unknown is
//! re-executed with its command id until it gets a definitive answer. A
//! command that is still unresolved after [`LIVENESS_BOUND`] is a liveness
//! violation.

use crate::actors::{Client, CommandEntry, ExecId, Running, Subscriber};
use crate::check::{Checker, Invariant, Violation};
use crate::clock::VirtualClock;
use crate::coverage::Coverage;
use crate::exec::Sent;
use crate::faults::{FaultPlan, Profile};
use crate::history::{ExecutionOutcome, History};
use crate::queue::EventQueue;
use crate::rng::{Purpose, SimRng};
use crate::store::{Canary, SimStore};
use crate::trace::Trace;
use crate::workload::{RunShape, Workload};

mod client;
mod leases;
mod personal;
mod phases;
mod protocol;
mod server;
mod subscriber;
mod views;
use eventcore::{
    AppendReceipt, AppendRequest, ReadAllRequest, ReadAllResponse, ReadRequest, ReadResponse, RequestId, StoreError,
    Time,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long after healing every command must have a definitive outcome.
pub const LIVENESS_BOUND: Duration = Duration::from_secs(30);
/// Each client's stream cache bound, in events: small enough that busy
/// runs evict.
const STREAM_CACHE_EVENTS: usize = 64;
/// How long the healed network is left to drain before re-executing.
const DRAIN: Duration = Duration::from_secs(1);
/// A run that takes more steps than this is stuck (a livelock).
const MAX_STEPS: u64 = 2_000_000;

/// What to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimConfig {
    /// The seed: everything random derives from it.
    pub seed: u64,
    /// The fault profile.
    pub profile: Profile,
    /// A deliberately broken store (canary runs only).
    pub canary: Option<Canary>,
    /// Keep the trace lines (for printing a replay).
    pub keep_trace: bool,
    /// Multiplies the commands each client issues.
    pub scale: u32,
    /// At most this many clients (`None`: as the seed draws them). The
    /// workload draws are unchanged, so a capped run is a smaller version
    /// of the same seed (used to shrink a failure).
    pub max_clients: Option<u32>,
    /// At most this many commands per client (`None`: as drawn).
    pub max_commands_per_client: Option<u32>,
    /// Fault kinds switched off after the plan is drawn (names from
    /// [`FAULT_KINDS`](crate::faults::FAULT_KINDS); used to shrink a
    /// failure). Empty: the plan as drawn.
    pub faults_off: Vec<String>,
}

impl SimConfig {
    /// Seed `seed` under the default profile.
    pub fn new(seed: u64) -> Self {
        SimConfig {
            seed,
            profile: Profile::Default,
            canary: None,
            keep_trace: false,
            scale: 1,
            max_clients: None,
            max_commands_per_client: None,
            faults_off: Vec::new(),
        }
    }

    /// The command line that replays this run.
    pub fn replay_command(&self) -> String {
        let mut cmd = format!(
            "cargo run -p eventcore-sim --release -- --seed {} --profile {}",
            self.seed, self.profile
        );
        if self.scale != 1 {
            cmd.push_str(&format!(" --scale {}", self.scale));
        }
        if let Some(canary) = self.canary {
            cmd.push_str(&format!(" --canary {canary}"));
        }
        cmd
    }
}

/// The result of one run.
#[derive(Debug)]
pub struct RunReport {
    /// What ran.
    pub config: SimConfig,
    /// The parameters the seed chose (workload and faults), in words.
    pub parameters: String,
    /// Hash of the whole trace: equal for equal seeds.
    pub trace_hash: u64,
    /// The trace lines, if kept.
    pub trace: Vec<String>,
    /// Scheduler steps taken.
    pub steps: u64,
    /// Simulated time the run took.
    pub simulated: Duration,
    /// Everything broken (empty: the run passed).
    pub violations: Vec<Violation>,
    /// Paths exercised.
    pub coverage: Coverage,
    /// The recorded history the checker judged.
    pub history: History,
}

impl RunReport {
    /// True when no invariant broke.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

enum Request {
    Read(Sent<ReadRequest>),
    Append(Sent<AppendRequest>),
    ReadAll(RequestId, ReadAllRequest),
}

#[derive(Clone)]
enum Response {
    Read(RequestId, Result<ReadResponse, StoreError>),
    Append(RequestId, Result<AppendReceipt, StoreError>),
    ReadAll(RequestId, Result<ReadAllResponse, StoreError>),
}

/// Who a store message is for: a command execution, or one incarnation of
/// a subscriber (messages to an earlier incarnation are dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Exec(ExecId),
    Sub { sub: usize, incarnation: u32 },
}

impl Endpoint {
    fn exec(self) -> Option<ExecId> {
        match self {
            Endpoint::Exec(exec) => Some(exec),
            Endpoint::Sub { .. } => None,
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Exec(exec) => write!(f, "x{exec}"),
            Endpoint::Sub { sub, incarnation } => write!(f, "s{sub}.{incarnation}"),
        }
    }
}

/// A write of a leased subscription's run: its token, the run it belongs
/// to (an index into the record's runs) and whether its holder paused
/// before making it.
#[derive(Clone, Copy, Debug)]
struct FencedWrite {
    token: eventcore::LeaseToken,
    run: usize,
    paused: bool,
}

enum Msg {
    /// A request arrives at the store.
    Request { to: Endpoint, epoch: u64, request: Request },
    /// A response arrives at a client or a subscriber.
    Response {
        to: Endpoint,
        epoch: u64,
        response: Response,
    },
    /// An execution's timer.
    Wake { exec: ExecId },
    /// A client may issue more commands.
    Think { client: usize },
    /// A client process dies.
    Crash { client: usize, why: &'static str },
    /// A crashed client comes back.
    Restart { client: usize },
    /// The store goes down (every connection dies).
    StoreDown,
    /// The store comes back with its data.
    StoreUp,
    /// The clock steps forward.
    ClockJump { by: Duration },
    /// A commit notification (LISTEN/NOTIFY) reaches a subscriber.
    Notify { sub: usize, incarnation: u32 },
    /// A subscriber's handler finished a batch.
    Handled {
        sub: usize,
        incarnation: u32,
        batch: eventcore::Batch,
        /// The fenced write, for a leased subscription.
        write: Option<FencedWrite>,
    },
    /// A subscriber's checkpoint save finished.
    Saved {
        sub: usize,
        incarnation: u32,
        id: RequestId,
        position: eventcore::GlobalPosition,
        /// The fenced write, for a leased subscription.
        write: Option<FencedWrite>,
    },
    /// A lease request reaches the lease store.
    LeaseRequest {
        sub: usize,
        inst: usize,
        generation: u32,
        id: RequestId,
        op: leases::LeaseOp,
    },
    /// The lease store's answer reaches an instance.
    LeaseReply {
        sub: usize,
        inst: usize,
        generation: u32,
        id: RequestId,
        renewal: bool,
        result: Result<Option<eventcore::LeaseToken>, eventcore::LeaseFailure>,
    },
    /// An instance's lease timer.
    LeaseWake { sub: usize, inst: usize, generation: u32 },
    /// A subscriber's timer.
    SubWake { sub: usize, incarnation: u32 },
    /// A subscriber process dies.
    SubCrash { sub: usize },
    /// It comes back and resumes from its saved checkpoint.
    SubRestart { sub: usize },
    /// The open batch of appends closes and is applied (group commit).
    FlushBatch { epoch: u64 },
    /// A subject is forgotten (`pick` chooses among those with a key).
    Forget { pick: u64 },
    /// The faults stop.
    Heal,
    /// Re-execute every command whose outcome is still unknown.
    Resolve,
}

/// Runs one seed to the end and checks it.
///
/// ```
/// use eventcore_sim::{run, SimConfig};
/// let report = run(&SimConfig::new(1));
/// assert!(report.passed(), "{:?}", report.violations);
/// assert_eq!(report.trace_hash, run(&SimConfig::new(1)).trace_hash);
/// ```
pub fn run(config: &SimConfig) -> RunReport {
    run_with(config, crate::workload::BankAndShop::new())
}

/// Runs one seed of a user [`Domain`](crate::Domain) instead of the
/// built-in workloads: the same clients, faults, healing and checks, with
/// the domain's commands and its rules. See [`crate::domain`] for a
/// complete example; [`crate::harness::Sweep`] runs many seeds.
///
/// ```
/// # use eventcore_sim::{run_with, Domain, DomainCommand, SimConfig};
/// # use eventcore_sim::{check::DomainModel, rng::SimRng};
/// use eventcore_sim::workload::bank::{account, OpenAccount};
/// struct Accounts;
/// impl Domain for Accounts {
///     fn name(&self) -> String { "accounts".into() }
///     fn setup(&mut self, _: &mut SimRng) -> Vec<DomainCommand> { Vec::new() }
///     fn next_command(&mut self, rng: &mut SimRng) -> DomainCommand {
///         DomainCommand::new("open", OpenAccount { account: account(rng.below(4) as u32), initial: 10 })
///     }
///     fn models(&self) -> Vec<Box<dyn DomainModel>> { Vec::new() }
/// }
/// let report = run_with(&SimConfig::new(7), Accounts);
/// assert!(report.violations.is_empty());
/// ```
pub fn run_with<D: crate::Domain + 'static>(config: &SimConfig, domain: D) -> RunReport {
    World::new(config, Box::new(domain)).run()
}

struct World {
    config: SimConfig,
    clock: VirtualClock,
    queue: EventQueue<Msg>,
    sched: SimRng,
    faults: SimRng,
    net: SimRng,
    /// Lease traffic and lease faults (a stream of their own).
    lease_faults: SimRng,
    /// Crashes of subscribers inside their fetch-handle-checkpoint window.
    window: SimRng,
    /// Window crashes still to come (the plan's subscriber crashes again).
    window_crashes: u32,
    workload: Workload,
    plan: FaultPlan,
    active: FaultPlan,
    store: SimStore,
    clients: Vec<Client>,
    in_flight: u32,
    commands: Vec<CommandEntry>,
    execs: BTreeMap<ExecId, Running>,
    next_exec: ExecId,
    subscribers: Vec<Subscriber>,
    checker: Checker,
    trace: Trace,
    coverage: Coverage,
    heal_scheduled: bool,
    healed_at: Option<Time>,
    failed: bool,
    steps: u64,
    /// Heal no later than this, whatever the clients are doing.
    safety_cap: Time,
    /// Violations the checker cannot see (a stuck run).
    extra: Vec<Violation>,
    /// Appends waiting for the open batch to close (group commit), in
    /// arrival order, with the store epoch they arrived in.
    batch: Vec<(Endpoint, Sent<AppendRequest>)>,
    /// The snapshot store of stream views.
    snapshots: crate::views::SnapshotStore,
    /// The model key store: subjects' keys and forgets.
    vault: crate::personal::KeyVault,
    /// The step at which each event id was first sealed into an append
    /// that left.
    sealed_at: BTreeMap<eventcore::EventId, u64>,
    /// Each committed customer event as it read when it committed.
    written: BTreeMap<eventcore::EventId, crate::workload::customers::CustomerEvent>,
}

impl World {
    fn new(config: &SimConfig, domain: Box<dyn crate::Domain>) -> Self {
        let mut faults = SimRng::new(config.seed, Purpose::Faults);
        let shape = RunShape::draw(&mut SimRng::new(config.seed, Purpose::Shape), config.scale);
        let workload = Workload::new(shape, SimRng::new(config.seed, Purpose::Workload), domain);
        let models = workload.domain_models();
        let mut subscribers = subscriber::subscribers(config.seed);
        let first = subscribers.len();
        subscribers.extend(subscriber::projection_subscribers(
            config.seed,
            first,
            workload.projections(),
        ));
        let plan = config.faults_off.iter().fold(
            FaultPlan::choose(config.profile, &mut faults)
                .with_batching(config.profile, &mut SimRng::new(config.seed, Purpose::Batching)),
            |plan, kind| plan.without(kind),
        );
        let mut params = workload.shape().clone();
        if let Some(max) = config.max_clients {
            params.clients = params.clients.min(max.max(1));
        }
        if let Some(max) = config.max_commands_per_client {
            params.commands_per_client = params.commands_per_client.min(max);
        }
        let clients = (0..params.clients)
            .map(|_| Client {
                up: true,
                running: Default::default(),
                remaining: params.commands_per_client,
                orphans: Vec::new(),
                cache: eventcore::CachedStreams::new(STREAM_CACHE_EVENTS),
                views: eventcore::ViewCache::new(plan.view_cache_bytes),
            })
            .collect();
        World {
            config: config.clone(),
            clock: VirtualClock::new(),
            queue: EventQueue::new(),
            sched: SimRng::new(config.seed, Purpose::Scheduler),
            faults,
            net: SimRng::new(config.seed, Purpose::Network),
            lease_faults: SimRng::new(config.seed, Purpose::LeaseFaults),
            window: SimRng::new(config.seed, Purpose::SubscriberWindow),
            window_crashes: plan.subscriber_crashes,
            workload,
            active: plan.clone(),
            plan,
            store: SimStore::new(config.canary),
            clients,
            in_flight: params.in_flight,
            commands: Vec::new(),
            execs: BTreeMap::new(),
            next_exec: 0,
            subscribers,
            checker: Checker::new(models),
            trace: Trace::new(config.keep_trace),
            coverage: Coverage::default(),
            heal_scheduled: false,
            healed_at: None,
            failed: false,
            steps: 0,
            extra: Vec::new(),
            safety_cap: Time::MAX,
            batch: Vec::new(),
            snapshots: crate::views::SnapshotStore::default(),
            vault: if config.canary == Some(Canary::KeepForgottenKeys) {
                crate::personal::KeyVault::keeping_forgotten_keys(config.seed)
            } else {
                crate::personal::KeyVault::new(config.seed)
            },
            sealed_at: BTreeMap::new(),
            written: BTreeMap::new(),
        }
    }

    fn now(&self) -> Time {
        self.clock.now()
    }

    fn log(&mut self, args: std::fmt::Arguments<'_>) {
        let now = self.clock.now();
        self.trace.line(now, args);
    }

    fn push(&mut self, at: Time, msg: Msg) {
        let tie = self.sched.next_u64();
        self.queue.push(at, tie, msg);
    }

    fn parameters(&self) -> String {
        format!(
            "seed={} profile={}{} | workload: {} | subscribers: [{}] | faults: {}",
            self.config.seed,
            self.config.profile,
            self.config.canary.map(|c| format!(" canary={c}")).unwrap_or_default(),
            self.workload.describe(),
            self.subscribers
                .iter()
                .map(|s| format!("{} batch={}", s.record.name, s.policy.batch_size))
                .collect::<Vec<_>>()
                .join(", "),
            self.plan
        ) + &self.limits()
    }

    /// The caps of a shrunk run, in words (empty when there are none, so
    /// an uncapped run's trace is unchanged).
    fn limits(&self) -> String {
        let mut out = String::new();
        if let Some(max) = self.config.max_clients {
            out.push_str(&format!(" | max clients {max}"));
        }
        if let Some(max) = self.config.max_commands_per_client {
            out.push_str(&format!(" | max commands/client {max}"));
        }
        if !self.config.faults_off.is_empty() {
            out.push_str(&format!(" | faults off: {}", self.config.faults_off.join(",")));
        }
        out
    }

    fn run(mut self) -> RunReport {
        let parameters = self.parameters();
        self.log(format_args!("start {parameters}"));
        self.setup();
        for sub in 0..self.subscribers.len() {
            if self.subscribers[sub].lease.is_some() {
                self.start_instances(sub);
            } else {
                self.start_subscriber(sub);
            }
        }
        self.schedule_safety_phase();
        self.schedule_forgets();
        while !self.failed {
            let Some((at, msg)) = self.queue.pop() else { break };
            self.clock.advance_to(at);
            self.steps += 1;
            if self.healed_at.is_none() && self.now() >= self.safety_cap {
                self.heal();
            }
            if self.steps > MAX_STEPS {
                self.violation(Invariant::Liveness, format!("no progress after {MAX_STEPS} steps"));
                break;
            }
            if let Some(healed) = self.healed_at {
                if self.now() > healed.saturating_add(LIVENESS_BOUND) {
                    self.log(format_args!("liveness bound reached"));
                    break;
                }
            }
            self.deliver(msg);
        }
        self.finish(parameters)
    }

    fn finish(mut self, parameters: String) -> RunReport {
        if !self.failed {
            self.read_back_store("at the end");
        }
        for running in self.execs.values() {
            if let Some(entry) = self.commands.get_mut(running.command) {
                if let Some(record) = entry.executions.get_mut(running.execution) {
                    record.outcome = ExecutionOutcome::Running;
                }
            }
        }
        let history = History {
            events: self.store.data().events().to_vec(),
            commands: self.commands.iter().map(CommandEntry::record).collect(),
        };
        let require_resolved = !self.failed;
        let checker = std::mem::replace(&mut self.checker, Checker::new(Vec::new()));
        let mut violations = std::mem::take(&mut self.extra);
        violations.extend(checker.finish(&history, require_resolved));
        for sub in &self.subscribers {
            violations.extend(crate::check::check_subscriber(
                &history.events,
                &sub.record,
                require_resolved,
            ));
        }
        violations.extend(self.check_projections(&history.events));
        for v in &violations {
            self.log(format_args!("VIOLATION {v}"));
        }
        self.log(format_args!(
            "end: {} events, {} commands, {} violations",
            history.events.len(),
            history.commands.len(),
            violations.len()
        ));
        RunReport {
            config: self.config,
            parameters,
            trace_hash: self.trace.hash(),
            trace: self.trace.lines().to_vec(),
            steps: self.steps,
            simulated: self.clock.elapsed(),
            violations,
            coverage: self.coverage,
            history,
        }
    }

    fn violation(&mut self, invariant: Invariant, detail: String) {
        self.failed = true;
        self.extra.push(Violation { invariant, detail });
    }
}

impl World {
    fn deliver(&mut self, msg: Msg) {
        match msg {
            Msg::Request { to, epoch, request } => self.on_request(to, epoch, request),
            Msg::Response {
                to: Endpoint::Exec(exec),
                epoch,
                response,
            } => self.on_response(exec, epoch, response),
            Msg::Response {
                to: Endpoint::Sub { sub, incarnation },
                epoch,
                response,
            } => self.on_sub_response(sub, incarnation, epoch, response),
            Msg::Notify { sub, incarnation } => self.on_notify(sub, incarnation),
            Msg::Handled {
                sub,
                incarnation,
                batch,
                write,
            } => self.on_handled(sub, incarnation, batch, write),
            Msg::Saved {
                sub,
                incarnation,
                id,
                position,
                write,
            } => self.on_saved(sub, incarnation, id, position, write),
            Msg::LeaseRequest {
                sub,
                inst,
                generation,
                id,
                op,
            } => self.on_lease_request(sub, inst, generation, id, op),
            msg @ Msg::LeaseReply { .. } => self.on_lease_reply(msg),
            msg @ Msg::LeaseWake { .. } => self.on_lease_wake(msg),
            Msg::SubWake { sub, incarnation } => self.on_sub_wake(sub, incarnation),
            Msg::SubCrash { sub } => self.sub_crash(sub),
            Msg::SubRestart { sub } => self.sub_restart(sub),
            Msg::Wake { exec } => self.on_wake(exec),
            Msg::Think { client } => self.think(client),
            Msg::Crash { client, why } => self.crash(client, why),
            Msg::Restart { client } => self.restart(client),
            Msg::FlushBatch { epoch } => self.flush_batch(epoch),
            Msg::StoreDown => self.store_down(),
            Msg::StoreUp => self.store_up(),
            Msg::ClockJump { by } => self.clock_jump(by),
            Msg::Forget { pick } => self.on_forget(pick),
            Msg::Heal => self.heal(),
            Msg::Resolve => self.resolve(),
        }
    }
}
