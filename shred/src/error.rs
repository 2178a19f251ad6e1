//! The crate's errors: what went wrong with one personal field
//! ([`PersonalError`]), with a whole event ([`SealEventError`],
//! [`OpenEventError`]), and with a key store ([`KeyStoreError`]).

use crate::SubjectId;

/// Why one [`Personal`](crate::Personal) field could not be sealed or
/// opened. Never raised for a forgotten subject on the read side: that is
/// [`Personal::Forgotten`](crate::Personal::Forgotten), a value.
///
/// ```
/// use eventcore_shred::{PersonalError, SubjectId};
/// let e = PersonalError::Tampered { subject: SubjectId::new("c-1")? };
/// assert_eq!(
///     e.to_string(),
///     "personal data of subject c-1 does not authenticate: the ciphertext was altered, \
///      moved from another subject, or sealed under another key"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PersonalError {
    /// A `Personal` value was serialized with no encryption scope
    /// installed: refused, so that plaintext is never written by accident.
    #[error(
        "personal data of subject {subject} serialized outside an encryption scope \
         (encode through eventcore_shred::seal_event or inside a Scope::seal)"
    )]
    NoEncryptionScope {
        /// The field's subject.
        subject: SubjectId,
    },
    /// A sealed field was deserialized with no decryption scope installed.
    #[error(
        "personal data of subject {subject} deserialized outside a decryption scope \
         (decode through eventcore_shred::open_recorded or inside a Scope::open)"
    )]
    NoDecryptionScope {
        /// The field's subject.
        subject: SubjectId,
    },
    /// The scope's key ring was not given this subject: the driver did not
    /// fetch its key (`subjects_of_event` / `subjects_in_payload` name every
    /// subject to fetch).
    #[error("the key ring holds nothing for subject {subject}: its key was not fetched")]
    KeyNotInRing {
        /// The field's subject.
        subject: SubjectId,
    },
    /// New personal data of a forgotten subject: refused rather than
    /// sealed under a fresh key.
    #[error("subject {subject} is forgotten: no new personal data of theirs is written")]
    SubjectForgotten {
        /// The forgotten subject.
        subject: SubjectId,
    },
    /// A placeholder was read: the form an execute scope
    /// ([`Scope::execute`](crate::Scope::execute)) writes for a subject
    /// whose key it does not hold yet. It holds no data and must never be
    /// stored; the driver encodes again once it has the key.
    #[error(
        "a placeholder for personal data of subject {subject} was read: it is written while the \
         subject's key is fetched and never holds a value"
    )]
    Pending {
        /// The field's subject.
        subject: SubjectId,
    },
    /// A `Personal` value inside another one's value: refused (its key
    /// could not be found without opening the outer one first).
    #[error("personal data of subject {inner} nested inside personal data")]
    Nested {
        /// The inner field's subject.
        inner: SubjectId,
    },
    /// The value inside a `Personal` could not be turned into (or read back
    /// from) its JSON plaintext.
    #[error("personal data of subject {subject}: plaintext does not (de)serialize: {reason}")]
    Plaintext {
        /// The field's subject.
        subject: SubjectId,
        /// What serde said.
        reason: String,
    },
    /// Encryption itself failed (a plaintext beyond the cipher's limit).
    #[error("personal data of subject {subject} could not be encrypted")]
    Encrypt {
        /// The field's subject.
        subject: SubjectId,
    },
    /// The ciphertext did not authenticate under the subject's key: it was
    /// altered, copied from another subject's field, or sealed under
    /// another key. Never read as forgotten.
    #[error(
        "personal data of subject {subject} does not authenticate: the ciphertext was altered, \
         moved from another subject, or sealed under another key"
    )]
    Tampered {
        /// The subject the field names.
        subject: SubjectId,
    },
    /// The field was sealed under a key version the ring's key is not.
    #[error(
        "personal data of subject {subject} is sealed under key version {sealed}; the key ring holds version {held}"
    )]
    KeyVersion {
        /// The field's subject.
        subject: SubjectId,
        /// The version the field names.
        sealed: u32,
        /// The version of the key held.
        held: u32,
    },
    /// The sealed form itself is malformed (bad base64, a nonce of the
    /// wrong length, missing parts, an invalid subject id).
    #[error("sealed personal data is malformed: {0}")]
    Malformed(String),
}

