//! Reading streams: the request a machine sends and the slices a store
//! answers with.

use super::InvalidRequest;
use crate::{RecordedEvent, StreamId, StreamVersion};
use std::collections::BTreeSet;
use std::num::NonZeroU32;

/// Read several streams in one request, each from a version on.
///
/// ```
/// use eventcore::*;
/// let req = ReadRequest::new([StreamId::new("a")?, StreamId::new("b")?]);
/// assert_eq!(req.streams[1].after, StreamVersion::NONE);
/// # Ok::<(), InvalidStreamId>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadRequest {
    /// The streams to read, in the order the response will list them.
    pub streams: Vec<StreamRead>,
    /// At most this many events per stream; the caller reads again for more.
    pub page_size: Option<NonZeroU32>,
}

impl ReadRequest {
    /// Reads each stream whole.
    pub fn new(streams: impl IntoIterator<Item = StreamId>) -> Self {
        ReadRequest {
            streams: streams
                .into_iter()
                .map(|stream| StreamRead {
                    stream,
                    after: StreamVersion::NONE,
                })
                .collect(),
            page_size: None,
        }
    }

    /// Checks the request shape (no duplicate streams).
    pub fn validate(&self) -> Result<(), InvalidRequest> {
        match first_duplicate(self.streams.iter().map(|read| &read.stream)) {
            Some(i) => Err(InvalidRequest::DuplicateStream {
                stream: self.streams[i].stream.clone(),
            }),
            None => Ok(()),
        }
    }
}

/// Requests with at most this many streams are checked for duplicates by
/// comparing every pair, without allocating a set (almost every command
/// touches one or two streams).
const PAIRWISE_MAX: usize = 8;

/// The index of the first stream (in request order) that repeats an
/// earlier one.
pub(super) fn first_duplicate<'a>(streams: impl ExactSizeIterator<Item = &'a StreamId> + Clone) -> Option<usize> {
    if streams.len() <= PAIRWISE_MAX {
        return streams
            .clone()
            .enumerate()
            .position(|(i, stream)| streams.clone().take(i).any(|earlier| earlier == stream));
    }
    let mut seen = BTreeSet::new();
    streams.into_iter().position(|stream| !seen.insert(stream))
}

/// One stream of a [`ReadRequest`]: its events with version above `after`.
///
/// ```
/// use eventcore::*;
/// let read = StreamRead { stream: StreamId::new("a")?, after: StreamVersion::new(3) };
/// assert_eq!(read.after.next(), StreamVersion::new(4)); // first version returned
/// # Ok::<(), InvalidStreamId>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRead {
    /// The stream.
    pub stream: StreamId,
    /// Return events with a version strictly greater than this.
    pub after: StreamVersion,
}

/// The answer to a [`ReadRequest`]: one slice per requested stream, in
/// request order. A stream that does not exist has head version 0 and no
/// events.
///
/// ```
/// use eventcore::*;
/// let answer = ReadResponse { streams: vec![StreamSlice { stream: StreamId::new("new")?, head: StreamVersion::NONE, events: vec![], deleted_at: None, removed_through: StreamVersion::NONE }] };
/// assert!(answer.streams[0].head.is_none(), "a missing stream reads as empty at version 0");
/// # Ok::<(), InvalidStreamId>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadResponse {
    /// One slice per requested stream.
    pub streams: Vec<StreamSlice>,
}

/// Events of one stream, plus its version at the time of the read.
///
/// ```
/// use eventcore::*;
/// let slice = StreamSlice { stream: StreamId::new("a")?, head: StreamVersion::new(7), events: vec![], deleted_at: None, removed_through: StreamVersion::NONE };
/// // Read after version 7: nothing new, and the head says so.
/// assert_eq!(slice.head.get(), 7);
/// assert!(slice.deleted_at.is_none(), "the stream is open");
/// # Ok::<(), InvalidStreamId>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSlice {
    /// The stream.
    pub stream: StreamId,
    /// The stream's version when it was read: the version of its last event.
    pub head: StreamVersion,
    /// Events after the requested version, in version order; fewer than
    /// `head - after` only when a page size cut the slice short.
    pub events: Vec<RecordedEvent>,
    /// `Some(version)` when the stream was ended by a tombstone
    /// ([`StreamAppend::tombstone`](crate::StreamAppend::tombstone)), the
    /// version of its last event (then equal to `head`); `None` while it is
    /// open. A deleted stream's events stay readable until a retention run
    /// removes them.
    pub deleted_at: Option<StreamVersion>,
    /// Versions up to this were physically removed by a retention run
    /// ([`RetentionPlan`](crate::RetentionPlan)); `StreamVersion::NONE`
    /// when nothing was. A read after a version below it answers from
    /// `removed_through + 1` on: the gap is declared, not lost.
    pub removed_through: StreamVersion,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pairwise_and_the_set_duplicate_checks_agree() {
        let ids: Vec<StreamId> = (0..20)
            .map(|i| StreamId::new(format!("s-{}", i % 13)).expect("valid"))
            .collect();
        for len in 0..=ids.len() {
            let slice = &ids[..len];
            let mut seen = BTreeSet::new();
            let expected = slice.iter().position(|s| !seen.insert(s));
            assert_eq!(first_duplicate(slice.iter()), expected, "{len} streams");
        }
        let tail = [ids[0].clone(), ids[1].clone(), ids[1].clone(), ids[0].clone()];
        assert_eq!(
            first_duplicate(tail.iter()),
            Some(2),
            "the first repeat in request order"
        );
    }
}
