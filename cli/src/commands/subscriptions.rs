//! `eventcore subscriptions`: every checkpoint, lease and dead-letter
//! queue of the schema, with how far each subscription is behind.

use crate::args::{Connection, SubscriptionsArgs};
use crate::connect::connect_migrated;
use crate::error::CliError;
use crate::output::{or_dash, Align, Out, Table};
use crate::timefmt::{now, rfc3339, short};
use eventcore::{EventFilter, GlobalPosition, ReadAllRequest};
use eventcore_postgres::{
    CheckpointState, LeaseState, PgCheckpointStore, PgDeadLetterStore, PgLeaseStore, PostgresStore,
};
use eventcore_store::EventStore;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;
use std::time::Duration;

/// What `subscriptions --json` prints.
#[derive(Debug, Serialize)]
struct Report {
    schema: String,
    /// The newest committed position (0: an empty log).
    head_position: u64,
    subscriptions: Vec<Row>,
}

/// One subscription (or projection).
#[derive(Debug, Serialize)]
struct Row {
    name: String,
    /// Its checkpoint, if one was ever claimed.
    checkpoint: Option<Checkpoint>,
    /// Its lease, if one was ever taken.
    lease: Option<Lease>,
    /// Events parked in its dead letters.
    parked: u64,
}

#[derive(Debug, Serialize)]
struct Checkpoint {
    position: u64,
    /// The lease token of the holder that last claimed it.
    fence: u64,
    updated_at: String,
    /// `head_position - position` (positions are not dense: this is a
    /// distance, not a count).
    lag_positions: u64,
    /// Committed events after the checkpoint, whatever the subscription's
    /// filter, counted up to `lag_events_capped`'s limit.
    lag_events: u64,
    /// Whether the count stopped at the limit (`--count-limit`).
    lag_events_capped: bool,
    /// How long the oldest event after the checkpoint has waited (its
    /// timestamp to now, this machine's clock); 0 when caught up.
    lag_seconds: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Lease {
    /// Whether someone holds it now.
    held: bool,
    holder: Option<String>,
    token: u64,
    expires_at: Option<String>,
    /// How long it is still held (the database's clock).
    remaining_seconds: Option<f64>,
}

/// Runs `subscriptions`.
pub async fn run(connection: &Connection, args: &SubscriptionsArgs, out: &mut Out) -> Result<(), CliError> {
    let store = connect_migrated(connection).await?;
    let checkpoints: BTreeMap<String, CheckpointState> = PgCheckpointStore::new(&store)
        .list()
        .await?
        .into_iter()
        .map(|c| (c.name.clone(), c))
        .collect();
    let leases: BTreeMap<String, LeaseState> = PgLeaseStore::new(&store)
        .list()
        .await?
        .into_iter()
        .map(|l| (l.name.clone(), l))
        .collect();
    let parked = PgDeadLetterStore::new(&store).counts().await?;
    let head = store.head().await?.newest.unwrap_or(GlobalPosition::START);
    let names: BTreeSet<&String> = checkpoints.keys().chain(leases.keys()).chain(parked.keys()).collect();
    let mut rows = Vec::with_capacity(names.len());
    for name in names {
        let checkpoint = match checkpoints.get(name) {
            Some(state) => Some(lag(&store, state, head, args.count_limit).await?),
            None => None,
        };
        rows.push(Row {
            name: name.clone(),
            checkpoint,
            lease: leases.get(name).map(lease),
            parked: parked.get(name).copied().unwrap_or(0),
        });
    }
    let report = Report {
        schema: store.options().schema.clone(),
        head_position: head.get(),
        subscriptions: rows,
    };
    if out.json {
        return out.document(&report);
    }
    if report.subscriptions.is_empty() {
        return out.text(&format!("no subscriptions in schema {}", report.schema));
    }
    out.table(&table(&report))
}

/// A checkpoint and how far it is behind `head`.
async fn lag(
    store: &PostgresStore,
    state: &CheckpointState,
    head: GlobalPosition,
    cap: u64,
) -> Result<Checkpoint, CliError> {
    let behind = store.count_events_after(state.position, cap).await?;
    let lag_seconds = if behind == 0 {
        Some(0.0)
    } else {
        // The oldest event it has not handled, if it is readable yet.
        let first = store
            .read_all(&ReadAllRequest {
                after: state.position,
                limit: NonZeroU32::MIN,
                filter: EventFilter::all(),
            })
            .await?;
        first
            .events
            .first()
            .map(|event| now().saturating_duration_since(event.metadata.timestamp).as_secs_f64())
    };
    Ok(Checkpoint {
        position: state.position.get(),
        fence: state.fence.get(),
        updated_at: rfc3339(state.updated_at),
        lag_positions: head.get().saturating_sub(state.position.get()),
        lag_events: behind,
        lag_events_capped: behind >= cap,
        lag_seconds,
    })
}

fn lease(state: &LeaseState) -> Lease {
    Lease {
        held: state.is_held(),
        holder: state.holder.clone(),
        token: state.token.get(),
        expires_at: state.expires_at.map(rfc3339),
        remaining_seconds: state.remaining.map(|d| d.as_secs_f64()),
    }
}

fn table(report: &Report) -> Table {
    let mut table = Table::new(&[
        ("NAME", Align::Left),
        ("CHECKPOINT", Align::Right),
        ("BEHIND", Align::Right),
        ("LAG", Align::Right),
        ("HOLDER", Align::Left),
        ("TOKEN", Align::Right),
        ("EXPIRES", Align::Left),
        ("PARKED", Align::Right),
    ]);
    for row in &report.subscriptions {
        let checkpoint = row.checkpoint.as_ref();
        let behind = checkpoint.map(|c| {
            if c.lag_events_capped {
                format!("{}+", c.lag_events)
            } else {
                c.lag_events.to_string()
            }
        });
        let lag = checkpoint
            .and_then(|c| c.lag_seconds)
            .map(|s| short(Duration::from_secs_f64(s)));
        let lease = row.lease.as_ref();
        let holder = lease.and_then(|l| if l.held { l.holder.clone() } else { None });
        let expires = lease.map(|l| match l.remaining_seconds {
            Some(left) if l.held => format!("in {}", short(Duration::from_secs_f64(left))),
            _ if l.holder.is_some() => "expired".to_owned(),
            _ => "released".to_owned(),
        });
        table.row(vec![
            row.name.clone(),
            or_dash(checkpoint.map(|c| c.position.to_string())),
            or_dash(behind),
            or_dash(lag),
            or_dash(holder),
            or_dash(lease.map(|l| l.token.to_string())),
            or_dash(expires),
            row.parked.to_string(),
        ]);
    }
    table
}
