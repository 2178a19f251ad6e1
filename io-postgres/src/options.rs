//! Connection options and setup errors.

use eventcore::{AppendLimits, Codec};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::ConnectOptions;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// The longest schema name PostgreSQL accepts, in bytes.
pub const MAX_SCHEMA_NAME_BYTES: usize = 63;

/// Most events one transaction can append: positions keep the index of an
/// event within its transaction in their low 20 bits.
pub const MAX_EVENTS_PER_TRANSACTION: usize = 1 << 20;

/// How to reach the database and how long to wait for it.
///
/// The timeouts are layered so that the innermost fires first (see
/// "Timeouts: which layer fires first" in `docs/operations.md`): the
/// server's `statement_timeout` (2 s) cancels a slow statement, which then
/// changed nothing and is reported as a transient error the executor
/// retries, before the store's `operation_timeout` (4.5 s) gives up on the
/// operation, and before the executor's own read and append timeouts
/// (5 s, `eventcore::ExecutionPolicy`) would report an append's outcome as
/// unknown. Raise them together, in that order, if your statements
/// legitimately run longer (e.g. reads of very long streams without a page
/// size). Migrations and other maintenance statements run under
/// `maintenance_timeout` instead.
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
    /// Connections the pool keeps open even when idle (opened in the
    /// background after connecting, and again after idle ones are closed).
    /// Zero (the default) opens them only as operations need them.
    pub min_connections: u32,
    /// How long to wait when opening a connection of the store's own:
    /// the probe of [`crate::PostgresStore::connect_with`] and the
    /// connection [`crate::PostgresStore::migrate`] runs on. Past it setup
    /// fails with [`SetupError::Connect`].
    pub connect_timeout: Duration,
    /// How long an operation waits for a connection from the pool (taking
    /// an idle one, or opening one when the pool is below
    /// `max_connections`); past it the operation fails with a transient
    /// error, having sent nothing. Default 2 s.
    pub acquire_timeout: Duration,
    /// Idle connections above `min_connections` are closed after this long
    /// unused; `None` keeps them open. Default 10 minutes.
    pub idle_timeout: Option<Duration>,
    /// Connections are closed (and reopened when needed) after this long
    /// open, so that server-side memory and a changed DNS answer or
    /// credential are picked up; `None` keeps them forever. Default 30
    /// minutes.
    pub max_lifetime: Option<Duration>,
    /// The server cancels any statement running longer than this (set per
    /// connection as `statement_timeout`); a cancelled statement changed
    /// nothing and is reported as a transient error, which the executor
    /// retries. Default 2 s: shorter than `operation_timeout`, so a slow
    /// statement is cancelled by the server (known not committed) before
    /// the client gives up on it (outcome unknown).
    pub statement_timeout: Duration,
    /// Client-side bound on a whole operation (taking a connection, waiting
    /// and the statement itself). Past it the operation's future is dropped
    /// and the caller gets [`eventcore::StoreError::Timeout`], which for an
    /// append means the outcome is unknown. Default 4.5 s: longer than
    /// `acquire_timeout` plus `statement_timeout`, and shorter than the
    /// executor's read and append timeouts (5 s).
    pub operation_timeout: Duration,
    /// The statement timeout of maintenance work: each statement of
    /// [`crate::PostgresStore::migrate`] (waiting for another process's
    /// migration included), `migrate_subscriptions`,
    /// [`crate::PostgresStore::grant_app_role`] and
    /// [`crate::PostgresStore::drop_schema`], which also use it as their
    /// client-side bound. A migration rewriting a large table needs far more
    /// than `statement_timeout`. Default 15 minutes; zero: no limit.
    pub maintenance_timeout: Duration,
    /// How the connection negotiates TLS; `None` (the default) takes the
    /// URL's `sslmode` parameter (else the `PGSSLMODE` environment
    /// variable, else [`SslMode::Prefer`]).
    pub ssl_mode: Option<SslMode>,
    /// The PEM file of the certificate authority the server's certificate
    /// must chain to under [`SslMode::VerifyCa`] and
    /// [`SslMode::VerifyFull`]; `None` takes the URL's `sslrootcert`
    /// parameter (else `PGSSLROOTCERT`), else the Mozilla root
    /// certificates built into the crate (webpki-roots).
    pub ssl_root_cert: Option<PathBuf>,
    /// How long `read_all` may wait for in-flight transactions that hold back
    /// events already committed (see ARCHITECTURE.md, "PostgreSQL global
    /// order"). It only waits when such events exist and its page is not
    /// full, and only until the older transactions end; the answer is
    /// correct either way. Zero: never wait, return what is final now. The
    /// wait is a statement, so it is capped at three quarters of
    /// `statement_timeout`.
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

