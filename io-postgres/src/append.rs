//! Appends: the single-statement append, the `append()` function (for a
//! command id claimed before, and inside a caller's transaction), and the
//! one encoding of an append into the statements' parameters, shared with
//! group commit (`batch.rs`).

use crate::error::{map_error, Phase};
use crate::sql::INDEX_BITS;
use crate::store::{contract, to_u64};
use crate::PostgresStore;
use eventcore::{
    AppendReceipt, AppendRequest, ExpectedVersion, GlobalPosition, InvalidAppend, Operation, StoreError, StreamCommit,
    StreamId, StreamVersion,
};
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{Connection, Row};
use std::collections::BTreeMap;
use uuid::Uuid;

impl PostgresStore {
    /// Appends inside a transaction (or on a connection) of the caller's:
    /// the events commit, and become visible to readers, when that
    /// transaction commits, together with whatever else it wrote. Used for
    /// outbox-style writes and by tests that hold an append open.
    ///
    /// Several appends in one transaction are fine (each gets its own
    /// positions); the caller's transaction must run at READ COMMITTED.
    ///
    /// ```no_run
    /// # async fn demo(store: eventcore_postgres::PostgresStore, request: eventcore::AppendRequest) -> Result<(), Box<dyn std::error::Error>> {
    /// use sqlx::Connection;
    /// let mut conn = store.pool().acquire().await?;
    /// let mut tx = conn.begin().await?;
    /// let receipt = store.append_in(&mut tx, &request).await?;
    /// tx.commit().await?;
    /// # let _ = receipt;
    /// # Ok(()) }
    /// ```
    pub async fn append_in(
        &self,
        conn: &mut PgConnection,
        request: &AppendRequest,
    ) -> Result<AppendReceipt, StoreError> {
        request.validate(&self.options.limits)?;
        let request = request.for_store(self.options.codec)?;
        self.append_on(conn, &request).await
    }

    /// An append through the `append()` function (`Statements::append`):
    /// it finds the stored receipt of a command id claimed before, and runs
    /// inside the caller's transaction. A tombstone (migration 0008) is
    /// written right after the events, on the same connection: only inside
    /// a transaction is it atomic with them. The request's payloads are as the
    /// store keeps them ([`AppendRequest::for_store`]).
    pub(crate) async fn append_on(
        &self,
        conn: &mut PgConnection,
        request: &AppendRequest,
    ) -> Result<AppendReceipt, StoreError> {
        let mut columns = AppendColumns::with_capacity(request.streams.len(), request.event_count());
        columns.push(request)?;
        let meta = MetadataColumns::of(request);
        let row = bind_append(sqlx::query(&self.sql.append), request, &meta, &columns)
            .bind(lock_order(request))
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| map_error(Operation::Append, Phase::Executing, e, Some(request)))?;
        let receipt = receipt_from_row(request, &row)?;
        let ended: Vec<&str> = request
            .streams
            .iter()
            .filter(|entry| entry.tombstone)
            .map(|entry| entry.stream.as_str())
            .collect();
        if !ended.is_empty() && !receipt.deduplicated {
            // In the append's transaction (the caller's, or the one
            // `PostgresStore::append` opens for a tombstone): the heads are
            // this append's, still locked.
            sqlx::query(&self.sql.tombstone)
                .bind(&ended)
                .execute(&mut *conn)
                .await
                .map_err(|e| map_error(Operation::Append, Phase::Executing, e, Some(request)))?;
        }
        Ok(receipt)
    }

    /// An append that ends streams (`StreamAppend::tombstone`): `append()`
    /// and the tombstone in one transaction of its own, so both commit or
    /// neither does. A re-sent command id gets the stored receipt, and the
    /// tombstone is not written twice. The request's payloads are as the
    /// store keeps them.
    pub(crate) async fn append_ending(
        &self,
        conn: &mut PgConnection,
        request: &AppendRequest,
    ) -> Result<AppendReceipt, StoreError> {
        // BEGIN writes nothing: its failure is a failure to start.
        let mut tx = conn
            .begin()
            .await
            .map_err(|e| map_error(Operation::Append, Phase::Connecting, e, Some(request)))?;
        // On an error the transaction is dropped, which rolls it back.
        let receipt = self.append_on(&mut tx, request).await?;
        tx.commit()
            .await
            .map_err(|e| map_error(Operation::Append, Phase::Executing, e, Some(request)))?;
        Ok(receipt)
    }

    /// The single-statement append (`Statements::append_alone`) on a
    /// connection outside any transaction; `None` when the command id was
    /// claimed before (the statement failed on `commands_pkey` and wrote
    /// nothing: `append()` has the receipt). The request's payloads are as
    /// the store keeps them.
    pub(crate) async fn append_alone(
        &self,
        conn: &mut PgConnection,
        request: &AppendRequest,
    ) -> Result<Option<AppendReceipt>, StoreError> {
        let mut columns = AppendColumns::with_capacity(request.streams.len(), request.event_count());
        columns.push(request)?;
        let meta = MetadataColumns::of(request);
        let result = bind_append(sqlx::query(&self.sql.append_alone), request, &meta, &columns)
            .fetch_one(&mut *conn)
            .await;
        match result {
            Ok(row) => receipt_from_row(request, &row).map(Some),
            Err(sqlx::Error::Database(db))
                if db.code().as_deref() == Some(UNIQUE_VIOLATION) && db.constraint() == Some(CLAIM) =>
            {
                Ok(None)
            }
            Err(e) => Err(map_error(Operation::Append, Phase::Executing, e, Some(request))),
        }
    }
}

