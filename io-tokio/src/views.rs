//! The executor's side of stream views: the shared view cache (the core's
//! [`ViewCache`] behind a lock), loading persisted snapshots on a miss, and
//! writing snapshots off the command's path.
//!
//! The rules themselves (what is recorded, trusted, invalidated, evicted;
//! when a snapshot is due) are the core's; this file only does the I/O.

use crate::codec_context::Session;
use crate::sync::Mutex;
use crate::{Clock, DynSnapshotStore, SnapshotError, SnapshotStore};
use eventcore::{Command, CommandMachine, Snapshot, StreamId, StreamView, ViewCache, ViewCacheStats, ViewKind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Counters of the executor's snapshot traffic.
///
/// ```
/// let stats = eventcore_tokio::SnapshotStats::default();
/// assert_eq!(stats.loaded + stats.rejected, 0);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotStats {
    /// Snapshots loaded and used on a cache miss.
    pub loaded: u64,
    /// Loads that found none.
    pub not_found: u64,
    /// Snapshots found but not used: undecodable, of another view version
    /// than asked for (a store answering for the wrong key), or not matching
    /// the stream's history (claiming more events than it has, or another
    /// event at its version), which are also discarded from the store. A
    /// snapshot saved under another view version is never looked up: that
    /// is `not_found`.
    pub rejected: u64,
    /// Loads that failed or timed out (the stream was read instead).
    pub load_errors: u64,
    /// Snapshots written.
    pub written: u64,
    /// Writes that failed (logged; the command had already finished).
    pub write_errors: u64,
    /// Writes not started because too many were in flight.
    pub skipped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    loaded: AtomicU64,
    not_found: AtomicU64,
    rejected: AtomicU64,
    load_errors: AtomicU64,
    written: AtomicU64,
    write_errors: AtomicU64,
    skipped: AtomicU64,
}

/// A snapshot write the executor starts and does not wait for.
enum Write {
    Save(Snapshot),
    Discard(Snapshot),
}

/// How long a snapshot load may take before the stream is read instead.
const LOAD_TIMEOUT: Duration = Duration::from_secs(2);
/// Snapshot writes in flight at once; more are skipped (and counted).
const WRITES_IN_FLIGHT: u64 = 8;
/// How long a snapshot write may take before it is given up (and counted
/// as a write error), so a hung store cannot hold a write slot for good.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// The view cache and snapshot store an executor shares between its
/// executions.
pub(crate) struct ViewSupport {
    cache: Option<Mutex<ViewCache>>,
    snapshots: Option<Arc<dyn DynSnapshotStore>>,
    counters: Arc<Counters>,
    in_flight: Arc<AtomicU64>,
}

impl std::fmt::Debug for ViewSupport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewSupport")
            .field("cache", &self.cache.is_some())
            .field("snapshots", &self.snapshots.is_some())
            .finish_non_exhaustive()
    }
}

impl ViewSupport {
    pub(crate) fn new(cache_bytes: Option<usize>) -> Self {
        ViewSupport {
            cache: cache_bytes.map(|bytes| Mutex::new(ViewCache::new(bytes))),
            snapshots: None,
            counters: Arc::default(),
            in_flight: Arc::default(),
        }
    }

    pub(crate) fn set_cache(&mut self, cache_bytes: Option<usize>) {
        self.cache = cache_bytes.map(|bytes| Mutex::new(ViewCache::new(bytes)));
    }

    pub(crate) fn set_snapshots<T: SnapshotStore>(&mut self, store: T) {
        self.snapshots = Some(Arc::new(store));
    }

    pub(crate) fn cache_stats(&self) -> Option<(usize, usize, ViewCacheStats)> {
        self.cache.as_ref().map(|cache| {
            let cache = cache.lock();
            (cache.len(), cache.bytes(), cache.stats().clone())
        })
    }

    pub(crate) fn cache_capacity(&self) -> Option<usize> {
        self.cache.as_ref().map(|cache| cache.lock().capacity())
    }

