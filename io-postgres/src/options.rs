//! Connection options and setup errors.

use eventcore::{AppendLimits, Codec};
use std::time::Duration;

/// The longest schema name PostgreSQL accepts, in bytes.
pub const MAX_SCHEMA_NAME_BYTES: usize = 63;

/// Most events one transaction can append: positions keep the index of an
/// event within its transaction in their low 20 bits.
pub const MAX_EVENTS_PER_TRANSACTION: usize = 1 << 20;

/// How to reach the database and how long to wait for it.
///
/// ```
/// use eventcore_postgres::PostgresOptions;
/// use std::time::Duration;
/// let options = PostgresOptions::new("postgres://postgres@127.0.0.1:5432/postgres")
///     .schema("billing_events")
///     .max_connections(16)
///     .statement_timeout(Duration::from_secs(5));
/// assert_eq!(options.schema, "billing_events");
/// assert!(options.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresOptions {
    /// A `postgres://` connection URL.
    pub url: String,
    /// The schema holding the store's tables and functions (created by
    /// [`crate::PostgresStore::migrate`]). Lower-case letters, digits and
    /// underscores, not starting with a digit, at most 63 bytes.
    pub schema: String,
    /// Most connections in the pool.
    pub max_connections: u32,
    /// How long to wait for a connection (opening one or taking one from a
    /// busy pool); past it an operation fails with a transient error.
    pub connect_timeout: Duration,
    /// The server cancels any statement running longer than this (set per
    /// connection as `statement_timeout`); a cancelled statement changed
    /// nothing and is reported as a transient error.
    pub statement_timeout: Duration,
    /// Client-side bound on a whole operation (connecting, waiting and the
    /// statement itself). Past it the operation's future is dropped and the
    /// caller gets [`eventcore::StoreError::Timeout`].
    pub operation_timeout: Duration,
    /// How long `read_all` may wait for in-flight transactions that hold back
    /// events already committed (see ARCHITECTURE.md, "PostgreSQL global
    /// order"). It only waits when such events exist and its page is not
    /// full, and only until the older transactions end; the answer is
    /// correct either way. Zero: never wait, return what is final now.
    pub read_all_settle: Duration,
    /// Size limits enforced on every append before it reaches the database.
    pub limits: AppendLimits,
    /// What [`crate::PostgresStore::migrate`] (and
    /// [`crate::migrate_subscriptions`]) do: apply the migrations (the
    /// default), or only check that the schema was migrated, for a
    /// least-privilege role that may not run DDL.
    pub migrations: MigrationMode,
    /// The codec appends store payloads in: [`Codec::Json`] (the default,
    /// the `jsonb` column `payload`) or, with the `binary-codec` feature,
    /// [`Codec::MessagePack`] (the `bytea` column `payload_bin`, migration
    /// 5). Every row says which column holds its payload, so events stored
    /// under another codec read back as they are. Executors over the store
    /// encode in it; a JSON store converts a MessagePack payload to JSON, a
    /// MessagePack store keeps a JSON payload as JSON
    /// (`AppendRequest::for_store`).
    pub codec: Codec,
}

/// What [`crate::PostgresStore::migrate`] and [`crate::migrate_subscriptions`]
/// do with the store's schema.
///
/// Connecting never migrates: only `migrate` does. An application that calls
/// `migrate` at startup and connects as a role without DDL privileges (see
/// "Least privilege" in `docs/postgres.md`) sets [`MigrationMode::Verify`]:
/// the owner migrates, the application checks.
///
/// ```
/// use eventcore_postgres::{MigrationMode, PostgresOptions};
/// let owner = PostgresOptions::new("postgres://eventcore_owner@db/app");
/// assert_eq!(owner.migrations, MigrationMode::Apply);
/// let app = PostgresOptions::new("postgres://eventcore_app@db/app").migrations(MigrationMode::Verify);
/// assert_eq!(app.migrations, MigrationMode::Verify);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MigrationMode {
    /// Create the schema if missing and apply every embedded migration not
    /// applied yet (needs the privileges of the schema's owner).
    #[default]
    Apply,
    /// Run no DDL: check that every embedded migration is applied, with the
    /// same SQL, and none unknown to this build (and, in
    /// `migrate_subscriptions`, that the notify trigger is installed).
    /// Anything else is [`SetupError::NotMigrated`]. Needs `USAGE` on the
    /// schema and `SELECT` on its `_sqlx_migrations` table.
    Verify,
}

