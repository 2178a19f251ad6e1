//! # eventcore-postgres
//!
//! The PostgreSQL store for EventCore, on sqlx and tokio. It answers the
//! store contract exactly as the in-memory store does (the same conformance
//! suite runs against both) and adds what a production database needs:
//!
//! - **Migrations** embedded in the crate ([`PostgresStore::migrate`]), safe
//!   when several processes start at once, into a schema of your choice; an
//!   application role without DDL privileges verifies them instead
//!   ([`MigrationMode::Verify`], grants in [`APP_ROLE_GRANTS_SQL`]).
//! - **Atomic multi-stream append in one round trip**: one plain statement
//!   claims the command id, locks every stream head in one fixed order,
//!   checks every expected version, inserts the events and advances the
//!   heads — all or nothing, deadlock-free, idempotent by command id (a
//!   command id claimed before is answered through the `append()` function,
//!   which finds the stored receipt). Group commit sends many appends as one
//!   call of `append_batch()`.
//! - **Gap-safe global order without a global write lock**: a position is
//!   `(transaction id << 20) | index`, and readers only return events of
//!   transactions older than the oldest one still running, so a reader that
//!   has seen position `p` never later sees a new event below `p`.
//! - **Bounded operations** (pool, connect, statement and operation
//!   timeouts) and PostgreSQL errors mapped to the contract's kinds, with
//!   the sqlx error as the source.
//!
//! ## Features
//!
//! | feature | default | adds |
//! |---|---|---|
//! | `subscriptions` | on | `PgCheckpointStore`, `PgDeadLetterStore`, the LISTEN/NOTIFY wake-ups (`PgNotifier`) and `migrate_subscriptions` |
//! | `leases` | on | `PgLeaseStore`, for competing subscription runners (implies `subscriptions`) |
//! | `projections` | on | `PgProjectionStore` and `PgTransaction`: exactly-once read models (implies `subscriptions`) |
//! | `binary-codec` | off | MessagePack payloads in a `bytea` column (`PostgresOptions::codec`) |
//!
//! With `default-features = false` the crate is the event store and the
//! snapshot store alone. The schema does not depend on the features:
//! [`PostgresStore::migrate`] always creates every table, so processes
//! built with different features share one database.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use eventcore_postgres::{PostgresOptions, PostgresStore};
//! use eventcore_store::EventStore;
//!
//! let store = PostgresStore::connect_with(
//!     PostgresOptions::new("postgres://postgres@127.0.0.1:5432/postgres").schema("bank"),
//! )
//! .await?;
//! store.migrate().await?;
//! // Hand it to a driver, e.g. `eventcore_tokio::Executor::new(store)`.
//! fn run_commands_against(_store: impl EventStore) {}
//! run_commands_against(store);
//! # Ok(()) }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]
// The driver legitimately uses the clock (timeouts); it is not simulated.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod append;
mod batch;
#[cfg(feature = "subscriptions")]
mod checkpoint;
#[cfg(feature = "subscriptions")]
mod dead_letter;
mod error;
mod inspect;
#[cfg(feature = "leases")]
mod lease;
pub mod metrics;
mod options;
mod privileges;
#[cfg(feature = "projections")]
mod projection;
mod read;
mod retention;
mod schema;
mod snapshot;
mod sql;
mod store;
#[cfg(feature = "subscriptions")]
mod subscription;
mod tables;

#[cfg(feature = "subscriptions")]
pub use checkpoint::{CheckpointState, PgCheckpointStore};
#[cfg(feature = "subscriptions")]
pub use dead_letter::PgDeadLetterStore;
pub use inspect::LogHead;
#[cfg(feature = "leases")]
pub use lease::{LeaseState, PgLeaseStore};
pub use options::{
    MigrationMode, PostgresOptions, SetupError, SslMode, MAX_EVENTS_PER_TRANSACTION, MAX_SCHEMA_NAME_BYTES,
};
pub use privileges::{app_role_grants, APP_ROLE_GRANTS_SQL};
#[cfg(feature = "projections")]
pub use projection::{PgProjectionStore, PgTransaction};
pub use snapshot::{PgSnapshotStore, ViewSnapshots};
pub use store::{Health, PostgresStore};
#[cfg(feature = "subscriptions")]
pub use subscription::{migrate_subscriptions, PgNotifier, NOTIFY_CHANNEL};

#[doc(hidden)]
pub mod fuzzing {
    //! Not part of the API: crate-private parsers exposed for the fuzz
    //! targets in `fuzz/` (`postgres_conflict_detail`). They may change or
    //! go away in any release.

    use eventcore::{AppendRequest, Conflict};

    /// The one parser of an `EV001` (version conflict) DETAIL,
    /// `"<1-based stream index> <actual version>"`, against the append it
    /// answers; `None` when the detail does not name one of its streams.
    pub fn conflict(request: &AppendRequest, detail: &str) -> Option<Conflict> {
        crate::error::conflict(request, detail)
    }
}