/// How a connection negotiates TLS: libpq's `sslmode`, honoured the same
/// way whether it comes from the URL (`?sslmode=verify-full`) or from
/// [`PostgresOptions::ssl_mode`](PostgresOptions#structfield.ssl_mode).
///
/// TLS is rustls (on ring); without `sslrootcert` the server's certificate
/// is checked against the Mozilla root certificates built into the crate.
///
/// ```
/// use eventcore_postgres::SslMode;
/// let mode: SslMode = "verify-full".parse()?;
/// assert_eq!(mode, SslMode::VerifyFull);
/// assert_eq!(mode.to_string(), "verify-full");
/// assert!(mode.requires_tls() && mode.verifies_certificate());
/// assert!("on".parse::<SslMode>().is_err());
/// # Ok::<(), eventcore_postgres::SetupError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SslMode {
    /// Never TLS: a server that accepts only TLS (`hostssl` in
    /// `pg_hba.conf`) refuses the connection.
    Disable,
    /// TLS when the server offers it (without checking its certificate),
    /// plain otherwise. libpq's and sqlx's default.
    #[default]
    Prefer,
    /// TLS or no connection; the certificate is not checked (encrypted, but
    /// open to an active man in the middle).
    Require,
    /// TLS, and the server's certificate must chain to the root
    /// certificate; its host name is not checked.
    VerifyCa,
    /// TLS, the certificate must chain to the root certificate and name the
    /// host connected to. What a managed database on the open network wants.
    VerifyFull,
}

impl SslMode {
    /// Every mode, weakest first.
    pub const ALL: [SslMode; 5] = [
        SslMode::Disable,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    /// The `sslmode` value, as libpq spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether a connection without TLS is refused.
    pub fn requires_tls(self) -> bool {
        matches!(self, SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull)
    }

    /// Whether the server's certificate is checked against the root
    /// certificate.
    pub fn verifies_certificate(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = SetupError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SslMode::ALL
            .into_iter()
            .find(|mode| mode.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| SetupError::InvalidOption {
                option: "ssl_mode",
                reason: format!("{s:?} is not one of disable, prefer, require, verify-ca, verify-full"),
            })
    }
}

impl From<SslMode> for PgSslMode {
    fn from(mode: SslMode) -> Self {
        match mode {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require => PgSslMode::Require,
            SslMode::VerifyCa => PgSslMode::VerifyCa,
            SslMode::VerifyFull => PgSslMode::VerifyFull,
        }
    }
}

impl From<PgSslMode> for SslMode {
    /// sqlx's `allow` tries plain first and never upgrades: [`SslMode::Disable`].
    fn from(mode: PgSslMode) -> Self {
        match mode {
            PgSslMode::Disable | PgSslMode::Allow => SslMode::Disable,
            PgSslMode::Prefer => SslMode::Prefer,
            PgSslMode::Require => SslMode::Require,
            PgSslMode::VerifyCa => SslMode::VerifyCa,
            PgSslMode::VerifyFull => SslMode::VerifyFull,
        }
    }
}

impl PostgresOptions {
    /// Defaults: schema `eventcore`; a pool of at most 10 connections and
    /// at least none, 2 s to take one, idle ones closed after 10 minutes,
    /// every one after 30; 5 s to connect, 2 s per statement, 4.5 s per
    /// operation, 15 minutes per maintenance statement; `sslmode` from the
    /// URL; 1 s read settle; default limits.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresOptions {
            url: url.into(),
            schema: "eventcore".to_owned(),
            max_connections: 10,
            min_connections: 0,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(2),
            idle_timeout: Some(Duration::from_secs(10 * 60)),
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            statement_timeout: Duration::from_secs(2),
            operation_timeout: Duration::from_millis(4500),
            maintenance_timeout: Duration::from_secs(15 * 60),
            ssl_mode: None,
            ssl_root_cert: None,
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

