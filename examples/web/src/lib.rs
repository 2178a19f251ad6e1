//! EventCore inside a web service: a small bank over HTTP (axum) on
//! PostgreSQL.
//!
//! | route | what |
//! |---|---|
//! | `POST /accounts` `{"id": "alice", "initial": 100}` | opens an account (201, `Location`) |
//! | `POST /accounts/{id}/deposits` `{"amount": 50}` | deposits (201) |
//! | `POST /transfers` `{"from": "alice", "to": "bob", "amount": 30}` | moves money atomically (201) |
//! | `GET /accounts/{id}?after=` | the balance, from the read model, with the position it is as of (`after`: wait until it has that position) |
//! | `GET /accounts/{id}/events?after=0&limit=100` | the account stream's events with their metadata |
//! | `GET /health` | the database and the projection |
//! | `GET /metrics` | Prometheus text: every metric recorded through the `metrics` facade |
//!
//! Every POST answers with the command id, the events' positions and the
//! highest position written ([`idempotency::Committed`]). An
//! `Idempotency-Key: <uuid>` header makes the command id the key, so a
//! retried POST is applied once and answered as the first time
//! ([`idempotency`]). Failures map to statuses in one function over the
//! type-erased command error ([`error`]). Balances come from an
//! exactly-once projection ([`projection`]) and are eventually consistent:
//! `as_of` tells how far the read model is.
//!
//! `docs/web-service.md` walks through it. [`serve`] is the whole service;
//! the integration test (`tests/http.rs`) starts it on a loopback port:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use eventcore_web_example::{serve, Config};
//! let config = Config::from_env()?;
//! let listener = tokio::net::TcpListener::bind(config.bind).await?;
//! serve(listener, config, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // off the simulated path: real clocks and hash maps are fine here (see clippy.toml)

pub mod config;
pub mod domain;
pub mod error;
pub mod idempotency;
pub mod projection;
mod routes;

use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use eventcore_postgres::{
    migrate_subscriptions, PgLeaseStore, PgNotifier, PgProjectionStore, PostgresOptions, PostgresStore, SetupError,
};
use eventcore_tokio::{Executor, NoDeadLetters, ProjectionSink, RunSummary, Runner, RunnerStatus};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{Config, ConfigError};
pub use error::ApiError;
use projection::{Balances, PROJECTION};

/// How long the projection's lease lasts without renewal: after a crash,
/// another instance takes the projection over within this.
pub const LEASE_TTL: Duration = Duration::from_secs(10);

/// What the handlers share: the executor (and through it the store), the
/// read model, the projection's status and the metrics handle. Cheap to
/// clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    executor: Executor<PostgresStore>,
    balances: Balances,
    projection: watch::Receiver<RunnerStatus>,
    prometheus: Option<PrometheusHandle>,
}

impl AppState {
    /// The state of a service on `store`, reading balances from
    /// `balances`, reporting the projection's `status`, rendering metrics
    /// with `prometheus` (`None`: `/metrics` answers 404).
    pub fn new(
        store: PostgresStore,
        balances: Balances,
        status: watch::Receiver<RunnerStatus>,
        prometheus: Option<PrometheusHandle>,
    ) -> AppState {
        AppState {
            inner: Arc::new(Inner {
                executor: Executor::new(store),
                balances,
                projection: status,
                prometheus,
            }),
        }
    }

    /// The executor every command runs on.
    pub fn executor(&self) -> &Executor<PostgresStore> {
        &self.inner.executor
    }

    /// The event store.
    pub fn store(&self) -> &PostgresStore {
        self.inner.executor.store()
    }

    /// The balances read model.
    pub fn balances(&self) -> &Balances {
        &self.inner.balances
    }

    /// The projection's status, as its runner reports it.
    pub fn projection(&self) -> &watch::Receiver<RunnerStatus> {
        &self.inner.projection
    }

    /// The Prometheus handle `/metrics` renders with.
    pub fn prometheus(&self) -> Option<&PrometheusHandle> {
        self.inner.prometheus.as_ref()
    }
}

/// The routes, on `state`.
///
/// ```no_run
/// # async fn demo(service: eventcore_web_example::Service) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// axum::serve(listener, eventcore_web_example::app(service.state())).await
/// # }
/// ```
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/accounts", post(routes::open_account))
        .route("/accounts/{id}", get(routes::balance))
        .route("/accounts/{id}/deposits", post(routes::deposit))
        .route("/accounts/{id}/events", get(routes::events))
        .route("/transfers", post(routes::transfer))
        .route("/health", get(routes::health))
        .route("/metrics", get(routes::metrics))
        .with_state(state)
}

