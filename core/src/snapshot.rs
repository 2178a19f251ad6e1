//! Persisted snapshots of stream views: the record a snapshot store keeps,
//! and the checks that decide whether a loaded one may be used.

use crate::view::{AnyView, StreamView, ViewKind};
use crate::{StreamId, StreamVersion, Time};
use std::sync::Arc;

/// A view of one stream, folded up to `stream_version` and stored as JSON.
///
/// ```
/// use eventcore::*;
/// let snapshot = Snapshot {
///     stream: StreamId::new("account-1")?,
///     view: "account".into(),
///     view_version: 1,
///     stream_version: StreamVersion::new(100),
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
    /// The view as JSON ([`AnyView::encode`]).
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
    /// It claims a version the stream does not have (found when reading
    /// the stream's tail after it).
    #[error("snapshot claims version {claimed} but the stream is at {actual}")]
    AheadOfStream {
        /// The version in the record.
        claimed: StreamVersion,
        /// The stream's version in the store.
        actual: StreamVersion,
    },
}

impl Snapshot {
    /// A snapshot of `view`, taken at `now`.
    pub fn of(view: &StreamView, now: Time) -> Result<Snapshot, serde_json::Error> {
        Ok(Snapshot {
            stream: view.stream.clone(),
            view: view.kind.name().to_owned(),
            view_version: view.kind.version(),
            stream_version: view.version,
            payload: view.view.encode()?,
            taken_at: now,
        })
    }

    /// The view this snapshot holds, if it is one of `kind` for `stream`
    /// and decodes; otherwise why not. Whether the stream really has
    /// `stream_version` events is checked by the machine when it reads the
    /// tail ([`SnapshotRejected::AheadOfStream`]).
    ///
    /// ```
    /// # use eventcore::*;
    /// # #[derive(serde::Serialize, serde::Deserialize)] enum E { Hit }
    /// # impl Event for E {}
    /// # #[derive(Clone, Default, Debug, PartialEq, serde::Serialize, serde::Deserialize)] struct Hits(u64);
    /// # impl View for Hits { type Event = E; const NAME: &'static str = "hits"; fn apply(&mut self, _: &E) { self.0 += 1; } }
    /// let stream = StreamId::new("page-1")?;
    /// let good = Snapshot { stream: stream.clone(), view: "hits".into(), view_version: 1,
    ///     stream_version: StreamVersion::new(3), payload: "3".into(), taken_at: Time::ZERO };
    /// let (version, view) = good.restore(&stream, ViewKind::of::<Hits>()).expect("usable");
    /// assert_eq!((version.get(), view.downcast::<Hits>()), (3, Some(&Hits(3))));
    /// let corrupt = Snapshot { payload: "\"three\"".into(), ..good };
    /// assert!(matches!(corrupt.restore(&stream, ViewKind::of::<Hits>()), Err(SnapshotRejected::Undecodable(_))));
    /// # Ok::<(), InvalidStreamId>(())
    /// ```
    pub fn restore(
        &self,
        stream: &StreamId,
        kind: ViewKind,
    ) -> Result<(StreamVersion, Arc<dyn AnyView>), SnapshotRejected> {
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
        Ok((self.stream_version, view))
    }
}
