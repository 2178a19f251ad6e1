//! Example domains for EventCore, shared by the runnable demos, the
//! integration tests and the benchmarks.

pub mod bank;
