use super::*;
use crate::codec::Event;
use crate::{
    AppendRequest, Codec, CommandId, EventId, EventMetadata, EventType, ExpectedVersion, InvalidAppend, NewEvent,
    StreamAppend, StreamId, Time, Upcast,
};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shape {
    Unit,
    Newtype(u32),
    Tuple(u8, String),
    Struct {
        a: i64,
        b: Option<String>,
        id: uuid::Uuid,
        by_key: BTreeMap<u32, bool>,
    },
}
impl Event for Shape {
    const NAMESPACE: &'static str = "shape";
    const VERSIONS: &'static [(&'static str, u32)] = &[("Tuple", 3)];
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Plain {
    x: u8,
}
impl Event for Plain {}

fn shapes() -> Vec<Shape> {
    vec![
        Shape::Unit,
        Shape::Newtype(7),
        Shape::Tuple(1, "x".into()),
        Shape::Struct {
            a: -1,
            b: Some("café".into()),
            id: uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            by_key: BTreeMap::from([(1, true), (20, false)]),
        },
    ]
}

fn decoded<E: Event>(encoded: &EncodedEvent) -> Result<E, DecodeErrorKind> {
    E::decode(encoded.event_type.as_str(), encoded.schema_version, &encoded.payload)
}

#[test]
fn every_shape_encodes_as_the_json_codec_does_with_a_messagepack_payload() {
    for shape in shapes() {
        let json = shape.encode_as(Codec::Json).expect("encodes");
        let binary = shape.encode_as(Codec::MessagePack).expect("encodes");
        assert_eq!(binary.payload.codec(), Codec::MessagePack);
        assert_eq!(
            (&binary.event_type, binary.schema_version),
            (&json.event_type, json.schema_version),
            "the same stored type and version: {shape:?}"
        );
        assert_eq!(decoded::<Shape>(&binary), Ok(shape.clone()));
        assert_eq!(
            binary.payload.to_value(),
            json.payload.to_value(),
            "the same value, ids and keys included: {shape:?}"
        );
    }
    let plain = Plain { x: 3 }.encode_as(Codec::MessagePack).expect("encodes");
    assert_eq!(plain.event_type.as_str(), "Plain", "a struct under its type name");
    assert_eq!(decoded::<Plain>(&plain), Ok(Plain { x: 3 }));
    assert_eq!(
        Shape::Unit
            .encode_as(Codec::MessagePack)
            .expect("encodes")
            .payload
            .as_msgpack(),
        Some(&[0xc0][..]),
        "a unit variant is nil"
    );
}

#[test]
fn messagepack_payloads_moved_to_json_decode_to_the_same_event() {
    for shape in shapes() {
        let encoded = shape.encode_as(Codec::MessagePack).expect("encodes");
        for target in Codec::ALL {
            let moved = EncodedEvent {
                payload: encoded.payload.to_codec(*target).expect("converts"),
                ..encoded.clone()
            };
            assert_eq!(moved.payload.codec(), *target);
            assert_eq!(decoded::<Shape>(&moved), Ok(shape.clone()), "to {target}");
        }
    }
}

#[test]
fn json_moved_to_messagepack_loses_only_integer_map_keys() {
    // Why stores never convert JSON to MessagePack (`AppendRequest::for_store`).
    for shape in shapes() {
        let encoded = shape.encode_as(Codec::Json).expect("encodes");
        let moved = EncodedEvent {
            payload: encoded.payload.to_codec(Codec::MessagePack).expect("converts"),
            ..encoded.clone()
        };
        match &shape {
            Shape::Struct { by_key, .. } if !by_key.is_empty() => assert!(matches!(
                decoded::<Shape>(&moved),
                Err(DecodeErrorKind::InvalidField { path, .. }) if path.starts_with("by_key")
            )),
            _ => assert_eq!(decoded::<Shape>(&moved), Ok(shape.clone())),
        }
    }
}

#[test]
fn the_messagepack_payload_is_smaller_than_the_json_one() {
    #[derive(Serialize, Deserialize)]
    enum AccountEvent {
        Deposited { amount: u64 },
    }
    impl Event for AccountEvent {}
    let deposited = AccountEvent::Deposited { amount: 1 };
    let json = deposited.encode_as(Codec::Json).expect("encodes").payload;
    let binary = deposited.encode_as(Codec::MessagePack).expect("encodes").payload;
    assert_eq!((json.len(), binary.len()), (12, 9));
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Order {
    Placed { first: String, last: String },
}

fn split_name(v: serde_json::Value) -> Result<serde_json::Value, String> {
    let name = v["name"].as_str().ok_or("`name` is missing")?;
    let (first, last) = name.split_once(' ').unwrap_or((name, ""));
    Ok(serde_json::json!({ "first": first, "last": last }))
}

impl Event for Order {
    const VERSIONS: &'static [(&'static str, u32)] = &[("Placed", 2)];
    const UPCASTS: &'static [Upcast] = &[Upcast::new("Placed", 1, split_name)];
}

