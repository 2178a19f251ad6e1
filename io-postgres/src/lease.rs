//! Leases on PostgreSQL: `subscription_leases`, on the database clock.

use crate::metrics::{observe, Fields, Op};
use crate::tables::{store_error, Tables};
use crate::PostgresStore;
use eventcore::Time;
use eventcore_store::{FencingToken, Lease, LeaseError, LeaseStore};
use sqlx::postgres::PgPool;
use sqlx::Row;
use std::time::Duration;

/// Leases shared by every process using the database. Expiry uses the
/// database's clock (`clock_timestamp()`), so processes with skewed clocks agree; the
/// `now` passed in by the runner is ignored.
///
/// ```no_run
/// # async fn demo(store: eventcore_postgres::PostgresStore) {
/// use eventcore_postgres::PgLeaseStore;
/// let leases = PgLeaseStore::new(&store);
/// # let _ = leases;
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PgLeaseStore {
    pool: PgPool,
    acquire: String,
    renew: String,
    release: String,
    list: String,
}

/// One row of the lease table, as [`PgLeaseStore::list`] reports it: who
/// holds a subscription's lease, with which token, until when.
///
/// ```
/// use eventcore_postgres::LeaseState;
/// use eventcore_store::FencingToken;
/// let released = LeaseState {
///     name: "balances".into(),
///     holder: None,
///     token: FencingToken::new(2),
///     expires_at: None,
///     remaining: None,
/// };
/// assert!(!released.is_held());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseState {
    /// The subscription (or projection) name it guards.
    pub name: String,
    /// The last holder; `None` once released.
    pub holder: Option<String>,
    /// The token of the last tenure (the next holder gets a higher one).
    pub token: FencingToken,
    /// When it lapses unless renewed, on the database's clock; `None` once
    /// released.
    pub expires_at: Option<Time>,
    /// How long it is still held, by the database's clock when listed;
    /// `None` when released or expired.
    pub remaining: Option<Duration>,
}

impl LeaseState {
    /// Whether someone held the lease when it was listed.
    pub fn is_held(&self) -> bool {
        self.holder.is_some() && self.remaining.is_some()
    }
}

fn lease_error(error: sqlx::Error) -> LeaseError {
    let error = store_error(error);
    if error.is_retryable() {
        LeaseError::Transient(error.to_string())
    } else {
        LeaseError::Permanent(error.to_string())
    }
}

fn millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

fn time_from_micros(micros: i64) -> Time {
    Time::from_unix_nanos(u64::try_from(micros).unwrap_or(0).saturating_mul(1_000))
}

impl PgLeaseStore {
    /// Leases in `store`'s schema (run [`PostgresStore::migrate`](crate::PostgresStore::migrate)
    /// first).
    pub fn new(store: &PostgresStore) -> Self {
        let l = Tables::of(store).leases;
        let expires = "(extract(epoch from expires_at) * 1000000)::int8 AS expires_us";
        PgLeaseStore {
            pool: store.pool().clone(),
            acquire: format!(
                "INSERT INTO {l} AS l (name, holder, token, expires_at) \
                 VALUES ($1, $2, 1, clock_timestamp() + $3 * interval '1 millisecond') \
                 ON CONFLICT (name) DO UPDATE SET \
                   holder = EXCLUDED.holder, \
                   token = CASE WHEN l.holder = EXCLUDED.holder THEN l.token ELSE l.token + 1 END, \
                   expires_at = EXCLUDED.expires_at \
                 WHERE l.holder IS NULL OR l.holder = EXCLUDED.holder OR l.expires_at <= clock_timestamp() \
                 RETURNING token, {expires}"
            ),
            renew: format!(
                "UPDATE {l} SET expires_at = clock_timestamp() + $4 * interval '1 millisecond' \
                 WHERE name = $1 AND holder = $2 AND token = $3 RETURNING {expires}"
            ),
            release: format!("UPDATE {l} SET holder = NULL, expires_at = '-infinity' WHERE name = $1 AND token = $2"),
            list: format!(
                "SELECT name, holder, token, \
                   CASE WHEN isfinite(expires_at) THEN (extract(epoch FROM expires_at) * 1000000)::int8 END, \
                   CASE WHEN holder IS NOT NULL AND expires_at > clock_timestamp() \
                     THEN (extract(epoch FROM expires_at - clock_timestamp()) * 1000000)::int8 END \
                 FROM {l} ORDER BY name"
            ),
        }
    }

