//! `eventcore health`: healthy, not migrated, unreachable.

use super::common::{append, eventcore, eventcore_for, fresh_store, json, stdout};
use assert_cmd::Command;
use predicates::str::contains;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migrated_schema_is_healthy_and_reports_where_the_log_ends() {
    let Some(store) = fresh_store("cli_health").await else {
        return;
    };
    let receipt = append(&store, "account-1", &[("Opened", json!({ "initial": 10 }))]).await;
    let last = receipt.last_position().get();

    let output = eventcore_for(&store).arg("health").assert().success();
    let text = stdout(output.get_output());
    assert!(text.starts_with("status           healthy\n"), "{text}");
    assert!(
        text.contains(&format!("schema           {}\n", store.options().schema)),
        "{text}"
    );
    assert!(text.contains("(up to date)"), "{text}");
    assert!(text.contains(&format!("last position    {last}\n")), "{text}");
    assert!(!text.contains("problem"), "{text}");

    let output = eventcore(&store.options().schema)
        .args(["health", "--json"])
        .assert()
        .success();
    let report = json(output.get_output());
    assert_eq!(report["healthy"], true);
    assert_eq!(report["migrated"], true);
    assert_eq!(report["migrations"], "up to date");
    assert_eq!(report["last_position"], last);
    assert!(report["settled_position"].as_u64().expect("settled") <= last);
    assert!(!report["server_version"].as_str().expect("server version").is_empty());
    assert_eq!(report["problems"], json!([]));
    let _ = store.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_without_a_store_is_unhealthy() {
    let Some(store) = fresh_store("cli_health_empty").await else {
        return;
    };
    store.drop_schema().await.expect("drop");
    let schema = store.options().schema.clone();
    eventcore(&schema)
        .arg("health")
        .assert()
        .code(4)
        .stdout(contains("UNHEALTHY"))
        .stdout(contains("run `eventcore migrate`"))
        .stderr(contains("unhealthy"));
    let output = eventcore(&schema).args(["health", "--json"]).assert().code(4);
    let report = json(output.get_output());
    assert_eq!(report["healthy"], false);
    assert_eq!(report["migrated"], false);
    assert_eq!(report["schema_version"], serde_json::Value::Null);
    assert_eq!(report["problems"].as_array().expect("problems").len(), 1);
}

#[test]
fn an_unreachable_database_exits_3_and_says_why() {
    // Nothing listens on port 1.
    let url = "postgres://postgres@127.0.0.1:1/postgres";
    Command::new(env!("CARGO_BIN_EXE_eventcore"))
        .args(["--database-url", url, "--timeout", "5", "health"])
        .assert()
        .code(3)
        .stderr(contains("cannot connect to PostgreSQL"));
    let output = Command::new(env!("CARGO_BIN_EXE_eventcore"))
        .args(["--database-url", url, "health", "--json"])
        .assert()
        .code(3);
    let report = json(output.get_output());
    assert_eq!(report["healthy"], false);
    assert!(report["problems"][0]
        .as_str()
        .expect("a problem")
        .contains("cannot connect"));
}
