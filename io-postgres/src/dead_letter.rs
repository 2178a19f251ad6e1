//! Dead letters on PostgreSQL: `subscription_dead_letters`.

use crate::metrics::{observe, Fields, Op};
use crate::tables::{store_error, Tables};
use crate::PostgresStore;
use eventcore::{
    DecodeErrorKind, EventId, EventMetadata, EventType, GlobalPosition, Payload, PoisonCause, PoisonEvent,
    RecordedEvent, StreamId, StreamVersion, Time,
};
use eventcore_store::{DeadLetter, DeadLetterError, DeadLetterStore, ReplaySelection};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::Row;
use std::collections::BTreeMap;
use std::sync::Arc;
use uuid::Uuid;

/// Parked poison events, listed and removed per subscription.
///
/// ```no_run
/// # async fn demo(store: eventcore_postgres::PostgresStore) -> Result<(), eventcore_store::DeadLetterError> {
/// use eventcore_postgres::PgDeadLetterStore;
/// use eventcore_store::DeadLetterStore;
/// let dead_letters = PgDeadLetterStore::new(&store);
/// for letter in dead_letters.list("balances").await? {
///     println!("{}", letter.poison);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PgDeadLetterStore {
    pool: PgPool,
    park: String,
    list: String,
    remove: String,
    counts: String,
    request_all: String,
    request_some: String,
    requested: String,
    replay_failed: String,
}

fn dead_letter_error(error: sqlx::Error) -> DeadLetterError {
    let error = store_error(error);
    if error.is_retryable() {
        DeadLetterError::Transient(error.to_string())
    } else {
        DeadLetterError::Permanent(error.to_string())
    }
}

fn corrupt(what: impl std::fmt::Display) -> DeadLetterError {
    DeadLetterError::Permanent(format!("unreadable dead letter: {what}"))
}

