//! Transactional projections on PostgreSQL (feature `projections`).
//!
//! [`PgProjectionStore`] is the exactly-once path: a projection writes its
//! read model through a [`PgTransaction`], and the commit saves the
//! checkpoint **in the same SQL transaction**, after checking in that
//! transaction that the writer is still the current holder (the fence in the
//! checkpoint row, and no newer lease token). A stale holder's transaction
//! is rolled back, read-model writes included.

use crate::checkpoint::{checkpoint_error, claim, position, to_i64, Sql};
use crate::metrics::{observe, Fields, Op};
use crate::tables::{store_error, Tables};
use crate::PostgresStore;
use eventcore::{GlobalPosition, StoreError};
use eventcore_store::{CheckpointError, FencingToken, ProjectionStore};
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Postgres, Transaction};
use std::ops::{Deref, DerefMut};

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
