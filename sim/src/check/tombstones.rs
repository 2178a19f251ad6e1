//! Tombstones ([`Invariant::Tombstone`]): a stream ended by a tombstone
//! takes no more events. The checker learns each tombstone from the
//! append that committed it (the attempt's `tombstone` flag and the
//! version of its last event on the stream), then judges every later
//! event, every append's answer, every read, and — given the store's own
//! record — that the store's tombstones are exactly those of committed
//! appends (never a tombstone without its event, never its event without
//! the tombstone).

use super::{Checker, Invariant, Violation};
use crate::history::Attempt;
use eventcore::{AppendReceipt, ReadResponse, RecordedEvent, StoreError, StreamId, StreamVersion};

/// An event past a stream's tombstone.
pub(super) fn check_event(checker: &mut Checker, event: &RecordedEvent) {
    if let Some(&deleted_at) = checker.deleted.get(&event.stream_id) {
        if event.version > deleted_at {
            checker.violate(
                Invariant::Tombstone,
                format!(
                    "event `{}`@{} (position {}, command {}) committed after the stream's tombstone at version {deleted_at}",
                    event.stream_id, event.version, event.position, event.metadata.command_id
                ),
            );
        }
    }
}

/// The tombstones a committed append wrote: each at the version of the
/// append's last event on its stream.
pub(super) fn record(checker: &mut Checker, attempt: &Attempt, events: &[RecordedEvent]) {
    for entry in attempt.streams.iter().filter(|s| s.tombstone) {
        let last = events
            .iter()
            .filter(|e| e.stream_id == entry.stream)
            .map(|e| e.version)
            .max();
        match last {
            Some(version) => {
                checker.deleted.insert(entry.stream.clone(), version);
            }
            None => checker.violate(
                Invariant::Tombstone,
                format!(
                    "an append that ends `{}` committed without its events on that stream",
                    entry.stream
                ),
            ),
        }
    }
}

impl Checker {
    /// The version at which a committed tombstone ended `stream`, if one did.
    ///
    /// ```
    /// use eventcore::StreamId;
    /// use eventcore_sim::check::Checker;
    /// let checker = Checker::new(Vec::new());
    /// assert_eq!(checker.deleted_at(&StreamId::new("acct-1")?), None);
    /// # Ok::<(), eventcore::InvalidStreamId>(())
    /// ```
    pub fn deleted_at(&self, stream: &StreamId) -> Option<StreamVersion> {
        self.deleted.get(stream).copied()
    }

