//! `eventcore subscriptions`: checkpoints, lag, leases and parked counts.

use super::common::{append, eventcore_for, fresh_store, json, read_back, stdout};
use eventcore::{GlobalPosition, PoisonEvent, Time};
use eventcore_postgres::{PgCheckpointStore, PgDeadLetterStore, PgLeaseStore};
use eventcore_store::{CheckpointStore, DeadLetter, DeadLetterStore, FencingToken, LeaseStore};
use predicates::str::contains;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_every_checkpoint_with_its_lag_lease_and_parked_events() {
    let Some(store) = fresh_store("cli_subs").await else {
        return;
    };
    eventcore_for(&store)
        .arg("subscriptions")
        .assert()
        .success()
        .stdout(contains(format!(
            "no subscriptions in schema {}",
            store.options().schema
        )));

    let receipt = append(
        &store,
        "account-1",
        &[
            ("Opened", json!({ "initial": 10 })),
            ("Deposited", json!({ "amount": 5 })),
            ("Deposited", json!({ "amount": 6 })),
        ],
    )
    .await;
    let positions = &receipt.streams[0].positions;
    let (first, last) = (positions[0], receipt.last_position());

    // `balances`: held by node-a, one event handled, two behind, one parked.
    let leases = PgLeaseStore::new(&store);
    let checkpoints = PgCheckpointStore::new(&store);
    let lease = leases
        .try_acquire("balances", "node-a", Duration::from_secs(300), Time::ZERO)
        .await
        .expect("acquire")
        .expect("free");
    checkpoints.claim("balances", lease.token).await.expect("claim");
    checkpoints.save("balances", lease.token, first).await.expect("save");
    let event = read_back(&store, "account-1").await.remove(1);
    let dead_letters = PgDeadLetterStore::new(&store);
    for subscription in ["balances", "orphan"] {
        dead_letters
            .park(DeadLetter {
                subscription: subscription.to_owned(),
                poison: PoisonEvent::handler(&event, "bad amount"),
                event: event.clone(),
                parked_at: Time::from_unix_millis(1_700_000_000_000),
                replay_requested_at: None,
            })
            .await
            .expect("park");
    }
    // `audit`: caught up, no lease.
    checkpoints.claim("audit", FencingToken::new(1)).await.expect("claim");
    checkpoints
        .save("audit", FencingToken::new(1), last)
        .await
        .expect("save");
    // `idle`: a lease taken and released.
    let idle = leases
        .try_acquire("idle", "node-b", Duration::from_secs(300), Time::ZERO)
        .await
        .expect("acquire")
        .expect("free");
    leases.release(&idle).await.expect("release");

    let output = eventcore_for(&store).arg("subscriptions").assert().success();
    let text = stdout(output.get_output());
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows[0],
        [
            "NAME",
            "CHECKPOINT",
            "BEHIND",
            "LAG",
            "HOLDER",
            "TOKEN",
            "EXPIRES",
            "PARKED"
        ],
        "{text}"
    );
    let names: Vec<&str> = rows[1..].iter().map(|r| r[0]).collect();
    assert_eq!(names, ["audit", "balances", "idle", "orphan"], "{text}");
    assert_eq!(
        rows[1],
        ["audit", &last.to_string(), "0", "0ms", "-", "-", "-", "0"],
        "{text}"
    );
    let balances = &rows[2];
    assert_eq!(balances[1..3], [first.to_string(), "2".to_owned()], "{text}");
    assert!(
        balances[3].ends_with('d') || balances[3].ends_with('h'),
        "lag since 2023: {text}"
    );
    assert_eq!(balances[4..7], ["node-a", "1", "in"], "{text}");
    assert_eq!(balances[8], "1", "{text}");
    assert_eq!(rows[3], ["idle", "-", "-", "-", "-", "1", "released", "0"], "{text}");
    assert_eq!(rows[4], ["orphan", "-", "-", "-", "-", "-", "-", "1"], "{text}");

    let output = eventcore_for(&store)
        .args(["subscriptions", "--json"])
        .assert()
        .success();
    let report = json(output.get_output());
    assert_eq!(report["schema"], store.options().schema.as_str());
    assert_eq!(report["head_position"], last.get());
    let subscriptions = report["subscriptions"].as_array().expect("subscriptions");
    assert_eq!(subscriptions.len(), 4);
    let balances = &subscriptions[1];
    assert_eq!(balances["name"], "balances");
    assert_eq!(balances["parked"], 1);
    let checkpoint = &balances["checkpoint"];
    assert_eq!(checkpoint["position"], first.get());
    assert_eq!(checkpoint["fence"], 1);
    assert_eq!(checkpoint["lag_events"], 2);
    assert_eq!(checkpoint["lag_events_capped"], false);
    assert_eq!(checkpoint["lag_positions"], last.get() - first.get());
    assert!(
        checkpoint["lag_seconds"].as_f64().expect("lag") > 86_400.0,
        "{checkpoint}"
    );
    assert!(checkpoint["updated_at"].as_str().expect("updated").ends_with('Z'));
    let lease = &balances["lease"];
    assert_eq!(lease["held"], true);
    assert_eq!(lease["holder"], "node-a");
    assert_eq!(lease["token"], 1);
    let remaining = lease["remaining_seconds"].as_f64().expect("remaining");
    assert!(remaining > 200.0 && remaining <= 300.0, "{lease}");
    assert!(lease["expires_at"].as_str().is_some());
    let audit = &subscriptions[0];
    assert_eq!(audit["checkpoint"]["lag_events"], 0);
    assert_eq!(audit["checkpoint"]["lag_seconds"], 0.0);
    assert_eq!(audit["lease"], serde_json::Value::Null);
    let idle = &subscriptions[2];
    assert_eq!(idle["checkpoint"], serde_json::Value::Null);
    assert_eq!(idle["lease"]["held"], false);
    assert_eq!(idle["lease"]["holder"], serde_json::Value::Null);
    assert_eq!(idle["lease"]["expires_at"], serde_json::Value::Null);

    // The count stops at --count-limit.
    let output = eventcore_for(&store)
        .args(["subscriptions", "--count-limit", "1", "--json"])
        .assert()
        .success();
    let report = json(output.get_output());
    assert_eq!(report["subscriptions"][1]["checkpoint"]["lag_events"], 1);
    assert_eq!(report["subscriptions"][1]["checkpoint"]["lag_events_capped"], true);
    let output = eventcore_for(&store)
        .args(["subscriptions", "--count-limit", "1"])
        .assert()
        .success();
    let text = stdout(output.get_output());
    let balances: Vec<&str> = text.lines().nth(2).expect("balances").split_whitespace().collect();
    assert_eq!(balances[..3], ["balances", &first.to_string(), "1+"], "{text}");
    assert_eq!(
        checkpoints.get("balances").await.expect("get"),
        Some(GlobalPosition::new(first.get())),
        "listing changed nothing"
    );
    let _ = store.drop_schema().await;
}
