//! `eventcore dead-letters list|delete|replay`.

use super::common::{append, eventcore_for, fresh_store, json, read_back, stdout};
use eventcore::{DecodeErrorKind, GlobalPosition, PoisonCause, PoisonEvent, Time};
use eventcore_postgres::PgDeadLetterStore;
use eventcore_store::{DeadLetter, DeadLetterStore};
use predicates::str::contains;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_and_deletes_parked_events_and_explains_replay() {
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
    for column in ["POSITION", "STREAM", "VERSION", "TYPE", "PARKED AT", "CAUSE"] {
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

    // Replay needs the user's handler: it says so, and changes nothing.
    eventcore_for(&store)
        .args(["dead-letters", "replay", "balances"])
        .assert()
        .code(2)
        .stderr(contains("Runner::replay_parked"))
        .stderr(contains("eventcore dead-letters delete balances"));

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