/// SQLSTATE of a unique violation.
const UNIQUE_VIOLATION: &str = "23505";
/// The constraint a command id claimed before violates.
const CLAIM: &str = "commands_pkey";

/// A statement with its parameters bound so far.
pub(crate) type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Binds one append's parameters in the order every single-append
/// statement takes them (`Statements::append`, `Statements::append_alone`):
/// `$1` the command id, `$2`–`$5` its metadata ([`MetadataColumns`]),
/// `$6`–`$16` its streams and events ([`AppendColumns::bind`]).
fn bind_append<'q>(
    query: PgQuery<'q>,
    request: &AppendRequest,
    meta: &MetadataColumns<'q>,
    columns: &'q AppendColumns<'q>,
) -> PgQuery<'q> {
    let query = query
        .bind(request.command_id().as_uuid())
        .bind(meta.correlation_id)
        .bind(meta.causation_id)
        .bind(meta.decided_at)
        .bind(meta.user);
    columns.bind(query)
}

/// The receipt of `request` from the row `append()` (or `append_batch()`)
/// answered: on a fresh append the heads before it, from which the request
/// gives everything else; on a re-sent command id the stored receipt.
pub(crate) fn receipt_from_row(request: &AppendRequest, row: &PgRow) -> Result<AppendReceipt, StoreError> {
    let get = |e| contract(Operation::Append, e);
    let deduplicated: bool = row.try_get("deduplicated").map_err(get)?;
    let xid: i64 = row.try_get("xid").map_err(get)?;
    let first_index: i32 = row.try_get("first_index").map_err(get)?;
    let mismatch = |what: &str| StoreError::ContractViolation {
        operation: Operation::Append,
        message: format!("append answered {what}"),
    };
    if !deduplicated {
        let heads: Vec<i64> = row
            .try_get::<Option<Vec<i64>>, _>("heads")
            .map_err(get)?
            .ok_or_else(|| mismatch("no heads"))?;
        return receipt_from_heads(request, xid, first_index, heads);
    }
    let stream_ids: Option<Vec<String>> = row.try_get("stream_ids").map_err(get)?;
    let first_versions: Option<Vec<i64>> = row.try_get("first_versions").map_err(get)?;
    let counts: Option<Vec<i32>> = row.try_get("counts").map_err(get)?;
    let (stream_ids, first_versions, counts) = (
        stream_ids.unwrap_or_default(),
        first_versions.unwrap_or_default(),
        counts.unwrap_or_default(),
    );
    if stream_ids.len() != first_versions.len() || stream_ids.len() != counts.len() {
        return Err(mismatch("arrays of different lengths"));
    }
    let mut next = (to_u64(xid) << INDEX_BITS) + u64::try_from(first_index).unwrap_or(0);
    let mut streams = Vec::with_capacity(stream_ids.len());
    for ((id, first), count) in stream_ids.into_iter().zip(first_versions).zip(counts) {
        let stream = StreamId::new(&id).map_err(|e| StoreError::ContractViolation {
            operation: Operation::Append,
            message: format!("stored stream id {id:?} is invalid: {e}"),
        })?;
        let (first, count) = (to_u64(first), u64::try_from(count).unwrap_or(0));
        streams.push(StreamCommit {
            stream,
            first_version: StreamVersion::new(first),
            last_version: StreamVersion::new(first + count.saturating_sub(1)),
            positions: (0..count).map(|i| GlobalPosition::new(next + i)).collect(),
        });
        next += count;
    }
    Ok(AppendReceipt {
        command_id: request.command_id(),
        streams,
        deduplicated: true,
    })
}

