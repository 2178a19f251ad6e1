//! The subscription machine: one consumer of the global log as a value that
//! is fed store answers and consumer acknowledgements and asked for its next
//! step.
//!
//! ```text
//!            ┌──────────── full batch: fetch again at once ───────────┐
//! new ─► Fetch ─► on_fetched ─┤                                        │
//!            ▲                └─ short batch: caught up ─► Wait ───────┤
//!            │                     (until notified or poll interval)   │
//!            └─────────────────────────────────────────────────────────┘
//! buffer ─► Deliver ─► on_handled ─┬─ Ok ─► SaveCheckpoint ─► on_checkpoint_saved
//!                                  ├─ Transient ─► Wait(backoff) ─► Deliver again
//!                                  └─ Poison at p ─► isolate p ─► retry / Park / stop
//! ```
//!
//! Catch-up and live are one code path: a batch shorter than the limit means
//! the subscription has caught up, so it waits for a notification
//! ([`SubscriptionMachine::on_notified`]) or the poll interval, then fetches
//! again. Fetching runs ahead of the consumer into a bounded buffer (at most
//! [`SubscriptionPolicy::buffer_limit`] events), so a slow consumer slows its
//! subscription and memory does not grow.
//!
//! Like the command machine it never blocks, sleeps or reads a clock: inputs
//! carry `now`, timers are deadlines returned in [`SubscriptionStep::Wait`],
//! requests carry [`RequestId`]s and an answer to anything but the request in
//! flight is counted and ignored.
//!
//! Guarantees, whatever the driver and the store do:
//! - events reach the consumer in strictly increasing global order; an event
//!   at or below a position already handled is never delivered again in the
//!   same run (overlapping store pages are dropped and counted);
//! - the checkpoint requested is always a position through which every
//!   matching event has been handled or parked, so resuming from it never
//!   skips an event (at-least-once; exactly-once when the consumer commits
//!   the checkpoint with its own writes, [`CheckpointMode::WithBatch`]);
//! - events a retention run removed before they were read are never skipped
//!   silently: the store reports each removed range, and the machine counts
//!   it and hands it to the driver ([`SubscriptionMachine::take_skipped`]);
//! - a poison event is never dropped silently: it is retried, parked through
//!   [`SubscriptionStep::Park`] or it stops the subscription with its
//!   position and stream.

mod consumer;
mod errors;
mod fetch;
mod machine;
mod poison;
mod policy;
mod stats;
mod step;
#[cfg(test)]
mod tests;

pub use errors::{ConsumerError, HandleError, PoisonCause, PoisonEvent, SubscriptionError};
pub use machine::SubscriptionMachine;
pub use policy::{CheckpointMode, PoisonAction, PoisonPolicy, SubscriptionPolicy};
pub use stats::SubscriptionStats;
pub use step::{Batch, SubscriptionStep};
