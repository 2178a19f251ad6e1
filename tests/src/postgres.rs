//! PostgreSQL test support: finding the database, and a [`StoreFactory`]
//! that gives every store its own freshly created schema so that cases run
//! in parallel.
//!
//! Tests find PostgreSQL through `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). When it cannot be reached
//! a test **fails** if `CI=true`, and otherwise prints a loud skip notice and
//! passes without checking anything, so that `cargo test` works on a machine
//! without PostgreSQL.

use crate::StoreFactory;
use eventcore::Codec;
use eventcore_postgres::{PostgresOptions, PostgresStore};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The URL used when `DATABASE_URL` is not set.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// `DATABASE_URL`, or [`DEFAULT_DATABASE_URL`].
pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned())
}

/// Whether this run must not skip (`CI=true`).
pub fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

// Wall-clock time only names test schemas; nothing simulated reads it.
#[allow(clippy::disallowed_methods)]
fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A schema name no other test uses: `ec_<label>_<unix seconds>_<pid>_<counter>`.
pub fn unique_schema(label: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let label: String = label
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .map(|c| c.to_ascii_lowercase())
        .take(20)
        .collect();
    format!("ec_{label}_{}_{}_{n}", unix_seconds(), std::process::id())
}

/// Options for a fresh schema on the test database.
///
/// `read_all` may wait up to 10 s for older in-flight transactions: tests
/// run in parallel on one cluster, and another test's migration or append
/// holds back every reader's horizon while it runs (see ARCHITECTURE.md,
/// "PostgreSQL global order"); a test that reads its own writes wants them.
/// That wait is a statement, so the statement and operation timeouts are
/// raised above it (15 s and 20 s; the defaults, 2 s and 4.5 s, are for
/// production, and are tested in `postgres_timeouts.rs`).
pub fn options(label: &str) -> PostgresOptions {
    PostgresOptions::new(database_url())
        .schema(unique_schema(label))
        .max_connections(4)
        .read_all_settle(std::time::Duration::from_secs(10))
        .statement_timeout(std::time::Duration::from_secs(15))
        .operation_timeout(std::time::Duration::from_secs(20))
}

/// Connects to a fresh, migrated schema; `None` (after a loud notice) when
/// the database cannot be reached and `CI` is not `true`.
///
/// # Panics
///
/// When the database cannot be reached and `CI=true`, or when migrating a
/// reachable database fails.
pub async fn fresh_store(label: &str) -> Option<PostgresStore> {
    fresh_store_with(options(label)).await
}

/// [`fresh_store`] with options of the caller's.
///
/// # Panics
///
/// As [`fresh_store`].
pub async fn fresh_store_with(options: PostgresOptions) -> Option<PostgresStore> {
    // Once one test found the server unreachable, the others skip at once.
    static UNREACHABLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if UNREACHABLE.load(Ordering::Relaxed) && !required() {
        return None;
    }
    let store = match PostgresStore::connect_with(options).await {
        Ok(store) => store,
        Err(error) => {
            UNREACHABLE.store(true, Ordering::Relaxed);
            let error = chain(&error);
            let url = database_url();
            if required() {
                panic!("CI=true but PostgreSQL at {url} cannot be reached: {error}");
            }
            // Straight to stderr: libtest captures `eprintln!` of passing
            // tests, and this notice must be seen.
            let _ = writeln!(
                std::io::stderr().lock(),
                "\n*** SKIPPED: PostgreSQL at {url} cannot be reached ({error}).\n\
                 *** PostgreSQL tests pass without checking anything. Start a server (bash .ci/start-postgres)\n\
                 *** or set DATABASE_URL; with CI=true this is a failure.\n"
            );
            return None;
        }
    };
    if let Err(error) = store.migrate().await {
        panic!("migrating schema {}: {}", store.options().schema, chain(&error));
    }
    Some(store)
}

/// `error` and its sources, `": "`-separated (a `SetupError` does not
/// repeat its source's message).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text = format!("{text}: {inner}");
        source = inner.source();
    }
    text
}

