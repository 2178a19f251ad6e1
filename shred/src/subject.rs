//! [`SubjectId`]: the person (or other data subject) a piece of personal
//! data belongs to, validated once at construction.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::sync::Arc;

/// The longest subject id accepted, in bytes.
pub const MAX_SUBJECT_ID_BYTES: usize = 255;

/// Why a string is not a valid [`SubjectId`].
///
/// ```
/// use eventcore_shred::{InvalidSubjectId, SubjectId};
/// assert_eq!(SubjectId::new(""), Err(InvalidSubjectId::Empty));
/// assert!(matches!(SubjectId::new(" c-1"), Err(InvalidSubjectId::SurroundingWhitespace { .. })));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidSubjectId {
    /// The id was the empty string.
    #[error("subject id is empty")]
    Empty,
    /// The id started or ended with whitespace (or was only whitespace),
    /// which makes look-alike ids.
    #[error("subject id {id:?} starts or ends with whitespace")]
    SurroundingWhitespace {
        /// The rejected id.
        id: String,
    },
    /// The id contained a control character (including NUL, which
    /// PostgreSQL text cannot store).
    #[error("subject id {id:?} contains control character U+{code:04X} at byte {index}")]
    ControlCharacter {
        /// The rejected id.
        id: String,
        /// Byte offset of the first control character.
        index: usize,
        /// The code point of that character.
        code: u32,
    },
    /// The id was longer than [`MAX_SUBJECT_ID_BYTES`].
    #[error("subject id is {len} bytes long; the maximum is {max}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Whose personal data a [`Personal`](crate::Personal) field holds: the key
/// that seals it is this subject's, and forgetting the subject makes every
/// field naming it unreadable.
///
/// The id is stored **in the clear** (in every sealed field, in the key
/// table and in the list of forgotten subjects), so it must not itself be
/// personal data: use a random or internal id (`customer-8f3a…`), never an
/// e-mail address or a name. Valid by construction: non-empty, no leading
/// or trailing whitespace, no control characters, at most
/// [`MAX_SUBJECT_ID_BYTES`] bytes. Cloning is cheap (a reference count).
///
/// ```
/// use eventcore_shred::SubjectId;
/// let alice = SubjectId::new("customer-42")?;
/// assert_eq!(alice.as_str(), "customer-42");
/// assert_eq!(alice.to_string(), "customer-42");
/// # Ok::<(), eventcore_shred::InvalidSubjectId>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubjectId(Arc<str>);

impl SubjectId {
    /// Validates `id` and wraps it.
    pub fn new(id: impl AsRef<str>) -> Result<Self, InvalidSubjectId> {
        let id = id.as_ref();
        validate(id)?;
        Ok(SubjectId(Arc::from(id)))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn validate(id: &str) -> Result<(), InvalidSubjectId> {
    if id.is_empty() {
        return Err(InvalidSubjectId::Empty);
    }
    if id.len() > MAX_SUBJECT_ID_BYTES {
        return Err(InvalidSubjectId::TooLong {
            len: id.len(),
            max: MAX_SUBJECT_ID_BYTES,
        });
    }
    if let Some((index, c)) = id.char_indices().find(|(_, c)| c.is_control()) {
        return Err(InvalidSubjectId::ControlCharacter {
            id: id.to_owned(),
            index,
            code: u32::from(c),
        });
    }
    if id.trim() != id {
        return Err(InvalidSubjectId::SurroundingWhitespace { id: id.to_owned() });
    }
    Ok(())
}

impl fmt::Debug for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubjectId({:?})", &*self.0)
    }
}

impl fmt::Display for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for SubjectId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SubjectId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        SubjectId::new(&*raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_like_stream_ids() {
        assert!(SubjectId::new("customer-1").is_ok());
        assert_eq!(SubjectId::new(""), Err(InvalidSubjectId::Empty));
        assert!(matches!(
            SubjectId::new("   "),
            Err(InvalidSubjectId::SurroundingWhitespace { .. })
        ));
        assert!(matches!(
            SubjectId::new("a\u{0}b"),
            Err(InvalidSubjectId::ControlCharacter { index: 1, code: 0, .. })
        ));
        assert!(matches!(
            SubjectId::new("x".repeat(256)),
            Err(InvalidSubjectId::TooLong { len: 256, .. })
        ));
        assert!(SubjectId::new("x".repeat(255)).is_ok());
    }

    #[test]
    fn deserializing_checks_the_id() {
        assert!(serde_json::from_str::<SubjectId>("\"\"").is_err());
        let id: SubjectId = serde_json::from_str("\"c-1\"").expect("valid id");
        assert_eq!(id.as_str(), "c-1");
    }
}
