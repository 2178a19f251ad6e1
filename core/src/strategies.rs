//! [proptest] strategies for EventCore's public types, for property tests
//! of your own commands, views, projections and stores.
//!
//! Enabled by the `proptest` feature:
//!
//! ```toml
//! [dev-dependencies]
//! eventcore = { version = "0.1", features = ["proptest"] }
//! proptest = "1"
//! ```
//!
//! Every strategy builds values the way the library's constructors do, so
//! they are valid by construction (the `invalid_*` strategies build exactly
//! what the constructors refuse). Histories keep the store contract:
//! versions contiguous from 1 in each stream, positions strictly increasing
//! (with gaps, as PostgreSQL leaves them).
//!
//! ```
//! use eventcore::strategies::{history, prefixed_stream_id};
//! use proptest::prelude::*;
//!
//! // Histories over an account and an order stream, up to 20 events.
//! let histories = (prefixed_stream_id("account"), prefixed_stream_id("order"))
//!     .prop_flat_map(|(account, order)| history(vec![account, order], 0..20));
//! proptest!(|(events in histories)| {
//!     // The property under test: an event's version counts the events of
//!     // its stream up to it.
//!     for (i, event) in events.iter().enumerate() {
//!         let before = events[..i].iter().filter(|e| e.stream_id == event.stream_id).count() as u64;
//!         prop_assert_eq!(event.version.get(), before + 1);
//!     }
//! });
//! ```

use crate::{
    CausationId, CommandId, CorrelationId, Event, EventId, EventMetadata, EventType, ExpectedVersion, GlobalPosition,
    NewEvent, Payload, RecordedEvent, StreamId, StreamVersion, Time, MAX_STREAM_ID_BYTES,
};
use proptest::collection::{btree_map, vec, SizeRange};
use proptest::prelude::*;
use std::sync::Arc;

/// Valid stream ids: mostly `kind-123` and `tenant/kind/id` shapes, some
/// with any non-control Unicode, some exactly [`MAX_STREAM_ID_BYTES`] long.
///
/// ```
/// use eventcore::{strategies::stream_id, StreamId};
/// use proptest::prelude::*;
///
/// proptest!(|(id in stream_id())| {
///     prop_assert_eq!(StreamId::new(id.as_str()), Ok(id.clone()));
/// });
/// ```
pub fn stream_id() -> impl Strategy<Value = StreamId> {
    let shaped = "[a-z][a-z0-9_]{0,11}(-[0-9]{1,6})?(/[a-z0-9-]{1,12}){0,2}";
    let unicode = "[^\\p{Cc}\\s][^\\p{Cc}]{0,30}[^\\p{Cc}\\s]|[^\\p{Cc}\\s]";
    let longest = "[a-z]{1,8}".prop_map(|seed| {
        seed.repeat(MAX_STREAM_ID_BYTES)
            .chars()
            .take(MAX_STREAM_ID_BYTES)
            .collect()
    });
    prop_oneof![6 => shaped.prop_map(String::from), 3 => unicode.prop_map(String::from), 1 => longest]
        .prop_filter_map("not a valid stream id", |s: String| StreamId::new(s).ok())
}

/// Valid stream ids that start with `prefix-`, e.g. `account-17`: the shape
/// most domains use for one kind of entity. `prefix` itself must make a
/// valid id with a dash and digits after it; if it does not, the strategy
/// finds no value and proptest reports that.
///
/// ```
/// use eventcore::strategies::prefixed_stream_id;
/// use proptest::prelude::*;
///
/// proptest!(|(id in prefixed_stream_id("account"))| {
///     prop_assert!(id.as_str().starts_with("account-"));
/// });
/// ```
pub fn prefixed_stream_id(prefix: &'static str) -> impl Strategy<Value = StreamId> {
    (0u32..100_000).prop_filter_map("the prefix makes no valid stream id", move |n| {
        StreamId::new(format!("{prefix}-{n}")).ok()
    })
}

