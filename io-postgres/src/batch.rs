//! Group commit: [`EventStore::append_batch`](eventcore_store::EventStore::append_batch)
//! in one round trip and one transaction.
//!
//! The requests go to the server-side function `append_batch()` (migration
//! 0002) as one set of parallel arrays. It checks the requests in order
//! against working copies of the heads it has locked (a request sees the
//! writes of those before it in the batch) and then writes every request
//! that passed with a few set-based statements, with one WAL flush for the
//! whole group; a request that conflicts writes nothing and fails alone.
//! Each request keeps everything a single append has: its own exact conflict
//! (stream, expected, actual), idempotency by command id (a command id
//! repeated inside one batch is answered with the receipt of the first one
//! that committed), and all-or-nothing across its streams.
//!
//! A request the function cannot answer itself (a twin in flight elsewhere
//! that rolled back), and every request of a batch that the database refused
//! as a whole for something other than the connection, is sent again on its
//! own, so that its error is exactly a single append's.

use crate::append::{receipt_from_row, AppendColumns, MetadataColumns};
use crate::error::{conflict, is_serialization_failure, map_error, Phase, CONFLICT};
use crate::PostgresStore;
use eventcore::{AppendReceipt, AppendRequest, Operation, StoreError};
use eventcore_store::EventStore;
use sqlx::postgres::PgRow;
use sqlx::Row;
use std::borrow::Cow;

