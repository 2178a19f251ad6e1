//! Event decoding: type names (namespace, unqualified names, aliases),
//! schema versions and upcaster chains.
//!
//! The input is a stored event as text: its type on the first line, its
//! schema version on the second, its payload after that (the seeds in
//! `corpus/event_decoding/` read as examples). `Account` below is a user's
//! event enum as it evolved: stored as `bank.<Variant>` (bare names of
//! older logs still read), `Deposited` at version 3 and `Renamed` at 2 with
//! upcasters from their older versions, `Credited` an old name of
//! `Deposited` and `legacy.Opened` a variant moved from another enum.
//! Checked, besides "never panics":
//!
//! - a stored type decodes as the variant a plain statement of the naming
//!   rules (here) resolves it to, or not at all, and every type that decodes
//!   is one `Event::event_types` lists (projections filter on that list);
//! - at the variant's current version, decoding agrees with serde_json's
//!   own externally tagged form `{"<variant>": <payload>}`, which the codec
//!   mirrors without building it (same value, or both refuse);
//! - a newer version than the variant's is refused as such;
//! - whatever decodes (from any version) encodes under the variant's
//!   current name and version, and decodes again to the same value;
//! - any `Account` value (built from the same bytes) survives encode and
//!   decode, and its payload is storable unless a string holds a NUL.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use eventcore::{
    decode_recorded, CommandId, DecodeErrorKind, Event, EventId, EventMetadata, EventType, GlobalPosition, Payload,
    RecordedEvent, StreamId, StreamVersion, Time, Upcast,
};
use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
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
    const NAMESPACE: &'static str = "bank";
    const READS_UNQUALIFIED: bool = true;
    const VERSIONS: &'static [(&'static str, u32)] = &[("Deposited", 3), ("Renamed", 2)];
    const UPCASTS: &'static [Upcast] = &[
        Upcast::new("Deposited", 1, deposited_v1),
        Upcast::new("Deposited", 2, deposited_v2),
        Upcast::new("Renamed", 1, renamed_v1),
    ];
    const ALIASES: &'static [(&'static str, &'static str)] = &[("Credited", "Deposited"), ("legacy.Opened", "Opened")];
}

/// Version 1 of `Deposited` was the bare amount.
fn deposited_v1(payload: Value) -> Result<Value, String> {
    match payload {
        Value::Number(amount) => Ok(json!({ "amount": amount })),
        other => Err(format!("expected a number, found {other}")),
    }
}

/// Version 3 added `memo`, which version 2 did not write.
fn deposited_v2(payload: Value) -> Result<Value, String> {
    match payload {
        Value::Object(mut fields) => {
            fields.entry("memo").or_insert(Value::Null);
            Ok(Value::Object(fields))
        }
        other => Err(format!("expected an object, found {other}")),
    }
}

/// Version 1 of `Renamed` was `{"name": ...}`.
fn renamed_v1(payload: Value) -> Result<Value, String> {
    match payload {
        Value::Object(mut fields) => fields.remove("name").ok_or_else(|| "`name` is missing".to_owned()),
        other => Err(format!("expected an object, found {other}")),
    }
}

const VARIANTS: [&str; 7] = ["Opened", "Renamed", "Moved", "Deposited", "Tagged", "Limits", "Closed"];

/// The naming rules, stated plainly: the variant a stored type stands for.
fn variant_of(stored: &str) -> Option<&'static str> {
    let alias = |name: &str| match name {
        "Credited" => Some("Deposited"),
        _ => None,
    };
    let name = match stored {
        "legacy.Opened" => "Opened",
        _ => match stored.strip_prefix("bank.") {
            Some(bare) => alias(bare).unwrap_or(bare),
            None if !stored.contains('.') => alias(stored).unwrap_or(stored),
            None => return None,
        },
    };
    VARIANTS.iter().copied().find(|v| *v == name)
}

fn current_version(variant: &str) -> u32 {
    match variant {
        "Deposited" => 3,
        "Renamed" => 2,
        _ => 1,
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(3, '\n');
    let event_type = lines.next().unwrap_or_default();
    let schema_version = lines.next().and_then(|v| v.trim().parse::<u32>().ok()).unwrap_or(1);
    let payload = lines.next().unwrap_or_default();
    check_decode(event_type, schema_version, payload);
    check_round_trip(data);
});

fn check_decode(event_type: &str, schema_version: u32, payload: &str) {
    let stored = Payload::from_trusted_json(payload);
    let decoded = Account::decode(event_type, schema_version, &stored);
    let Some(variant) = variant_of(event_type) else {
        assert!(
            decoded.is_err(),
            "{event_type:?} is no type of Account, yet it decoded: {decoded:?}"
        );
        return;
    };
    let current = current_version(variant);
    if schema_version > current {
        assert_eq!(
            decoded,
            Err(DecodeErrorKind::UnsupportedSchemaVersion {
                found: schema_version,
                supported: current
            })
        );
        return;
    }
    if schema_version == current {
        // serde_json's externally tagged form, for a payload that is one
        // JSON document (so that it cannot close the wrapper early).
        if serde_json::from_str::<serde::de::IgnoredAny>(payload).is_ok() {
            let reference = serde_json::from_str::<Account>(&format!("{{\"{variant}\":{payload}}}"));
            match (&decoded, &reference) {
                (Ok(ours), Ok(theirs)) => assert_eq!(ours, theirs, "{event_type} {payload}"),
                (Err(_), Err(_)) => {}
                _ => panic!("{event_type} {payload}: the codec says {decoded:?}, serde_json {reference:?}"),
            }
        } else {
            assert!(decoded.is_err(), "{payload:?} is not JSON");
        }
    }
    let Ok(event) = decoded else { return };
    let listed = Account::event_types().expect("an enum lists its types");
    assert!(
        listed.iter().any(|t| t.as_str() == event_type),
        "{event_type} decodes but is not in event_types() {listed:?}"
    );
    let encoded = event.encode().expect("a decoded event encodes");
    assert_eq!(
        encoded.event_type.as_str(),
        format!("bank.{variant}"),
        "decoded as another variant"
    );
    assert_eq!(encoded.schema_version, current);
    let again = Account::decode(encoded.event_type.as_str(), encoded.schema_version, &encoded.payload);
    assert_eq!(again.as_ref(), Ok(&event), "{}", encoded.payload.as_json());
    // The same through a recorded event, under the type as stored.
    if let Ok(stored_type) = EventType::new(event_type) {
        let recorded = recorded(stored_type, schema_version, stored);
        assert_eq!(decode_recorded::<Account>(&recorded).ok(), Some(event));
    }
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
