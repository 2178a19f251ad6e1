//! Stream views inside one execution: starting a view stream from a cache
//! entry or a snapshot, what is handed back when the execution ends, and
//! which starting points proved stale.

use super::CommandError;
use super::{CommandMachine, Phase, StreamCursor};
use crate::store::{AppendReceipt, AppendRequest};
use crate::view::{view_mut, AnyEvent, StreamView, ViewKind};
use crate::{Command, Event, StreamId, StreamVersion};
use std::sync::Arc;

impl<C: Command> CommandMachine<C> {
    /// Starts a view stream from a fold this driver made itself (its view
    /// cache) instead of reading it from version 1: the machine reads only
    /// what is newer when it must, and pins the append to the view's
    /// version, so a stale view costs a conflict and a read of the tail,
    /// never a wrong decision. A refusal or an empty decision is confirmed by
    /// a read before it is final, and a view that proves ahead of the store
    /// is dropped and the stream folded from the start
    /// ([`CommandMachine::stale_views`]). The view is trusted to be a fold of
    /// this store's history; a persisted snapshot goes through
    /// [`CommandMachine::prime_snapshot`], which checks that.
    ///
    /// When this primes the last stream due to be read, the machine decides
    /// at once; a decision that discovers more streams leaves them in
    /// [`CommandMachine::unprimed_views`], so a driver primes until that is
    /// empty, then polls.
    ///
    /// Returns `false` and ignores the view when it does not fit: no read is
    /// due, the stream is not read through a view of this kind, or it
    /// already holds events.
    pub fn prime_view(&mut self, view: StreamView) -> bool {
        let version = view.version;
        let last_event = view.last_event;
        let Some(cursor) = self.primable(&view) else {
            return false;
        };
        let cursor = &mut self.cursors[cursor];
        cursor.read_to = version;
        cursor.head = version;
        cursor.base = version;
        cursor.last_event = last_event;
        cursor.pending = false;
        cursor.primed = true;
        if !self.cursors.iter().any(|c| c.pending) {
            // Deciding here rather than in `poll` gives the driver a chance
            // to prime the streams this decision discovers before they are
            // read.
            self.decide();
        }
        true
    }

    /// Starts a view stream from a persisted snapshot: the stream is read
    /// from the snapshot's last event on, and the snapshot is used only if
    /// that event is the one it was taken at (same version, same event id).
    /// Otherwise (the stream is shorter, or another history reached that
    /// version) it is dropped, counted in [`ExecutionStats::stale_views`](crate::ExecutionStats::stale_views),
    /// reported by [`CommandMachine::stale_views`], and the stream folded
    /// from the start. Costs one read of the tail plus the snapshot's last
    /// event. Returns `false` when the view does not fit (see
    /// [`CommandMachine::prime_view`]) or carries no last event id.
    pub fn prime_snapshot(&mut self, view: StreamView) -> bool {
        let (Some(last_event), Some(before)) = (view.last_event, view.version.get().checked_sub(1)) else {
            return false;
        };
        let version = view.version;
        let Some(cursor) = self.primable(&view) else {
            return false;
        };
        let cursor = &mut self.cursors[cursor];
        cursor.read_to = StreamVersion::new(before);
        cursor.head = StreamVersion::new(before);
        cursor.base = version;
        cursor.verify = Some((version, last_event));
        true
    }

    /// The cursor a view may be primed into, with the view put in its slot.
    pub(super) fn primable(&mut self, view: &StreamView) -> Option<usize> {
        if !matches!(self.phase, Phase::ReadDue) {
            return None;
        }
        let cursor = self.cursors.iter().position(|c| {
            c.stream == view.stream
                && c.view == Some(view.kind)
                && c.read_to.is_none()
                && c.pending
                && c.base.is_none()
                && c.verify.is_none()
        })?;
        let slot = C::views_mut(&mut self.state).and_then(|views| views.slot_mut(&view.stream))?;
        slot.view = Arc::clone(&view.view);
        Some(cursor)
    }

    /// View streams that are due to be read from the start: what a driver
    /// may prime from a cache or a snapshot before the next
    /// [`CommandMachine::poll`] (including streams discovered by `decide`).
    pub fn unprimed_views(&self) -> Vec<(StreamId, ViewKind)> {
        if !matches!(self.phase, Phase::ReadDue) {
            return Vec::new();
        }
        self.cursors
            .iter()
            .filter(|c| c.pending && c.read_to.is_none() && c.base.is_none() && c.verify.is_none())
            .filter_map(|c| c.view.map(|kind| (c.stream.clone(), kind)))
            .collect()
    }

    /// The view of every stream read through one that the execution could
    /// confirm, each with the version it is folded to (this execution's own
    /// commit included once it is known). Each is exactly the fold of the
    /// stream's first `version` events, so a driver may cache all of them.
    /// Left out: streams never read, snapshots not yet checked, and views in
    /// [`CommandMachine::stale_views`]. Call it once the execution ended.
    pub fn take_views(&mut self) -> Vec<StreamView> {
        let Some(views) = C::views_mut(&mut self.state) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(views.slots.len());
        for cursor in &self.cursors {
            let Some(kind) = cursor.view else { continue };
            if (cursor.read_to.is_none() && cursor.pending) || cursor.verify.is_some() || cursor.distrusted {
                continue;
            }
            if let Some(slot) = views.slots.iter().find(|s| s.stream == cursor.stream) {
                out.push(StreamView {
                    stream: cursor.stream.clone(),
                    kind,
                    version: cursor.read_to,
                    base_version: cursor.base,
                    last_event: cursor.last_event,
                    view: Arc::clone(&slot.view),
                });
            }
        }
        out
    }

