//! Persisted snapshots of stream views: the record a snapshot store keeps,
//! and the checks that decide whether a loaded one may be used.

use crate::view::{StreamView, ViewKind};
use crate::{EventId, StreamId, StreamVersion, Time};

/// A view of one stream, folded up to `stream_version` and stored as JSON.
///
/// ```
/// use eventcore::*;
/// let snapshot = Snapshot {
///     stream: StreamId::new("account-1")?,
///     view: "account".into(),
///     view_version: 1,
///     stream_version: StreamVersion::new(100),
///     last_event_id: EventId::v7(Time::ZERO, [1; 10]),
///     payload: r#"{"balance":5}"#.into(),
///     taken_at: Time::from_unix_millis(1),
/// };
/// assert_eq!(snapshot.stream_version.get(), 100);
/// # Ok::<(), InvalidStreamId>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The stream folded.
    pub stream: StreamId,
    /// [`crate::View::NAME`].
    pub view: String,
    /// [`crate::View::VERSION`] of the fold that wrote it.
    pub view_version: u32,
    /// The stream version the view is folded up to.
    pub stream_version: StreamVersion,
    /// The id of the event at `stream_version`: checked against the store
    /// before the snapshot is trusted, so a snapshot of another history
    /// (a restored database, a store it was not taken from) is never used.
    pub last_event_id: EventId,
    /// The view as JSON ([`AnyView::encode`](crate::AnyView::encode)).
    pub payload: String,
    /// When it was taken (the driver's clock).
    pub taken_at: Time,
}

/// Why a loaded snapshot was not used. Never an error of the command: the
/// view is rebuilt from events instead, and the driver logs and counts it.
///
/// ```
/// use eventcore::SnapshotRejected;
/// let why = SnapshotRejected::ViewVersion { found: 1, current: 2 };
/// assert_eq!(why.to_string(), "snapshot of view version 1, current is 2");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotRejected {
    /// It was written for another stream or view than asked for.
    #[error("snapshot is of `{found_stream}` view `{found_view}`, asked for `{stream}` view `{view}`")]
    WrongKey {
        /// The stream asked for.
        stream: StreamId,
        /// The view asked for.
        view: String,
        /// The stream in the record.
        found_stream: StreamId,
        /// The view in the record.
        found_view: String,
    },
    /// It was written by another version of the fold.
    #[error("snapshot of view version {found}, current is {current}")]
    ViewVersion {
        /// The version in the record.
        found: u32,
        /// [`crate::View::VERSION`] now.
        current: u32,
    },
    /// Its payload does not decode as the view.
    #[error("snapshot payload does not decode: {0}")]
    Undecodable(String),
    /// It claims a version the stream does not have, or the stream's event
    /// at that version is not the one it was taken at (found by the machine
    /// when it reads the stream from the snapshot's last event).
    #[error("snapshot at version {claimed} does not match the stream's history")]
    NotThisHistory {
        /// The version in the record.
        claimed: StreamVersion,
    },
}

/// Why a view could not be made into a snapshot.
///
/// ```
/// use eventcore::SnapshotUnavailable;
/// assert!(SnapshotUnavailable::NoLastEvent.to_string().contains("last event"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotUnavailable {
    /// The view's last event id is not known (a view of an empty stream, or
    /// one started from a cache entry that did not record it).
    #[error("the view's last event is not known, so a snapshot of it could not be checked later")]
    NoLastEvent,
    /// The view does not serialize.
    #[error("the view does not serialize")]
    Encode(#[from] serde_json::Error),
}

impl Snapshot {
    /// A snapshot of `view`, taken at `now`.
    pub fn of(view: &StreamView, now: Time) -> Result<Snapshot, SnapshotUnavailable> {
        let last_event_id = view.last_event.ok_or(SnapshotUnavailable::NoLastEvent)?;
        Ok(Snapshot {
            stream: view.stream.clone(),
            view: view.kind.name().to_owned(),
            view_version: view.kind.version(),
            stream_version: view.version,
            last_event_id,
            payload: view.view.encode()?,
            taken_at: now,
        })
    }

    /// The view this snapshot holds, if it is one of `kind` for `stream`
    /// and decodes; otherwise why not. Whether the stream really has this
    /// history is checked by the machine
    /// ([`crate::CommandMachine::prime_snapshot`]), which reads the stream
    /// from the snapshot's last event ([`SnapshotRejected::NotThisHistory`]).
    ///
    /// ```
    /// # use eventcore::*;
    /// # #[derive(serde::Serialize, serde::Deserialize)] enum E { Hit }
    /// # impl Event for E {}
    /// # #[derive(Clone, Default, Debug, PartialEq, serde::Serialize, serde::Deserialize)] struct Hits(u64);
    /// # impl View for Hits { type Event = E; const NAME: &'static str = "hits"; fn apply(&mut self, _: &E) { self.0 += 1; } }
    /// let stream = StreamId::new("page-1")?;
    /// let good = Snapshot { stream: stream.clone(), view: "hits".into(), view_version: 1,
    ///     stream_version: StreamVersion::new(3), last_event_id: EventId::v7(Time::ZERO, [3; 10]),
    ///     payload: "3".into(), taken_at: Time::ZERO };
    /// let restored = good.restore(&stream, ViewKind::of::<Hits>()).expect("usable");
    /// assert_eq!((restored.version.get(), restored.view.downcast::<Hits>()), (3, Some(&Hits(3))));
    /// let corrupt = Snapshot { payload: "\"three\"".into(), ..good };
    /// assert!(matches!(corrupt.restore(&stream, ViewKind::of::<Hits>()), Err(SnapshotRejected::Undecodable(_))));
    /// # Ok::<(), InvalidStreamId>(())
    /// ```
    pub fn restore(&self, stream: &StreamId, kind: ViewKind) -> Result<StreamView, SnapshotRejected> {
        if &self.stream != stream || self.view != kind.name() {
            return Err(SnapshotRejected::WrongKey {
                stream: stream.clone(),
                view: kind.name().to_owned(),
                found_stream: self.stream.clone(),
                found_view: self.view.clone(),
            });
        }
        if self.view_version != kind.version() {
            return Err(SnapshotRejected::ViewVersion {
                found: self.view_version,
                current: kind.version(),
            });
        }
        let view = kind
            .decode(&self.payload)
            .map_err(|e| SnapshotRejected::Undecodable(e.to_string()))?;
        Ok(StreamView {
            stream: stream.clone(),
            kind,
            version: self.stream_version,
            base_version: self.stream_version,
            last_event: Some(self.last_event_id),
            view,
        })
    }
}
