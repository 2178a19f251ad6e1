//! Forgetting a customer on PostgreSQL: two customers register with
//! personal data (sealed under each one's key), one of them is forgotten,
//! and the log is read again: the events are all there, the forgotten
//! customer's fields read as `Forgotten`, new data of theirs is refused,
//! and their e-mail address appears in no table of the schema.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo run -p eventcore-shred --example forget
//! ```
//!
//! Each run uses (and then drops) the schema `shred_demo`.

use eventcore::{
    AppendRequest, CommandId, Entropy, EventId, EventMetadata, ExpectedVersion, NewEvent, ReadRequest, StreamAppend,
    StreamId, Time,
};
use eventcore_postgres::{PostgresOptions, PostgresStore};
use eventcore_shred::{
    open_recorded, ring_for_reading, ring_for_writing, seal_event, subjects_in_events, subjects_of_event, KeyStore,
    NonceSource, Personal, PgKeyStore, SubjectId,
};
use eventcore_store::EventStore;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum CustomerEvent {
    Registered {
        email: Personal<String>,
        name: Personal<String>,
        plan: String,
    },
}

impl eventcore::Event for CustomerEvent {
    const NAMESPACE: &'static str = "customer";
}

type Error = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let store = PostgresStore::connect_with(PostgresOptions::new(url).schema("shred_demo")).await?;
    store.drop_schema().await?;
    store.migrate().await?;
    let keys = PgKeyStore::new(&store);
    keys.migrate().await?;
    let mut nonces = NonceSource::from_os()?;
    let stream = StreamId::new("customers")?;

    let alice = SubjectId::new("customer-1")?;
    let bob = SubjectId::new("customer-2")?;
    for (subject, email, name) in [
        (&alice, "alice@example.com", "Alice Liddell"),
        (&bob, "bob@example.com", "Bob Builder"),
    ] {
        let event = CustomerEvent::Registered {
            email: Personal::new(subject.clone(), email.to_owned()),
            name: Personal::new(subject.clone(), name.to_owned()),
            plan: "gold".to_owned(),
        };
        append(&store, &keys, &stream, &event, &mut nonces).await?;
    }
    let stored = store.read(&ReadRequest::new([stream.clone()])).await?;
    println!("as stored: {}", stored.streams[0].events[0].payload.as_json());
    println!("before forget:");
    print_log(&store, &keys, &stream).await?;

    keys.forget(&alice).await?;
    println!("after forget({alice}):");
    print_log(&store, &keys, &stream).await?;

    let again = CustomerEvent::Registered {
        email: Personal::new(alice.clone(), "alice@new.example".to_owned()),
        name: Personal::new(alice.clone(), "Alice".to_owned()),
        plan: "silver".to_owned(),
    };
    match append(&store, &keys, &stream, &again, &mut nonces).await {
        Err(refused) => println!("new data of {alice}: refused ({refused})"),
        Ok(()) => return Err("new personal data of a forgotten customer was accepted".into()),
    }

    let leaks: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM shred_demo.events e WHERE e::text LIKE '%alice@example.com%') \
              + (SELECT count(*) FROM shred_demo.shred_keys k WHERE k::text LIKE '%alice@example.com%')",
    )
    .fetch_one(store.pool())
    .await?;
    println!("rows holding alice@example.com in the clear: {leaks}");
    store.drop_schema().await?;
    if leaks != 0 {
        return Err("plaintext found in the schema".into());
    }
    Ok(())
}

/// The write pass: the event's subjects, their keys, seal, then the
/// ordinary append.
async fn append(
    store: &PostgresStore,
    keys: &PgKeyStore,
    stream: &StreamId,
    event: &CustomerEvent,
    nonces: &mut NonceSource,
) -> Result<(), Error> {
    let ring = ring_for_writing(keys, &subjects_of_event(event)?).await?;
    let sealed = seal_event(event, &ring, nonces, store.codec())?;
    // Ids from a seeded generator keep the example short; a service gets
    // them from its executor.
    let mut entropy = Entropy::new(u64::from_le_bytes(nonces.next_nonce()[..8].try_into()?));
    let now = Time::ZERO;
    store
        .append(&AppendRequest {
            metadata: Arc::new(EventMetadata::new(CommandId::v7(now, entropy.bytes10()), now)),
            streams: vec![StreamAppend {
                stream: stream.clone(),
                expected: ExpectedVersion::Any,
                events: vec![NewEvent {
                    event_id: EventId::v7(now, entropy.bytes10()),
                    event_type: sealed.event_type,
                    schema_version: sealed.schema_version,
                    payload: sealed.payload,
                }],
                tombstone: false,
            }],
        })
        .await?;
    Ok(())
}

/// The read pass: read, the subjects the sealed fields name, their keys,
/// open.
async fn print_log(store: &PostgresStore, keys: &impl KeyStore, stream: &StreamId) -> Result<(), Error> {
    let read = store.read(&ReadRequest::new([stream.clone()])).await?;
    let events = &read.streams[0].events;
    let ring = ring_for_reading(keys, &subjects_in_events(events)?).await?;
    for recorded in events {
        let CustomerEvent::Registered { email, name, plan } = open_recorded::<CustomerEvent>(recorded, &ring)?;
        let show = |p: &Personal<String>| p.known().cloned().unwrap_or_else(|| "<forgotten>".to_owned());
        println!(
            "  #{} {} / {} / plan {plan}",
            recorded.version,
            show(&name),
            show(&email)
        );
    }
    Ok(())
}
