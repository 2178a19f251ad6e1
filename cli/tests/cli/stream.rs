//! `eventcore stream <id>`.

use super::common::{append, append_with, eventcore, eventcore_for, fresh_store, json, stdout, suite_time};
use eventcore::EventMetadata;
use eventcore_tests::conformance::fresh_command_id;
use predicates::str::contains;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prints_a_streams_events_with_their_metadata() {
    let Some(store) = fresh_store("cli_stream").await else {
        return;
    };
    let command = fresh_command_id();
    let first = append_with(
        &store,
        "account-1",
        &[
            ("Opened", json!({ "initial": 10 })),
            ("Deposited", json!({ "amount": 5 })),
        ],
        EventMetadata::new(command, suite_time()).with_user("tenant", "acme"),
    )
    .await;
    let second = append(&store, "account-1", &[("Withdrawn", json!({ "amount": 3 }))]).await;
    append(&store, "account-2", &[("Opened", json!({ "initial": 1 }))]).await;
    let positions: Vec<u64> = first.streams[0]
        .positions
        .iter()
        .chain(&second.streams[0].positions)
        .map(|p| p.get())
        .collect();

    let output = eventcore_for(&store).args(["stream", "account-1"]).assert().success();
    let text = stdout(output.get_output());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "a header and three events:\n{text}");
    for column in [
        "VERSION",
        "POSITION",
        "TYPE",
        "SCHEMA",
        "COMMAND",
        "TIMESTAMP",
        "PAYLOAD",
    ] {
        assert!(lines[0].contains(column), "{text}");
    }
    for (line, (version, event_type)) in lines[1..]
        .iter()
        .zip([(1, "Opened"), (2, "Deposited"), (3, "Withdrawn")])
    {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[0], version.to_string(), "{line}");
        assert_eq!(cells[1], positions[version - 1].to_string(), "{line}");
        assert_eq!(cells[2], event_type, "{line}");
        assert_eq!(cells[3], "1", "{line}");
        assert_eq!(cells[5], "2023-11-14T22:13:20.123456Z", "{line}");
    }
    assert!(lines[1].contains(&command.to_string()), "{text}");
    assert!(lines[1].ends_with(r#"{"initial": 10}"#), "{text}");

    let output = eventcore_for(&store)
        .args(["stream", "account-1", "--after", "1", "--limit", "1"])
        .assert()
        .success();
    let text = stdout(output.get_output());
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains("Deposited") && !text.contains("Withdrawn"), "{text}");

    let output = eventcore_for(&store)
        .args(["--json", "stream", "account-1"])
        .assert()
        .success();
    let report = json(output.get_output());
    assert_eq!(report["stream"], "account-1");
    assert_eq!(report["head"], 3);
    let events = report["events"].as_array().expect("events");
    assert_eq!(events.len(), 3);
    let opened = &events[0];
    assert_eq!(opened["position"], positions[0]);
    assert_eq!(opened["stream"], "account-1");
    assert_eq!(opened["version"], 1);
    assert_eq!(opened["type"], "Opened");
    assert_eq!(opened["schema_version"], 1);
    assert_eq!(opened["command_id"], command.to_string());
    assert_eq!(opened["correlation_id"], command.to_string());
    assert_eq!(opened["causation_id"], serde_json::Value::Null);
    assert_eq!(opened["timestamp"], "2023-11-14T22:13:20.123456Z");
    assert_eq!(opened["timestamp_ns"], suite_time().as_unix_nanos());
    assert_eq!(opened["user"], json!({ "tenant": "acme" }));
    assert_eq!(opened["payload"], json!({ "initial": 10 }));
    assert_eq!(events[2]["payload"], json!({ "amount": 3 }));
    assert_eq!(events[2]["user"], json!({}));

    // Past the end: nothing to print, and no error.
    eventcore_for(&store)
        .args(["stream", "account-1", "--after", "3"])
        .assert()
        .success()
        .stdout(contains("no events after version 3 (head 3)"));
    let _ = store.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_stream_a_bad_id_and_an_unmigrated_schema_fail_with_their_codes() {
    let Some(store) = fresh_store("cli_stream_errors").await else {
        return;
    };
    eventcore_for(&store)
        .args(["stream", "nobody"])
        .assert()
        .code(5)
        .stderr(contains("stream \"nobody\" has no events"));
    eventcore_for(&store)
        .args(["stream", " padded "])
        .assert()
        .code(2)
        .stderr(contains("invalid stream id"));
    store.drop_schema().await.expect("drop");
    eventcore(&store.options().schema)
        .args(["stream", "account-1"])
        .assert()
        .code(4)
        .stderr(contains("is not migrated"))
        .stderr(contains("eventcore migrate"));
}
