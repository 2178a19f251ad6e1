//! One chaos run: set up a fresh schema, start the proxy, run the bank
//! workload through the real [`Executor`] and [`PostgresStore`] while the
//! fault schedule plays, heal, settle every unknown outcome, read the whole
//! store back over a direct connection and judge it with the simulator's
//! invariant checker.

use crate::faults::{FaultCounters, FaultKind, FaultMix, FaultReport, FaultRng, FaultSchedule};
use crate::ledger::{owner, Consolidate, LedgerModel, Link};
use crate::proxy::{BackendPorts, Proxy, ProxyConfig, ProxyError};
use crate::record::{OutcomeClass, Recorder, RecordingStore};
use eventcore::{Batch, HandleError, SubscriptionPolicy};
use eventcore::{
    Command, EventFilter, ExecutionContext, ExecutionPolicy, GlobalPosition, ReadAllRequest, RecordedEvent,
    RetryPolicy, StoreError, StreamId,
};
use eventcore_examples::bank::{account, Audit, OpenAccount, Transfer};
use eventcore_postgres::{migrate_subscriptions, PgCheckpointStore, PgNotifier};
use eventcore_postgres::{PostgresOptions, PostgresStore, SetupError};
use eventcore_sim::check::{Checker, Violation};
use eventcore_tokio::{EventStore, Executor, Runner, Subscriber};
use sqlx::postgres::{PgConnectOptions, PgPool};
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What a run does.
#[derive(Clone, Debug)]
pub struct ChaosConfig {
    /// Seed of the fault schedule, the proxy's decisions and the workload.
    pub seed: u64,
    /// How long faults are scheduled.
    pub fault_phase: Duration,
    /// How long the workload goes on after the faults stop (liveness).
    pub heal_phase: Duration,
    /// Concurrent clients (half on each proxied pool).
    pub clients: usize,
    /// Accounts opened at the start.
    pub accounts: u32,
    /// Owners, each linked to four accounts.
    pub owners: u32,
    /// Initial balance of every account.
    pub initial_balance: u64,
    /// The faults per minute of fault phase.
    pub mix: FaultMix,
    /// Bound on commands per client, whatever the time.
    pub max_commands_per_client: usize,
}

impl ChaosConfig {
    /// A run of `fault_phase` with the default mix, 12 clients, 16 accounts
    /// and 4 owners.
    pub fn new(seed: u64, fault_phase: Duration) -> Self {
        ChaosConfig {
            seed,
            fault_phase,
            heal_phase: Duration::from_secs(3),
            clients: 12,
            accounts: 16,
            owners: 4,
            initial_balance: 1_000,
            mix: FaultMix::default(),
            max_commands_per_client: 100_000,
        }
    }
}

