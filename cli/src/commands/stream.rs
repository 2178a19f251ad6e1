//! `eventcore stream <id>`: one stream's events with their metadata, read
//! a page at a time, and whether a tombstone ended it or retention removed
//! its first versions.

use crate::args::{Connection, StreamArgs};
use crate::connect::connect_migrated;
use crate::error::CliError;
use crate::events::{self, EventJson};
use crate::output::Out;
use eventcore::{ReadRequest, RecordedEvent, StoreError, StreamId, StreamRead, StreamVersion};
use eventcore_store::EventStore;
use serde::Serialize;
use std::num::NonZeroU32;

/// Events fetched per query.
const PAGE: NonZeroU32 = match NonZeroU32::new(500) {
    Some(page) => page,
    None => NonZeroU32::MIN,
};

/// What `stream --json` prints.
#[derive(Debug, Serialize)]
struct Report<'a> {
    stream: &'a str,
    head: u64,
    /// The version a tombstone ended the stream at, if one did.
    deleted_at: Option<u64>,
    /// Versions up to this were removed by retention (0: none).
    removed_through: u64,
    events: Vec<EventJson<'a>>,
}

/// Runs `stream`.
pub async fn run(connection: &Connection, args: &StreamArgs, out: &mut Out) -> Result<(), CliError> {
    let stream = StreamId::new(&args.id).map_err(|e| CliError::Usage(format!("invalid stream id: {e}")))?;
    let store = connect_migrated(connection).await?;
    let limit = args.limit.unwrap_or(u64::MAX);
    let mut after = StreamVersion::new(args.after);
    let mut head = StreamVersion::NONE;
    let mut deleted_at = None;
    let mut removed_through = StreamVersion::NONE;
    let mut found: Vec<RecordedEvent> = Vec::new();
    while (found.len() as u64) < limit {
        let request = ReadRequest {
            streams: vec![StreamRead {
                stream: stream.clone(),
                after,
            }],
            page_size: Some(PAGE),
        };
        let mut response = store.read(&request).await?;
        let slice = response.streams.pop().ok_or_else(|| StoreError::ContractViolation {
            operation: eventcore::Operation::Read,
            message: "read answered no slice".to_owned(),
        })?;
        head = slice.head;
        deleted_at = slice.deleted_at;
        removed_through = slice.removed_through;
        let Some(last) = slice.events.last().map(|e| e.version) else {
            break;
        };
        let room = usize::try_from(limit - found.len() as u64).unwrap_or(usize::MAX);
        found.extend(slice.events.into_iter().take(room));
        if last >= head {
            break;
        }
        after = last;
    }
    if head.is_none() {
        return Err(CliError::NoSuchStream(stream.to_string()));
    }
    if out.json {
        return out.document(&Report {
            stream: stream.as_str(),
            head: head.get(),
            deleted_at: deleted_at.map(StreamVersion::get),
            removed_through: removed_through.get(),
            events: found.iter().map(events::json).collect(),
        });
    }
    if let Some(at) = deleted_at {
        out.text(&format!("stream {stream}: deleted by a tombstone at version {at}"))?;
    }
    if !removed_through.is_none() {
        out.text(&format!(
            "stream {stream}: versions 1 to {removed_through} were removed by retention"
        ))?;
    }
    if found.is_empty() {
        return out.text(&format!(
            "stream {stream}: no events after version {} (head {head})",
            args.after
        ));
    }
    let mut table = events::stream_table();
    for event in &found {
        events::stream_row(&mut table, event);
    }
    out.table(&table)
}
