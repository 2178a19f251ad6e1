//! The PostgreSQL store: connecting, migrating, appending and reading.

use crate::error::{map_error, Phase};
use crate::options::{PostgresOptions, SetupError};
use eventcore::{
    AppendReceipt, AppendRequest, CausationId, CommandId, CorrelationId, EventId, EventMetadata, EventType,
    ExpectedVersion, GlobalPosition, InvalidAppend, Operation, Payload, ReadAllRequest, ReadAllResponse, ReadRequest,
    ReadResponse, RecordedEvent, StoreError, StreamCommit, StreamId, StreamRead, StreamSlice, StreamVersion, Time,
};
use eventcore_store::EventStore;
use futures_util::stream::{self, Stream, TryStreamExt};
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Connection, Row};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;
use uuid::Uuid;

/// Bits of a global position that hold the event's index within its
/// transaction; the bits above hold the transaction id.
const INDEX_BITS: u32 = 20;

/// The embedded migrations, in order.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "event store", include_str!("../migrations/0001_event_store.sql")),
    (2, "append batch", include_str!("../migrations/0002_append_batch.sql")),
    (3, "snapshots", include_str!("../migrations/0003_snapshots.sql")),
];

#[path = "batch.rs"]
mod batch;

/// The migrations compiled into this crate, as a sqlx migration source.
#[derive(Debug, Clone, Copy)]
struct Embedded;

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> futures_util::future::BoxFuture<'s, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async move {
            Ok(MIGRATIONS
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// SQL text with the schema name filled in, built once per store.
#[derive(Debug)]
struct Statements {
    append: String,
    append_alone: String,
    read: String,
    read_all_prefix: String,
    await_horizon: String,
}

impl Statements {
    fn new(schema: &str) -> Self {
        let s = format!("\"{schema}\"");
        // A stream read leaves out the stream id: the caller knows it from
        // `ord`. Metadata comes as plain columns, so it costs no JSON.
        // The order is `RowDecoder`'s: it reads columns by index.
        let event_columns = "e.position, e.event_id, e.version, e.event_type, e.schema_version, \
                             e.payload::text AS payload, e.command_id, e.correlation_id, e.causation_id, \
                             e.decided_at, e.user_metadata::text AS user_metadata";
        Statements {
            // An append in a transaction of its own, as one plain statement:
            // the same steps as the `append()` function (claim the command
            // id, advance or lock every head in stream-id order, check the
            // expected versions, insert the events), without the cost of
            // running a PL/pgSQL function. Every step after the claim reads
            // from `claim`, so a command id claimed before writes nothing; it
            // is answered with the stored receipt when that committed before
            // the statement began (a re-send), else (a twin that committed
            // while this statement waited for it, invisible to the
            // statement's snapshot) with no row, and the store asks
            // `append()`, whose next statement sees it. A head is advanced
            // before its expected version is checked (the version it had is
            // the advanced one minus the count); a mismatch raises in the
            // final SELECT, which rolls the whole statement back before the
            // events are inserted (an unreferenced data-modifying WITH runs
            // after the main query).
            // Pure version checks take the head's row lock too (an UPDATE
            // by zero), which is stronger than the function's FOR SHARE.
            // Positions start at index 0: the statement is its transaction.
            // The leading comment names the statement for tools that watch
            // the wire or `pg_stat_activity` (the chaos proxy does).
            append_alone: format!(
                "/* eventcore append */ WITH claim AS ( \
                   INSERT INTO {s}.commands (command_id, xid, first_index, event_count) \
                   VALUES ($1, pg_current_xact_id()::text::int8, 0, cardinality($12::uuid[])) \
                   ON CONFLICT (command_id) DO NOTHING \
                   RETURNING xid), \
                 req AS ( \
                   SELECT * FROM unnest($2::text[], $3::int2[], $4::int8[], $5::int4[]) \
                     WITH ORDINALITY AS r(stream_id, kind, expected, n, i)), \
                 head AS ( \
                   INSERT INTO {s}.streams AS h (stream_id, version) \
                   SELECT r.stream_id, r.n FROM claim, req r ORDER BY r.stream_id COLLATE \"C\" \
                   ON CONFLICT (stream_id) DO UPDATE SET version = h.version + excluded.version \
                   RETURNING h.stream_id, h.version), \
                 before AS ( \
                   SELECT r.i, r.stream_id, r.kind, r.expected, h.version - r.n AS v \
                   FROM req r JOIN head h ON h.stream_id = r.stream_id), \
                 written AS ( \
                   INSERT INTO {s}.events (position, version, decided_at, event_id, command_id, correlation_id, \
                     causation_id, schema_version, stream_id, event_type, payload, user_metadata) \
                   SELECT (c.xid << {INDEX_BITS}) + u.k - 1, b.v + u.o, $8, u.event_id, $1, $6, $7, \
                     u.schema_version, b.stream_id, u.event_type, u.payload::jsonb, $9 \
                   FROM claim c, \
                     unnest($10::int4[], $11::int4[], $12::uuid[], $13::text[], $14::int4[], $15::text[]) \
                       WITH ORDINALITY AS u(s, o, event_id, event_type, schema_version, payload, k) \
                     JOIN before b ON b.i = u.s) \
                 SELECT false AS deduplicated, c.xid, 0 AS first_index, \
                   (SELECT array_agg(b.v ORDER BY b.i) FROM before b) AS heads, \
                   NULL::text[] AS stream_ids, NULL::int8[] AS first_versions, NULL::int4[] AS counts, \
                   (SELECT {s}.version_conflict(b.i::int4, b.stream_id, b.v) FROM before b \
                     WHERE NOT (b.kind = 0 OR (b.kind = 1 AND b.v = 0) OR (b.kind = 2 AND b.v > 0) \
                                OR (b.kind = 3 AND b.v = b.expected)) \
                     ORDER BY b.i LIMIT 1) AS conflict \
                 FROM claim c \
                 UNION ALL \
                 SELECT true, d.xid, d.first_index, NULL, d.stream_ids, d.first_versions, d.counts, NULL \
                 FROM {s}.stored_receipt($1) d \
                 WHERE NOT EXISTS (SELECT 1 FROM claim)"
            ),
            append: format!(
                "SELECT deduplicated, xid, first_index, heads, stream_ids, first_versions, counts \
                 FROM {s}.append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
            ),
            read: format!(
                // No ORDER BY outside: the rows are grouped by `ord` on the
                // client, and each stream's rows are checked to come in
                // version order (see `read_inner`), so the server is spared
                // a sort of everything it returns.
                // The head comes from a lateral subquery, not a plain join: a
                // plain join lets a generic plan hash-join every stream head;
                // a lateral subquery with a LIMIT is not flattened, so it stays
                // one key lookup per requested stream.
                "SELECT r.ord::int4 AS ord, coalesce(h.version, 0) AS head, {event_columns} \
                 FROM unnest($1::text[], $2::int8[]) WITH ORDINALITY AS r(stream_id, after, ord) \
                 LEFT JOIN LATERAL (SELECT y.version FROM {s}.streams y WHERE y.stream_id = r.stream_id LIMIT 1) h ON true \
                 LEFT JOIN LATERAL (SELECT * FROM {s}.events x \
                    WHERE x.stream_id = r.stream_id AND x.version > r.after \
                    ORDER BY x.version LIMIT $3) e ON true"
            ),
            // The horizon and the events come from one statement, hence one
            // snapshot: every transaction below the snapshot's xmin has
            // finished and its events (if committed) are visible to it.
            read_all_prefix: format!(
                "SELECT h.horizon, \
                   (SELECT max(m.position) FROM {s}.events m) AS newest, \
                   e.stream_id, {event_columns} \
                 FROM (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::int8 << {INDEX_BITS} AS horizon) h \
                 LEFT JOIN LATERAL (SELECT * FROM {s}.events e \
                    WHERE e.position > $1 AND e.position < h.horizon"
            ),
            await_horizon: format!("SELECT {s}.await_horizon($1, $2)"),
        }
    }

    /// The `read_all` statement for one filter shape; parameters are
    /// `$1` after, `$2` limit, then the filter's own in order.
    fn read_all(&self, streams: bool, prefix: bool, types: bool) -> String {
        let mut sql = self.read_all_prefix.clone();
        let mut next = 3;
        if streams {
            sql.push_str(&format!(" AND e.stream_id = ANY(${next}::text[])"));
            next += 1;
        }
        if prefix {
            sql.push_str(&format!(" AND starts_with(e.stream_id, ${next}::text)"));
            next += 1;
        }
        if types {
            sql.push_str(&format!(" AND e.event_type = ANY(${next}::text[])"));
        }
        // As in stream reads, no ORDER BY outside the lateral: the client
        // checks the order (`in_position_order`).
        sql.push_str(" ORDER BY e.position LIMIT $2) e ON true");
        sql
    }
}

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
    pool: PgPool,
    options: Arc<PostgresOptions>,
    connect: PgConnectOptions,
    sql: Arc<Statements>,
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

    /// Creates the schema and applies the embedded migrations. Safe when
    /// several processes start at once: it runs on its own connection while
    /// holding a session advisory lock keyed by the schema name.
    ///
    /// ```no_run
    /// # async fn demo(store: eventcore_postgres::PostgresStore) -> Result<(), eventcore_postgres::SetupError> {
    /// store.migrate().await?;
    /// store.migrate().await?; // already applied: nothing to do
    /// # Ok(()) }
    /// ```
    pub async fn migrate(&self) -> Result<(), SetupError> {
        let schema = self.options.schema.clone();
        let prepare = |e: sqlx::Error| SetupError::Prepare {
            schema: schema.clone(),
            source: map_error(Operation::Other, Phase::Executing, e, None),
        };
        let mut conn = tokio::time::timeout(self.options.connect_timeout, self.connect.connect())
            .await
            .map_err(|_| {
                SetupError::Connect(StoreError::Timeout {
                    operation: Operation::Other,
                    after: self.options.connect_timeout,
                })
            })?
            .map_err(|e| SetupError::Connect(map_error(Operation::Other, Phase::Connecting, e, None)))?;
        sqlx::query("SELECT pg_advisory_lock(hashtext('eventcore:migrate'), hashtext($1))")
            .bind(&schema)
            .execute(&mut conn)
            .await
            .map_err(prepare)?;
        let result = self.migrate_locked(&mut conn).await;
        // Closing the session releases the advisory lock in any case.
        let _ = conn.close().await;
        result
    }

    async fn migrate_locked(&self, conn: &mut PgConnection) -> Result<(), SetupError> {
        let schema = &self.options.schema;
        let prepare = |e: sqlx::Error| SetupError::Prepare {
            schema: schema.clone(),
            source: map_error(Operation::Other, Phase::Executing, e, None),
        };
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
            .execute(&mut *conn)
            .await
            .map_err(prepare)?;
        sqlx::query(&format!("SET search_path TO \"{schema}\""))
            .execute(&mut *conn)
            .await
            .map_err(prepare)?;
        let mut migrator = Migrator::new(Embedded).await.map_err(|source| SetupError::Migrate {
            schema: schema.clone(),
            source,
        })?;
        migrator.set_locking(false);
        migrator.run_direct(conn).await.map_err(|source| SetupError::Migrate {
            schema: schema.clone(),
            source,
        })
    }

    /// Drops the store's schema and everything in it. For tests and demos.
    ///
    /// ```no_run
    /// # async fn demo(store: eventcore_postgres::PostgresStore) -> Result<(), eventcore::StoreError> {
    /// store.drop_schema().await?;
    /// # Ok(()) }
    /// ```
    pub async fn drop_schema(&self) -> Result<(), StoreError> {
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.options.schema);
        self.bounded(Operation::Other, async {
            sqlx::query(&sql)
                .execute(&self.pool)
                .await
                .map_err(|e| map_error(Operation::Other, Phase::Executing, e, None))
        })
        .await?;
        Ok(())
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
    async fn bounded<T>(
        &self,
        operation: Operation,
        work: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let after = self.options.operation_timeout;
        tokio::time::timeout(after, work)
            .await
            .map_err(|_| StoreError::Timeout { operation, after })?
    }

    async fn acquire(&self, operation: Operation) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, StoreError> {
        self.pool
            .acquire()
            .await
            .map_err(|e| map_error(operation, Phase::Connecting, e, None))
    }

    /// Appends inside a transaction (or on a connection) of the caller's:
    /// the events commit, and become visible to readers, when that
    /// transaction commits, together with whatever else it wrote. Used for
    /// outbox-style writes and by tests that hold an append open.
    ///
    /// Several appends in one transaction are fine (each gets its own
    /// positions); the caller's transaction must run at READ COMMITTED.
    ///
    /// ```no_run
    /// # async fn demo(store: eventcore_postgres::PostgresStore, request: eventcore::AppendRequest) -> Result<(), Box<dyn std::error::Error>> {
    /// use sqlx::Connection;
    /// let mut conn = store.pool().acquire().await?;
    /// let mut tx = conn.begin().await?;
    /// let receipt = store.append_in(&mut tx, &request).await?;
    /// tx.commit().await?;
    /// # let _ = receipt;
    /// # Ok(()) }
    /// ```
    pub async fn append_in(
        &self,
        conn: &mut PgConnection,
        request: &AppendRequest,
    ) -> Result<AppendReceipt, StoreError> {
        request.validate(&self.options.limits)?;
        self.append_on(conn, request).await
    }

    async fn append_on(&self, conn: &mut PgConnection, request: &AppendRequest) -> Result<AppendReceipt, StoreError> {
        let mut columns = AppendColumns::with_capacity(request.streams.len(), request.event_count());
        columns.push(request)?;
        let meta = MetadataColumns::of(request);
        let AppendColumns {
            stream_ids,
            kinds,
            versions,
            counts,
            event_stream,
            event_offset,
            event_ids,
            event_types,
            schema_versions,
            payloads,
        } = columns;
        let row = sqlx::query(&self.sql.append)
            .bind(request.command_id().as_uuid())
            .bind(meta.correlation_id)
            .bind(meta.causation_id)
            .bind(meta.decided_at)
            .bind(meta.user)
            .bind(&stream_ids)
            .bind(lock_order(request))
            .bind(&kinds)
            .bind(&versions)
            .bind(&counts)
            .bind(&event_stream)
            .bind(&event_offset)
            .bind(&event_ids)
            .bind(&event_types)
            .bind(&schema_versions)
            .bind(&payloads)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| map_error(Operation::Append, Phase::Executing, e, Some(request)))?;
        receipt_from_row(request, &row)
    }

    /// The single-statement append (`Statements::append_alone`) on a
    /// connection outside any transaction; `None` when the command id was
    /// claimed by a twin that committed while the statement ran.
    async fn append_alone(
        &self,
        conn: &mut PgConnection,
        request: &AppendRequest,
    ) -> Result<Option<AppendReceipt>, StoreError> {
        let mut columns = AppendColumns::with_capacity(request.streams.len(), request.event_count());
        columns.push(request)?;
        let meta = MetadataColumns::of(request);
        let row = sqlx::query(&self.sql.append_alone)
            .bind(request.command_id().as_uuid())
            .bind(&columns.stream_ids)
            .bind(&columns.kinds)
            .bind(&columns.versions)
            .bind(&columns.counts)
            .bind(meta.correlation_id)
            .bind(meta.causation_id)
            .bind(meta.decided_at)
            .bind(meta.user)
            .bind(&columns.event_stream)
            .bind(&columns.event_offset)
            .bind(&columns.event_ids)
            .bind(&columns.event_types)
            .bind(&columns.schema_versions)
            .bind(&columns.payloads)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| map_error(Operation::Append, Phase::Executing, e, Some(request)))?;
        row.map(|row| receipt_from_row(request, &row)).transpose()
    }

    /// Reads one stream from `after` on as a stream of events, fetching
    /// `page_size` events per query, so that a very long stream is never
    /// held in memory whole. Each page is its own bounded query.
    ///
    /// ```no_run
    /// # async fn demo(store: eventcore_postgres::PostgresStore) -> Result<(), eventcore::StoreError> {
    /// use eventcore::{StreamId, StreamVersion};
    /// use futures_util::TryStreamExt;
    /// use std::num::NonZeroU32;
    /// let stream = StreamId::new("account-1").expect("valid");
    /// let page = NonZeroU32::new(500).expect("non-zero");
    /// let mut events = std::pin::pin!(store.stream_events(stream, StreamVersion::NONE, page));
    /// while let Some(event) = events.try_next().await? {
    ///     println!("{} v{}", event.event_type, event.version);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn stream_events(
        &self,
        stream: StreamId,
        after: StreamVersion,
        page_size: NonZeroU32,
    ) -> impl Stream<Item = Result<RecordedEvent, StoreError>> + Send + '_ {
        let pages = stream::try_unfold(Some(after), move |cursor| {
            let stream = stream.clone();
            async move {
                let Some(after) = cursor else {
                    return Ok::<_, StoreError>(None);
                };
                let request = ReadRequest {
                    id: eventcore::RequestId::new(0),
                    streams: vec![StreamRead { stream, after }],
                    page_size: Some(page_size),
                };
                let mut response = self.read(&request).await?;
                let slice = response.streams.pop().ok_or_else(|| StoreError::ContractViolation {
                    operation: Operation::Read,
                    message: "read answered no slice".to_owned(),
                })?;
                let next = match slice.events.last() {
                    Some(last) if last.version < slice.head => Some(last.version),
                    _ => None,
                };
                Ok(Some((stream::iter(slice.events.into_iter().map(Ok)), next)))
            }
        });
        pages.try_flatten()
    }

    async fn read_inner(&self, request: &ReadRequest) -> Result<ReadResponse, StoreError> {
        request.validate()?;
        let ids: Vec<&str> = request.streams.iter().map(|r| r.stream.as_str()).collect();
        let afters: Vec<i64> = request
            .streams
            .iter()
            .map(|r| i64::try_from(r.after.get()).unwrap_or(i64::MAX))
            .collect();
        let page = request.page_size.map(|p| i64::from(p.get()));
        let mut conn = self.acquire(Operation::Read).await?;
        let mut slices: Vec<StreamSlice> = request
            .streams
            .iter()
            .map(|r| StreamSlice {
                stream: r.stream.clone(),
                head: StreamVersion::NONE,
                events: Vec::new(),
            })
            .collect();
        // Rows are decoded as they arrive, while the server is still sending
        // the rest, rather than collected first and decoded after.
        let mut rows = sqlx::query(&self.sql.read)
            .bind(&ids)
            .bind(&afters)
            .bind(page)
            .fetch(&mut *conn);
        let mut decoder = RowDecoder::new(2);
        let failed = |e| map_error(Operation::Read, Phase::Executing, e, None);
        while let Some(row) = rows.try_next().await.map_err(failed)? {
            let ord: i32 = row.try_get(0).map_err(|e| contract(Operation::Read, e))?;
            let index = usize::try_from(ord).ok().and_then(|o| o.checked_sub(1));
            let (Some(slice), Some(read)) = (
                index.and_then(|o| slices.get_mut(o)),
                index.and_then(|o| request.streams.get(o)),
            ) else {
                return Err(StoreError::ContractViolation {
                    operation: Operation::Read,
                    message: format!("row for unrequested stream index {ord}"),
                });
            };
            let head: i64 = row.try_get(1).map_err(|e| contract(Operation::Read, e))?;
            let head = StreamVersion::new(to_u64(head));
            if slice.events.is_empty() {
                // Sized once from the head instead of grown by doubling;
                // capped so that a wrong head cannot cost a huge allocation.
                let expected = head.get().saturating_sub(read.after.get());
                let expected = page.map_or(expected, |p| expected.min(to_u64(p)));
                slice.events.reserve(usize::try_from(expected.min(65_536)).unwrap_or(0));
            }
            slice.head = head;
            if let Some(event) = decoder.decode(&row, Operation::Read, Some(&slice.stream))? {
                slice.events.push(event);
            }
        }
        drop(rows);
        for slice in &mut slices {
            if !slice.events.windows(2).all(|w| w[0].version < w[1].version) {
                slice.events.sort_by_key(|e| e.version);
            }
        }
        Ok(ReadResponse { streams: slices })
    }

    async fn read_all_inner(&self, request: &ReadAllRequest) -> Result<ReadAllResponse, StoreError> {
        let filter = &request.filter;
        let sql = self.sql.read_all(
            !filter.streams.is_empty(),
            filter.stream_prefix.is_some(),
            !filter.event_types.is_empty(),
        );
        let after = i64::try_from(request.after.get()).unwrap_or(i64::MAX);
        let limit = i64::from(request.limit.get());
        let streams: Vec<&str> = filter.streams.iter().map(StreamId::as_str).collect();
        let types: Vec<&str> = filter.event_types.iter().map(EventType::as_str).collect();
        let mut conn = self.acquire(Operation::ReadAll).await?;
        let mut waited = false;
        loop {
            let mut query = sqlx::query(&sql).bind(after).bind(limit);
            if !streams.is_empty() {
                query = query.bind(&streams);
            }
            if let Some(prefix) = &filter.stream_prefix {
                query = query.bind(prefix.as_str());
            }
            if !types.is_empty() {
                query = query.bind(&types);
            }
            // Decoded as they arrive (see `read_inner`); every row carries
            // the horizon and the newest position, the first one is enough.
            let failed = |e| map_error(Operation::ReadAll, Phase::Executing, e, None);
            let mut rows = query.fetch(&mut *conn);
            let mut decoder = RowDecoder::new(3);
            let mut events = Vec::with_capacity(usize::try_from(request.limit.get()).unwrap_or(0).min(1024));
            let mut found: Option<(i64, Option<i64>)> = None;
            while let Some(row) = rows.try_next().await.map_err(failed)? {
                if found.is_none() {
                    let horizon: i64 = row.try_get(0).map_err(|e| contract(Operation::ReadAll, e))?;
                    let newest: Option<i64> = row.try_get(1).map_err(|e| contract(Operation::ReadAll, e))?;
                    found = Some((horizon, newest));
                }
                if let Some(event) = decoder.decode(&row, Operation::ReadAll, None)? {
                    events.push(event);
                }
            }
            drop(rows);
            let (horizon, newest) = found.ok_or_else(|| StoreError::ContractViolation {
                operation: Operation::ReadAll,
                message: "read-all answered no row".to_owned(),
            })?;
            if !events.windows(2).all(|w| w[0].position < w[1].position) {
                events.sort_by_key(|e| e.position);
            }
            let full = events.len() as u64 >= u64::from(request.limit.get());
            // Committed events at or above the horizon are held back by a
            // transaction that may still commit below them. Wait (briefly)
            // for it once, so that a reader sees what committed before it
            // asked, then answer with what is final.
            let held_back = newest.is_some_and(|n| n >= horizon && n > after);
            if held_back && !full && !waited && !self.options.read_all_settle.is_zero() {
                waited = true;
                let target = newest.unwrap_or(0) >> INDEX_BITS;
                let wait_ms = i32::try_from(self.options.read_all_settle.as_millis()).unwrap_or(i32::MAX);
                sqlx::query(&self.sql.await_horizon)
                    .bind(target)
                    .bind(wait_ms)
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| map_error(Operation::ReadAll, Phase::Executing, e, None))?;
                continue;
            }
            // Everything below the horizon is final. Capped at the newest
            // committed event so that a quiescent store reports its last
            // position (and an empty one reports START), as memory does.
            let settled = horizon.saturating_sub(1).min(newest.unwrap_or(0));
            let complete_through = match events.last() {
                Some(last) if full => last.position,
                _ => GlobalPosition::new(to_u64(settled)).max(request.after),
            };
            return Ok(ReadAllResponse {
                events,
                complete_through,
            });
        }
    }
}

