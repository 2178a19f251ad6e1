//! Read-only questions an operator asks of a store: how far the log goes,
//! which schema version is applied, how many events follow a position.
//! Used by the `eventcore` operations CLI (`cli/`); none of them is on the
//! path of a command or a subscription.

use crate::error::{map_error, Phase};
use crate::sql::INDEX_BITS;
use crate::store::to_u64;
use crate::PostgresStore;
use eventcore::{GlobalPosition, Operation, StoreError};

/// Where the global log ends, as seen by [`PostgresStore::head`].
///
/// ```
/// use eventcore::GlobalPosition;
/// use eventcore_postgres::LogHead;
/// let empty = LogHead { newest: None, settled: GlobalPosition::START };
/// assert!(empty.newest.is_none());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogHead {
    /// The position of the newest committed event; `None` for an empty log.
    pub newest: Option<GlobalPosition>,
    /// The position through which the log is final: no event at or below
    /// it can still appear (a transaction still running may yet commit
    /// events between `settled` and `newest`). Never above `newest`; a
    /// reader that wants only what is written from now on, without missing
    /// any of it, starts `read_all` after this.
    pub settled: GlobalPosition,
}

impl PostgresStore {
    /// Where the global log ends: the newest committed position, and the
    /// position through which the log is final (PostgreSQL's xid horizon,
    /// see "Gap-safe global order" in ARCHITECTURE.md). One statement, an
    /// index lookup; bounded by the operation timeout.
    ///
    /// ```no_run
    /// # async fn demo(store: eventcore_postgres::PostgresStore) -> Result<(), eventcore::StoreError> {
    /// let head = store.head().await?;
    /// assert!(head.newest.is_none_or(|newest| head.settled <= newest));
    /// # Ok(()) }
    /// ```
    pub async fn head(&self) -> Result<LogHead, StoreError> {
        let sql = format!(
            "SELECT (SELECT max(position) FROM \"{}\".events), \
             pg_snapshot_xmin(pg_current_snapshot())::text::int8 << {INDEX_BITS}",
            self.options.schema
        );
        let (newest, horizon): (Option<i64>, i64) = self
            .bounded(Operation::Other, async {
                sqlx::query_as(&sql)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| map_error(Operation::Other, Phase::Executing, e, None))
            })
            .await?;
        let newest = newest.map(|p| GlobalPosition::new(to_u64(p)));
        let settled =
            GlobalPosition::new(to_u64(horizon.saturating_sub(1))).min(newest.unwrap_or(GlobalPosition::START));
        Ok(LogHead { newest, settled })
    }

    /// The highest migration applied successfully to the store's schema
    /// (the number of this release's last migration once all are), or `None` when the
    /// schema was never migrated. Whether that is *this build's* set, with
    /// the same SQL, is [`PostgresStore::verify_migrations`]'s question.
    ///
    /// ```no_run
    /// # async fn demo(store: eventcore_postgres::PostgresStore) -> Result<(), eventcore::StoreError> {
    /// match store.schema_version().await? {
    ///     Some(version) => println!("schema version {version}"),
    ///     None => println!("not migrated"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn schema_version(&self) -> Result<Option<u32>, StoreError> {
        let relation = format!("\"{}\"._sqlx_migrations", self.options.schema);
        let sql = format!("SELECT max(version) FROM {relation} WHERE success");
        self.bounded(Operation::Other, async {
            let failed = |e| map_error(Operation::Other, Phase::Executing, e, None);
            let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                .bind(&relation)
                .fetch_one(&self.pool)
                .await
                .map_err(failed)?;
            if !exists {
                return Ok(None);
            }
            let version: Option<i64> = sqlx::query_scalar(&sql).fetch_one(&self.pool).await.map_err(failed)?;
            Ok(version.and_then(|v| u32::try_from(v).ok()))
        })
        .await
    }

    /// How many committed events have a position above `after`, counting
    /// at most `cap` of them (so that asking about a checkpoint far behind
    /// costs at most `cap` index entries): a subscription's lag in events,
    /// whatever its filter.
    ///
    /// ```no_run
    /// # async fn demo(store: eventcore_postgres::PostgresStore) -> Result<(), eventcore::StoreError> {
    /// use eventcore::GlobalPosition;
    /// let behind = store.count_events_after(GlobalPosition::new(42), 10_000).await?;
    /// println!("{behind} events after position 42 (10000 means at least)");
    /// # Ok(()) }
    /// ```
    pub async fn count_events_after(&self, after: GlobalPosition, cap: u64) -> Result<u64, StoreError> {
        let sql = format!(
            "SELECT count(*) FROM (SELECT 1 FROM \"{}\".events WHERE position > $1 ORDER BY position LIMIT $2) e",
            self.options.schema
        );
        let count: i64 = self
            .bounded(Operation::Other, async {
                sqlx::query_scalar(&sql)
                    .bind(i64::try_from(after.get()).unwrap_or(i64::MAX))
                    .bind(i64::try_from(cap).unwrap_or(i64::MAX))
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| map_error(Operation::Other, Phase::Executing, e, None))
            })
            .await?;
        Ok(to_u64(count))
    }
}
