//! The lease machine: one instance's hold on a subscription's lease, as a
//! value that is fed lease-store answers and the time, and asked what to do.
//!
//! ```text
//! new ─► Acquire ─► on_acquired ─┬─ Some(token) ─► Held ─► Wait(renew_at) ─► Renew ─► on_renewed ─┐
//!          ▲                     ├─ None (someone else holds it) ─► Wait(standby retry)           │
//!          │                     └─ Transient ─► Wait(jittered backoff)                           │
//!          └────────────────────────────────────────────┘                                         │
//!   Held ◄─ Ok ─────────────────────────────────────────────────────────────────────────────────────┤
//!   Held ◄─ Transient, still valid: retry at a quarter of the renewal interval ────────────────────┤
//!   Lost ◄─ Lost, or the validity passed by the machine's clock ───────────────────────────────────┘
//! ```
//!
//! Like the other machines it never blocks, sleeps or reads a clock: inputs
//! carry `now`, timers are deadlines returned in [`LeaseStep::Wait`], every
//! request carries a [`RequestId`] and a deadline, and an answer to anything
//! but the request in flight is ignored.
//!
//! The machine measures validity on **its own clock**: a tenure is valid
//! until the time the request that won or extended it was *sent*, plus the
//! TTL. The store cannot have granted the lease before the request was sent,
//! so the store's own expiry (on the store's clock, perhaps skewed) is never
//! earlier than that, and a holder that believes it holds the lease really
//! does — unless its clock stalls or the process pauses, which is what the
//! fencing token is for: every write of the tenure carries
//! [`LeaseMachine::token`], and stores refuse tokens older than the newest.
//!
//! The lease store and its value types live outside the core; drivers
//! convert their answers into [`LeaseToken`] and [`LeaseFailure`].

mod machine;
mod policy;
mod step;
#[cfg(test)]
mod tests;

pub use machine::LeaseMachine;
pub use policy::LeasePolicy;
pub use step::{LeaseFailure, LeaseStep, LeaseToken};
