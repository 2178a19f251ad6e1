//! Crypto-shredding on PostgreSQL: the keys in their own tables, a forget
//! that survives a restart, no new key for a forgotten subject, and no
//! plaintext anywhere in the schema after appending personal data through
//! a real `PostgresStore`.
//!
//! Needs PostgreSQL (`DATABASE_URL`); without one these tests pass after a
//! loud notice, and fail under `CI=true`.

mod common;

use common::{registered, subject, CustomerEvent};
use eventcore::{
    AppendRequest, Codec, CommandId, Entropy, EventId, EventMetadata, ExpectedVersion, NewEvent, ReadRequest,
    RecordedEvent, StreamAppend, StreamId, Time,
};
use eventcore_postgres::PostgresStore;
use eventcore_shred::{
    open_recorded, ring_for_reading, ring_for_writing, seal_event, subjects_in_events, subjects_of_event, KeyStore,
    KeyStoreError, NonceSource, Personal, PgKeyStore,
};
use eventcore_store::EventStore;
use eventcore_tests::postgres::{fresh_store_with, options, schema_as_text};
use std::sync::Arc;

async fn keys_for(store: &PostgresStore) -> PgKeyStore {
    let keys = PgKeyStore::new(store);
    keys.migrate().await.expect("key tables created");
    keys.migrate().await.expect("migrating twice is harmless");
    keys
}

/// The driver's write side: seal with keys from `keys`, then the ordinary
/// append.
async fn append(store: &PostgresStore, keys: &PgKeyStore, stream: &str, events: &[CustomerEvent], seed: u64) {
    let mut entropy = Entropy::new(seed);
    let mut seed_bytes = [0u8; 32];
    for chunk in seed_bytes.chunks_mut(8) {
        chunk.copy_from_slice(&entropy.next_u64().to_le_bytes());
    }
    let mut nonces = NonceSource::from_seed(seed_bytes);
    let mut new_events = Vec::new();
    for event in events {
        let ring = ring_for_writing(keys, &subjects_of_event(event).expect("collects"))
            .await
            .expect("keys");
        let sealed = seal_event(event, &ring, &mut nonces, store.codec()).expect("sealed");
        new_events.push(NewEvent {
            event_id: EventId::v7(Time::ZERO, entropy.bytes10()),
            event_type: sealed.event_type,
            schema_version: sealed.schema_version,
            payload: sealed.payload,
        });
    }
    let request = AppendRequest {
        metadata: Arc::new(EventMetadata::new(
            CommandId::v7(Time::ZERO, entropy.bytes10()),
            Time::ZERO,
        )),
        streams: vec![StreamAppend {
            stream: StreamId::new(stream).expect("valid stream"),
            expected: ExpectedVersion::Any,
            events: new_events,
            tombstone: false,
        }],
    };
    store.append(&request).await.expect("appended");
}

