//! `eventcore dead-letters list|replay|delete`: the poison events a
//! subscription parked. Replaying them needs the subscription's own handler,
//! which lives in the user's service: `replay` records a request in the
//! store (`DeadLetterStore::request_replay`) that the running subscription's
//! runner honours, and with `--wait` watches the letters go; `delete`
//! removes letters dealt with otherwise.

use crate::args::{Connection, DeadLetterCommand};
use crate::connect::connect_migrated;
use crate::error::CliError;
use crate::events::{self, EventJson};
use crate::output::{or_dash, Align, Out, Table};
use crate::timefmt::rfc3339;
use eventcore::{GlobalPosition, Time};
use eventcore_postgres::PgDeadLetterStore;
use eventcore_store::{DeadLetter, DeadLetterStore, ReplaySelection};
use serde::Serialize;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often `replay --wait` looks at the letters.
const WAIT_POLL: Duration = Duration::from_millis(200);

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
    /// When a replay was requested, if one is pending.
    replay_requested_at: Option<String>,
    /// The event whole.
    event: EventJson<'a>,
}

/// What `dead-letters replay --json` prints.
#[derive(Debug, Serialize)]
struct ReplayReport<'a> {
    subscription: &'a str,
    /// The positions whose replay is now requested.
    requested: Vec<u64>,
    /// With `--wait`: what became of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<Outcome>,
}

/// What became of the requested letters while `replay --wait` watched.
#[derive(Debug, Default, Serialize)]
struct Outcome {
    /// Handled and removed.
    replayed: Vec<u64>,
    /// Replayed, failed again, still parked (request cleared).
    failed: Vec<u64>,
    /// Still waiting for the service.
    pending: Vec<u64>,
    /// Seconds waited.
    waited_secs: u64,
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
        DeadLetterCommand::Replay {
            subscription,
            positions,
            wait,
        } => {
            let store = connect_migrated(connection).await?;
            let dead_letters = PgDeadLetterStore::new(&store);
            let which = if positions.is_empty() {
                ReplaySelection::All
            } else {
                let parked: Vec<u64> = dead_letters
                    .list(subscription)
                    .await?
                    .iter()
                    .map(|l| l.event.position.get())
                    .collect();
                let missing: Vec<u64> = positions.iter().copied().filter(|p| !parked.contains(p)).collect();
                if !missing.is_empty() {
                    return Err(CliError::NoSuchLetters {
                        subscription: subscription.clone(),
                        positions: missing,
                    });
                }
                ReplaySelection::Positions(positions.iter().copied().map(GlobalPosition::new).collect())
            };
            let requested: Vec<u64> = dead_letters
                .request_replay(subscription, &which, now())
                .await?
                .into_iter()
                .map(GlobalPosition::get)
                .collect();
            let outcome = match wait {
                Some(secs) if !requested.is_empty() => {
                    Some(watch(&dead_letters, subscription, &requested, Duration::from_secs(*secs)).await?)
                }
                _ => None,
            };
            replayed(subscription, requested, outcome, out)
        }
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
                    replay_requested_at: letter.replay_requested_at.map(rfc3339),
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
        ("REPLAY REQUESTED", Align::Left),
        ("CAUSE", Align::Left),
    ]);
    for letter in letters {
        table.row(vec![
            letter.event.position.to_string(),
            letter.event.stream_id.to_string(),
            letter.event.version.to_string(),
            letter.event.event_type.to_string(),
            rfc3339(letter.parked_at),
            or_dash(letter.replay_requested_at.map(rfc3339)),
            letter.poison.cause.to_string(),
        ]);
    }
    out.table(&table)
}

/// Now, on this machine's clock (the time a replay request carries).
fn now() -> Time {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    Time::from_unix_nanos(nanos)
}

/// Watches the `requested` letters until none waits for the service any
/// more (each replayed, i.e. gone, or failed again, i.e. parked with its
/// request cleared) or `limit` has passed.
async fn watch(
    dead_letters: &PgDeadLetterStore,
    subscription: &str,
    requested: &[u64],
    limit: Duration,
) -> Result<Outcome, CliError> {
    let started = Instant::now();
    loop {
        let letters = dead_letters.list(subscription).await?;
        let mut outcome = Outcome {
            waited_secs: started.elapsed().as_secs(),
            ..Outcome::default()
        };
        for &position in requested {
            match letters.iter().find(|l| l.event.position.get() == position) {
                None => outcome.replayed.push(position),
                Some(letter) if letter.replay_requested_at.is_none() => outcome.failed.push(position),
                Some(_) => outcome.pending.push(position),
            }
        }
        if outcome.pending.is_empty() || started.elapsed() >= limit {
            return Ok(outcome);
        }
        tokio::time::sleep(WAIT_POLL.min(limit.saturating_sub(started.elapsed()))).await;
    }
}

fn replayed(subscription: &str, requested: Vec<u64>, outcome: Option<Outcome>, out: &mut Out) -> Result<(), CliError> {
    let failure = outcome.as_ref().and_then(|o| {
        if !o.failed.is_empty() {
            Some(CliError::ReplayFailed {
                subscription: subscription.to_owned(),
                positions: o.failed.clone(),
            })
        } else if !o.pending.is_empty() {
            Some(CliError::ReplayPending {
                subscription: subscription.to_owned(),
                positions: o.pending.clone(),
                waited_secs: o.waited_secs,
            })
        } else {
            None
        }
    });
    if out.json {
        out.document(&ReplayReport {
            subscription,
            requested,
            outcome,
        })?;
    } else {
        let list = |positions: &[u64]| positions.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
        let n = requested.len();
        let mut text = if n == 0 {
            format!("no dead letters of {subscription} to replay")
        } else {
            format!(
                "requested a replay of {n} dead letter(s) of {subscription}: {}",
                list(&requested)
            )
        };
        match &outcome {
            None if n > 0 => text.push_str(&format!(
                "\nthe service's running {subscription} replays them within a poll interval; \
                 `eventcore dead-letters list {subscription}` shows what is still parked"
            )),
            None => {}
            Some(o) => {
                for (what, positions) in [
                    ("replayed", &o.replayed),
                    ("failed again, still parked", &o.failed),
                    ("still waiting", &o.pending),
                ] {
                    if !positions.is_empty() {
                        text.push_str(&format!("\n{what}: {}", list(positions)));
                    }
                }
            }
        }
        out.text(&text)?;
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
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