    pub(crate) fn snapshot_stats(&self) -> SnapshotStats {
        let c = &self.counters;
        SnapshotStats {
            loaded: c.loaded.load(Ordering::Relaxed),
            not_found: c.not_found.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            load_errors: c.load_errors.load(Ordering::Relaxed),
            written: c.written.load(Ordering::Relaxed),
            write_errors: c.write_errors.load(Ordering::Relaxed),
            skipped: c.skipped.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.cache.is_some() || self.snapshots.is_some()
    }

    /// Primes the machine's view streams that are due to be read: from the
    /// cache, then from persisted snapshots, loaded concurrently and for no
    /// longer than the load timeout or the command's deadline. Priming the
    /// last stream due may let the machine decide and discover more streams,
    /// so this goes on until nothing new is due. `tried` remembers streams
    /// already looked up in this execution, so a miss is looked up once;
    /// `loaded` the snapshots used, to discard the ones the stream does not
    /// confirm.
    pub(crate) async fn prime<C: Command>(
        &self,
        machine: &mut CommandMachine<C>,
        clock: &Clock,
        tried: &mut Vec<StreamId>,
        loaded: &mut Vec<Snapshot>,
        session: &mut Session,
    ) {
        while self.prime_round(machine, clock, tried, loaded, session).await {}
    }

    /// One round of [`ViewSupport::prime`]; `true` when it looked anything up.
    async fn prime_round<C: Command>(
        &self,
        machine: &mut CommandMachine<C>,
        clock: &Clock,
        tried: &mut Vec<StreamId>,
        loaded: &mut Vec<Snapshot>,
        session: &mut Session,
    ) -> bool {
        let mut wanted = machine.unprimed_views();
        wanted.retain(|(stream, _)| !tried.contains(stream));
        if wanted.is_empty() {
            return false;
        }
        tried.extend(wanted.iter().map(|(s, _)| s.clone()));
        let mut misses = Vec::new();
        match &self.cache {
            Some(cache) => {
                let mut cache = cache.lock();
                let looked_up = wanted.len();
                for (stream, kind) in wanted {
                    // Priming the last stream due decides: inside the context.
                    let primed = cache
                        .get(&stream, kind)
                        .is_some_and(|view| session.within(|| machine.prime_view(view)));
                    if !primed {
                        misses.push((stream, kind));
                    }
                }
                crate::metrics::view_cache((looked_up - misses.len()) as u64, misses.len() as u64);
            }
            None => misses = wanted,
        }
        let Some(snapshots) = &self.snapshots else { return true };
        if misses.is_empty() {
            return true;
        }
        let budget = match machine.deadline() {
            Some(deadline) => LOAD_TIMEOUT.min(deadline.saturating_duration_since(clock.now())),
            None => LOAD_TIMEOUT,
        };
        let loads = misses
            .iter()
            .map(|(stream, kind)| tokio::time::timeout(budget, snapshots.load(stream, kind.name(), kind.version())));
        let answers = futures_util::future::join_all(loads).await;
        // A snapshot's state is decoded like events: what it needs (the
        // keys of the personal data sealed in it) is fetched first.
        for answer in &answers {
            if let Ok(Ok(Some(snapshot))) = answer {
                session.want(&eventcore::Payload::from_trusted_json(snapshot.payload.as_str()));
            }
        }
        if let Err(error) = session.prepare().await {
            self.counters
                .load_errors
                .fetch_add(answers.len() as u64, Ordering::Relaxed);
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "codec context not prepared for snapshots; reading the streams"
            );
            return true;
        }
        for ((stream, kind), answer) in misses.into_iter().zip(answers) {
            let usable = session.within(|| self.usable(answer, &stream, kind));
            if let Some((snapshot, view)) = usable {
                if session.within(|| machine.prime_snapshot(view)) {
                    loaded.push(snapshot);
                }
            }
        }
        true
    }