/// Why a run could not be carried out (as opposed to finding violations).
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// The database URL could not be understood or is not on loopback.
    #[error("database URL: {0}")]
    Url(String),
    /// Starting the proxy failed.
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    /// Connecting a store failed.
    #[error("connecting a store: {0}")]
    Setup(#[from] SetupError),
    /// A direct query failed.
    #[error("direct query: {0}")]
    Database(#[from] sqlx::Error),
    /// Setting up the accounts failed.
    #[error("setup command `{label}` failed: {reason}")]
    SetupCommand {
        /// The command.
        label: String,
        /// Why.
        reason: String,
    },
    /// Reading the history back failed.
    #[error("reading the store back: {0}")]
    ReadBack(#[from] StoreError),
}

/// What the subscriber (a `read_all` poller through the proxy) saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscriberCheck {
    /// Events delivered.
    pub delivered: usize,
    /// Reads that failed (and were retried), or runner restarts after an
    /// error.
    pub failed_reads: u64,
    /// Events delivered again after a restart (at-least-once; allowed only
    /// after a restart, and only events delivered before).
    pub redelivered: usize,
    /// LISTEN/NOTIFY wake-ups the runner's notifier received.
    pub notifications: u64,
    /// Times the notifier's connection was re-established.
    pub reconnects: u64,
    /// Every discrepancy with the store's final log.
    pub problems: Vec<String>,
}

/// Everything a run found.
#[derive(Clone, Debug)]
pub struct ChaosReport {
    /// The seed.
    pub seed: u64,
    /// Fault counts, scheduled and injected.
    pub faults: FaultReport,
    /// Fault kinds scheduled (or required) but never injected.
    pub missing_faults: Vec<FaultKind>,
    /// Executions per outcome class (re-executions included).
    pub outcomes: BTreeMap<OutcomeClass, u64>,
    /// Commands issued.
    pub commands: usize,
    /// Commands whose outcome was unknown at first and were settled by
    /// re-executing with the same command id.
    pub settled: usize,
    /// Events in the store at the end.
    pub events: usize,
    /// Connections the proxy accepted.
    pub proxy_connections: u64,
    /// The simulator checker's violations.
    pub violations: Vec<Violation>,
    /// The examples' own `Audit` of the bank (money, versions, negatives).
    pub audit: Vec<String>,
    /// The polling subscriber's check (plain `read_all` through the proxy).
    pub subscriber: SubscriberCheck,
    /// The subscription runner's check (`eventcore_tokio::Runner` with its
    /// checkpoint in PostgreSQL and LISTEN/NOTIFY wake-ups, all through the
    /// proxy, restarted after errors).
    pub runner: SubscriberCheck,
    /// Acknowledgements that carried a deduplicated receipt: the command
    /// had committed on an earlier send whose answer was lost.
    pub deduplicated_acks: u64,
}

impl ChaosReport {
    /// No violation, every scheduled fault injected, subscriber clean.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
            && self.audit.is_empty()
            && self.missing_faults.is_empty()
            && self.subscriber.problems.is_empty()
            && self.runner.problems.is_empty()
    }
}

impl fmt::Display for ChaosReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "chaos run, seed {}", self.seed)?;
        writeln!(
            f,
            "replay: EVENTCORE_CHAOS_SEED={} cargo test -p eventcore-chaos --test chaos -- --nocapture",
            self.seed
        )?;
        write!(f, "{}", self.faults)?;
        if !self.missing_faults.is_empty() {
            let names: Vec<&str> = self.missing_faults.iter().map(|k| k.name()).collect();
            writeln!(f, "SCHEDULED BUT NEVER INJECTED: {}", names.join(", "))?;
        }
        writeln!(
            f,
            "proxy connections: {}; commands: {}; events: {}; unknown outcomes settled: {}",
            self.proxy_connections, self.commands, self.events, self.settled
        )?;
        for class in OutcomeClass::ALL {
            writeln!(
                f,
                "  {:<24} {}",
                class.name(),
                self.outcomes.get(&class).copied().unwrap_or(0)
            )?;
        }
        writeln!(
            f,
            "invariants (simulator checker: store contract, atomic append, expected versions, idempotency, acknowledged, nothing-written, re-execution, liveness, money conserved, no negative balance): {}",
            if self.violations.is_empty() { "all hold".to_owned() } else { format!("{} VIOLATIONS", self.violations.len()) }
        )?;
        for v in self.violations.iter().take(20) {
            writeln!(f, "  {v}")?;
        }
        writeln!(
            f,
            "bank audit (examples::bank::Audit): {}",
            if self.audit.is_empty() {
                "clean".to_owned()
            } else {
                self.audit.join("; ")
            }
        )?;
        writeln!(
            f,
            "  acknowledged with a deduplicated receipt (committed earlier, answer lost): {}",
            self.deduplicated_acks
        )?;
        for (name, check, retried) in [
            ("polling subscriber", &self.subscriber, "failed reads retried"),
            (
                "subscription runner (PostgreSQL checkpoint, LISTEN/NOTIFY wake-ups)",
                &self.runner,
                "restarts after an error",
            ),
        ] {
            writeln!(
                f,
                "{name}: {} events delivered, {} {retried}, {} redelivered after a restart: {}",
                check.delivered,
                check.failed_reads,
                check.redelivered,
                if check.problems.is_empty() {
                    "every event once, in global order".to_owned()
                } else {
                    check.problems.join("; ")
                }
            )?;
        }
        writeln!(
            f,
            "  notifier: {} notifications, {} reconnects",
            self.runner.notifications, self.runner.reconnects
        )?;
        writeln!(f, "result: {}", if self.passed() { "PASSED" } else { "FAILED" })
    }
}

