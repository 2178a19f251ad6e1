//! Checkpoints on PostgreSQL, and the SQL they share with the
//! transactional projections (`projection.rs`, feature `projections`).
//!
//! [`PgCheckpointStore`] keeps at-least-once checkpoints.

use crate::metrics::{observe, Fields, Op};
use crate::tables::{store_error, Tables};
use crate::PostgresStore;
use eventcore::{GlobalPosition, StoreError, Time};
use eventcore_store::{CheckpointError, CheckpointStore, FencingToken};
use sqlx::postgres::PgPool;

pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(crate) fn position(raw: i64) -> GlobalPosition {
    GlobalPosition::new(u64::try_from(raw).unwrap_or(0))
}

pub(crate) fn checkpoint_error(error: sqlx::Error) -> CheckpointError {
    from_store_error(store_error(error))
}

fn from_store_error(error: StoreError) -> CheckpointError {
    if error.is_retryable() {
        CheckpointError::Transient(error.to_string())
    } else {
        CheckpointError::Permanent(error.to_string())
    }
}

/// The SQL shared by both stores.
#[derive(Clone, Debug)]
// `begin` and `commit` are the projection store's (feature `projections`).
#[cfg_attr(not(feature = "projections"), allow(dead_code))]
pub(crate) struct Sql {
    pub(crate) claim: String,
    pub(crate) fence: String,
    pub(crate) begin: String,
    pub(crate) save: String,
    pub(crate) commit: String,
    pub(crate) list: String,
}

impl Sql {
    pub(crate) fn new(tables: &Tables) -> Self {
        let (c, l) = (&tables.checkpoints, &tables.leases);
        Sql {
            claim: format!(
                "INSERT INTO {c} AS c (name, position, fence) VALUES ($1, 0, $2) \
                 ON CONFLICT (name) DO UPDATE SET fence = EXCLUDED.fence, updated_at = now() \
                 WHERE c.fence <= EXCLUDED.fence \
                 RETURNING c.position"
            ),
            fence: format!("SELECT fence FROM {c} WHERE name = $1"),
            // A projection batch's first statement: the fence and the
            // committed position. No row lock: a lock held for the whole
            // batch would make a new holder's claim wait for a frozen old
            // holder. The commit checks the position instead (`commit`).
            begin: format!("SELECT fence, position FROM {c} WHERE name = $1"),
            // Row-locking update: the fence check and the write are one step,
            // and the lock is held until the transaction ends. A newer lease
            // token (a takeover in progress) fences too.
            save: format!(
                "UPDATE {c} SET position = greatest(position, $3), updated_at = now() \
                 WHERE name = $1 AND fence = $2 \
                   AND NOT EXISTS (SELECT 1 FROM {l} WHERE name = $1 AND token > $2)"
            ),
            // A projection batch's commit: the save above, and only if the
            // position is still the one the batch began from. A commit of
            // the same projection that landed meanwhile (one whose answer
            // was lost, still finishing when this batch began) makes it
            // touch no row: the batch rolls back and, begun again, skips
            // what that commit applied.
            commit: format!(
                "UPDATE {c} SET position = greatest(position, $3), updated_at = now() \
                 WHERE name = $1 AND fence = $2 AND position = $4 \
                   AND NOT EXISTS (SELECT 1 FROM {l} WHERE name = $1 AND token > $2)"
            ),
            list: format!(
                "SELECT name, position, fence, (extract(epoch FROM updated_at) * 1000000)::int8 \
                 FROM {c} ORDER BY name"
            ),
        }
    }
}

pub(crate) async fn claim(
    pool: &PgPool,
    sql: &Sql,
    name: &str,
    token: FencingToken,
) -> Result<GlobalPosition, CheckpointError> {
    let row: Option<i64> = sqlx::query_scalar(&sql.claim)
        .bind(name)
        .bind(to_i64(token.get()))
        .fetch_optional(pool)
        .await
        .map_err(checkpoint_error)?;
    match row {
        Some(raw) => Ok(position(raw)),
        None => Err(fenced(pool, sql, name, token).await),
    }
}