impl PostgresStore {
    /// Appends `requests` as one group: one statement, one transaction, one
    /// outcome per request in request order.
    pub(crate) async fn append_group(&self, requests: &[AppendRequest]) -> Vec<Result<AppendReceipt, StoreError>> {
        // A tombstone is written in its append's own transaction
        // (`PostgresStore::append_ending`). Tombstones are rare, so a group
        // holding one runs its requests one by one, in order: a request
        // after the tombstone sees the stream ended, as the contract says.
        if requests.iter().any(|r| r.streams.iter().any(|entry| entry.tombstone)) {
            let mut outcomes = Vec::with_capacity(requests.len());
            for request in requests {
                outcomes.push(self.append(request).await);
            }
            return outcomes;
        }
        let mut outcomes: Vec<Option<Result<AppendReceipt, StoreError>>> = requests
            .iter()
            .map(|r| r.validate(&self.options.limits).err().map(|e| Err(e.into())))
            .collect();
        // Payloads as the store keeps them (`AppendRequest::for_store`); a
        // request whose payloads cannot be converted fails alone, as the
        // single append fails it.
        let mut stored: Vec<Option<Cow<'_, AppendRequest>>> = Vec::with_capacity(requests.len());
        for (request, outcome) in requests.iter().zip(&mut outcomes) {
            stored.push(match outcome {
                Some(_) => None,
                None => match request.for_store(self.options.codec) {
                    Ok(converted) => Some(converted),
                    Err(e) => {
                        *outcome = Some(Err(e.into()));
                        None
                    }
                },
            });
        }
        // What `AppendColumns::push` refuses (a schema version PostgreSQL's
        // integer cannot hold, an unstorable payload) is refused by the single
        // append with its exact error; such a request goes alone.
        let fits = |r: &AppendRequest| AppendColumns::check(r).is_ok();
        let mut alone = Vec::new();
        for (i, request) in stored.iter().enumerate() {
            if outcomes[i].is_none() && !request.as_deref().is_some_and(fits) {
                alone.push(i);
            }
        }
        let valid: Vec<usize> = (0..requests.len())
            .filter(|&i| outcomes[i].is_none() && !alone.contains(&i))
            .collect();
        match valid.as_slice() {
            [] => {}
            [only] => outcomes[*only] = Some(self.append(&requests[*only]).await),
            _ => {
                let group: Vec<&AppendRequest> = valid
                    .iter()
                    .map(|&i| stored[i].as_deref().unwrap_or(&requests[i]))
                    .collect();
                let mut retry_alone = Vec::new();
                match self.bounded(Operation::Append, self.send_group(&group)).await {
                    Ok(rows) if rows.len() == group.len() => {
                        // Rows come in no particular order; `o_ord` is the
                        // 1-based place of the request in the group.
                        for row in &rows {
                            let place = row
                                .try_get::<i32, _>("o_ord")
                                .ok()
                                .and_then(|o| usize::try_from(o).ok())
                                .and_then(|o| o.checked_sub(1))
                                .and_then(|o| valid.get(o).zip(group.get(o)));
                            let Some((&index, request)) = place else {
                                continue;
                            };
                            match outcome_from_row(request, row) {
                                Some(outcome) => outcomes[index] = Some(outcome),
                                None => retry_alone.push(index),
                            }
                        }
                    }
                    Ok(rows) => {
                        let error = StoreError::ContractViolation {
                            operation: Operation::Append,
                            message: format!("append_batch answered {} rows for {} appends", rows.len(), group.len()),
                        };
                        for &index in &valid {
                            outcomes[index] = Some(Err(error.clone()));
                        }
                    }
                    // A failure of the whole statement that certainly wrote
                    // nothing and is not about the connection (one request
                    // the database refuses fails the statement): each request
                    // goes alone, so that only the culprit fails. So does a
                    // write to a stream a tombstone ended (migration 0008).
                    Err(StoreError::Permanent { .. } | StoreError::InvalidAppend(_) | StoreError::StreamDeleted(_)) => {
                        retry_alone.extend_from_slice(&valid);
                    }
                    // The group's transaction was older than the last writer
                    // of one of its streams (migration 0006): nothing was
                    // written, and each request alone runs in a new, younger
                    // transaction, so the group's innocent members do not
                    // fail with it.
                    Err(error) if is_serialization_failure(&error) => {
                        retry_alone.extend_from_slice(&valid);
                    }
                    Err(error) => {
                        for &index in &valid {
                            outcomes[index] = Some(Err(error.clone()));
                        }
                    }
                }
                for index in retry_alone {
                    outcomes[index] = Some(self.append(&requests[index]).await);
                }
            }
        }
        for index in alone {
            outcomes[index] = Some(self.append(&requests[index]).await);
        }
        outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    Err(StoreError::ContractViolation {
                        operation: Operation::Append,
                        message: "append left without an outcome".to_owned(),
                    })
                })
            })
            .collect()
    }

    async fn send_group(&self, group: &[&AppendRequest]) -> Result<Vec<PgRow>, StoreError> {
        let streams: usize = group.iter().map(|r| r.streams.len()).sum();
        let events: usize = group.iter().map(|r| r.event_count()).sum();
        let mut command_ids = Vec::with_capacity(group.len());
        let mut correlation_ids = Vec::with_capacity(group.len());
        let mut causation_ids = Vec::with_capacity(group.len());
        let mut decided_at = Vec::with_capacity(group.len());
        let mut user_metadata = Vec::with_capacity(group.len());
        let mut stream_counts = Vec::with_capacity(group.len());
        let mut event_counts = Vec::with_capacity(group.len());
        let mut columns = AppendColumns::with_capacity(streams, events);
        for request in group {
            command_ids.push(request.command_id().as_uuid());
            let meta = MetadataColumns::of(request);
            correlation_ids.push(meta.correlation_id);
            causation_ids.push(meta.causation_id);
            decided_at.push(meta.decided_at);
            user_metadata.push(meta.user);
            stream_counts.push(i32::try_from(request.streams.len()).unwrap_or(i32::MAX));
            event_counts.push(i32::try_from(request.event_count()).unwrap_or(i32::MAX));
            // Requests that `check` refuses never join a group (`fits`).
            columns.push_checked(request);
        }
        let mut conn = self.acquire(Operation::Append).await?;
        let query = sqlx::query(&self.sql.append_batch)
            .bind(&command_ids)
            .bind(&correlation_ids)
            .bind(&causation_ids)
            .bind(&decided_at)
            .bind(&user_metadata)
            .bind(&stream_counts)
            .bind(&event_counts);
        columns
            .bind(query)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| map_error(Operation::Append, Phase::Executing, e, None))
    }
}

/// The outcome of one request from its row; `None` when it failed with
/// something other than a version conflict (it is then sent again alone).
fn outcome_from_row(request: &AppendRequest, row: &PgRow) -> Option<Result<AppendReceipt, StoreError>> {
    let state: Option<String> = match row.try_get("o_state") {
        Ok(state) => state,
        Err(e) => {
            return Some(Err(StoreError::ContractViolation {
                operation: Operation::Append,
                message: e.to_string(),
            }))
        }
    };
    match state.as_deref() {
        None => Some(receipt_from_row(request, row)),
        Some(CONFLICT) => {
            let detail: Option<String> = row.try_get("o_detail").ok().flatten();
            conflict(request, detail.as_deref()?).map(|c| Err(c.into()))
        }
        Some(_) => None,
    }
}