/// Why an event could not be sealed ([`seal_event`](crate::seal_event)) or
/// its subjects collected ([`subjects_of_event`](crate::subjects_of_event)).
///
/// ```
/// use eventcore_shred::{PersonalError, SealEventError, SubjectId};
/// let e = SealEventError::Personal(PersonalError::SubjectForgotten { subject: SubjectId::new("c-1")? });
/// assert_eq!(e.to_string(), "subject c-1 is forgotten: no new personal data of theirs is written");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealEventError {
    /// A personal field could not be sealed.
    #[error(transparent)]
    Personal(PersonalError),
    /// The event itself did not encode.
    #[error("event could not be encoded")]
    Encode(#[source] eventcore::EncodeError),
}

/// Why a stored event could not be opened
/// ([`open_recorded`](crate::open_recorded)). A forgotten subject is not
/// one of them: its fields decode as
/// [`Personal::Forgotten`](crate::Personal::Forgotten).
///
/// ```
/// use eventcore_shred::OpenEventError;
/// fn is_tampering(e: &OpenEventError) -> bool {
///     matches!(e, OpenEventError::Personal { cause: eventcore_shred::PersonalError::Tampered { .. }, .. })
/// }
/// # let _ = is_tampering;
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenEventError {
    /// A personal field could not be opened; `at` says where the event is
    /// (its `kind` carries serde's path to the field).
    #[error("{at}")]
    Personal {
        /// The event's place and serde's account of the failure.
        at: Box<eventcore::DecodeError>,
        /// What was wrong with the field.
        #[source]
        cause: PersonalError,
    },
    /// The event did not decode for another reason.
    #[error(transparent)]
    Decode(Box<eventcore::DecodeError>),
}

/// Why a payload could not be opened ([`open_event`](crate::open_event)):
/// [`OpenEventError`] without the event's place.
///
/// ```
/// use eventcore_shred::{OpenPayloadError, PersonalError, SubjectId};
/// let e = OpenPayloadError::Personal(PersonalError::KeyNotInRing { subject: SubjectId::new("c-1")? });
/// assert_eq!(e.to_string(), "the key ring holds nothing for subject c-1: its key was not fetched");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenPayloadError {
    /// A personal field could not be opened.
    #[error(transparent)]
    Personal(PersonalError),
    /// The event did not decode for another reason.
    #[error(transparent)]
    Decode(eventcore::DecodeErrorKind),
}

/// Why a [`KeyStore`](crate::KeyStore) could not answer.
///
/// ```
/// use eventcore_shred::{KeyStoreError, SubjectId};
/// let e = KeyStoreError::SubjectForgotten { subject: SubjectId::new("c-1")? };
/// assert_eq!(e.to_string(), "subject c-1 is forgotten: no key is created for them again");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyStoreError {
    /// `get_or_create` for a forgotten subject: refused, so that new
    /// personal data of a forgotten person is never written under a fresh
    /// key.
    #[error("subject {subject} is forgotten: no key is created for them again")]
    SubjectForgotten {
        /// The forgotten subject.
        subject: SubjectId,
    },
    /// A fresh key could not be drawn from the operating system.
    #[error("no randomness for a new data key")]
    Randomness(#[source] getrandom::Error),
    /// The backing store could not be reached, timed out, or refused.
    #[error("key store unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The store holds something that is not a key (a row of the wrong
    /// length, an invalid subject id).
    #[error("key store holds a malformed record: {0}")]
    Malformed(String),
}
