//! The subscription-store conformance suite against the PostgreSQL stores:
//! `PgCheckpointStore`, `PgLeaseStore`, `PgDeadLetterStore` and
//! `PgProjectionStore`, the same cases as the memory stores, unchanged, each
//! in its own freshly created schema.
//!
//! Every case runs (none is disputed any more). Below the suite, the
//! PostgreSQL-only behaviour: a newer lease token fences too.
//!
//! Needs `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`);
//! without a reachable database each case prints a skip notice and passes,
//! unless `CI=true`, where it fails.

eventcore_tests::subscription_store_conformance!(eventcore_tests::pg_subscription_stores!());

// ---------------------------------------------------------------------------
// PostgreSQL only
// ---------------------------------------------------------------------------

use eventcore::{GlobalPosition, Time};
use eventcore_postgres::{PgCheckpointStore, PgLeaseStore, PgProjectionStore};
use eventcore_tokio::{CheckpointError, CheckpointStore, Lease, LeaseStore, ProjectionStore};
use std::time::Duration;

/// Takes `name` from holder `a` (who held it with a 50 ms ttl) for holder
/// `b`: returns both tenures.
async fn take_over(leases: &PgLeaseStore, name: &str) -> (Lease, Lease) {
    let a = leases
        .try_acquire(name, "a", Duration::from_millis(50), Time::ZERO)
        .await
        .expect("acquire")
        .expect("free");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let b = leases
        .try_acquire(name, "b", Duration::from_secs(60), Time::ZERO)
        .await
        .expect("acquire")
        .expect("expired");
    assert!(b.token > a.token);
    (a, b)
}

/// PostgreSQL only: checkpoints, projections and leases share one schema,
/// and a checkpoint save or projection commit is fenced (writing nothing,
/// read model included) as soon as the lease table holds a higher token
/// for its name, before the new holder has claimed. With `PgLeaseStore`
/// this is how a frozen holder's commit is fenced, its open transaction
/// making the new holder's claim wait. (The memory checkpoint store and read model know nothing of
/// leases: there the old holder is fenced from the new holder's claim on,
/// which is all the traits promise.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_lease_token_fences_saves_and_commits_before_the_new_holder_claims() {
    let Some(store) = eventcore_tests::postgres::fresh_store("sub_lease_fence").await else {
        return;
    };
    let (checkpoints, projections, leases) = (
        PgCheckpointStore::new(&store),
        PgProjectionStore::new(&store),
        PgLeaseStore::new(&store),
    );

    let (a, b) = take_over(&leases, "audit").await;
    checkpoints.claim("audit", a.token).await.expect("claim");
    // (claimed after the takeover only to have a checkpoint row to save to)
    let save = checkpoints.save("audit", a.token, GlobalPosition::new(9)).await;
    assert!(matches!(save, Err(CheckpointError::Fenced { .. })), "{save:?}");
    assert_eq!(
        checkpoints.claim("audit", b.token).await.expect("claim"),
        GlobalPosition::START
    );

    let table = format!("\"{}\".lease_fence_model", store.options().schema);
    sqlx::query(&format!("CREATE TABLE {table} (key text PRIMARY KEY)"))
        .execute(store.pool())
        .await
        .expect("read model table");
    let (a, b) = take_over(&leases, "balances").await;
    projections.claim("balances", a.token).await.expect("claim");
    let mut tx = projections.begin("balances", a.token).await.expect("begin");
    sqlx::query(&format!("INSERT INTO {table} (key) VALUES ('stale')"))
        .execute(&mut *tx)
        .await
        .expect("a read-model write");
    let commit = projections.commit(tx, GlobalPosition::new(9)).await;
    assert!(matches!(commit, Err(CheckpointError::Fenced { .. })), "{commit:?}");
    let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(store.pool())
        .await
        .expect("count");
    assert_eq!(rows, 0, "the fenced commit wrote nothing to the read model");
    assert_eq!(
        projections.claim("balances", b.token).await.expect("claim"),
        GlobalPosition::START
    );
    let _ = store.drop_schema().await;
}