    /// Sets how many connections the pool keeps open when idle.
    ///
    /// ```
    /// use eventcore_postgres::PostgresOptions;
    /// let options = PostgresOptions::new("postgres://localhost/db").min_connections(2);
    /// assert_eq!(options.pool_options().get_min_connections(), 2);
    /// ```
    pub fn min_connections(mut self, min: u32) -> Self {
        self.min_connections = min;
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets how long an operation waits for a connection from the pool.
    ///
    /// ```
    /// use eventcore_postgres::PostgresOptions;
    /// use std::time::Duration;
    /// let options = PostgresOptions::new("postgres://localhost/db").acquire_timeout(Duration::from_secs(1));
    /// assert_eq!(options.pool_options().get_acquire_timeout(), Duration::from_secs(1));
    /// ```
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Sets how long an idle connection stays open (`None`: for ever).
    ///
    /// ```
    /// use eventcore_postgres::PostgresOptions;
    /// use std::time::Duration;
    /// let options = PostgresOptions::new("postgres://localhost/db").idle_timeout(Some(Duration::from_secs(60)));
    /// assert_eq!(options.pool_options().get_idle_timeout(), Some(Duration::from_secs(60)));
    /// ```
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets how long a connection stays open at most (`None`: for ever).
    ///
    /// ```
    /// use eventcore_postgres::PostgresOptions;
    /// use std::time::Duration;
    /// let options = PostgresOptions::new("postgres://localhost/db").max_lifetime(None);
    /// assert_eq!(options.pool_options().get_max_lifetime(), None);
    /// ```
    pub fn max_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.max_lifetime = lifetime;
        self
    }

    /// Sets the statement timeout of migrations and other maintenance
    /// (see [`PostgresOptions::maintenance_timeout`](PostgresOptions#structfield.maintenance_timeout)).
    ///
    /// ```
    /// use eventcore_postgres::PostgresOptions;
    /// use std::time::Duration;
    /// let options = PostgresOptions::new("postgres://localhost/db").maintenance_timeout(Duration::from_secs(3600));
    /// assert_eq!(options.maintenance_timeout, Duration::from_secs(3600));
    /// ```
    pub fn maintenance_timeout(mut self, timeout: Duration) -> Self {
        self.maintenance_timeout = timeout;
        self
    }

    /// Sets how the connection negotiates TLS, overriding the URL's
    /// `sslmode`.
    ///
    /// ```
    /// use eventcore_postgres::{PostgresOptions, SslMode};
    /// let options = PostgresOptions::new("postgres://app@db.example.com/app?sslmode=disable")
    ///     .ssl_mode(SslMode::VerifyFull)
    ///     .ssl_root_cert("/etc/ssl/certs/db-ca.pem");
    /// let connect = options.connect_options()?;
    /// assert_eq!(SslMode::from(connect.get_ssl_mode()), SslMode::VerifyFull);
    /// # Ok::<(), eventcore_postgres::SetupError>(())
    /// ```
    pub fn ssl_mode(mut self, mode: SslMode) -> Self {
        self.ssl_mode = Some(mode);
        self
    }

    /// Sets the certificate authority (a PEM file) the server's certificate
    /// must chain to, overriding the URL's `sslrootcert`.
    pub fn ssl_root_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.ssl_root_cert = Some(path.into());
        self
    }

    /// The sqlx connect options of the store's connections: the URL with
    /// [`PostgresOptions::ssl_mode`](PostgresOptions#structfield.ssl_mode)
    /// and `ssl_root_cert` applied, `application_name` `eventcore`, and the
    /// server-side `statement_timeout` as a startup parameter. An
    /// application building its own pool for
    /// [`PostgresStore::from_pool`](crate::PostgresStore::from_pool) starts
    /// from these to keep the store's guarantees.
    ///
    /// ```
    /// use eventcore_postgres::PostgresOptions;
    /// let connect = PostgresOptions::new("postgres://app@db.example.com:5433/app?sslmode=require").connect_options()?;
    /// assert_eq!(connect.get_port(), 5433);
    /// assert_eq!(eventcore_postgres::SslMode::from(connect.get_ssl_mode()), eventcore_postgres::SslMode::Require);
    /// assert_eq!(connect.get_options(), Some("-c statement_timeout=2000"));
    /// # Ok::<(), eventcore_postgres::SetupError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`SetupError::InvalidUrl`] when the URL cannot be parsed.
    pub fn connect_options(&self) -> Result<PgConnectOptions, SetupError> {
        let statement_ms = self.statement_timeout.as_millis().to_string();
        let mut connect = PgConnectOptions::from_str(&self.url)
            .map_err(SetupError::InvalidUrl)?
            .application_name("eventcore")
            .options([("statement_timeout", statement_ms.as_str())])
            .log_statements(tracing::log::LevelFilter::Trace);
        if let Some(mode) = self.ssl_mode {
            connect = connect.ssl_mode(mode.into());
        }
        if let Some(path) = &self.ssl_root_cert {
            connect = connect.ssl_root_cert(path);
        }
        Ok(connect)
    }

