use super::*;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Shape {
    Unit,
    Newtype(u32),
    Tuple(u8, String),
    Struct { a: i64, b: Option<String> },
}
impl Event for Shape {}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Plain {
    x: u8,
}
impl Event for Plain {}

fn round_trip<E: Event + PartialEq + fmt::Debug>(e: E) -> EncodedEvent {
    let enc = e.encode().expect("encodes");
    let back = E::decode(enc.event_type.as_str(), enc.schema_version, &enc.payload).expect("decodes");
    assert_eq!(back, e);
    enc
}

#[test]
fn every_variant_shape_round_trips_with_variant_name_as_type() {
    let enc = round_trip(Shape::Unit);
    assert_eq!((enc.event_type.as_str(), enc.payload.as_json()), ("Unit", "null"));
    let enc = round_trip(Shape::Newtype(7));
    assert_eq!((enc.event_type.as_str(), enc.payload.as_json()), ("Newtype", "7"));
    let enc = round_trip(Shape::Tuple(1, "x".into()));
    assert_eq!(enc.payload.as_json(), r#"[1,"x"]"#);
    let enc = round_trip(Shape::Struct { a: -1, b: None });
    assert_eq!(enc.payload.as_json(), r#"{"a":-1,"b":null}"#);
}

#[test]
fn structs_are_stored_under_their_type_name() {
    let enc = round_trip(Plain { x: 3 });
    assert_eq!(enc.event_type.as_str(), "Plain");
}

#[test]
fn unknown_type_and_bad_payload_are_distinguished() {
    assert_eq!(
        Shape::decode("Triangle", 1, &Payload::from_trusted_json("null")),
        Err(DecodeErrorKind::UnknownEventType)
    );
    // A field of the wrong shape is named by its path (issue 16).
    assert!(matches!(
        Shape::decode("Struct", 1, &Payload::from_trusted_json(r#"{"a":"no"}"#)),
        Err(DecodeErrorKind::InvalidField { path, .. }) if path == "a"
    ));
    assert!(matches!(
        Shape::decode("Newtype", 1, &Payload::from_trusted_json("7 8")),
        Err(DecodeErrorKind::InvalidPayload(_))
    ));
    assert_eq!(
        Shape::decode("Unit", 2, &Payload::from_trusted_json("null")),
        Err(DecodeErrorKind::UnsupportedSchemaVersion { found: 2, supported: 1 })
    );
}

/// The encoding as it was first written, for an enum: the whole value
/// to a `Value`, the variant's entry taken out of the wrapper object.
fn reference_encoding<E: Serialize>(event: &E) -> Result<(String, serde_json::Value), String> {
    match serde_json::to_value(event).map_err(|e| e.to_string())? {
        serde_json::Value::String(unit) => Ok((unit, serde_json::Value::Null)),
        serde_json::Value::Object(map) if map.len() == 1 => Ok(map.into_iter().next().expect("one entry")),
        other => Err(format!("not an externally tagged variant: {other}")),
    }
}

/// The payload as JSON, as a store holding it as `jsonb` compares it.
fn json(encoded: &EncodedEvent) -> serde_json::Value {
    serde_json::from_str(encoded.payload.as_json()).expect("the payload is JSON")
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Awkward {
    Unordered {
        zeta: f32,
        alpha: std::collections::BTreeMap<String, Vec<Option<u8>>>,
        mid: Shape,
    },
    Nested(Box<Awkward>, f32, (u8, String)),
    #[serde(rename = "Renamed")]
    Other(Plain),
    Nothing,
    Keyed(std::collections::BTreeMap<u32, String>),
}
impl Event for Awkward {}

#[test]
fn the_payload_is_the_json_the_whole_value_holds_under_the_variant() {
    let alpha = [("b".to_owned(), vec![Some(1), None]), ("a".to_owned(), vec![])].into();
    let events = vec![
        Awkward::Unordered {
            zeta: 0.5,
            alpha,
            mid: Shape::Struct {
                a: 1,
                b: Some("é\"\n".into()),
            },
        },
        Awkward::Nested(Box::new(Awkward::Nothing), -2.25, (7, "x".into())),
        Awkward::Other(Plain { x: 1 }),
        Awkward::Nothing,
        Awkward::Keyed([(2, "two".to_owned()), (10, "ten".to_owned())].into()),
    ];
    for event in events {
        let encoded = round_trip_ref(&event);
        let (name, content) = reference_encoding(&event).expect("reference encodes");
        assert_eq!((encoded.event_type.as_str(), json(&encoded)), (name.as_str(), content));
    }
    let plain = encode_json(&Plain { x: 3 }, 1).expect("encodes");
    let whole = serde_json::to_value(Plain { x: 3 }).expect("reference encodes");
    assert_eq!((plain.event_type.as_str(), json(&plain)), ("Plain", whole));
}

fn round_trip_ref<E: Event + PartialEq + fmt::Debug>(event: &E) -> EncodedEvent {
    let enc = event.encode().expect("encodes");
    let back = E::decode(enc.event_type.as_str(), enc.schema_version, &enc.payload).expect("decodes");
    assert_eq!(&back, event);
    enc
}

#[derive(Debug, Serialize)]
struct Sorted {
    a: u8,
    b: Option<String>,
    c: Vec<i64>,
}

#[derive(Debug, Serialize)]
struct Unsorted {
    z: u8,
    a: u8,
}

#[derive(Debug, Serialize)]
struct UnitStruct;

#[derive(Debug, Serialize)]
struct Wrapped(String);

#[derive(Debug, Serialize)]
struct Pair(u8, bool);

#[derive(Debug, Serialize)]
enum Wide {
    Unit,
    Scalar(i64),
    Unsigned(u64),
    Float(f64),
    Text(String),
    Ch(char),
    Opt(Option<u32>),
    Seq(Vec<Sorted>),
    Tup(u8, String, ()),
    Struct {
        alpha: Sorted,
        beta: Vec<Shape>,
        gamma: (u8, f64),
    },
    Nested(Shape),
    UnitInside(UnitStruct),
    Newtype(Wrapped),
    TupleStruct(Pair),
    Empty {},
    EmptyTuple(),
    Boxed(Box<Wide>),
    Unordered(Unsorted),
    Small(f32),
    Big(u128),
    Bytes(#[serde(with = "serde_bytes_like")] Vec<u8>),
    Map(std::collections::BTreeMap<String, u8>),
    Repeated {
        #[serde(rename = "k")]
        a: u8,
        #[serde(rename = "k")]
        b: u8,
    },
    UnorderedVariant {
        z: u8,
        a: u8,
    },
    Skipping {
        #[serde(skip_serializing_if = "Option::is_none")]
        gone: Option<u8>,
        kept: u8,
    },
}

/// Serializes a byte vector with `serialize_bytes`.
mod serde_bytes_like {
    pub fn serialize<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }
}

#[test]
fn every_shape_is_stored_as_the_json_the_tagged_value_holds() {
    let sorted = || Sorted {
        a: 1,
        b: Some("q\"\\\u{1}é€😀".into()),
        c: vec![i64::MIN, 0, i64::MAX],
    };
    let events = vec![
        Wide::Unit,
        Wide::Scalar(-5),
        Wide::Unsigned(u64::MAX),
        Wide::Float(0.1),
        Wide::Float(-0.0),
        Wide::Float(1e300),
        Wide::Float(f64::NAN),
        Wide::Float(f64::INFINITY),
        Wide::Text("line\nbreak\ttab\u{7f}\u{0}".into()),
        Wide::Ch('"'),
        Wide::Ch('\\'),
        Wide::Ch('\u{1f}'),
        Wide::Ch('é'),
        Wide::Text(
            (0u8..=0x7f)
                .map(char::from)
                .chain(['\u{80}', '\u{2028}', '\u{fffd}'])
                .collect(),
        ),
        Wide::Opt(None),
        Wide::Opt(Some(3)),
        Wide::Seq(vec![]),
        Wide::Seq(vec![
            sorted(),
            Sorted {
                a: 0,
                b: None,
                c: vec![],
            },
        ]),
        Wide::Tup(7, "x".into(), ()),
        Wide::Struct {
            alpha: sorted(),
            beta: vec![
                Shape::Unit,
                Shape::Newtype(2),
                Shape::Tuple(1, "t".into()),
                Shape::Struct { a: -1, b: None },
            ],
            gamma: (9, 2.5),
        },
        Wide::Nested(Shape::Struct {
            a: 3,
            b: Some("s".into()),
        }),
        Wide::UnitInside(UnitStruct),
        Wide::Newtype(Wrapped("w".into())),
        Wide::TupleStruct(Pair(1, false)),
        Wide::Empty {},
        Wide::EmptyTuple(),
        Wide::Boxed(Box::new(Wide::Tup(1, "b".into(), ()))),
        Wide::Unordered(Unsorted { z: 1, a: 2 }),
        Wide::Small(1.5),
        Wide::Big(1),
        Wide::Bytes(vec![0, 255]),
        Wide::Map([("b".to_owned(), 1), ("a".to_owned(), 2)].into()),
        Wide::Repeated { a: 1, b: 2 },
        Wide::UnorderedVariant { z: 1, a: 2 },
        Wide::Skipping { gone: None, kept: 1 },
        Wide::Skipping { gone: Some(0), kept: 1 },
        Wide::Boxed(Box::new(Wide::Small(1.5))),
    ];
    for event in &events {
        let encoded = encode_json(event, 1).expect("encodes");
        let (name, content) = reference_encoding(event).expect("reference encodes");
        assert_eq!(
            (encoded.event_type.as_str(), json(&encoded)),
            (name.as_str(), content),
            "{event:?}"
        );
    }
}

#[test]
fn fields_come_out_in_the_order_serde_gives_them() {
    // Before, the payload was a printed `serde_json::Value`: keys sorted
    // (`{"a":2,"z":1}`, `{"10":…,"2":…}`) and `f32` widened to `f64`.
    // A store holding `jsonb` sees the same document either way.
    let text = |event: &Wide| encode_json(event, 1).expect("encodes").payload.as_json().to_owned();
    assert_eq!(text(&Wide::UnorderedVariant { z: 1, a: 2 }), r#"{"z":1,"a":2}"#);
    assert_eq!(text(&Wide::Unordered(Unsorted { z: 1, a: 2 })), r#"{"z":1,"a":2}"#);
    assert_eq!(text(&Wide::Small(0.1)), "0.1");
    assert_eq!(text(&Wide::Big(u128::from(u64::MAX) + 1)), "18446744073709551616");
    let keyed = Awkward::Keyed([(2, "two".to_owned()), (10, "ten".to_owned())].into());
    assert_eq!(round_trip_ref(&keyed).payload.as_json(), r#"{"2":"two","10":"ten"}"#);
    let unordered = Awkward::Unordered {
        zeta: 0.1,
        alpha: [("b".to_owned(), vec![None])].into(),
        mid: Shape::Unit,
    };
    assert_eq!(
        round_trip_ref(&unordered).payload.as_json(),
        r#"{"zeta":0.1,"alpha":{"b":[null]},"mid":"Unit"}"#
    );
}

#[test]
fn a_value_that_is_not_a_variant_is_stored_whole_under_its_type_name() {
    #[derive(Serialize)]
    struct Wrapper(Shape);
    let wrapped = encode_json(&Wrapper(Shape::Newtype(1)), 1).expect("encodes");
    assert_eq!(
        (wrapped.event_type.as_str(), wrapped.payload.as_json()),
        ("Wrapper", r#"{"Newtype":1}"#)
    );
    let list = encode_json(&vec![Shape::Unit], 1).expect("encodes");
    assert_eq!(
        (list.event_type.as_str(), list.payload.as_json()),
        ("Vec", r#"["Unit"]"#)
    );
    let some = encode_json(&Some(3u8), 1).expect("encodes");
    assert_eq!((some.event_type.as_str(), some.payload.as_json()), ("Option", "3"));
}

#[test]
fn an_encode_inside_an_encode_gets_its_own_buffer() {
    struct EncodesInside;
    impl Serialize for EncodesInside {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let inner = encode_json(&Shape::Newtype(9), 1).map_err(ser::Error::custom)?;
            serializer.serialize_newtype_variant("E", 0, "Outer", inner.payload.as_json())
        }
    }
    let outer = encode_json(&EncodesInside, 1).expect("encodes");
    assert_eq!(
        (outer.event_type.as_str(), outer.payload.as_json()),
        ("Outer", r#""9""#)
    );
}

#[test]
fn encoding_errors_are_the_same_as_before() {
    #[derive(Serialize)]
    enum Bad {
        Pairs(std::collections::BTreeMap<(u8, u8), u8>),
        #[serde(rename = "has space")]
        Spaced,
    }
    let pairs = Bad::Pairs([((1, 2), 3)].into());
    let error = encode_json(&pairs, 1).expect_err("tuple keys cannot be JSON object keys");
    let reference = serde_json::to_value(&pairs).expect_err("nor before");
    assert!(matches!(error, EncodeError::Serialize(_)), "{error:?}");
    assert_eq!(error.to_string(), "event could not be serialized");
    let source = std::error::Error::source(&error).map(ToString::to_string);
    assert_eq!(source, Some(reference.to_string()), "serde's own message is the source");
    for _ in 0..2 {
        // Invalid names are never cached: refused every time.
        assert!(matches!(encode_json(&Bad::Spaced, 1), Err(EncodeError::InvalidType(_))));
    }
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum V2 {
    Deposited { cents: u64 },
}
impl Event for V2 {
    const SCHEMA_VERSION: u32 = 2;
    fn upcast(
        event_type: &str,
        schema_version: u32,
        payload: serde_json::Value,
    ) -> Result<serde_json::Value, DecodeErrorKind> {
        match (event_type, schema_version) {
            ("Deposited", 1) => {
                let dollars = payload["dollars"]
                    .as_u64()
                    .ok_or(DecodeErrorKind::InvalidPayload("dollars".into()))?;
                Ok(serde_json::json!({ "cents": dollars * 100 }))
            }
            _ => Err(DecodeErrorKind::UnsupportedSchemaVersion {
                found: schema_version,
                supported: 2,
            }),
        }
    }
}

#[test]
fn old_schema_versions_are_upcast_on_read() {
    let old = Payload::from_trusted_json(r#"{"dollars":3}"#);
    assert_eq!(V2::decode("Deposited", 1, &old), Ok(V2::Deposited { cents: 300 }));
    assert_eq!(V2::Deposited { cents: 1 }.encode().expect("encodes").schema_version, 2);
}

// Evolving events (issue 16): per-variant versions, upcaster chains,
// namespaces, aliases, field paths.

/// v1 `{"name": "Ada Lovelace", "total": 5}`, v2 split the name,
/// v3 renamed `total` to `amount_cents` and added `currency` (default EUR).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum OrderV3 {
    Placed {
        first: String,
        last: String,
        amount_cents: u64,
        currency: String,
    },
    Cancelled {
        reason: String,
    },
}

fn split_name(v: serde_json::Value) -> Result<serde_json::Value, String> {
    let name = v["name"].as_str().ok_or("`name` is missing or not text")?;
    let (first, last) = name.split_once(' ').unwrap_or((name, ""));
    Ok(serde_json::json!({ "first": first, "last": last, "total": v["total"] }))
}

fn rename_total_add_currency(mut v: serde_json::Value) -> Result<serde_json::Value, String> {
    let object = v.as_object_mut().ok_or("not an object")?;
    let total = object.remove("total").ok_or("`total` is missing")?;
    object.insert("amount_cents".into(), total);
    object.entry("currency").or_insert_with(|| "EUR".into());
    Ok(v)
}

impl Event for OrderV3 {
    const NAMESPACE: &'static str = "order";
    const READS_UNQUALIFIED: bool = true;
    const VERSIONS: &'static [(&'static str, u32)] = &[("Placed", 3)];
    const UPCASTS: &'static [Upcast] = &[
        Upcast::new("Placed", 1, split_name),
        Upcast::new("Placed", 2, rename_total_add_currency),
    ];
    const ALIASES: &'static [(&'static str, &'static str)] = &[("Withdrawn", "Cancelled")];
}

fn placed() -> OrderV3 {
    OrderV3::Placed {
        first: "Ada".into(),
        last: "Lovelace".into(),
        amount_cents: 5,
        currency: "EUR".into(),
    }
}

#[test]
fn an_upcaster_chain_takes_each_old_version_to_the_current_one_step_by_step() {
    let v1 = Payload::from_trusted_json(r#"{"name":"Ada Lovelace","total":5}"#);
    let v2 = Payload::from_trusted_json(r#"{"first":"Ada","last":"Lovelace","total":5}"#);
    assert_eq!(
        OrderV3::decode("Placed", 1, &v1),
        Ok(placed()),
        "bare v1: before the namespace"
    );
    assert_eq!(OrderV3::decode("order.Placed", 2, &v2), Ok(placed()));
    let v3 = placed().encode().expect("encodes");
    assert_eq!((v3.event_type.as_str(), v3.schema_version), ("order.Placed", 3));
    assert_eq!(OrderV3::decode("order.Placed", 3, &v3.payload), Ok(placed()));
    assert_eq!(
        OrderV3::decode("order.Placed", 4, &v3.payload),
        Err(DecodeErrorKind::UnsupportedSchemaVersion { found: 4, supported: 3 })
    );
}

#[test]
fn an_unchanged_variant_needs_no_code_and_stays_at_version_one() {
    let cancelled = OrderV3::Cancelled { reason: "late".into() };
    let encoded = cancelled.encode().expect("encodes");
    assert_eq!(
        (encoded.event_type.as_str(), encoded.schema_version),
        ("order.Cancelled", 1)
    );
    assert_eq!(OrderV3::decode("order.Cancelled", 1, &encoded.payload), Ok(cancelled));
}

#[test]
fn a_failing_step_and_a_missing_step_are_typed_errors() {
    let no_name = Payload::from_trusted_json(r#"{"total":5}"#);
    assert_eq!(
        OrderV3::decode("order.Placed", 1, &no_name),
        Err(DecodeErrorKind::UpcastFailed {
            from: 1,
            reason: "`name` is missing or not text".into()
        })
    );
    // Cancelled never had a version 0 step.
    assert_eq!(
        OrderV3::decode("order.Cancelled", 0, &Payload::from_trusted_json("{}")),
        Err(DecodeErrorKind::UnsupportedSchemaVersion { found: 0, supported: 1 })
    );
}

#[test]
fn aliases_read_a_renamed_variant_under_its_old_name_namespaced_or_not() {
    let payload = Payload::from_trusted_json(r#"{"reason":"fraud"}"#);
    let expected = OrderV3::Cancelled { reason: "fraud".into() };
    assert_eq!(OrderV3::decode("order.Withdrawn", 1, &payload), Ok(expected));
    assert_eq!(
        OrderV3::decode("Withdrawn", 1, &payload),
        Ok(OrderV3::Cancelled { reason: "fraud".into() })
    );
}

#[test]
fn a_moved_variants_old_name_is_read_only_as_it_was_stored() {
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Billing {
        Charged,
    }
    impl Event for Billing {
        const NAMESPACE: &'static str = "billing";
        const READS_UNQUALIFIED: bool = true;
        const ALIASES: &'static [(&'static str, &'static str)] = &[("order.Charged", "Charged")];
    }
    let null = Payload::from_trusted_json("null");
    assert_eq!(Billing::decode("order.Charged", 1, &null), Ok(Billing::Charged));
    // Never written, and not among the types a projection subscribes to.
    assert_eq!(
        Billing::decode("billing.order.Charged", 1, &null),
        Err(DecodeErrorKind::UnknownEventType)
    );
    let listed: Vec<String> = Billing::event_types()
        .unwrap_or_default()
        .iter()
        .map(|t| t.to_string())
        .collect();
    assert_eq!(listed, ["Charged", "billing.Charged", "order.Charged"]);
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum UserEvent {
    Placed { login: String },
}
impl Event for UserEvent {
    const NAMESPACE: &'static str = "user";
}

#[test]
fn two_enums_with_the_same_variant_name_never_read_each_other() {
    let user = UserEvent::Placed { login: "ada".into() }.encode().expect("encodes");
    assert_eq!(user.event_type.as_str(), "user.Placed");
    assert_eq!(
        OrderV3::decode(user.event_type.as_str(), user.schema_version, &user.payload),
        Err(DecodeErrorKind::UnknownEventType)
    );
    let order = placed().encode().expect("encodes");
    assert_eq!(
        UserEvent::decode(order.event_type.as_str(), order.schema_version, &order.payload),
        Err(DecodeErrorKind::UnknownEventType)
    );
    // The per-thread type cache keys on the namespace too.
    assert_eq!(placed().encode().expect("encodes").event_type.as_str(), "order.Placed");
    assert_eq!(
        UserEvent::Placed { login: "b".into() }
            .encode()
            .expect("encodes")
            .event_type
            .as_str(),
        "user.Placed"
    );
}

#[test]
fn event_types_lists_every_stored_name_the_enum_reads() {
    let names: Vec<String> = OrderV3::event_types()
        .expect("an enum")
        .iter()
        .map(|t| t.to_string())
        .collect();
    assert_eq!(
        names,
        [
            "Cancelled",
            "Placed",
            "Withdrawn",
            "order.Cancelled",
            "order.Placed",
            "order.Withdrawn"
        ]
    );
    assert_eq!(Plain::event_types(), None, "a struct is stored whole: no variant list");
    assert_eq!(
        Shape::event_types().map(|t| t.len()),
        Some(4),
        "no namespace: the bare variant names"
    );
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Line {
    sku: String,
    quantity: u32,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Basket {
    Filled { customer: Customer, lines: Vec<Line> },
}
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Customer {
    name: String,
}
impl Event for Basket {}

#[test]
fn a_decode_error_names_the_field_path_that_failed() {
    let payload = Payload::from_trusted_json(
        r#"{"customer":{"name":"a"},"lines":[{"sku":"x","quantity":1},{"sku":"y","quantity":-2}]}"#,
    );
    match Basket::decode("Filled", 1, &payload) {
        Err(DecodeErrorKind::InvalidField { path, reason }) => {
            assert_eq!(path, "lines[1].quantity");
            assert!(reason.contains("-2"), "{reason}");
        }
        other => panic!("expected a field error, got {other:?}"),
    }
    let missing = Payload::from_trusted_json(r#"{"customer":{},"lines":[]}"#);
    match Basket::decode("Filled", 1, &missing) {
        Err(DecodeErrorKind::InvalidField { path, reason }) => {
            assert_eq!(path, "customer");
            assert!(reason.contains("missing field `name`"), "{reason}");
        }
        other => panic!("expected a field error, got {other:?}"),
    }
}