/// The loopback address PostgreSQL listens on, from a database URL.
pub fn upstream_of(url: &str) -> Result<SocketAddr, ChaosError> {
    let options = PgConnectOptions::from_str(url).map_err(|e| ChaosError::Url(e.to_string()))?;
    let host = options.get_host();
    let ip = match host {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        other => other
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .map_err(|_| ChaosError::Url(format!("host `{other}` is not a loopback address")))?,
    };
    if !ip.is_loopback() {
        return Err(ChaosError::Url(format!("host `{host}` is not a loopback address")));
    }
    Ok(SocketAddr::new(ip, options.get_port()))
}

/// `url` pointed at `addr`, without TLS, plus extra query parameters.
pub fn redirect(url: &str, addr: SocketAddr, extra: &[(&str, &str)]) -> Result<String, ChaosError> {
    let scheme_end = url.find("://").ok_or_else(|| ChaosError::Url("no scheme".to_owned()))? + 3;
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let userinfo = authority.rfind('@').map(|at| &authority[..=at]).unwrap_or("");
    let tail = &rest[authority_end..];
    let (path, query) = match tail.find('?') {
        Some(q) => (&tail[..q], &tail[q + 1..]),
        None => (tail, ""),
    };
    let mut params: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("sslmode=") && !p.starts_with("host=") && !p.starts_with("port="))
        .map(str::to_owned)
        .collect();
    params.push("sslmode=disable".to_owned());
    params.extend(extra.iter().map(|(k, v)| format!("{k}={v}")));
    Ok(format!(
        "{}{userinfo}{addr}{path}?{}",
        &url[..scheme_end],
        params.join("&")
    ))
}

type Exec = Executor<RecordingStore<PostgresStore>>;

struct Shared {
    config: ChaosConfig,
    counters: Arc<FaultCounters>,
    recorder: Arc<Recorder>,
    direct: PostgresStore,
    heal_at: Instant,
    stop_at: Instant,
}