/// Strings [`StreamId::new`] refuses: empty, whitespace only or around,
/// holding a control character, or too long.
///
/// ```
/// use eventcore::{strategies::invalid_stream_id, StreamId};
/// use proptest::prelude::*;
///
/// proptest!(|(text in invalid_stream_id())| {
///     prop_assert!(StreamId::new(&text).is_err());
/// });
/// ```
pub fn invalid_stream_id() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[ \t]{1,4}".prop_map(String::from),
        "[ ]{1,2}[a-z]{1,8}|[a-z]{1,8}[ ]{1,2}".prop_map(String::from),
        "[a-z]{0,6}[\\x00-\\x1f\\x7f][a-z]{0,6}".prop_map(String::from),
        (MAX_STREAM_ID_BYTES + 1..MAX_STREAM_ID_BYTES + 64).prop_map(|n| "x".repeat(n)),
    ]
}

/// Valid event type names: identifiers such as `Deposited`, sometimes
/// namespaced (`bank.Deposited`).
///
/// ```
/// use eventcore::{strategies::event_type, EventType};
/// use proptest::prelude::*;
///
/// proptest!(|(t in event_type())| {
///     prop_assert_eq!(EventType::new(t.as_str()), Ok(t.clone()));
/// });
/// ```
pub fn event_type() -> impl Strategy<Value = EventType> {
    "([a-z]{1,8}\\.)?[A-Z][A-Za-z0-9]{0,23}"
        .prop_filter_map("not a valid event type", |name: String| EventType::new(name).ok())
}

/// Strings [`EventType::new`] refuses: empty, holding whitespace or a
/// control character, or too long.
///
/// ```
/// use eventcore::{strategies::invalid_event_type, EventType};
/// use proptest::prelude::*;
///
/// proptest!(|(name in invalid_event_type())| {
///     prop_assert!(EventType::new(&name).is_err());
/// });
/// ```
pub fn invalid_event_type() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[A-Za-z]{0,6}[ \t\n\\x00\\x7f][A-Za-z]{0,6}".prop_map(String::from),
        (crate::MAX_EVENT_TYPE_BYTES + 1..crate::MAX_EVENT_TYPE_BYTES + 64).prop_map(|n| "E".repeat(n)),
    ]
}

/// Stream versions, [`StreamVersion::NONE`] included, mostly small.
///
/// ```
/// use eventcore::strategies::stream_version;
/// use proptest::prelude::*;
///
/// proptest!(|(v in stream_version())| {
///     prop_assert!(v.next() > v || v.get() == u64::MAX);
/// });
/// ```
pub fn stream_version() -> impl Strategy<Value = StreamVersion> {
    prop_oneof![9 => 0u64..1_000, 1 => any::<u64>()].prop_map(StreamVersion::new)
}

/// Global positions of stored events (at least 1), mostly small.
///
/// ```
/// use eventcore::{strategies::global_position, GlobalPosition};
/// use proptest::prelude::*;
///
/// proptest!(|(p in global_position())| {
///     prop_assert!(p > GlobalPosition::START);
/// });
/// ```
pub fn global_position() -> impl Strategy<Value = GlobalPosition> {
    prop_oneof![9 => 1u64..1_000_000, 1 => 1u64..=u64::MAX].prop_map(GlobalPosition::new)
}

/// Every kind of [`ExpectedVersion`].
///
/// ```
/// use eventcore::{strategies::expected_version, ExpectedVersion};
/// use proptest::prelude::*;
///
/// proptest!(|(expected in expected_version())| {
///     let json = serde_json::to_string(&expected).expect("serializes");
///     prop_assert_eq!(serde_json::from_str::<ExpectedVersion>(&json).ok(), Some(expected));
/// });
/// ```
pub fn expected_version() -> impl Strategy<Value = ExpectedVersion> {
    prop_oneof![
        Just(ExpectedVersion::Any),
        Just(ExpectedVersion::NoStream),
        Just(ExpectedVersion::StreamExists),
        stream_version().prop_map(ExpectedVersion::Exact),
    ]
}

