//! One migrator for every table: `PostgresStore::migrate` creates the event
//! store, snapshots and the subscription tables, and adopts subscription
//! tables an earlier release created with its own migrator.

use eventcore::GlobalPosition;
use eventcore_postgres::{migrate_subscriptions, PgCheckpointStore};
use eventcore_tests::postgres::fresh_store;
use eventcore_tokio::{CheckpointStore, FencingToken};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_creates_the_subscription_tables_with_every_other_table() {
    let Some(store) = fresh_store("migrate_all").await else {
        return;
    };
    let checkpoints = PgCheckpointStore::new(&store);
    let token = FencingToken::new(1);
    checkpoints
        .claim("projection-a", token)
        .await
        .expect("the checkpoint table exists after migrate() alone");
    checkpoints
        .save("projection-a", token, GlobalPosition::new(7))
        .await
        .expect("save");
    assert_eq!(
        checkpoints.get("projection-a").await.expect("get"),
        Some(GlobalPosition::new(7))
    );
    let _ = store.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_tables_made_by_the_old_migrator_are_adopted_with_their_rows() {
    let Some(store) = fresh_store("migrate_adopt").await else {
        return;
    };
    let schema = store.options().schema.clone();
    let checkpoints = PgCheckpointStore::new(&store);
    let token = FencingToken::new(1);
    checkpoints.claim("projection-a", token).await.expect("claim");
    checkpoints
        .save("projection-a", token, GlobalPosition::new(42))
        .await
        .expect("save");
    // A schema whose subscription tables came from the earlier, separate
    // migrator: the tables and rows exist, migration 4 is not recorded.
    sqlx::query(&format!("DELETE FROM \"{schema}\"._sqlx_migrations WHERE version = 4"))
        .execute(store.pool())
        .await
        .expect("forget migration 4");
    store.migrate().await.expect("migration 4 adopts the existing tables");
    migrate_subscriptions(&store)
        .await
        .expect("and installs the trigger, twice");
    migrate_subscriptions(&store).await.expect("idempotent");
    assert_eq!(
        checkpoints.get("projection-a").await.expect("get"),
        Some(GlobalPosition::new(42)),
        "rows kept"
    );
    let _ = store.drop_schema().await;
}
