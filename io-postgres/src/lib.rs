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

// The driver legitimately uses the clock (timeouts); it is not simulated.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod append;
mod batch;
mod checkpoint;
mod dead_letter;
mod error;
mod inspect;
mod lease;
pub mod metrics;
mod options;
mod privileges;
mod read;
mod schema;
mod snapshot;
mod sql;
mod store;
mod subscription;

pub use checkpoint::{CheckpointState, PgCheckpointStore, PgProjectionStore, PgTransaction};
pub use dead_letter::PgDeadLetterStore;
pub use inspect::LogHead;
pub use lease::{LeaseState, PgLeaseStore};
pub use options::{MigrationMode, PostgresOptions, SetupError, MAX_EVENTS_PER_TRANSACTION, MAX_SCHEMA_NAME_BYTES};
pub use privileges::{app_role_grants, APP_ROLE_GRANTS_SQL};
pub use snapshot::{PgSnapshotStore, ViewSnapshots};
pub use store::{Health, PostgresStore};
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
