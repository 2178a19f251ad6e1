//! Deciding: running the command's `decide` on what was read, discovery
//! rounds, and building the append (or the re-send that settles an earlier
//! commit of the same command id).

use super::{CommandError, Executed};
use super::{CommandMachine, Phase, StreamCursor};
use crate::store::{AppendRequest, StreamAppend};
use crate::{Command, Decision, Event, EventId, EventMetadata, ExpectedVersion, NewEvent, StreamId, StreamVersion};
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
        if settles_here && self.cursors.iter().any(|c| c.primed) {
            for cursor in self.cursors.iter_mut().filter(|c| c.primed) {
                cursor.pending = true;
            }
            self.phase = Phase::ReadDue;
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
            .find(|s| !self.cursors.iter().any(|c| &c.stream == *s));
        if let Some(stream) = unread {
            let stream = stream.clone();
            self.finish(Err(CommandError::UnreadStream { stream }));
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
        match self.build_append(&events, &expectations) {
            Ok(request) => {
                if self.cursors.iter().any(|c| c.view.is_some()) {
                    self.decided = events;
                }
                self.phase = Phase::AppendDue(Arc::new(request));
            }
            Err(error) => self.finish(Err(error)),
        }
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
                let encoded = event.encode().map_err(|source| CommandError::Encode {
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
