//! `codecs`: the candidates for EventCore's binary payload codec, measured
//! against each other and against JSON on the events the benchmarks store.
//!
//! ```text
//! cargo run --release -p eventcore-benches --bin codecs [-- --iters N]
//! ```
//!
//! For each event: the payload's size, and the time to encode it and to
//! decode it back (best of five rounds of `N` operations each, default
//! 200,000). JSON and MessagePack go through EventCore's own codec
//! (`Event::encode_as`, `Event::decode`: the enum tag stripped, the variant's
//! content as payload, its name stored beside it), MessagePack with structs
//! as maps of their field names. The positional formats are measured on the
//! variant's content alone, straight through their crates (no tag to strip,
//! no variant to dispatch on): `rmp-serde`'s default, structs as arrays, and
//! `postcard`. The last table decodes an event stored at an older schema
//! version, through the upcaster (`serde_json::Value` in, `Value` out): the
//! positional formats have no field names to upcast from. See
//! `docs/benchmarks.md`, "A second codec".

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use eventcore::{Codec, EncodedEvent, Event, Upcast};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::hint::black_box;
use std::time::Instant;

/// The bank's events, as the benchmarks' W3 and W4 store them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum AccountEvent {
    Opened { initial: u64 },
    Deposited { amount: u64 },
}
impl Event for AccountEvent {}

/// The variant contents, for the positional formats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Opened {
    initial: u64,
}
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Deposited {
    amount: u64,
}

/// The shop's order, with three lines (the order-processing example's
/// `OrderEvent::Placed`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum OrderEvent {
    Placed { customer: String, lines: Vec<Line> },
}
impl Event for OrderEvent {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Line {
    product: String,
    units: u32,
}
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Placed {
    customer: String,
    lines: Vec<Line>,
}

/// An order whose `Placed` is at version 2 (v1 had `client` for
/// `customer`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum EvolvedOrder {
    Placed { customer: String, lines: Vec<Line> },
}
fn rename_client(mut v: serde_json::Value) -> Result<serde_json::Value, String> {
    let object = v.as_object_mut().ok_or("not an object")?;
    let client = object.remove("client").ok_or("`client` is missing")?;
    object.insert("customer".to_owned(), client);
    Ok(v)
}
impl Event for EvolvedOrder {
    const VERSIONS: &'static [(&'static str, u32)] = &[("Placed", 2)];
    const UPCASTS: &'static [Upcast] = &[Upcast::new("Placed", 1, rename_client)];
}

fn lines() -> Vec<Line> {
    (1..=3)
        .map(|i| Line {
            product: format!("stock-product-{i}"),
            units: i,
        })
        .collect()
}

/// Nanoseconds per call of `f`: the best of five rounds of `iters` calls.
fn ns_per_op(iters: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..iters / 10 {
        f();
    }
    (0..5)
        .map(|_| {
            let began = Instant::now();
            for _ in 0..iters {
                f();
            }
            began.elapsed().as_nanos() as f64 / f64::from(iters)
        })
        .fold(f64::MAX, f64::min)
}

struct Measured {
    format: &'static str,
    bytes: usize,
    encode: f64,
    decode: f64,
}

/// EventCore's own codec in `codec`.
fn eventcore<E: Event + Clone + PartialEq + std::fmt::Debug>(iters: u32, event: &E, codec: Codec) -> Measured {
    let encoded = event.encode_as(codec).expect("encodes");
    let back = E::decode(encoded.event_type.as_str(), encoded.schema_version, &encoded.payload).expect("decodes");
    assert_eq!(&back, event);
    let encode = ns_per_op(iters, || {
        black_box(black_box(event).encode_as(codec).expect("encodes"));
    });
    let decode = ns_per_op(iters, || {
        let e = black_box(&encoded);
        black_box(E::decode(e.event_type.as_str(), e.schema_version, &e.payload).expect("decodes"));
    });
    Measured {
        format: match codec {
            Codec::Json => "JSON (EventCore)",
            _ => "MessagePack, named fields (EventCore)",
        },
        bytes: encoded.payload.len(),
        encode,
        decode,
    }
}