impl EventStore for PostgresStore {
    async fn read(&self, request: &ReadRequest) -> Result<ReadResponse, StoreError> {
        self.bounded(Operation::Read, self.read_inner(request)).await
    }

    async fn append(&self, request: &AppendRequest) -> Result<AppendReceipt, StoreError> {
        request.validate(&self.options.limits)?;
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
    }

    async fn read_all(&self, request: &ReadAllRequest) -> Result<ReadAllResponse, StoreError> {
        self.bounded(Operation::ReadAll, self.read_all_inner(request)).await
    }

    /// One round trip and one transaction for the whole group (see `batch.rs`).
    async fn append_batch(&self, requests: &[AppendRequest]) -> Vec<Result<AppendReceipt, StoreError>> {
        self.append_group(requests).await
    }
}

fn contract(operation: Operation, error: sqlx::Error) -> StoreError {
    StoreError::ContractViolation {
        operation,
        message: error.to_string(),
    }
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// The receipt of `request` from the row `append()` (or `append_batch()`)
/// answered: on a fresh append the heads before it, from which the request
/// gives everything else; on a re-sent command id the stored receipt.
fn receipt_from_row(request: &AppendRequest, row: &PgRow) -> Result<AppendReceipt, StoreError> {
    let get = |e| contract(Operation::Append, e);
    let deduplicated: bool = row.try_get("deduplicated").map_err(get)?;
    let xid: i64 = row.try_get("xid").map_err(get)?;
    let first_index: i32 = row.try_get("first_index").map_err(get)?;
    let mismatch = |what: &str| StoreError::ContractViolation {
        operation: Operation::Append,
        message: format!("append answered {what}"),
    };
    if !deduplicated {
        let heads: Vec<i64> = row
            .try_get::<Option<Vec<i64>>, _>("heads")
            .map_err(get)?
            .ok_or_else(|| mismatch("no heads"))?;
        return receipt_from_heads(request, xid, first_index, heads);
    }
    let stream_ids: Option<Vec<String>> = row.try_get("stream_ids").map_err(get)?;
    let first_versions: Option<Vec<i64>> = row.try_get("first_versions").map_err(get)?;
    let counts: Option<Vec<i32>> = row.try_get("counts").map_err(get)?;
    let (stream_ids, first_versions, counts) = (
        stream_ids.unwrap_or_default(),
        first_versions.unwrap_or_default(),
        counts.unwrap_or_default(),
    );
    if stream_ids.len() != first_versions.len() || stream_ids.len() != counts.len() {
        return Err(mismatch("arrays of different lengths"));
    }
    let mut next = (to_u64(xid) << INDEX_BITS) + u64::try_from(first_index).unwrap_or(0);
    let mut streams = Vec::with_capacity(stream_ids.len());
    for ((id, first), count) in stream_ids.into_iter().zip(first_versions).zip(counts) {
        let stream = StreamId::new(&id).map_err(|e| StoreError::ContractViolation {
            operation: Operation::Append,
            message: format!("stored stream id {id:?} is invalid: {e}"),
        })?;
        let (first, count) = (to_u64(first), u64::try_from(count).unwrap_or(0));
        streams.push(StreamCommit {
            stream,
            first_version: StreamVersion::new(first),
            last_version: StreamVersion::new(first + count.saturating_sub(1)),
            positions: (0..count).map(|i| GlobalPosition::new(next + i)).collect(),
        });
        next += count;
    }
    Ok(AppendReceipt {
        command_id: request.command_id(),
        streams,
        deduplicated: true,
    })
}

/// The receipt of a fresh append of `request` from its transaction id, the
/// index of its first event in that transaction and the head of each of its
/// streams before it (request order): its events took consecutive positions
/// in request order.
fn receipt_from_heads(
    request: &AppendRequest,
    xid: i64,
    first_index: i32,
    heads: Vec<i64>,
) -> Result<AppendReceipt, StoreError> {
    if heads.len() != request.streams.len() {
        return Err(StoreError::ContractViolation {
            operation: Operation::Append,
            message: format!(
                "append answered {} heads for {} streams",
                heads.len(),
                request.streams.len()
            ),
        });
    }
    let mut next = (to_u64(xid) << INDEX_BITS) + u64::try_from(first_index).unwrap_or(0);
    let mut streams = Vec::with_capacity(request.streams.len());
    for (entry, head) in request.streams.iter().zip(heads) {
        let count = entry.events.len() as u64;
        if count == 0 {
            continue;
        }
        let first = to_u64(head) + 1;
        streams.push(StreamCommit {
            stream: entry.stream.clone(),
            first_version: StreamVersion::new(first),
            last_version: StreamVersion::new(first + count - 1),
            positions: (0..count).map(|i| GlobalPosition::new(next + i)).collect(),
        });
        next += count;
    }
    Ok(AppendReceipt {
        command_id: request.command_id(),
        streams,
        deduplicated: false,
    })
}

/// An append's metadata as the columns `append()` stores it in.
pub(crate) struct MetadataColumns<'a> {
    /// `None` when it is the command id.
    pub(crate) correlation_id: Option<Uuid>,
    pub(crate) causation_id: Option<Uuid>,
    pub(crate) decided_at: i64,
    /// `None` when the caller supplied no key/values.
    pub(crate) user: Option<sqlx::types::Json<&'a BTreeMap<String, String>>>,
}