async fn fenced(conn: impl sqlx::PgExecutor<'_>, sql: &Sql, name: &str, token: FencingToken) -> CheckpointError {
    let current: Option<i64> = sqlx::query_scalar(&sql.fence)
        .bind(name)
        .fetch_optional(conn)
        .await
        .ok()
        .flatten();
    CheckpointError::Fenced {
        name: name.to_owned(),
        token,
        current: FencingToken::new(current.and_then(|c| u64::try_from(c).ok()).unwrap_or(0)),
    }
}

/// At-least-once checkpoints in `subscription_checkpoints`.
///
/// ```no_run
/// # async fn demo(store: eventcore_postgres::PostgresStore) {
/// use eventcore_postgres::PgCheckpointStore;
/// let checkpoints = PgCheckpointStore::new(&store);
/// # let _ = checkpoints;
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PgCheckpointStore {
    pool: PgPool,
    sql: Sql,
}

impl PgCheckpointStore {
    /// Checkpoints in `store`'s schema (run
    /// [`PostgresStore::migrate`](crate::PostgresStore::migrate) first).
    pub fn new(store: &PostgresStore) -> Self {
        PgCheckpointStore {
            pool: store.pool().clone(),
            sql: Sql::new(&Tables::of(store)),
        }
    }

    /// The saved checkpoint of `name`, if any.
    pub async fn get(&self, name: &str) -> Result<Option<GlobalPosition>, StoreError> {
        let sql = self.sql.fence.replace("SELECT fence", "SELECT position");
        let row: Option<i64> = sqlx::query_scalar(&sql)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(row.map(position))
    }
}

/// One saved checkpoint, as [`PgCheckpointStore::list`] reports it.
///
/// ```
/// use eventcore::{GlobalPosition, Time};
/// use eventcore_postgres::CheckpointState;
/// use eventcore_store::FencingToken;
/// let state = CheckpointState {
///     name: "balances".into(),
///     position: GlobalPosition::new(42),
///     fence: FencingToken::new(3),
///     updated_at: Time::from_unix_millis(1_700_000_000_000),
/// };
/// assert_eq!(state.position.get(), 42);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointState {
    /// The subscription's (or projection's) name.
    pub name: String,
    /// Every matching event up to here has been handled or parked.
    pub position: GlobalPosition,
    /// The lease token of the holder that last claimed it: writes carrying
    /// a lower token are rejected.
    pub fence: FencingToken,
    /// When the row last changed, on the database's clock.
    pub updated_at: Time,
}

impl PgCheckpointStore {
    /// Every saved checkpoint of the schema (at-least-once subscriptions
    /// and projections alike: they share the table), ordered by name. For
    /// operators and tools; runners never need it.
    ///
    /// ```no_run
    /// # async fn demo(store: eventcore_postgres::PostgresStore) -> Result<(), eventcore::StoreError> {
    /// use eventcore_postgres::PgCheckpointStore;
    /// for checkpoint in PgCheckpointStore::new(&store).list().await? {
    ///     println!("{} at {} ({})", checkpoint.name, checkpoint.position, checkpoint.fence);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list(&self) -> Result<Vec<CheckpointState>, StoreError> {
        let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(&self.sql.list)
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(rows
            .into_iter()
            .map(|(name, at, fence, updated_us)| CheckpointState {
                name,
                position: position(at),
                fence: FencingToken::new(u64::try_from(fence).unwrap_or(0)),
                updated_at: Time::from_unix_nanos(u64::try_from(updated_us).unwrap_or(0).saturating_mul(1_000)),
            })
            .collect())
    }
}

impl CheckpointStore for PgCheckpointStore {
    async fn claim(&self, name: &str, token: FencingToken) -> Result<GlobalPosition, CheckpointError> {
        observe(&self.pool, Op::CheckpointClaim, Fields::named(name), async {
            claim(&self.pool, &self.sql, name, token).await
        })
        .await
    }

    async fn save(&self, name: &str, token: FencingToken, position: GlobalPosition) -> Result<(), CheckpointError> {
        observe(&self.pool, Op::CheckpointSave, Fields::named(name), async {
            let done = sqlx::query(&self.sql.save)
                .bind(name)
                .bind(to_i64(token.get()))
                .bind(to_i64(position.get()))
                .execute(&self.pool)
                .await
                .map_err(checkpoint_error)?;
            if done.rows_affected() == 1 {
                Ok(())
            } else {
                Err(fenced(&self.pool, &self.sql, name, token).await)
            }
        })
        .await
    }
}
