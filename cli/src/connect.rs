//! Reaching the store: options from the command line, connecting, and
//! checking that the schema holds a store before reading it.

use crate::args::Connection;
use crate::error::{connect_error, CliError};
use eventcore_postgres::{PostgresOptions, PostgresStore};
use std::time::Duration;

/// The store options the command line asks for.
pub fn options(connection: &Connection) -> Result<PostgresOptions, CliError> {
    let url = connection.database_url.clone().ok_or(CliError::NoDatabaseUrl)?;
    if connection.timeout == 0 {
        return Err(CliError::Usage("--timeout must be at least 1 second".to_owned()));
    }
    let timeout = Duration::from_secs(connection.timeout);
    let mut options = PostgresOptions::new(url)
        .max_connections(2)
        .connect_timeout(timeout)
        .statement_timeout(timeout)
        .operation_timeout(timeout);
    if let Some(schema) = &connection.schema {
        options = options.schema(schema);
    }
    options.validate().map_err(CliError::Options)?;
    Ok(options)
}

/// Connects (no DDL is run).
pub async fn connect(options: PostgresOptions) -> Result<PostgresStore, CliError> {
    PostgresStore::connect_with(options).await.map_err(connect_error)
}

/// Connects, and fails with [`CliError::NotMigrated`] unless the schema
/// holds a store: every command but `migrate` and `health` reads it.
pub async fn connect_migrated(connection: &Connection) -> Result<PostgresStore, CliError> {
    let store = connect(options(connection)?).await?;
    let health = store.health().await?;
    if !health.migrated {
        return Err(CliError::NotMigrated {
            schema: store.options().schema.clone(),
            reason: "it holds no event store; run `eventcore migrate` (as the schema's owner) first".to_owned(),
        });
    }
    Ok(store)
}