impl<'a> MetadataColumns<'a> {
    pub(crate) fn of(request: &'a AppendRequest) -> Self {
        let meta = &*request.metadata;
        let user = if meta.user.is_empty() {
            None
        } else {
            Some(sqlx::types::Json(&meta.user))
        };
        let correlation = meta.correlation_id.as_uuid();
        MetadataColumns {
            // NULL stands for "the command id" (see migration 0001).
            correlation_id: (correlation != meta.command_id.as_uuid()).then_some(correlation),
            causation_id: meta.causation_id.map(|c| c.as_uuid()),
            // Bit for bit: every u64 survives the round trip through bigint.
            decided_at: i64::from_ne_bytes(meta.timestamp.as_unix_nanos().to_ne_bytes()),
            user,
        }
    }
}

/// Decodes event rows. Consecutive events of one append share their
/// metadata, and most events share a few type names: both are built once and
/// shared, not once per row. Columns are read by index (by name would cost a
/// hash lookup per column and row), in the order of `Statements`'
/// `event_columns`, which start at index `first`; a `read_all` row has the
/// stream id just before them.
struct RowDecoder {
    first: usize,
    metadata: Option<(Uuid, Arc<EventMetadata>)>,
    event_type: Option<EventType>,
}

impl RowDecoder {
    fn new(first: usize) -> Self {
        RowDecoder {
            first,
            metadata: None,
            event_type: None,
        }
    }

