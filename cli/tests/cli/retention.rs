//! `eventcore retention run` and what `eventcore stream` then says.

use super::common::{append, eventcore_for, fresh_store, json, read_back, stdout};
use eventcore::{ExpectedVersion, StreamVersion};
use eventcore_store::EventStore;
use eventcore_tests::conformance::{stream, Append};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removes_what_the_policy_allows_and_stream_says_so() {
    let Some(store) = fresh_store("cli_retention").await else {
        return;
    };
    let events: Vec<(&str, serde_json::Value)> = (0..4).map(|i| ("Line", json!({ "i": i }))).collect();
    append(&store, "log-1", &events).await;
    append(&store, "audit-1", &events).await;
    let ending = Append::new()
        .ending(&stream("log-2"), ExpectedVersion::NoStream, 2)
        .build();
    store.append(&ending).await.expect("tombstone");

    // A dry run says what would go and removes nothing.
    let output = eventcore_for(&store)
        .args([
            "--json",
            "retention",
            "run",
            "--category",
            "log-",
            "--max-count",
            "1",
            "--dry-run",
        ])
        .assert()
        .success();
    let report = json(output.get_output());
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["events_removed"], 4, "{report}");
    assert_eq!(read_back(&store, "log-1").await.len(), 4);

    let output = eventcore_for(&store)
        .args([
            "retention",
            "run",
            "--category",
            "log-",
            "--max-count",
            "1",
            "--tombstoned",
            "--archive",
        ])
        .assert()
        .success();
    let text = stdout(output.get_output());
    assert!(
        text.contains("removed 5 events in 2 ranges (1 transactions, 5 archived)"),
        "{text}"
    );
    assert!(
        text.contains("log-1") && text.contains("1..=3") && text.contains("max_count"),
        "{text}"
    );
    assert!(text.contains("log-2") && text.contains("tombstoned"), "{text}");
    assert_eq!(read_back(&store, "audit-1").await.len(), 4, "other categories stay");

    let output = eventcore_for(&store)
        .args(["--json", "stream", "log-1"])
        .assert()
        .success();
    let report = json(output.get_output());
    assert_eq!(
        (report["head"].clone(), report["removed_through"].clone()),
        (json!(4), json!(3))
    );
    assert_eq!(report["events"].as_array().map(Vec::len), Some(1));
    assert_eq!(report["deleted_at"], serde_json::Value::Null);

    let output = eventcore_for(&store).args(["stream", "log-2"]).assert().success();
    let text = stdout(output.get_output());
    assert!(text.contains("deleted by a tombstone at version 2"), "{text}");
    assert!(text.contains("versions 1 to 2 were removed by retention"), "{text}");
    let deleted = store
        .read(&eventcore::ReadRequest::new([stream("log-2")]))
        .await
        .expect("read")
        .streams
        .remove(0);
    assert_eq!(deleted.deleted_at, Some(StreamVersion::new(2)), "still tombstoned");

    // A second run finds nothing new.
    let output = eventcore_for(&store)
        .args([
            "retention",
            "run",
            "--category",
            "log-",
            "--max-count",
            "1",
            "--tombstoned",
        ])
        .assert()
        .success();
    assert!(stdout(output.get_output()).contains("removed 0 events in 0 ranges"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_without_a_rule_or_with_a_bad_age_is_a_usage_error() {
    let Some(store) = fresh_store("cli_retention_usage").await else {
        return;
    };
    eventcore_for(&store)
        .args(["retention", "run", "--category", "log-"])
        .assert()
        .code(2);
    eventcore_for(&store)
        .args(["retention", "run", "--category", "log-", "--max-age", "90w"])
        .assert()
        .code(2);
}
