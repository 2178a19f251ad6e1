//! The balances read model: one row per account, kept by an exactly-once
//! projection (`PgProjectionStore`: each batch's upserts commit in one
//! transaction with the checkpoint and the lease's fence check), and the
//! query `GET /accounts/{id}` answers from.

use eventcore::{EventFilter, GlobalPosition, RecordedEvent};
use eventcore_postgres::{PgProjectionStore, PgTransaction, PostgresStore};
use eventcore_tokio::{Projection, ProjectionError};

use crate::domain::{AccountEvent, PREFIX};

/// The projection's name: its checkpoint and its lease.
pub const PROJECTION: &str = "bank-web-balances";

/// The balances projection, writing to `"<schema>".balances`.
///
/// ```
/// use eventcore_web_example::projection::Balances;
/// let balances = Balances::new("bank_web");
/// assert_eq!(balances.table(), "\"bank_web\".balances");
/// ```
#[derive(Clone, Debug)]
pub struct Balances {
    table: String,
}

impl Balances {
    /// The projection writing to `schema`'s `balances` table.
    pub fn new(schema: &str) -> Balances {
        Balances {
            table: format!("\"{schema}\".balances"),
        }
    }

    /// The qualified table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table if it does not exist.
    ///
    /// # Errors
    ///
    /// When the statement fails.
    pub async fn create_table(&self, store: &PostgresStore) -> Result<(), sqlx::Error> {
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {} (account text PRIMARY KEY, balance bigint NOT NULL)",
            self.table
        ))
        .execute(store.pool())
        .await?;
        Ok(())
    }

    /// The balance of `stream` in the read model and the position the read
    /// model is at (the projection's checkpoint), read in one statement and
    /// so from one snapshot. `None` for the balance when the account is not
    /// in the read model (not opened, or not projected yet).
    ///
    /// # Errors
    ///
    /// When the query fails.
    pub async fn balance(
        &self,
        store: &PostgresStore,
        stream: &str,
    ) -> Result<(Option<u64>, GlobalPosition), sqlx::Error> {
        let checkpoints = format!("\"{}\".subscription_checkpoints", store.options().schema);
        let (balance, position): (Option<i64>, Option<i64>) = sqlx::query_as(&format!(
            "SELECT (SELECT balance FROM {} WHERE account = $1), \
                    (SELECT position FROM {checkpoints} WHERE name = $2)",
            self.table
        ))
        .bind(stream)
        .bind(PROJECTION)
        .fetch_one(store.pool())
        .await?;
        let position = GlobalPosition::new(position.and_then(|p| u64::try_from(p).ok()).unwrap_or(0));
        Ok((balance.and_then(|b| u64::try_from(b).ok()), position))
    }
}

impl Projection for Balances {
    type Event = AccountEvent;
    type Store = PgProjectionStore;

    fn filter(&self) -> EventFilter {
        EventFilter::decodable_by::<AccountEvent>().with_stream_prefix(PREFIX)
    }

    async fn apply(
        &mut self,
        tx: &mut PgTransaction,
        event: AccountEvent,
        recorded: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        // Amounts are at most 2^53 (`MAX_AMOUNT`): they fit a bigint.
        let signed = |v: u64| i64::try_from(v).map_err(|e| ProjectionError::Rejected(e.to_string()));
        let delta = match event {
            AccountEvent::Opened { initial } => signed(initial)?,
            AccountEvent::Deposited { amount } => signed(amount)?,
            AccountEvent::Withdrawn { amount } => -signed(amount)?,
        };
        sqlx::query(&format!(
            "INSERT INTO {} AS b (account, balance) VALUES ($1, $2) \
             ON CONFLICT (account) DO UPDATE SET balance = b.balance + EXCLUDED.balance",
            self.table
        ))
        .bind(recorded.stream_id.as_str())
        .bind(delta)
        .execute(&mut **tx)
        .await
        .map_err(|e| ProjectionError::Transient(e.to_string()))?;
        Ok(())
    }
}
