//! Stream ids and event types: construction and serde.
//!
//! The input is any bytes, taken as a candidate name (UTF-8, lossily) and
//! as a JSON document. Checked, besides "never panics":
//!
//! - `StreamId::new` and `EventType::new` accept exactly the names their
//!   documented rules allow (checked against a plain re-statement of the
//!   rules here), and a refusal names the rule that failed;
//! - a valid id survives a JSON round trip, and deserializing goes through
//!   the same validation as `new` (no way around it through serde);
//! - the other serde types a store or a driver reads back (uuid ids,
//!   versions, expectations, metadata, payloads) never panic on any JSON.

#![no_main]

use eventcore::{
    EventId, EventMetadata, EventType, ExpectedVersion, InvalidEventType, InvalidStreamId, Payload, StreamId,
    StreamVersion, MAX_EVENT_TYPE_BYTES, MAX_STREAM_ID_BYTES,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let name = String::from_utf8_lossy(data);
    check_stream_id(&name);
    check_event_type(&name);
    check_json(data);
    // The same name inside a JSON string must deserialize exactly as `new`
    // builds it.
    let quoted = serde_json::to_string(&*name).expect("a string always serializes");
    assert_eq!(
        serde_json::from_str::<StreamId>(&quoted).ok(),
        StreamId::new(&*name).ok(),
        "serde and new disagree on {name:?}"
    );
    assert_eq!(
        serde_json::from_str::<EventType>(&quoted).ok(),
        EventType::new(&*name).ok(),
        "serde and new disagree on {name:?}"
    );
});

/// The rules of `StreamId`, stated plainly.
fn stream_id_allowed(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_STREAM_ID_BYTES && !name.chars().any(char::is_control) && name.trim() == name
}

fn check_stream_id(name: &str) {
    match StreamId::new(name) {
        Ok(id) => {
            assert!(stream_id_allowed(name), "accepted {name:?}");
            assert_eq!(id.as_str(), name);
            assert_eq!(id.to_string(), name);
            let _ = format!("{id:?}");
            let json = serde_json::to_string(&id).expect("an id serializes");
            let back: StreamId = serde_json::from_str(&json).expect("a valid id deserializes");
            assert_eq!(back, id);
        }
        Err(error) => {
            assert!(!stream_id_allowed(name), "refused {name:?}: {error}");
            let _ = error.to_string();
            match error {
                InvalidStreamId::Empty => assert!(name.is_empty()),
                InvalidStreamId::TooLong { prefix, len, max } => {
                    assert_eq!((len, max), (name.len(), MAX_STREAM_ID_BYTES));
                    assert!(len > max && name.starts_with(&prefix) && prefix.len() <= 32);
                }
                InvalidStreamId::ControlCharacter { id, index, code } => {
                    assert_eq!(id, name);
                    let first = name.char_indices().find(|(_, c)| c.is_control());
                    assert_eq!(first.map(|(i, c)| (i, u32::from(c))), Some((index, code)));
                }
                InvalidStreamId::WhitespaceOnly { id } => {
                    assert_eq!(id, name);
                    assert!(name.trim().is_empty());
                }
                InvalidStreamId::SurroundingWhitespace { id } => {
                    assert_eq!(id, name);
                    assert_ne!(name.trim(), name);
                    assert!(!name.trim().is_empty());
                }
                other => panic!("a rule this target does not know: {other:?}"),
            }
        }
    }
}

/// The rules of `EventType`, stated plainly.
fn event_type_allowed(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_EVENT_TYPE_BYTES && !name.chars().any(|c| c.is_control() || c.is_whitespace())
}

fn check_event_type(name: &str) {
    match EventType::new(name) {
        Ok(event_type) => {
            assert!(event_type_allowed(name), "accepted {name:?}");
            assert_eq!(event_type.as_str(), name);
            let json = serde_json::to_string(&event_type).expect("a type serializes");
            let back: EventType = serde_json::from_str(&json).expect("a valid type deserializes");
            assert_eq!(back, event_type);
        }
        Err(error) => {
            assert!(!event_type_allowed(name), "refused {name:?}: {error}");
            let _ = error.to_string();
            match error {
                InvalidEventType::Empty => assert!(name.is_empty()),
                InvalidEventType::TooLong { len, max } => {
                    assert_eq!((len, max), (name.len(), MAX_EVENT_TYPE_BYTES));
                    assert!(len > max);
                }
                InvalidEventType::BadCharacter { name: rejected } => {
                    assert_eq!(rejected, name);
                    assert!(name.len() <= MAX_EVENT_TYPE_BYTES);
                }
                other => panic!("a rule this target does not know: {other:?}"),
            }
        }
    }
}

