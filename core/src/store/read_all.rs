//! Reading the global log: a page of events after a position, filtered,
//! and how far the answer is complete.

use super::RemovedRange;
use crate::{EventType, GlobalPosition, RecordedEvent, StreamId};
use std::num::NonZeroU32;

/// Read the global log after a position.
///
/// ```
/// use eventcore::*;
/// use std::num::NonZeroU32;
/// let request = ReadAllRequest {
///     after: GlobalPosition::START,
///     limit: NonZeroU32::new(500).expect("non-zero"),
///     filter: EventFilter::all().with_stream_prefix("account-"),
/// };
/// assert_eq!(request.limit.get(), 500);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadAllRequest {
    /// Return events with a position strictly greater than this.
    pub after: GlobalPosition,
    /// At most this many events, counted after the filter is applied.
    pub limit: NonZeroU32,
    /// Which events to return.
    pub filter: EventFilter,
}

/// The answer to a [`ReadAllRequest`].
///
/// ```
/// use eventcore::*;
/// // Nothing matched, yet the reader may move its checkpoint to 42.
/// let answer = ReadAllResponse { events: vec![], complete_through: GlobalPosition::new(42), removed: vec![] };
/// assert!(answer.events.is_empty());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadAllResponse {
    /// Matching events in global order.
    pub events: Vec<RecordedEvent>,
    /// Every matching event with a position in `(after, complete_through]`
    /// is in `events`, and none will ever appear later. A subscriber may
    /// checkpoint here even when `events` is empty (all filtered out).
    pub complete_through: GlobalPosition,
    /// Ranges a retention run removed whose last position lies in
    /// `(after, complete_through]` (and whose stream passes the filter's
    /// stream conditions), in order of their last position: a reader that
    /// walks the log page by page is told of each range exactly once, when
    /// it moves past its end.
    pub removed: Vec<RemovedRange>,
}

/// Which events a global read returns. Conditions combine with AND; an empty
/// list means "no condition".
///
/// ```
/// use eventcore::*;
/// let f = EventFilter::all().with_stream_prefix("account-").with_event_types([EventType::new("Deposited")?]);
/// # Ok::<(), InvalidEventType>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only these streams (empty: any stream).
    pub streams: Vec<StreamId>,
    /// Only streams whose id starts with this.
    pub stream_prefix: Option<String>,
    /// Only these event types (empty: any type).
    pub event_types: Vec<EventType>,
}

impl EventFilter {
    /// Matches every event.
    pub fn all() -> Self {
        EventFilter::default()
    }

    /// Restricts to the given streams.
    pub fn with_streams(mut self, streams: impl IntoIterator<Item = StreamId>) -> Self {
        self.streams = streams.into_iter().collect();
        self
    }

    /// Matches the events `E` can decode: the stored types of
    /// [`Event::event_types`](crate::Event::event_types), so that a reader
    /// of `E` never sees another module's events (every event when `E`
    /// gives no list). Narrow it further with the other methods.
    ///
    /// ```
    /// use eventcore::{Event, EventFilter};
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// enum OrderEvent { Placed, Shipped }
    /// impl Event for OrderEvent { const NAMESPACE: &'static str = "order"; }
    /// let filter = EventFilter::decodable_by::<OrderEvent>().with_stream_prefix("order-");
    /// assert_eq!(filter.event_types.len(), 2);
    /// assert_eq!(filter.stream_prefix.as_deref(), Some("order-"));
    /// ```
    pub fn decodable_by<E: crate::Event>() -> Self {
        match E::event_types() {
            Some(types) => EventFilter::all().with_event_types(types),
            None => EventFilter::all(),
        }
    }

    /// Restricts to streams whose id starts with `prefix`.
    pub fn with_stream_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.stream_prefix = Some(prefix.into());
        self
    }

    /// Restricts to the given event types.
    pub fn with_event_types(mut self, types: impl IntoIterator<Item = EventType>) -> Self {
        self.event_types = types.into_iter().collect();
        self
    }

    /// Whether events of `stream` can pass the filter (its stream
    /// conditions; the event types are not looked at). A removed range is
    /// reported to a reader when its stream can.
    pub fn matches_stream(&self, stream: &StreamId) -> bool {
        (self.streams.is_empty() || self.streams.contains(stream))
            && self
                .stream_prefix
                .as_deref()
                .is_none_or(|p| stream.as_str().starts_with(p))
    }

    /// Whether `event` passes the filter.
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        (self.streams.is_empty() || self.streams.contains(&event.stream_id))
            && self
                .stream_prefix
                .as_deref()
                .is_none_or(|p| event.stream_id.as_str().starts_with(p))
            && (self.event_types.is_empty() || self.event_types.contains(&event.event_type))
    }
}