#[test]
fn an_old_messagepack_payload_is_upcast_through_a_json_value() {
    let old = Payload::from_msgpack(from_value(&serde_json::json!({ "name": "Ada Lovelace" })).expect("writes"))
        .expect("storable");
    assert_eq!(
        Order::decode("Placed", 1, &old),
        Ok(Order::Placed {
            first: "Ada".into(),
            last: "Lovelace".into()
        })
    );
    let broken =
        Payload::from_msgpack(from_value(&serde_json::json!({ "nom": 1 })).expect("writes")).expect("storable");
    assert!(matches!(
        Order::decode("Placed", 1, &broken),
        Err(DecodeErrorKind::UpcastFailed { from: 1, .. })
    ));
}

#[test]
fn decode_errors_name_the_type_or_the_field() {
    let payload = |value: serde_json::Value| Payload::from_trusted_msgpack(from_value(&value).expect("writes"));
    assert_eq!(
        Shape::decode("shape.Triangle", 1, &payload(serde_json::Value::Null)),
        Err(DecodeErrorKind::UnknownEventType)
    );
    let wrong = payload(serde_json::json!({ "a": "no", "b": null, "id": "x", "by_key": {} }));
    assert!(matches!(
        Shape::decode("shape.Struct", 1, &wrong),
        Err(DecodeErrorKind::InvalidField { path, .. }) if path == "a"
    ));
    assert!(matches!(
        Shape::decode("shape.Newtype", 1, &Payload::from_trusted_msgpack(vec![0x81])),
        Err(DecodeErrorKind::InvalidPayload(_))
    ));
    assert_eq!(
        Shape::decode("shape.Tuple", 4, &payload(serde_json::json!([1, "x"]))),
        Err(DecodeErrorKind::UnsupportedSchemaVersion { found: 4, supported: 3 })
    );
}

#[test]
fn storable_messagepack_is_one_value_that_a_json_store_could_hold() {
    let storable = |bytes: &[u8]| Payload::from_trusted_msgpack(bytes).check_storable();
    assert!(storable(&[0xc0]).is_ok());
    assert!(storable(&[]).is_err(), "empty");
    assert!(storable(&[0xc0, 0xc0]).is_err(), "two values");
    assert!(storable(&[0x92, 0x01]).is_err(), "an array missing an element");
    assert!(storable(&[0xa2, b'a', 0]).is_err(), "a NUL in a string");
    assert!(storable(&[0xc1]).is_err(), "a reserved marker");
    let nested = |depth: usize| {
        let mut bytes = vec![0x91; depth];
        bytes.push(0xc0);
        bytes
    };
    assert!(storable(&nested(MAX_DEPTH as usize)).is_ok());
    assert!(storable(&nested(MAX_DEPTH as usize + 1)).is_err());
    assert!(Payload::from_msgpack(vec![0xc0, 0xc0]).is_err());
}

