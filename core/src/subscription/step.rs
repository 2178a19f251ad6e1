//! What the machine asks the driver to do: fetch, deliver a batch, save a
//! checkpoint, park, wait, or stop.

#[cfg(doc)]
use super::SubscriptionMachine;
use super::{PoisonEvent, SubscriptionError};
use crate::store::ReadAllRequest;
use crate::{GlobalPosition, RecordedEvent, RequestId, Time};

/// Events handed to the consumer, in global order.
///
/// ```
/// use eventcore::{Batch, GlobalPosition, RequestId};
/// let b = Batch { id: RequestId::new(3), events: vec![], checkpoint: GlobalPosition::new(9) };
/// assert_eq!(b.last_position(), None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Correlates [`SubscriptionMachine::on_handled`] with this batch.
    pub id: RequestId,
    /// The events, strictly increasing in position.
    pub events: Vec<RecordedEvent>,
    /// Once this batch is handled, every matching event up to here has been
    /// handled: the position to save (at or above the last event's; above
    /// it when filtered-out or parked events follow).
    pub checkpoint: GlobalPosition,
}

impl Batch {
    /// Position of the last event.
    pub fn last_position(&self) -> Option<GlobalPosition> {
        self.events.last().map(|e| e.position)
    }
}

/// What the driver should do next.
///
/// ```
/// use eventcore::*;
/// let mut sub = SubscriptionMachine::new(GlobalPosition::START, EventFilter::all(), SubscriptionPolicy::default(), Time::ZERO, 1);
/// match sub.poll() {
///     SubscriptionStep::Fetch { request, .. } => assert_eq!(request.after, GlobalPosition::START),
///     other => panic!("a new subscription fetches first, not {other:?}"),
/// }
/// ```
#[derive(Debug)]
pub enum SubscriptionStep {
    /// Read the global log and report the answer with
    /// [`SubscriptionMachine::on_fetched`].
    Fetch {
        /// Correlates the answer.
        id: RequestId,
        /// When the machine stops waiting for the answer (a fetch timeout,
        /// then a retry).
        deadline: Time,
        /// The read.
        request: ReadAllRequest,
    },
    /// Hand these events to the consumer and report with
    /// [`SubscriptionMachine::on_handled`].
    Deliver(Batch),
    /// Persist the checkpoint and report with
    /// [`SubscriptionMachine::on_checkpoint_saved`].
    SaveCheckpoint {
        /// Correlates the answer.
        id: RequestId,
        /// Every matching event up to here has been handled.
        position: GlobalPosition,
    },
    /// Store `event` in the dead-letter store and report with
    /// [`SubscriptionMachine::on_parked`].
    Park {
        /// Correlates the answer.
        id: RequestId,
        /// The event to park.
        event: RecordedEvent,
        /// Why it is poison.
        poison: PoisonEvent,
    },
    /// Nothing to start now. Call [`SubscriptionMachine::on_wake`] at
    /// `until` ([`Time::MAX`]: only an answer or a notification will do)
    /// unless an answer or a notification comes first.
    Wait {
        /// When to wake the machine.
        until: Time,
    },
    /// The subscription ended: `Ok` with the last saved checkpoint after a
    /// shutdown, or the error that stopped it. Returned exactly once.
    Stopped(Result<GlobalPosition, SubscriptionError>),
    /// The end was already returned.
    Finished,
}
