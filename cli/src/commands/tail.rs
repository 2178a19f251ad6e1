//! `eventcore tail`: follow the global log, filtered by event type and
//! stream prefix, from a position or from the end.

use crate::args::{Connection, TailArgs};
use crate::connect::connect_migrated;
use crate::error::CliError;
use crate::events;
use crate::output::Out;
use eventcore::{EventFilter, EventType, GlobalPosition, ReadAllRequest};
use eventcore_postgres::PgNotifier;
use eventcore_store::EventStore;
use std::io::Write;
use std::num::NonZeroU32;
use std::time::Duration;

/// Most events fetched per query.
const PAGE: u64 = 500;

/// Runs `tail`.
pub async fn run(connection: &Connection, args: &TailArgs, out: &mut Out) -> Result<(), CliError> {
    let types = args
        .types
        .iter()
        .map(EventType::new)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CliError::Usage(format!("invalid --type: {e}")))?;
    let mut filter = EventFilter::all().with_event_types(types);
    if let Some(prefix) = &args.stream_prefix {
        filter = filter.with_stream_prefix(prefix);
    }
    let store = connect_migrated(connection).await?;
    // From the end: after the position through which the log is final, so
    // that an event still being committed below the newest one is not
    // skipped.
    let mut after = match args.from {
        Some(position) => GlobalPosition::new(position),
        None => store.head().await?.settled,
    };
    let limit = args.limit.unwrap_or(u64::MAX);
    if limit == 0 {
        return Ok(());
    }
    // Notifications wake the follower early when the notify trigger is
    // installed; polling covers the rest.
    let notifier = if args.once {
        None
    } else {
        PgNotifier::start(&store).await.ok()
    };
    let mut wakeups = notifier.as_ref().map(PgNotifier::subscribe);
    if !args.once {
        // On stderr, so that stdout holds only events.
        let _ = writeln!(
            std::io::stderr(),
            "following schema {} after position {after} (Ctrl-C to stop)",
            store.options().schema
        );
    }
    let poll = Duration::from_millis(args.poll_ms.max(10));
    let mut printed = 0u64;
    loop {
        let page = PAGE.min(limit - printed);
        let request = ReadAllRequest {
            after,
            limit: NonZeroU32::new(u32::try_from(page).unwrap_or(1)).unwrap_or(NonZeroU32::MIN),
            filter: filter.clone(),
        };
        let response = store.read_all(&request).await?;
        let full = response.events.len() as u64 >= page;
        for event in &response.events {
            if out.json {
                out.line(&events::json(event))?;
            } else {
                out.text(&events::tail_line(event))?;
            }
        }
        out.flush()?;
        printed += response.events.len() as u64;
        after = after.max(response.complete_through);
        if printed >= limit || (args.once && !full) {
            return Ok(());
        }
        if full {
            continue;
        }
        match &mut wakeups {
            Some(receiver) => {
                if let Ok(Err(_)) = tokio::time::timeout(poll, receiver.changed()).await {
                    // The listener stopped: poll only.
                    wakeups = None;
                }
            }
            None => tokio::time::sleep(poll).await,
        }
    }
}