/// The conformance factory: every `fresh()` is a new schema, its store
/// keeping payloads in the factory's codec (JSON unless
/// [`PostgresFactory::with_codec`] says otherwise).
///
/// Use it through [`postgres_factory!`](crate::postgres_factory), which
/// returns early from the test (skipping it) when no database answers:
/// `conformance_suite!(postgres_factory!())`.
#[derive(Clone, Copy, Debug)]
pub struct PostgresFactory {
    codec: Codec,
}

impl PostgresFactory {
    /// The factory if the database answers; `None` (after a loud notice)
    /// when it cannot be reached and `CI` is not `true`.
    ///
    /// # Panics
    ///
    /// When the database cannot be reached and `CI=true`.
    pub async fn available() -> Option<PostgresFactory> {
        let store = fresh_store("probe").await?;
        let _ = store.drop_schema().await;
        drop_stale_schemas(&store).await;
        Some(PostgresFactory { codec: Codec::Json })
    }

    /// The same factory, its stores keeping payloads in `codec`
    /// (`PostgresOptions::codec`).
    ///
    /// ```
    /// # async fn demo() {
    /// use eventcore::Codec;
    /// use eventcore_tests::postgres::PostgresFactory;
    /// let Some(factory) = PostgresFactory::available().await else { return };
    /// let _binary = factory.with_codec(Codec::MessagePack);
    /// # }
    /// ```
    pub fn with_codec(self, codec: Codec) -> Self {
        PostgresFactory { codec }
    }
}

impl StoreFactory for PostgresFactory {
    type Store = PostgresStore;

    async fn fresh(&self) -> PostgresStore {
        let label = match self.codec {
            Codec::Json => "conformance",
            _ => "conformance_bin",
        };
        match fresh_store_with(options(label).codec(self.codec)).await {
            Some(store) => store,
            None => panic!("PostgreSQL became unreachable after the probe succeeded"),
        }
    }
}

/// Evaluates to a [`PostgresFactory`], or returns from the enclosing test
/// (after a loud skip notice) when PostgreSQL cannot be reached and `CI` is
/// not `true`.
#[macro_export]
macro_rules! postgres_factory {
    () => {
        match $crate::postgres::PostgresFactory::available().await {
            Some(factory) => factory,
            None => return,
        }
    };
}

/// Drops test schemas left behind by runs more than an hour old (their
/// creation time is in their name), once per process.
async fn drop_stale_schemas(store: &PostgresStore) {
    use sqlx::Row;
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if DONE.swap(true, Ordering::Relaxed) {
        return;
    }
    let Ok(rows) = sqlx::query("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'ec\\_%'")
        .fetch_all(store.pool())
        .await
    else {
        return;
    };
    let cutoff = unix_seconds().saturating_sub(3600);
    for row in rows {
        let Ok(name) = row.try_get::<String, _>(0) else {
            continue;
        };
        let created = name.split('_').rev().nth(2).and_then(|s| s.parse::<u64>().ok());
        if created.is_some_and(|t| t < cutoff) {
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                .execute(store.pool())
                .await;
        }
    }
}

/// Every row of every table in `store`'s schema, as text: what a test
/// searches for data that must not be stored in the clear.
///
/// # Panics
///
/// When the schema cannot be listed or a table cannot be read.
pub async fn schema_as_text(store: &PostgresStore) -> String {
    let schema = &store.options().schema;
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1")
            .bind(schema)
            .fetch_all(store.pool())
            .await
            .expect("tables listed");
    let mut dump = String::new();
    for table in tables {
        let rows: Option<String> = sqlx::query_scalar(&format!(
            "SELECT string_agg(t::text, E'\\n') FROM \"{schema}\".\"{table}\" t"
        ))
        .fetch_one(store.pool())
        .await
        .expect("table dumped");
        dump.push_str(&format!("-- {table}\n"));
        dump.push_str(&rows.unwrap_or_default());
        dump.push('\n');
    }
    dump
}
