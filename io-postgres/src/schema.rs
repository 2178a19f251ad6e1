//! The schema: the migrations embedded in the crate, applied with sqlx's
//! migrator under an advisory lock, and dropping the schema.

use crate::error::{map_error, Phase};
use crate::{PostgresStore, SetupError};
use eventcore::{Operation, StoreError};
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::postgres::PgConnection;
use sqlx::{ConnectOptions, Connection};
use std::borrow::Cow;

/// The embedded migrations, in order.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "event store", include_str!("../migrations/0001_event_store.sql")),
    (2, "append batch", include_str!("../migrations/0002_append_batch.sql")),
    (3, "snapshots", include_str!("../migrations/0003_snapshots.sql")),
    (4, "subscriptions", include_str!("../migrations/0004_subscriptions.sql")),
];

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

impl PostgresStore {
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
}
