//! Reads: several streams in one round trip, one stream as a paged stream
//! of events, the global log behind the xid horizon, and row decoding.

use crate::error::{map_error, Phase};
use crate::retention::removed_range;
use crate::sql::INDEX_BITS;
use crate::store::{contract, to_u64};
use crate::PostgresStore;
use eventcore::{
    CausationId, CommandId, CorrelationId, EventId, EventMetadata, EventType, GlobalPosition, Operation, Payload,
    ReadAllRequest, ReadAllResponse, ReadRequest, ReadResponse, RecordedEvent, RemovedRange, StoreError, StreamId,
    StreamRead, StreamSlice, StreamVersion, Time,
};
use eventcore_store::EventStore;
use futures_util::stream::{self, Stream, TryStreamExt};
use sqlx::postgres::PgRow;
use sqlx::Row;
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use uuid::Uuid;

impl PostgresStore {
    /// Reads one stream from `after` on as a stream of events, fetching
    /// `page_size` events per query, so that a very long stream is never
    /// held in memory whole. Each page is its own bounded query.
    ///
    /// ```no_run
    /// # async fn demo(store: eventcore_postgres::PostgresStore) -> Result<(), eventcore::StoreError> {
    /// use eventcore::{StreamId, StreamVersion};
    /// use futures_util::TryStreamExt;
    /// use std::num::NonZeroU32;
    /// let stream = StreamId::new("account-1").expect("valid");
    /// let page = NonZeroU32::new(500).expect("non-zero");
    /// let mut events = std::pin::pin!(store.stream_events(stream, StreamVersion::NONE, page));
    /// while let Some(event) = events.try_next().await? {
    ///     println!("{} v{}", event.event_type, event.version);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn stream_events(
        &self,
        stream: StreamId,
        after: StreamVersion,
        page_size: NonZeroU32,
    ) -> impl Stream<Item = Result<RecordedEvent, StoreError>> + Send + '_ {
        let pages = stream::try_unfold(Some(after), move |cursor| {
            let stream = stream.clone();
            async move {
                let Some(after) = cursor else {
                    return Ok::<_, StoreError>(None);
                };
                let request = ReadRequest {
                    streams: vec![StreamRead { stream, after }],
                    page_size: Some(page_size),
                };
                let mut response = self.read(&request).await?;
                let slice = response.streams.pop().ok_or_else(|| StoreError::ContractViolation {
                    operation: Operation::Read,
                    message: "read answered no slice".to_owned(),
                })?;
                let next = match slice.events.last() {
                    Some(last) if last.version < slice.head => Some(last.version),
                    _ => None,
                };
                Ok(Some((stream::iter(slice.events.into_iter().map(Ok)), next)))
            }
        });
        pages.try_flatten()
    }

    /// The events that the append claiming `command_id` committed, with
    /// their metadata, in global order; empty when no append with that id
    /// committed. One statement: a key lookup in the command table, then
    /// the events at that append's positions; bounded by the operation
    /// timeout.
    ///
    /// This is how a service answers a client that retries a request under
    /// an idempotency key without running anything: one index probe instead
    /// of an execution (which would settle a retry of the same command too,
    /// by finding its own commit among the streams it reads, at the cost of
    /// reading them all and an append round trip). The events' metadata
    /// tells which request the key served, so a key reused for another
    /// request is caught before that request runs (`examples/web`).
    ///
    /// ```no_run
    /// # async fn demo(store: eventcore_postgres::PostgresStore, id: eventcore::CommandId) -> Result<(), eventcore::StoreError> {
    /// let committed = store.command_events(id).await?;
    /// match committed.first() {
    ///     Some(first) => println!("{id} committed {} events from position {}", committed.len(), first.position),
    ///     None => println!("{id} never committed"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn command_events(&self, command_id: CommandId) -> Result<Vec<RecordedEvent>, StoreError> {
        let s = format!("\"{}\"", self.options.schema);
        // Column order: the stream id, then `RowDecoder`'s (see `sql.rs`).
        let sql = format!(
            "SELECT e.stream_id, e.position, e.event_id, e.version, e.event_type, e.schema_version, \
               e.payload::text AS payload, e.command_id, e.correlation_id, e.causation_id, \
               e.decided_at, e.user_metadata::text AS user_metadata, e.payload_bin \
             FROM {s}.commands c JOIN {s}.events e \
               ON e.position >= (c.xid << {INDEX_BITS}) + c.first_index \
              AND e.position < (c.xid << {INDEX_BITS}) + c.first_index + c.event_count \
             WHERE c.command_id = $1 ORDER BY e.position"
        );
        self.bounded(Operation::Read, async {
            let failed = |e| map_error(Operation::Read, Phase::Executing, e, None);
            let rows = sqlx::query(&sql)
                .bind(command_id.as_uuid())
                .fetch_all(&self.pool)
                .await
                .map_err(failed)?;
            let mut decoder = RowDecoder::new(1);
            let mut events = Vec::with_capacity(rows.len());
            for row in &rows {
                if let Some(event) = decoder.decode(row, Operation::Read, None)? {
                    events.push(event);
                    decoder.row_done();
                }
            }
            Ok(events)
        })
        .await
    }

    pub(crate) async fn read_inner(&self, request: &ReadRequest) -> Result<ReadResponse, StoreError> {
        request.validate()?;
        let ids: Vec<&str> = request.streams.iter().map(|r| r.stream.as_str()).collect();
        let afters: Vec<i64> = request
            .streams
            .iter()
            .map(|r| i64::try_from(r.after.get()).unwrap_or(i64::MAX))
            .collect();
        let page = request.page_size.map(|p| i64::from(p.get()));
        let mut conn = self.acquire(Operation::Read).await?;
        let mut slices: Vec<StreamSlice> = request
            .streams
            .iter()
            .map(|r| StreamSlice {
                stream: r.stream.clone(),
                head: StreamVersion::NONE,
                events: Vec::new(),
                deleted_at: None,
                removed_through: StreamVersion::NONE,
            })
            .collect();
        // Rows are decoded as they arrive, while the server is still sending
        // the rest, rather than collected first and decoded after.
        let mut rows = sqlx::query(&self.sql.read)
            .bind(&ids)
            .bind(&afters)
            .bind(page)
            .fetch(&mut *conn);
        let mut decoder = RowDecoder::new(4);
        let failed = |e| map_error(Operation::Read, Phase::Executing, e, None);
        while let Some(row) = rows.try_next().await.map_err(failed)? {
            let ord: i32 = value(&row, 0, decoder.checked).map_err(|e| contract(Operation::Read, e))?;
            let index = usize::try_from(ord).ok().and_then(|o| o.checked_sub(1));
            let (Some(slice), Some(read)) = (
                index.and_then(|o| slices.get_mut(o)),
                index.and_then(|o| request.streams.get(o)),
            ) else {
                return Err(StoreError::ContractViolation {
                    operation: Operation::Read,
                    message: format!("row for unrequested stream index {ord}"),
                });
            };
            let head: i64 = value(&row, 1, decoder.checked).map_err(|e| contract(Operation::Read, e))?;
            let head = StreamVersion::new(to_u64(head));
            if slice.events.is_empty() {
                // Sized once from the head instead of grown by doubling;
                // capped so that a wrong head cannot cost a huge allocation.
                let expected = head.get().saturating_sub(read.after.get());
                let expected = page.map_or(expected, |p| expected.min(to_u64(p)));
                slice.events.reserve(usize::try_from(expected.min(65_536)).unwrap_or(0));
            }
            slice.head = head;
            let deleted_at: Option<i64> = value(&row, 2, decoder.checked).map_err(|e| contract(Operation::Read, e))?;
            slice.deleted_at = deleted_at.map(|v| StreamVersion::new(to_u64(v)));
            let removed: i64 = value(&row, 3, decoder.checked).map_err(|e| contract(Operation::Read, e))?;
            slice.removed_through = StreamVersion::new(to_u64(removed));
            if let Some(event) = decoder.decode(&row, Operation::Read, Some(&slice.stream))? {
                slice.events.push(event);
                decoder.row_done();
            }
        }
        drop(rows);
        for slice in &mut slices {
            if !slice.events.windows(2).all(|w| w[0].version < w[1].version) {
                slice.events.sort_by_key(|e| e.version);
            }
        }
        Ok(ReadResponse { streams: slices })
    }

    pub(crate) async fn read_all_inner(&self, request: &ReadAllRequest) -> Result<ReadAllResponse, StoreError> {
        let filter = &request.filter;
        let sql = self.sql.read_all(
            !filter.streams.is_empty(),
            filter.stream_prefix.is_some(),
            !filter.event_types.is_empty(),
        );
        let after = i64::try_from(request.after.get()).unwrap_or(i64::MAX);
        let limit = i64::from(request.limit.get());
        let streams: Vec<&str> = filter.streams.iter().map(StreamId::as_str).collect();
        let types: Vec<&str> = filter.event_types.iter().map(EventType::as_str).collect();
        let mut conn = self.acquire(Operation::ReadAll).await?;
        let mut waited = false;
        loop {
            let mut query = sqlx::query(&sql).bind(after).bind(limit);
            if !streams.is_empty() {
                query = query.bind(&streams);
            }
            if let Some(prefix) = &filter.stream_prefix {
                query = query.bind(prefix.as_str());
            }
            if !types.is_empty() {
                query = query.bind(&types);
            }
            // Decoded as they arrive (see `read_inner`); every row carries
            // the horizon and the newest position, the first one is enough.
            let failed = |e| map_error(Operation::ReadAll, Phase::Executing, e, None);
            let mut rows = query.fetch(&mut *conn);
            let mut decoder = RowDecoder::new(4);
            let mut events = Vec::with_capacity(usize::try_from(request.limit.get()).unwrap_or(0).min(1024));
            let mut found: Option<(i64, Option<i64>)> = None;
            let mut removed: Option<String> = None;
            while let Some(row) = rows.try_next().await.map_err(failed)? {
                if found.is_none() {
                    let horizon: i64 = row.try_get(0).map_err(|e| contract(Operation::ReadAll, e))?;
                    let newest: Option<i64> = row.try_get(1).map_err(|e| contract(Operation::ReadAll, e))?;
                    found = Some((horizon, newest));
                }
                // Only the row without an event carries the removed ranges.
                if removed.is_none() {
                    removed = row.try_get(2).map_err(|e| contract(Operation::ReadAll, e))?;
                }
                if let Some(event) = decoder.decode(&row, Operation::ReadAll, None)? {
                    events.push(event);
                    decoder.row_done();
                }
            }
            drop(rows);
            let (horizon, newest) = found.ok_or_else(|| StoreError::ContractViolation {
                operation: Operation::ReadAll,
                message: "read-all answered no row".to_owned(),
            })?;
            if !events.windows(2).all(|w| w[0].position < w[1].position) {
                events.sort_by_key(|e| e.position);
            }
            let full = events.len() as u64 >= u64::from(request.limit.get());
            // Committed events at or above the horizon are held back by a
            // transaction that may still commit below them. Wait (briefly)
            // for it once, so that a reader sees what committed before it
            // asked, then answer with what is final.
            let held_back = newest.is_some_and(|n| n >= horizon && n > after);
            if held_back && !full && !waited && !self.options.read_all_settle.is_zero() {
                waited = true;
                let target = newest.unwrap_or(0) >> INDEX_BITS;
                // The wait is a statement: it must end before the server's
                // statement timeout cancels it (at most three quarters of it).
                let settle = self.options.read_all_settle.min(self.options.statement_timeout * 3 / 4);
                let wait_ms = i32::try_from(settle.as_millis()).unwrap_or(i32::MAX);
                sqlx::query(&self.sql.await_horizon)
                    .bind(target)
                    .bind(wait_ms)
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| map_error(Operation::ReadAll, Phase::Executing, e, None))?;
                continue;
            }
            // Everything below the horizon is final. Capped at the newest
            // committed event so that a quiescent store reports its last
            // position (and an empty one reports START), as memory does.
            let settled = horizon.saturating_sub(1).min(newest.unwrap_or(0));
            let mut complete_through = match events.last() {
                Some(last) if full => last.position,
                _ => GlobalPosition::new(to_u64(settled)).max(request.after),
            };
            let mut removed = match removed {
                Some(json) => removed_ranges(&json)?,
                None => Vec::new(),
            };
            // As many ranges as the limit: more may end above the last one,
            // so the answer is complete only through it.
            if removed.len() as u64 >= u64::from(request.limit.get()) {
                if let Some(last) = removed.last() {
                    complete_through = complete_through.min(last.last_position);
                    events.retain(|e| e.position <= complete_through);
                }
            }
            removed.retain(|r| r.last_position <= complete_through);
            return Ok(ReadAllResponse {
                events,
                complete_through,
                removed,
            });
        }
    }
}