/// A format's own crate on the variant's content alone.
fn raw<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    iters: u32,
    format: &'static str,
    content: &T,
    write: fn(&T, &mut Vec<u8>),
    read: fn(&[u8]) -> T,
) -> Measured {
    let mut buffer = Vec::with_capacity(256);
    write(content, &mut buffer);
    let bytes = buffer.clone();
    assert_eq!(&read(&bytes), content);
    let encode = ns_per_op(iters, || {
        buffer.clear();
        write(black_box(content), &mut buffer);
        // What EventCore keeps: the payload in a shared allocation of its own.
        black_box(Box::<[u8]>::from(buffer.as_slice()));
    });
    let decode = ns_per_op(iters, || {
        black_box(read(black_box(&bytes)));
    });
    Measured {
        format,
        bytes: bytes.len(),
        encode,
        decode,
    }
}

fn msgpack_positional<T: Serialize>(value: &T, out: &mut Vec<u8>) {
    value.serialize(&mut rmp_serde::Serializer::new(out)).expect("writes");
}

fn msgpack_read<T: DeserializeOwned>(bytes: &[u8]) -> T {
    rmp_serde::from_slice(bytes).expect("reads")
}

fn postcard_write<T: Serialize>(value: &T, out: &mut Vec<u8>) {
    let written = postcard::to_allocvec(value).expect("writes");
    out.extend_from_slice(&written);
}

fn postcard_read<T: DeserializeOwned>(bytes: &[u8]) -> T {
    postcard::from_bytes(bytes).expect("reads")
}

fn table<E, T>(iters: u32, title: &str, event: &E, content: &T)
where
    E: Event + Clone + PartialEq + std::fmt::Debug,
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    println!("\n{title}\n");
    println!("| format | payload bytes | encode ns/op | decode ns/op |");
    println!("|---|---|---|---|");
    for m in [
        eventcore(iters, event, Codec::Json),
        eventcore(iters, event, Codec::MessagePack),
        raw(
            iters,
            "MessagePack, positional (rmp-serde default)",
            content,
            msgpack_positional,
            msgpack_read,
        ),
        raw(iters, "postcard", content, postcard_write, postcard_read),
    ] {
        println!("| {} | {} | {:.0} | {:.0} |", m.format, m.bytes, m.encode, m.decode);
    }
}

/// An `EvolvedOrder::Placed` stored at version 1 in `codec`, decoded
/// through its upcaster.
fn upcast_row(iters: u32, codec: Codec) {
    #[derive(Serialize)]
    enum V1 {
        Placed { client: String, lines: Vec<Line> },
    }
    impl Event for V1 {}
    // Serialize-only stand-in for the old release's enum.
    impl<'de> Deserialize<'de> for V1 {
        fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
            Err(serde::de::Error::custom("write-only"))
        }
    }
    let old = V1::Placed {
        client: "customer-42".to_owned(),
        lines: lines(),
    };
    let stored: EncodedEvent = old.encode_as(codec).expect("encodes");
    let expected = EvolvedOrder::Placed {
        customer: "customer-42".to_owned(),
        lines: lines(),
    };
    let decode = |e: &EncodedEvent| EvolvedOrder::decode(e.event_type.as_str(), 1, &e.payload).expect("upcasts");
    assert_eq!(decode(&stored), expected);
    let ns = ns_per_op(iters, || {
        black_box(decode(black_box(&stored)));
    });
    println!("| {codec} | {} | {ns:.0} |", stored.payload.len());
}

fn main() {
    let mut iters = 200_000u32;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next().and_then(|v| v.parse().ok())) {
            ("--iters", Some(n)) => iters = n,
            _ => {
                eprintln!("usage: codecs [--iters N]");
                std::process::exit(2);
            }
        }
    }
    println!("best of 5 rounds of {iters} operations each");
    table(
        iters,
        "`AccountEvent::Deposited { amount: 1 }` (W3's and W4's event)",
        &AccountEvent::Deposited { amount: 1 },
        &Deposited { amount: 1 },
    );
    table(
        iters,
        "`AccountEvent::Opened { initial: 1_000_000_000 }`",
        &AccountEvent::Opened { initial: 1_000_000_000 },
        &Opened { initial: 1_000_000_000 },
    );
    table(
        iters,
        "`OrderEvent::Placed` with three lines (the shop's order)",
        &OrderEvent::Placed {
            customer: "customer-42".to_owned(),
            lines: lines(),
        },
        &Placed {
            customer: "customer-42".to_owned(),
            lines: lines(),
        },
    );
    println!("\n`OrderEvent::Placed` stored at version 1, decoded through its upcaster (v1 → v2)\n");
    println!("| codec | payload bytes | decode ns/op |");
    println!("|---|---|---|");
    for codec in Codec::ALL {
        upcast_row(iters, *codec);
    }
}