    /// Decodes the event columns of a row; `None` when the row carries no
    /// event (a stream or read with nothing after the requested point).
    /// `stream` is the stream the row belongs to when the query did not
    /// return it.
    fn decode(
        &mut self,
        row: &PgRow,
        operation: Operation,
        stream: Option<&StreamId>,
    ) -> Result<Option<RecordedEvent>, StoreError> {
        let get = |e| contract(operation, e);
        let position: Option<i64> = row.try_get(self.first).map_err(get)?;
        let Some(position) = position else {
            return Ok(None);
        };
        let bad = |what: &str, detail: String| StoreError::ContractViolation {
            operation,
            message: format!("event at position {position} has an invalid {what}: {detail}"),
        };
        let event_id: Uuid = row.try_get(self.first + 1).map_err(get)?;
        let stream_id = match stream {
            Some(stream) => stream.clone(),
            None => {
                let id: &str = row.try_get(self.first - 1).map_err(get)?;
                StreamId::new(id).map_err(|e| bad("stream id", e.to_string()))?
            }
        };
        let version: i64 = row.try_get(self.first + 2).map_err(get)?;
        let type_name: &str = row.try_get(self.first + 3).map_err(get)?;
        let event_type = match &self.event_type {
            Some(known) if known.as_str() == type_name => known.clone(),
            _ => {
                let parsed = EventType::new(type_name).map_err(|e| bad("event type", e.to_string()))?;
                self.event_type = Some(parsed.clone());
                parsed
            }
        };
        let schema_version: i32 = row.try_get(self.first + 4).map_err(get)?;
        let payload: &str = row.try_get(self.first + 5).map_err(get)?;
        let command_id: Uuid = row.try_get(self.first + 6).map_err(get)?;
        let metadata = match &self.metadata {
            Some((id, meta)) if *id == command_id => meta.clone(),
            _ => {
                let correlation_id: Option<Uuid> = row.try_get(self.first + 7).map_err(get)?;
                let correlation_id = correlation_id.unwrap_or(command_id);
                let causation_id: Option<Uuid> = row.try_get(self.first + 8).map_err(get)?;
                let decided_at: i64 = row.try_get(self.first + 9).map_err(get)?;
                let user: Option<&str> = row.try_get(self.first + 10).map_err(get)?;
                let user = match user {
                    Some(text) => serde_json::from_str(text).map_err(|e| bad("user metadata", e.to_string()))?,
                    None => BTreeMap::new(),
                };
                let meta = Arc::new(EventMetadata {
                    command_id: CommandId::from_uuid(command_id),
                    correlation_id: CorrelationId::from_uuid(correlation_id),
                    causation_id: causation_id.map(CausationId::from_uuid),
                    timestamp: Time::from_unix_nanos(u64::from_ne_bytes(decided_at.to_ne_bytes())),
                    user,
                });
                self.metadata = Some((command_id, meta.clone()));
                meta
            }
        };
        Ok(Some(RecordedEvent {
            event_id: EventId::from_uuid(event_id),
            stream_id,
            version: StreamVersion::new(to_u64(version)),
            position: GlobalPosition::new(to_u64(position)),
            event_type,
            schema_version: u32::try_from(schema_version).map_err(|e| bad("schema version", e.to_string()))?,
            payload: Payload::from_trusted_json(payload),
            metadata,
        }))
    }
}

