//! The simulated snapshot store: synchronous and in memory, beside the
//! event store (snapshot traffic is off the command's path in the executor,
//! so it is modelled as a side store rather than as network requests). Its
//! faults — corrupt, stale, missing, wrong-version and ahead-of-stream
//! snapshots, lost writes — are drawn by the world from the fault stream.

use eventcore::{Snapshot, StreamId};
use std::collections::BTreeMap;

/// Where a primed view came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The client's view cache.
    Cache,
    /// A loaded snapshot.
    Snapshot,
}

/// Every snapshot saved, per (stream, view name), oldest first.
#[derive(Debug, Default)]
pub struct SnapshotStore {
    saved: BTreeMap<(StreamId, String), Vec<Snapshot>>,
}

impl SnapshotStore {
    /// Keeps `snapshot` as the newest of its key (last writer wins, as a
    /// plain upsert does: a slow writer may put an older one back).
    pub fn save(&mut self, snapshot: Snapshot) {
        self.saved
            .entry((snapshot.stream.clone(), snapshot.view.clone()))
            .or_default()
            .push(snapshot);
    }

    /// Every snapshot saved for the key, oldest first.
    pub fn history(&self, stream: &StreamId, view: &str) -> &[Snapshot] {
        self.saved
            .get(&(stream.clone(), view.to_owned()))
            .map_or(&[], Vec::as_slice)
    }

    /// Snapshots held, all keys.
    pub fn len(&self) -> usize {
        self.saved.values().map(Vec::len).sum()
    }

    /// True when none was saved.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
