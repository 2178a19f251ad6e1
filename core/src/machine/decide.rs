//! Deciding: running the command's `decide` on what was read, discovery
//! rounds, and building the append (or the re-send that settles an earlier
//! commit of the same command id).

use super::{CommandError, Executed};
use super::{CommandMachine, Phase, StreamCursor};
use crate::store::{AppendReceipt, AppendRequest, StreamAppend};
use crate::{
    Command, Decision, Event, EventId, EventMetadata, ExpectedVersion, GlobalPosition, NewEvent, StreamId,
    StreamVersion,
};
use std::sync::Arc;

impl<C: Command> CommandMachine<C> {
    pub(super) fn decide(&mut self) {
        if !self.own_commit.is_empty() {
            // The command is known to have committed. If settling fails
            // (transient error, timeout, attempts or deadline used up) the
            // result must stay "may have committed": treating the settle
            // append as unresolved keeps retries re-sending it and turns
            // giving up into `OutcomeUnknown`, never "nothing was written".
            // (Found by the simulator; see sim/regression-seeds.txt.)
            let request = Arc::new(self.settle_request());
            self.unresolved = Some(Arc::clone(&request));
            self.phase = Phase::AppendDue(request);
            return;
        }
        self.fold();
        let mut decision = Decision::new();
        let verdict = self.command.decide(&self.state, &mut decision);
        // A refusal or an empty decision is final and no append checks it,
        // so it must not rest on cached events that no read has confirmed
        // (a stale cache would refuse, say, a transfer the real balance
        // covers): read what is newer on those streams and decide again.
        let asks_for_more = decision
            .reads
            .iter()
            .any(|s| !self.cursors.iter().any(|c| &c.stream == s));
        // Running out of discovery rounds is a refusal too, and which streams
        // a decision asks for depends on the state it saw.
        let settles_here = verdict.is_err()
            || (decision.events.is_empty() && !asks_for_more)
            || (asks_for_more && self.discovery_rounds >= self.policy.discovery_limit);
        if settles_here && self.reread_primed() {
            return;
        }
        if let Err(error) = verdict {
            self.finish(Err(CommandError::Domain(error)));
            return;
        }
        let Decision {
            events,
            reads,
            read_views,
            expectations,
            missing_view,
            ends,
        } = decision;
        if let Some((stream, kind)) = missing_view {
            self.finish(Err(CommandError::MissingView { stream, view: kind }));
            return;
        }
        let new_streams: Vec<StreamId> = reads
            .into_iter()
            .filter(|s| !self.cursors.iter().any(|c| &c.stream == s))
            .collect();
        if !new_streams.is_empty() {
            self.discovery_rounds += 1;
            self.stats.discovery_rounds += 1;
            if self.discovery_rounds > self.policy.discovery_limit {
                self.finish(Err(CommandError::DiscoveryLimit {
                    limit: self.policy.discovery_limit,
                    pending: new_streams,
                }));
                return;
            }
            for stream in new_streams {
                let view = read_views
                    .iter()
                    .find(|(s, _)| s == &stream)
                    .map(|(_, kind)| *kind)
                    .or_else(|| self.command.view_of(&stream));
                if let (Some(kind), Some(views)) = (view, C::views_mut(&mut self.state)) {
                    views.ensure(&stream, kind);
                }
                self.cursors.push(StreamCursor::new(stream, view));
            }
            self.phase = Phase::ReadDue;
            return;
        }
        let unread = events
            .iter()
            .map(|(s, _)| s)
            .chain(expectations.iter().map(|(s, _)| s))
            .chain(ends.iter())
            .find(|s| !self.cursors.iter().any(|c| &c.stream == *s));
        if let Some(stream) = unread {
            let stream = stream.clone();
            self.finish(Err(CommandError::UnreadStream { stream }));
            return;
        }
        if let Some(stream) = ends.iter().find(|s| !events.iter().any(|(e, _)| &e == s)) {
            let stream = stream.clone();
            self.finish(Err(CommandError::EndWithoutEvent { stream }));
            return;
        }
        if let Err(error) = self.check_view_events(&events) {
            self.finish(Err(error));
            return;
        }
        if events.is_empty() {
            let executed = Executed {
                command_id: self.context.command_id,
                attempts: self.attempts,
                appended: None,
                stats: self.stats.clone(),
            };
            self.finish(Ok(executed));
            return;
        }
        self.ends = ends;
        match self.build_append(&events, &expectations) {
            Ok(request) => {
                // Kept until the append commits: to fold into the written
                // streams' views, and for `reencode_append`.
                self.decided = events;
                self.phase = Phase::AppendDue(Arc::new(request));
            }
            Err(error) => self.end_unless_unconfirmed(error),
        }
    }