/// For each stream of `request`, by the bytewise order of stream ids, its
/// 1-based index within the request: the order the `append()` function locks
/// heads in (the single-statement append and `append_batch()` sort in SQL).
/// Rust compares `str` bytewise, as PostgreSQL's "C" collation does.
fn lock_order(request: &AppendRequest) -> Vec<i32> {
    let mut order: Vec<usize> = (0..request.streams.len()).collect();
    order.sort_unstable_by_key(|&i| request.streams[i].stream.as_str());
    order
        .into_iter()
        .map(|i| i32::try_from(i + 1).unwrap_or(i32::MAX))
        .collect()
}

/// Appends flattened into the column arrays that the `append()` and
/// `append_batch()` database functions take.
#[derive(Debug, Default)]
pub(crate) struct AppendColumns<'a> {
    pub(crate) stream_ids: Vec<&'a str>,
    pub(crate) kinds: Vec<i16>,
    pub(crate) versions: Vec<i64>,
    pub(crate) counts: Vec<i32>,
    /// For each event, the 1-based index of its stream within its request.
    pub(crate) event_stream: Vec<i32>,
    /// For each event, its 1-based offset among its stream's events.
    pub(crate) event_offset: Vec<i32>,
    pub(crate) event_ids: Vec<sqlx::types::Uuid>,
    pub(crate) event_types: Vec<&'a str>,
    pub(crate) schema_versions: Vec<i32>,
    pub(crate) payloads: Vec<&'a str>,
}

