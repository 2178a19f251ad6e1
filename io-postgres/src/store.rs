//! The PostgreSQL store handle: connecting, health, the operation timeout,
//! and the `EventStore` operations (their work is in `append.rs`,
//! `read.rs` and `batch.rs`; the schema in `schema.rs`).

use crate::error::{map_error, Phase};
use crate::metrics::{observe, observe_batch, Fields, Op};
use crate::options::{tls_failure, PostgresOptions, SetupError, SslMode};
use crate::sql::Statements;
use eventcore::{
    AppendReceipt, AppendRequest, Operation, ReadAllRequest, ReadAllResponse, ReadRequest, ReadResponse, StoreError,
};
use eventcore_store::EventStore;
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::{ConnectOptions, Connection, Row};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// What [`PostgresStore::health`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// The server's version string.
    pub server_version: String,
    /// Whether the store's schema holds its tables (`migrate` has run).
    pub migrated: bool,
    /// Connections currently open in the pool.
    pub connections: u32,
    /// Of those, how many are idle.
    pub idle: usize,
}

/// The PostgreSQL event store. Cheap to clone (a pool handle and shared
/// configuration).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use eventcore_postgres::{PostgresOptions, PostgresStore};
/// let store = PostgresStore::connect_with(
///     PostgresOptions::new("postgres://postgres@127.0.0.1:5432/postgres").schema("bank"),
/// )
/// .await?;
/// store.migrate().await?;
/// // Anything that runs commands takes it as an `EventStore` (the tokio
/// // driver's `Executor::new(store)`), or as a trait object:
/// let any_store: Box<dyn eventcore_store::DynEventStore> = Box::new(store.clone());
/// # let _ = any_store;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pub(crate) pool: PgPool,
    pub(crate) options: Arc<PostgresOptions>,
    /// How to open a connection of its own (migrations).
    pub(crate) connect: PgConnectOptions,
    pub(crate) sql: Arc<Statements>,
}