    /// Ends the execution with `error`, a failure to encode the decision,
    /// unless the decision rested on streams primed from a cache that no
    /// read has confirmed: then those are read first and the command decides
    /// again. Like a refusal, an encode failure is final and no append
    /// checks it, and it can come from stale state: a re-execution under its
    /// own command id that starts from a cached copy taken before its first
    /// run committed decides afresh, and if the subject of its personal data
    /// was forgotten meanwhile the encode fails, where a read would have
    /// found the commit and settled it. (Found by the simulator's model of
    /// forgotten personal data.)
    fn end_unless_unconfirmed(&mut self, error: CommandError<C::Error>) {
        if self.reread_primed() {
            self.decided.clear();
            return;
        }
        self.finish(Err(error));
    }

    /// Schedules a read of every stream primed from a cache that no read
    /// has confirmed yet, so that a final verdict never rests on them;
    /// false when there is none.
    fn reread_primed(&mut self) -> bool {
        if !self.cursors.iter().any(|c| c.primed) {
            return false;
        }
        for cursor in self.cursors.iter_mut().filter(|c| c.primed) {
            cursor.pending = true;
        }
        self.phase = Phase::ReadDue;
        true
    }

    /// Re-sends what this command id already committed, so that the store
    /// answers with the original receipt. Each stream is pinned to the
    /// version before its first committed event: the stream is past that
    /// already, so a store that failed to recognise the command id would
    /// refuse with a conflict rather than write twice.
    pub(super) fn settle_request(&self) -> AppendRequest {
        let mut streams: Vec<StreamAppend> = Vec::new();
        for recorded in &self.own_commit {
            let event = NewEvent {
                event_id: recorded.event_id,
                event_type: recorded.event_type.clone(),
                schema_version: recorded.schema_version,
                payload: recorded.payload.clone(),
            };
            match streams.iter_mut().find(|s| s.stream == recorded.stream_id) {
                Some(entry) => entry.events.push(event),
                None => streams.push(StreamAppend {
                    stream: recorded.stream_id.clone(),
                    expected: ExpectedVersion::Exact(StreamVersion::new(recorded.version.get().saturating_sub(1))),
                    events: vec![event],
                    tombstone: false,
                }),
            }
        }
        let metadata = self
            .own_commit
            .first()
            .map(|e| e.metadata.clone())
            .unwrap_or_else(|| Arc::new(EventMetadata::new(self.context.command_id, self.now)));
        AppendRequest { metadata, streams }
    }

    /// Encodes the payloads of the fresh append that is due (or was just
    /// handed out by [`poll`](CommandMachine::poll) and not yet sent) again,
    /// from the events the command decided; event ids, expectations,
    /// tombstones and metadata stay as they were.
    pub(super) fn reencode_due_append(&mut self) -> Option<Arc<AppendRequest>> {
        let current = match &self.phase {
            Phase::AppendDue(request) | Phase::Appending { request, .. } => Arc::clone(request),
            _ => return None,
        };
        // A settle re-send or the re-send of an append whose outcome is
        // unknown carries what was (or may have been) stored: never re-encoded.
        let fresh = !self.decided.is_empty() && self.unresolved.as_ref().is_none_or(|u| !Arc::ptr_eq(u, &current));
        if !fresh {
            return Some(current);
        }
        let mut request = (*current).clone();
        for entry in &mut request.streams {
            let mut decided = self.decided.iter().filter(|(s, _)| s == &entry.stream);
            for event in &mut entry.events {
                let Some((_, typed)) = decided.next() else {
                    // The request was built from these events, stream by
                    // stream in order; a shortfall cannot happen.
                    return Some(current);
                };
                match typed.encode_as(self.codec) {
                    Ok(encoded) => {
                        event.event_type = encoded.event_type;
                        event.schema_version = encoded.schema_version;
                        event.payload = encoded.payload;
                    }
                    Err(source) => {
                        let stream = entry.stream.clone();
                        self.end_unless_unconfirmed(CommandError::Encode { stream, source });
                        return None;
                    }
                }
            }
        }
        let request = Arc::new(request);
        match &mut self.phase {
            Phase::AppendDue(due) => *due = Arc::clone(&request),
            Phase::Appending { request: sent, .. } => *sent = Arc::clone(&request),
            _ => {}
        }
        Some(request)
    }

