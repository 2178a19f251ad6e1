//! Stream views on the client side, used exactly as the tokio executor
//! uses them (`io-tokio/src/views.rs`): before each poll of an execution
//! with a fresh command id, the view streams due to be read are looked up
//! once each in the client's `ViewCache`, then in the snapshot store; when
//! an execution ends, the views that proved ahead of the store are
//! invalidated, every view handed back is recorded, and the snapshots due
//! are written. The faults of the snapshot store and the cache are drawn
//! here from the fault stream; the checks that a view equals the full fold
//! of its stream run here too.

use super::World;
use crate::actors::{ExecId, Running};
use crate::check::Invariant;
use crate::exec::Settled;
use crate::history::ExecutionOutcome;
use crate::views::Source;
use eventcore::{
    EventId, ExpectedVersion, ReadRequest, RecordedEvent, Snapshot, SnapshotRejected, StreamId, StreamRead,
    StreamVersion, StreamView, ViewKind,
};

/// How far beyond the head an ahead snapshot claims to be: close, so that
/// the stream often reaches the claimed version later in the run. The
/// machine checks a snapshot's last event id before trusting it, so a
/// snapshot of another history is caught whether or not the stream has
/// caught up.
const SNAPSHOT_AHEAD_BY: (u64, u64) = (1, 3);

/// How far beyond the head a planted cache entry claims to be. A cache entry
/// is trusted to be a fold of this store (it is only ever made from this
/// store's reads and commits, and the store contract says acknowledged
/// events are never lost), so an entry ahead of the store models a store
/// that broke that contract; the machine still drops it when a read or a
/// conflict shows the store behind it, which a far claim always does before
/// the stream could catch up.
const CACHE_AHEAD_BY: (u64, u64) = (1_000, 2_000);

impl World {
    /// Primes the execution's view streams due to be read (each looked up
    /// once per execution): from the client's cache, else from a snapshot.
    /// Priming the last stream due lets the machine decide at once, which
    /// may discover more streams: those are primed in the next round.
    pub(super) fn prime_views(&mut self, exec: ExecId) {
        let mut round = 0;
        while self.prime_views_round(exec) {
            round += 1;
            if round > 1 {
                self.coverage.hit("view_primed_after_discovery");
            }
        }
    }

    /// One round of [`World::prime_views`]; `true` when it looked anything up.
    fn prime_views_round(&mut self, exec: ExecId) -> bool {
        let Some(running) = self.execs.get_mut(&exec) else {
            return false;
        };
        if !running.use_views {
            return false;
        }
        let mut wanted = running.machine.unprimed_views();
        wanted.retain(|(stream, _)| !running.tried.contains(stream));
        if wanted.is_empty() {
            return false;
        }
        running.tried.extend(wanted.iter().map(|(s, _)| s.clone()));
        let client = running.client;
        for (stream, kind) in wanted {
            let mut primed = None;
            if self.plan.view_cache {
                match self.clients[client].views.get(&stream, kind) {
                    Some(view) => {
                        self.coverage.hit("view_cache_hit");
                        let version = view.version;
                        if self.prime_one(exec, view, Source::Cache) {
                            primed = Some(version);
                        }
                    }
                    None => self.coverage.hit("view_cache_miss"),
                }
            }
            if primed.is_none() && self.plan.snapshots {
                if let Some(view) = self.load_snapshot(&stream, kind) {
                    self.prime_one(exec, view, Source::Snapshot);
                }
            }
        }
        true
    }

    fn prime_one(&mut self, exec: ExecId, view: StreamView, source: Source) -> bool {
        let Some(running) = self.execs.get_mut(&exec) else {
            return false;
        };
        let (stream, version) = (view.stream.clone(), view.version);
        let primed = match source {
            Source::Cache => running.machine.prime_view(view),
            Source::Snapshot => running.machine.prime_snapshot(view),
        };
        if !primed {
            return false;
        }
        running.primed.push((stream.clone(), version, source));
        self.log(format_args!("x{exec} view {stream}@{version} primed from {source:?}"));
        true
    }