impl<'a> AppendColumns<'a> {
    pub(crate) fn with_capacity(streams: usize, events: usize) -> Self {
        AppendColumns {
            stream_ids: Vec::with_capacity(streams),
            kinds: Vec::with_capacity(streams),
            versions: Vec::with_capacity(streams),
            counts: Vec::with_capacity(streams),
            event_stream: Vec::with_capacity(events),
            event_offset: Vec::with_capacity(events),
            event_ids: Vec::with_capacity(events),
            event_types: Vec::with_capacity(events),
            schema_versions: Vec::with_capacity(events),
            payloads: Vec::with_capacity(events),
        }
    }

    /// Checks what the database could refuse without saying which event
    /// (the same checks, and errors, as the memory store), then adds the
    /// request's streams and events. Nothing is added when it fails.
    pub(crate) fn push(&mut self, request: &'a AppendRequest) -> Result<(), InvalidAppend> {
        Self::check(request)?;
        self.push_checked(request);
        Ok(())
    }

    /// What [`AppendColumns::push`] checks, without adding anything.
    pub(crate) fn check(request: &AppendRequest) -> Result<(), InvalidAppend> {
        for entry in &request.streams {
            for event in &entry.events {
                if i32::try_from(event.schema_version).is_err() {
                    return Err(InvalidAppend::Rejected {
                        stream: entry.stream.clone(),
                        reason: format!(
                            "schema version {} of {} does not fit PostgreSQL's integer",
                            event.schema_version, event.event_type
                        ),
                    });
                }
                event
                    .payload
                    .check_storable()
                    .map_err(|reason| InvalidAppend::Rejected {
                        stream: entry.stream.clone(),
                        reason: format!("{} event: {reason}", event.event_type),
                    })?;
            }
        }
        Ok(())
    }

