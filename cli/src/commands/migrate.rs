//! `eventcore migrate`: create or upgrade the schema (events, snapshots,
//! subscription tables, notify trigger), or `--verify` it without DDL.

use crate::args::{Connection, MigrateArgs};
use crate::connect::{connect, options};
use crate::error::CliError;
use crate::output::Out;
use eventcore::StoreError;
use eventcore_postgres::{migrate_subscriptions, MigrationMode, SetupError};
use serde::Serialize;

/// What `migrate` reports.
#[derive(Debug, Serialize)]
struct Report {
    schema: String,
    /// `migrated` or `verified`.
    action: &'static str,
    schema_version: Option<u32>,
    notify_trigger: bool,
}

/// Runs `migrate`.
pub async fn run(connection: &Connection, args: &MigrateArgs, out: &mut Out) -> Result<(), CliError> {
    let mode = if args.verify {
        MigrationMode::Verify
    } else {
        MigrationMode::Apply
    };
    let store = connect(options(connection)?.migrations(mode)).await?;
    let schema = store.options().schema.clone();
    // The tables first, with a typed answer; then the trigger (which
    // checks the migrations again: nothing left to apply by then).
    store.migrate().await.map_err(CliError::Migrate)?;
    if !args.no_notify_trigger {
        migrate_subscriptions(&store)
            .await
            .map_err(|error| not_migrated(&schema, error))?;
    }
    let report = Report {
        schema_version: store.schema_version().await?,
        schema,
        action: if args.verify { "verified" } else { "migrated" },
        notify_trigger: !args.no_notify_trigger,
    };
    if out.json {
        return out.document(&report);
    }
    let version = report
        .schema_version
        .map_or_else(|| "none".to_owned(), |v| v.to_string());
    let what = if args.verify {
        "is migrated to this version"
    } else {
        "migrated"
    };
    let trigger = if report.notify_trigger {
        ", notify trigger installed"
    } else {
        ""
    };
    out.text(&format!(
        "schema {} {what}: schema version {version}{trigger}",
        report.schema
    ))
}

/// `migrate_subscriptions` reports a failed verification as a permanent
/// store error holding `SetupError::NotMigrated`'s text: give it back its
/// kind (and exit code).
fn not_migrated(schema: &str, error: StoreError) -> CliError {
    let text = error.to_string();
    let marker = "is not migrated to this version of eventcore-postgres: ";
    match text.find(marker) {
        Some(at) => CliError::Migrate(SetupError::NotMigrated {
            schema: schema.to_owned(),
            reason: text[at + marker.len()..].to_owned(),
        }),
        None => CliError::Store(error),
    }
}
