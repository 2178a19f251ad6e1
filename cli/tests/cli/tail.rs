//! `eventcore tail`: the log from a position with filters, and following
//! it from the end.

use super::common::{append, database_url, eventcore_for, fresh_store, stdout};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prints_the_log_from_a_position_filtered_by_type_and_stream_prefix() {
    let Some(store) = fresh_store("cli_tail").await else {
        return;
    };
    let a = append(
        &store,
        "account-1",
        &[
            ("Opened", json!({ "initial": 10 })),
            ("Deposited", json!({ "amount": 5 })),
        ],
    )
    .await;
    let b = append(&store, "order-1", &[("Deposited", json!({ "amount": 7 }))]).await;
    let c = append(&store, "account-2", &[("Deposited", json!({ "amount": 9 }))]).await;
    let p = |receipt: &eventcore::AppendReceipt, i: usize| receipt.streams[0].positions[i].get();

    let output = eventcore_for(&store)
        .args(["tail", "--from", "0", "--once"])
        .assert()
        .success();
    let text = stdout(output.get_output());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "every event, no header:\n{text}");
    assert!(
        lines[0].starts_with(&format!(
            "{}  account-1@1  Opened (schema 1)  2023-11-14T22:13:20.123456Z  command ",
            p(&a, 0)
        )),
        "{text}"
    );
    assert!(lines[0].ends_with(r#"{"initial": 10}"#), "{text}");
    assert!(
        lines[3].starts_with(&format!("{}  account-2@1  Deposited", p(&c, 0))),
        "{text}"
    );

    // From a position: only what follows it.
    let output = eventcore_for(&store)
        .args(["tail", "--once", "--from", &p(&a, 1).to_string()])
        .assert()
        .success();
    let text = stdout(output.get_output());
    assert_eq!(text.lines().count(), 2, "{text}");

    // Filters, as JSON lines.
    let output = eventcore_for(&store)
        .args([
            "--json",
            "tail",
            "--from",
            "0",
            "--once",
            "--type",
            "Deposited",
            "--stream-prefix",
            "account-",
        ])
        .assert()
        .success();
    let events: Vec<Value> = stdout(output.get_output())
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    let positions: Vec<u64> = events
        .iter()
        .map(|e| e["position"].as_u64().expect("position"))
        .collect();
    assert_eq!(positions, [p(&a, 1), p(&c, 0)]);
    assert_eq!(events[0]["type"], "Deposited");
    assert_eq!(events[0]["stream"], "account-1");
    assert_eq!(events[1]["payload"], json!({ "amount": 9 }));

    // Several types; a limit.
    let output = eventcore_for(&store)
        .args([
            "--json",
            "tail",
            "--from",
            "0",
            "--type",
            "Opened",
            "--type",
            "Deposited",
            "--limit",
            "3",
        ])
        .assert()
        .success();
    let text = stdout(output.get_output());
    assert_eq!(text.lines().count(), 3, "--limit stops it without --once:\n{text}");
    assert!(text.contains(&format!("\"position\":{}", p(&b, 0))), "{text}");
    let _ = store.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_the_log_from_the_end() {
    let Some(store) = fresh_store("cli_tail_follow").await else {
        return;
    };
    let before = append(&store, "account-1", &[("Deposited", json!({ "amount": 1 }))]).await;
    // "The end" is where the log is final: a transaction of another test
    // still running holds it back, and tail would print `before` too.
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.head().await.expect("head").settled < before.last_position() {
        assert!(Instant::now() < deadline, "the log never settled past our append");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_eventcore"))
        .env("DATABASE_URL", database_url())
        .args(["--schema", &store.options().schema, "--json", "tail"])
        .args([
            "--type",
            "Deposited",
            "--stream-prefix",
            "account-",
            "--limit",
            "2",
            "--poll-ms",
            "50",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start eventcore tail");
    // It says on stderr where it starts: only then is "the end" fixed.
    let stderr = child.stderr.take().expect("stderr");
    let mut notice = String::new();
    BufReader::new(stderr).read_line(&mut notice).expect("read stderr");
    assert!(notice.starts_with("following schema "), "{notice}");

    append(&store, "account-1", &[("Withdrawn", json!({ "amount": 1 }))]).await;
    append(&store, "order-1", &[("Deposited", json!({ "amount": 2 }))]).await;
    let first = append(&store, "account-1", &[("Deposited", json!({ "amount": 3 }))]).await;
    let second = append(&store, "account-2", &[("Deposited", json!({ "amount": 4 }))]).await;

    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tail did not stop after --limit 2");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success());
    let output = child.wait_with_output().expect("output");
    let events: Vec<Value> = String::from_utf8(output.stdout)
        .expect("UTF-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect();
    let positions: Vec<u64> = events
        .iter()
        .map(|e| e["position"].as_u64().expect("position"))
        .collect();
    assert_eq!(
        positions,
        [first.last_position().get(), second.last_position().get()],
        "only matching events committed after it started (not {})",
        before.last_position()
    );
    let _ = store.drop_schema().await;
}