/// Times between the Unix epoch and the year 2200, in nanoseconds.
///
/// ```
/// use eventcore::{strategies::time, Time};
/// use proptest::prelude::*;
///
/// proptest!(|(t in time())| {
///     prop_assert!(t < Time::MAX);
/// });
/// ```
pub fn time() -> impl Strategy<Value = Time> {
    (0u64..7_258_118_400_000_000_000).prop_map(Time::from_unix_nanos)
}

/// A UUIDv7 at a time within [`time`], with random entropy.
fn v7<T: std::fmt::Debug>(make: fn(Time, [u8; 10]) -> T) -> impl Strategy<Value = T> {
    (time(), any::<[u8; 10]>()).prop_map(move |(at, entropy)| make(at, entropy))
}

/// Event ids (UUIDv7).
///
/// ```
/// use eventcore::strategies::event_id;
/// use proptest::prelude::*;
///
/// proptest!(|(id in event_id())| {
///     prop_assert_eq!(id.as_uuid().get_version_num(), 7);
/// });
/// ```
pub fn event_id() -> impl Strategy<Value = EventId> {
    v7(EventId::v7)
}

/// Command ids (UUIDv7).
///
/// ```
/// use eventcore::strategies::command_id;
/// use proptest::prelude::*;
///
/// proptest!(|(id in command_id())| {
///     prop_assert_eq!(id.as_uuid().get_version_num(), 7);
/// });
/// ```
pub fn command_id() -> impl Strategy<Value = CommandId> {
    v7(CommandId::v7)
}

/// Correlation ids (UUIDv7).
///
/// ```
/// use eventcore::strategies::correlation_id;
/// use proptest::prelude::*;
///
/// proptest!(|(id in correlation_id())| {
///     prop_assert_eq!(id.as_uuid().get_version_num(), 7);
/// });
/// ```
pub fn correlation_id() -> impl Strategy<Value = CorrelationId> {
    v7(CorrelationId::v7)
}

/// Causation ids (UUIDv7).
///
/// ```
/// use eventcore::strategies::causation_id;
/// use proptest::prelude::*;
///
/// proptest!(|(id in causation_id())| {
///     prop_assert_eq!(id.as_uuid().get_version_num(), 7);
/// });
/// ```
pub fn causation_id() -> impl Strategy<Value = CausationId> {
    v7(CausationId::v7)
}

/// JSON values every store can hold (no NUL in any string; integers and
/// finite floats), nested a few levels deep.
///
/// ```
/// use eventcore::{strategies::json_value, Payload};
/// use proptest::prelude::*;
///
/// proptest!(|(value in json_value())| {
///     let payload = Payload::from_value(&value).expect("serializes");
///     prop_assert!(payload.check_storable().is_ok());
/// });
/// ```
pub fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let text = "[^\\x00]{0,16}";
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1.0e12f64..1.0e12).prop_map(Value::from),
        text.prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(text, inner, 0..6).prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Payloads every store can hold: the JSON of [`json_value`].
///
/// ```
/// use eventcore::strategies::payload;
/// use proptest::prelude::*;
///
/// proptest!(|(p in payload())| {
///     prop_assert!(p.check_storable().is_ok());
/// });
/// ```
pub fn payload() -> impl Strategy<Value = Payload> {
    json_value().prop_filter_map("serializes", |value| Payload::from_value(&value).ok())
}

