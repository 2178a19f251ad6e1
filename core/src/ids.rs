//! Identifiers, each validated once at the boundary so the rest of the code
//! can trust them.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;
use uuid::Uuid;

/// The longest stream id accepted, in bytes.
///
/// Long enough for `tenant/aggregate-type/uuid` shapes, short enough to be
/// indexed cheaply by every store.
pub const MAX_STREAM_ID_BYTES: usize = 255;

/// Why a string is not a valid [`StreamId`]. Each variant names the rule that
/// failed and carries enough of the input to find it.
///
/// ```
/// use eventcore::{InvalidStreamId, StreamId};
/// let err = StreamId::new("bad\u{7}id").unwrap_err();
/// assert_eq!(err.to_string(), "stream id \"bad\\u{7}id\" contains control character U+0007 at byte 3");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidStreamId {
    /// The id was the empty string.
    #[error("stream id is empty")]
    Empty,
    /// The id contained only whitespace.
    #[error("stream id {id:?} is whitespace only")]
    WhitespaceOnly {
        /// The rejected id.
        id: String,
    },
    /// The id started or ended with whitespace, which makes look-alike ids.
    #[error("stream id {id:?} starts or ends with whitespace")]
    SurroundingWhitespace {
        /// The rejected id.
        id: String,
    },
    /// The id contained a control character (including NUL, which
    /// PostgreSQL text cannot store).
    #[error("stream id {id:?} contains control character U+{code:04X} at byte {index}")]
    ControlCharacter {
        /// The rejected id.
        id: String,
        /// Byte offset of the first control character.
        index: usize,
        /// The code point of that character.
        code: u32,
    },
    /// The id was longer than [`MAX_STREAM_ID_BYTES`].
    #[error("stream id starting {prefix:?} is {len} bytes long; the maximum is {max}")]
    TooLong {
        /// The first characters of the rejected id.
        prefix: String,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// The name of an event stream, e.g. `account-42`.
///
/// Valid by construction: non-empty, not whitespace-only, no leading or
/// trailing whitespace, no control characters, at most
/// [`MAX_STREAM_ID_BYTES`] bytes. Cloning is cheap (a reference count).
///
/// ```
/// use eventcore::{InvalidStreamId, StreamId};
///
/// let id = StreamId::new("account-42")?;
/// assert_eq!(id.as_str(), "account-42");
/// assert!(matches!(StreamId::new("  "), Err(InvalidStreamId::WhitespaceOnly { .. })));
/// # Ok::<(), InvalidStreamId>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(Arc<str>);

impl StreamId {
    /// Validates `id` and wraps it.
    pub fn new(id: impl AsRef<str>) -> Result<Self, InvalidStreamId> {
        let id = id.as_ref();
        validate_stream_id(id)?;
        Ok(StreamId(Arc::from(id)))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn validate_stream_id(id: &str) -> Result<(), InvalidStreamId> {
    if id.is_empty() {
        return Err(InvalidStreamId::Empty);
    }
    if id.len() > MAX_STREAM_ID_BYTES {
        let mut end = 32.min(id.len());
        while !id.is_char_boundary(end) {
            end -= 1;
        }
        return Err(InvalidStreamId::TooLong {
            prefix: id[..end].to_owned(),
            len: id.len(),
            max: MAX_STREAM_ID_BYTES,
        });
    }
    if let Some((index, c)) = id.char_indices().find(|(_, c)| c.is_control()) {
        return Err(InvalidStreamId::ControlCharacter {
            id: id.to_owned(),
            index,
            code: u32::from(c),
        });
    }
    if id.trim().is_empty() {
        return Err(InvalidStreamId::WhitespaceOnly { id: id.to_owned() });
    }
    if id.trim() != id {
        return Err(InvalidStreamId::SurroundingWhitespace { id: id.to_owned() });
    }
    Ok(())
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamId({:?})", &*self.0)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for StreamId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for StreamId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for StreamId {
    type Error = InvalidStreamId;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        StreamId::new(value)
    }
}

impl TryFrom<String> for StreamId {
    type Error = InvalidStreamId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        StreamId::new(value)
    }
}

impl Serialize for StreamId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        StreamId::new(&*raw).map_err(serde::de::Error::custom)
    }
}

/// Builds a UUIDv7 from a millisecond timestamp and 10 bytes of entropy that
/// the caller supplies, so the core never draws randomness of its own.
pub(crate) fn uuid_v7(unix_millis: u64, entropy: [u8; 10]) -> Uuid {
    uuid::Builder::from_unix_timestamp_millis(unix_millis, &entropy).into_uuid()
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps an existing UUID.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                $name(uuid)
            }

            /// A UUIDv7 from a timestamp and caller-supplied entropy: time-ordered,
            /// and deterministic when the entropy is.
            ///
            /// A UUIDv7 holds 74 random bits, so not all 80 bits given are kept:
            /// the high nibble of `entropy[0]` and the two high bits of
            /// `entropy[2]` are replaced by the version and variant. Put
            /// counters or other distinguishing bits in bytes 3 to 9.
            pub fn v7(now: crate::Time, entropy: [u8; 10]) -> Self {
                $name(uuid_v7(now.as_unix_millis(), entropy))
            }

            /// The UUID inside.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                $name(uuid)
            }
        }
    };
}