/// Runs the chaos suite against `direct` (a migrated store on a fresh
/// schema, connected directly to PostgreSQL on loopback).
///
/// # Errors
///
/// When the run cannot be carried out (proxy, connections, setup). Broken
/// invariants are not errors: they are in the report.
pub async fn run(config: ChaosConfig, direct: PostgresStore) -> Result<ChaosReport, ChaosError> {
    let options = direct.options().clone();
    let upstream = upstream_of(&options.url)?;
    let counters = Arc::new(FaultCounters::default());
    let recorder = Arc::new(Recorder::default());
    let proxy = Proxy::start(ProxyConfig::new(upstream, config.seed), counters.clone()).await?;

    // Two proxied pools: A has a lock_timeout under a long statement
    // timeout, B a short statement timeout and a small pool.
    let url_a = redirect(&options.url, proxy.addr(), &[("options[lock_timeout]", "100")])?;
    let url_b = redirect(&options.url, proxy.addr(), &[])?;
    let store_a = PostgresStore::connect_with(
        PostgresOptions::new(url_a)
            .schema(options.schema.clone())
            .max_connections(4)
            .connect_timeout(Duration::from_millis(300))
            .statement_timeout(Duration::from_secs(2))
            .operation_timeout(Duration::from_secs(3)),
    )
    .await?;
    let pool_b_size = 3;
    let store_b = PostgresStore::connect_with(
        PostgresOptions::new(url_b)
            .schema(options.schema.clone())
            .max_connections(pool_b_size)
            .connect_timeout(Duration::from_millis(300))
            .statement_timeout(Duration::from_millis(150))
            .operation_timeout(Duration::from_secs(2)),
    )
    .await?;
    let policy = ExecutionPolicy {
        retry: RetryPolicy {
            max_attempts: 12,
            initial_backoff: Duration::from_millis(5),
            multiplier: 2,
            max_backoff: Duration::from_millis(200),
        },
        read_timeout: Duration::from_secs(1),
        append_timeout: Duration::from_secs(1),
        timeout: Some(Duration::from_secs(6)),
        ..ExecutionPolicy::default()
    };
    let wrap = |store: PostgresStore| RecordingStore::new(store, recorder.clone(), counters.clone());
    let exec_a: Arc<Exec> = Arc::new(Executor::new(wrap(store_a.clone())).with_policy(policy.clone()));
    let exec_b: Arc<Exec> = Arc::new(Executor::new(wrap(store_b.clone())).with_policy(policy.clone()));
    let exec_direct: Arc<Exec> = Arc::new(Executor::new(wrap(direct.clone())));

    let start = Instant::now();
    let shared = Arc::new(Shared {
        config: config.clone(),
        counters: counters.clone(),
        recorder: recorder.clone(),
        direct: direct.clone(),
        heal_at: start + config.fault_phase,
        stop_at: start + config.fault_phase + config.heal_phase,
    });

    migrate_subscriptions(&direct).await?;
    setup(&shared, &exec_direct).await?;

    // The subscriber reads through the proxy for the whole run.
    let subscriber_stop = Arc::new(AtomicBool::new(false));
    let subscriber = tokio::spawn(subscribe(store_a.clone(), subscriber_stop.clone()));
    let runner = tokio::spawn(run_subscription(store_b.clone(), subscriber_stop.clone()));

    // The fault schedule.
    let schedule = FaultSchedule::generate(config.seed, config.fault_phase, &config.mix);
    let side = Arc::new(SideFaults {
        direct_pool: direct.pool().clone(),
        schema: options.schema.clone(),
        squeeze_pool: store_b.pool().clone(),
        squeeze_size: pool_b_size,
        hot: (1..=4.min(config.accounts)).map(account).collect(),
        ports: proxy.ports(),
    });
    let faults = tokio::spawn(play(shared.clone(), schedule, side, start));
    proxy.set_jitter(true);
    counters.schedule(FaultKind::Jitter);

    let mut clients = Vec::new();
    for i in 0..config.clients {
        let executor = if i % 2 == 0 { exec_a.clone() } else { exec_b.clone() };
        clients.push(tokio::spawn(client(shared.clone(), executor, i as u64)));
    }
    let mut pending = Vec::new();
    for handle in clients {
        if let Ok(mut left) = handle.await {
            pending.append(&mut left);
        }
    }
    let _ = faults.await;
    counters.disarm_all();
    proxy.set_jitter(false);

    // Settle what is still unknown, directly (the faults are over).
    let settled = pending.len();
    for op in pending {
        settle(&shared, &exec_direct, op).await;
    }

    let events = read_back(&direct).await?;
    subscriber_stop.store(true, Ordering::SeqCst);
    let (delivered, failed_reads) = match tokio::time::timeout(Duration::from_secs(30), subscriber).await {
        Ok(Ok(seen)) => seen,
        _ => (Vec::new(), 0),
    };
    // A failed read is retried from the same position: no re-delivery is
    // ever allowed for the poller.
    let subscriber = SubscriberCheck {
        failed_reads,
        ..check_subscriber(&events, &delivered, 0)
    };
    let runner = match tokio::time::timeout(Duration::from_secs(60), runner).await {
        Ok(Ok((delivered, restarts, notifications, reconnects))) => SubscriberCheck {
            notifications,
            reconnects,
            ..check_subscriber(&events, &delivered, restarts)
        },
        _ => SubscriberCheck {
            problems: vec!["the subscription runner did not finish catching up".to_owned()],
            ..SubscriberCheck::default()
        },
    };

    let audit = Audit::of(&events).violations;
    let history = recorder.history(events);
    let checker = Checker::new(vec![Box::new(LedgerModel::default())]);
    let violations = checker.finish(&history, true);

    let faults = counters.snapshot();
    let mut required = Vec::new();
    if faults.scheduled(FaultKind::LockHold) > 0 {
        required.extend([FaultKind::LockTimeout, FaultKind::StatementTimeout]);
    }
    if faults.scheduled(FaultKind::PoolSqueeze) > 0 {
        required.push(FaultKind::PoolTimeout);
    }
    let missing_faults = faults.missing(&required);
    Ok(ChaosReport {
        seed: config.seed,
        faults,
        missing_faults,
        outcomes: recorder.classes(),
        commands: history.commands.len(),
        settled,
        events: history.events.len(),
        proxy_connections: proxy.connections(),
        violations,
        audit,
        subscriber,
        runner,
        deduplicated_acks: recorder.deduplicated_acks(),
    })
}