    /// Adds a request that [`AppendColumns::check`] accepted.
    pub(crate) fn push_checked(&mut self, request: &'a AppendRequest) {
        for (index, entry) in request.streams.iter().enumerate() {
            let (kind, version) = match entry.expected {
                ExpectedVersion::Any => (0i16, 0i64),
                ExpectedVersion::NoStream => (1, 0),
                ExpectedVersion::StreamExists => (2, 0),
                ExpectedVersion::Exact(v) => (3, i64::try_from(v.get()).unwrap_or(i64::MAX)),
            };
            self.stream_ids.push(entry.stream.as_str());
            self.kinds.push(kind);
            self.versions.push(version);
            self.counts.push(i32::try_from(entry.events.len()).unwrap_or(i32::MAX));
            for (offset, event) in entry.events.iter().enumerate() {
                self.event_stream.push(i32::try_from(index + 1).unwrap_or(i32::MAX));
                self.event_offset.push(i32::try_from(offset + 1).unwrap_or(i32::MAX));
                self.event_ids.push(event.event_id.as_uuid());
                self.event_types.push(event.event_type.as_str());
                self.schema_versions
                    .push(i32::try_from(event.schema_version).unwrap_or(i32::MAX));
                self.payloads.push(event.payload.as_json());
            }
        }
    }
}
