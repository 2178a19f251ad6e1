//! `eventcore dead-letters list|delete|replay`.

use super::common::{append, eventcore_for, fresh_store, json, read_back, stdout};
use eventcore::{
    Batch, DecodeErrorKind, GlobalPosition, HandleError, PoisonAction, PoisonCause, PoisonEvent, PoisonPolicy,
    SubscriptionPolicy, Time,
};
use eventcore_postgres::{PgCheckpointStore, PgDeadLetterStore};
use eventcore_store::{DeadLetter, DeadLetterStore};
use eventcore_tokio::{poison, Runner, Subscriber};
use predicates::str::contains;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_requests_a_replay_of_and_deletes_parked_events() {
    let Some(store) = fresh_store("cli_dead_letters").await else {
        return;
    };
    eventcore_for(&store)
        .args(["dead-letters", "list", "balances"])
        .assert()
        .success()
        .stdout(contains("no dead letters for balances"));

    append(
        &store,
        "account-9",
        &[
            ("Deposited", json!({ "amount": -5 })),
            ("Renamed", json!({ "to": "x" })),
        ],
    )
    .await;
    let events = read_back(&store, "account-9").await;
    let dead_letters = PgDeadLetterStore::new(&store);
    let handler = PoisonEvent::handler(&events[0], "bad amount");
    let decode = PoisonEvent {
        cause: PoisonCause::Decode(DecodeErrorKind::UnknownEventType),
        ..PoisonEvent::handler(&events[1], "")
    };
    for (event, poison) in events.iter().zip([handler, decode]) {
        dead_letters
            .park(DeadLetter {
                subscription: "balances".to_owned(),
                event: event.clone(),
                poison,
                parked_at: Time::from_unix_millis(1_700_000_000_000),
                replay_requested_at: None,
            })
            .await
            .expect("park");
    }
    let (p1, p2) = (events[0].position.get(), events[1].position.get());

    let output = eventcore_for(&store)
        .args(["dead-letters", "list", "balances"])
        .assert()
        .success();
    let text = stdout(output.get_output());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for column in [
        "POSITION",
        "STREAM",
        "VERSION",
        "TYPE",
        "PARKED AT",
        "REPLAY REQUESTED",
        "CAUSE",
    ] {
        assert!(lines[0].contains(column), "{text}");
    }
    assert!(lines[1].starts_with(&p1.to_string()), "{text}");
    assert!(
        lines[1].contains("account-9") && lines[1].contains("Deposited"),
        "{text}"
    );
    assert!(lines[1].contains("2023-11-14T22:13:20.000000Z"), "{text}");
    assert!(lines[1].ends_with("handler failed: bad amount"), "{text}");
    assert!(lines[2].ends_with("cannot decode: unknown event type"), "{text}");

    let output = eventcore_for(&store)
        .args(["dead-letters", "list", "balances", "--json"])
        .assert()
        .success();
    let report = json(output.get_output());
    assert_eq!(report["subscription"], "balances");
    let letters = report["letters"].as_array().expect("letters");
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0]["position"], p1);
    assert_eq!(letters[0]["cause"], "handler failed: bad amount");
    assert_eq!(letters[0]["parked_at"], "2023-11-14T22:13:20.000000Z");
    assert_eq!(letters[0]["event"]["stream"], "account-9");
    assert_eq!(letters[0]["event"]["version"], 1);
    assert_eq!(letters[0]["event"]["payload"], json!({ "amount": -5 }));
    assert_eq!(letters[1]["event"]["type"], "Renamed");

    assert_eq!(letters[0]["replay_requested_at"], serde_json::Value::Null);

    // A replay of a position that is not parked requests nothing.
    eventcore_for(&store)
        .args(["dead-letters", "replay", "balances", "--position", "12345"])
        .assert()
        .code(5)
        .stderr(contains("no dead letter at position 12345"));
    assert!(dead_letters
        .replay_requested("balances")
        .await
        .expect("requested")
        .is_empty());

    // A replay request with no service running: recorded and listed; with
    // --wait the time runs out and the letter is still parked.
    eventcore_for(&store)
        .args([
            "dead-letters",
            "replay",
            "balances",
            "--position",
            &p1.to_string(),
            "--wait",
            "1",
        ])
        .assert()
        .code(6)
        .stdout(contains(format!(
            "requested a replay of 1 dead letter(s) of balances: {p1}"
        )))
        .stdout(contains(format!("still waiting: {p1}")))
        .stderr(contains("1 letter(s) of balances still parked"))
        .stderr(contains("is the service running \"balances\"?"));
    let requested = dead_letters.replay_requested("balances").await.expect("requested");
    assert_eq!(requested.len(), 1);
    assert_eq!(requested[0].event.position.get(), p1);
    let output = eventcore_for(&store)
        .args(["dead-letters", "list", "balances", "--json"])
        .assert()
        .success();
    let report = json(output.get_output());
    assert!(report["letters"][0]["replay_requested_at"].is_string(), "{report}");
    assert_eq!(report["letters"][1]["replay_requested_at"], serde_json::Value::Null);
    let output = eventcore_for(&store)
        .args(["dead-letters", "list", "balances"])
        .assert()
        .success();
    let text = stdout(output.get_output());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[1].matches("Z ").count(), 2, "parked and requested times: {text}");
    assert_eq!(lines[2].matches("Z ").count(), 1, "parked time only: {text}");

    // Without --yes: a dry run.
    eventcore_for(&store)
        .args(["dead-letters", "delete", "balances", "--position", &p1.to_string()])
        .assert()
        .success()
        .stdout(contains(format!(
            "would delete 1 dead letter(s) of balances: {p1} (pass --yes to delete)"
        )));
    assert_eq!(dead_letters.list("balances").await.expect("list").len(), 2);

    // A position not parked: nothing is deleted.
    eventcore_for(&store)
        .args([
            "dead-letters",
            "delete",
            "balances",
            "--yes",
            "--position",
            &p1.to_string(),
        ])
        .args(["--position", "12345"])
        .assert()
        .code(5)
        .stderr(contains("no dead letter at position 12345"));
    assert_eq!(dead_letters.list("balances").await.expect("list").len(), 2);

    eventcore_for(&store)
        .args([
            "dead-letters",
            "delete",
            "balances",
            "--yes",
            "--position",
            &p1.to_string(),
        ])
        .assert()
        .success()
        .stdout(contains(format!("deleted 1 dead letter(s) of balances: {p1}")));
    let left: Vec<GlobalPosition> = dead_letters
        .list("balances")
        .await
        .expect("list")
        .iter()
        .map(|l| l.event.position)
        .collect();
    assert_eq!(left, [events[1].position]);

    let output = eventcore_for(&store)
        .args(["--json", "dead-letters", "delete", "balances", "--all", "--yes"])
        .assert()
        .success();
    assert_eq!(
        json(output.get_output()),
        json!({ "subscription": "balances", "deleted": true, "positions": [p2] })
    );
    assert!(dead_letters.list("balances").await.expect("list").is_empty());

    // Neither --position nor --all: a usage error.
    eventcore_for(&store)
        .args(["dead-letters", "delete", "balances"])
        .assert()
        .code(2);
    let _ = store.drop_schema().await;
}

