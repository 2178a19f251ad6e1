//! Persisted view snapshots on PostgreSQL: [`PgSnapshotStore`], one row per
//! (stream, view, view version) in the store's `snapshots` table (created by
//! [`PostgresStore::migrate`]).

use crate::metrics::{observe, Fields, Op};
use crate::tables::store_error;
use crate::PostgresStore;
use eventcore::{EventId, Snapshot, StreamId, StreamVersion, Time};
use eventcore_store::{SnapshotError, SnapshotStore};
use sqlx::postgres::PgPool;
use sqlx::Row;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The SQL, with the schema filled in once.
#[derive(Debug)]
struct Sql {
    load: String,
    save: String,
    discard: String,
    delete_view: String,
    summary: String,
    delete_version: String,
    delete_below: String,
}

impl Sql {
    fn new(schema: &str) -> Self {
        let t = format!("\"{schema}\".snapshots");
        Sql {
            // One primary-key lookup.
            load: format!(
                "SELECT stream_version, payload::text, taken_at_ns, last_event_id FROM {t} \
                 WHERE stream_id = $1 AND view = $2 AND view_version = $3"
            ),
            // One statement: insert, or replace a row that is not newer.
            save: format!(
                "INSERT INTO {t} AS s (stream_id, view, view_version, stream_version, payload, taken_at_ns, \
                     last_event_id) \
                 VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7) \
                 ON CONFLICT (stream_id, view, view_version) DO UPDATE \
                 SET stream_version = EXCLUDED.stream_version, payload = EXCLUDED.payload, \
                     taken_at_ns = EXCLUDED.taken_at_ns, last_event_id = EXCLUDED.last_event_id \
                 WHERE s.stream_version <= EXCLUDED.stream_version"
            ),
            // Only the row that proved wrong: a newer one saved meanwhile stays.
            discard: format!(
                "DELETE FROM {t} WHERE stream_id = $1 AND view = $2 AND view_version = $3 \
                 AND stream_version = $4 AND last_event_id = $5"
            ),
            delete_view: format!("DELETE FROM {t} WHERE view = $1"),
            summary: format!(
                "SELECT view, view_version, count(*), sum(pg_column_size(payload))::int8, \
                   max(pg_column_size(payload))::int8, min(taken_at_ns), max(taken_at_ns) \
                 FROM {t} GROUP BY view, view_version ORDER BY view, view_version"
            ),
            delete_version: format!("DELETE FROM {t} WHERE view = $1 AND view_version = $2"),
            delete_below: format!("DELETE FROM {t} WHERE view = $1 AND view_version < $2"),
        }
    }
}

/// The snapshots of one version of one view, as [`PgSnapshotStore::views`]
/// reports them.
///
/// ```
/// use eventcore::Time;
/// use eventcore_postgres::ViewSnapshots;
/// let group = ViewSnapshots {
///     view: "account".into(),
///     view_version: 2,
///     snapshots: 10,
///     payload_bytes: 1_200,
///     largest_payload_bytes: 140,
///     oldest: Time::from_unix_millis(1),
///     newest: Time::from_unix_millis(2),
/// };
/// assert_eq!(group.payload_bytes / group.snapshots, 120);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewSnapshots {
    /// The view's name (`View::NAME`).
    pub view: String,
    /// The view's version (`View::VERSION`).
    pub view_version: u32,
    /// How many streams have a snapshot of it.
    pub snapshots: u64,
    /// Their payloads' size as stored (`pg_column_size`: after
    /// compression), in bytes.
    pub payload_bytes: u64,
    /// The largest payload, in bytes as stored.
    pub largest_payload_bytes: u64,
    /// When the oldest of them was taken (the writer's clock).
    pub oldest: Time,
    /// When the newest of them was taken.
    pub newest: Time,
}

#[derive(Debug, Default)]
struct Counters {
    loads: AtomicU64,
    saves: AtomicU64,
}

/// Snapshots of stream views in the store's schema, table `snapshots`.
///
/// Built from a [`PostgresStore`], whose pool and schema it shares (run
/// [`PostgresStore::migrate`] first, which creates the table). A save is one
/// upsert that replaces only a row at a lower or equal stream version, so
/// concurrent writers of one key leave the newest; a load is one primary-key
/// lookup. Every call is bounded by the store's operation timeout.
///
/// ```no_run
/// # async fn demo(store: eventcore_postgres::PostgresStore) {
/// use eventcore_postgres::PgSnapshotStore;
/// use eventcore_store::SnapshotStore;
/// let snapshots = PgSnapshotStore::new(&store);
/// // Hand it to a driver, e.g. `Executor::new(store).with_snapshots(snapshots)`
/// // in `eventcore-tokio`.
/// fn keep_snapshots_in(_snapshots: impl SnapshotStore) {}
/// keep_snapshots_in(snapshots.clone());
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PgSnapshotStore {
    pool: PgPool,
    sql: Arc<Sql>,
    timeout: Duration,
    counters: Arc<Counters>,
}

