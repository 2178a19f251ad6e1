//! PostgreSQL only: bad input and a hostile environment get typed,
//! descriptive errors naming the stream or event, and nothing already stored
//! changes.

use eventcore::*;
use eventcore_examples::bank::{account, OpenAccount, Transfer};
use eventcore_postgres::{PostgresOptions, PostgresStore, SetupError};
use eventcore_tests::conformance::{fresh_command_id, new_event, read, stream, tested_events};
use eventcore_tests::postgres::{database_url, fresh_store, required, unique_schema};
use eventcore_tokio::{EventStore, Executor};
use std::sync::Arc;

fn request(streams: Vec<StreamAppend>) -> AppendRequest {
    AppendRequest {
        metadata: Arc::new(EventMetadata::new(fresh_command_id(), Time::from_unix_millis(1))),
        streams,
    }
}

fn with_payload(event_type: &str, json: &str) -> NewEvent {
    NewEvent {
        payload: Payload::from_trusted_json(json),
        ..new_event(event_type, serde_json::json!(null))
    }
}

async fn heads(store: &PostgresStore, streams: &[StreamId]) -> Vec<u64> {
    read(store, streams).await.iter().map(|s| s.head.get()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_payload_that_does_not_fit_its_event_type_is_a_decode_error_naming_stream_and_event() {
    let Some(store) = fresh_store("decode").await else {
        return;
    };
    let executor = Executor::new(store.clone());
    for n in 0..2 {
        executor
            .execute(OpenAccount {
                account: account(n),
                initial: 100,
            })
            .await
            .expect("open");
    }
    store
        .append(&request(vec![StreamAppend {
            stream: account(0),
            expected: ExpectedVersion::Exact(StreamVersion::new(1)),
            events: vec![with_payload("Deposited", r#"{"amount":"a lot"}"#)],
            tombstone: false,
        }]))
        .await
        .expect("the store holds any JSON");

    let error = executor
        .execute(Transfer {
            from: account(0),
            to: account(1),
            amount: 5,
        })
        .await
        .expect_err("the account cannot be folded");
    let CommandError::Decode(decode) = &error.error else {
        panic!("expected a decode error, got {error:?}");
    };
    assert_eq!(decode.stream, account(0));
    assert_eq!(decode.version, StreamVersion::new(2));
    assert_eq!(decode.event_type.as_str(), "Deposited");
    let message = error.to_string();
    assert!(
        message.contains("account-0") && message.contains("Deposited"),
        "{message}"
    );
    assert_eq!(
        heads(&store, &[account(0), account(1)]).await,
        vec![2, 1],
        "nothing changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_postgres_cannot_store_is_rejected_naming_its_stream_and_nothing_is_written() {
    let Some(store) = fresh_store("rejected").await else {
        return;
    };
    let (good, bad) = (stream("fine"), stream("carries-bad-json"));
    for payload in [r#"{"text":"nul \u0000 inside"}"#, "{oops", r#"{"unterminated": "#] {
        let error = store
            .append(&request(vec![
                StreamAppend {
                    stream: good.clone(),
                    expected: ExpectedVersion::Any,
                    events: tested_events(2),
                    tombstone: false,
                },
                StreamAppend {
                    stream: bad.clone(),
                    expected: ExpectedVersion::Any,
                    events: vec![with_payload("Tested", payload)],
                    tombstone: false,
                },
            ]))
            .await
            .expect_err("the database refuses the payload");
        match &error {
            StoreError::InvalidAppend(InvalidAppend::Rejected { stream, reason }) => {
                assert_eq!(stream, &bad, "names the stream whose payload was refused");
                assert!(!reason.is_empty());
            }
            other => panic!("expected InvalidAppend::Rejected for {payload:?}, got {other:?}"),
        }
        assert!(!error.is_retryable());
    }
    assert_eq!(heads(&store, &[good, bad]).await, vec![0, 0], "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_input_gets_the_same_typed_errors_as_the_memory_store() {
    let Some(store) = fresh_store("limits").await else {
        return;
    };
    let s = stream("limited");
    let huge = format!("\"{}\"", "x".repeat(AppendLimits::default().max_payload_bytes));
    let error = store
        .append(&request(vec![StreamAppend {
            stream: s.clone(),
            expected: ExpectedVersion::Any,
            events: vec![with_payload("Big", &huge)],
            tombstone: false,
        }]))
        .await
        .expect_err("too large");
    assert!(
        matches!(error, StoreError::InvalidAppend(InvalidAppend::PayloadTooLarge { ref stream, .. }) if *stream == s),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_refuses_to_change_or_delete_stored_events() {
    let Some(store) = fresh_store("immutable").await else {
        return;
    };
    let s = stream("immutable");
    store
        .append(&request(vec![StreamAppend {
            stream: s.clone(),
            expected: ExpectedVersion::NoStream,
            events: tested_events(2),
            tombstone: false,
        }]))
        .await
        .expect("append");
    let schema = &store.options().schema;
    for statement in [
        format!("UPDATE \"{schema}\".events SET payload = '{{}}'"),
        format!("DELETE FROM \"{schema}\".events"),
        format!("TRUNCATE \"{schema}\".events"),
    ] {
        let error = sqlx::query(&statement)
            .execute(store.pool())
            .await
            .expect_err("refused by the trigger");
        assert!(error.to_string().contains("immutable"), "{statement}: {error}");
    }
    let slice = &read(&store, std::slice::from_ref(&s)).await[0];
    assert_eq!(slice.events.len(), 2);
    assert_eq!(slice.events[0].payload.as_json(), r#"{"i": 0}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmigrated_schema_is_a_permanent_error() {
    let options = PostgresOptions::new(database_url()).schema(unique_schema("unmigrated"));
    let store = match PostgresStore::connect_with(options).await {
        Ok(store) => store,
        Err(error) if !required() => {
            eprintln!("*** SKIPPED: PostgreSQL unreachable: {error}");
            return;
        }
        Err(error) => panic!("CI=true but PostgreSQL is unreachable: {error}"),
    };
    let error = store
        .append(&request(vec![StreamAppend {
            stream: stream("nowhere"),
            expected: ExpectedVersion::Any,
            events: tested_events(1),
            tombstone: false,
        }]))
        .await
        .expect_err("no tables, no function");
    assert!(matches!(error, StoreError::Permanent { .. }), "{error:?}");
    assert!(!error.is_retryable());
    let health = store.health().await.expect("the server answers");
    assert!(!health.migrated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_a_transient_connect_error() {
    let options = PostgresOptions::new("postgres://postgres@127.0.0.1:1/postgres")
        .schema("unreachable")
        .connect_timeout(std::time::Duration::from_secs(2));
    let error = PostgresStore::connect_with(options)
        .await
        .expect_err("nothing listens on port 1");
    match error {
        SetupError::Connect(inner) => assert!(
            matches!(inner, StoreError::Transient { .. } | StoreError::Timeout { .. }),
            "{inner:?}"
        ),
        other => panic!("expected a connect error, got {other:?}"),
    }
}

/// A read-only database (`default_transaction_read_only`, as on a database
/// switched to read-only or a hot standby): appends fail permanently,
/// reads keep working, and what was stored is intact. The setting is put on
/// a login role of the test's own, so no other test is affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_refuses_appends_permanently_and_keeps_its_data() {
    let Some(admin) = fresh_store("ro").await else { return };
    let schema = admin.options().schema.clone();
    let s = stream("ledger");
    admin
        .append(&request(vec![StreamAppend {
            stream: s.clone(),
            expected: ExpectedVersion::NoStream,
            events: tested_events(2),
            tombstone: false,
        }]))
        .await
        .expect("append while writable");
    let role = format!("{schema}_reader");
    for statement in [
        format!("CREATE ROLE \"{role}\" LOGIN"),
        format!("GRANT USAGE ON SCHEMA \"{schema}\" TO \"{role}\""),
        format!("GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA \"{schema}\" TO \"{role}\""),
        format!("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA \"{schema}\" TO \"{role}\""),
        format!("ALTER ROLE \"{role}\" SET default_transaction_read_only = on"),
    ] {
        sqlx::query(&statement).execute(admin.pool()).await.expect(&statement);
    }

    let read_only = PostgresStore::connect_with(PostgresOptions::new(url_as(&role)).schema(schema.clone()))
        .await
        .expect("connect as the read-only role");
    let error = read_only
        .append(&request(vec![StreamAppend {
            stream: s.clone(),
            expected: ExpectedVersion::Exact(StreamVersion::new(2)),
            events: tested_events(1),
            tombstone: false,
        }]))
        .await
        .expect_err("read-only");
    assert!(
        matches!(
            error,
            StoreError::Permanent {
                operation: Operation::Append,
                ..
            }
        ),
        "{error:?}"
    );
    // SQLSTATE 25006, read_only_sql_transaction; PostgreSQL's own text is
    // the source's, printed once in the chain.
    assert!(error.to_string().contains("25006"), "{error}");
    let source = std::error::Error::source(&error).expect("the sqlx error is kept as source");
    assert!(source.to_string().contains("read-only"), "{source}");
    let slice = &read(&read_only, std::slice::from_ref(&s)).await[0];
    assert_eq!(slice.head, StreamVersion::new(2), "reads still work; nothing changed");
    read_only.pool().close().await;
    for statement in [format!("DROP OWNED BY \"{role}\""), format!("DROP ROLE \"{role}\"")] {
        let _ = sqlx::query(&statement).execute(admin.pool()).await;
    }
}

/// `DATABASE_URL` with its user replaced by `user` (trust authentication).
fn url_as(user: &str) -> String {
    let base = database_url();
    let Some((scheme, rest)) = base.split_once("://") else {
        return base;
    };
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}@{host}")
}
