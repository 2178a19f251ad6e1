//! # eventcore-chaos
//!
//! The chaos suite: EventCore's real stack — the tokio [`Executor`] and the
//! PostgreSQL store — under real faults, judged by the simulator's
//! invariant checker.
//!
//! - [`proxy`]: a fault-injecting TCP proxy on loopback that speaks enough
//!   of the PostgreSQL wire protocol to reset a connection right after a
//!   commit and before its acknowledgement, mid-transaction, or anywhere;
//!   to hold connections half-open; to add latency, jitter and slow reads.
//! - [`faults`]: fault kinds, the seeded schedule, the counters of what was
//!   actually injected.
//! - [`record`]: the outcome recorder, in the simulator's history format.
//! - [`ledger`]: the workload's domain (the examples' bank plus a discovery
//!   command) and its domain model for the checker.
//! - [`workload`]: the harness as a library — a user's commands and
//!   invariants ([`workload::ChaosWorkload`]) run under the same faults
//!   with [`run::run_workload`], from an ordinary `#[tokio::test]`.
//! - [`soak`]: memory over time — executors with every cache, batching,
//!   subscriptions and a projection on PostgreSQL, resident memory and
//!   every bounded structure sampled each second (`src/bin/soak.rs`,
//!   `tests/soak.rs`, `docs/soak.md`).
//! - [`run`]: one run — workload, schedule, PostgreSQL-side faults
//!   (`pg_terminate_backend`, lock holds that make `lock_timeout` and
//!   `statement_timeout` fire, pool exhaustion), healing, read-back and
//!   checks.
//!
//! The test `tests/chaos.rs` runs a bounded budget; see the README's
//! Contributing section and ARCHITECTURE.md ("Chaos and loom").
//!
//! [`Executor`]: eventcore_tokio::Executor
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // real clocks, sockets and hash maps are the point here

pub mod faults;
pub mod ledger;
pub mod private_postgres;
pub mod proxy;
pub mod record;
pub mod run;
pub mod soak;
pub mod workload;
