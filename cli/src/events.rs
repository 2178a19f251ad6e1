//! One recorded event as a JSON object, a table row or a `tail` line,
//! shared by `stream`, `tail` and `dead-letters`.

use crate::output::{Align, Table};
use crate::timefmt::rfc3339;
use eventcore::RecordedEvent;
use serde::Serialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// An event with its metadata, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct EventJson<'a> {
    /// Global position.
    pub position: u64,
    /// Stream id.
    pub stream: &'a str,
    /// Version in the stream.
    pub version: u64,
    /// Stored type name.
    #[serde(rename = "type")]
    pub event_type: &'a str,
    /// The payload's schema version.
    pub schema_version: u32,
    /// The event's id.
    pub event_id: String,
    /// The command execution that wrote it.
    pub command_id: String,
    /// Correlation id.
    pub correlation_id: String,
    /// Causation id, if any.
    pub causation_id: Option<String>,
    /// When the command decided (the writer's clock), RFC 3339.
    pub timestamp: String,
    /// The same, in Unix nanoseconds.
    pub timestamp_ns: u64,
    /// The caller's metadata key/values.
    pub user: &'a BTreeMap<String, String>,
    /// The payload, as stored JSON (or its JSON rendering).
    pub payload: PayloadJson,
}

/// A payload in JSON output: the stored text as is, or a string when it
/// is not JSON.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum PayloadJson {
    /// Well-formed JSON, copied verbatim.
    Raw(Box<RawValue>),
    /// Anything else, as a JSON string.
    Text(String),
}

/// The JSON form of `event`.
pub fn json(event: &RecordedEvent) -> EventJson<'_> {
    let text = event.payload.as_json().to_owned();
    let payload = match RawValue::from_string(text.clone()) {
        Ok(raw) => PayloadJson::Raw(raw),
        Err(_) => PayloadJson::Text(text),
    };
    let metadata = &event.metadata;
    EventJson {
        position: event.position.get(),
        stream: event.stream_id.as_str(),
        version: event.version.get(),
        event_type: event.event_type.as_str(),
        schema_version: event.schema_version,
        event_id: event.event_id.to_string(),
        command_id: metadata.command_id.to_string(),
        correlation_id: metadata.correlation_id.to_string(),
        causation_id: metadata.causation_id.map(|c| c.to_string()),
        timestamp: rfc3339(metadata.timestamp),
        timestamp_ns: metadata.timestamp.as_unix_nanos(),
        user: &metadata.user,
        payload,
    }
}

/// The table `stream` prints.
pub fn stream_table() -> Table {
    Table::new(&[
        ("VERSION", Align::Right),
        ("POSITION", Align::Right),
        ("TYPE", Align::Left),
        ("SCHEMA", Align::Right),
        ("COMMAND", Align::Left),
        ("TIMESTAMP", Align::Left),
        ("PAYLOAD", Align::Left),
    ])
}

/// `event` as a row of [`stream_table`].
pub fn stream_row(table: &mut Table, event: &RecordedEvent) {
    table.row(vec![
        event.version.to_string(),
        event.position.to_string(),
        event.event_type.to_string(),
        event.schema_version.to_string(),
        event.metadata.command_id.to_string(),
        rfc3339(event.metadata.timestamp),
        event.payload.as_json().to_owned(),
    ]);
}

/// One `tail` line: `position  stream@version  type (schema N)  timestamp  command  payload`.
pub fn tail_line(event: &RecordedEvent) -> String {
    let mut payload: String = event
        .payload
        .as_json()
        .chars()
        .take(crate::output::MAX_CELL_CHARS)
        .collect();
    if payload.len() < event.payload.as_json().len() {
        payload.push('…');
    }
    format!(
        "{}  {}@{}  {} (schema {})  {}  command {}  {}",
        event.position,
        event.stream_id,
        event.version,
        event.event_type,
        event.schema_version,
        rfc3339(event.metadata.timestamp),
        event.metadata.command_id,
        payload
    )
}