    /// The sqlx pool options of the store's pool: `max_connections`,
    /// `min_connections`, `acquire_timeout`, `idle_timeout` and
    /// `max_lifetime`.
    ///
    /// ```
    /// use eventcore_postgres::PostgresOptions;
    /// let pool = PostgresOptions::new("postgres://localhost/db").max_connections(16).pool_options();
    /// assert_eq!(pool.get_max_connections(), 16);
    /// ```
    pub fn pool_options(&self) -> PgPoolOptions {
        PgPoolOptions::new()
            .max_connections(self.max_connections)
            .min_connections(self.min_connections)
            .acquire_timeout(self.acquire_timeout)
            .idle_timeout(self.idle_timeout)
            .max_lifetime(self.max_lifetime)
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
        if self.min_connections > self.max_connections {
            return Err(SetupError::InvalidOption {
                option: "min_connections",
                reason: format!(
                    "{} is more than max_connections ({})",
                    self.min_connections, self.max_connections
                ),
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
            ("acquire_timeout", self.acquire_timeout),
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
    #[error("invalid connection URL")]
    InvalidUrl(#[source] sqlx::Error),
    /// The database could not be reached or refused the connection.
    #[error("cannot connect")]
    Connect(#[source] eventcore::StoreError),
    /// TLS could not be had as the `sslmode` in force demands: the server
    /// offers no TLS, its certificate is not trusted or names another host,
    /// the root certificate cannot be read, or the server accepts only
    /// encrypted connections and `sslmode` is `disable`. Retrying does not
    /// help; the configuration (of the client or the server) must change.
    #[error("TLS under sslmode={ssl_mode}: {reason}")]
    Tls {
        /// The `sslmode` in force (from the options, else the URL).
        ssl_mode: SslMode,
        /// What went wrong, in the store's words (the source has sqlx's).
        reason: String,
        /// The sqlx error.
        #[source]
        source: sqlx::Error,
    },
    /// Applying the migrations failed.
    #[error("migration of schema {schema:?} failed")]
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
    #[error("preparing schema {schema:?} failed")]
    Prepare {
        /// The schema being prepared.
        schema: String,
        /// What failed.
        #[source]
        source: eventcore::StoreError,
    },
}

/// The [`SetupError::Tls`] a failed connection attempt under `ssl_mode`
/// amounts to, or the error back when it is not a TLS matter.
pub(crate) fn tls_failure(ssl_mode: SslMode, error: sqlx::Error) -> Result<SetupError, sqlx::Error> {
    let reason = match &error {
        sqlx::Error::Tls(inner) => tls_reason(&inner.to_string()),
        sqlx::Error::Io(inner) if inner.to_string().contains("invalid peer certificate") => {
            tls_reason(&inner.to_string())
        }
        sqlx::Error::Io(inner)
            if ssl_mode.verifies_certificate()
                && matches!(
                    inner.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                ) =>
        {
            "the root certificate file (sslrootcert) cannot be read".to_owned()
        }
        sqlx::Error::Database(db)
            if db.code().as_deref() == Some("28000") && db.message().contains("no encryption") =>
        {
            "the server accepts only encrypted connections here (pg_hba.conf: hostssl) and this sslmode \
             does not encrypt; use sslmode=require or stronger"
                .to_owned()
        }
        _ => return Err(error),
    };
    Ok(SetupError::Tls {
        ssl_mode,
        reason,
        source: error,
    })
}

/// The store's words for what a TLS error message (sqlx's or rustls's) says.
fn tls_reason(message: &str) -> String {
    let reason = if message.contains("does not support TLS") {
        "the server offers no TLS (ssl = off) and this sslmode requires it"
    } else if message.contains("UnknownIssuer") || message.contains("BadSignature") {
        "the server's certificate does not chain to a trusted root certificate (sslrootcert)"
    } else if message.contains("NotValidForName") || message.contains("not valid for name") {
        "the server's certificate does not name the host connected to"
    } else if message.contains("Expired") {
        "the server's certificate has expired"
    } else if message.contains("Invalid certificate") {
        "the root certificate file (sslrootcert) holds no valid PEM certificate"
    } else if message.contains("invalid peer certificate") {
        "the server's certificate was refused"
    } else {
        "the TLS handshake failed"
    };
    reason.to_owned()
}

/// `error` and each of its sources, joined with `": "` (for a message that
/// must carry the whole chain, e.g. a [`eventcore::StoreError`] built from a
/// [`SetupError`]).
#[cfg_attr(not(feature = "subscriptions"), allow(dead_code))] // migrate_subscriptions's
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}
