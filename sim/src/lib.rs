//! # eventcore-sim
//!
//! The deterministic simulator for EventCore, in the spirit of
//! FoundationDB's simulation and TigerBeetle's VOPR: the real
//! [`eventcore::CommandMachine`] and the real
//! [`eventcore_memory::MemoryStore`] run on one thread under a virtual
//! clock, a seeded scheduler and a fault layer; an invariant checker judges
//! the store after every step and the whole history at the end. Everything
//! random derives from one `u64` seed, so any failing run replays exactly:
//!
//! ```text
//! cargo run -p eventcore-sim --release -- --seed 42 --profile chaos
//! ```
//!
//! ```
//! use eventcore_sim::{run, Profile, SimConfig};
//! let mut config = SimConfig::new(7);
//! config.profile = Profile::Chaos;
//! let report = run(&config);
//! assert!(report.passed(), "{}", report.violations[0]);
//! ```
//!
//! Modules, one job each: [`rng`] (seeded streams), [`clock`] (virtual
//! time), [`queue`] (the scheduler's event queue), [`faults`] (the fault
//! menu and swarm selection), [`store`] (the store behind the fault layer,
//! and the canary), [`exec`] (type-erased executions: the actor extension
//! point), [`domain`] (bring your own commands and rules), [`workload`]
//! (the run's shape and the built-in bank, shop and customer domain),
//! [`personal`] (the model key store and the forgotten-data checks), [`probe`]
//! (what view decisions saw), [`history`] and [`check`]
//! (the recorded history and the reusable invariant checker), [`trace`],
//! [`coverage`], [`sweep`] (many seeds, failure files) and the private
//! world that ties them together.

pub mod actors;
pub mod check;
pub mod clock;
pub mod coverage;
pub mod domain;
pub mod exec;
pub mod faults;
pub mod harness;
pub mod history;
pub mod personal;
pub mod probe;
pub mod queue;
pub mod rng;
pub mod store;
pub mod sweep;
pub mod trace;
pub mod views;
pub mod workload;
mod world;

pub use domain::{Domain, DomainCommand, DomainProjection};
pub use faults::{FaultPlan, Profile};
pub use store::Canary;
pub use world::{run, run_with, RunReport, SimConfig, LIVENESS_BOUND};
