//! The store conformance suite, whole, against `PostgresStore::from_pool`:
//! a store on a pool the application built itself, with sqlx's own
//! defaults (no statement timeout, no `application_name`, no settings of
//! the store's), each case in its own freshly created schema.
//!
//! Needs `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`);
//! without a reachable database each case prints a skip notice and passes,
//! unless `CI=true`, where it fails.

use eventcore_postgres::PostgresStore;
use eventcore_tests::postgres::{database_url, options, PostgresFactory};
use eventcore_tests::StoreFactory;
use sqlx::postgres::PgPoolOptions;

/// Stores on pools of the application's: one plain pool per store (cases
/// run in parallel, each on its own schema).
#[derive(Clone, Copy, Debug)]
struct FromPool;

impl FromPool {
    /// The factory if the database answers (the same probe, and skip rule,
    /// as the connected stores' suite).
    async fn available() -> Option<FromPool> {
        PostgresFactory::available().await.map(|_| FromPool)
    }
}

impl StoreFactory for FromPool {
    type Store = PostgresStore;

    async fn fresh(&self) -> PostgresStore {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(&database_url())
            .await
            .expect("the application's pool connects");
        let store = PostgresStore::from_pool(pool, options("from_pool")).expect("valid options");
        store
            .migrate()
            .await
            .expect("migrating through a connection of the pool's options");
        store
    }
}

eventcore_tests::conformance_suite!(match FromPool::available().await {
    Some(factory) => factory,
    None => return,
});