    /// Judges one append the store applied: `committed` are the events it
    /// made visible (empty when it wrote nothing), `result` what the store
    /// answered, and `store_deleted` the store's own record of tombstones
    /// after the append. Committed events go through
    /// [`Checker::observe_commit`]; then:
    ///
    /// - an append writing a stream already ended was refused, with
    ///   `StreamDeleted` naming a stream it wrote and that stream's
    ///   tombstone version (or with a conflict on another of its streams,
    ///   checked first), and wrote nothing;
    /// - a `StreamDeleted` answer wrote nothing and named a deleted stream
    ///   the append wrote, at its tombstone's version;
    /// - for every stream of the append, the store's tombstone is the one
    ///   committed appends wrote (none, or the version of the ending
    ///   append's last event there).
    ///
    /// Returns every violation found so far.
    ///
    /// ```
    /// use eventcore::{AppendRequest, CommandId, EventId, EventMetadata, EventType, ExpectedVersion, NewEvent, Payload, StreamAppend, StreamId, Time};
    /// use eventcore_memory::MemoryStore;
    /// use eventcore_sim::check::Checker;
    /// use eventcore_sim::history::Attempt;
    /// let stream = StreamId::new("acct-1")?;
    /// let event = NewEvent { event_id: EventId::v7(Time::ZERO, [1; 10]), event_type: EventType::new("Closed")?, schema_version: 1, payload: Payload::from_trusted_json("null") };
    /// let close = AppendRequest {
    ///     metadata: std::sync::Arc::new(EventMetadata::new(CommandId::v7(Time::ZERO, [1; 10]), Time::ZERO)),
    ///     streams: vec![StreamAppend { stream: stream.clone(), expected: ExpectedVersion::NoStream, events: vec![event], tombstone: true }],
    /// };
    /// let mut store = MemoryStore::new();
    /// let result = store.append(&close);
    /// let mut checker = Checker::new(Vec::new());
    /// let found = checker.observe_append(&Attempt::of(&close), &result, store.events(), |s| store.deleted_at(s));
    /// assert!(found.is_empty(), "{found:?}");
    /// assert_eq!(checker.deleted_at(&stream), store.deleted_at(&stream));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn observe_append(
        &mut self,
        attempt: &Attempt,
        result: &Result<AppendReceipt, StoreError>,
        committed: &[RecordedEvent],
        store_deleted: impl Fn(&StreamId) -> Option<StreamVersion>,
    ) -> &[Violation] {
        let command = result
            .as_ref()
            .ok()
            .map(|r| r.command_id.to_string())
            .or_else(|| committed.first().map(|e| e.metadata.command_id.to_string()))
            .unwrap_or_else(|| "?".to_owned());
        if committed.is_empty() {
            self.judge_refusal(attempt, result);
        } else {
            if let Err(error) = result {
                self.violate(
                    Invariant::Tombstone,
                    format!(
                        "an append was answered `{error}` yet wrote {} events (first `{}`@{})",
                        committed.len(),
                        committed[0].stream_id,
                        committed[0].version
                    ),
                );
            }
            self.observe_commit(attempt, committed);
        }
        for entry in &attempt.streams {
            let store = store_deleted(&entry.stream);
            let history = self.deleted.get(&entry.stream).copied();
            if store != history {
                let show = |v: Option<StreamVersion>| v.map_or_else(|| "none".to_owned(), |v| format!("version {v}"));
                self.violate(
                    Invariant::Tombstone,
                    format!(
                        "after an append of command {command} the store holds the tombstone of `{}` at {}, the committed appends wrote it at {}{}",
                        entry.stream,
                        show(store),
                        show(history),
                        if entry.tombstone { " (the append ends the stream)" } else { "" }
                    ),
                );
            }
        }
        &self.violations
    }

    /// An append that wrote nothing: if it wrote a deleted stream, it was
    /// refused with `StreamDeleted` (or a conflict on another stream).
    fn judge_refusal(&mut self, attempt: &Attempt, result: &Result<AppendReceipt, StoreError>) {
        let hit: Vec<(StreamId, StreamVersion)> = attempt
            .streams
            .iter()
            .filter(|s| !s.events.is_empty())
            .filter_map(|s| self.deleted.get(&s.stream).map(|v| (s.stream.clone(), *v)))
            .collect();
        match result {
            Ok(receipt) if receipt.deduplicated => {}
            Ok(_) if hit.is_empty() => {}
            Ok(_) => self.violate(
                Invariant::Tombstone,
                format!("an append writing the deleted stream `{}` was acknowledged", hit[0].0),
            ),
            Err(StoreError::StreamDeleted(deleted)) => match hit.iter().find(|(s, _)| *s == deleted.stream) {
                Some((_, at)) if *at == deleted.deleted_at => {}
                Some((stream, at)) => self.violate(
                    Invariant::Tombstone,
                    format!(
                        "an append was refused because `{stream}` was deleted at version {}, but its tombstone is at version {at}",
                        deleted.deleted_at
                    ),
                ),
                None => self.violate(
                    Invariant::Tombstone,
                    format!(
                        "an append was refused because `{}` was deleted, but it writes no deleted stream of that name (deleted streams it writes: {:?})",
                        deleted.stream,
                        hit.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>()
                    ),
                ),
            },
            Err(StoreError::Conflict(conflict)) if !hit.iter().any(|(s, _)| *s == conflict.stream) => {}
            Err(error) => {
                if let Some((stream, at)) = hit.first() {
                    self.violate(
                        Invariant::Tombstone,
                        format!(
                            "an append writing `{stream}`, deleted at version {at}, was refused with `{error}` instead of `StreamDeleted`"
                        ),
                    );
                }
            }
        }
    }

    /// Judges a read the store answered: every stream reports the
    /// tombstone committed appends wrote (`deleted_at`), and a deleted
    /// stream's head is the tombstone's version (its last event).
    ///
    /// ```
    /// use eventcore::{ReadRequest, StreamId};
    /// use eventcore_memory::MemoryStore;
    /// use eventcore_sim::check::Checker;
    /// let answer = MemoryStore::new().read(&ReadRequest::new([StreamId::new("acct-1")?]))?;
    /// let mut checker = Checker::new(Vec::new());
    /// assert!(checker.observe_read(&answer).is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn observe_read(&mut self, response: &ReadResponse) -> &[Violation] {
        for slice in &response.streams {
            let known = self.deleted.get(&slice.stream).copied();
            if slice.deleted_at != known {
                self.violate(
                    Invariant::Tombstone,
                    format!(
                        "a read of `{}` reports deleted_at {:?}, the committed tombstone is at {:?}",
                        slice.stream,
                        slice.deleted_at.map(|v| v.get()),
                        known.map(|v| v.get())
                    ),
                );
            } else if let Some(at) = known.filter(|at| slice.head != *at) {
                self.violate(
                    Invariant::Tombstone,
                    format!(
                        "a read of the deleted stream `{}` reports head {}, its tombstone is at its last event, version {at}",
                        slice.stream, slice.head
                    ),
                );
            }
        }
        &self.violations
    }
}

/// At the end, from the history alone: for every committed append that
/// ended a stream, no event of that stream lies past its last event there.
pub(super) fn check_history_tombstone(
    checker: &mut Checker,
    label: &str,
    attempt: &Attempt,
    committed: &[&RecordedEvent],
) {
    for entry in attempt.streams.iter().filter(|s| s.tombstone) {
        let Some(at) = committed
            .iter()
            .filter(|e| e.stream_id == entry.stream)
            .map(|e| e.version)
            .max()
        else {
            continue;
        };
        let head = checker.heads.get(&entry.stream).copied().unwrap_or_default();
        if head > at {
            checker.violate(
                Invariant::Tombstone,
                format!(
                    "`{}` holds events up to version {head}, past the tombstone `{label}` wrote at version {at}",
                    entry.stream
                ),
            );
        }
    }
}
