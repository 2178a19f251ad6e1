//! One chaos run: set up a fresh schema, start the proxy, run a workload
//! (the bank's with [`run`], a user's [`ChaosWorkload`] with
//! [`run_workload`]) through the real [`Executor`] and [`PostgresStore`]
//! while the fault schedule plays, heal, settle every unknown outcome, read
//! the whole store back over a direct connection and judge it with the
//! simulator's invariant checker.
//!
//! The run's jobs, one file each:
//!
//! - this file: the configuration, the errors, the database URL helpers,
//!   [`run`] (the bank suite) and [`run_workload`] itself, which wires the
//!   stores, executors and tasks together and orders the phases (setup,
//!   faults, heal, settle, read back, judge);
//! - `bank`: the bank suite's workload (accounts, owners, transfers and
//!   consolidations), a [`ChaosWorkload`] like any user's;
//! - `workload`: driving a workload — its setup, and the clients issuing
//!   its commands, crashing now and then, re-executing unknown outcomes
//!   with the same command id and settling what is left after the faults;
//! - `inject`: the fault schedule's driver, arming the proxy's faults at
//!   their times and running the PostgreSQL-side ones
//!   (`pg_terminate_backend`, lock holds that make `lock_timeout` and
//!   `statement_timeout` fire, pool exhaustion);
//! - `subscribers`: the polling `read_all` subscriber and the real
//!   subscription runner (checkpoint in PostgreSQL, LISTEN/NOTIFY wake-ups),
//!   both through the proxy for the whole run;
//! - `judge`: the read-back of the whole store, the subscribers' checks
//!   against the final log, the simulator's checker with the workload's
//!   models and its audit, and
//!   the fault kinds a run must have seen;
//! - `report`: what a run found ([`ChaosReport`], [`SubscriberCheck`]) and
//!   how it is printed.
//!
//! [`Executor`]: eventcore_tokio::Executor

mod bank;
mod inject;
mod judge;
mod projection;
mod report;
mod subscribers;
mod workload;

pub use report::{ChaosReport, SubscriberCheck};

use crate::faults::{FaultCounters, FaultKind, FaultMix, FaultSchedule};
use crate::proxy::{Proxy, ProxyConfig, ProxyError};
use crate::record::{Recorder, RecordingStore};
use eventcore::{ExecutionPolicy, RetryPolicy, StoreError};
use eventcore_postgres::migrate_subscriptions;
use eventcore_postgres::{PostgresOptions, PostgresStore, SetupError};
use eventcore_tokio::Executor;
use inject::{play, SideFaults};
use judge::{check_subscriber, judge, read_back};
use sqlx::postgres::PgConnectOptions;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use subscribers::{run_subscription, subscribe};
use tokio::time::Instant;
use workload::{client, settle, setup};

/// The executors' stream cache bound, in events: small enough that a run
/// evicts, so stale and re-filled entries are part of what is judged.
const STREAM_CACHE_EVENTS: usize = 2_000;

pub use crate::workload::ChaosWorkload;

/// What a run does.
#[derive(Clone, Debug)]
pub struct ChaosConfig {
    /// Seed of the fault schedule, the proxy's decisions and the workload.
    pub seed: u64,
    /// How long faults are scheduled.
    pub fault_phase: Duration,
    /// How long the workload goes on after the faults stop (liveness).
    pub heal_phase: Duration,
    /// Concurrent clients (half on each proxied pool; on pool A, every
    /// other one through a `BatchingStore`).
    pub clients: usize,
    /// Accounts opened at the start (the bank suite, [`run`], only).
    pub accounts: u32,
    /// Owners, each linked to four accounts (the bank suite only).
    pub owners: u32,
    /// Initial balance of every account (the bank suite only).
    pub initial_balance: u64,
    /// The faults per minute of fault phase.
    pub mix: FaultMix,
    /// Bound on commands per client, whatever the time.
    pub max_commands_per_client: usize,
    /// The private server the run's database lives on, when the mix may
    /// crash or restart it ([`FaultKind::ServerCrash`],
    /// [`FaultKind::ServerRestart`]); `None` on a shared server, where
    /// those kinds are dropped from the mix.
    pub server: Option<Arc<crate::private_postgres::PrivatePostgres>>,
}