/// Metadata of one append, with a few user keys sometimes.
///
/// ```
/// use eventcore::strategies::event_metadata;
/// use proptest::prelude::*;
///
/// proptest!(|(meta in event_metadata())| {
///     let json = serde_json::to_string(&meta).expect("serializes");
///     prop_assert_eq!(serde_json::from_str::<eventcore::EventMetadata>(&json).ok(), Some(meta.clone()));
/// });
/// ```
pub fn event_metadata() -> impl Strategy<Value = EventMetadata> {
    (
        command_id(),
        prop::option::of(correlation_id()),
        prop::option::of(causation_id()),
        time(),
        btree_map("[a-z_]{1,8}", "[^\\x00]{0,12}", 0..3),
    )
        .prop_map(|(command_id, correlation, causation_id, timestamp, user)| {
            let mut meta = EventMetadata::new(command_id, timestamp);
            if let Some(correlation) = correlation {
                meta.correlation_id = correlation;
            }
            meta.causation_id = causation_id;
            meta.user = user;
            meta
        })
}

/// Events about to be appended, with any type name and payload.
///
/// ```
/// use eventcore::strategies::new_event;
/// use proptest::prelude::*;
///
/// proptest!(|(event in new_event())| {
///     prop_assert!(event.payload.check_storable().is_ok());
/// });
/// ```
pub fn new_event() -> impl Strategy<Value = NewEvent> {
    (event_id(), event_type(), 1u32..4, payload()).prop_map(|(event_id, event_type, schema_version, payload)| {
        NewEvent {
            event_id,
            event_type,
            schema_version,
            payload,
        }
    })
}

/// Your own events, encoded as your [`Event`] implementation stores them:
/// give it a strategy for your event enum.
///
/// ```
/// use eventcore::{strategies::encoded, Event};
/// use proptest::prelude::*;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// enum Account { Opened, Deposited { amount: u64 } }
/// impl Event for Account {}
///
/// let account = prop_oneof![Just(Account::Opened), any::<u64>().prop_map(|amount| Account::Deposited { amount })];
/// proptest!(|(event in encoded(account))| {
///     let back = Account::decode(event.event_type.as_str(), event.schema_version, &event.payload);
///     prop_assert!(back.is_ok());
/// });
/// ```
pub fn encoded<E, S>(events: S) -> impl Strategy<Value = NewEvent>
where
    E: Event + std::fmt::Debug,
    S: Strategy<Value = E>,
{
    (event_id(), events).prop_filter_map("the event does not encode", |(event_id, event)| {
        let encoded = event.encode().ok()?;
        Some(NewEvent {
            event_id,
            event_type: encoded.event_type,
            schema_version: encoded.schema_version,
            payload: encoded.payload,
        })
    })
}

/// A stored history over `streams`, in global order, with events drawn
/// from `events` (for instance [`encoded`] events of your own type): each
/// stream's versions run 1, 2, 3, … and positions rise strictly, with gaps.
/// `len` bounds the number of events. A stream named twice counts once;
/// with no streams, the history is empty.
///
/// ```
/// use eventcore::strategies::{history_of, new_event};
/// use eventcore::StreamId;
/// use proptest::prelude::*;
///
/// let streams = vec![StreamId::new("a").expect("valid"), StreamId::new("b").expect("valid")];
/// proptest!(|(events in history_of(streams.clone(), new_event(), 0..30))| {
///     for pair in events.windows(2) {
///         prop_assert!(pair[0].position < pair[1].position);
///     }
///     let a: Vec<u64> = events.iter().filter(|e| e.stream_id == streams[0]).map(|e| e.version.get()).collect();
///     prop_assert_eq!(a, (1..).take(events.iter().filter(|e| e.stream_id == streams[0]).count()).collect::<Vec<u64>>());
/// });
/// ```
pub fn history_of<S>(
    mut streams: Vec<StreamId>,
    events: S,
    len: impl Into<SizeRange>,
) -> impl Strategy<Value = Vec<RecordedEvent>>
where
    S: Strategy<Value = NewEvent>,
{
    let mut seen = std::collections::BTreeSet::new();
    streams.retain(|stream| seen.insert(stream.clone()));
    let count = streams.len().max(1);
    vec((0..count, 1u64..4, events, event_metadata()), len).prop_map(move |items| {
        if streams.is_empty() {
            return Vec::new();
        }
        let mut versions = vec![0u64; streams.len()];
        let mut position = 0u64;
        items
            .into_iter()
            .map(|(stream, gap, event, metadata)| {
                versions[stream] += 1;
                position += gap;
                RecordedEvent {
                    event_id: event.event_id,
                    stream_id: streams[stream].clone(),
                    version: StreamVersion::new(versions[stream]),
                    position: GlobalPosition::new(position),
                    event_type: event.event_type,
                    schema_version: event.schema_version,
                    payload: event.payload,
                    metadata: Arc::new(metadata),
                }
            })
            .collect()
    })
}

