//! `eventcore dead-letters list|delete`: the poison events a subscription
//! parked. Replaying them needs the subscription's own handler
//! (`Runner::replay_parked`, in the user's service), so `replay` only says
//! so; `delete` removes letters dealt with otherwise.

use crate::args::{Connection, DeadLetterCommand};
use crate::connect::connect_migrated;
use crate::error::CliError;
use crate::events::{self, EventJson};
use crate::output::{Align, Out, Table};
use crate::timefmt::rfc3339;
use eventcore_postgres::PgDeadLetterStore;
use eventcore_store::{DeadLetter, DeadLetterStore};
use serde::Serialize;

/// What `dead-letters list --json` prints.
#[derive(Debug, Serialize)]
struct ListReport<'a> {
    subscription: &'a str,
    letters: Vec<LetterJson<'a>>,
}

/// One parked event.
#[derive(Debug, Serialize)]
struct LetterJson<'a> {
    position: u64,
    /// Why it was parked.
    cause: String,
    /// When, on the parking runner's clock.
    parked_at: String,
    /// The event whole.
    event: EventJson<'a>,
}

/// What `dead-letters delete --json` prints.
#[derive(Debug, Serialize)]
struct DeleteReport<'a> {
    subscription: &'a str,
    /// False for a dry run (no `--yes`).
    deleted: bool,
    positions: Vec<u64>,
}

/// Runs `dead-letters ...`.
pub async fn run(connection: &Connection, command: &DeadLetterCommand, out: &mut Out) -> Result<(), CliError> {
    match command {
        DeadLetterCommand::Replay { subscription } => Err(CliError::ReplayNeedsHandler(
            subscription.clone().unwrap_or_else(|| "<subscription>".to_owned()),
        )),
        DeadLetterCommand::List { subscription } => {
            let store = connect_migrated(connection).await?;
            let letters = PgDeadLetterStore::new(&store).list(subscription).await?;
            list(subscription, &letters, out)
        }
        DeadLetterCommand::Delete {
            subscription,
            positions,
            all,
            yes,
        } => {
            let store = connect_migrated(connection).await?;
            let dead_letters = PgDeadLetterStore::new(&store);
            let letters = dead_letters.list(subscription).await?;
            let parked: Vec<u64> = letters.iter().map(|l| l.event.position.get()).collect();
            let chosen: Vec<u64> = if *all {
                parked
            } else {
                let missing: Vec<u64> = positions.iter().copied().filter(|p| !parked.contains(p)).collect();
                if !missing.is_empty() {
                    return Err(CliError::NoSuchLetters {
                        subscription: subscription.clone(),
                        positions: missing,
                    });
                }
                parked.into_iter().filter(|p| positions.contains(p)).collect()
            };
            if *yes {
                for position in &chosen {
                    dead_letters
                        .remove(subscription, eventcore::GlobalPosition::new(*position))
                        .await?;
                }
            }
            deleted(subscription, *yes, chosen, out)
        }
    }
}

fn list(subscription: &str, letters: &[DeadLetter], out: &mut Out) -> Result<(), CliError> {
    if out.json {
        return out.document(&ListReport {
            subscription,
            letters: letters
                .iter()
                .map(|letter| LetterJson {
                    position: letter.event.position.get(),
                    cause: letter.poison.cause.to_string(),
                    parked_at: rfc3339(letter.parked_at),
                    event: events::json(&letter.event),
                })
                .collect(),
        });
    }
    if letters.is_empty() {
        return out.text(&format!("no dead letters for {subscription}"));
    }
    let mut table = Table::new(&[
        ("POSITION", Align::Right),
        ("STREAM", Align::Left),
        ("VERSION", Align::Right),
        ("TYPE", Align::Left),
        ("PARKED AT", Align::Left),
        ("CAUSE", Align::Left),
    ]);
    for letter in letters {
        table.row(vec![
            letter.event.position.to_string(),
            letter.event.stream_id.to_string(),
            letter.event.version.to_string(),
            letter.event.event_type.to_string(),
            rfc3339(letter.parked_at),
            letter.poison.cause.to_string(),
        ]);
    }
    out.table(&table)
}

fn deleted(subscription: &str, done: bool, positions: Vec<u64>, out: &mut Out) -> Result<(), CliError> {
    if out.json {
        return out.document(&DeleteReport {
            subscription,
            deleted: done,
            positions,
        });
    }
    let list = positions.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
    let n = positions.len();
    let text = match (done, n) {
        (_, 0) => format!("no dead letters of {subscription} to delete"),
        (true, _) => format!("deleted {n} dead letter(s) of {subscription}: {list}"),
        (false, _) => format!("would delete {n} dead letter(s) of {subscription}: {list} (pass --yes to delete)"),
    };
    out.text(&text)
}