/// The driver's read side: read the stream, fetch the keys its sealed
/// fields name, open.
async fn read(store: &PostgresStore, keys: &impl KeyStore, stream: &str) -> Vec<CustomerEvent> {
    let response = store
        .read(&ReadRequest::new([StreamId::new(stream).expect("valid stream")]))
        .await
        .expect("read");
    let recorded: Vec<RecordedEvent> = response.streams.into_iter().flat_map(|s| s.events).collect();
    let ring = ring_for_reading(keys, &subjects_in_events(&recorded).expect("scans"))
        .await
        .expect("keys");
    recorded
        .iter()
        .map(|e| open_recorded::<CustomerEvent>(e, &ring).expect("opens"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn forgetting_survives_a_restart_and_no_new_key_is_made() {
    let options = options("shred_restart");
    let Some(store) = fresh_store_with(options.clone()).await else {
        return;
    };
    let keys = keys_for(&store).await;
    let alice = registered("c-1", "alice@example.com", "Alice");
    let bob = registered("c-2", "bob@example.com", "Bob");
    append(&store, &keys, "customers", &[alice.clone(), bob.clone()], 1).await;
    assert_eq!(read(&store, &keys, "customers").await, [alice.clone(), bob.clone()]);

    assert!(keys.forget(&subject("c-1")).await.expect("forgets"));
    assert!(!keys.forget(&subject("c-1")).await.expect("idempotent"));
    drop((keys, store));

    // A new process: a new pool, a new key store on the same schema.
    let restarted = PostgresStore::connect_with(options).await.expect("connects");
    let keys = PgKeyStore::new(&restarted);
    assert!(keys.is_forgotten(&subject("c-1")).await.expect("answers"));
    assert!(!keys.is_forgotten(&subject("c-2")).await.expect("answers"));
    let events = read(&restarted, &keys, "customers").await;
    let CustomerEvent::Registered {
        customer, email, name, ..
    } = &events[0]
    else {
        panic!("another variant: {events:?}");
    };
    assert_eq!(customer, "c-1", "the event itself stays");
    assert_eq!(
        *email,
        Personal::Forgotten {
            subject: subject("c-1")
        }
    );
    assert_eq!(
        *name,
        Personal::Forgotten {
            subject: subject("c-1")
        }
    );
    assert_eq!(events[1], bob, "another subject is untouched");

    let refused = keys.get_or_create(&[subject("c-1")].into()).await;
    assert!(
        matches!(&refused, Err(KeyStoreError::SubjectForgotten { subject: s }) if s.as_str() == "c-1"),
        "{refused:?}"
    );
    let rows: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{}\".shred_keys WHERE subject = 'c-1'",
        restarted.options().schema
    ))
    .fetch_one(restarted.pool())
    .await
    .expect("counts");
    assert_eq!(rows, 0, "the key row is deleted, and no fresh one was made");
    restarted.drop_schema().await.expect("dropped");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_plaintext_appears_nowhere_in_the_schema() {
    for codec in Codec::ALL {
        let Some(store) = fresh_store_with(options("shred_plain").codec(*codec)).await else {
            return;
        };
        let keys = keys_for(&store).await;
        let secrets = ["zebediah.quux@example.org", "Zebediah Quux-Plaintext", "42 Wallaby Way"];
        let events = [
            registered("c-7", secrets[0], secrets[1]),
            CustomerEvent::Moved {
                address: Personal::new(
                    subject("c-7"),
                    common::Address {
                        street: secrets[2].into(),
                        city: "Sydney".into(),
                    },
                ),
            },
        ];
        append(&store, &keys, "customer-c-7", &events, 2).await;
        assert_eq!(
            read(&store, &keys, "customer-c-7").await,
            events,
            "{codec}: readable before forget"
        );

        let dump = dump_schema(&store).await;
        assert!(
            dump.contains("customer.Registered") && dump.contains("c-7"),
            "{codec}: the dump holds the events (and the subject id, in the clear)"
        );
        let hex = |text: &str| -> String { text.bytes().map(|b| format!("{b:02x}")).collect() };
        assert!(
            dump.contains("gold") || dump.contains(&hex("gold")),
            "{codec}: a field that is not personal is found, so a leaked one would be"
        );
        for secret in secrets {
            let hex = hex(secret);
            assert!(!dump.contains(secret), "{codec}: {secret:?} found in the schema");
            assert!(
                !dump.contains(&hex),
                "{codec}: {secret:?} found hex-encoded in the schema"
            );
        }
        store.drop_schema().await.expect("dropped");
    }
}

/// Every row of every table in the store's schema (events, streams,
/// commands, snapshots, the key tables, ...), as text; the events and the
/// key tables must be among them, or the search proves nothing.
async fn dump_schema(store: &PostgresStore) -> String {
    let dump = schema_as_text(store).await;
    for table in ["events", "shred_keys"] {
        assert!(dump.contains(&format!("-- {table}\n")), "no table {table} in the dump");
    }
    dump
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forget_racing_a_create_never_leaves_a_key_behind() {
    let Some(store) = fresh_store_with(options("shred_race")).await else {
        return;
    };
    let keys = keys_for(&store).await;
    let mut tasks = Vec::new();
    for n in 0..30 {
        let keys = keys.clone();
        tasks.push(tokio::spawn(async move {
            let s = subject(&format!("r-{n}"));
            let one = [s.clone()].into();
            let create = keys.get_or_create(&one);
            let forget = keys.forget(&s);
            let (created, forgot) = tokio::join!(create, forget);
            assert!(forgot.expect("forgets"), "the first forget of r-{n}");
            match created {
                Ok(_) | Err(KeyStoreError::SubjectForgotten { .. }) => {}
                Err(other) => panic!("r-{n}: {other}"),
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let left: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{}\".shred_keys",
        store.options().schema
    ))
    .fetch_one(store.pool())
    .await
    .expect("counts");
    assert_eq!(left, 0, "every subject was forgotten, so no key may remain");
    store.drop_schema().await.expect("dropped");
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_are_stable_and_get_omits_unknown_subjects() {
    let Some(store) = fresh_store_with(options("shred_keys")).await else {
        return;
    };
    let keys = keys_for(&store).await;
    let both = [subject("a"), subject("b")].into();
    let first = keys.get_or_create(&both).await.expect("created");
    assert_eq!(first.len(), 2);
    assert_eq!(
        keys.get_or_create(&both).await.expect("fetched"),
        first,
        "the same keys"
    );
    assert_ne!(first[&subject("a")].bytes(), first[&subject("b")].bytes());
    let some = keys
        .get(&[subject("a"), subject("nobody")].into())
        .await
        .expect("fetched");
    assert_eq!(some.keys().collect::<Vec<_>>(), [&subject("a")]);
    assert!(!keys.is_forgotten(&subject("nobody")).await.expect("answers"));
    store.drop_schema().await.expect("dropped");
}
