//! PostgreSQL only: the pool settings of `PostgresOptions` reach the pool
//! the store builds, a store on the application's pool
//! (`PostgresStore::from_pool`) keeps that pool and its settings, and the
//! store's per-connection settings (`PostgresOptions::connect_options`)
//! reach the server.

use eventcore::ExpectedVersion;
use eventcore_postgres::{PostgresOptions, PostgresStore};
use eventcore_tests::conformance::{append_to, read, stream};
use eventcore_tests::postgres::{fresh_store_with, options};
use eventcore_tokio::EventStore;
use sqlx::postgres::PgPoolOptions;
use std::time::Duration;

/// The server's `statement_timeout` on a connection of `store`'s pool.
async fn statement_timeout(store: &PostgresStore) -> String {
    sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(store.pool())
        .await
        .expect("SHOW answers")
}

#[tokio::test]
async fn every_pool_setting_reaches_the_pool() {
    let Some(store) = fresh_store_with(
        options("pool_settings")
            .max_connections(5)
            .min_connections(2)
            .acquire_timeout(Duration::from_millis(750))
            .idle_timeout(Some(Duration::from_secs(42)))
            .max_lifetime(Some(Duration::from_secs(600))),
    )
    .await
    else {
        return;
    };
    let pool = store.pool().options();
    assert_eq!(pool.get_max_connections(), 5);
    assert_eq!(pool.get_min_connections(), 2);
    assert_eq!(pool.get_acquire_timeout(), Duration::from_millis(750));
    assert_eq!(pool.get_idle_timeout(), Some(Duration::from_secs(42)));
    assert_eq!(pool.get_max_lifetime(), Some(Duration::from_secs(600)));

    // `None` means never, and reaches the pool as such.
    let Some(forever) = fresh_store_with(options("pool_forever").idle_timeout(None).max_lifetime(None)).await else {
        return;
    };
    assert_eq!(forever.pool().options().get_idle_timeout(), None);
    assert_eq!(forever.pool().options().get_max_lifetime(), None);
    let _ = store.drop_schema().await;
    let _ = forever.drop_schema().await;
}

#[tokio::test]
async fn the_defaults_are_what_the_documentation_says() {
    let options = PostgresOptions::new("postgres://localhost/db");
    let pool = options.pool_options();
    assert_eq!(pool.get_max_connections(), 10);
    assert_eq!(pool.get_min_connections(), 0);
    assert_eq!(pool.get_acquire_timeout(), Duration::from_secs(2));
    assert_eq!(pool.get_idle_timeout(), Some(Duration::from_secs(600)));
    assert_eq!(pool.get_max_lifetime(), Some(Duration::from_secs(1800)));
    assert!(matches!(
        options.min_connections(11).validate(),
        Err(eventcore_postgres::SetupError::InvalidOption {
            option: "min_connections",
            ..
        })
    ));
}

#[tokio::test]
async fn a_connected_store_sets_its_statement_timeout_on_every_connection() {
    let Some(store) = fresh_store_with(options("pool_timeout").statement_timeout(Duration::from_millis(1234))).await
    else {
        return;
    };
    assert_eq!(statement_timeout(&store).await, "1234ms");
    let _ = store.drop_schema().await;
}

#[tokio::test]
async fn a_store_on_the_applications_pool_keeps_that_pool_and_works() {
    // Probe (and skip) as every PostgreSQL test does.
    let Some(probe) = fresh_store_with(options("from_pool_probe")).await else {
        return;
    };
    let _ = probe.drop_schema().await;

    let options = options("from_pool").statement_timeout(Duration::from_millis(1500));
    // The application's pool, built from the store's per-connection
    // settings (as `from_pool`'s documentation recommends), with a size of
    // its own.
    let pool = PgPoolOptions::new()
        .max_connections(3)
        .connect_with(options.connect_options().expect("valid URL"))
        .await
        .expect("the application's pool connects");
    let store = PostgresStore::from_pool(pool.clone(), options.clone()).expect("valid options");
    assert_eq!(
        store.pool().options().get_max_connections(),
        3,
        "the pool's own size, not the options'"
    );
    assert_eq!(
        statement_timeout(&store).await,
        "1500ms",
        "connect_options carries the statement timeout"
    );
    store
        .migrate()
        .await
        .expect("migrate on a connection of the pool's options");
    eventcore_postgres::migrate_subscriptions(&store)
        .await
        .expect("the notify trigger");
    // The notifier opens its own connection with the pool's connect options.
    let notifier = eventcore_postgres::PgNotifier::start(&store)
        .await
        .expect("the notifier connects");
    let mut woken = notifier.subscribe();
    let account = stream("from-pool");
    store
        .append(&append_to(&account, ExpectedVersion::NoStream, 2, 7))
        .await
        .expect("append");
    tokio::time::timeout(Duration::from_secs(10), woken.changed())
        .await
        .expect("notified of the append within 10 s")
        .expect("the notifier is running");
    assert_eq!(read(&store, std::slice::from_ref(&account)).await[0].events.len(), 2);
    // The application's queries share the pool.
    let events: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{}\".events", options.schema))
        .fetch_one(&pool)
        .await
        .expect("the application's own query");
    assert_eq!(events, 2);

    // A pool built without the store's settings: the server's default
    // statement timeout (none) applies, as `from_pool` documents.
    let plain = PgPoolOptions::new()
        .max_connections(1)
        .connect(&eventcore_tests::postgres::database_url())
        .await
        .expect("a plain pool connects");
    let on_plain = PostgresStore::from_pool(plain, options).expect("valid options");
    assert_eq!(statement_timeout(&on_plain).await, "0");
    assert_eq!(
        read(&on_plain, std::slice::from_ref(&account)).await[0].events.len(),
        2,
        "the same schema, through another pool"
    );
    let _ = store.drop_schema().await;
}