    pub(super) fn build_append(
        &mut self,
        events: &[(StreamId, C::Event)],
        expectations: &[(StreamId, ExpectedVersion)],
    ) -> Result<AppendRequest, CommandError<C::Error>> {
        let mut streams = Vec::with_capacity(self.cursors.len());
        for cursor in &self.cursors {
            let expected = expectations
                .iter()
                .find(|(s, _)| s == &cursor.stream)
                .map_or(ExpectedVersion::from_read(cursor.head), |(_, e)| *e);
            // Sized up front: a command emitting many events would otherwise
            // grow (and copy) the vector several times.
            let count = if self.cursors.len() == 1 {
                events.len()
            } else {
                events.iter().filter(|(s, _)| s == &cursor.stream).count()
            };
            let mut new_events = Vec::with_capacity(count);
            for (_, event) in events.iter().filter(|(s, _)| s == &cursor.stream) {
                let encoded = event.encode_as(self.codec).map_err(|source| CommandError::Encode {
                    stream: cursor.stream.clone(),
                    source,
                })?;
                new_events.push(NewEvent {
                    event_id: EventId::v7(self.now, self.entropy.bytes10()),
                    event_type: encoded.event_type,
                    schema_version: encoded.schema_version,
                    payload: encoded.payload,
                });
            }
            if new_events.is_empty() && expected == ExpectedVersion::Any {
                continue;
            }
            streams.push(StreamAppend {
                tombstone: self.ends.contains(&cursor.stream),
                stream: cursor.stream.clone(),
                expected,
                events: new_events,
            });
        }
        let metadata = EventMetadata {
            command_id: self.context.command_id,
            correlation_id: self.context.correlation_id,
            causation_id: self.context.causation_id,
            timestamp: self.now,
            user: self.context.user.clone(),
        };
        Ok(AppendRequest {
            metadata: Arc::new(metadata),
            streams,
        })
    }
}

/// Checks that `receipt` can answer `request`. The store says the append
/// committed, and what the receipt reports is handed on (to the caller, to
/// caches and views), so it must hold together: per stream, versions from 1
/// up with one increasing position per event; no stream or position twice. A
/// fresh receipt must also list exactly the streams the request wrote, in
/// request order, each with as many events as it carried and starting where
/// its expectation allows. A deduplicated receipt answers an earlier append
/// of the same command id, which may have been another decision, so only its
/// own coherence is checked.
pub(super) fn check_receipt(request: &AppendRequest, receipt: &AppendReceipt) -> Result<(), String> {
    if receipt.command_id != request.command_id() {
        return Err(format!(
            "receipt for command {} answered an append of command {}",
            receipt.command_id,
            request.command_id()
        ));
    }
    for commit in &receipt.streams {
        let stream = &commit.stream;
        let count = commit.positions.len() as u64;
        let first = commit.first_version.get();
        let span = commit.last_version.get().checked_sub(first);
        if count == 0 || first == 0 || span != Some(count - 1) {
            return Err(format!(
                "receipt says `{stream}` was written at versions {}..={} with {count} positions",
                commit.first_version, commit.last_version
            ));
        }
        let rising = commit.positions.first() > Some(&GlobalPosition::START)
            && commit.positions.windows(2).all(|pair| pair[0] < pair[1]);
        if !rising {
            return Err(format!(
                "receipt gives `{stream}` positions {:?}, which do not increase from 1 on",
                commit.positions
            ));
        }
    }
    if receipt.streams.len() > 1 {
        let mut positions: Vec<GlobalPosition> = receipt
            .streams
            .iter()
            .flat_map(|c| c.positions.iter().copied())
            .collect();
        positions.sort_unstable();
        if let Some(pair) = positions.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(format!("receipt gives position {} twice", pair[0]));
        }
        let mut streams: Vec<&StreamId> = receipt.streams.iter().map(|c| &c.stream).collect();
        streams.sort_unstable();
        if let Some(pair) = streams.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(format!("receipt lists stream `{}` twice", pair[0]));
        }
    }
    if receipt.deduplicated {
        return Ok(());
    }
    let written = request.streams.iter().filter(|entry| !entry.events.is_empty());
    if written.clone().count() != receipt.streams.len() {
        return Err(format!(
            "receipt lists {} streams; the append wrote {}",
            receipt.streams.len(),
            written.count()
        ));
    }
    for (entry, commit) in written.zip(&receipt.streams) {
        let stream = &entry.stream;
        if &commit.stream != stream {
            return Err(format!(
                "receipt lists `{}` where the append wrote `{stream}`",
                commit.stream
            ));
        }
        if commit.positions.len() != entry.events.len() {
            return Err(format!(
                "receipt says {} events were written to `{stream}`; the append carried {}",
                commit.positions.len(),
                entry.events.len()
            ));
        }
        // `first_version` is at least 1 (checked above).
        let before = StreamVersion::new(commit.first_version.get() - 1);
        if !entry.expected.matches(before) {
            return Err(format!(
                "receipt says `{stream}` was written after version {before}, which the expectation ({}) does not allow",
                entry.expected
            ));
        }
    }
    Ok(())
}
