//! The simulated store: the real [`MemoryStore`] plus what a server has and
//! a data structure does not — being down, restarting (an epoch that
//! invalidates every connection), and, for the canary, a deliberate bug.

use eventcore::{
    AppendReceipt, AppendRequest, Conflict, ExpectedVersion, GlobalPosition, ReadRequest, ReadResponse, StoreError,
    StreamId, StreamVersion,
};
use eventcore_memory::MemoryStore;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A deliberately broken store, used only to prove that the checker and the
/// sweep catch a real bug. Never enabled unless asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Canary {
    /// Skips the expected-version check on the last stream of an append (a
    /// classic off-by-one in a loop over streams).
    SkipLastConflictCheck,
    /// Checks every append of a batch against the heads as they were when
    /// the batch began, not as the appends before it in the batch left them
    /// (the classic bug of a set-based group commit). Only bites in runs
    /// with group commit.
    BatchChecksStaleHeads,
    /// Writes an ending append's events but drops its tombstone, so the
    /// stream stays open and later writes to it are accepted.
    DropTombstones,
    /// A key store that records a forget but keeps serving the subject's
    /// key: forgotten fields still read, new data of the subject is still
    /// sealed. (Not the store's bug but the key store's; the simulator's
    /// model key store plays it.)
    KeepForgottenKeys,
}

impl Canary {
    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Canary::SkipLastConflictCheck => "skip-last-conflict-check",
            Canary::BatchChecksStaleHeads => "batch-checks-stale-heads",
            Canary::DropTombstones => "drop-tombstones",
            Canary::KeepForgottenKeys => "keep-forgotten-keys",
        }
    }
}

impl fmt::Display for Canary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown canary name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown canary `{0}` (expected skip-last-conflict-check, batch-checks-stale-heads, drop-tombstones or keep-forgotten-keys)")]
pub struct UnknownCanary(pub String);

impl FromStr for Canary {
    type Err = UnknownCanary;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "skip-last-conflict-check" => Ok(Canary::SkipLastConflictCheck),
            "batch-checks-stale-heads" => Ok(Canary::BatchChecksStaleHeads),
            "drop-tombstones" => Ok(Canary::DropTombstones),
            "keep-forgotten-keys" => Ok(Canary::KeepForgottenKeys),
            other => Err(UnknownCanary(other.to_owned())),
        }
    }
}

/// The store as the simulator sees it.
#[derive(Debug, Default)]
pub struct SimStore {
    data: MemoryStore,
    canary: Option<Canary>,
    up: bool,
    epoch: u64,
    /// While a batch is being applied: the heads as they were when it began
    /// (read lazily, for the streams its appends name).
    batch_heads: Option<BTreeMap<StreamId, StreamVersion>>,
}

impl SimStore {
    /// A running, empty store, optionally broken on purpose.
    pub fn new(canary: Option<Canary>) -> Self {
        SimStore {
            data: MemoryStore::new(),
            canary,
            up: true,
            epoch: 0,
            batch_heads: None,
        }
    }

    /// The way it is broken on purpose, if it is (`None`: an honest store).
    ///
    /// ```
    /// use eventcore_sim::store::SimStore;
    /// assert!(SimStore::new(None).canary().is_none());
    /// ```
    pub fn canary(&self) -> Option<Canary> {
        self.canary
    }

    /// Whether it accepts connections.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Changes with every restart; a message from an older epoch belongs to
    /// a connection that no longer exists.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Goes down: every connection dies. Committed data is kept.
    pub fn crash(&mut self) {
        self.up = false;
        self.epoch += 1;
    }

    /// Comes back up.
    pub fn restart(&mut self) {
        self.up = true;
    }

    /// The data.
    pub fn data(&self) -> &MemoryStore {
        &self.data
    }

    /// The last committed position.
    pub fn last_position(&self) -> GlobalPosition {
        self.data.last_position()
    }

    /// Answers a read.
    pub fn read(&self, request: &ReadRequest) -> Result<ReadResponse, StoreError> {
        self.data.read(request)
    }

    /// Answers a read of the global log.
    pub fn read_all(&self, request: &eventcore::ReadAllRequest) -> Result<eventcore::ReadAllResponse, StoreError> {
        self.data.read_all(request)
    }

    /// A batch of appends begins (group commit): until [`SimStore::end_batch`]
    /// the appends belong to one transaction.
    pub fn begin_batch(&mut self) {
        self.batch_heads = Some(BTreeMap::new());
    }

    /// The batch is over.
    pub fn end_batch(&mut self) {
        self.batch_heads = None;
    }

    /// Answers an append (through the canary's bug, if one is enabled).
    pub fn append(&mut self, request: &AppendRequest) -> Result<AppendReceipt, StoreError> {
        match self.canary {
            None => self.data.append(request),
            Some(Canary::BatchChecksStaleHeads) if self.batch_heads.is_some() => {
                // The bug: judge each expectation against the batch's
                // starting heads, then write without checking.
                let mut broken = request.clone();
                for entry in &mut broken.streams {
                    let current = self.data.stream_version(&entry.stream);
                    let start = *self
                        .batch_heads
                        .get_or_insert_with(BTreeMap::new)
                        .entry(entry.stream.clone())
                        .or_insert(current);
                    let holds = match entry.expected {
                        ExpectedVersion::Any => true,
                        ExpectedVersion::NoStream => start == StreamVersion::NONE,
                        ExpectedVersion::StreamExists => start != StreamVersion::NONE,
                        ExpectedVersion::Exact(v) => start == v,
                    };
                    if !holds {
                        return Err(StoreError::Conflict(Conflict {
                            stream: entry.stream.clone(),
                            expected: entry.expected,
                            actual: start,
                        }));
                    }
                    entry.expected = ExpectedVersion::Any;
                }
                self.data.append(&broken)
            }
            Some(Canary::BatchChecksStaleHeads | Canary::KeepForgottenKeys) => self.data.append(request),
            Some(Canary::DropTombstones) => {
                let mut broken = request.clone();
                for entry in &mut broken.streams {
                    entry.tombstone = false;
                }
                self.data.append(&broken)
            }
            Some(Canary::SkipLastConflictCheck) => {
                let mut broken = request.clone();
                if let Some(last) = broken.streams.last_mut() {
                    last.expected = ExpectedVersion::Any;
                }
                self.data.append(&broken)
            }
        }
    }
}
