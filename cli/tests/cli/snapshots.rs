//! `eventcore snapshots list|delete|prune`.

use super::common::{eventcore_for, fresh_store, json, stdout};
use eventcore::{EventId, Snapshot, StreamId, StreamVersion, Time};
use eventcore_postgres::PgSnapshotStore;
use eventcore_store::SnapshotStore;
use predicates::str::contains;

async fn save(snapshots: &PgSnapshotStore, stream: &str, view: &str, view_version: u32) {
    snapshots
        .save(&Snapshot {
            stream: StreamId::new(stream).expect("valid"),
            view: view.to_owned(),
            view_version,
            stream_version: StreamVersion::new(3),
            last_event_id: EventId::v7(Time::ZERO, [7; 10]),
            payload: format!(r#"{{"stream":"{stream}","balance":42}}"#),
            taken_at: Time::from_unix_millis(1_700_000_000_000 + u64::from(view_version)),
        })
        .await
        .expect("save");
}

/// (view, version, count) of what the table holds.
async fn held(snapshots: &PgSnapshotStore) -> Vec<(String, u32, u64)> {
    snapshots
        .views()
        .await
        .expect("views")
        .into_iter()
        .map(|g| (g.view, g.view_version, g.snapshots))
        .collect()
}

fn owned(groups: &[(&str, u32, u64)]) -> Vec<(String, u32, u64)> {
    groups.iter().map(|&(v, n, c)| (v.to_owned(), n, c)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_snapshots_per_view_version_and_deletes_old_ones() {
    let Some(store) = fresh_store("cli_snapshots").await else {
        return;
    };
    eventcore_for(&store)
        .args(["snapshots", "list"])
        .assert()
        .success()
        .stdout(contains("no snapshots"));
    let snapshots = PgSnapshotStore::new(&store);
    save(&snapshots, "account-1", "account", 1).await;
    save(&snapshots, "account-2", "account", 1).await;
    save(&snapshots, "account-1", "account", 2).await;
    save(&snapshots, "order-1", "order", 1).await;

    let output = eventcore_for(&store).args(["snapshots", "list"]).assert().success();
    let text = stdout(output.get_output());
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows[0],
        ["VIEW", "VERSION", "SNAPSHOTS", "SIZE", "LARGEST", "OLDEST", "NEWEST"],
        "{text}"
    );
    assert_eq!(rows.len(), 4, "{text}");
    assert_eq!(rows[1][..3], ["account", "1", "2"], "{text}");
    assert_eq!(rows[1][4], "B", "sizes in bytes: {text}");
    assert_eq!(rows[1][7], "2023-11-14T22:13:20.001000Z", "{text}");
    assert_eq!(rows[2][..3], ["account", "2", "1"], "{text}");
    assert_eq!(rows[3][..3], ["order", "1", "1"], "{text}");

    let output = eventcore_for(&store)
        .args(["snapshots", "list", "--json"])
        .assert()
        .success();
    let report = json(output.get_output());
    let views = report["views"].as_array().expect("views");
    assert_eq!(views.len(), 3);
    assert_eq!(views[0]["view"], "account");
    assert_eq!(views[0]["view_version"], 1);
    assert_eq!(views[0]["snapshots"], 2);
    let bytes = views[0]["payload_bytes"].as_u64().expect("bytes");
    let largest = views[0]["largest_payload_bytes"].as_u64().expect("largest");
    assert!(largest > 20 && bytes >= 2 * largest - 2, "{report}");
    assert_eq!(views[0]["oldest"], "2023-11-14T22:13:20.001000Z");

    // Old versions of one view: a dry run, then for real.
    eventcore_for(&store)
        .args(["snapshots", "delete", "account", "--below", "2"])
        .assert()
        .success()
        .stdout(contains(
            "would delete 2 snapshot(s): account v1 (2) (pass --yes to delete)",
        ));
    assert_eq!(held(&snapshots).await.len(), 3, "a dry run deletes nothing");
    eventcore_for(&store)
        .args(["snapshots", "delete", "account", "--below", "2", "--yes"])
        .assert()
        .success()
        .stdout(contains("deleted 2 snapshot(s): account v1 (2)"));
    assert_eq!(held(&snapshots).await, owned(&[("account", 2, 1), ("order", 1, 1)]));

    // One version, as JSON.
    let output = eventcore_for(&store)
        .args(["--json", "snapshots", "delete", "order", "--version", "1", "--yes"])
        .assert()
        .success();
    let report = json(output.get_output());
    assert_eq!(report["deleted"], true);
    assert_eq!(report["snapshots"], 1);
    assert_eq!(report["groups"][0]["view"], "order");
    assert_eq!(held(&snapshots).await, owned(&[("account", 2, 1)]));

    // Prune: every view keeps its newest version only.
    save(&snapshots, "account-3", "account", 1).await;
    save(&snapshots, "account-3", "account", 3).await;
    save(&snapshots, "order-1", "order", 4).await;
    eventcore_for(&store)
        .args(["snapshots", "prune"])
        .assert()
        .success()
        .stdout(contains(
            "would delete 2 snapshot(s): account v1 (1), account v2 (1) (pass --yes to delete)",
        ));
    let output = eventcore_for(&store)
        .args(["snapshots", "prune", "--yes", "--json"])
        .assert()
        .success();
    assert_eq!(json(output.get_output())["snapshots"], 2);
    assert_eq!(held(&snapshots).await, owned(&[("account", 3, 1), ("order", 4, 1)]));

    // A whole view.
    eventcore_for(&store)
        .args(["snapshots", "delete", "account", "--yes"])
        .assert()
        .success()
        .stdout(contains("deleted 1 snapshot(s): account v3 (1)"));
    eventcore_for(&store)
        .args(["snapshots", "delete", "account", "--yes"])
        .assert()
        .success()
        .stdout(contains("no snapshots to delete"));
    assert_eq!(held(&snapshots).await, owned(&[("order", 4, 1)]));
    let _ = store.drop_schema().await;
}