    /// A snapshot load, through the store's faults.
    fn load_snapshot(&mut self, stream: &StreamId, kind: ViewKind) -> Option<StreamView> {
        if self.fault(self.active.snapshot_missing) {
            self.coverage.hit("snapshot_missing");
            return None;
        }
        let history = self.snapshots.history(stream, kind.name());
        let count = history.len();
        let mut snapshot = history.last()?.clone();
        if count > 1 && self.fault(self.active.snapshot_stale) {
            let pick = self.faults.below(count as u64 - 1) as usize;
            snapshot = self.snapshots.history(stream, kind.name())[pick].clone();
            self.coverage.hit("snapshot_stale_served");
        }
        if self.fault(self.active.snapshot_corrupt) {
            let half = snapshot.payload.len() / 2;
            snapshot.payload = format!("{}#", snapshot.payload.get(..half).unwrap_or(""));
        }
        if self.fault(self.active.snapshot_wrong_version) {
            snapshot.view_version += 1;
        }
        if self.fault(self.active.snapshot_ahead) {
            let head = self.store.data().stream_version(stream);
            let by = self.faults.between(SNAPSHOT_AHEAD_BY.0, SNAPSHOT_AHEAD_BY.1);
            snapshot.stream_version = StreamVersion::new(head.get().max(snapshot.stream_version.get()) + by);
            self.coverage.hit("snapshot_ahead_served");
        } else if self.fault(self.active.snapshot_ahead) {
            // Another history with as many events: the version matches the
            // stream, the event it ends on does not.
            snapshot.last_event_id = EventId::v7(self.now(), [0xEE; 10]);
            self.coverage.hit("snapshot_other_history_served");
        }
        match snapshot.restore(stream, kind) {
            Ok(found) => {
                self.coverage.hit("snapshot_loaded");
                Some(found)
            }
            Err(why) => {
                self.coverage.hit(match why {
                    SnapshotRejected::Undecodable(_) => "snapshot_rejected_corrupt",
                    SnapshotRejected::ViewVersion { .. } => "snapshot_rejected_view_version",
                    _ => "snapshot_rejected_other",
                });
                self.log(format_args!("snapshot of {stream} ({kind}) rejected: {why}"));
                None
            }
        }
    }

    /// What the executor does when an execution ends: invalidate the views
    /// that proved ahead, record every view, write the snapshots due. Checks
    /// first that every view handed back, and every view a committed
    /// decision rested on, equals the full fold of its stream.
    pub(super) fn keep_views(&mut self, exec: ExecId, running: &mut Running, settled: &Settled) {
        let client = running.client;
        let views = running.machine.take_views();
        let stale = running.machine.stale_views();
        let source_of = |stream: &StreamId| running.primed.iter().find(|(s, _, _)| s == stream).map(|p| (p.1, p.2));
        for (stream, _) in &stale {
            match source_of(stream).map(|p| p.1) {
                Some(Source::Cache) => self.coverage.hit("view_cache_ahead_dropped"),
                Some(Source::Snapshot) => self.coverage.hit("snapshot_rejected_ahead"),
                None => {}
            }
        }
        for view in &views {
            if let Some((version, Source::Cache)) = source_of(&view.stream) {
                if settled.stats.conflicts > 0
                    && settled.stats.reads > 0
                    && view.base_version == version
                    && view.version > version
                {
                    self.coverage.hit("view_cache_stale_entry");
                }
            }
        }
        self.check_views_handed_back(exec, &views);
        if let Some(probe) = &running.probe {
            if let Some(decided) = probe.take() {
                let kinds: Vec<(StreamId, ViewKind)> = views.iter().map(|v| (v.stream.clone(), v.kind)).collect();
                self.check_decision(exec, running, settled, &decided, &kinds);
            }
        }
        if self.plan.view_cache {
            let cache = &mut self.clients[client].views;
            for (stream, kind) in &stale {
                cache.invalidate(stream, *kind);
            }
            let evicted = cache.stats().evictions;
            cache.record_all(&views);
            let evicted = cache.stats().evictions - evicted;
            self.coverage.add("view_cache_evicted", evicted);
            for view in &views {
                if self.fault(self.active.view_cache_ahead) {
                    let by = self.faults.between(CACHE_AHEAD_BY.0, CACHE_AHEAD_BY.1);
                    let claimed = StreamVersion::new(view.version.get() + by);
                    self.clients[client].views.record(&StreamView {
                        version: claimed,
                        last_event: None,
                        ..view.clone()
                    });
                    self.coverage.hit("view_cache_ahead_planted");
                    self.log(format_args!(
                        "c{client} cache entry {}@{claimed} planted ahead",
                        view.stream
                    ));
                }
            }
        }
        if self.plan.snapshots {
            let now = self.now();
            for view in views.iter().filter(|v| v.snapshot_due()) {
                if self.healed_at.is_none()
                    && self.clients[client].up
                    && self.fault(self.active.snapshot_crash_before_write)
                {
                    self.coverage.hit("snapshot_restart_before_write");
                    self.crash(client, "between the events' commit and the snapshot write");
                    return;
                }
                if self.fault(self.active.snapshot_write_lost) {
                    self.coverage.hit("snapshot_write_lost");
                    continue;
                }
                match Snapshot::of(view, now) {
                    Ok(snapshot) => {
                        self.coverage.hit("snapshot_written");
                        self.log(format_args!("snapshot {}@{} written", view.stream, view.version));
                        self.snapshots.save(snapshot);
                    }
                    Err(_) => self.coverage.hit("snapshot_encode_failed"),
                }
            }
        }
    }