impl PostgresStore {
    /// Connects with default options to `url`, schema `eventcore`.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), eventcore_postgres::SetupError> {
    /// let store = eventcore_postgres::PostgresStore::connect("postgres://postgres@127.0.0.1/postgres").await?;
    /// store.migrate().await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, SetupError> {
        PostgresStore::connect_with(PostgresOptions::new(url)).await
    }

    /// Connects with the given options. Opens (and closes) one connection
    /// right away so that an unreachable database is reported here, as
    /// [`SetupError::Connect`] holding a transient [`StoreError`] whose source
    /// is the real cause; the pool then opens connections as they are needed.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), eventcore_postgres::SetupError> {
    /// use eventcore_postgres::{PostgresOptions, PostgresStore};
    /// let options = PostgresOptions::new("postgres://postgres@127.0.0.1/postgres").schema("orders").max_connections(4);
    /// let store = PostgresStore::connect_with(options).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// TLS follows `sslmode` ([`PostgresOptions::ssl_mode`](PostgresOptions#structfield.ssl_mode),
    /// else the URL's): when it cannot be had as the mode demands (no TLS
    /// offered, an untrusted certificate, a server that accepts only
    /// encrypted connections under `disable`) this fails with
    /// [`SetupError::Tls`] saying which.
    pub async fn connect_with(options: PostgresOptions) -> Result<Self, SetupError> {
        options.validate()?;
        let connect = options.connect_options()?;
        // One direct connection first: it reports the real cause (connection
        // refused, authentication, unknown database, TLS) where a pool would
        // only say that it timed out waiting.
        let probe = open_connection(&connect, options.connect_timeout).await?;
        let _ = probe.close().await;
        let pool = options.pool_options().connect_lazy_with(connect.clone());
        Ok(PostgresStore {
            pool,
            sql: Arc::new(Statements::new(&options.schema)),
            options: Arc::new(options),
            connect,
        })
    }

    /// A store on the application's own pool, sharing its connections
    /// (and its TLS and credentials) with the application's queries. No I/O
    /// happens here; call [`PostgresStore::migrate`] (or
    /// [`PostgresStore::verify_migrations`]) as with a store that connected.
    ///
    /// What the store takes from `options`: the schema, the limits, the
    /// codec, the migration mode, `operation_timeout`, `read_all_settle`
    /// and `maintenance_timeout`. The pool keeps its own settings: `url`,
    /// the TLS options and the pool settings (`max_connections`,
    /// `acquire_timeout`, …) of `options` are not used.
    ///
    /// What the store needs from the pool:
    ///
    /// - **The server-side statement timeout.** [`PostgresStore::connect_with`]
    ///   sets `statement_timeout` on every connection it opens; the store
    ///   cannot on a pool it did not build. Build the pool from
    ///   [`PostgresOptions::connect_options`] (as below), or add
    ///   `.options([("statement_timeout", "2000")])` to your own connect
    ///   options. Without it a slow statement is bounded only by
    ///   `operation_timeout`, and an append that hits that bound reports
    ///   [`StoreError::Timeout`] (its outcome unknown: re-executing the
    ///   command with the same id is safe) instead of a transient error
    ///   that is retried.
    /// - **Nothing of `search_path`**: every statement names the store's
    ///   schema; migrations run on a connection of their own (opened with
    ///   the pool's connect options) that sets it.
    /// - **Connections to a primary, at PostgreSQL's defaults** for
    ///   `default_transaction_isolation` (read committed) and
    ///   `default_transaction_read_only` (off): the append relies on read
    ///   committed, and a hot standby refuses writes.
    /// - **Room**: each store operation holds one connection for its
    ///   duration; a `PgNotifier` opens one more of its own.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use eventcore_postgres::{PostgresOptions, PostgresStore};
    /// let options = PostgresOptions::new("postgres://app@db.example.com/app?sslmode=verify-full").schema("billing");
    /// // The application's pool, built with the store's per-connection settings.
    /// let pool = options.pool_options().max_connections(32).connect_with(options.connect_options()?).await?;
    /// let store = PostgresStore::from_pool(pool.clone(), options)?;
    /// store.migrate().await?;
    /// // `pool` serves the application's own queries too.
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`PostgresOptions::validate`]'s.
    pub fn from_pool(pool: PgPool, options: PostgresOptions) -> Result<Self, SetupError> {
        options.validate()?;
        let connect = (*pool.connect_options()).clone();
        Ok(PostgresStore {
            pool,
            sql: Arc::new(Statements::new(&options.schema)),
            options: Arc::new(options),
            connect,
        })
    }

    /// The options the store was built with.
    pub fn options(&self) -> &PostgresOptions {
        &self.options
    }

    /// The connection pool, for queries of your own against the same
    /// database (read models, projections).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Checks that the database answers and the schema is migrated.
    ///
    /// ```no_run
    /// # async fn demo(store: eventcore_postgres::PostgresStore) -> Result<(), eventcore::StoreError> {
    /// let health = store.health().await?;
    /// assert!(health.migrated);
    /// # Ok(()) }
    /// ```
    pub async fn health(&self) -> Result<Health, StoreError> {
        let relation = format!("\"{}\".events", self.options.schema);
        let row = self
            .bounded(Operation::Other, async {
                sqlx::query("SELECT current_setting('server_version'), to_regclass($1) IS NOT NULL")
                    .bind(&relation)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| map_error(Operation::Other, Phase::Executing, e, None))
            })
            .await?;
        Ok(Health {
            server_version: row.try_get(0).map_err(|e| contract(Operation::Other, e))?,
            migrated: row.try_get(1).map_err(|e| contract(Operation::Other, e))?,
            connections: self.pool.size(),
            idle: self.pool.num_idle(),
        })
    }

    /// Runs maintenance `work` (DDL, grants) under the maintenance timeout
    /// plus the operation timeout, so that the server's statement timeout
    /// (set to `maintenance_timeout` by the work itself) fires first; with
    /// no maintenance timeout, unbounded.
    pub(crate) async fn bounded_maintenance<T>(
        &self,
        operation: Operation,
        work: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let timeout = self.options.maintenance_timeout;
        if timeout.is_zero() {
            return work.await;
        }
        let after = timeout.saturating_add(self.options.operation_timeout);
        tokio::time::timeout(after, work)
            .await
            .map_err(|_| StoreError::Timeout { operation, after })?
    }

    /// `SET LOCAL statement_timeout` to the maintenance timeout, for the
    /// first statement of a maintenance transaction.
    pub(crate) fn set_local_maintenance_timeout(&self) -> String {
        format!(
            "SET LOCAL statement_timeout = {}",
            self.options.maintenance_timeout.as_millis()
        )
    }

    /// Runs `work` under the operation timeout.
    pub(crate) async fn bounded<T>(
        &self,
        operation: Operation,
        work: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let after = self.options.operation_timeout;
        tokio::time::timeout(after, work)
            .await
            .map_err(|_| StoreError::Timeout { operation, after })?
    }

    pub(crate) async fn acquire(
        &self,
        operation: Operation,
    ) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, StoreError> {
        self.pool
            .acquire()
            .await
            .map_err(|e| map_error(operation, Phase::Connecting, e, None))
    }
}

