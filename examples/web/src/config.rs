//! The service's configuration, from the environment.

use std::net::SocketAddr;

/// The database used when `DATABASE_URL` is not set.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// The schema used when `BANK_SCHEMA` is not set.
pub const DEFAULT_SCHEMA: &str = "bank_web";
/// The address used when `BIND` is not set.
pub const DEFAULT_BIND: &str = "127.0.0.1:3000";

/// What the service needs to start.
///
/// ```
/// use eventcore_web_example::Config;
/// let config = Config::new("postgres://postgres@127.0.0.1:5432/postgres").schema("bank_test");
/// assert_eq!(config.schema, "bank_test");
/// assert_eq!(config.bind.to_string(), "127.0.0.1:3000");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The PostgreSQL URL (`DATABASE_URL`).
    pub database_url: String,
    /// The schema holding the events, the subscription tables and the
    /// balances read model (`BANK_SCHEMA`); created and migrated at start.
    pub schema: String,
    /// Where to listen (`BIND`).
    pub bind: SocketAddr,
    /// The most connections the store's pool opens (`DATABASE_MAX_CONNECTIONS`).
    pub max_connections: u32,
    /// This instance's name as a holder of the projection's lease
    /// (`INSTANCE`; default: `bank-web-<pid>`). With several instances on
    /// one schema, one of them runs the projection and the others stand by.
    pub instance: String,
}

impl Config {
    /// The defaults, on `database_url`.
    pub fn new(database_url: impl Into<String>) -> Config {
        Config {
            database_url: database_url.into(),
            schema: DEFAULT_SCHEMA.to_owned(),
            bind: SocketAddr::from(([127, 0, 0, 1], 3000)),
            max_connections: 16,
            instance: format!("bank-web-{}", std::process::id()),
        }
    }

    /// Sets the schema.
    pub fn schema(mut self, schema: impl Into<String>) -> Config {
        self.schema = schema.into();
        self
    }

    /// Sets the pool's size.
    pub fn max_connections(mut self, max: u32) -> Config {
        self.max_connections = max;
        self
    }

    /// Reads `DATABASE_URL`, `BANK_SCHEMA`, `BIND`,
    /// `DATABASE_MAX_CONNECTIONS` and `INSTANCE`, each with its default.
    ///
    /// ```
    /// use eventcore_web_example::Config;
    /// let config = Config::from_env()?;
    /// assert!(!config.schema.is_empty());
    /// # Ok::<(), eventcore_web_example::ConfigError>(())
    /// ```
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Config::from_env`] with the variables looked up by `var`.
    ///
    /// ```
    /// use eventcore_web_example::{Config, ConfigError};
    /// let config = Config::from_lookup(|name| (name == "BIND").then(|| "0.0.0.0:8080".to_owned()))?;
    /// assert_eq!(config.bind.port(), 8080);
    /// let bad = Config::from_lookup(|name| (name == "BIND").then(|| "everywhere".to_owned()));
    /// assert!(matches!(bad, Err(ConfigError::Invalid { name: "BIND", .. })));
    /// # Ok::<(), ConfigError>(())
    /// ```
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut config = Config::new(var("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()));
        if let Some(schema) = var("BANK_SCHEMA") {
            config.schema = schema;
        }
        let bind = var("BIND").unwrap_or_else(|| DEFAULT_BIND.to_owned());
        config.bind = bind
            .parse()
            .map_err(|e: std::net::AddrParseError| ConfigError::Invalid {
                name: "BIND",
                value: bind.clone(),
                reason: e.to_string(),
            })?;
        if let Some(max) = var("DATABASE_MAX_CONNECTIONS") {
            config.max_connections = max
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ConfigError::Invalid {
                    name: "DATABASE_MAX_CONNECTIONS",
                    value: max.clone(),
                    reason: "not a positive number".to_owned(),
                })?;
        }
        if let Some(instance) = var("INSTANCE") {
            config.instance = instance;
        }
        Ok(config)
    }
}

/// A configuration variable that cannot be used.
///
/// ```
/// use eventcore_web_example::ConfigError;
/// let error = ConfigError::Invalid { name: "BIND", value: "x".into(), reason: "invalid socket address syntax".into() };
/// assert_eq!(error.to_string(), "BIND=`x`: invalid socket address syntax");
/// ```
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The variable is set to something unusable.
    #[error("{name}=`{value}`: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// Why it cannot be used.
        reason: String,
    },
}
