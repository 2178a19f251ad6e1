//! PostgreSQL only: payload codecs (`PostgresOptions::codec`). A store
//! keeps JSON in `payload jsonb` and MessagePack in `payload_bin bytea`
//! (migration 5), every row says which, and a store switched from one codec
//! to the other reads and decodes everything written before; events written
//! before migration 5 stay readable after it.

use eventcore::*;
use eventcore_examples::bank::{account, Account, AccountEvent, OpenAccount, Transfer};
use eventcore_postgres::PostgresStore;
use eventcore_tests::conformance::{fresh_command_id, global_log, read, stream};
use eventcore_tests::postgres::{fresh_store, fresh_store_with, options};
use eventcore_tokio::{EventStore, Executor};
use futures_util::TryStreamExt;
use std::sync::Arc;

/// `(rows with a JSON payload, rows with a binary payload)`.
async fn payload_columns(store: &PostgresStore) -> (i64, i64) {
    let schema = &store.options().schema;
    sqlx::query_as(&format!(
        "SELECT count(*) FILTER (WHERE payload IS NOT NULL), count(*) FILTER (WHERE payload_bin IS NOT NULL) \
         FROM \"{schema}\".events"
    ))
    .fetch_one(store.pool())
    .await
    .expect("count payload columns")
}

/// The same schema, its store keeping payloads in `codec`.
async fn switched(store: &PostgresStore, codec: Codec) -> PostgresStore {
    PostgresStore::connect_with(store.options().clone().codec(codec))
        .await
        .expect("connect to the same schema")
}