/// The receipt of a fresh append of `request` from its transaction id, the
/// index of its first event in that transaction and the head of each of its
/// streams before it (request order): its events took consecutive positions
/// in request order.
fn receipt_from_heads(
    request: &AppendRequest,
    xid: i64,
    first_index: i32,
    heads: Vec<i64>,
) -> Result<AppendReceipt, StoreError> {
    if heads.len() != request.streams.len() {
        return Err(StoreError::ContractViolation {
            operation: Operation::Append,
            message: format!(
                "append answered {} heads for {} streams",
                heads.len(),
                request.streams.len()
            ),
        });
    }
    let mut next = (to_u64(xid) << INDEX_BITS) + u64::try_from(first_index).unwrap_or(0);
    let mut streams = Vec::with_capacity(request.streams.len());
    for (entry, head) in request.streams.iter().zip(heads) {
        let count = entry.events.len() as u64;
        if count == 0 {
            continue;
        }
        let first = to_u64(head) + 1;
        streams.push(StreamCommit {
            stream: entry.stream.clone(),
            first_version: StreamVersion::new(first),
            last_version: StreamVersion::new(first + count - 1),
            positions: (0..count).map(|i| GlobalPosition::new(next + i)).collect(),
        });
        next += count;
    }
    Ok(AppendReceipt {
        command_id: request.command_id(),
        streams,
        deduplicated: false,
    })
}

/// An append's metadata as the columns `append()` stores it in.
pub(crate) struct MetadataColumns<'a> {
    /// `None` when it is the command id.
    pub(crate) correlation_id: Option<Uuid>,
    pub(crate) causation_id: Option<Uuid>,
    pub(crate) decided_at: i64,
    /// `None` when the caller supplied no key/values.
    pub(crate) user: Option<sqlx::types::Json<&'a BTreeMap<String, String>>>,
}

impl<'a> MetadataColumns<'a> {
    pub(crate) fn of(request: &'a AppendRequest) -> Self {
        let meta = &*request.metadata;
        let user = if meta.user.is_empty() {
            None
        } else {
            Some(sqlx::types::Json(&meta.user))
        };
        let correlation = meta.correlation_id.as_uuid();
        MetadataColumns {
            // NULL stands for "the command id" (see migration 0001).
            correlation_id: (correlation != meta.command_id.as_uuid()).then_some(correlation),
            causation_id: meta.causation_id.map(|c| c.as_uuid()),
            // Bit for bit: every u64 survives the round trip through bigint.
            decided_at: i64::from_ne_bytes(meta.timestamp.as_unix_nanos().to_ne_bytes()),
            user,
        }
    }
}

/// For each stream of `request`, by the bytewise order of stream ids, its
/// 1-based index within the request: the order the `append()` function locks
/// heads in (the single-statement append and `append_batch()` sort in SQL).
/// Rust compares `str` bytewise, as PostgreSQL's "C" collation does.
fn lock_order(request: &AppendRequest) -> Vec<i32> {
    let mut order: Vec<usize> = (0..request.streams.len()).collect();
    order.sort_unstable_by_key(|&i| request.streams[i].stream.as_str());
    order
        .into_iter()
        .map(|i| i32::try_from(i + 1).unwrap_or(i32::MAX))
        .collect()
}

/// An expected version as the `(kind, version)` columns the append
/// statements check it from: kind 0 any, 1 no stream, 2 stream exists,
/// 3 exactly `version` (the codes the SQL of `Statements::append_alone` and
/// of the `append()`/`append_batch()` functions test).
fn expected_columns(expected: ExpectedVersion) -> (i16, i64) {
    match expected {
        ExpectedVersion::Any => (0, 0),
        ExpectedVersion::NoStream => (1, 0),
        ExpectedVersion::StreamExists => (2, 0),
        ExpectedVersion::Exact(v) => (3, i64::try_from(v.get()).unwrap_or(i64::MAX)),
    }
}

/// Appends flattened into the column arrays that the `append()` and
/// `append_batch()` database functions take.
#[derive(Debug, Default)]
pub(crate) struct AppendColumns<'a> {
    pub(crate) stream_ids: Vec<&'a str>,
    pub(crate) kinds: Vec<i16>,
    pub(crate) versions: Vec<i64>,
    pub(crate) counts: Vec<i32>,
    /// For each event, the 1-based index of its stream within its request.
    pub(crate) event_stream: Vec<i32>,
    /// For each event, its 1-based offset among its stream's events.
    pub(crate) event_offset: Vec<i32>,
    pub(crate) event_ids: Vec<sqlx::types::Uuid>,
    pub(crate) event_types: Vec<&'a str>,
    pub(crate) schema_versions: Vec<i32>,
    /// For each event its JSON payload, `None` when it is binary.
    pub(crate) payloads: Vec<Option<&'a str>>,
    /// For each event its MessagePack payload, `None` when it is JSON
    /// (migration 0005).
    pub(crate) payloads_bin: Vec<Option<&'a [u8]>>,
    /// How many events have a binary payload.
    pub(crate) binary: usize,
}