    /// The stream's first `version` events, from the store.
    fn stream_prefix(&self, stream: &StreamId, version: StreamVersion) -> Vec<RecordedEvent> {
        let request = ReadRequest {
            streams: vec![StreamRead {
                stream: stream.clone(),
                after: StreamVersion::NONE,
            }],
            page_size: None,
        };
        let mut events = match self.store.read(&request) {
            Ok(mut response) => response.streams.pop().map(|s| s.events).unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        events.truncate(version.get() as usize);
        events
    }

    fn fold_differs(&self, stream: &StreamId, kind: ViewKind, version: StreamVersion, json: &str) -> Option<String> {
        let events = self.stream_prefix(stream, version);
        match crate::workload::views::full_fold(kind, &events) {
            Ok(full) if full == json => None,
            Ok(full) => Some(format!(
                "view {kind} of `{stream}` at version {version} is {json}, the full fold of its {} events is {full}",
                events.len()
            )),
            Err(e) => Some(format!("view {kind} of `{stream}` does not fold from the store: {e}")),
        }
    }

    /// Every view an execution hands back for caching is the fold of its
    /// stream's first `version` events (cache or snapshot + tail + own
    /// commit == replay). A view claiming versions the store does not have
    /// (primed ahead and never confirmed) is counted, not judged.
    fn check_views_handed_back(&mut self, exec: ExecId, views: &[eventcore::StreamView]) {
        for view in views {
            let head = self.store.data().stream_version(&view.stream);
            if view.version > head {
                self.coverage.hit("view_handed_back_ahead");
                continue;
            }
            let json = view.view.encode().unwrap_or_default();
            if let Some(detail) = self.fold_differs(&view.stream, view.kind, view.version, &json) {
                self.violation(
                    Invariant::ViewFold,
                    format!("x{exec} handed back a wrong view: {detail}"),
                );
            }
        }
    }

    /// A committed view decision rested on the full fold of every stream it
    /// pinned, up to the pinned version.
    fn check_decision(
        &mut self,
        exec: ExecId,
        running: &Running,
        settled: &Settled,
        decided: &crate::probe::Decided,
        kinds: &[(StreamId, ViewKind)],
    ) {
        let ExecutionOutcome::Acknowledged(receipt) = &settled.outcome else {
            return;
        };
        if receipt.deduplicated {
            return;
        }
        let Some(position) = receipt.streams.first().and_then(|s| s.positions.first()) else {
            return;
        };
        let events = self.store.data().events();
        let Some(first) = events
            .binary_search_by_key(position, |e| e.position)
            .ok()
            .map(|i| events[i].event_id)
        else {
            return;
        };
        let record = &self.commands[running.command].executions[running.execution];
        let Some(attempt) = record.attempts.iter().find(|a| a.event_ids().any(|id| *id == first)) else {
            return;
        };
        let pins: Vec<(StreamId, StreamVersion)> = attempt
            .streams
            .iter()
            .filter_map(|s| match s.expected {
                ExpectedVersion::Exact(v) => Some((s.stream.clone(), v)),
                ExpectedVersion::NoStream => Some((s.stream.clone(), StreamVersion::NONE)),
                _ => None,
            })
            .collect();
        for (stream, pinned) in pins {
            let Some((_, json)) = decided.iter().find(|(s, _)| s == &stream) else {
                continue;
            };
            let Some(kind) = kinds.iter().find(|(s, _)| s == &stream).map(|(_, k)| *k) else {
                continue;
            };
            self.coverage.hit("view_decision_checked");
            if let Some(detail) = self.fold_differs(&stream, kind, pinned, json) {
                self.violation(
                    Invariant::ViewFold,
                    format!("x{exec} committed a decision on a view that is not the full fold: {detail}"),
                );
            }
        }
    }
}