/// Every event of `streams` read back and decoded by `store`, through a
/// stream read, `stream_events` and `read_all`.
async fn decoded_everywhere(store: &PostgresStore, streams: &[StreamId]) -> Vec<(Codec, AccountEvent)> {
    let slices = read(store, streams).await;
    let events: Vec<RecordedEvent> = slices.into_iter().flat_map(|s| s.events).collect();
    let mut streamed = Vec::new();
    for s in streams {
        let page = std::num::NonZeroU32::new(2).unwrap_or(std::num::NonZeroU32::MIN);
        let rows = store.stream_events(s.clone(), StreamVersion::NONE, page);
        let mut rows = std::pin::pin!(rows);
        while let Some(event) = rows.try_next().await.expect("stream_events") {
            streamed.push(event);
        }
    }
    let mut by_position = events.clone();
    by_position.sort_by_key(|e| e.position);
    streamed.sort_by_key(|e| e.position);
    assert_eq!(streamed, by_position, "stream_events reads what read reads");
    assert_eq!(global_log(store).await, by_position, "read_all reads what read reads");
    events
        .iter()
        .map(|e| {
            let event = decode_recorded::<AccountEvent>(e).expect("every stored event decodes");
            (e.payload.codec(), event)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_switched_between_codecs_reads_what_either_wrote() {
    let Some(json) = fresh_store("codec_switch").await else {
        return;
    };
    assert_eq!(json.codec(), Codec::Json, "JSON is the default");
    let (a, b) = (account(1), account(2));
    let executor = Executor::new(json.clone());
    executor
        .execute(OpenAccount {
            account: a.clone(),
            initial: 100,
        })
        .await
        .expect("open a");
    assert_eq!(payload_columns(&json).await, (1, 0));

    // The same schema, now MessagePack: its executor encodes in it.
    let binary = switched(&json, Codec::MessagePack).await;
    assert_eq!(binary.codec(), Codec::MessagePack);
    let executor = Executor::new(binary.clone());
    executor
        .execute(OpenAccount {
            account: b.clone(),
            initial: 0,
        })
        .await
        .expect("open b");
    let moved = executor
        .execute(Transfer {
            from: a.clone(),
            to: b.clone(),
            amount: 30,
        })
        .await
        .expect("a transfer folds a's JSON event and writes MessagePack");
    assert_eq!(moved.appended.map(|r| r.streams.len()), Some(2));
    assert_eq!(
        payload_columns(&binary).await,
        (1, 3),
        "one JSON row, three binary ones"
    );

    let expected = vec![
        (Codec::Json, AccountEvent::Opened { initial: 100 }),
        (Codec::MessagePack, AccountEvent::Withdrawn { amount: 30 }),
        (Codec::MessagePack, AccountEvent::Opened { initial: 0 }),
        (Codec::MessagePack, AccountEvent::Deposited { amount: 30 }),
    ];
    let streams = [a.clone(), b.clone()];
    assert_eq!(decoded_everywhere(&binary, &streams).await, expected);
    assert_eq!(
        decoded_everywhere(&json, &streams).await,
        expected,
        "the JSON store reads the binary rows too"
    );

    // Back to JSON: a fresh executor folds both kinds of rows.
    let executor = Executor::new(json.clone());
    executor
        .execute(Transfer {
            from: b.clone(),
            to: a.clone(),
            amount: 5,
        })
        .await
        .expect("a transfer on the JSON store again");
    assert_eq!(payload_columns(&json).await, (3, 3));
    let balances = read(&json, &streams).await;
    let mut totals = [0i128; 2];
    for (i, slice) in balances.iter().enumerate() {
        let mut view = Account::default();
        for event in &slice.events {
            view.apply(&decode_recorded::<AccountEvent>(event).expect("decodes"));
        }
        totals[i] = i128::from(view.balance);
    }
    assert_eq!(totals, [75, 25]);
    let _ = json.drop_schema().await;
}

fn append_of(stream: &StreamId, payloads: Vec<Payload>) -> AppendRequest {
    AppendRequest {
        metadata: Arc::new(EventMetadata::new(fresh_command_id(), Time::from_unix_millis(1))),
        streams: vec![StreamAppend {
            stream: stream.clone(),
            expected: ExpectedVersion::Any,
            events: payloads
                .into_iter()
                .enumerate()
                .map(|(i, payload)| NewEvent {
                    event_id: EventId::v7(Time::from_unix_millis(1), [i as u8 + 1; 10]),
                    event_type: EventType::new("Noted").expect("valid"),
                    schema_version: 1,
                    payload,
                })
                .collect(),
            tombstone: false,
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_store_holds_json_only_and_a_binary_store_keeps_what_it_is_given() {
    let Some(json) = fresh_store("codec_given").await else {
        return;
    };
    let binary = switched(&json, Codec::MessagePack).await;
    let text = Payload::from_trusted_json(r#"{"keys":{"1":true},"n":-3}"#);
    let bytes = text.to_codec(Codec::MessagePack).expect("converts");
    let s = stream("given");
    // In both codecs, alone, in the function path (`append_in`) and in a group.
    binary
        .append(&append_of(&s, vec![text.clone(), bytes.clone()]))
        .await
        .expect("the binary store takes both");
    assert_eq!(payload_columns(&binary).await, (1, 1), "each as it came");
    json.append(&append_of(&s, vec![text.clone(), bytes.clone()]))
        .await
        .expect("the JSON store takes both");
    assert_eq!(
        payload_columns(&json).await,
        (3, 1),
        "the binary payload stored as JSON"
    );
    let mut conn = binary.pool().acquire().await.expect("connection");
    binary
        .append_in(&mut conn, &append_of(&s, vec![bytes.clone(), text.clone()]))
        .await
        .expect("append_in");
    drop(conn);
    let outcomes = binary
        .append_batch(&[
            append_of(&s, vec![bytes.clone()]),
            append_of(&s, vec![text.clone(), bytes.clone()]),
        ])
        .await;
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    assert_eq!(payload_columns(&json).await, (5, 4));
    let events = &read(&json, std::slice::from_ref(&s)).await[0].events;
    let codecs: Vec<Codec> = events.iter().map(|e| e.payload.codec()).collect();
    use Codec::{Json as J, MessagePack as M};
    assert_eq!(codecs, [J, M, J, J, M, J, M, J, M]);
    for event in events {
        assert_eq!(event.payload.to_value(), text.to_value(), "the same value in every row");
    }
    let _ = json.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_holds_exactly_one_payload() {
    let Some(store) = fresh_store("codec_check").await else {
        return;
    };
    let schema = &store.options().schema;
    for (payload, payload_bin) in [("NULL", "NULL"), ("'{}'", "'\\x80'")] {
        let sql = format!(
            "INSERT INTO \"{schema}\".events (position, version, decided_at, event_id, command_id, schema_version, \
             stream_id, event_type, payload, payload_bin) \
             VALUES (1, 1, 0, gen_random_uuid(), gen_random_uuid(), 1, 's', 'T', {payload}, {payload_bin})"
        );
        let error = sqlx::query(&sql)
            .execute(store.pool())
            .await
            .expect_err("the check refuses the row");
        let code = error.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
        assert_eq!(code.as_deref(), Some("23514"), "{payload} / {payload_bin}: {error}");
    }
    let _ = store.drop_schema().await;
}

/// The migrations of the release before binary payloads, from this
/// repository's own files (the same SQL, hence the same checksums, as the
/// store embeds).
#[derive(Debug)]
struct BeforeBinaryPayloads;

impl<'s> sqlx::migrate::MigrationSource<'s> for BeforeBinaryPayloads {
    fn resolve(
        self,
    ) -> futures_util::future::BoxFuture<'s, Result<Vec<sqlx::migrate::Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async move {
            let files: [(i64, &str, &'static str); 4] = [
                (
                    1,
                    "event store",
                    include_str!("../../io-postgres/migrations/0001_event_store.sql"),
                ),
                (
                    2,
                    "append batch",
                    include_str!("../../io-postgres/migrations/0002_append_batch.sql"),
                ),
                (
                    3,
                    "snapshots",
                    include_str!("../../io-postgres/migrations/0003_snapshots.sql"),
                ),
                (
                    4,
                    "subscriptions",
                    include_str!("../../io-postgres/migrations/0004_subscriptions.sql"),
                ),
            ];
            Ok(files
                .into_iter()
                .map(|(version, description, sql)| {
                    sqlx::migrate::Migration::new(
                        version,
                        description.into(),
                        sqlx::migrate::MigrationType::Simple,
                        sql.into(),
                        false,
                    )
                })
                .collect())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_written_before_migration_5_read_back_after_it() {
    let options = options("codec_upgrade");
    let schema = options.schema.clone();
    // Connect without migrating: the old release's schema comes first.
    let Ok(store) = PostgresStore::connect_with(options.clone()).await else {
        // Unreachable database: the other tests report it (and fail in CI).
        assert!(fresh_store_with(options).await.is_none());
        return;
    };
    let mut conn = store.pool().acquire().await.expect("connection");
    sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
        .execute(&mut *conn)
        .await
        .expect("schema");
    sqlx::query(&format!("SET search_path TO \"{schema}\""))
        .execute(&mut *conn)
        .await
        .expect("search path");
    let mut old = sqlx::migrate::Migrator::new(BeforeBinaryPayloads)
        .await
        .expect("migrations");
    old.set_locking(false);
    old.run(&mut *conn).await.expect("the old release migrates");
    // The old release's append(): JSON text for every payload.
    sqlx::query(&format!(
        "SELECT * FROM \"{schema}\".append(gen_random_uuid(), NULL, NULL, 0, NULL, ARRAY['account-1'], ARRAY[1], \
         ARRAY[1]::int2[], ARRAY[0]::int8[], ARRAY[2], ARRAY[1, 1], ARRAY[1, 2], \
         ARRAY[gen_random_uuid(), gen_random_uuid()], ARRAY['Opened', 'Deposited'], ARRAY[1, 1], \
         ARRAY['{{\"initial\": 10}}', '{{\"amount\": 5}}'])"
    ))
    .execute(&mut *conn)
    .await
    .expect("the old append");
    sqlx::query("RESET search_path")
        .execute(&mut *conn)
        .await
        .expect("reset");
    drop(conn);

    store.migrate().await.expect("migration 5 applies over the old schema");
    assert_eq!(payload_columns(&store).await, (2, 0), "the old rows keep their JSON");
    let binary = switched(&store, Codec::MessagePack).await;
    let executor = Executor::new(binary.clone());
    executor
        .execute(Transfer {
            from: account(1),
            to: account(2),
            amount: 15,
        })
        .await
        .expect_err("b is not open");
    executor
        .execute(OpenAccount {
            account: account(2),
            initial: 0,
        })
        .await
        .expect("open b in MessagePack");
    executor
        .execute(Transfer {
            from: account(1),
            to: account(2),
            amount: 15,
        })
        .await
        .expect("the old JSON events fold with the new binary ones");
    assert_eq!(payload_columns(&store).await, (2, 3));
    let decoded = decoded_everywhere(&store, &[account(1), account(2)]).await;
    assert_eq!(
        decoded,
        vec![
            (Codec::Json, AccountEvent::Opened { initial: 10 }),
            (Codec::Json, AccountEvent::Deposited { amount: 5 }),
            (Codec::MessagePack, AccountEvent::Withdrawn { amount: 15 }),
            (Codec::MessagePack, AccountEvent::Opened { initial: 0 }),
            (Codec::MessagePack, AccountEvent::Deposited { amount: 15 }),
        ]
    );
    let _ = store.drop_schema().await;
}
