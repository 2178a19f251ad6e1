//! Reads: seeding streams from cached events, checking a read response
//! against what was asked, and folding what it brought.

use super::CommandError;
use super::{CommandMachine, HeldEvent, Phase};
use crate::store::{Operation, ReadResponse, StoreError};
use crate::view::view_mut;
use crate::{Command, GlobalPosition, RecordedEvent, StreamId, StreamVersion};

impl<C: Command> CommandMachine<C> {
    /// Seeds a declared stream with events the driver already holds (a
    /// cache), so the first attempt can skip reading it. `events` must be the
    /// stream's events from version 1 on, contiguous; they may be stale — the
    /// append pins the stream to the last version given, so a stale prefix
    /// only costs a conflict and an incremental re-read of what is newer.
    ///
    /// Returns `false` and ignores the events when they cannot be used: the
    /// stream is not declared, the machine has already started, or the
    /// events are not a contiguous prefix of that stream. Decode failures end
    /// the execution exactly as they would after a read.
    ///
    /// ```
    /// # use eventcore::*;
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] enum Ev { Opened }
    /// # impl Event for Ev {}
    /// # #[derive(Debug, thiserror::Error)] #[error("never")] struct Never;
    /// # struct Touch(StreamId);
    /// # impl Command for Touch {
    /// #     type Event = Ev; type State = (); type Error = Never;
    /// #     fn streams(&self) -> Vec<StreamId> { vec![self.0.clone()] }
    /// #     fn apply(&self, _: &mut (), _: &StreamId, _: &Ev) {}
    /// #     fn decide(&self, _: &(), out: &mut Decision<Ev>) -> Result<(), Never> { out.emit(&self.0, Ev::Opened); Ok(()) }
    /// # }
    /// let stream = StreamId::new("s")?;
    /// let now = Time::from_unix_millis(1);
    /// let ctx = ExecutionContext::new(CommandId::v7(now, [0; 10]));
    /// let mut m = CommandMachine::new(Touch(stream.clone()), ExecutionPolicy::default(), ctx, now, 7);
    /// assert!(m.prime(&stream, &[])); // known to be empty
    /// let Step::Append { request: append, .. } = m.poll() else { panic!("no read needed") };
    /// assert_eq!(append.streams[0].expected, ExpectedVersion::NoStream);
    /// # Ok::<(), InvalidStreamId>(())
    /// ```
    pub fn prime<'a>(&mut self, stream: &StreamId, events: impl IntoIterator<Item = &'a RecordedEvent>) -> bool {
        if self.request_ids.issued() != 0 || !matches!(self.phase, Phase::ReadDue) {
            return false;
        }
        let Some(cursor) = self
            .cursors
            .iter()
            .position(|c| &c.stream == stream && c.read_to.is_none())
        else {
            return false;
        };
        let events: Vec<RecordedEvent> = events.into_iter().cloned().collect();
        let contiguous = events
            .iter()
            .enumerate()
            .all(|(i, e)| &e.stream_id == stream && e.version.get() == i as u64 + 1);
        if !contiguous {
            return false;
        }
        let head = StreamVersion::new(events.len() as u64);
        let slice = ReadResponse {
            streams: vec![crate::StreamSlice {
                stream: stream.clone(),
                head,
                events,
                deleted_at: None,
                removed_through: StreamVersion::NONE,
            }],
        };
        if let Err(error) = self.absorb(&[(cursor, StreamVersion::NONE)], slice) {
            self.finish(Err(error));
        }
        self.cursors[cursor].primed = true;
        true
    }

    /// Checks a read response against what was asked, decodes its events and
    /// folds them: into the stream's view for a view stream, into the held
    /// set (folded in global order before deciding) otherwise.
    pub(super) fn absorb(
        &mut self,
        asked: &[(usize, StreamVersion)],
        response: ReadResponse,
    ) -> Result<(), CommandError<C::Error>> {
        let violation = |message: String| {
            CommandError::Store(StoreError::ContractViolation {
                operation: Operation::Read,
                message,
            })
        };
        if response.streams.len() != asked.len() {
            return Err(violation(format!(
                "asked for {} streams, got {}",
                asked.len(),
                response.streams.len()
            )));
        }
        let last_applied = self.applied.checked_sub(1).map(|i| self.held[i].position);
        let mut needs_refold = false;
        for (&(cursor, after), slice) in asked.iter().zip(response.streams) {
            if slice.stream != self.cursors[cursor].stream {
                let stream = &self.cursors[cursor].stream;
                return Err(violation(format!("asked for `{stream}`, got `{}`", slice.stream)));
            }
            let stream = &slice.stream;
            // A snapshot is used only if the stream's event at its version is
            // the one it was taken at; that event is already in the view.
            let mut skip = 0;
            if let Some((at, id)) = self.cursors[cursor].verify.take() {
                let confirmed = slice
                    .events
                    .first()
                    .is_some_and(|e| e.stream_id == *stream && e.version == at && e.event_id == id);
                if !confirmed {
                    self.drop_view_start(cursor);
                    continue;
                }
                skip = 1;
            }
            if slice.head < after {
                if self.cursors[cursor].view.is_some() && self.cursors[cursor].base == after {
                    // The view this stream started from (a cache entry)
                    // claims versions the store does not have: drop it and
                    // fold the stream from the start.
                    self.drop_view_start(cursor);
                    continue;
                }
                return Err(violation(format!(
                    "stream `{stream}` went back from version {after} to {}",
                    slice.head
                )));
            }
            // Positions must rise along a stream, or the global-order fold
            // below would apply its events out of version order. A stream
            // folded in global order must also continue after the last
            // event held from it (earlier pages and reads).
            let mut previous = match self.cursors[cursor].view {
                _ if slice.events.is_empty() => GlobalPosition::START,
                Some(_) => GlobalPosition::START,
                // `held` is in global order after every absorb, so the last
                // event held from this stream is its highest position.
                None => self
                    .held
                    .iter()
                    .rev()
                    .find(|h| h.cursor == cursor)
                    .map_or(GlobalPosition::START, |h| h.position),
            };
            // A retention run may have removed the stream's oldest events:
            // the store declares it (`removed_through`), and the slice then
            // starts after the removed versions instead of after `after`.
            // An undeclared gap is still refused below.
            let from = match slice.removed_through {
                removed if removed > slice.head => {
                    return Err(violation(format!(
                        "stream `{stream}` reports versions up to {removed} removed, beyond its head {}",
                        slice.head
                    )));
                }
                removed => after.max(removed),
            };
            let mut expected = from.next();
            for recorded in &slice.events {
                if recorded.stream_id != *stream || recorded.version != expected {
                    return Err(violation(format!(
                        "stream `{stream}`: expected version {expected}, got `{}`@{}",
                        recorded.stream_id, recorded.version
                    )));
                }
                if recorded.position <= previous {
                    return Err(violation(format!(
                        "stream `{stream}`: event @{} is at position {}, which does not follow position {previous}",
                        recorded.version, recorded.position
                    )));
                }
                previous = recorded.position;
                expected = expected.next();
            }
            let read_to = StreamVersion::new(expected.get() - 1);
            if read_to > slice.head || (slice.head > from && slice.events.is_empty()) {
                return Err(violation(format!(
                    "stream `{stream}` reports head {} but returned events up to {read_to}",
                    slice.head
                )));
            }
            for recorded in &slice.events[skip..] {
                if recorded.metadata.command_id == self.context.command_id {
                    self.own_commit.push(recorded.clone());
                }
            }
            let view_slot = match self.cursors[cursor].view {
                Some(_) => C::views_mut(&mut self.state).and_then(|views| views.slot_mut(&slice.stream)),
                None => None,
            };
            if let Some(slot) = view_slot {
                // A view folds its own stream in stream order; how its events
                // interleave with other streams' does not matter to it.
                let view = view_mut(&mut slot.view);
                for recorded in &slice.events[skip..] {
                    view.apply_recorded(recorded)?;
                }
                if let Some(last) = slice.events.last() {
                    self.cursors[cursor].last_event = Some(last.event_id);
                }
            } else {
                self.held.reserve(slice.events.len());
                for recorded in &slice.events {
                    let event = crate::decode_recorded::<C::Event>(recorded)?;
                    if last_applied.is_some_and(|p| recorded.position <= p) {
                        needs_refold = true;
                    }
                    self.held.push(HeldEvent {
                        position: recorded.position,
                        cursor,
                        event,
                    });
                }
            }
            let state = &mut self.cursors[cursor];
            state.read_to = read_to;
            state.head = slice.head;
            state.pending = read_to < slice.head;
            state.primed = false;
            state.distrusted = false;
        }
        let sorted_from = if needs_refold { 0 } else { self.applied };
        self.held[sorted_from..].sort_by_key(|e| e.position);
        // Two events at one position would make the global order, and so the
        // fold, ambiguous.
        if let Some(pair) = self.held[sorted_from.saturating_sub(1)..]
            .windows(2)
            .find(|pair| pair[0].position == pair[1].position)
        {
            return Err(violation(format!(
                "`{}` and `{}` both hold an event at position {}",
                self.cursors[pair[0].cursor].stream, self.cursors[pair[1].cursor].stream, pair[0].position
            )));
        }
        if needs_refold {
            // Views are folded per stream and stay; only the global-order
            // fold starts over.
            let views = C::views_mut(&mut self.state).map(std::mem::take);
            self.state = C::State::default();
            if let (Some(views), Some(slot)) = (views, C::views_mut(&mut self.state)) {
                *slot = views;
            }
            self.applied = 0;
        }
        // Otherwise only what is not yet folded (earlier pages included)
        // was sorted: the folded prefix already is in order and stays below
        // it.
        Ok(())
    }

    pub(super) fn fold(&mut self) {
        for held in &self.held[self.applied..] {
            self.command
                .apply(&mut self.state, &self.cursors[held.cursor].stream, &held.event);
        }
        self.applied = self.held.len();
    }
}
