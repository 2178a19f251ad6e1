//! # eventcore-tokio
//!
//! The tokio driver for EventCore: the async [`EventStore`] trait, the
//! [`Executor`] that runs [`eventcore::CommandMachine`]s against a store with
//! real time, timeouts and backoff, and [`MemoryEventStore`], the in-memory
//! store for services and tests.

mod cache;
mod clock;
mod executor;
mod memory;
mod notify;
mod store;
mod sync;

pub use cache::StreamCache;
pub use clock::Clock;
pub use executor::Executor;
pub use memory::MemoryEventStore;
pub use notify::{HeadWatch, WaitPast};
pub use store::EventStore;