#[test]
fn what_json_has_no_place_for_renders_as_serde_json_writes_it() {
    // {1: bin[1, 2], true: NaN}
    let bytes = [
        0x82, 0x01, 0xc4, 0x02, 0x01, 0x02, 0xc3, 0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0,
    ];
    let payload = Payload::from_msgpack(bytes).expect("storable");
    assert_eq!(payload.as_json(), r#"{"1":[1,2],"true":null}"#);
    assert_eq!(
        payload.to_codec(Codec::Json).expect("converts").as_json(),
        payload.as_json()
    );
    let garbage = Payload::from_trusted_msgpack(vec![0x81]);
    assert_eq!(garbage.as_json(), "", "no JSON reader accepts it");
    assert!(matches!(
        garbage.to_value(),
        Err(crate::PayloadError::InvalidMessagePack(_))
    ));
}

#[test]
fn payloads_compare_by_their_bytes_and_show_their_json() {
    let a = Payload::from_trusted_msgpack(vec![0x01]);
    let b = Payload::from_trusted_msgpack(vec![0x01]);
    assert_eq!(a.as_json(), "1", "renders (and keeps the rendering)");
    assert_eq!(a, b, "the kept rendering is not compared");
    assert_ne!(a, Payload::from_trusted_json("1"), "another codec is another payload");
    assert_eq!(format!("{a:?}"), "Payload(msgpack 1)");
}

fn request(payloads: Vec<(&str, Payload)>) -> AppendRequest {
    let mut streams: Vec<StreamAppend> = Vec::new();
    for (i, (stream, payload)) in payloads.into_iter().enumerate() {
        let event = NewEvent {
            event_id: EventId::v7(Time::ZERO, [i as u8; 10]),
            event_type: EventType::new("Noted").expect("valid"),
            schema_version: 1,
            payload,
        };
        match streams.iter_mut().find(|s| s.stream.as_str() == stream) {
            Some(entry) => entry.events.push(event),
            None => streams.push(StreamAppend {
                stream: StreamId::new(stream).expect("valid"),
                expected: ExpectedVersion::Any,
                events: vec![event],
                tombstone: false,
            }),
        }
    }
    AppendRequest {
        metadata: Arc::new(EventMetadata::new(CommandId::v7(Time::ZERO, [9; 10]), Time::ZERO)),
        streams,
    }
}

#[test]
fn a_json_store_converts_messagepack_payloads_and_a_messagepack_store_keeps_both() {
    let json = Payload::from_trusted_json(r#"{"n":1}"#);
    let binary = json.to_codec(Codec::MessagePack).expect("converts");
    let mixed = request(vec![("a", json.clone()), ("b", binary.clone())]);
    assert!(matches!(mixed.for_store(Codec::MessagePack), Ok(Cow::Borrowed(_))));
    let stored = mixed.for_store(Codec::Json).expect("converts");
    for event in stored.streams.iter().flat_map(|s| &s.events) {
        assert_eq!(event.payload, json);
    }
    let plain = request(vec![("a", json.clone())]);
    assert!(matches!(plain.for_store(Codec::Json), Ok(Cow::Borrowed(_))));
}

#[test]
fn a_conversion_refuses_the_first_unstorable_payload_by_its_stream() {
    let good = Payload::from_trusted_msgpack(vec![0x01]);
    for bad in [
        Payload::from_trusted_json(r#""nul \u0000""#),
        Payload::from_trusted_json("{oops"),
        Payload::from_trusted_msgpack(vec![0x81]),
    ] {
        let append = request(vec![("a", good.clone()), ("b", bad.clone()), ("c", bad.clone())]);
        match append.for_store(Codec::Json) {
            Err(InvalidAppend::Rejected { stream, .. }) => assert_eq!(stream.as_str(), "b", "{bad:?}"),
            other => panic!("expected a refusal naming stream b for {bad:?}, got {other:?}"),
        }
    }
}

#[test]
fn a_machine_encodes_its_append_in_its_codec() {
    use crate::{Command, Decision, ExecutionContext, ExecutionPolicy, ReadResponse, Step, StreamSlice, StreamVersion};
    #[derive(Debug, thiserror::Error)]
    #[error("never")]
    struct Never;
    struct Make(StreamId);
    impl Command for Make {
        type Event = Shape;
        type State = ();
        type Error = Never;
        fn streams(&self) -> Vec<StreamId> {
            vec![self.0.clone()]
        }
        fn apply(&self, _: &mut (), _: &StreamId, _: &Shape) {}
        fn decide(&self, _: &(), out: &mut Decision<Shape>) -> Result<(), Never> {
            for shape in shapes() {
                out.emit(&self.0, shape);
            }
            Ok(())
        }
    }
    let now = Time::from_unix_millis(1);
    for codec in Codec::ALL {
        let context = ExecutionContext::new(CommandId::v7(now, [1; 10]));
        let stream = StreamId::new("s").expect("valid");
        let mut machine = crate::CommandMachine::new(Make(stream.clone()), ExecutionPolicy::default(), context, now, 1)
            .with_codec(*codec);
        let Step::Read { id, .. } = machine.poll() else {
            panic!("reads first")
        };
        let empty = StreamSlice {
            stream,
            head: StreamVersion::NONE,
            events: vec![],
            deleted_at: None,
            removed_through: StreamVersion::NONE,
        };
        machine.on_read(id, Ok(ReadResponse { streams: vec![empty] }), now);
        let Step::Append { request, .. } = machine.poll() else {
            panic!("then appends")
        };
        let events = &request.streams[0].events;
        assert_eq!(events.len(), shapes().len());
        for (event, shape) in events.iter().zip(shapes()) {
            assert_eq!(event.payload.codec(), *codec);
            assert_eq!(
                Shape::decode(event.event_type.as_str(), event.schema_version, &event.payload),
                Ok(shape)
            );
        }
    }
}

#[test]
fn small_and_large_payloads_keep_their_bytes() {
    for len in [0usize, 1, 24, 25, 26, 27, 200] {
        let text = "x".repeat(len);
        let bytes = from_value(&serde_json::json!(text)).expect("writes");
        let payload = Payload::from_trusted_msgpack(&bytes);
        assert_eq!(payload.as_msgpack(), Some(&bytes[..]), "{} bytes", bytes.len());
        assert_eq!(payload.len(), bytes.len());
        assert_eq!(payload.to_value(), Ok(serde_json::json!(text)));
        assert_eq!(payload, Payload::from_trusted_msgpack(bytes.clone()));
    }
}
