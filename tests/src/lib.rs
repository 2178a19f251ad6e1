//! Cross-crate test support for EventCore.
//!
//! The heart of it is the **store conformance suite** ([`conformance`]): one
//! set of checks of the store contract that every store runs unchanged. A
//! store opts in with a [`StoreFactory`] and one macro call:
//!
//! ```
//! struct Memory;
//!
//! impl eventcore_tests::StoreFactory for Memory {
//!     type Store = eventcore_tokio::MemoryEventStore;
//!     async fn fresh(&self) -> Self::Store {
//!         eventcore_tokio::MemoryEventStore::new()
//!     }
//! }
//!
//! // In a test target this expands to one `#[tokio::test]` per case.
//! eventcore_tests::conformance_suite!(Memory);
//!
//! // Each case is also a plain async function, runnable on its own:
//! # fn main() {
//! tokio::runtime::Runtime::new()
//!     .expect("a runtime")
//!     .block_on(eventcore_tests::conformance::versions_start_at_one_and_are_contiguous(Memory));
//! # }
//! ```
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // off the simulated path: real clocks and hash maps are fine here (see clippy.toml)

pub mod conformance;
mod encoding;
pub mod postgres;
pub mod snapshot_conformance;
pub mod subscription_conformance;

pub use encoding::{Encoded, Encoding};
use eventcore_tokio::EventStore;
use std::future::Future;

/// Makes empty stores for the conformance suite. Every call must return a
/// store isolated from every other (its own schema or database), so that
/// cases run in parallel.
pub trait StoreFactory: Send + Sync + 'static {
    /// The store under test.
    type Store: EventStore + Clone;

    /// A fresh, empty, isolated store.
    fn fresh(&self) -> impl Future<Output = Self::Store> + Send;
}

/// The README's code blocks, compiled and run as doctests so the README
/// stays true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