/// The removed ranges of a `read_all` row: a JSON array of
/// `[stream, first version, last version, first position, last position,
/// reason, removed at]` (see `Statements::read_all_prefix`).
fn removed_ranges(json: &str) -> Result<Vec<RemovedRange>, StoreError> {
    type Row = (String, i64, i64, i64, i64, String, i64);
    let rows: Vec<Row> = serde_json::from_str(json).map_err(|e| StoreError::ContractViolation {
        operation: Operation::ReadAll,
        message: format!("removed ranges are not as expected: {e}"),
    })?;
    rows.into_iter()
        .map(|(stream, fv, lv, fp, lp, reason, at)| removed_range(stream, [fv, lv, fp, lp], reason, at))
        .collect()
}

/// Decodes event rows. Consecutive events of one append share their
/// metadata, and most events share a few type names: both are built once and
/// shared, not once per row. Columns are read by index (by name would cost a
/// hash lookup per column and row), in the order of `Statements`'
/// `event_columns`, which start at index `first`; a `read_all` row has the
/// stream id just before them.
struct RowDecoder {
    first: usize,
    metadata: Option<(Uuid, Arc<EventMetadata>)>,
    event_type: Option<EventType>,
    /// The first row's column types were checked against the Rust types:
    /// every later row of the same statement has the same columns, so it
    /// skips sqlx's per-value type check (each value's decoder still checks
    /// its bytes: a wrong width or invalid UTF-8 is still an error).
    checked: bool,
}

