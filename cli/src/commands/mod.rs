//! One module per subcommand; [`run`] dispatches.

mod dead_letters;
mod health;
mod migrate;
mod retention;
mod snapshots;
mod stream;
mod subscriptions;
mod tail;

use crate::args::{Cli, Command, RetentionCommand};
use crate::error::CliError;
use crate::output::Out;

pub use retention::Age;

/// Runs the command the command line names, writing to `out`.
pub async fn run(cli: &Cli, out: &mut Out) -> Result<(), CliError> {
    let connection = &cli.connection;
    match &cli.command {
        Command::Migrate(args) => migrate::run(connection, args, out).await,
        Command::Health => health::run(connection, out).await,
        Command::Stream(args) => stream::run(connection, args, out).await,
        Command::Tail(args) => tail::run(connection, args, out).await,
        Command::Subscriptions(args) => subscriptions::run(connection, args, out).await,
        Command::DeadLetters(command) => dead_letters::run(connection, command, out).await,
        Command::Snapshots(command) => snapshots::run(connection, command, out).await,
        Command::Retention(RetentionCommand::Run(args)) => retention::run(connection, args, out).await,
    }
}
