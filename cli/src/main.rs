//! `eventcore`: the operations CLI of an EventCore PostgreSQL store.
//!
//! ```text
//! eventcore migrate                       # create or upgrade the schema
//! eventcore health                        # exit 0 only when healthy
//! eventcore stream account-1              # one stream's events
//! eventcore tail --type Deposited         # follow the global log
//! eventcore subscriptions                 # checkpoints, lag, leases
//! eventcore dead-letters list balances    # parked poison events
//! eventcore dead-letters replay balances --wait 20   # replayed by the running service
//! eventcore snapshots list                # view snapshots per version
//! ```
//!
//! Every command takes `--database-url` (or `DATABASE_URL`), `--schema`
//! and `--json`. See `docs/operations.md`.

// The CLI reports against the wall clock (lag, timestamps).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod args;
mod commands;
mod connect;
mod error;
mod events;
mod output;
mod timefmt;

use clap::Parser;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "error: cannot start the async runtime: {error}");
            return ExitCode::from(error::FAILED);
        }
    };
    let mut out = output::Out::new(cli.json);
    let result = runtime.block_on(commands::run(&cli, &mut out));
    let result = result.and_then(|()| out.flush());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.is_broken_pipe() => ExitCode::SUCCESS,
        Err(error) => {
            // What was printed before the error still goes out.
            let _ = out.flush();
            let _ = writeln!(std::io::stderr(), "error: {}", error::chain(&error));
            ExitCode::from(error.exit_code())
        }
    }
}