impl<'a> AppendColumns<'a> {
    pub(crate) fn with_capacity(streams: usize, events: usize) -> Self {
        AppendColumns {
            stream_ids: Vec::with_capacity(streams),
            kinds: Vec::with_capacity(streams),
            versions: Vec::with_capacity(streams),
            counts: Vec::with_capacity(streams),
            event_stream: Vec::with_capacity(events),
            event_offset: Vec::with_capacity(events),
            event_ids: Vec::with_capacity(events),
            event_types: Vec::with_capacity(events),
            schema_versions: Vec::with_capacity(events),
            payloads: Vec::with_capacity(events),
            payloads_bin: Vec::with_capacity(events),
            binary: 0,
        }
    }

    /// Checks what the database could refuse without saying which event
    /// (the same checks, and errors, as the memory store), then adds the
    /// request's streams and events. Nothing is added when it fails.
    pub(crate) fn push(&mut self, request: &'a AppendRequest) -> Result<(), InvalidAppend> {
        Self::check(request)?;
        self.push_checked(request);
        Ok(())
    }

    /// What [`AppendColumns::push`] checks, without adding anything.
    pub(crate) fn check(request: &AppendRequest) -> Result<(), InvalidAppend> {
        for entry in &request.streams {
            for event in &entry.events {
                if i32::try_from(event.schema_version).is_err() {
                    return Err(InvalidAppend::Rejected {
                        stream: entry.stream.clone(),
                        reason: format!(
                            "schema version {} of {} does not fit PostgreSQL's integer",
                            event.schema_version, event.event_type
                        ),
                    });
                }
                event
                    .payload
                    .check_storable()
                    .map_err(|reason| InvalidAppend::Rejected {
                        stream: entry.stream.clone(),
                        reason: format!("{} event: {reason}", event.event_type),
                    })?;
            }
        }
        Ok(())
    }

    /// Binds the columns, in the order every append statement takes them
    /// after its per-request parameters: stream ids, expected-version kinds,
    /// expected versions, event counts (per stream), then the stream index,
    /// offset, id, type, schema version, JSON payload and binary payload of
    /// each event. A payload array whose every element would be NULL is
    /// sent empty (the statements' `unnest` pads it with NULLs): an append
    /// in one codec sends one array of payloads, as before migration 0005.
    pub(crate) fn bind<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q> {
        let all_binary = self.binary > 0 && self.binary == self.payloads.len();
        let json: &'q [Option<&'q str>] = if all_binary { &[] } else { &self.payloads };
        let binary: &'q [Option<&'q [u8]>] = if self.binary == 0 { &[] } else { &self.payloads_bin };
        query
            .bind(&self.stream_ids)
            .bind(&self.kinds)
            .bind(&self.versions)
            .bind(&self.counts)
            .bind(&self.event_stream)
            .bind(&self.event_offset)
            .bind(&self.event_ids)
            .bind(&self.event_types)
            .bind(&self.schema_versions)
            .bind(json)
            .bind(binary)
    }

    /// Adds a request that [`AppendColumns::check`] accepted.
    pub(crate) fn push_checked(&mut self, request: &'a AppendRequest) {
        for (index, entry) in request.streams.iter().enumerate() {
            let (kind, version) = expected_columns(entry.expected);
            self.stream_ids.push(entry.stream.as_str());
            self.kinds.push(kind);
            self.versions.push(version);
            self.counts.push(i32::try_from(entry.events.len()).unwrap_or(i32::MAX));
            for (offset, event) in entry.events.iter().enumerate() {
                self.event_stream.push(i32::try_from(index + 1).unwrap_or(i32::MAX));
                self.event_offset.push(i32::try_from(offset + 1).unwrap_or(i32::MAX));
                self.event_ids.push(event.event_id.as_uuid());
                self.event_types.push(event.event_type.as_str());
                self.schema_versions
                    .push(i32::try_from(event.schema_version).unwrap_or(i32::MAX));
                match binary_payload(&event.payload) {
                    Some(bytes) => {
                        self.payloads.push(None);
                        self.payloads_bin.push(Some(bytes));
                        self.binary += 1;
                    }
                    None => {
                        self.payloads.push(Some(event.payload.as_json()));
                        self.payloads_bin.push(None);
                    }
                }
            }
        }
    }
}

/// The bytes of a MessagePack payload, stored in `payload_bin`.
#[cfg(feature = "binary-codec")]
fn binary_payload(payload: &eventcore::Payload) -> Option<&[u8]> {
    payload.as_msgpack()
}

/// Without the `binary-codec` feature every payload is stored as JSON (a
/// MessagePack one, possible when another crate enabled eventcore's
/// feature, as its JSON rendering: the store's codec is JSON).
#[cfg(not(feature = "binary-codec"))]
fn binary_payload(_: &eventcore::Payload) -> Option<&[u8]> {
    None
}