async fn setup(shared: &Shared, exec: &Exec) -> Result<(), ChaosError> {
    let config = &shared.config;
    for n in 1..=config.accounts {
        let command = OpenAccount {
            account: account(n),
            initial: config.initial_balance,
        };
        run_setup(shared, exec, format!("open {}", command.account), command).await?;
    }
    for o in 1..=config.owners {
        for k in 0..4 {
            let number = ((o - 1) * 4 + k) % config.accounts.max(1) + 1;
            let command = Link {
                owner: owner(o),
                account: number,
            };
            run_setup(shared, exec, format!("link account-{number} to owner-{o}"), command).await?;
        }
    }
    Ok(())
}

async fn run_setup<C: Command + Clone>(
    shared: &Shared,
    exec: &Exec,
    label: String,
    command: C,
) -> Result<(), ChaosError> {
    let id = exec.new_command_id();
    let result = exec.execute_with(command, ExecutionContext::new(id)).await;
    let (class, _) = shared
        .recorder
        .finish_execution(id, &label, GlobalPosition::START, false, &result);
    match (class, result) {
        (OutcomeClass::Acknowledged, _) => Ok(()),
        (_, Err(e)) => Err(ChaosError::SetupCommand {
            label,
            reason: e.to_string(),
        }),
        (_, Ok(_)) => Err(ChaosError::SetupCommand {
            label,
            reason: "not acknowledged".to_owned(),
        }),
    }
}

/// A command of the workload.
#[derive(Clone, Debug)]
enum Op {
    Transfer(Transfer),
    Consolidate(Consolidate),
}

impl Op {
    fn label(&self) -> String {
        match self {
            Op::Transfer(t) => format!("transfer {} -> {}: {}", t.from, t.to, t.amount),
            Op::Consolidate(c) => format!("consolidate {} by {}", c.owner, c.amount),
        }
    }
}

/// An operation whose outcome is still unknown, with its command id.
type Pending = (Op, eventcore::CommandId);

