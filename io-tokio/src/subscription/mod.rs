//! Runs [`SubscriptionMachine`]s on tokio: fetches from an [`EventStore`],
//! hands batches to a [`Sink`] (an at-least-once [`Subscriber`] with a
//! [`CheckpointStore`], or a transactional [`crate::Projection`]), parks poison
//! events, holds a lease, and shuts down gracefully.
//!
//! One task drives everything. The fetch in flight and the consumer's work
//! in flight are two futures polled side by side, so the next batch is read
//! while the current one is handled; the machine bounds how far fetching
//! runs ahead ([`SubscriptionPolicy::buffer_limit`]), so a slow consumer
//! slows its subscription instead of growing memory.

mod consume;
mod dead_letters;
mod lease;
mod runner;
mod sink;
mod status;

pub use dead_letters::ReplayReport;
pub use runner::Runner;
pub use sink::{poison, Sink, Subscriber, SubscriberSink};
pub use status::{RunError, RunSummary, RunnerState, RunnerStatus};
