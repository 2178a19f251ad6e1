//! Stream versions, global positions and the expected-version rules of
//! optimistic concurrency.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The version of a stream: the number of events in it. Version 0 means the
/// stream does not exist yet; its first event has version 1, and versions are
/// contiguous.
///
/// ```
/// use eventcore::StreamVersion;
/// assert_eq!(StreamVersion::NONE.next(), StreamVersion::new(1));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StreamVersion(u64);

impl StreamVersion {
    /// The version of a stream with no events.
    pub const NONE: StreamVersion = StreamVersion(0);

    /// Wraps a raw version.
    pub const fn new(raw: u64) -> Self {
        StreamVersion(raw)
    }

    /// The raw version.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The version after this one.
    pub const fn next(self) -> Self {
        StreamVersion(self.0.saturating_add(1))
    }

    /// True for [`StreamVersion::NONE`].
    pub const fn is_none(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for StreamVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The position of an event in the store's global order. The first event has
/// position 1; [`GlobalPosition::START`] (0) means "before everything".
///
/// Positions need not be contiguous (a PostgreSQL sequence leaves gaps), but
/// a reader that has seen position `p` never later sees an event below `p`.
///
/// ```
/// use eventcore::GlobalPosition;
/// assert!(GlobalPosition::START < GlobalPosition::new(1));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GlobalPosition(u64);

impl GlobalPosition {
    /// Before the first event.
    pub const START: GlobalPosition = GlobalPosition(0);

    /// Wraps a raw position.
    pub const fn new(raw: u64) -> Self {
        GlobalPosition(raw)
    }

    /// The raw position.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for GlobalPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a writer believes about a stream's version before appending to it.
///
/// ```
/// use eventcore::{ExpectedVersion, StreamVersion};
/// let v3 = StreamVersion::new(3);
/// assert!(ExpectedVersion::Exact(v3).matches(v3));
/// assert!(!ExpectedVersion::NoStream.matches(v3));
/// assert!(ExpectedVersion::StreamExists.matches(v3));
/// assert!(ExpectedVersion::Any.matches(StreamVersion::NONE));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// No check at all.
    Any,
    /// The stream must not exist (version 0).
    NoStream,
    /// The stream must exist (version ≥ 1).
    StreamExists,
    /// The stream must be at exactly this version; `Exact(NONE)` is the same
    /// as `NoStream`.
    Exact(StreamVersion),
}

impl ExpectedVersion {
    /// Whether a stream currently at `actual` satisfies this expectation.
    pub const fn matches(self, actual: StreamVersion) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual.get() == 0,
            ExpectedVersion::StreamExists => actual.get() > 0,
            ExpectedVersion::Exact(v) => actual.get() == v.get(),
        }
    }

    /// The expectation that pins a stream to the version just read.
    pub const fn from_read(version: StreamVersion) -> Self {
        if version.is_none() {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(version)
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::StreamExists => f.write_str("an existing stream"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}
