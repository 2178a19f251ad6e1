//! Least privilege: the grants of an application role that may only read
//! and append events (plus what snapshots and subscriptions need), on a
//! schema migrated by its owner. The SQL is `sql/least_privilege.sql`, a
//! psql script with the variables `schema` and `app_role`; `docs/postgres.md`
//! ("Least privilege") quotes it verbatim and a test checks that it does.

use crate::error::{map_error, Phase};
use crate::options::{validate_role, validate_schema};
use crate::{PostgresStore, SetupError};
use eventcore::Operation;

/// The grants of a least-privilege application role, as a psql script with
/// two variables: `schema` (the store's schema) and `app_role` (the role the
/// application connects as). Run it as the schema's owner after every
/// migration: `psql -v schema=eventcore -v app_role=eventcore_app -f
/// least_privilege.sql`, or render it with [`app_role_grants`], or let
/// [`PostgresStore::grant_app_role`] run it.
///
/// ```
/// let sql = eventcore_postgres::APP_ROLE_GRANTS_SQL;
/// assert!(sql.contains(r#"GRANT SELECT, INSERT ON :"schema".events TO :"app_role";"#));
/// assert!(!sql.contains("TRUNCATE ON"));
/// ```
pub const APP_ROLE_GRANTS_SQL: &str = include_str!("../sql/least_privilege.sql");

/// [`APP_ROLE_GRANTS_SQL`] with its variables filled in, as psql would: both
/// names are checked first (the rules of schema names: lower-case ASCII
/// letters, digits and underscores, not starting with a digit or `pg_`, at
/// most 63 bytes) and then written as quoted identifiers, so no name can
/// change the statements.
///
/// ```
/// use eventcore_postgres::{app_role_grants, SetupError};
/// let sql = app_role_grants("billing", "billing_app")?;
/// assert!(sql.contains(r#"GRANT SELECT, INSERT ON "billing".events TO "billing_app";"#));
/// assert!(matches!(
///     app_role_grants("billing", "app\"; DROP TABLE events; --"),
///     Err(SetupError::InvalidRole { .. })
/// ));
/// assert!(matches!(app_role_grants("Billing", "billing_app"), Err(SetupError::InvalidSchema { .. })));
/// # Ok::<(), SetupError>(())
/// ```
pub fn app_role_grants(schema: &str, app_role: &str) -> Result<String, SetupError> {
    validate_schema(schema)?;
    validate_role(app_role)?;
    Ok(APP_ROLE_GRANTS_SQL
        .replace(":\"schema\"", &format!("\"{schema}\""))
        .replace(":\"app_role\"", &format!("\"{app_role}\"")))
}

impl PostgresStore {
    /// Grants `app_role` exactly what an application needs on this store's
    /// schema ([`APP_ROLE_GRANTS_SQL`]), in one transaction. Run it as the
    /// schema's owner, after [`PostgresStore::migrate`] and
    /// [`crate::migrate_subscriptions`], and again after every upgrade that
    /// migrates. The role itself (and its `LOGIN`) is the administrator's to
    /// create; read-model tables of projections need grants of their own.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use eventcore_postgres::{migrate_subscriptions, MigrationMode, PostgresOptions, PostgresStore};
    /// // As the owner: migrate, then grant.
    /// let owner = PostgresStore::connect_with(
    ///     PostgresOptions::new("postgres://eventcore_owner@127.0.0.1/app").schema("eventcore"),
    /// )
    /// .await?;
    /// owner.migrate().await?;
    /// migrate_subscriptions(&owner).await?;
    /// owner.grant_app_role("eventcore_app").await?;
    /// // As the application: verify, never migrate.
    /// let app = PostgresStore::connect_with(
    ///     PostgresOptions::new("postgres://eventcore_app@127.0.0.1/app")
    ///         .schema("eventcore")
    ///         .migrations(MigrationMode::Verify),
    /// )
    /// .await?;
    /// app.migrate().await?;
    /// # Ok(()) }
    /// ```
    pub async fn grant_app_role(&self, app_role: &str) -> Result<(), SetupError> {
        let sql = app_role_grants(&self.options.schema, app_role)?;
        let failed = |e: sqlx::Error| map_error(Operation::Other, Phase::Executing, e, None);
        self.bounded_maintenance(Operation::Other, async {
            let mut tx = self.pool.begin().await.map_err(failed)?;
            sqlx::query(&self.set_local_maintenance_timeout())
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
            sqlx::raw_sql(&sql).execute(&mut *tx).await.map_err(failed)?;
            tx.commit().await.map_err(failed)
        })
        .await
        .map_err(|source| SetupError::Prepare {
            schema: self.options.schema.clone(),
            source,
        })
    }
}