async fn client(shared: Arc<Shared>, exec: Arc<Exec>, index: u64) -> Vec<Pending> {
    let config = &shared.config;
    let mut rng = FaultRng::new(config.seed, 1_000 + index);
    let mut pending = Vec::new();
    for _ in 0..config.max_commands_per_client {
        if Instant::now() >= shared.stop_at {
            break;
        }
        let op = if rng.percent(15) {
            Op::Consolidate(Consolidate {
                owner: owner(rng.between(1, u64::from(config.owners.max(1))) as u32),
                amount: 5,
            })
        } else {
            // Half of the transfers touch the hot accounts (1..=4).
            let pick = |rng: &mut FaultRng| {
                if rng.percent(50) {
                    rng.between(1, 4.min(u64::from(config.accounts)))
                } else {
                    rng.between(1, u64::from(config.accounts))
                }
            };
            let from = pick(&mut rng);
            let mut to = pick(&mut rng);
            if to == from {
                to = from % u64::from(config.accounts) + 1;
            }
            Op::Transfer(Transfer {
                from: account(from as u32),
                to: account(to as u32),
                // Now and then more than an account may hold, so that the
                // domain refuses (and the checker verifies it wrote nothing).
                amount: if rng.percent(10) {
                    rng.between(config.initial_balance / 2, config.initial_balance * 2)
                } else {
                    rng.between(1, 30)
                },
            })
        };
        let id = exec.new_command_id();
        // Now and then the client "crashes": the execution is dropped after
        // a few milliseconds, wherever it is, and re-executed below.
        let crash = (Instant::now() < shared.heal_at && rng.percent(config.mix.crash_percent))
            .then(|| Duration::from_millis(rng.between(1, 40)));
        if crash.is_some() {
            shared.counters.schedule(FaultKind::ClientCrash);
        }
        let mut resolved = match crash {
            Some(after) => {
                match tokio::time::timeout(after, execute(&shared, &exec, &op, id, GlobalPosition::START)).await {
                    Ok(resolved) => resolved,
                    Err(_) => {
                        let healed = Instant::now() >= shared.heal_at;
                        shared.recorder.crashed(id, &op.label(), GlobalPosition::START, healed);
                        shared.counters.injected(FaultKind::ClientCrash);
                        false
                    }
                }
            }
            None => execute(&shared, &exec, &op, id, GlobalPosition::START).await,
        };
        // An unresolved command (an unknown outcome, or giving up after
        // one) is re-executed with the same command id: the store answers
        // a commit it already holds with the first receipt.
        for _ in 0..3 {
            if resolved {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            let started_after = settled_position(&shared.direct).await;
            resolved = execute(&shared, &exec, &op, id, started_after).await;
        }
        if !resolved {
            pending.push((op, id));
        }
    }
    pending
}

async fn execute(
    shared: &Shared,
    exec: &Exec,
    op: &Op,
    id: eventcore::CommandId,
    started_after: GlobalPosition,
) -> bool {
    let healed = Instant::now() >= shared.heal_at;
    let context = ExecutionContext::new(id);
    let label = op.label();
    match op {
        Op::Transfer(command) => {
            let result = exec.execute_with(command.clone(), context).await;
            shared
                .recorder
                .finish_execution(id, &label, started_after, healed, &result)
                .1
        }
        Op::Consolidate(command) => {
            let result = exec.execute_with(command.clone(), context).await;
            shared
                .recorder
                .finish_execution(id, &label, started_after, healed, &result)
                .1
        }
    }
}

async fn settle(shared: &Shared, exec: &Exec, (op, id): Pending) {
    for _ in 0..5 {
        let started_after = settled_position(&shared.direct).await;
        if execute(shared, exec, &op, id, started_after).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The position up to which the store's log is settled (every event at or
/// below it is visible, and no new one will appear there): a global read
/// filtered to a stream that never exists answers exactly that.
async fn settled_position(direct: &PostgresStore) -> GlobalPosition {
    let request = ReadAllRequest {
        after: GlobalPosition::START,
        limit: NonZeroU32::MIN,
        filter: EventFilter::all().with_streams(StreamId::new("chaos-no-such-stream")),
    };
    match direct.read_all(&request).await {
        Ok(response) => response.complete_through,
        // Unknown: claim nothing, which never makes a check fire wrongly.
        Err(_) => GlobalPosition::START,
    }
}

async fn read_back(direct: &PostgresStore) -> Result<Vec<RecordedEvent>, ChaosError> {
    let table = format!("\"{}\".events", direct.options().schema);
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(direct.pool())
        .await?;
    let total = usize::try_from(total).unwrap_or(0);
    let mut events: Vec<RecordedEvent> = Vec::with_capacity(total);
    let mut after = GlobalPosition::START;
    let deadline = Instant::now() + Duration::from_secs(60);
    while events.len() < total && Instant::now() < deadline {
        let request = ReadAllRequest {
            after,
            limit: NonZeroU32::new(2_000).unwrap_or(NonZeroU32::MIN),
            filter: EventFilter::all(),
        };
        let response = direct.read_all(&request).await?;
        after = response.complete_through;
        events.extend(response.events);
    }
    Ok(events)
}

/// Polls the global log through the proxy until told to stop and caught up
/// with the store; returns what it saw and how many reads failed.
async fn subscribe(store: PostgresStore, stop: Arc<AtomicBool>) -> (Vec<RecordedEvent>, u64) {
    let mut seen: Vec<RecordedEvent> = Vec::new();
    let mut failed = 0;
    let mut after = GlobalPosition::START;
    let mut idle_after_stop = 0;
    // Bounded: at most this many reads (a read is at least a round trip
    // or a pause).
    for _ in 0..1_000_000 {
        let request = ReadAllRequest {
            after,
            limit: NonZeroU32::new(500).unwrap_or(NonZeroU32::MIN),
            filter: EventFilter::all(),
        };
        match store.read_all(&request).await {
            Ok(response) => {
                let empty = response.events.is_empty();
                after = response.complete_through.max(after);
                seen.extend(response.events);
                if empty {
                    if stop.load(Ordering::SeqCst) {
                        idle_after_stop += 1;
                        if idle_after_stop >= 3 {
                            break;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Err(_) => {
                failed += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    (seen, failed)
}

/// Checks a subscriber's deliveries against the final log: after dropping
/// re-deliveries (an event at or below a position already delivered, which
/// must be one delivered before, and is allowed only after a restart), the
/// deliveries are the log, in order, each once.
fn check_subscriber(events: &[RecordedEvent], delivered: &[RecordedEvent], restarts: u64) -> SubscriberCheck {
    let mut problems = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut unique: Vec<&RecordedEvent> = Vec::with_capacity(delivered.len());
    let mut redelivered = 0;
    let mut last = GlobalPosition::START;
    for event in delivered {
        if event.position <= last {
            if !seen.contains(&event.event_id) {
                problems.push(format!(
                    "new event {} at position {} delivered after position {} (global order broken)",
                    event.event_id, event.position, last
                ));
            }
            redelivered += 1;
            continue;
        }
        last = event.position;
        seen.insert(event.event_id);
        unique.push(event);
    }
    if redelivered > 0 && restarts == 0 {
        problems.push(format!("{redelivered} events delivered twice without a restart"));
    }
    if unique.len() != events.len() {
        problems.push(format!(
            "delivered {} distinct events, the store holds {}",
            unique.len(),
            events.len()
        ));
    }
    if let Some((i, (d, e))) = unique
        .iter()
        .zip(events)
        .enumerate()
        .find(|(_, (d, e))| d.event_id != e.event_id)
    {
        problems.push(format!(
            "delivery #{i} is event {} at {}, the log has {} at {}",
            d.event_id, d.position, e.event_id, e.position
        ));
    }
    SubscriberCheck {
        delivered: delivered.len(),
        failed_reads: restarts,
        redelivered,
        problems,
        ..SubscriberCheck::default()
    }
}

/// Collects what a subscription runner delivers.
struct Collect(Arc<std::sync::Mutex<Vec<RecordedEvent>>>);

impl Subscriber for Collect {
    async fn handle(&mut self, batch: &Batch) -> Result<(), HandleError> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(batch.events.iter().cloned());
        Ok(())
    }
}

/// Runs a subscription — the real runner, its checkpoint in PostgreSQL,
/// woken by the LISTEN/NOTIFY notifier — through the proxy until `stop`,
/// restarting it from its checkpoint after an error; then catches up.
/// Returns what it delivered, how often it restarted, and the notifier's
/// notification and reconnect counts.
async fn run_subscription(store: PostgresStore, stop: Arc<AtomicBool>) -> (Vec<RecordedEvent>, u64, u64, u64) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let notifier = PgNotifier::start(&store).await.ok();
    let policy = SubscriptionPolicy {
        fetch_timeout: Duration::from_secs(1),
        ..SubscriptionPolicy::default()
    };
    let mut runner = Runner::subscription(
        "chaos",
        store.clone(),
        PgCheckpointStore::new(&store),
        Collect(seen.clone()),
    )
    .with_policy(policy);
    if let Some(notifier) = &notifier {
        runner = runner.with_wakeups(notifier.subscribe());
    }
    let mut restarts = 0;
    let stopped = || {
        let stop = stop.clone();
        async move {
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    for _ in 0..1_000 {
        match runner.run_until(stopped()).await {
            Ok(_) => break,
            Err(_) => {
                restarts += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    for _ in 0..20 {
        if runner.run_until_caught_up().await.is_ok() {
            break;
        }
        restarts += 1;
    }
    let delivered = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let (notifications, reconnects) = notifier.map_or((0, 0), |n| (n.notifications(), n.reconnects()));
    (delivered, restarts, notifications, reconnects)
}

/// What the side (non-proxied) fault injector works with.
struct SideFaults {
    direct_pool: PgPool,
    schema: String,
    squeeze_pool: PgPool,
    squeeze_size: u32,
    hot: Vec<StreamId>,
    ports: BackendPorts,
}

/// Plays the schedule: arms proxy faults at their times and runs the
/// PostgreSQL-side faults, each bounded in time; returns when the fault
/// phase is over and every side fault finished.
async fn play(shared: Arc<Shared>, schedule: FaultSchedule, side: Arc<SideFaults>, start: Instant) {
    let counters = &shared.counters;
    let mut rng = FaultRng::new(shared.config.seed, 7);
    let mut tasks = Vec::new();
    for entry in schedule.entries {
        tokio::time::sleep_until(start + entry.at).await;
        let kind = entry.kind;
        if FaultKind::PROXY.contains(&kind) {
            counters.arm(kind);
            continue;
        }
        counters.schedule(kind);
        let (shared, side, seed) = (shared.clone(), side.clone(), rng.below(u64::MAX));
        tasks.push(tokio::spawn(async move {
            let injected = match kind {
                FaultKind::TerminateBackend => terminate(&shared, &side, seed).await,
                FaultKind::LockHold => {
                    let stream = &side.hot[(seed % side.hot.len().max(1) as u64) as usize];
                    hold_lock(&side, stream).await
                }
                FaultKind::PoolSqueeze => squeeze(&side).await,
                _ => false,
            };
            if injected {
                shared.counters.injected(kind);
            }
        }));
    }
    tokio::time::sleep_until(shared.heal_at).await;
    for task in tasks {
        let _ = task.await;
    }
}

/// `pg_terminate_backend` on one of this run's proxied sessions (found by
/// the proxy's upstream ports, so no other test's sessions are touched).
/// Retries briefly when none is connected.
async fn terminate(shared: &Shared, side: &SideFaults, seed: u64) -> bool {
    let mut rng = FaultRng::new(seed, 0);
    for _ in 0..20 {
        if Instant::now() >= shared.heal_at {
            return false;
        }
        let ports: Vec<i32> = side.ports.get().into_iter().map(i32::from).collect();
        let pids: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity \
             WHERE client_port = ANY($1) AND client_addr = '127.0.0.1'::inet \
               AND datname = current_database() AND pid <> pg_backend_pid()",
        )
        .bind(&ports)
        .fetch_all(&side.direct_pool)
        .await
        .unwrap_or_default();
        if !pids.is_empty() {
            let pid = pids[rng.below(pids.len() as u64) as usize];
            let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .fetch_one(&side.direct_pool)
                .await
                .unwrap_or(false);
            if killed {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Holds `stream`'s head row locked for 500 ms from a direct connection, so
/// appends to it wait and hit pool A's `lock_timeout` or pool B's
/// `statement_timeout`.
async fn hold_lock(side: &SideFaults, stream: &StreamId) -> bool {
    let held = async {
        let mut tx = side.direct_pool.begin().await?;
        sqlx::query("SET LOCAL lock_timeout = '1s'").execute(&mut *tx).await?;
        let row: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT version FROM \"{}\".streams WHERE stream_id = $1 FOR UPDATE",
            side.schema
        ))
        .bind(stream.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        tx.rollback().await?;
        Ok::<bool, sqlx::Error>(row.is_some())
    };
    held.await.unwrap_or(false)
}

/// Checks out every connection of the small pool and holds them for
/// 800 ms, so its clients' acquisitions time out.
async fn squeeze(side: &SideFaults) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut held = Vec::new();
    while held.len() < side.squeeze_size as usize && Instant::now() < deadline {
        if let Ok(conn) = side.squeeze_pool.acquire().await {
            held.push(conn);
        }
    }
    let full = held.len() == side.squeeze_size as usize;
    if full {
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    // Returned connections may be broken by other faults; close them
    // rather than hand them back.
    for conn in held {
        let _ = conn.close().await;
    }
    full
}
