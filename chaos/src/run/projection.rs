//! An exactly-once projection through the proxy for the whole run: the real
//! projection runner with `PgProjectionStore` (every batch's rows commit in
//! one transaction with the checkpoint and the lease's fence), writing one
//! row per event into a ledger table that has no unique key, so that an
//! event applied twice shows up as two rows. At the end the ledger must
//! hold exactly the log's events up to the checkpoint, each once, and the
//! checkpoint must have reached the end of the log.

use super::report::SubscriberCheck;
use eventcore::{DecodeErrorKind, Event, GlobalPosition, Payload, RecordedEvent, SubscriptionPolicy};
use eventcore_postgres::{PgLeaseStore, PgNotifier, PgProjectionStore, PgTransaction, PostgresStore};
use eventcore_tokio::{Projection, ProjectionError, Runner};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// The projection's name (its checkpoint and lease).
const NAME: &str = "chaos-ledger";

/// Any event of any workload: the ledger needs only the recorded event.
#[derive(Debug, Serialize, Deserialize)]
struct Seen;

impl Event for Seen {
    fn decode(_: &str, _: u32, _: &Payload) -> Result<Self, DecodeErrorKind> {
        Ok(Seen)
    }
}

/// One ledger row per event.
struct Ledger {
    table: String,
}

impl Projection for Ledger {
    type Event = Seen;
    type Store = PgProjectionStore;

    async fn apply(
        &mut self,
        tx: &mut PgTransaction,
        _: Seen,
        recorded: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let position = i64::try_from(recorded.position.get()).map_err(|e| ProjectionError::Rejected(e.to_string()))?;
        sqlx::query(&format!(
            "INSERT INTO {} (position, stream_id) VALUES ($1, $2)",
            self.table
        ))
        .bind(position)
        .bind(recorded.stream_id.as_str())
        .execute(&mut **tx)
        .await
        .map_err(|e| ProjectionError::Transient(e.to_string()))?;
        Ok(())
    }
}

/// Runs the projection through `store` (proxied) until `stop`, then until
/// caught up; returns its restarts after errors.
pub(super) async fn run_projection(store: PostgresStore, stop: Arc<AtomicBool>) -> u64 {
    let table = format!("\"{}\".chaos_ledger", store.options().schema);
    let notifier = PgNotifier::start(&store).await.ok();
    let policy = SubscriptionPolicy {
        fetch_timeout: Duration::from_secs(1),
        ..SubscriptionPolicy::default()
    };
    let mut runner = Runner::projection(NAME, store.clone(), Ledger { table }, PgProjectionStore::new(&store))
        .with_policy(policy)
        .with_lease(PgLeaseStore::new(&store), "chaos", Duration::from_secs(2));
    if let Some(notifier) = &notifier {
        runner = runner.with_wakeups(notifier.subscribe());
    }
    super::subscribers::drive(&mut runner, &stop).await
}

/// Creates the ledger table (before the run starts).
pub(super) async fn create_ledger(direct: &PostgresStore) -> Result<(), sqlx::Error> {
    let schema = &direct.options().schema;
    sqlx::query(&format!(
        "CREATE TABLE IF NOT EXISTS \"{schema}\".chaos_ledger (position bigint NOT NULL, stream_id text NOT NULL)"
    ))
    .execute(direct.pool())
    .await
    .map(|_| ())
}

/// The ledger against the final log: every event up to the checkpoint once,
/// nothing beyond it, and the checkpoint at the end of the log.
pub(super) async fn check_ledger(direct: &PostgresStore, events: &[RecordedEvent], restarts: u64) -> SubscriberCheck {
    let schema = &direct.options().schema;
    let mut problems = Vec::new();
    let checkpoint: Option<i64> = match sqlx::query_scalar(&format!(
        "SELECT position FROM \"{schema}\".subscription_checkpoints WHERE name = $1"
    ))
    .bind(NAME)
    .fetch_optional(direct.pool())
    .await
    {
        Ok(found) => found,
        Err(e) => {
            problems.push(format!("reading the checkpoint: {e}"));
            None
        }
    };
    let rows: Vec<(i64, String)> = match sqlx::query_as(&format!(
        "SELECT position, stream_id FROM \"{schema}\".chaos_ledger ORDER BY position"
    ))
    .fetch_all(direct.pool())
    .await
    {
        Ok(rows) => rows,
        Err(e) => {
            problems.push(format!("reading the ledger: {e}"));
            Vec::new()
        }
    };
    let checkpoint = GlobalPosition::new(checkpoint.map_or(0, |c| u64::try_from(c).unwrap_or(0)));
    let mut counts: BTreeMap<u64, (usize, String)> = BTreeMap::new();
    for (position, stream) in &rows {
        let entry = counts
            .entry(u64::try_from(*position).unwrap_or(0))
            .or_insert((0, stream.clone()));
        entry.0 += 1;
    }
    let twice: Vec<u64> = counts.iter().filter(|(_, (n, _))| *n > 1).map(|(p, _)| *p).collect();
    if !twice.is_empty() {
        problems.push(format!(
            "{} events applied more than once (first at {})",
            twice.len(),
            twice[0]
        ));
    }
    let covered: Vec<&RecordedEvent> = events.iter().filter(|e| e.position <= checkpoint).collect();
    let missing = covered
        .iter()
        .filter(|e| !counts.contains_key(&e.position.get()))
        .count();
    if missing > 0 {
        problems.push(format!(
            "{missing} events up to the checkpoint {checkpoint} never applied"
        ));
    }
    let stray = counts.keys().filter(|p| GlobalPosition::new(**p) > checkpoint).count();
    if stray > 0 {
        problems.push(format!(
            "{stray} rows beyond the checkpoint {checkpoint} (a batch committed without it)"
        ));
    }
    let foreign = counts
        .keys()
        .filter(|p| !events.iter().any(|e| e.position.get() == **p))
        .count();
    if foreign > 0 {
        problems.push(format!("{foreign} rows for positions the log does not hold"));
    }
    if let Some(last) = events.last() {
        if checkpoint < last.position {
            problems.push(format!(
                "the checkpoint {checkpoint} never reached the end of the log {}",
                last.position
            ));
        }
    }
    SubscriberCheck {
        delivered: rows.len(),
        failed_reads: restarts,
        redelivered: twice.len(),
        notifications: 0,
        reconnects: 0,
        problems,
    }
}
