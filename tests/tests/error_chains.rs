//! No message is printed twice in an error chain.
//!
//! `anyhow`'s `{:#}`, `eyre` and tracing's error fields print an error and
//! then every `source()` after it. An error that both writes its inner
//! error into its own message and returns it from `source()` prints that
//! text twice. Each case below builds a representative value of an error
//! that wraps another and walks its chain: no message may contain the next
//! one's, and every inner message must still appear somewhere in the chain
//! (nothing was dropped to get there).

use eventcore::*;
use eventcore_examples::bank::Account;
use eventcore_tokio::{CheckpointError, RunError, SnapshotError};
use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

/// Walks `error`'s chain and fails if a message contains its source's; the
/// chain joined by `": "` (what `{:#}` prints). Stops at the first error of
/// a foreign crate that repeats its own source (sqlx does): its links are
/// not ours to judge.
fn assert_each_message_once(error: &(dyn Error + 'static)) -> String {
    let mut chain = error.to_string();
    let mut outer = error;
    while let Some(inner) = outer.source() {
        if outer.downcast_ref::<sqlx::Error>().is_some() {
            break;
        }
        let (outer_text, inner_text) = (outer.to_string(), inner.to_string());
        assert!(
            !outer_text.contains(&inner_text),
            "`{outer_text}` repeats its source `{inner_text}` ({outer:?})"
        );
        chain.push_str(": ");
        chain.push_str(&inner_text);
        outer = inner;
    }
    chain
}

#[derive(Debug, thiserror::Error)]
#[error("insufficient funds: balance 5, needed 9")]
struct InsufficientFunds;

#[derive(Debug, thiserror::Error)]
#[error("the ledger refused the transfer")]
struct LedgerRefused(#[source] InsufficientFunds);

fn stream(name: &str) -> StreamId {
    StreamId::new(name).expect("valid stream id")
}

fn io(message: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionReset, message.to_owned())
}

fn source(message: &str) -> Option<ErrorSource> {
    Some(Arc::new(io(message)))
}

fn serde_failure() -> EncodeError {
    let tuple_keys: std::collections::BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
    encode_json(&tuple_keys, 1).expect_err("tuple keys cannot be JSON object keys")
}

fn invalid_type() -> EncodeError {
    #[derive(serde::Serialize)]
    enum Bad {
        #[serde(rename = "has space")]
        Spaced,
    }
    encode_json(&Bad::Spaced, 1).expect_err("a space is not allowed in an event type")
}

fn store_errors() -> Vec<StoreError> {
    vec![
        StoreError::from(InvalidAppend::DuplicateStream { stream: stream("a") }),
        StoreError::from(InvalidAppend::Rejected {
            stream: stream("a"),
            reason: "invalid byte sequence".into(),
        }),
        StoreError::from(InvalidRequest::DuplicateStream { stream: stream("a") }),
        StoreError::Transient {
            operation: Operation::Read,
            message: "I/O error on the connection".into(),
            source: source("connection reset by peer"),
        },
        StoreError::OutcomeUnknown {
            operation: Operation::Append,
            message: "I/O error on the connection".into(),
            source: source("connection reset by peer"),
        },
        StoreError::Permanent {
            operation: Operation::Append,
            message: "the database raised SQLSTATE 42501".into(),
            source: source("permission denied for table events"),
        },
        StoreError::Timeout {
            operation: Operation::Append,
            after: Duration::from_secs(5),
        },
    ]
}

#[test]
fn encode_errors_name_the_step_and_leave_the_cause_to_the_source() {
    for error in [serde_failure(), invalid_type()] {
        let chain = assert_each_message_once(&error);
        assert!(error.source().is_some(), "the cause stays reachable: {error:?}");
        assert!(chain.len() > error.to_string().len(), "{chain}");
    }
    let chain = assert_each_message_once(&serde_failure());
    assert!(
        chain.contains("key must be a string"),
        "serde's text is in the chain: {chain}"
    );
}

#[test]
fn store_errors_print_each_cause_once() {
    for error in store_errors() {
        let chain = assert_each_message_once(&error);
        if let Some(inner) = error.source() {
            assert!(chain.ends_with(&inner.to_string()), "{chain}");
        }
    }
    let duplicate = StoreError::from(InvalidAppend::DuplicateStream { stream: stream("a") });
    assert_eq!(
        duplicate.to_string(),
        "stream `a` appears more than once in one append",
        "a pure wrapper displays its inner error"
    );
}

#[test]
fn command_errors_print_each_cause_once() {
    let mut errors: Vec<CommandError<LedgerRefused>> = vec![
        CommandError::Domain(LedgerRefused(InsufficientFunds)),
        CommandError::Encode {
            stream: stream("a"),
            source: serde_failure(),
        },
        CommandError::Encode {
            stream: stream("a"),
            source: invalid_type(),
        },
        CommandError::ViewCannotFold {
            stream: stream("a"),
            view: ViewKind::of::<Account>(),
            source: DecodeErrorKind::UnknownEventType,
        },
        CommandError::RetriesExhausted {
            attempts: 3,
            last: StoreError::transient(Operation::Append, "serialization failure"),
        },
        CommandError::DeadlineExceeded {
            attempts: 2,
            last: None,
        },
    ];
    errors.extend(store_errors().into_iter().map(CommandError::Store));
    for error in &errors {
        let chain = assert_each_message_once(error);
        assert!(!chain.is_empty());
    }
    let chain = assert_each_message_once(&errors[1]);
    assert!(chain.starts_with("event for stream `a` could not be encoded: event could not be serialized: "));
    assert!(chain.contains("key must be a string"), "{chain}");
}

#[test]
fn a_failed_execution_keeps_its_last_store_errors_cause_in_the_chain() {
    let last = || StoreError::Transient {
        operation: Operation::Append,
        message: "I/O error on the connection".into(),
        source: source("connection reset by peer"),
    };
    let failures: Vec<CommandError<LedgerRefused>> = vec![
        CommandError::RetriesExhausted {
            attempts: 3,
            last: last(),
        },
        CommandError::OutcomeUnknown {
            command_id: CommandId::v7(Time::ZERO, [1; 10]),
            attempts: 3,
            last: last(),
        },
        CommandError::DeadlineExceeded {
            attempts: 3,
            last: Some(last()),
        },
    ];
    for failure in &failures {
        let chain = assert_each_message_once(failure);
        assert!(
            chain.contains("transient failure during append: I/O error on the connection"),
            "{chain}"
        );
        assert!(
            chain.ends_with(": connection reset by peer"),
            "the driver's error is not lost: {chain}"
        );
        assert_eq!(chain.matches("connection reset by peer").count(), 1, "{chain}");
    }
}

#[test]
fn a_domain_refusal_displays_exactly_the_domain_error() {
    let refused: CommandError<LedgerRefused> = CommandError::Domain(LedgerRefused(InsufficientFunds));
    assert_eq!(
        refused.to_string(),
        "the ledger refused the transfer",
        "what a client is shown"
    );
    let next = refused.source().expect("the domain error's own source");
    assert!(next.downcast_ref::<InsufficientFunds>().is_some(), "{next:?}");
    assert_eq!(
        assert_each_message_once(&refused),
        "the ledger refused the transfer: insufficient funds: balance 5, needed 9"
    );
}

#[test]
fn a_store_failure_keeps_its_driver_error_reachable_through_the_command_error() {
    // chaos::record::is_deadlock and similar checks downcast along the chain.
    let store = StoreError::Transient {
        operation: Operation::Append,
        message: "I/O error on the connection".into(),
        source: source("connection reset by peer"),
    };
    let error: CommandError<LedgerRefused> = CommandError::Store(store);
    let mut found = false;
    let mut next: Option<&(dyn Error + 'static)> = Some(&error);
    while let Some(current) = next {
        found |= current.downcast_ref::<std::io::Error>().is_some();
        next = current.source();
    }
    assert!(found, "the io::Error is still in the chain of {error:?}");
}

#[test]
fn snapshot_and_subscription_errors_print_each_cause_once() {
    let unavailable = SnapshotUnavailable::Encode(serde_json::from_str::<u8>("x").expect_err("not a number"));
    assert_each_message_once(&unavailable);
    assert!(unavailable.source().is_some());

    let other = SnapshotError::Other(Box::new(io("disk full")));
    assert_eq!(assert_each_message_once(&other), "snapshot store failed: disk full");

    for ended in [
        SubscriptionError::Store(store_errors().remove(5)),
        SubscriptionError::FetchRetriesExhausted {
            attempts: 4,
            last: store_errors().remove(3),
        },
    ] {
        let chain = assert_each_message_once(&ended);
        assert!(
            chain.ends_with(": permission denied for table events") || chain.ends_with(": connection reset by peer"),
            "the driver's error is in the chain: {chain}"
        );
    }

    let claim = RunError::Claim(CheckpointError::Transient("connection refused".into()));
    assert_eq!(
        assert_each_message_once(&claim),
        "cannot claim the checkpoint: transient checkpoint failure: connection refused"
    );

    let recorded = RecordedEvent {
        event_id: EventId::v7(Time::ZERO, [1; 10]),
        stream_id: stream("acc-1"),
        version: StreamVersion::new(2),
        position: GlobalPosition::new(7),
        event_type: EventType::new("Deposited").expect("valid"),
        schema_version: 1,
        payload: Payload::from_trusted_json("{}"),
        metadata: Arc::new(EventMetadata::new(CommandId::v7(Time::ZERO, [0; 10]), Time::ZERO)),
    };
    let poison = PoisonEvent::handler(&recorded, "amount overflow");
    assert_eq!(
        assert_each_message_once(&poison),
        "poison event Deposited at acc-1@2 (position 7): handler failed: amount overflow"
    );
    assert_each_message_once(&DecodeError::at(&recorded, DecodeErrorKind::UnknownEventType));
}

/// A real PostgreSQL failure: reading a schema that was never migrated.
#[tokio::test]
async fn a_postgres_failure_prints_the_database_message_once() {
    let options = eventcore_tests::postgres::options("error_chains");
    let Ok(store) = eventcore_postgres::PostgresStore::connect_with(options).await else {
        assert!(
            !eventcore_tests::postgres::required(),
            "CI=true but PostgreSQL cannot be reached"
        );
        return;
    };
    let read = ReadRequest::new([stream("a")]);
    let error = eventcore_tokio::EventStore::read(&store, &read)
        .await
        .expect_err("no such schema");
    assert!(matches!(error, StoreError::Permanent { .. }), "{error:?}");
    let chain = assert_each_message_once(&error);
    assert!(
        chain.contains("does not exist"),
        "PostgreSQL's own text is in the chain: {chain}"
    );
    assert_eq!(chain.matches("does not exist").count(), 1, "once: {chain}");
    let wrapped: CommandError<LedgerRefused> = CommandError::Store(error);
    assert_eq!(assert_each_message_once(&wrapped), chain);
    // What chaos::record::is_deadlock relies on: the driver's error is found
    // by downcasting along the chain (not hidden behind the Arc it is kept in).
    let mut next: Option<&(dyn Error + 'static)> = Some(&wrapped);
    let mut code = None;
    while let Some(current) = next {
        if let Some(sqlx::Error::Database(db)) = current.downcast_ref::<sqlx::Error>() {
            code = db.code().map(|c| c.into_owned());
        }
        next = current.source();
    }
    assert_eq!(code.as_deref(), Some("42P01"), "undefined_table, found by downcasting");
}

#[test]
fn type_erased_command_errors_print_each_cause_once() {
    let refused = AnyCommandError::from(CommandError::Domain(LedgerRefused(InsufficientFunds)));
    assert_eq!(
        assert_each_message_once(&refused),
        "the ledger refused the transfer: insufficient funds: balance 5, needed 9"
    );
    let encode = AnyCommandError::from(CommandError::<LedgerRefused>::Encode {
        stream: stream("a"),
        source: serde_failure(),
    });
    assert!(assert_each_message_once(&encode).contains("key must be a string"));
    for store in store_errors() {
        let any = AnyCommandError::from(CommandError::<LedgerRefused>::Store(store));
        assert_each_message_once(&any);
    }
}
