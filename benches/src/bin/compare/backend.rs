//! Which store the EventCore side runs on.

use crate::{Config, Row};
use eventcore::Codec;
use eventcore_postgres::{PgSnapshotStore, PostgresOptions, PostgresStore};
use eventcore_tokio::{EventStore, MemoryEventStore, MemorySnapshotStore, SnapshotStore};
use std::future::Future;

/// The store used when `--store` is not given.
pub const DEFAULT: &str = "postgres";

/// Makes fresh stores for the EventCore side.
pub trait Backend {
    /// The store.
    type Store: EventStore + Clone;

    /// A fresh, empty store in `schema` with up to `connections` connections.
    fn fresh(&self, schema: &str, connections: u32) -> impl Future<Output = Result<Self::Store, String>>;

    /// Where the executor persists view snapshots next to `store`.
    type Snapshots: SnapshotStore + Clone;

    /// The snapshot store of `store` (PostgreSQL: its `snapshots` table).
    fn snapshots(&self, store: &Self::Store) -> Self::Snapshots;

    /// Snapshot rows the store's own counter says its loads returned, if it
    /// keeps one (`PgSnapshotStore::loads`).
    fn rows_loaded(snapshots: &Self::Snapshots) -> Option<u64>;
}

/// The in-memory store (validates the harness; ratios mean nothing).
pub struct Memory {
    codec: Codec,
}

impl Backend for Memory {
    type Store = MemoryEventStore;

    async fn fresh(&self, _schema: &str, _connections: u32) -> Result<MemoryEventStore, String> {
        Ok(MemoryEventStore::new().with_codec(self.codec))
    }

    type Snapshots = MemorySnapshotStore;

    fn snapshots(&self, _store: &MemoryEventStore) -> MemorySnapshotStore {
        MemorySnapshotStore::new()
    }

    fn rows_loaded(_snapshots: &MemorySnapshotStore) -> Option<u64> {
        None
    }
}

/// `eventcore-postgres` on the same database as the raw floor, keeping
/// payloads in `codec`.
pub struct Postgres {
    url: String,
    codec: Codec,
}

impl Backend for Postgres {
    type Store = PostgresStore;

    async fn fresh(&self, schema: &str, connections: u32) -> Result<PostgresStore, String> {
        let options = PostgresOptions::new(&self.url)
            .schema(schema)
            .max_connections(connections)
            .codec(self.codec);
        let store = PostgresStore::connect_with(options).await.map_err(|e| e.to_string())?;
        store.drop_schema().await.map_err(|e| e.to_string())?;
        store.migrate().await.map_err(|e| e.to_string())?;
        Ok(store)
    }

    type Snapshots = PgSnapshotStore;

    fn snapshots(&self, store: &PostgresStore) -> PgSnapshotStore {
        PgSnapshotStore::new(store)
    }

    fn rows_loaded(snapshots: &PgSnapshotStore) -> Option<u64> {
        Some(snapshots.loads())
    }
}

/// Runs every workload on the store `cfg.store` names, once per codec of
/// `cfg.codecs`.
pub async fn run_with(cfg: &Config) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for &codec in &cfg.codecs {
        let more = match cfg.store.as_str() {
            "postgres" => {
                let url = cfg.url.clone();
                crate::run(cfg, &Postgres { url, codec }, codec).await?
            }
            "memory" => crate::run(cfg, &Memory { codec }, codec).await?,
            other => return Err(format!("unknown store {other}: use postgres or memory")),
        };
        rows.extend(more);
    }
    Ok(rows)
}