uuid_id!(
    /// Identity of one stored event; a UUIDv7 so ids sort by creation time.
    ///
    /// ```
    /// use eventcore::{EventId, Time};
    /// let id = EventId::v7(Time::from_unix_millis(1_700_000_000_000), [7; 10]);
    /// assert_eq!(id.as_uuid().get_version_num(), 7);
    /// ```
    EventId
);
uuid_id!(
    /// Identity of one command execution, shared by all its attempts. The
    /// store records it with the append, which is what makes re-sending an
    /// append after an unknown outcome safe.
    ///
    /// ```
    /// use eventcore::{CommandId, Time};
    /// let a = CommandId::v7(Time::from_unix_millis(1), [1; 10]);
    /// let b = CommandId::v7(Time::from_unix_millis(1), [1; 10]);
    /// assert_eq!(a, b, "same inputs, same id: no hidden randomness");
    /// ```
    CommandId
);
uuid_id!(
    /// Groups every event caused, directly or not, by one user request.
    ///
    /// ```
    /// use eventcore::{CorrelationId, Time};
    /// let id = CorrelationId::v7(Time::ZERO, [0; 10]);
    /// assert_eq!(id, CorrelationId::from_uuid(id.as_uuid()));
    /// ```
    CorrelationId
);
uuid_id!(
    /// The id of whatever caused a command: usually an event id or the id of
    /// the command that triggered it.
    ///
    /// ```
    /// use eventcore::{CausationId, Time};
    /// let id = CausationId::v7(Time::ZERO, [0; 10]);
    /// assert_eq!(id.as_uuid().get_version_num(), 7);
    /// ```
    CausationId
);

/// Identifies one request a machine emitted, so that the driver may deliver
/// responses late, out of order or twice: the machine applies a response only
/// if its id is the one it is waiting for.
///
/// ```
/// use eventcore::RequestId;
/// assert!(RequestId::new(1) < RequestId::new(2));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId(u64);

impl RequestId {
    /// Wraps a raw id.
    pub const fn new(raw: u64) -> Self {
        RequestId(raw)
    }

    /// The raw id.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "req#{}", self.0)
    }
}

/// Hands out a machine's request ids in order, the first being 1: the one
/// counter every machine uses.
///
/// ```
/// use eventcore::{RequestId, RequestIds};
/// let mut ids = RequestIds::default();
/// assert_eq!(ids.issued(), 0);
/// assert_eq!(ids.next_id(), RequestId::new(1));
/// assert_eq!(ids.next_id(), RequestId::new(2));
/// assert_eq!(ids.issued(), 2);
/// ```
#[derive(Clone, Debug, Default)]
pub struct RequestIds {
    issued: u64,
}

impl RequestIds {
    /// The next id.
    pub fn next_id(&mut self) -> RequestId {
        self.issued += 1;
        RequestId(self.issued)
    }

    /// How many ids were handed out so far.
    pub fn issued(&self) -> u64 {
        self.issued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_id_rules_each_have_their_own_error() {
        assert_eq!(StreamId::new(""), Err(InvalidStreamId::Empty));
        assert!(matches!(
            StreamId::new(" \t "),
            Err(InvalidStreamId::ControlCharacter { .. })
        ));
        assert!(matches!(
            StreamId::new("   "),
            Err(InvalidStreamId::WhitespaceOnly { .. })
        ));
        assert!(matches!(
            StreamId::new(" a"),
            Err(InvalidStreamId::SurroundingWhitespace { .. })
        ));
        assert!(matches!(
            StreamId::new("a\0b"),
            Err(InvalidStreamId::ControlCharacter { index: 1, code: 0, .. })
        ));
        let long = "é".repeat(200);
        assert!(matches!(
            StreamId::new(&long),
            Err(InvalidStreamId::TooLong { len: 400, max: 255, .. })
        ));
        assert!(StreamId::new("a".repeat(255)).is_ok());
        assert!(StreamId::new("tenant/ç/order-1").is_ok());
    }

    #[test]
    fn stream_id_deserialization_validates() {
        let err = serde_json::from_str::<StreamId>("\"\"");
        assert!(err.is_err());
        let ok: StreamId = serde_json::from_str("\"a-1\"").expect("valid");
        assert_eq!(ok.as_str(), "a-1");
    }

    #[test]
    fn uuid_v7_is_time_ordered() {
        let a = EventId::v7(crate::Time::from_unix_millis(1), [255; 10]);
        let b = EventId::v7(crate::Time::from_unix_millis(2), [0; 10]);
        assert!(a < b);
        assert_eq!(a.as_uuid().get_version_num(), 7);
    }
}
