//! Checkpoints and transactional projections on PostgreSQL.
//!
//! [`PgCheckpointStore`] keeps at-least-once checkpoints.
//! [`PgProjectionStore`] is the exactly-once path: a projection writes its
//! read model through a [`PgTransaction`], and the commit saves the
//! checkpoint **in the same SQL transaction**, after checking in that
//! transaction that the writer is still the current holder (the fence in the
//! checkpoint row, and no newer lease token). A stale holder's transaction
//! is rolled back, read-model writes included.

use crate::metrics::{observe, Fields, Op};
use crate::subscription::{store_error, Tables};
use crate::PostgresStore;
use eventcore::{GlobalPosition, StoreError, Time};
use eventcore_store::{CheckpointError, CheckpointStore, FencingToken, ProjectionStore};
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Postgres, Transaction};
use std::ops::{Deref, DerefMut};

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn position(raw: i64) -> GlobalPosition {
    GlobalPosition::new(u64::try_from(raw).unwrap_or(0))
}

fn checkpoint_error(error: sqlx::Error) -> CheckpointError {
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
struct Sql {
    claim: String,
    fence: String,
    begin: String,
    save: String,
    commit: String,
    list: String,
}

impl Sql {
    fn new(tables: &Tables) -> Self {
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

async fn claim(pool: &PgPool, sql: &Sql, name: &str, token: FencingToken) -> Result<GlobalPosition, CheckpointError> {
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

/// A projection's read model in the same PostgreSQL database as its
/// checkpoint: every batch is one SQL transaction (read-model writes, fence
/// check, checkpoint), hence exactly-once.
///
/// ```no_run
/// # async fn demo(store: eventcore_postgres::PostgresStore) {
/// use eventcore_postgres::PgProjectionStore;
/// let read_models = PgProjectionStore::new(&store);
/// # let _ = read_models;
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PgProjectionStore {
    pool: PgPool,
    sql: Sql,
}

impl PgProjectionStore {
    /// Read models and checkpoints in `store`'s database (checkpoints in its
    /// schema; run [`PostgresStore::migrate`](crate::PostgresStore::migrate) first).
    pub fn new(store: &PostgresStore) -> Self {
        PgProjectionStore {
            pool: store.pool().clone(),
            sql: Sql::new(&Tables::of(store)),
        }
    }

    /// The pool, for reading the read model.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The committed checkpoint of `name`, if any.
    pub async fn checkpoint(&self, name: &str) -> Result<Option<GlobalPosition>, StoreError> {
        let sql = self.sql.fence.replace("SELECT fence", "SELECT position");
        let row: Option<i64> = sqlx::query_scalar(&sql)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(row.map(position))
    }
}

/// One batch's SQL transaction. Dereferences to the connection, so a
/// projection writes with `sqlx::query(...).execute(&mut **tx)`. Dropping it
/// rolls back.
///
/// ```no_run
/// # async fn demo(tx: &mut eventcore_postgres::PgTransaction) -> Result<(), sqlx::Error> {
/// sqlx::query("UPDATE balances SET balance = balance + 5 WHERE account = 'a'")
///     .execute(&mut **tx)
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PgTransaction {
    tx: Transaction<'static, Postgres>,
    name: String,
    token: FencingToken,
    committed: GlobalPosition,
}

impl PgTransaction {
    /// The projection's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fencing token the transaction carries.
    pub fn token(&self) -> FencingToken {
        self.token
    }
}

impl Deref for PgTransaction {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.tx
    }
}

impl DerefMut for PgTransaction {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}

impl ProjectionStore for PgProjectionStore {
    type Transaction = PgTransaction;

    async fn claim(&self, name: &str, token: FencingToken) -> Result<GlobalPosition, CheckpointError> {
        observe(&self.pool, Op::CheckpointClaim, Fields::named(name), async {
            claim(&self.pool, &self.sql, name, token).await
        })
        .await
    }

    async fn begin(&self, name: &str, token: FencingToken) -> Result<PgTransaction, CheckpointError> {
        observe(&self.pool, Op::ProjectionBegin, Fields::named(name), async {
            let mut tx = self.pool.begin().await.map_err(checkpoint_error)?;
            // Fail fast when already fenced (the commit checks again), and
            // learn what is committed already.
            let row: Option<(i64, i64)> = sqlx::query_as(&self.sql.begin)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(checkpoint_error)?;
            let current = row.map(|(fence, _)| fence);
            let committed = row.map_or(GlobalPosition::START, |(_, at)| position(at));
            if current != Some(to_i64(token.get())) {
                return Err(CheckpointError::Fenced {
                    name: name.to_owned(),
                    token,
                    current: FencingToken::new(current.and_then(|c| u64::try_from(c).ok()).unwrap_or(0)),
                });
            }
            Ok(PgTransaction {
                tx,
                name: name.to_owned(),
                token,
                committed,
            })
        })
        .await
    }

    async fn commit(&self, transaction: PgTransaction, checkpoint: GlobalPosition) -> Result<(), CheckpointError> {
        let name = transaction.name.clone();
        observe(&self.pool, Op::ProjectionCommit, Fields::named(&name), async {
            let PgTransaction {
                mut tx,
                name,
                token,
                committed,
            } = transaction;
            let done = sqlx::query(&self.sql.commit)
                .bind(&name)
                .bind(to_i64(token.get()))
                .bind(to_i64(checkpoint.get()))
                .bind(to_i64(committed.get()))
                .execute(&mut *tx)
                .await
                .map_err(checkpoint_error)?;
            if done.rows_affected() != 1 {
                drop(tx);
                let now: Option<(i64, i64)> = sqlx::query_as(&self.sql.begin)
                    .bind(&name)
                    .fetch_optional(&self.pool)
                    .await
                    .ok()
                    .flatten();
                return Err(match now {
                    Some((fence, at)) if fence == to_i64(token.get()) && position(at) != committed => {
                        CheckpointError::Transient(format!(
                            "the checkpoint of `{name}` moved from {committed} to {} while the batch ran \
                             (an earlier commit landed); the batch is rolled back and delivered again",
                            position(at)
                        ))
                    }
                    // The same answer `fenced` gives, from the row just read.
                    now => CheckpointError::Fenced {
                        name,
                        token,
                        current: FencingToken::new(now.and_then(|(fence, _)| u64::try_from(fence).ok()).unwrap_or(0)),
                    },
                });
            }
            tx.commit().await.map_err(checkpoint_error)
        })
        .await
    }

    fn committed(transaction: &PgTransaction) -> Option<GlobalPosition> {
        Some(transaction.committed)
    }
}
