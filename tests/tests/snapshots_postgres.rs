//! The snapshot-store conformance suite against [`PgSnapshotStore`], each
//! case in its own freshly created schema, and the PostgreSQL-only checks:
//! malformed rows, an unreachable database, schema isolation.
//!
//! Needs `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`);
//! without a reachable database each case prints a skip notice and passes,
//! unless `CI=true`, where it fails.

use eventcore_postgres::PgSnapshotStore;
use eventcore_tests::postgres::fresh_store;
use eventcore_tests::snapshot_conformance::{assert_same, snapshot, stream};
use eventcore_tokio::{SnapshotError, SnapshotStore};

eventcore_tests::snapshot_store_conformance!(eventcore_tests::pg_snapshot_factory!());

/// Rows planted behind the store's back that do not parse are `Malformed`,
/// not a panic and not a snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_does_not_parse_is_malformed() {
    let Some(store) = fresh_store("snap_malformed").await else {
        return;
    };
    let snapshots = PgSnapshotStore::new(&store);
    let schema = &store.options().schema;
    let plant = format!(
        "INSERT INTO \"{schema}\".snapshots \
         (stream_id, view, view_version, stream_version, payload, taken_at_ns, last_event_id) \
         VALUES ($1, 'balance', 1, $2, '{{}}'::jsonb, $3, gen_random_uuid())"
    );
    for (name, version, taken_at) in [("negative-version", -1_i64, 0_i64), ("negative-time", 1, -5)] {
        sqlx::query(&plant)
            .bind(name)
            .bind(version)
            .bind(taken_at)
            .execute(store.pool())
            .await
            .expect("plant a row");
        let loaded = snapshots.load(&stream(name), "balance", 1).await;
        assert!(matches!(loaded, Err(SnapshotError::Malformed(_))), "{name}: {loaded:?}");
    }
    let _ = store.drop_schema().await;
}

/// A closed pool (the database gone) is `Unavailable` for every operation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pool_is_unavailable() {
    let Some(store) = fresh_store("snap_closed").await else {
        return;
    };
    let snapshots = PgSnapshotStore::new(&store);
    let s = stream("acc-1");
    snapshots.save(&snapshot(&s, "balance", 1)).await.expect("save");
    let _ = store.drop_schema().await;
    store.pool().close().await;
    let load = snapshots.load(&s, "balance", 1).await;
    assert!(matches!(load, Err(SnapshotError::Unavailable(_))), "{load:?}");
    let save = snapshots.save(&snapshot(&s, "balance", 2)).await;
    assert!(matches!(save, Err(SnapshotError::Unavailable(_))), "{save:?}");
    let delete = snapshots.delete_view("balance").await;
    assert!(matches!(delete, Err(SnapshotError::Unavailable(_))), "{delete:?}");
}

/// Two stores on two schemas of one database keep their own snapshots, and
/// the counters count rows fetched and saves done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_isolate_and_counters_count() {
    let (Some(one), Some(two)) = (fresh_store("snap_one").await, fresh_store("snap_two").await) else {
        return;
    };
    let (a, b) = (PgSnapshotStore::new(&one), PgSnapshotStore::new(&two));
    let s = stream("acc-1");
    let snap = snapshot(&s, "balance", 4);
    a.save(&snap).await.expect("save");
    assert_eq!(b.load(&s, "balance", 1).await.expect("load"), None);
    assert_eq!(b.loads(), 0, "a miss fetches no row");
    assert_same(a.clone().load(&s, "balance", 1).await.expect("load"), &snap);
    assert_eq!((a.loads(), a.saves()), (1, 1), "counters are shared by clones");
    assert_eq!(b.delete_view("balance").await.expect("delete"), 0);
    assert_eq!(a.delete_view("balance").await.expect("delete"), 1);
    // Migrating again (a restart) keeps the table and its rows.
    a.save(&snap).await.expect("save");
    one.migrate().await.expect("migrate again");
    assert_same(a.load(&s, "balance", 1).await.expect("load"), &snap);
    let _ = one.drop_schema().await;
    let _ = two.drop_schema().await;
}

/// A payload that is not JSON is refused by the jsonb column and reported,
/// not stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_that_is_not_json_is_refused() {
    let Some(store) = fresh_store("snap_notjson").await else {
        return;
    };
    let snapshots = PgSnapshotStore::new(&store);
    let s = stream("acc-1");
    let bad = eventcore::Snapshot {
        payload: "{not json".to_owned(),
        ..snapshot(&s, "balance", 1)
    };
    assert!(snapshots.save(&bad).await.is_err());
    assert_eq!(snapshots.load(&s, "balance", 1).await.expect("load"), None);
    let _ = store.drop_schema().await;
}