impl EventStore for PostgresStore {
    async fn read(&self, request: &ReadRequest) -> Result<ReadResponse, StoreError> {
        let fields = Fields::streams(request.streams.len());
        let work = self.bounded(Operation::Read, self.read_inner(request));
        observe(&self.pool, Op::Read, fields, work).await
    }

    async fn append(&self, request: &AppendRequest) -> Result<AppendReceipt, StoreError> {
        let fields = Fields::streams(request.streams.len()).events(request.event_count());
        observe(&self.pool, Op::Append, fields, async {
            request.validate(&self.options.limits)?;
            let request = &*request.for_store(self.options.codec)?;
            self.bounded(Operation::Append, async {
                let mut conn = self.acquire(Operation::Append).await?;
                if request.streams.iter().any(|entry| entry.tombstone) {
                    // The events and the tombstone in one transaction.
                    return self.append_ending(&mut conn, request).await;
                }
                match self.append_alone(&mut conn, request).await? {
                    Some(receipt) => Ok(receipt),
                    // Claimed before: `append()` finds the stored receipt (or,
                    // when the claim's holder rolled back since, appends).
                    None => self.append_on(&mut conn, request).await,
                }
            })
            .await
        })
        .await
    }

    async fn read_all(&self, request: &ReadAllRequest) -> Result<ReadAllResponse, StoreError> {
        let fields = Fields::default().events(request.limit.get() as usize);
        let work = self.bounded(Operation::ReadAll, self.read_all_inner(request));
        observe(&self.pool, Op::ReadAll, fields, work).await
    }

    /// One round trip and one transaction for the whole group (see `batch.rs`).
    async fn append_batch(&self, requests: &[AppendRequest]) -> Vec<Result<AppendReceipt, StoreError>> {
        observe_batch(&self.pool, requests, self.append_group(requests)).await
    }

    fn codec(&self) -> eventcore::Codec {
        self.options.codec
    }
}

pub(crate) fn contract(operation: Operation, error: sqlx::Error) -> StoreError {
    StoreError::ContractViolation {
        operation,
        message: error.to_string(),
    }
}

pub(crate) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Opens one connection of the store's own (the probe, migrations) within
/// `timeout`, reporting TLS failures as [`SetupError::Tls`].
pub(crate) async fn open_connection(
    connect: &PgConnectOptions,
    timeout: Duration,
) -> Result<sqlx::PgConnection, SetupError> {
    tokio::time::timeout(timeout, connect.connect())
        .await
        .map_err(|_| {
            SetupError::Connect(StoreError::Timeout {
                operation: Operation::Other,
                after: timeout,
            })
        })?
        .map_err(|e| {
            tls_failure(SslMode::from(connect.get_ssl_mode()), e)
                .unwrap_or_else(|e| SetupError::Connect(map_error(Operation::Other, Phase::Connecting, e, None)))
        })
}