/// One value of `row`: type-checked on the statement's first row only.
fn value<'r, T>(row: &'r PgRow, index: usize, checked: bool) -> Result<T, sqlx::Error>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    if checked {
        row.try_get_unchecked(index)
    } else {
        row.try_get(index)
    }
}

impl RowDecoder {
    fn new(first: usize) -> Self {
        RowDecoder {
            first,
            metadata: None,
            event_type: None,
            checked: false,
        }
    }

    /// Marks the statement's first row as type-checked (call after the
    /// row's own columns were read).
    fn row_done(&mut self) {
        self.checked = true;
    }

    /// Decodes the event columns of a row; `None` when the row carries no
    /// event (a stream or read with nothing after the requested point).
    /// `stream` is the stream the row belongs to when the query did not
    /// return it.
    fn decode(
        &mut self,
        row: &PgRow,
        operation: Operation,
        stream: Option<&StreamId>,
    ) -> Result<Option<RecordedEvent>, StoreError> {
        let get = |e| contract(operation, e);
        let c = self.checked;
        let position: Option<i64> = value(row, self.first, c).map_err(get)?;
        let Some(position) = position else {
            return Ok(None);
        };
        let bad = |what: &str, detail: String| StoreError::ContractViolation {
            operation,
            message: format!("event at position {position} has an invalid {what}: {detail}"),
        };
        let event_id: Uuid = value(row, self.first + 1, c).map_err(get)?;
        let stream_id = match stream {
            Some(stream) => stream.clone(),
            None => {
                let id: &str = value(row, self.first - 1, c).map_err(get)?;
                StreamId::new(id).map_err(|e| bad("stream id", e.to_string()))?
            }
        };
        let version: i64 = value(row, self.first + 2, c).map_err(get)?;
        let type_name: &str = value(row, self.first + 3, c).map_err(get)?;
        let event_type = match &self.event_type {
            Some(known) if known.as_str() == type_name => known.clone(),
            _ => {
                let parsed = EventType::new(type_name).map_err(|e| bad("event type", e.to_string()))?;
                self.event_type = Some(parsed.clone());
                parsed
            }
        };
        let schema_version: i32 = value(row, self.first + 4, c).map_err(get)?;
        // JSON, or else MessagePack (migration 0005: exactly one is set).
        let payload = match value::<Option<&str>>(row, self.first + 5, c).map_err(get)? {
            Some(json) => Payload::from_trusted_json(json),
            None => {
                let bytes: Option<&[u8]> = value(row, self.first + 11, c).map_err(get)?;
                binary_payload(bytes.ok_or_else(|| bad("payload", "neither JSON nor binary".to_owned()))?)
                    .map_err(|detail| bad("payload", detail))?
            }
        };
        let command_id: Uuid = value(row, self.first + 6, c).map_err(get)?;
        let metadata = match &self.metadata {
            Some((id, meta)) if *id == command_id => meta.clone(),
            _ => {
                let correlation_id: Option<Uuid> = value(row, self.first + 7, c).map_err(get)?;
                let correlation_id = correlation_id.unwrap_or(command_id);
                let causation_id: Option<Uuid> = value(row, self.first + 8, c).map_err(get)?;
                let decided_at: i64 = value(row, self.first + 9, c).map_err(get)?;
                let user: Option<&str> = value(row, self.first + 10, c).map_err(get)?;
                let user = match user {
                    Some(text) => serde_json::from_str(text).map_err(|e| bad("user metadata", e.to_string()))?,
                    None => BTreeMap::new(),
                };
                let meta = Arc::new(EventMetadata {
                    command_id: CommandId::from_uuid(command_id),
                    correlation_id: CorrelationId::from_uuid(correlation_id),
                    causation_id: causation_id.map(CausationId::from_uuid),
                    timestamp: Time::from_unix_nanos(u64::from_ne_bytes(decided_at.to_ne_bytes())),
                    user,
                });
                self.metadata = Some((command_id, meta.clone()));
                meta
            }
        };
        Ok(Some(RecordedEvent {
            event_id: EventId::from_uuid(event_id),
            stream_id,
            version: StreamVersion::new(to_u64(version)),
            position: GlobalPosition::new(to_u64(position)),
            event_type,
            schema_version: u32::try_from(schema_version).map_err(|e| bad("schema version", e.to_string()))?,
            payload,
            metadata,
        }))
    }
}

/// A payload read from the `payload_bin` column.
#[cfg(feature = "binary-codec")]
fn binary_payload(bytes: &[u8]) -> Result<Payload, String> {
    Ok(Payload::from_trusted_msgpack(bytes))
}

/// Without the `binary-codec` feature a MessagePack payload cannot be read.
#[cfg(not(feature = "binary-codec"))]
fn binary_payload(_: &[u8]) -> Result<Payload, String> {
    Err("it is MessagePack, and eventcore-postgres was built without its `binary-codec` feature".to_owned())
}
