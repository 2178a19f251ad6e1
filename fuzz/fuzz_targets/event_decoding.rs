//! Event decoding, upcasting included.
//!
//! The input is a stored event as text: its type on the first line, its
//! schema version on the second, its payload after that (the seeds in
//! `corpus/event_decoding/` read as examples). `Account` below is a user's
//! event enum at schema version 3, with an upcaster from versions 1 and 2.
//! Checked, besides "never panics":
//!
//! - decoding at the current version agrees with serde_json's own
//!   externally tagged representation, `{"<type>": <payload>}`, which the
//!   codec promises to mirror without building it (same value, or both
//!   refuse);
//! - whatever decodes (at any version) encodes back under the same type and
//!   decodes again to the same value;
//! - a newer schema version than the code knows is refused as such, and a
//!   type the enum does not know as an unknown type;
//! - any `Account` value (built from the same bytes) survives encode and
//!   decode.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use eventcore::{
    decode_recorded, CommandId, DecodeErrorKind, Event, EventId, EventMetadata, EventType, GlobalPosition, Payload,
    RecordedEvent, StreamId, StreamVersion, Time,
};
use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Every shape of variant serde writes: unit, newtype, tuple, struct, and
/// nested containers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Arbitrary)]
enum Account {
    Opened,
    Renamed(String),
    Moved(i32, i64),
    Deposited { amount: u64, memo: Option<String> },
    Tagged { tags: BTreeMap<String, bool>, note: Note },
    Limits(Vec<Option<u16>>),
    Closed(Note),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Arbitrary)]
struct Note {
    text: String,
    #[serde(default)]
    pinned: bool,
}

impl Event for Account {
    const SCHEMA_VERSION: u32 = 3;

    /// Version 1 stored `Deposited` as a bare number and `Renamed` as
    /// `{"name": ...}`; version 2 added `memo`, which it did not write.
    fn upcast(
        event_type: &str,
        schema_version: u32,
        payload: serde_json::Value,
    ) -> Result<serde_json::Value, DecodeErrorKind> {
        use serde_json::{json, Value};
        let refuse = || DecodeErrorKind::InvalidPayload(format!("cannot upcast {event_type} v{schema_version}"));
        match (event_type, schema_version, payload) {
            ("Deposited", 1, Value::Number(amount)) => Ok(json!({ "amount": amount, "memo": null })),
            ("Deposited", 2, Value::Object(mut fields)) => {
                fields.entry("memo").or_insert(Value::Null);
                Ok(Value::Object(fields))
            }
            ("Renamed", 1 | 2, Value::Object(mut fields)) => fields.remove("name").ok_or_else(refuse),
            (_, 1 | 2, payload) => Ok(payload),
            (_, found, _) => Err(DecodeErrorKind::UnsupportedSchemaVersion {
                found,
                supported: Self::SCHEMA_VERSION,
            }),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(3, '\n');
    let event_type = lines.next().unwrap_or_default();
    let schema_version = lines.next().and_then(|v| v.trim().parse::<u32>().ok()).unwrap_or(3);
    let payload = lines.next().unwrap_or_default();
    check_decode(event_type, schema_version, payload);
    check_round_trip(data);
});

fn check_decode(event_type: &str, schema_version: u32, payload: &str) {
    let stored = Payload::from_trusted_json(payload);
    let decoded = Account::decode(event_type, schema_version, &stored);
    if schema_version > Account::SCHEMA_VERSION {
        assert_eq!(
            decoded,
            Err(DecodeErrorKind::UnsupportedSchemaVersion {
                found: schema_version,
                supported: Account::SCHEMA_VERSION
            })
        );
        return;
    }
    if schema_version == Account::SCHEMA_VERSION {
        // serde_json's externally tagged form, for a payload that is one
        // JSON document (so that it cannot close the wrapper early).
        if serde_json::from_str::<serde::de::IgnoredAny>(payload).is_ok() {
            let tag = serde_json::to_string(event_type).expect("a string serializes");
            let reference = serde_json::from_str::<Account>(&format!("{{{tag}:{payload}}}"));
            match (&decoded, &reference) {
                (Ok(ours), Ok(theirs)) => assert_eq!(ours, theirs, "{event_type} {payload}"),
                (Err(_), Err(_)) => {}
                _ => panic!("{event_type} {payload}: the codec says {decoded:?}, serde_json {reference:?}"),
            }
        } else {
            assert!(decoded.is_err(), "{payload:?} is not JSON");
        }
    }
    const KNOWN: [&str; 7] = ["Opened", "Renamed", "Moved", "Deposited", "Tagged", "Limits", "Closed"];
    if !KNOWN.contains(&event_type) && schema_version == Account::SCHEMA_VERSION {
        assert!(
            matches!(decoded, Err(DecodeErrorKind::UnknownEventType)),
            "{event_type:?}: {decoded:?}"
        );
    }
    let Ok(event) = decoded else { return };
    let encoded = event.encode().expect("a decoded event encodes");
    assert_eq!(encoded.event_type.as_str(), event_type, "decoded as another variant");
    assert_eq!(encoded.schema_version, Account::SCHEMA_VERSION);
    let again = Account::decode(encoded.event_type.as_str(), encoded.schema_version, &encoded.payload);
    assert_eq!(again.as_ref(), Ok(&event), "{}", encoded.payload.as_json());
    // The same through a recorded event.
    let recorded = recorded(encoded.event_type, schema_version, stored);
    assert_eq!(decode_recorded::<Account>(&recorded).ok(), Some(event));
}

fn check_round_trip(data: &[u8]) {
    let Ok(event) = Account::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let encoded = event.encode().expect("every Account encodes");
    // What serde_json writes is JSON; a NUL in a string makes it
    // unstorable, nothing else may.
    let nul = holds_nul(&serde_json::to_value(&event).expect("every Account is a JSON value"));
    assert_eq!(
        encoded.payload.check_storable().is_ok(),
        !nul,
        "{}",
        encoded.payload.as_json()
    );
    let back = Account::decode(encoded.event_type.as_str(), encoded.schema_version, &encoded.payload);
    assert_eq!(back, Ok(event), "{}", encoded.payload.as_json());
}

fn holds_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(holds_nul),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

fn recorded(event_type: EventType, schema_version: u32, payload: Payload) -> RecordedEvent {
    let command_id = CommandId::v7(Time::ZERO, [0; 10]);
    RecordedEvent {
        event_id: EventId::v7(Time::ZERO, [1; 10]),
        stream_id: StreamId::new("account-1").expect("valid"),
        version: StreamVersion::new(1),
        position: GlobalPosition::new(1),
        event_type,
        schema_version,
        payload,
        metadata: Arc::new(EventMetadata::new(command_id, Time::ZERO)),
    }
}