    /// Every lease of the schema, ordered by name, with its holder, token
    /// and expiry on the database's clock. For operators and tools (which
    /// instance runs a subscription); runners never need it.
    ///
    /// ```no_run
    /// # async fn demo(store: eventcore_postgres::PostgresStore) -> Result<(), eventcore_store::LeaseError> {
    /// use eventcore_postgres::PgLeaseStore;
    /// for lease in PgLeaseStore::new(&store).list().await? {
    ///     match (&lease.holder, lease.remaining) {
    ///         (Some(holder), Some(left)) => println!("{}: {holder} for {left:?}", lease.name),
    ///         _ => println!("{}: free", lease.name),
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list(&self) -> Result<Vec<LeaseState>, LeaseError> {
        // name, holder, token, expires_at and remaining (microseconds)
        type Row = (String, Option<String>, i64, Option<i64>, Option<i64>);
        let rows: Vec<Row> = sqlx::query_as(&self.list)
            .fetch_all(&self.pool)
            .await
            .map_err(lease_error)?;
        Ok(rows
            .into_iter()
            .map(|(name, holder, token, expires, remaining)| LeaseState {
                name,
                holder,
                token: FencingToken::new(u64::try_from(token).unwrap_or(0)),
                expires_at: expires.map(time_from_micros),
                remaining: remaining.map(|us| Duration::from_micros(u64::try_from(us).unwrap_or(0))),
            })
            .collect())
    }
}

impl LeaseStore for PgLeaseStore {
    async fn try_acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        _now: Time,
    ) -> Result<Option<Lease>, LeaseError> {
        observe(&self.pool, Op::LeaseAcquire, Fields::named(name), async {
            let row = sqlx::query(&self.acquire)
                .bind(name)
                .bind(holder)
                .bind(millis(ttl))
                .fetch_optional(&self.pool)
                .await
                .map_err(lease_error)?;
            let Some(row) = row else { return Ok(None) };
            let token: i64 = row.try_get("token").map_err(lease_error)?;
            let expires: i64 = row.try_get("expires_us").map_err(lease_error)?;
            Ok(Some(Lease {
                name: name.to_owned(),
                holder: holder.to_owned(),
                token: FencingToken::new(u64::try_from(token).unwrap_or(0)),
                expires_at: time_from_micros(expires),
            }))
        })
        .await
    }

    async fn renew(&self, lease: &Lease, ttl: Duration, _now: Time) -> Result<Lease, LeaseError> {
        observe(&self.pool, Op::LeaseRenew, Fields::named(&lease.name), async {
            let expires: Option<i64> = sqlx::query_scalar(&self.renew)
                .bind(&lease.name)
                .bind(&lease.holder)
                .bind(i64::try_from(lease.token.get()).unwrap_or(i64::MAX))
                .bind(millis(ttl))
                .fetch_optional(&self.pool)
                .await
                .map_err(lease_error)?;
            match expires {
                Some(expires) => Ok(Lease {
                    expires_at: time_from_micros(expires),
                    ..lease.clone()
                }),
                None => Err(LeaseError::Lost {
                    name: lease.name.clone(),
                    holder: lease.holder.clone(),
                }),
            }
        })
        .await
    }

    async fn release(&self, lease: &Lease) -> Result<(), LeaseError> {
        observe(&self.pool, Op::LeaseRelease, Fields::named(&lease.name), async {
            sqlx::query(&self.release)
                .bind(&lease.name)
                .bind(i64::try_from(lease.token.get()).unwrap_or(i64::MAX))
                .execute(&self.pool)
                .await
                .map_err(lease_error)?;
            Ok(())
        })
        .await
    }
}
