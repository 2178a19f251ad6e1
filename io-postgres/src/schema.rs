//! The schema: the migrations embedded in the crate, applied with sqlx's
//! migrator under an advisory lock (or, for a role that may not run DDL,
//! verified), and dropping the schema.

use crate::error::{map_error, Phase};
use crate::{MigrationMode, PostgresStore, SetupError};
use eventcore::{Operation, StoreError};
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::postgres::PgConnection;
use sqlx::Connection;
use std::borrow::Cow;

/// The embedded migrations, in order.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "event store", include_str!("../migrations/0001_event_store.sql")),
    (2, "append batch", include_str!("../migrations/0002_append_batch.sql")),
    (3, "snapshots", include_str!("../migrations/0003_snapshots.sql")),
    (4, "subscriptions", include_str!("../migrations/0004_subscriptions.sql")),
    (
        5,
        "binary payloads",
        include_str!("../migrations/0005_binary_payloads.sql"),
    ),
    (
        6,
        "positions rise along every stream",
        include_str!("../migrations/0006_positions_rise.sql"),
    ),
    (
        7,
        "dead letter replay requests",
        include_str!("../migrations/0007_dead_letter_replay.sql"),
    ),
    (
        8,
        "stream tombstones",
        include_str!("../migrations/0008_stream_tombstones.sql"),
    ),
    (9, "retention", include_str!("../migrations/0009_retention.sql")),
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
    /// holding a session advisory lock keyed by the schema name. A schema
    /// that already exists (e.g. created by an administrator with
    /// `CREATE SCHEMA .. AUTHORIZATION owner`) is not created again, so the
    /// owner needs no `CREATE` privilege on the database.
    ///
    /// With [`MigrationMode::Verify`] (`PostgresOptions::migrations`) it runs
    /// no DDL and only checks, as [`PostgresStore::verify_migrations`].
    ///
    /// ```no_run
    /// # async fn demo(store: eventcore_postgres::PostgresStore) -> Result<(), eventcore_postgres::SetupError> {
    /// store.migrate().await?;
    /// store.migrate().await?; // already applied: nothing to do
    /// # Ok(()) }
    /// ```
    pub async fn migrate(&self) -> Result<(), SetupError> {
        if self.options.migrations == MigrationMode::Verify {
            return self.verify_migrations().await;
        }
        let schema = self.options.schema.clone();
        let prepare = |e: sqlx::Error| SetupError::Prepare {
            schema: schema.clone(),
            source: map_error(Operation::Other, Phase::Executing, e, None),
        };
        let mut conn = crate::store::open_connection(&self.connect, self.options.connect_timeout).await?;
        // This session's statements (waiting for another process's
        // migration included) run under the maintenance timeout, not the
        // store's short statement timeout: a migration may rewrite a table.
        sqlx::query(&format!(
            "SET statement_timeout = {}",
            self.options.maintenance_timeout.as_millis()
        ))
        .execute(&mut conn)
        .await
        .map_err(prepare)?;
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
        // `CREATE SCHEMA IF NOT EXISTS` checks the database's CREATE
        // privilege even when the schema exists: ask first.
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)")
                .bind(schema)
                .fetch_one(&mut *conn)
                .await
                .map_err(prepare)?;
        if !exists {
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                .execute(&mut *conn)
                .await
                .map_err(prepare)?;
        }
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

    /// Checks, without any DDL, that the store's schema holds every embedded
    /// migration, applied successfully and with the same SQL, and none this
    /// build does not know (a newer release migrated it). What
    /// [`PostgresStore::migrate`] does under [`MigrationMode::Verify`]; needs
    /// only `USAGE` on the schema and `SELECT` on its `_sqlx_migrations`.
    ///
    /// Errors: [`SetupError::NotMigrated`] saying what is missing or
    /// different; [`SetupError::Prepare`] when the check itself fails
    /// (connection, permission denied, timeout).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), eventcore_postgres::SetupError> {
    /// use eventcore_postgres::{MigrationMode, PostgresOptions, PostgresStore};
    /// let app = PostgresStore::connect_with(
    ///     PostgresOptions::new("postgres://eventcore_app@127.0.0.1/app").migrations(MigrationMode::Verify),
    /// )
    /// .await?;
    /// app.verify_migrations().await?;
    /// # Ok(()) }
    /// ```
    pub async fn verify_migrations(&self) -> Result<(), SetupError> {
        let schema = &self.options.schema;
        let prepare = |source: StoreError| SetupError::Prepare {
            schema: schema.clone(),
            source,
        };
        let not_migrated = |reason: String| SetupError::NotMigrated {
            schema: schema.clone(),
            reason,
        };
        let migrator = Migrator::new(Embedded).await.map_err(|source| SetupError::Migrate {
            schema: schema.clone(),
            source,
        })?;
        let sql = format!("SELECT version, success, checksum FROM \"{schema}\"._sqlx_migrations ORDER BY version");
        let answer = self
            .bounded(Operation::Other, async {
                Ok(sqlx::query_as::<_, (i64, bool, Vec<u8>)>(&sql)
                    .fetch_all(&self.pool)
                    .await)
            })
            .await
            .map_err(prepare)?;
        let rows = match answer {
            Ok(rows) => rows,
            Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("42P01" | "3F000")) => {
                return Err(not_migrated(format!(
                    "{e}; run migrate() as the schema's owner (MigrationMode::Apply) first"
                )));
            }
            Err(e) => return Err(prepare(map_error(Operation::Other, Phase::Executing, e, None))),
        };
        for (version, success, checksum) in &rows {
            if !success {
                return Err(not_migrated(format!(
                    "migration {version} is recorded as failed (partly applied); it must be repaired by hand"
                )));
            }
            match migrator.iter().find(|m| m.version == *version) {
                None => {
                    return Err(not_migrated(format!(
                        "migration {version} is applied but unknown to this build (a newer release migrated the schema)"
                    )))
                }
                Some(m) if m.checksum.as_ref() != checksum.as_slice() => {
                    return Err(not_migrated(format!(
                        "migration {version} ({}) was applied with different SQL",
                        m.description
                    )))
                }
                Some(_) => {}
            }
        }
        let missing: Vec<String> = migrator
            .iter()
            .filter(|m| !rows.iter().any(|(version, _, _)| *version == m.version))
            .map(|m| format!("{} ({})", m.version, m.description))
            .collect();
        if !missing.is_empty() {
            return Err(not_migrated(format!(
                "migrations not applied: {}; run migrate() as the schema's owner (MigrationMode::Apply)",
                missing.join(", ")
            )));
        }
        Ok(())
    }

    /// Drops the store's schema and everything in it. For tests and demos.
    ///
    /// ```no_run
    /// # async fn demo(store: eventcore_postgres::PostgresStore) -> Result<(), eventcore::StoreError> {
    /// store.drop_schema().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// Runs under the maintenance timeout (`PostgresOptions::maintenance_timeout`).
    pub async fn drop_schema(&self) -> Result<(), StoreError> {
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.options.schema);
        let failed = |e| map_error(Operation::Other, Phase::Executing, e, None);
        self.bounded_maintenance(Operation::Other, async {
            let mut tx = self.pool.begin().await.map_err(failed)?;
            sqlx::query(&self.set_local_maintenance_timeout())
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
            sqlx::query(&sql).execute(&mut *tx).await.map_err(failed)?;
            tx.commit().await.map_err(failed)
        })
        .await
    }
}
