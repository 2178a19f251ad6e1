//! What can go wrong, with a friendly message and an exit code each.

use eventcore::StoreError;
use eventcore_postgres::SetupError;
use eventcore_store::{DeadLetterError, LeaseError, SnapshotError};

/// Exit code: the operation failed.
pub const FAILED: u8 = 1;
/// Exit code: bad usage.
pub const USAGE: u8 = 2;
/// Exit code: PostgreSQL cannot be reached.
pub const UNREACHABLE: u8 = 3;
/// Exit code: unhealthy, or not migrated.
pub const UNHEALTHY: u8 = 4;
/// Exit code: not found.
pub const NOT_FOUND: u8 = 5;
/// Exit code: `dead-letters replay --wait` ran out of time.
pub const TIMED_OUT: u8 = 6;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Neither `--database-url` nor `DATABASE_URL`.
    #[error("no database URL: pass --database-url or set DATABASE_URL")]
    NoDatabaseUrl,
    /// A value given on the command line is not acceptable.
    #[error("{0}")]
    Usage(String),
    /// The options are invalid (schema name, URL, ...).
    #[error(transparent)]
    Options(SetupError),
    /// PostgreSQL cannot be reached or refused the connection.
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(String),
    /// The schema holds no store (or not this version's).
    #[error("schema {schema:?} is not migrated: {reason}")]
    NotMigrated {
        /// The schema.
        schema: String,
        /// What is missing, and what to run.
        reason: String,
    },
    /// `health` found a problem (already reported on stdout).
    #[error("unhealthy: {0}")]
    Unhealthy(String),
    /// A stream with no events.
    #[error("stream {0:?} has no events")]
    NoSuchStream(String),
    /// `dead-letters delete|replay --position` of a letter not parked.
    #[error("subscription {subscription:?} has no dead letter at position {}", join(positions))]
    NoSuchLetters {
        /// The subscription.
        subscription: String,
        /// The positions asked for and not found.
        positions: Vec<u64>,
    },
    /// `dead-letters replay --wait`: letters still waiting for a replay
    /// when the time ran out.
    #[error(
        "{} letter(s) of {subscription} still parked after {waited_secs}s, waiting for a replay (at {}): \
         is the service running {subscription:?}? The request stays; a running instance replays them \
         within a poll interval",
        positions.len(),
        join(positions)
    )]
    ReplayPending {
        /// The subscription.
        subscription: String,
        /// The positions still waiting.
        positions: Vec<u64>,
        /// How long the tool waited.
        waited_secs: u64,
    },
    /// `dead-letters replay --wait`: the service replayed letters and they
    /// failed again (they stay parked, with the new cause).
    #[error(
        "{} letter(s) of {subscription} failed again and stay parked (at {}); \
         `eventcore dead-letters list {subscription}` shows the new cause",
        positions.len(),
        join(positions)
    )]
    ReplayFailed {
        /// The subscription.
        subscription: String,
        /// The positions that failed again.
        positions: Vec<u64>,
    },
    /// Migrating (or verifying) failed.
    #[error(transparent)]
    Migrate(SetupError),
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading or deleting dead letters failed.
    #[error(transparent)]
    DeadLetters(#[from] DeadLetterError),
    /// Reading leases failed.
    #[error(transparent)]
    Leases(#[from] LeaseError),
    /// Reading or deleting snapshots failed.
    #[error(transparent)]
    Snapshots(#[from] SnapshotError),
    /// Writing the output failed.
    #[error("cannot write the output")]
    Output(#[from] std::io::Error),
}

impl CliError {
    /// The process's exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::NoDatabaseUrl | CliError::Usage(_) | CliError::Options(_) => USAGE,
            CliError::ReplayPending { .. } => TIMED_OUT,
            CliError::ReplayFailed { .. } => FAILED,
            CliError::Connect(_) => UNREACHABLE,
            CliError::NotMigrated { .. } | CliError::Unhealthy(_) => UNHEALTHY,
            CliError::NoSuchStream(_) | CliError::NoSuchLetters { .. } => NOT_FOUND,
            CliError::Migrate(SetupError::NotMigrated { .. }) => UNHEALTHY,
            CliError::Migrate(SetupError::Connect(_)) => UNREACHABLE,
            CliError::Migrate(_)
            | CliError::Store(_)
            | CliError::DeadLetters(_)
            | CliError::Leases(_)
            | CliError::Snapshots(_)
            | CliError::Output(_) => FAILED,
        }
    }

    /// Whether the error is stdout closed by its reader (`eventcore tail |
    /// head`): not a failure.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// `error` and every error in its source chain, joined by `: ` (a source
/// whose text is already printed, as some drivers' errors repeat their
/// sources, is skipped).
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(source) = next {
        let part = source.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = source.source();
    }
    text
}

/// Maps a setup error met while connecting.
pub fn connect_error(error: SetupError) -> CliError {
    match error {
        SetupError::Connect(cause) => CliError::Connect(describe_connect(&cause)),
        other => CliError::Options(other),
    }
}

/// A connection failure's message with its real cause (the store's error
/// says "transient"; the cause says "connection refused" or
/// "password authentication failed").
fn describe_connect(error: &StoreError) -> String {
    chain(error)
}

fn join(positions: &[u64]) -> String {
    positions.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("error returned from database: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn the_chain_names_every_cause_once() {
        let output = CliError::Output(std::io::Error::other("disk full"));
        assert_eq!(output.to_string(), "cannot write the output", "the cause is the source");
        assert_eq!(chain(&output), "cannot write the output: disk full");
        // A driver error that repeats its source is printed once.
        let repeats = Repeats(std::io::Error::other("relation \"streams\" does not exist"));
        assert_eq!(
            chain(&repeats),
            "error returned from database: relation \"streams\" does not exist"
        );
    }
}