/// Installs the Prometheus recorder as the process's global `metrics`
/// recorder, once; later calls return the same handle. `None` (with a
/// warning) when another recorder was installed first: the service then
/// runs without `/metrics`.
///
/// ```
/// let first = eventcore_web_example::prometheus();
/// let again = eventcore_web_example::prometheus();
/// assert_eq!(first.is_some(), again.is_some());
/// ```
pub fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    static INSTALLING: Mutex<()> = Mutex::new(());
    if let Some(handle) = HANDLE.get() {
        return handle.clone();
    }
    let _installing = INSTALLING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(handle) => Some(handle),
            Err(error) => {
                tracing::warn!(%error, "no Prometheus recorder; /metrics answers 404");
                None
            }
        })
        .clone()
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Connecting to PostgreSQL, or migrating the event store, failed.
    #[error("connecting to PostgreSQL and migrating the event store")]
    Connect(#[source] SetupError),
    /// Migrating the subscription tables, or starting the notifier, failed.
    #[error("preparing the subscription tables")]
    Store(#[source] eventcore::StoreError),
    /// Creating the read model's table failed.
    #[error("creating the balances table")]
    ReadModel(#[source] sqlx::Error),
    /// Serving HTTP failed.
    #[error("serving HTTP")]
    Serve(#[source] std::io::Error),
}

/// A started service: the store migrated, the projection running (or
/// standing by for its lease). Hand [`Service::state`] to [`app`]; call
/// [`Service::stop`] when the server has stopped.
pub struct Service {
    state: AppState,
    stop: watch::Sender<bool>,
    projection: JoinHandle<Option<RunSummary>>,
    upkeep: JoinHandle<()>,
    _notifier: PgNotifier,
}

impl Service {
    /// Connects, migrates the event store and the subscription tables,
    /// creates the read model's table, and starts the projection (woken by
    /// LISTEN/NOTIFY, one instance at a time through its lease).
    ///
    /// # Errors
    ///
    /// When the database cannot be reached or prepared.
    pub async fn start(config: &Config) -> Result<Service, StartError> {
        let prometheus = prometheus();
        let options = PostgresOptions::new(config.database_url.clone())
            .schema(config.schema.clone())
            .max_connections(config.max_connections);
        let store = PostgresStore::connect_with(options)
            .await
            .map_err(StartError::Connect)?;
        store.migrate().await.map_err(StartError::Connect)?;
        migrate_subscriptions(&store).await.map_err(StartError::Store)?;
        let balances = Balances::new(&config.schema);
        balances.create_table(&store).await.map_err(StartError::ReadModel)?;
        let notifier = PgNotifier::start(&store).await.map_err(StartError::Store)?;

        let runner = Runner::projection(
            PROJECTION,
            store.clone(),
            balances.clone(),
            PgProjectionStore::new(&store),
        )
        .with_wakeups(notifier.subscribe())
        .with_lease(PgLeaseStore::new(&store), config.instance.clone(), LEASE_TTL);
        let status = runner.status();
        let (stop, stopped) = watch::channel(false);
        let projection = tokio::spawn(keep_running(runner, stopped.clone()));
        let upkeep = tokio::spawn(upkeep(prometheus.clone(), stopped));
        Ok(Service {
            state: AppState::new(store, balances, status, prometheus),
            stop,
            projection,
            upkeep,
            _notifier: notifier,
        })
    }

    /// The handlers' state.
    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Stops the projection: it finishes the batch in flight, saves its
    /// checkpoint and releases its lease. Returns the last run's summary
    /// (`None` if it never held the lease or failed).
    pub async fn stop(self) -> Option<RunSummary> {
        let _ = self.stop.send(true);
        let _ = self.upkeep.await;
        self.projection.await.ok().flatten()
    }
}

/// Resolves once `stop` says so (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Runs the projection until stopped. A run that fails (the database gone
/// for longer than the runner retries, the lease lost to another instance)
/// is logged and started again a second later: it resumes from its
/// checkpoint.
async fn keep_running(mut runner: ProjectionRunner, stop: watch::Receiver<bool>) -> Option<RunSummary> {
    loop {
        match runner.run_until(stopped(stop.clone())).await {
            Ok(summary) if *stop.borrow() => return Some(summary),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, projection = PROJECTION, "projection stopped; restarting"),
        }
        if tokio::time::timeout(Duration::from_secs(1), stopped(stop.clone()))
            .await
            .is_ok()
        {
            return None;
        }
    }
}

/// The projection's runner: events from PostgreSQL, the balances written
/// exactly once through `PgProjectionStore`, one instance via the lease.
type ProjectionRunner = Runner<PostgresStore, ProjectionSink<Balances>, PgLeaseStore, NoDeadLetters>;

/// Runs the Prometheus recorder's upkeep every five seconds (it drains
/// histogram samples, so that memory stays bounded between scrapes).
async fn upkeep(handle: Option<PrometheusHandle>, stop: watch::Receiver<bool>) {
    let Some(handle) = handle else {
        return;
    };
    let mut stopping = std::pin::pin!(stopped(stop));
    loop {
        tokio::select! {
            _ = &mut stopping => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => handle.run_upkeep(),
        }
    }
}

/// The whole service on `listener` until `shutdown` resolves: starts it
/// ([`Service::start`]), serves [`app`], and on shutdown lets requests in
/// flight finish, then stops the projection cleanly.
///
/// # Errors
///
/// When the service cannot start, or serving fails.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let service = Service::start(&config).await?;
    tracing::info!(address = ?listener.local_addr().ok(), schema = %config.schema, "serving");
    let served = axum::serve(listener, app(service.state()))
        .with_graceful_shutdown(shutdown)
        .await;
    let summary = service.stop().await;
    tracing::info!(checkpoint = ?summary.and_then(|s| s.checkpoint), "stopped");
    served.map_err(StartError::Serve)
}

/// The service's futures can be spawned: `tokio::spawn(serve(...))`
/// needs them `Send` (a compile-time check).
#[allow(dead_code)]
fn futures_are_send(config: &'static Config, listener: TcpListener) {
    fn is_send<T: Send>(_: T) {}
    is_send(Service::start(config));
    is_send(serve(listener, config.clone(), async {}));
}