impl PgSnapshotStore {
    /// Snapshots in `store`'s schema, on its pool.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use eventcore_postgres::{PgSnapshotStore, PostgresStore};
    /// let store = PostgresStore::connect("postgres://postgres@127.0.0.1:5432/postgres").await?;
    /// store.migrate().await?;
    /// let snapshots = PgSnapshotStore::new(&store);
    /// assert_eq!(snapshots.loads(), 0);
    /// # Ok(()) }
    /// ```
    pub fn new(store: &PostgresStore) -> Self {
        PgSnapshotStore {
            pool: store.pool().clone(),
            sql: Arc::new(Sql::new(&store.options().schema)),
            timeout: store.options().operation_timeout,
            counters: Arc::default(),
        }
    }

    /// Snapshots fetched by [`SnapshotStore::load`] so far (rows returned,
    /// not lookups), across clones of this store: what a benchmark reads to
    /// see that a cold start loaded snapshots instead of folding.
    ///
    /// ```no_run
    /// # async fn demo(snapshots: eventcore_postgres::PgSnapshotStore) {
    /// println!("{} snapshots loaded", snapshots.loads());
    /// # }
    /// ```
    pub fn loads(&self) -> u64 {
        self.counters.loads.load(Ordering::Relaxed)
    }

    /// Save statements that completed so far (whether or not they replaced
    /// the held row), across clones of this store.
    ///
    /// ```no_run
    /// # async fn demo(snapshots: eventcore_postgres::PgSnapshotStore) {
    /// println!("{} snapshots saved", snapshots.saves());
    /// # }
    /// ```
    pub fn saves(&self) -> u64 {
        self.counters.saves.load(Ordering::Relaxed)
    }

    /// What the table holds, per view name and view version: how many
    /// snapshots, their payload sizes as stored, and when the oldest and
    /// newest were taken. Ordered by view, then version. For operators and
    /// tools (`eventcore snapshots list`): a view whose fold changed has a
    /// new version, and the rows of its old versions are never read again.
    ///
    /// ```no_run
    /// # async fn demo(store: eventcore_postgres::PostgresStore) -> Result<(), eventcore_store::SnapshotError> {
    /// use eventcore_postgres::PgSnapshotStore;
    /// for group in PgSnapshotStore::new(&store).views().await? {
    ///     println!("{} v{}: {} snapshots, {} bytes", group.view, group.view_version, group.snapshots, group.payload_bytes);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn views(&self) -> Result<Vec<ViewSnapshots>, SnapshotError> {
        // view, version, count, bytes, largest, oldest and newest
        type Row = (String, i64, i64, Option<i64>, Option<i64>, Option<i64>, Option<i64>);
        let rows: Vec<Row> = self
            .bounded(sqlx::query_as(&self.sql.summary).fetch_all(&self.pool))
            .await?;
        let unsigned = |v: Option<i64>| u64::try_from(v.unwrap_or(0)).unwrap_or(0);
        Ok(rows
            .into_iter()
            .map(
                |(view, version, snapshots, bytes, largest, oldest, newest)| ViewSnapshots {
                    view,
                    view_version: u32::try_from(version).unwrap_or(u32::MAX),
                    snapshots: unsigned(Some(snapshots)),
                    payload_bytes: unsigned(bytes),
                    largest_payload_bytes: unsigned(largest),
                    oldest: Time::from_unix_nanos(unsigned(oldest)),
                    newest: Time::from_unix_nanos(unsigned(newest)),
                },
            )
            .collect())
    }

    /// Deletes every snapshot of one version of a view, across all streams;
    /// returns how many. ([`SnapshotStore::delete_view`] deletes every
    /// version.)
    ///
    /// ```no_run
    /// # async fn demo(snapshots: eventcore_postgres::PgSnapshotStore) -> Result<(), eventcore_store::SnapshotError> {
    /// let deleted = snapshots.delete_view_version("account", 1).await?;
    /// # let _ = deleted;
    /// # Ok(()) }
    /// ```
    pub async fn delete_view_version(&self, view: &str, view_version: u32) -> Result<u64, SnapshotError> {
        let done = self
            .bounded(
                sqlx::query(&self.sql.delete_version)
                    .bind(view)
                    .bind(i64::from(view_version))
                    .execute(&self.pool),
            )
            .await?;
        Ok(done.rows_affected())
    }

    /// Deletes the snapshots of a view's versions below `view_version`
    /// (those an older release of the view wrote, which the current one
    /// never reads), across all streams; returns how many.
    ///
    /// ```no_run
    /// # async fn demo(snapshots: eventcore_postgres::PgSnapshotStore) -> Result<(), eventcore_store::SnapshotError> {
    /// // The `account` view is at version 3 now: versions 1 and 2 go.
    /// let deleted = snapshots.delete_versions_below("account", 3).await?;
    /// # let _ = deleted;
    /// # Ok(()) }
    /// ```
    pub async fn delete_versions_below(&self, view: &str, view_version: u32) -> Result<u64, SnapshotError> {
        let done = self
            .bounded(
                sqlx::query(&self.sql.delete_below)
                    .bind(view)
                    .bind(i64::from(view_version))
                    .execute(&self.pool),
            )
            .await?;
        Ok(done.rows_affected())
    }

    /// [`PgSnapshotStore::bounded`] in the operation's span, timed and
    /// counted (`metrics.rs`).
    async fn observed<T>(
        &self,
        op: Op,
        fields: Fields<'_>,
        work: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, SnapshotError> {
        observe(&self.pool, op, fields, self.bounded(work)).await
    }

    async fn bounded<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, SnapshotError> {
        match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result.map_err(snapshot_error),
            Err(_) => Err(SnapshotError::Unavailable(format!(
                "no answer within {:?}",
                self.timeout
            ))),
        }
    }
}

