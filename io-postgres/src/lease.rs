//! Leases on PostgreSQL: `subscription_leases`, on the database clock.

use crate::subscription::{store_error, Tables};
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
        }
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
    }

    async fn renew(&self, lease: &Lease, ttl: Duration, _now: Time) -> Result<Lease, LeaseError> {
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
    }

    async fn release(&self, lease: &Lease) -> Result<(), LeaseError> {
        sqlx::query(&self.release)
            .bind(&lease.name)
            .bind(i64::try_from(lease.token.get()).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await
            .map_err(lease_error)?;
        Ok(())
    }
}