impl ChaosConfig {
    /// A run of `fault_phase` with the default mix, 12 clients, 16 accounts
    /// and 4 owners.
    ///
    /// ```
    /// use eventcore_chaos::run::ChaosConfig;
    /// use std::time::Duration;
    /// let config = ChaosConfig::new(7, Duration::from_secs(10));
    /// assert_eq!((config.seed, config.clients), (7, 12));
    /// ```
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
            server: None,
        }
    }

    /// The configuration from the environment, as the chaos tests take it:
    /// the seed from `EVENTCORE_CHAOS_SEED` (else the clock; the report
    /// prints it for a replay), `EVENTCORE_CHAOS_SECS` seconds of faults
    /// (else `default_secs`, or 600 under `EVENTCORE_CHAOS_SOAK=1`), every
    /// fault rate multiplied by `EVENTCORE_CHAOS_INTENSITY` if set.
    ///
    /// ```
    /// use eventcore_chaos::run::ChaosConfig;
    /// let config = ChaosConfig::from_env(10);
    /// assert!(config.fault_phase.as_secs() > 0);
    /// ```
    pub fn from_env(default_secs: u64) -> Self {
        fn env_u64(name: &str) -> Option<u64> {
            std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
        }
        let soak = std::env::var("EVENTCORE_CHAOS_SOAK").is_ok_and(|v| v == "1");
        let secs = env_u64("EVENTCORE_CHAOS_SECS").unwrap_or(if soak { 600 } else { default_secs });
        let seed = env_u64("EVENTCORE_CHAOS_SEED").unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        let mut config = ChaosConfig::new(seed, Duration::from_secs(secs.max(1)));
        if let Some(factor) = env_u64("EVENTCORE_CHAOS_INTENSITY") {
            config.mix = config.mix.scaled(u32::try_from(factor).unwrap_or(1).max(1));
        }
        config
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
    #[error("connecting a store")]
    Setup(#[from] SetupError),
    /// A direct query failed.
    #[error("direct query failed")]
    Database(#[from] sqlx::Error),
    /// A setup command was not acknowledged.
    #[error("setup command `{label}` failed: {reason}")]
    SetupCommand {
        /// The command.
        label: String,
        /// Why.
        reason: String,
    },
    /// Reading the history back failed.
    #[error("reading the store back")]
    ReadBack(#[from] StoreError),
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

/// The executor every client, the setup and the settling use: the real one,
/// over a store that records every outcome.
type Exec = crate::workload::ChaosExecutor;

/// What the run's tasks share.
struct Shared {
    config: ChaosConfig,
    workload: Arc<dyn ChaosWorkload>,
    counters: Arc<FaultCounters>,
    recorder: Arc<Recorder>,
    direct: PostgresStore,
    heal_at: Instant,
    stop_at: Instant,
}

/// Runs the bank chaos suite against `direct` (a migrated store on a fresh
/// schema, connected directly to PostgreSQL on loopback): [`run_workload`]
/// with the bank workload (`config.accounts` accounts, `config.owners`
/// owners linked to four each, transfers and consolidations), judged by
/// the simulator's bank model and the examples' bank `Audit`.
///
/// ```no_run
/// use eventcore_chaos::run::{run, ChaosConfig};
/// # async fn example(direct: eventcore_postgres::PostgresStore) {
/// let report = run(ChaosConfig::from_env(45), direct).await.expect("carried out");
/// assert!(report.passed(), "{report}");
/// # }
/// ```
///
/// # Errors
///
/// When the run cannot be carried out (proxy, connections, setup). Broken
/// invariants are not errors: they are in the report.
pub async fn run(config: ChaosConfig, direct: PostgresStore) -> Result<ChaosReport, ChaosError> {
    let bank = bank::Bank::new(&config);
    run_workload(config, direct, bank).await
}

/// Runs `workload` under chaos against `direct` (a migrated store on a
/// fresh schema, connected directly to PostgreSQL on loopback; see
/// [`eventcore_postgres::PostgresStore::connect_with`] and
/// [`PostgresStore::migrate`]).
///
/// The workload's setup runs first over `direct`; then `config.clients`
/// clients (half on each of two proxied pools, one with a `lock_timeout`,
/// one with a short `statement_timeout` and a small pool) issue its
/// commands for `config.fault_phase` while the seeded schedule injects
/// `config.mix`, and for `config.heal_phase` after it; unknown outcomes are
/// re-executed under the same command id and finally settled directly.
/// The store is read back and judged by the simulator's checker with the
/// workload's [`models`](ChaosWorkload::models) and
/// [`audit`](ChaosWorkload::audit); a polling subscriber and a
/// subscription runner read through the proxy the whole time. Fault kinds
/// scheduled but never injected fail the report. With no
/// [`hot_streams`](ChaosWorkload::hot_streams), no lock hold is scheduled.
///
/// See [`crate::workload`] for an example.
///
/// # Errors
///
/// When the run cannot be carried out (proxy, connections, setup). Broken
/// invariants are not errors: they are in the report.
pub async fn run_workload<W: ChaosWorkload>(
    mut config: ChaosConfig,
    direct: PostgresStore,
    workload: W,
) -> Result<ChaosReport, ChaosError> {
    let workload: Arc<dyn ChaosWorkload> = Arc::new(workload);
    let hot = workload.hot_streams();
    if hot.is_empty() {
        config.mix.per_minute.retain(|(kind, _)| *kind != FaultKind::LockHold);
    }
    if config.server.is_none() {
        config
            .mix
            .per_minute
            .retain(|(kind, _)| !matches!(kind, FaultKind::ServerCrash | FaultKind::ServerRestart));
    }
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
            .acquire_timeout(Duration::from_millis(300))
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
            .acquire_timeout(Duration::from_millis(300))
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
    let wrap = |store: crate::workload::ChaosStore| RecordingStore::new(store, recorder.clone(), counters.clone());
    use crate::workload::ChaosStore;
    // The executors run as a service would: stream cache, view cache and
    // persisted snapshots on (a small stream cache, so that it evicts).
    let service = |store: crate::workload::ChaosStore| {
        Arc::new(
            Executor::new(wrap(store))
                .with_policy(policy.clone())
                .with_stream_cache(STREAM_CACHE_EVENTS)
                .with_snapshots(eventcore_postgres::PgSnapshotStore::new(&direct)),
        )
    };
    let exec_a: Arc<Exec> = service(ChaosStore::Plain(Box::new(store_a.clone())));
    let exec_b: Arc<Exec> = service(ChaosStore::Plain(Box::new(store_b.clone())));
    // Group commit: half of pool A's clients append through a batching
    // layer (pool B's clients stay one statement each, so that enough of
    // them meet its short statement timeout behind a held lock).
    let exec_a_batching: Arc<Exec> = service(ChaosStore::Batching(eventcore_tokio::BatchingStore::new(
        store_a.clone(),
    )));
    let exec_direct: Arc<Exec> = Arc::new(Executor::new(wrap(ChaosStore::Plain(Box::new(direct.clone())))));

    let start = Instant::now();
    let shared = Arc::new(Shared {
        config: config.clone(),
        workload: workload.clone(),
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
    projection::create_ledger(&direct).await?;
    let ledger = tokio::spawn(projection::run_projection(store_a.clone(), subscriber_stop.clone()));

    // The fault schedule.
    let schedule = FaultSchedule::generate(config.seed, config.fault_phase, &config.mix);
    let side = Arc::new(SideFaults {
        direct_pool: direct.pool().clone(),
        schema: options.schema.clone(),
        squeeze_pool: store_b.pool().clone(),
        squeeze_size: pool_b_size,
        hot,
        ports: proxy.ports(),
        server: config.server.clone(),
        server_busy: tokio::sync::Mutex::new(()),
    });
    let faults = tokio::spawn(play(shared.clone(), schedule, side, start));
    proxy.set_jitter(true);
    counters.schedule(FaultKind::Jitter);

    let mut clients = Vec::new();
    for i in 0..config.clients {
        let executor = match i % 4 {
            0 => exec_a.clone(),
            2 => exec_a_batching.clone(),
            _ => exec_b.clone(),
        };
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
        ..check_subscriber("poller", &events, &delivered, 0)
    };
    let runner = match tokio::time::timeout(Duration::from_secs(60), runner).await {
        Ok(Ok((delivered, restarts, notifications, reconnects))) => SubscriberCheck {
            notifications,
            reconnects,
            ..check_subscriber("runner", &events, &delivered, restarts)
        },
        _ => SubscriberCheck {
            problems: vec!["the subscription runner did not finish catching up".to_owned()],
            ..SubscriberCheck::default()
        },
    };

    let projection = match tokio::time::timeout(Duration::from_secs(60), ledger).await {
        Ok(Ok(restarts)) => projection::check_ledger(&direct, &events, restarts).await,
        _ => SubscriberCheck {
            problems: vec!["the projection did not finish catching up".to_owned()],
            ..SubscriberCheck::default()
        },
    };

    let (audit, history, violations) = judge(&recorder, workload.as_ref(), events);

    let faults = counters.snapshot();
    let missing_faults = judge::missing_faults(&faults);
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
        projection,
        deduplicated_acks: recorder.deduplicated_acks(),
    })
}
