//! `eventcore migrate` and `migrate --verify`.

use super::common::{eventcore, fresh_store, json};
use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_creates_the_schema_and_verify_checks_it() {
    let Some(store) = fresh_store("cli_migrate").await else {
        return;
    };
    store.drop_schema().await.expect("start from no schema");
    let schema = store.options().schema.clone();

    eventcore(&schema)
        .args(["migrate", "--verify"])
        .assert()
        .code(4)
        .stderr(contains("not migrated"));
    assert!(
        !store.health().await.expect("health").migrated,
        "--verify changed nothing"
    );

    eventcore(&schema)
        .arg("migrate")
        .assert()
        .success()
        .stdout(contains(format!("schema {schema} migrated: schema version ")))
        .stdout(contains("notify trigger installed"));
    assert!(store.health().await.expect("health").migrated);

    let output = eventcore(&schema)
        .args(["migrate", "--verify", "--json"])
        .assert()
        .success();
    let report = json(output.get_output());
    assert_eq!(report["schema"], schema.as_str());
    assert_eq!(report["action"], "verified");
    assert_eq!(report["notify_trigger"], true);
    let version = report["schema_version"].as_u64().expect("a schema version");
    assert!(version >= 4, "every migration applied: {report}");
    assert_eq!(
        store.schema_version().await.expect("schema version").map(u64::from),
        Some(version)
    );

    // Again: nothing to do.
    let again = json(
        eventcore(&schema)
            .args(["--json", "migrate"])
            .assert()
            .success()
            .get_output(),
    );
    assert_eq!(again["action"], "migrated");
    assert_eq!(again["schema_version"], version);
    let _ = store.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_notify_trigger_verify_says_what_is_missing() {
    let Some(store) = fresh_store("cli_migrate_notrigger").await else {
        return;
    };
    let schema = store.options().schema.clone();
    // `fresh_store` migrated the tables only, as `--no-notify-trigger` does.
    eventcore(&schema)
        .args(["migrate", "--no-notify-trigger"])
        .assert()
        .success()
        .stdout(contains("migrated: schema version"))
        .stdout(contains("notify trigger").not());
    eventcore(&schema)
        .args(["migrate", "--verify"])
        .assert()
        .code(4)
        .stderr(contains("notify trigger"));
    eventcore(&schema)
        .args(["migrate", "--verify", "--no-notify-trigger"])
        .assert()
        .success()
        .stdout(contains("is migrated to this version"));
    let _ = store.drop_schema().await;
}
