//! The PostgreSQL store handle: connecting, health, the operation timeout,
//! and the `EventStore` operations (their work is in `append.rs`,
//! `read.rs` and `batch.rs`; the schema in `schema.rs`).

use crate::error::{map_error, Phase};
use crate::metrics::{observe, observe_batch, Fields, Op};
use crate::options::{PostgresOptions, SetupError};
use crate::sql::Statements;
use eventcore::{
    AppendReceipt, AppendRequest, Operation, ReadAllRequest, ReadAllResponse, ReadRequest, ReadResponse, StoreError,
};
use eventcore_store::EventStore;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Row};
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;

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
    pub async fn connect_with(options: PostgresOptions) -> Result<Self, SetupError> {
        options.validate()?;
        let statement_ms = options.statement_timeout.as_millis().to_string();
        let connect = PgConnectOptions::from_str(&options.url)
            .map_err(SetupError::InvalidUrl)?
            .application_name("eventcore")
            .options([("statement_timeout", statement_ms.as_str())])
            .log_statements(tracing::log::LevelFilter::Trace);
        // One direct connection first: it reports the real cause (connection
        // refused, authentication, unknown database) where a pool would only
        // say that it timed out waiting.
        let probe = tokio::time::timeout(options.connect_timeout, connect.connect())
            .await
            .map_err(|_| {
                SetupError::Connect(StoreError::Timeout {
                    operation: Operation::Other,
                    after: options.connect_timeout,
                })
            })?
            .map_err(|e| SetupError::Connect(map_error(Operation::Other, Phase::Connecting, e, None)))?;
        let _ = probe.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.connect_timeout)
            .connect_lazy_with(connect.clone());
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