/// Any JSON: whatever deserializes must be valid and round-trip.
fn check_json(data: &[u8]) {
    if let Ok(id) = serde_json::from_slice::<StreamId>(data) {
        assert_eq!(
            StreamId::new(id.as_str()).as_ref(),
            Ok(&id),
            "serde let {id:?} past the rules"
        );
    }
    if let Ok(event_type) = serde_json::from_slice::<EventType>(data) {
        assert_eq!(
            EventType::new(event_type.as_str()).as_ref(),
            Ok(&event_type),
            "serde let {event_type:?} past the rules"
        );
    }
    if let Ok(id) = serde_json::from_slice::<EventId>(data) {
        let json = serde_json::to_vec(&id).expect("an event id serializes");
        assert_eq!(serde_json::from_slice::<EventId>(&json).ok(), Some(id));
    }
    if let Ok(version) = serde_json::from_slice::<StreamVersion>(data) {
        let json = serde_json::to_vec(&version).expect("a version serializes");
        assert_eq!(serde_json::from_slice::<StreamVersion>(&json).ok(), Some(version));
    }
    if let Ok(expected) = serde_json::from_slice::<ExpectedVersion>(data) {
        let json = serde_json::to_vec(&expected).expect("an expectation serializes");
        assert_eq!(serde_json::from_slice::<ExpectedVersion>(&json).ok(), Some(expected));
    }
    if let Ok(metadata) = serde_json::from_slice::<EventMetadata>(data) {
        let json = serde_json::to_vec(&metadata).expect("metadata serializes");
        assert_eq!(serde_json::from_slice::<EventMetadata>(&json).ok(), Some(metadata));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let well_formed = serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
        // Storable: well-formed, and no string (key or value, duplicate
        // keys included) holding a NUL, which PostgreSQL's JSONB cannot
        // store. Unknown when a number overflows an f64 (JSON allows it;
        // serde_json's visitors refuse it).
        let storable = serde_json::from_str::<Nul>(text).ok().map(|Nul(nul)| !nul);
        match Payload::from_json(text.to_owned()) {
            Ok(payload) => {
                assert!(well_formed, "accepted {text:?}");
                assert_eq!(payload.as_json(), text);
            }
            Err(_) => assert!(!well_formed, "refused {text:?}"),
        }
        let verdict = Payload::from_trusted_json(text).check_storable().is_ok();
        if !well_formed {
            assert!(!verdict, "{text:?} is not JSON");
        } else if let Some(storable) = storable {
            assert_eq!(verdict, storable, "{text:?}");
        }
    }
}

/// Whether a JSON document holds a NUL character in any string.
struct Nul(bool);

impl<'de> serde::Deserialize<'de> for Nul {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NulVisitor)
    }
}

struct NulVisitor;

impl<'de> serde::de::Visitor<'de> for NulVisitor {
    type Value = Nul;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Nul, E> {
        Ok(Nul(false))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Nul, E> {
        Ok(Nul(false))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Nul, E> {
        Ok(Nul(false))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Nul, E> {
        Ok(Nul(false))
    }
    fn visit_unit<E>(self) -> Result<Nul, E> {
        Ok(Nul(false))
    }
    fn visit_str<E>(self, s: &str) -> Result<Nul, E> {
        Ok(Nul(s.contains('\0')))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Nul, A::Error> {
        let mut nul = false;
        while let Some(Nul(item)) = seq.next_element()? {
            nul |= item;
        }
        Ok(Nul(nul))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Nul, A::Error> {
        let mut nul = false;
        while let Some((Nul(key), Nul(value))) = map.next_entry()? {
            nul |= key || value;
        }
        Ok(Nul(nul))
    }
}