    /// A loaded snapshot with the view it restores to, if one was found and
    /// restores (decoded once); counts and logs what was not usable.
    fn usable(
        &self,
        answer: Result<Result<Option<Snapshot>, SnapshotError>, tokio::time::error::Elapsed>,
        stream: &StreamId,
        kind: ViewKind,
    ) -> Option<(Snapshot, StreamView)> {
        let c = &self.counters;
        match answer {
            Ok(Ok(Some(snapshot))) => match snapshot.restore(stream, kind) {
                Ok(view) => {
                    c.loaded.fetch_add(1, Ordering::Relaxed);
                    Some((snapshot, view))
                }
                Err(why) => {
                    c.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%stream, view = %kind, %why, "snapshot ignored; folding the stream from events");
                    None
                }
            },
            Ok(Ok(None)) => {
                c.not_found.fetch_add(1, Ordering::Relaxed);
                None
            }
            Ok(Err(error)) => {
                c.load_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%stream, view = %kind, error = &error as &dyn std::error::Error, "snapshot load failed; reading the stream");
                None
            }
            Err(_elapsed) => {
                c.load_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%stream, view = %kind, "snapshot load timed out; reading the stream");
                None
            }
        }
    }

    /// Keeps what a finished execution folded: drops cache entries (and
    /// loaded snapshots) that proved stale, records every view, and starts
    /// the snapshot writes that are due, without waiting for them.
    ///
    /// Views folded in a session that held secrets (decrypted personal
    /// data) are not cached: a cache entry would outlive the execution and
    /// the subject's forgetting. Their snapshots are encoded inside the
    /// session (sealed), and skipped when they would hold a draft.
    pub(crate) fn keep<C: Command>(
        &self,
        machine: &mut CommandMachine<C>,
        clock: &Clock,
        loaded: Vec<Snapshot>,
        session: &mut Session,
    ) {
        let views = machine.take_views();
        let stale = machine.stale_views();
        if let Some(cache) = &self.cache {
            let mut cache = cache.lock();
            for (stream, kind) in &stale {
                cache.invalidate(stream, *kind);
            }
            if session.holds_secrets() {
                for view in &views {
                    cache.invalidate(&view.stream, view.kind);
                }
            } else {
                cache.record_all(&views);
            }
        }
        let Some(snapshots) = &self.snapshots else { return };
        for snapshot in loaded {
            let proved_wrong = stale
                .iter()
                .any(|(s, k)| s == &snapshot.stream && k.name() == snapshot.view);
            if proved_wrong {
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    stream = %snapshot.stream,
                    view = %snapshot.view,
                    version = %snapshot.stream_version,
                    "snapshot does not match the stream's history; discarding it"
                );
                self.spawn_write(snapshots, Write::Discard(snapshot));
            }
        }
        for view in views.into_iter().filter(|v| v.snapshot_due()) {
            match session.within(|| Snapshot::of(&view, clock.now())) {
                Ok(snapshot) => match session.check_snapshot(&snapshot.payload) {
                    Ok(()) => self.spawn_write(snapshots, Write::Save(snapshot)),
                    Err(why) => {
                        self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(stream = %view.stream, view = %view.kind, %why, "snapshot not written");
                    }
                },
                Err(error) => {
                    self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(stream = %view.stream, view = %view.kind, error = &error as &dyn std::error::Error, "cannot snapshot view");
                }
            }
        }
    }

    /// Starts a snapshot write off the command's path, bounded in time and in
    /// how many run at once.
    fn spawn_write(&self, snapshots: &Arc<dyn DynSnapshotStore>, write: Write) {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= WRITES_IN_FLIGHT {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            self.counters.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let snapshots = Arc::clone(snapshots);
        let counters = Arc::clone(&self.counters);
        let in_flight = Arc::clone(&self.in_flight);
        tokio::spawn(async move {
            let (stream, done) = match &write {
                Write::Save(snapshot) => (
                    &snapshot.stream,
                    tokio::time::timeout(WRITE_TIMEOUT, snapshots.save(snapshot)).await,
                ),
                Write::Discard(snapshot) => (
                    &snapshot.stream,
                    tokio::time::timeout(WRITE_TIMEOUT, snapshots.discard(snapshot))
                        .await
                        .map(|r| r.map(|_| ())),
                ),
            };
            match done {
                Ok(Ok(())) => {
                    if matches!(write, Write::Save(_)) {
                        counters.written.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(Err(error)) => {
                    counters.write_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%stream, error = &error as &dyn std::error::Error, "snapshot write failed");
                }
                Err(_elapsed) => {
                    counters.write_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%stream, "snapshot write timed out");
                }
            }
            in_flight.fetch_sub(1, Ordering::AcqRel);
        });
    }

    /// Waits until no snapshot write is in flight (for tests and shutdown).
    pub(crate) async fn flush(&self) {
        while self.in_flight.load(Ordering::Acquire) > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}