/// A stored history over `streams` with any events: [`history_of`] with
/// [`new_event`].
///
/// ```
/// use eventcore::strategies::history;
/// use eventcore::StreamId;
/// use proptest::prelude::*;
///
/// proptest!(|(events in history(vec![StreamId::new("a").expect("valid")], 1..10))| {
///     prop_assert_eq!(events.last().map(|e| e.version.get()), Some(events.len() as u64));
/// });
/// ```
pub fn history(streams: Vec<StreamId>, len: impl Into<SizeRange>) -> impl Strategy<Value = Vec<RecordedEvent>> {
    history_of(streams, new_event(), len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;
    use serde::{Deserialize, Serialize};
    use std::collections::BTreeMap;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Account {
        Opened { owner: String },
        Deposited { amount: u64 },
        Closed,
    }
    impl Event for Account {}

    fn account() -> impl Strategy<Value = Account> {
        prop_oneof![
            "[a-z]{1,8}".prop_map(|owner| Account::Opened { owner }),
            any::<u64>().prop_map(|amount| Account::Deposited { amount }),
            Just(Account::Closed),
        ]
    }

    proptest! {
        #[test]
        fn ids_and_names_are_valid_and_their_opposites_refused(
            id in stream_id(),
            bad_id in invalid_stream_id(),
            name in event_type(),
            bad_name in invalid_event_type(),
        ) {
            prop_assert!(StreamId::new(id.as_str()).is_ok());
            prop_assert!(StreamId::new(&bad_id).is_err(), "{:?}", bad_id);
            prop_assert!(EventType::new(name.as_str()).is_ok());
            prop_assert!(EventType::new(&bad_name).is_err(), "{:?}", bad_name);
        }

        #[test]
        fn serde_types_round_trip(meta in event_metadata(), expected in expected_version(), v in stream_version()) {
            let json = serde_json::to_string(&(&meta, expected, v)).expect("serializes");
            let back: (EventMetadata, ExpectedVersion, StreamVersion) = serde_json::from_str(&json).expect("deserializes");
            prop_assert_eq!(back, (meta, expected, v));
        }

        #[test]
        fn a_history_keeps_the_store_contract_and_decodes_as_your_events(
            events in history_of(
                vec![StreamId::new("a").expect("valid"), StreamId::new("b").expect("valid")],
                encoded(account()),
                0..40,
            ),
        ) {
            let mut heads: BTreeMap<StreamId, u64> = BTreeMap::new();
            let mut last = GlobalPosition::START;
            for event in &events {
                prop_assert!(event.position > last);
                last = event.position;
                let head = heads.entry(event.stream_id.clone()).or_default();
                *head += 1;
                prop_assert_eq!(event.version.get(), *head);
                prop_assert!(crate::decode_recorded::<Account>(event).is_ok());
                prop_assert!(event.payload.check_storable().is_ok());
            }
        }
    }

    #[test]
    fn a_history_over_no_streams_is_empty() {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let events = history(Vec::new(), 0..5)
            .new_tree(&mut runner)
            .expect("generates")
            .current();
        assert!(events.is_empty());
    }
}