/// Connection trouble (a closed or exhausted pool, a broken connection, or a
/// retryable PostgreSQL error such as a cancelled statement) is
/// `Unavailable`; everything else `Other`.
fn snapshot_error(error: sqlx::Error) -> SnapshotError {
    if matches!(
        error,
        sqlx::Error::PoolClosed
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed
    ) {
        return SnapshotError::Unavailable(error.to_string());
    }
    let error = store_error(error);
    if error.is_retryable() {
        SnapshotError::Unavailable(error.to_string())
    } else {
        SnapshotError::Other(Box::new(error))
    }
}

fn too_large(what: &str, value: u64) -> SnapshotError {
    SnapshotError::Other(format!("{what} {value} does not fit PostgreSQL's bigint").into())
}

impl SnapshotStore for PgSnapshotStore {
    async fn load(&self, stream: &StreamId, view: &str, view_version: u32) -> Result<Option<Snapshot>, SnapshotError> {
        let row = self
            .observed(
                Op::SnapshotLoad,
                Fields::named(view),
                sqlx::query(&self.sql.load)
                    .bind(stream.as_str())
                    .bind(view)
                    .bind(i64::from(view_version))
                    .fetch_optional(&self.pool),
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        self.counters.loads.fetch_add(1, Ordering::Relaxed);
        let malformed = |what: &str, detail: String| {
            SnapshotError::Malformed(format!(
                "snapshot of `{stream}` view `{view}` v{view_version}: {what}: {detail}"
            ))
        };
        let version: i64 = row.try_get(0).map_err(|e| malformed("stream_version", e.to_string()))?;
        let payload: String = row.try_get(1).map_err(|e| malformed("payload", e.to_string()))?;
        let taken_at: i64 = row.try_get(2).map_err(|e| malformed("taken_at_ns", e.to_string()))?;
        let last_event: uuid::Uuid = row.try_get(3).map_err(|e| malformed("last_event_id", e.to_string()))?;
        let version =
            u64::try_from(version).map_err(|_| malformed("stream_version", format!("{version} is negative")))?;
        let taken_at =
            u64::try_from(taken_at).map_err(|_| malformed("taken_at_ns", format!("{taken_at} is negative")))?;
        Ok(Some(Snapshot {
            stream: stream.clone(),
            view: view.to_owned(),
            view_version,
            stream_version: StreamVersion::new(version),
            last_event_id: EventId::from_uuid(last_event),
            payload,
            taken_at: Time::from_unix_nanos(taken_at),
        }))
    }

    async fn save(&self, snapshot: &Snapshot) -> Result<(), SnapshotError> {
        let version = snapshot.stream_version.get();
        let version = i64::try_from(version).map_err(|_| too_large("stream version", version))?;
        let taken_at = snapshot.taken_at.as_unix_nanos();
        let taken_at = i64::try_from(taken_at).map_err(|_| too_large("taken_at (ns)", taken_at))?;
        self.observed(
            Op::SnapshotSave,
            Fields::named(&snapshot.view),
            sqlx::query(&self.sql.save)
                .bind(snapshot.stream.as_str())
                .bind(&snapshot.view)
                .bind(i64::from(snapshot.view_version))
                .bind(version)
                .bind(&snapshot.payload)
                .bind(taken_at)
                .bind(snapshot.last_event_id.as_uuid())
                .execute(&self.pool),
        )
        .await?;
        self.counters.saves.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn discard(&self, snapshot: &Snapshot) -> Result<bool, SnapshotError> {
        let version = snapshot.stream_version.get();
        let version = i64::try_from(version).map_err(|_| too_large("stream version", version))?;
        let done = self
            .observed(
                Op::SnapshotDiscard,
                Fields::named(&snapshot.view),
                sqlx::query(&self.sql.discard)
                    .bind(snapshot.stream.as_str())
                    .bind(&snapshot.view)
                    .bind(i64::from(snapshot.view_version))
                    .bind(version)
                    .bind(snapshot.last_event_id.as_uuid())
                    .execute(&self.pool),
            )
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_view(&self, view: &str) -> Result<u64, SnapshotError> {
        let done = self
            .observed(
                Op::SnapshotDelete,
                Fields::named(view),
                sqlx::query(&self.sql.delete_view).bind(view).execute(&self.pool),
            )
            .await?;
        Ok(done.rows_affected())
    }
}
