//! Events that evolve, end to end on PostgreSQL: the first release of an
//! order module ([`first_release`]) writes events under bare type names at
//! schema version 1; the current release ([`current`]) namespaces its types,
//! renames its variants, splits a field, renames another and adds a
//! required one — and still reads every old event, through commands, a
//! projection and views, while the old release's view snapshots are left
//! unused because the view's version changed.
//!
//! [`run`] plays both releases against one store and reports what it saw;
//! `cargo run --example evolution` prints it, `examples/tests/evolution.rs`
//! checks it. The path is written up in `docs/evolving-events.md`.

pub mod current;
pub mod first_release;
mod story;

pub use story::{run, Report, StoryError, CUSTOMERS, OLD_ORDERS};

/// Both releases snapshot `Purchases` every this many events: small, so
/// the first release leaves snapshots behind.
pub const SNAPSHOT_EVERY: u64 = 4;
