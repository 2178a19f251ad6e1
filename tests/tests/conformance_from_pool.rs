//! The store conformance suite, whole, against `PostgresStore::from_pool`:
//! a store on a pool the application built itself, with sqlx's own
//! defaults (no statement timeout, no `application_name`, no settings of
//! the store's), each case in its own freshly created schema; once with
//! each payload codec.
//!
//! Needs `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`);
//! without a reachable database each case prints a skip notice and passes,
//! unless `CI=true`, where it fails.

use eventcore::Codec;
use eventcore_postgres::PostgresStore;
use eventcore_tests::postgres::{database_url, options, PostgresFactory};
use eventcore_tests::StoreFactory;
use sqlx::postgres::PgPoolOptions;

/// Stores on pools of the application's: one plain pool per store (cases
/// run in parallel, each on its own schema).
#[derive(Clone, Copy, Debug)]
struct FromPool {
    codec: Codec,
}

impl FromPool {
    /// The factory if the database answers (the same probe, and skip rule,
    /// as the connected stores' suite), its stores keeping payloads in
    /// `codec`.
    async fn available(codec: Codec) -> Option<FromPool> {
        PostgresFactory::available().await.map(|_| FromPool { codec })
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
        let store = PostgresStore::from_pool(pool, options("from_pool").codec(self.codec)).expect("valid options");
        store
            .migrate()
            .await
            .expect("migrating through a connection of the pool's options");
        store
    }
}

eventcore_tests::conformance_suite!(match FromPool::available(Codec::Json).await {
    Some(factory) => factory,
    None => return,
});

/// The same cases on stores keeping payloads in MessagePack (`bytea`).
mod messagepack {
    use super::FromPool;
    use eventcore::Codec;

    eventcore_tests::conformance_suite!(eventcore_tests::Encoded(
        match FromPool::available(Codec::MessagePack).await {
            Some(factory) => factory,
            None => return,
        }
    ));
}
