//! `eventcore health`: does the database answer, is the schema migrated to
//! this version, where does the log end. Non-zero exit when unhealthy.

use crate::args::Connection;
use crate::connect::{connect, options};
use crate::error::CliError;
use crate::output::Out;
use eventcore_postgres::{PostgresStore, SetupError};
use serde::Serialize;

/// What `health` reports.
#[derive(Debug, Default, Serialize)]
struct Report {
    healthy: bool,
    schema: String,
    server_version: Option<String>,
    migrated: bool,
    schema_version: Option<u32>,
    /// `up to date`, or what the verification found.
    migrations: Option<String>,
    last_position: Option<u64>,
    settled_position: Option<u64>,
    problems: Vec<String>,
}

/// Runs `health`.
pub async fn run(connection: &Connection, out: &mut Out) -> Result<(), CliError> {
    let options = options(connection)?;
    let mut report = Report {
        schema: options.schema.clone(),
        ..Report::default()
    };
    let store = match connect(options).await {
        Ok(store) => store,
        Err(error) => {
            if out.json {
                report.problems.push(error.to_string());
                out.document(&report)?;
            }
            return Err(error);
        }
    };
    check(&store, &mut report).await;
    report.healthy = report.problems.is_empty();
    if out.json {
        out.document(&report)?;
    } else {
        print_text(&report, out)?;
    }
    if report.healthy {
        Ok(())
    } else {
        Err(CliError::Unhealthy(report.problems.join("; ")))
    }
}

/// Fills `report`, recording every problem found.
async fn check(store: &PostgresStore, report: &mut Report) {
    match store.health().await {
        Ok(health) => {
            report.server_version = Some(health.server_version);
            report.migrated = health.migrated;
        }
        Err(error) => {
            report.problems.push(format!("the database does not answer: {error}"));
            return;
        }
    }
    match store.schema_version().await {
        Ok(version) => report.schema_version = version,
        Err(error) => report.problems.push(format!("cannot read the schema version: {error}")),
    }
    if !report.migrated {
        report.problems.push(format!(
            "schema {:?} holds no event store; run `eventcore migrate`",
            report.schema
        ));
        return;
    }
    match store.verify_migrations().await {
        Ok(()) => report.migrations = Some("up to date".to_owned()),
        Err(SetupError::NotMigrated { reason, .. }) => {
            report.migrations = Some(reason.clone());
            report.problems.push(format!("migrations: {reason}"));
        }
        Err(error) => report.problems.push(format!("cannot check the migrations: {error}")),
    }
    match store.head().await {
        Ok(head) => {
            report.last_position = Some(head.newest.map_or(0, |p| p.get()));
            report.settled_position = Some(head.settled.get());
        }
        Err(error) => report.problems.push(format!("cannot read the end of the log: {error}")),
    }
}

fn print_text(report: &Report, out: &mut Out) -> Result<(), CliError> {
    let or_unknown = |v: Option<String>| v.unwrap_or_else(|| "unknown".to_owned());
    let version = match (report.schema_version, &report.migrations) {
        (Some(v), Some(m)) => format!("{v} ({m})"),
        (Some(v), None) => v.to_string(),
        (None, _) => "none (not migrated)".to_owned(),
    };
    let lines = [
        (
            "status",
            if report.healthy { "healthy" } else { "UNHEALTHY" }.to_owned(),
        ),
        ("schema", report.schema.clone()),
        ("server version", or_unknown(report.server_version.clone())),
        ("schema version", version),
        ("last position", or_unknown(report.last_position.map(|p| p.to_string()))),
        (
            "settled through",
            or_unknown(report.settled_position.map(|p| p.to_string())),
        ),
    ];
    for (key, value) in lines {
        out.text(&format!("{key:<16} {value}"))?;
    }
    for problem in &report.problems {
        out.text(&format!("{:<16} {problem}", "problem"))?;
    }
    Ok(())
}