impl PostgresOptions {
    /// Defaults: schema `eventcore`, 10 connections, 5 s to connect, 30 s
    /// per statement, 40 s per operation, 1 s read settle, default limits.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresOptions {
            url: url.into(),
            schema: "eventcore".to_owned(),
            max_connections: 10,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            operation_timeout: Duration::from_secs(40),
            read_all_settle: Duration::from_secs(1),
            limits: AppendLimits::default(),
            migrations: MigrationMode::Apply,
            codec: Codec::Json,
        }
    }

    /// Sets the schema.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Sets the pool size.
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max;
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the server-side statement timeout.
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// Sets the client-side bound on each operation.
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Sets how long `read_all` may wait for held-back events.
    pub fn read_all_settle(mut self, settle: Duration) -> Self {
        self.read_all_settle = settle;
        self
    }

    /// Sets the append limits.
    pub fn limits(mut self, limits: AppendLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets what `migrate` does: [`MigrationMode::Apply`] (the default) or
    /// [`MigrationMode::Verify`] for a role that may not run DDL.
    ///
    /// ```
    /// use eventcore_postgres::{MigrationMode, PostgresOptions};
    /// let options = PostgresOptions::new("postgres://eventcore_app@127.0.0.1/app")
    ///     .schema("billing")
    ///     .migrations(MigrationMode::Verify);
    /// assert_eq!(options.migrations, MigrationMode::Verify);
    /// ```
    pub fn migrations(mut self, mode: MigrationMode) -> Self {
        self.migrations = mode;
        self
    }

    /// Sets the codec appends store payloads in (see
    /// [`PostgresOptions::codec`](PostgresOptions#structfield.codec)). A codec
    /// other than JSON needs this crate's `binary-codec` feature, else
    /// [`PostgresOptions::validate`] refuses it.
    ///
    /// ```
    /// use eventcore::Codec;
    /// use eventcore_postgres::PostgresOptions;
    /// let codec = *Codec::ALL.last().unwrap_or(&Codec::Json);
    /// let options = PostgresOptions::new("postgres://localhost/db").codec(codec);
    /// assert_eq!(options.codec, codec);
    /// ```
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// Checks everything that can be checked without a database.
    ///
    /// ```
    /// use eventcore_postgres::{PostgresOptions, SetupError};
    /// let bad = PostgresOptions::new("postgres://localhost/db").schema("Robert'); DROP TABLE students;--");
    /// assert!(matches!(bad.validate(), Err(SetupError::InvalidSchema { .. })));
    /// ```
    pub fn validate(&self) -> Result<(), SetupError> {
        validate_schema(&self.schema)?;
        if self.max_connections == 0 {
            return Err(SetupError::InvalidOption {
                option: "max_connections",
                reason: "must be at least 1".to_owned(),
            });
        }
        if self.limits.max_events > MAX_EVENTS_PER_TRANSACTION {
            return Err(SetupError::InvalidOption {
                option: "limits.max_events",
                reason: format!(
                    "{} exceeds {MAX_EVENTS_PER_TRANSACTION}, the most events one transaction can hold",
                    self.limits.max_events
                ),
            });
        }
        if self.codec != Codec::Json && !cfg!(feature = "binary-codec") {
            return Err(SetupError::InvalidOption {
                option: "codec",
                reason: format!(
                    "{} needs eventcore-postgres built with its `binary-codec` feature",
                    self.codec
                ),
            });
        }
        for (option, value) in [
            ("connect_timeout", self.connect_timeout),
            ("statement_timeout", self.statement_timeout),
            ("operation_timeout", self.operation_timeout),
        ] {
            if value.is_zero() {
                return Err(SetupError::InvalidOption {
                    option,
                    reason: "must be longer than zero".to_owned(),
                });
            }
        }
        Ok(())
    }
}

pub(crate) fn validate_schema(schema: &str) -> Result<(), SetupError> {
    identifier_rule(schema).map_err(|reason| SetupError::InvalidSchema {
        name: schema.to_owned(),
        reason: reason.to_owned(),
    })
}

/// Checks a role name with the rules of schema names (so that it can be
/// written into SQL as a quoted identifier).
pub(crate) fn validate_role(role: &str) -> Result<(), SetupError> {
    identifier_rule(role).map_err(|reason| SetupError::InvalidRole {
        name: role.to_owned(),
        reason: reason.to_owned(),
    })
}

/// The one rule for names the store writes into SQL text: the broken rule,
/// if any.
fn identifier_rule(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > MAX_SCHEMA_NAME_BYTES {
        return Err("it is longer than 63 bytes");
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("it starts with a digit");
    }
    if name.starts_with("pg_") {
        return Err("names starting with pg_ are reserved by PostgreSQL");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err("only lower-case ASCII letters, digits and underscores are allowed");
    }
    Ok(())
}

/// Why a store could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The schema name is not one the store accepts.
    #[error("invalid schema name {name:?}: {reason}")]
    InvalidSchema {
        /// The rejected name.
        name: String,
        /// Which rule it broke.
        reason: String,
    },
    /// A role name given to
    /// [`PostgresStore::grant_app_role`](crate::PostgresStore::grant_app_role)
    /// or [`app_role_grants`](crate::app_role_grants) is not one the store
    /// writes into SQL (the rules of schema names).
    #[error("invalid role name {name:?}: {reason}")]
    InvalidRole {
        /// The rejected name.
        name: String,
        /// Which rule it broke.
        reason: String,
    },
    /// Another option is out of range.
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// The option.
        option: &'static str,
        /// Why.
        reason: String,
    },
    /// The connection URL could not be parsed.
    #[error("invalid connection URL: {0}")]
    InvalidUrl(#[source] sqlx::Error),
    /// The database could not be reached or refused the connection.
    #[error("cannot connect: {0}")]
    Connect(#[source] eventcore::StoreError),
    /// Applying the migrations failed.
    #[error("migration of schema {schema:?} failed: {source}")]
    Migrate {
        /// The schema being migrated.
        schema: String,
        /// What failed.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// [`MigrationMode::Verify`] found the schema not migrated to this
    /// build's version (missing, partly or differently migrated, or newer);
    /// the schema's owner must run `migrate` with [`MigrationMode::Apply`].
    #[error("schema {schema:?} is not migrated to this version of eventcore-postgres: {reason}")]
    NotMigrated {
        /// The schema checked.
        schema: String,
        /// What is missing or different.
        reason: String,
    },
    /// A statement around the migrations failed.
    #[error("preparing schema {schema:?} failed: {source}")]
    Prepare {
        /// The schema being prepared.
        schema: String,
        /// What failed.
        #[source]
        source: eventcore::StoreError,
    },
}