    /// View streams whose starting point must not be used again: primed
    /// views that proved ahead of the store (or, for a snapshot, of another
    /// history), and primed views that conflicted and were not read again
    /// before the execution ended. A driver drops them from its cache (and a
    /// snapshot it loaded for them from its snapshot store).
    pub fn stale_views(&self) -> Vec<(StreamId, ViewKind)> {
        let mut stale = self.stale_views.clone();
        for cursor in self.cursors.iter().filter(|c| c.distrusted) {
            if let Some(kind) = cursor.view {
                if !stale.iter().any(|(s, _)| s == &cursor.stream) {
                    stale.push((cursor.stream.clone(), kind));
                }
            }
        }
        stale
    }

    /// Drops a view stream's starting point: the slot goes back to the empty
    /// view and the stream is read from the start.
    pub(super) fn drop_view_start(&mut self, cursor: usize) {
        let Some(kind) = self.cursors[cursor].view else { return };
        let stream = self.cursors[cursor].stream.clone();
        self.stats.stale_views += 1;
        self.stale_views.push((stream.clone(), kind));
        if let Some(slot) = C::views_mut(&mut self.state).and_then(|v| v.slot_mut(&stream)) {
            slot.view = kind.empty();
        }
        self.cursors[cursor] = StreamCursor::new(stream, Some(kind));
    }

    /// A conflict on a stream primed from a cache says the cached view is
    /// behind (or, below its version, ahead of the store): until a read
    /// confirms the stream again, its view must not go back to the cache.
    pub(super) fn distrust_primed_view(&mut self, conflict: &crate::Conflict) {
        let Some(cursor) = self
            .cursors
            .iter()
            .position(|c| c.stream == conflict.stream && c.view.is_some() && c.primed)
        else {
            return;
        };
        if conflict.actual < self.cursors[cursor].base {
            self.drop_view_start(cursor);
        } else {
            self.cursors[cursor].distrusted = true;
        }
    }

    /// Folds this execution's own commit into the written streams' views, so
    /// the views handed out by [`CommandMachine::take_views`] include it. A
    /// stream whose commit does not follow the version folded (its
    /// expectation was relaxed and another writer got in between) keeps its
    /// view at the version read, which is still exact; one whose commit
    /// starts at or below that version shows the view was ahead of the
    /// store, and is reported stale.
    pub(super) fn fold_commit(&mut self, request: &AppendRequest, receipt: &AppendReceipt) {
        let decided = std::mem::take(&mut self.decided);
        if receipt.deduplicated {
            return;
        }
        let Some(views) = C::views_mut(&mut self.state) else {
            return;
        };
        for commit in &receipt.streams {
            let Some(cursor) = self.cursors.iter_mut().find(|c| c.stream == commit.stream) else {
                continue;
            };
            if cursor.view.is_none() {
                continue;
            }
            if commit.first_version <= cursor.read_to {
                cursor.distrusted = true;
                continue;
            }
            let Some(slot) = views.slot_mut(&commit.stream) else {
                continue;
            };
            let events: Vec<&C::Event> = decided
                .iter()
                .filter(|(s, _)| s == &commit.stream)
                .map(|(_, e)| e)
                .collect();
            if cursor.read_to.get() + events.len() as u64 != commit.last_version.get() {
                continue;
            }
            let mut view = Arc::clone(&slot.view);
            let folded = events.iter().all(|event| {
                let erased: &dyn std::any::Any = *event;
                match erased.downcast_ref::<AnyEvent>() {
                    Some(any) => view_mut(&mut view).apply_emitted(any).is_ok(),
                    None => match event.encode() {
                        Ok(encoded) => view_mut(&mut view).apply_emitted(&AnyEvent::stored(encoded)).is_ok(),
                        Err(_) => false,
                    },
                }
            });
            let last_event = request
                .streams
                .iter()
                .find(|s| s.stream == commit.stream)
                .and_then(|s| s.events.last())
                .map(|e| e.event_id);
            if folded && last_event.is_some() {
                slot.view = view;
                cursor.read_to = commit.last_version;
                cursor.head = commit.last_version;
                cursor.last_event = last_event;
            }
        }
    }

    /// Refuses, before anything is sent, an event addressed to a view stream
    /// that the stream's view could not fold: stored, it would make the
    /// stream unreadable through that view for good.
    pub(super) fn check_view_events(&mut self, events: &[(StreamId, C::Event)]) -> Result<(), CommandError<C::Error>> {
        let Some(views) = C::views_mut(&mut self.state) else {
            return Ok(());
        };
        for (stream, event) in events {
            let Some(slot) = views.slot_mut(stream) else { continue };
            let erased: &dyn std::any::Any = event;
            let verdict = match erased.downcast_ref::<AnyEvent>() {
                Some(any) => slot.view.accepts(any),
                None => match event.encode() {
                    Ok(encoded) => slot.view.accepts(&AnyEvent::stored(encoded)),
                    Err(source) => {
                        return Err(CommandError::Encode {
                            stream: stream.clone(),
                            source,
                        })
                    }
                },
            };
            if let Err(source) = verdict {
                return Err(CommandError::ViewCannotFold {
                    stream: stream.clone(),
                    view: slot.kind,
                    source,
                });
            }
        }
        Ok(())
    }
}