/// Refuses negative deposits (as poison) until `accept_negative` is set;
/// counts how often it saw each position.
#[derive(Clone, Default)]
struct Deposits {
    accept_negative: Arc<AtomicBool>,
    seen: Arc<Mutex<BTreeMap<u64, usize>>>,
}

impl Deposits {
    fn seen(&self, position: u64) -> usize {
        self.seen.lock().expect("lock").get(&position).copied().unwrap_or(0)
    }
}

impl Subscriber for Deposits {
    async fn handle(&mut self, batch: &Batch) -> Result<(), HandleError> {
        for event in &batch.events {
            *self.seen.lock().expect("lock").entry(event.position.get()).or_default() += 1;
            if event.payload.as_json().contains('-') && !self.accept_negative.load(Ordering::SeqCst) {
                return Err(poison(event, "negative deposit"));
            }
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_is_done_by_the_running_service_and_waited_for() {
    let Some(store) = fresh_store("cli_dead_letter_replay").await else {
        return;
    };
    append(
        &store,
        "account-1",
        &[
            ("Deposited", json!({ "amount": -5 })),
            ("Deposited", json!({ "amount": 7 })),
        ],
    )
    .await;
    let bad = read_back(&store, "account-1").await[0].position.get();

    // The service: a subscription parking the negative deposit.
    let dead_letters = PgDeadLetterStore::new(&store);
    let handler = Deposits::default();
    let policy = SubscriptionPolicy::default()
        .with_poll_interval(Duration::from_millis(100))
        .with_poison(PoisonPolicy::retry(1, PoisonAction::Park));
    let mut runner = Runner::subscription(
        "deposits",
        store.clone(),
        PgCheckpointStore::new(&store),
        handler.clone(),
    )
    .with_policy(policy)
    .with_dead_letters(dead_letters.clone());
    let mut status = runner.status();
    let (stop, stopped) = oneshot::channel::<()>();
    let service = tokio::spawn(async move {
        runner
            .run_until(async {
                let _ = stopped.await;
            })
            .await
    });
    tokio::time::timeout(Duration::from_secs(20), status.wait_for(|s| s.stats.parked == 1))
        .await
        .expect("the poison event is parked within 20 s")
        .expect("the runner is running");
    let seen_when_parked = handler.seen(bad);

    // The handler is fixed; the operator asks for a replay and waits.
    handler.accept_negative.store(true, Ordering::SeqCst);
    let mut command = eventcore_for(&store);
    command.args(["dead-letters", "replay", "deposits", "--wait", "20"]);
    let output = tokio::task::spawn_blocking(move || command.assert().success().get_output().clone())
        .await
        .expect("the command ran");
    let text = stdout(&output);
    assert!(
        text.contains(&format!("requested a replay of 1 dead letter(s) of deposits: {bad}")),
        "{text}"
    );
    assert!(text.contains(&format!("replayed: {bad}")), "{text}");

    assert!(dead_letters.list("deposits").await.expect("list").is_empty());
    assert_eq!(handler.seen(bad), seen_when_parked + 1, "handled once more");
    assert_eq!(status.borrow().replayed, 1);
    eventcore_for(&store)
        .args(["dead-letters", "list", "deposits"])
        .assert()
        .success()
        .stdout(contains("no dead letters for deposits"));

    stop.send(()).expect("the service is running");
    service.await.expect("joined").expect("a clean stop");
    let _ = store.drop_schema().await;
}
