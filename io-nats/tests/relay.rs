//! The relay against a real NATS server (`NATS_URL`, default
//! 127.0.0.1:4222): every event arrives once, in global order, through
//! crashes, a full stream, dropped connections and a restarted server.
//! Each test uses its own JetStream stream. Fails under `CI=true` when NATS
//! does not answer.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)]

mod common;

use common::*;
use eventcore::{PoisonPolicy, SubscriptionPolicy};
use eventcore_nats::{relay, RelayOptions, RelayStatus, SubjectError, SubjectFn, Waiting};
use eventcore_store::{DeadLetterStore, EventStore};
use eventcore_tokio::{MemoryCheckpointStore, MemoryDeadLetterStore, MemoryEventStore};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Small batches, quick polling and quick retries, so that faults land
/// mid-batch and the tests stay short.
fn test_policy() -> SubscriptionPolicy {
    let mut policy = SubscriptionPolicy::default()
        .with_batch_size(NonZeroU32::new(64).unwrap())
        .with_poison(PoisonPolicy::park());
    policy.poll_interval = Duration::from_millis(20);
    policy.retry.max_backoff = Duration::from_millis(200);
    policy
}

/// Waits until the relay has confirmed everything up to the log's head.
async fn wait_confirmed<S: EventStore>(store: &S, status: &mut watch::Receiver<RelayStatus>, within: Duration) {
    let head = read_log(store).await.last().map(|e| e.position).unwrap_or_default();
    let deadline = Instant::now() + within;
    loop {
        if status.borrow_and_update().confirmed_through >= head {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "the relay did not reach {head:?} in {within:?}: {:?}",
            *status.borrow()
        );
        let _ = tokio::time::timeout(left, status.changed()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_published_once_in_global_order_with_its_headers() {
    let Some(client) = connect().await else { return };
    let js = async_nats::jetstream::new(client);
    let name = unique_name("basic");
    create_stream(&js, &name, &name.to_lowercase(), |_| {}).await;
    let store = MemoryEventStore::new();
    append_workload(&store, 1, 300, 7, 2).await;

    let mut runner = relay(
        "relay",
        store.clone(),
        MemoryCheckpointStore::new(),
        js.clone(),
        RelayOptions::new(&name, name.to_lowercase()).with_max_in_flight(32),
    )
    .with_policy(test_policy());
    let summary = runner.run_until_caught_up().await.expect("relay");
    let log = read_log(&store).await;
    assert_eq!(summary.checkpoint, log.last().map(|e| e.position));
    let status = runner.sink().status().borrow().clone();
    assert_eq!(status.published, log.len() as u64);
    assert_eq!(status.duplicates, 0);
    assert!(
        status.max_in_flight_seen <= 32 && status.max_in_flight_seen > 1,
        "{status:?}"
    );

    let relayed = read_stream(&js, &name).await;
    assert_same("basic", &relayed, &log);
    // The default subject: <prefix>.<category>.<type>.
    let stream = js.get_stream(&name).await.unwrap();
    let first = stream.get_raw_message(1).await.unwrap();
    assert!(first
        .subject
        .as_str()
        .starts_with(&format!("{}.acct.", name.to_lowercase())));
    let _ = js.delete_stream(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_mid_batch_and_restarted_loses_and_duplicates_nothing() {
    let Some(client) = connect().await else { return };
    let Some(store) = eventcore_tests::postgres::fresh_store("nats_relay_crash").await else {
        return;
    };
    let js = async_nats::jetstream::new(client);
    let name = unique_name("crash");
    // A short duplicate window: the relay must not depend on it.
    create_stream(&js, &name, &name.to_lowercase(), |c| {
        c.duplicate_window = Duration::from_millis(100)
    })
    .await;
    let checkpoints = eventcore_postgres::PgCheckpointStore::new(&store);

    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for round in 0..10 {
                append_workload(&store, 100 + round, 40, 9, 3).await;
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        })
    };
    let mut kills = 0;
    let mut skipped = 0;
    for round in 0..rounds(8) {
        let mut runner = relay(
            "relay",
            store.clone(),
            checkpoints.clone(),
            js.clone(),
            RelayOptions::new(&name, name.to_lowercase()).with_max_in_flight(16),
        )
        .with_policy(test_policy());
        let status = runner.sink().status();
        let task = tokio::spawn(async move { runner.run().await });
        tokio::time::sleep(Duration::from_millis(40 + (round % 8) * 23)).await;
        task.abort();
        let _ = task.await;
        kills += 1;
        skipped += status.borrow().skipped;
    }
    writer.await.unwrap();
    // The last run finishes the log.
    let mut runner = relay(
        "relay",
        store.clone(),
        checkpoints.clone(),
        js.clone(),
        RelayOptions::new(&name, name.to_lowercase()).with_max_in_flight(16),
    )
    .with_policy(test_policy());
    runner.run_until_caught_up().await.expect("final relay run");
    let status = runner.sink().status().borrow().clone();
    let log = read_log(&store).await;
    let relayed = read_stream(&js, &name).await;
    let checked = assert_same("crash", &relayed, &log);
    assert_eq!(checked, 10 * 40 * 6);
    println!(
        "crash: {kills} kills; {} events found already published after a restart and skipped; last run: {status:?}",
        skipped + status.skipped
    );
    let _ = js.delete_stream(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_stream_makes_the_relay_wait_and_it_resumes_once_room_is_made() {
    let Some(client) = connect().await else { return };
    let js = async_nats::jetstream::new(client);
    let name = unique_name("full");
    create_stream(&js, &name, &name.to_lowercase(), |c| {
        c.max_messages = 100;
        c.discard = async_nats::jetstream::stream::DiscardPolicy::New;
    })
    .await;
    let store = MemoryEventStore::new();
    append_workload(&store, 2, 150, 5, 1).await;
    let mut runner = relay(
        "relay",
        store.clone(),
        MemoryCheckpointStore::new(),
        js.clone(),
        RelayOptions::new(&name, name.to_lowercase()).with_max_in_flight(32),
    )
    .with_policy(test_policy())
    .with_wakeups(store.watch_head());
    let mut status = runner.sink().status();
    let task = tokio::spawn(async move { runner.run().await });

    // It stops at the limit and says why.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = status.borrow_and_update().clone();
        if matches!(now.waiting, Some(Waiting::StreamFull { .. })) {
            assert_eq!(now.confirmed_through.get(), 100, "{now:?}");
            println!("full: waiting: {}", now.waiting.as_ref().unwrap());
            break;
        }
        assert!(Instant::now() < deadline, "never reported a full stream: {now:?}");
        let _ = tokio::time::timeout(Duration::from_secs(1), status.changed()).await;
    }
    assert_eq!(js.get_stream(&name).await.unwrap().cached_info().state.messages, 100);
    // Room is made: the limit is raised.
    let mut config = js.get_stream(&name).await.unwrap().cached_info().config.clone();
    config.max_messages = 10_000;
    js.update_stream(config).await.expect("raise the limit");
    wait_confirmed(&store, &mut status, Duration::from_secs(10)).await;
    task.abort();
    let after = status.borrow().clone();
    assert!(after.waiting.is_none(), "{after:?}");
    assert!(after.failures >= 1);
    let log = read_log(&store).await;
    assert_same("full", &read_stream(&js, &name).await, &log);
    let _ = js.delete_stream(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_subject_function_refuses_is_parked_not_dropped() {
    let Some(client) = connect().await else { return };
    let js = async_nats::jetstream::new(client);
    let name = unique_name("poison");
    let prefix = name.to_lowercase();
    create_stream(&js, &name, &prefix, |_| {}).await;
    let store = MemoryEventStore::new();
    append_workload(&store, 3, 120, 6, 1).await;
    // Refuses every event of stream acct-3.
    let subjects = {
        let prefix = prefix.clone();
        SubjectFn::new(move |event| {
            if event.stream_id.as_str() == "acct-3" {
                Err(SubjectError::new("acct-3 is not published"))
            } else {
                Ok(eventcore_nats::default_subject(&prefix, event))
            }
        })
    };
    let dead_letters = MemoryDeadLetterStore::new();
    let mut runner = relay(
        "relay",
        store.clone(),
        MemoryCheckpointStore::new(),
        js.clone(),
        RelayOptions::new(&name, &prefix).with_subjects(subjects),
    )
    .with_policy(test_policy())
    .with_dead_letters(dead_letters.clone());
    runner.run_until_caught_up().await.expect("relay");
    let log = read_log(&store).await;
    let parked = dead_letters.list("relay").await.unwrap();
    let refused: Vec<_> = log
        .iter()
        .filter(|e| e.stream_id.as_str() == "acct-3")
        .cloned()
        .collect();
    assert!(!refused.is_empty());
    assert_eq!(
        parked.iter().map(|l| l.event.event_id).collect::<Vec<_>>(),
        refused.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        "every refused event is parked, in order"
    );
    let published: Vec<_> = log
        .iter()
        .filter(|e| e.stream_id.as_str() != "acct-3")
        .cloned()
        .collect();
    assert_same("poison", &read_stream(&js, &name).await, &published);
    println!("poison: {} events parked as dead letters", parked.len());
    let _ = js.delete_stream(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_lose_and_duplicate_nothing() {
    let Some(client) = connect().await else { return };
    let js = async_nats::jetstream::new(client.clone());
    let name = unique_name("drop");
    create_stream(&js, &name, &name.to_lowercase(), |_| {}).await;
    let store = MemoryEventStore::new();
    let mut runner = relay(
        "relay",
        store.clone(),
        MemoryCheckpointStore::new(),
        js.clone(),
        RelayOptions::new(&name, name.to_lowercase())
            .with_max_in_flight(64)
            .with_ack_timeout(Duration::from_secs(1)),
    )
    .with_policy(test_policy())
    .with_wakeups(store.watch_head());
    let mut status = runner.sink().status();
    let task = tokio::spawn(async move { runner.run().await });
    let reconnects = rounds(8);
    for round in 0..reconnects {
        append_workload(&store, 200 + round, 100, 8, 2).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        client.force_reconnect().await.expect("force a reconnect");
    }
    wait_confirmed(&store, &mut status, Duration::from_secs(20)).await;
    task.abort();
    let log = read_log(&store).await;
    assert_same("drop", &read_stream(&js, &name).await, &log);
    println!("drop: {reconnects} forced reconnects; status {:?}", *status.borrow());
    let _ = js.delete_stream(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_server_killed_and_restarted_under_the_relay_loses_and_duplicates_nothing() {
    // A private server: this test kills it.
    if connect().await.is_none() {
        return;
    }
    let Some(mut nats) = PrivateNats::start("restart").await else {
        return;
    };
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(nats.url())
        .await
        .expect("connect to the private server");
    let js = async_nats::jetstream::new(client);
    let name = unique_name("restart");
    create_stream(&js, &name, &name.to_lowercase(), |_| {}).await;
    let store = MemoryEventStore::new();
    let mut runner = relay(
        "relay",
        store.clone(),
        MemoryCheckpointStore::new(),
        js.clone(),
        RelayOptions::new(&name, name.to_lowercase())
            .with_max_in_flight(64)
            .with_ack_timeout(Duration::from_secs(1)),
    )
    .with_policy(test_policy())
    .with_wakeups(store.watch_head());
    let mut status = runner.sink().status();
    let task = tokio::spawn(async move { runner.run().await });
    let mut saw_waiting = 0;
    let kills = rounds(3);
    for round in 0..kills {
        append_workload(&store, 300 + round, 200, 8, 2).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        nats.kill().await;
        append_workload(&store, 400 + round, 100, 8, 2).await;
        // Down long enough for the relay to notice and say so.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !matches!(status.borrow().waiting, Some(Waiting::Connection { .. })) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if matches!(status.borrow().waiting, Some(Waiting::Connection { .. })) {
            saw_waiting += 1;
        }
        nats.restart().await;
    }
    wait_confirmed(&store, &mut status, Duration::from_secs(40)).await;
    task.abort();
    assert!(saw_waiting >= 1, "the relay never reported waiting for the server");
    let log = read_log(&store).await;
    let checked = assert_same("restart", &read_stream(&js, &name).await, &log);
    println!(
        "restart: {kills} kills of nats-server; reported waiting for the connection {saw_waiting} times; {checked} messages; {:?}",
        *status.borrow()
    );
}

/// What the relay's ordering rests on: the server refuses a message whose
/// expected last sequence is not the stream's, and answers a re-published
/// message id inside the window as a duplicate without storing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_enforces_the_sequence_chain_and_the_message_id() {
    use async_nats::jetstream::context::PublishErrorKind;
    use async_nats::jetstream::message::PublishMessage;
    let Some(client) = connect().await else { return };
    let js = async_nats::jetstream::new(client);
    let name = unique_name("chain");
    let prefix = name.to_lowercase();
    create_stream(&js, &name, &prefix, |_| {}).await;
    let subject = format!("{prefix}.x");
    let publish = |id: &str, expected: u64| {
        PublishMessage::build()
            .payload("{}".into())
            .message_id(id)
            .expected_last_sequence(expected)
    };
    let first = js
        .send_publish(subject.clone(), publish("a", 0))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(first.sequence, 1);
    let wrong = js.send_publish(subject.clone(), publish("b", 0)).await.unwrap().await;
    assert_eq!(
        wrong.map(|_| ()).unwrap_err().kind(),
        PublishErrorKind::WrongLastSequence
    );
    let again = js
        .send_publish(subject.clone(), publish("a", 1))
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(again.duplicate, "a re-published id is a duplicate");
    let second = js
        .send_publish(subject.clone(), publish("b", 1))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!((second.sequence, second.duplicate), (2, false));
    assert_eq!(js.get_stream(&name).await.unwrap().cached_info().state.messages, 2);
    let _ = js.delete_stream(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_stream_is_reported_and_the_relay_starts_once_it_exists() {
    let Some(client) = connect().await else { return };
    let js = async_nats::jetstream::new(client);
    let name = unique_name("missing");
    let store = MemoryEventStore::new();
    append_workload(&store, 5, 50, 4, 1).await;
    let mut runner = relay(
        "relay",
        store.clone(),
        MemoryCheckpointStore::new(),
        js.clone(),
        RelayOptions::new(&name, name.to_lowercase()),
    )
    .with_policy(test_policy());
    let mut status = runner.sink().status();
    let task = tokio::spawn(async move { runner.run().await });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(status.borrow().waiting, Some(Waiting::StreamMissing { .. })) {
        assert!(
            Instant::now() < deadline,
            "never reported the missing stream: {:?}",
            *status.borrow()
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), status.changed()).await;
    }
    println!("missing: {}", status.borrow().waiting.as_ref().unwrap());
    create_stream(&js, &name, &name.to_lowercase(), |_| {}).await;
    wait_confirmed(&store, &mut status, Duration::from_secs(10)).await;
    task.abort();
    assert_same("missing", &read_stream(&js, &name).await, &read_log(&store).await);
    let _ = js.delete_stream(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_too_large_for_the_stream_is_parked_and_the_rest_relayed_in_order() {
    let Some(client) = connect().await else { return };
    let js = async_nats::jetstream::new(client);
    let name = unique_name("large");
    let prefix = name.to_lowercase();
    create_stream(&js, &name, &prefix, |c| c.max_message_size = 2048).await;
    let store = MemoryEventStore::new();
    append_workload(&store, 6, 30, 4, 1).await;
    // One event with a payload the stream will never take.
    let big = eventcore::AppendRequest {
        metadata: std::sync::Arc::new(eventcore::EventMetadata::new(
            eventcore::CommandId::v7(eventcore::Time::from_unix_millis(9), [9; 10]),
            eventcore::Time::from_unix_millis(9),
        )),
        streams: vec![eventcore::StreamAppend {
            stream: eventcore::StreamId::new("acct-big").unwrap(),
            expected: eventcore::ExpectedVersion::Any,
            events: vec![eventcore::NewEvent {
                event_id: eventcore::EventId::v7(eventcore::Time::from_unix_millis(9), [9, 9, 9, 0, 0, 0, 0, 0, 0, 1]),
                event_type: eventcore::EventType::new("Deposited").unwrap(),
                schema_version: 1,
                payload: eventcore::Payload::from_trusted_json(format!("\"{}\"", "x".repeat(4096))),
            }],
            tombstone: false,
        }],
    };
    store.append(&big).await.unwrap();
    append_workload(&store, 7, 30, 4, 1).await;
    let dead_letters = MemoryDeadLetterStore::new();
    let mut runner = relay(
        "relay",
        store.clone(),
        MemoryCheckpointStore::new(),
        js.clone(),
        RelayOptions::new(&name, &prefix),
    )
    .with_policy(test_policy())
    .with_dead_letters(dead_letters.clone());
    runner.run_until_caught_up().await.expect("relay");
    let parked = dead_letters.list("relay").await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].event.stream_id.as_str(), "acct-big");
    let log: Vec<_> = read_log(&store)
        .await
        .into_iter()
        .filter(|e| e.stream_id.as_str() != "acct-big")
        .collect();
    assert_same("large", &read_stream(&js, &name).await, &log);
    println!("large: parked: {}", parked[0].poison);
    let _ = js.delete_stream(&name).await;
}
