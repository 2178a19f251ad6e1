//! Example domains for EventCore, shared by the runnable demos, the
//! integration tests and the benchmarks.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // off the simulated path: real clocks and hash maps are fine here (see clippy.toml)

pub mod bank;
pub mod evolution;
pub mod lifecycle;