fn i64_of(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn u64_of(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// (kind, message, found, supported)
fn cause_columns(cause: &PoisonCause) -> (&'static str, String, Option<i32>, Option<i32>) {
    let int = |v: u32| i32::try_from(v).ok();
    match cause {
        PoisonCause::Handler(message) => ("handler", message.clone(), None, None),
        PoisonCause::Decode(DecodeErrorKind::UnknownEventType) => ("unknown_event_type", String::new(), None, None),
        PoisonCause::Decode(DecodeErrorKind::InvalidPayload(message)) => {
            ("invalid_payload", message.clone(), None, None)
        }
        PoisonCause::Decode(DecodeErrorKind::UnsupportedSchemaVersion { found, supported }) => (
            "unsupported_schema_version",
            String::new(),
            int(*found),
            int(*supported),
        ),
        PoisonCause::Decode(DecodeErrorKind::InvalidField { path, reason }) => (
            "invalid_field",
            serde_json::json!({ "path": path, "reason": reason }).to_string(),
            None,
            None,
        ),
        PoisonCause::Decode(DecodeErrorKind::UpcastFailed { from, reason }) => {
            ("upcast_failed", reason.clone(), int(*from), None)
        }
        other => ("other", other.to_string(), None, None),
    }
}

fn cause_from(kind: &str, message: String, found: Option<i32>, supported: Option<i32>) -> PoisonCause {
    let uint = |v: Option<i32>| v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
    match kind {
        "unknown_event_type" => PoisonCause::Decode(DecodeErrorKind::UnknownEventType),
        "invalid_payload" => PoisonCause::Decode(DecodeErrorKind::InvalidPayload(message)),
        "unsupported_schema_version" => PoisonCause::Decode(DecodeErrorKind::UnsupportedSchemaVersion {
            found: uint(found),
            supported: uint(supported),
        }),
        "invalid_field" => {
            let field: serde_json::Value = serde_json::from_str(&message).unwrap_or_default();
            let text = |key: &str| field[key].as_str().unwrap_or_default().to_owned();
            PoisonCause::Decode(DecodeErrorKind::InvalidField {
                path: text("path"),
                reason: text("reason"),
            })
        }
        "upcast_failed" => PoisonCause::Decode(DecodeErrorKind::UpcastFailed {
            from: uint(found),
            reason: message,
        }),
        _ => PoisonCause::Handler(message),
    }
}

fn letter(subscription: &str, row: &PgRow) -> Result<DeadLetter, DeadLetterError> {
    let get_i64 = |c: &str| row.try_get::<i64, _>(c).map_err(corrupt);
    let get_text = |c: &str| row.try_get::<String, _>(c).map_err(corrupt);
    let stream = StreamId::new(get_text("stream_id")?).map_err(corrupt)?;
    let event_type = EventType::new(get_text("event_type")?).map_err(corrupt)?;
    let metadata: EventMetadata = serde_json::from_str(&get_text("metadata")?).map_err(corrupt)?;
    let event_id: Uuid = row.try_get("event_id").map_err(corrupt)?;
    let schema_version: i32 = row.try_get("schema_version").map_err(corrupt)?;
    let event = RecordedEvent {
        event_id: EventId::from_uuid(event_id),
        stream_id: stream.clone(),
        version: StreamVersion::new(u64_of(get_i64("version")?)),
        position: GlobalPosition::new(u64_of(get_i64("position")?)),
        event_type: event_type.clone(),
        schema_version: u32::try_from(schema_version).unwrap_or(0),
        payload: Payload::from_trusted_json(get_text("payload")?),
        metadata: Arc::new(metadata),
    };
    let cause = cause_from(
        &get_text("cause_kind")?,
        get_text("cause_message")?,
        row.try_get("cause_found").map_err(corrupt)?,
        row.try_get("cause_supported").map_err(corrupt)?,
    );
    Ok(DeadLetter {
        subscription: subscription.to_owned(),
        poison: PoisonEvent {
            position: event.position,
            stream,
            version: event.version,
            event_type,
            cause,
        },
        parked_at: Time::from_unix_nanos(u64_of(get_i64("parked_at_ns")?)),
        replay_requested_at: row
            .try_get::<Option<i64>, _>("replay_requested_at_ns")
            .map_err(corrupt)?
            .map(|ns| Time::from_unix_nanos(u64_of(ns))),
        event,
    })
}

impl PgDeadLetterStore {
    /// Dead letters in `store`'s schema (run
    /// [`PostgresStore::migrate`](crate::PostgresStore::migrate) first).
    pub fn new(store: &PostgresStore) -> Self {
        let d = Tables::of(store).dead_letters;
        let columns = "position, event_id, stream_id, version, event_type, schema_version, payload, \
                   metadata::text AS metadata, cause_kind, cause_message, cause_found, cause_supported, \
                   parked_at_ns, replay_requested_at_ns";
        PgDeadLetterStore {
            pool: store.pool().clone(),
            park: format!(
                "INSERT INTO {d} (subscription, position, event_id, stream_id, version, event_type, \
                   schema_version, payload, metadata, cause_kind, cause_message, cause_found, \
                   cause_supported, parked_at_ns) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11, $12, $13, $14) \
                 ON CONFLICT (subscription, position) DO NOTHING"
            ),
            list: format!("SELECT {columns} FROM {d} WHERE subscription = $1 ORDER BY position"),
            request_all: format!(
                "UPDATE {d} SET replay_requested_at_ns = coalesce(replay_requested_at_ns, $2) \
                 WHERE subscription = $1 RETURNING position"
            ),
            request_some: format!(
                "UPDATE {d} SET replay_requested_at_ns = coalesce(replay_requested_at_ns, $2) \
                 WHERE subscription = $1 AND position = ANY($3) RETURNING position"
            ),
            requested: format!(
                "SELECT {columns} FROM {d} \
                 WHERE subscription = $1 AND replay_requested_at_ns IS NOT NULL ORDER BY position"
            ),
            replay_failed: format!(
                "UPDATE {d} SET replay_requested_at_ns = NULL, cause_kind = $3, cause_message = $4, \
                   cause_found = $5, cause_supported = $6 \
                 WHERE subscription = $1 AND position = $2"
            ),
            remove: format!("DELETE FROM {d} WHERE subscription = $1 AND position = $2"),
            counts: format!("SELECT subscription, count(*) FROM {d} GROUP BY subscription ORDER BY subscription"),
        }
    }

    /// How many letters each subscription has parked (subscriptions with
    /// none are absent). For operators and tools; one grouped count, no
    /// payloads read.
    ///
    /// ```no_run
    /// # async fn demo(store: eventcore_postgres::PostgresStore) -> Result<(), eventcore_store::DeadLetterError> {
    /// use eventcore_postgres::PgDeadLetterStore;
    /// for (subscription, parked) in PgDeadLetterStore::new(&store).counts().await? {
    ///     println!("{subscription}: {parked} parked");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn counts(&self) -> Result<BTreeMap<String, u64>, DeadLetterError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(&self.counts)
            .fetch_all(&self.pool)
            .await
            .map_err(dead_letter_error)?;
        Ok(rows.into_iter().map(|(name, n)| (name, u64_of(n))).collect())
    }
}

impl DeadLetterStore for PgDeadLetterStore {
    async fn park(&self, letter: DeadLetter) -> Result<(), DeadLetterError> {
        observe(
            &self.pool,
            Op::DeadLetterPark,
            Fields::named(&letter.subscription),
            async {
                let event = &letter.event;
                let metadata =
                    serde_json::to_string(&*event.metadata).map_err(|e| DeadLetterError::Permanent(e.to_string()))?;
                let (kind, message, found, supported) = cause_columns(&letter.poison.cause);
                sqlx::query(&self.park)
                    .bind(&letter.subscription)
                    .bind(i64_of(event.position.get()))
                    .bind(event.event_id.as_uuid())
                    .bind(event.stream_id.as_str())
                    .bind(i64_of(event.version.get()))
                    .bind(event.event_type.as_str())
                    .bind(i32::try_from(event.schema_version).unwrap_or(i32::MAX))
                    .bind(event.payload.as_json())
                    .bind(metadata)
                    .bind(kind)
                    .bind(message)
                    .bind(found)
                    .bind(supported)
                    .bind(i64_of(letter.parked_at.as_unix_nanos()))
                    .execute(&self.pool)
                    .await
                    .map_err(dead_letter_error)?;
                Ok(())
            },
        )
        .await
    }

    async fn list(&self, subscription: &str) -> Result<Vec<DeadLetter>, DeadLetterError> {
        observe(&self.pool, Op::DeadLetterList, Fields::named(subscription), async {
            let rows = sqlx::query(&self.list)
                .bind(subscription)
                .fetch_all(&self.pool)
                .await
                .map_err(dead_letter_error)?;
            rows.iter().map(|row| letter(subscription, row)).collect()
        })
        .await
    }

    async fn remove(&self, subscription: &str, position: GlobalPosition) -> Result<bool, DeadLetterError> {
        observe(&self.pool, Op::DeadLetterRemove, Fields::named(subscription), async {
            let done = sqlx::query(&self.remove)
                .bind(subscription)
                .bind(i64_of(position.get()))
                .execute(&self.pool)
                .await
                .map_err(dead_letter_error)?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    async fn request_replay(
        &self,
        subscription: &str,
        which: &ReplaySelection,
        at: Time,
    ) -> Result<Vec<GlobalPosition>, DeadLetterError> {
        observe(
            &self.pool,
            Op::DeadLetterRequestReplay,
            Fields::named(subscription),
            async {
                let at = i64_of(at.as_unix_nanos());
                let query = match which {
                    ReplaySelection::All => sqlx::query_scalar(&self.request_all).bind(subscription).bind(at),
                    ReplaySelection::Positions(positions) => {
                        let positions: Vec<i64> = positions.iter().map(|p| i64_of(p.get())).collect();
                        sqlx::query_scalar(&self.request_some)
                            .bind(subscription)
                            .bind(at)
                            .bind(positions)
                    }
                };
                let mut positions: Vec<i64> = query.fetch_all(&self.pool).await.map_err(dead_letter_error)?;
                positions.sort_unstable();
                Ok(positions.into_iter().map(|p| GlobalPosition::new(u64_of(p))).collect())
            },
        )
        .await
    }

    async fn replay_requested(&self, subscription: &str) -> Result<Vec<DeadLetter>, DeadLetterError> {
        observe(&self.pool, Op::DeadLetterList, Fields::named(subscription), async {
            let rows = sqlx::query(&self.requested)
                .bind(subscription)
                .fetch_all(&self.pool)
                .await
                .map_err(dead_letter_error)?;
            rows.iter().map(|row| letter(subscription, row)).collect()
        })
        .await
    }

    async fn replay_failed(&self, subscription: &str, poison: &PoisonEvent) -> Result<bool, DeadLetterError> {
        observe(
            &self.pool,
            Op::DeadLetterReplayFailed,
            Fields::named(subscription),
            async {
                let (kind, message, found, supported) = cause_columns(&poison.cause);
                let done = sqlx::query(&self.replay_failed)
                    .bind(subscription)
                    .bind(i64_of(poison.position.get()))
                    .bind(kind)
                    .bind(message)
                    .bind(found)
                    .bind(supported)
                    .execute(&self.pool)
                    .await
                    .map_err(dead_letter_error)?;
                Ok(done.rows_affected() > 0)
            },
        )
        .await
    }
}
