//! [`Personal<T>`]: a field of personal data, sealed when serialized and
//! opened (or found forgotten) when deserialized.

use crate::error::PersonalError;
use crate::key::{decrypt, encrypt, NONCE_BYTES};
use crate::scope::{self, InsidePersonal, ReadAction, WriteAction};
use crate::SubjectId;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::de::{DeserializeOwned, Error as _};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use zeroize::Zeroize;

/// The key of the one-entry map a sealed field is stored as.
pub const SEALED_TAG: &str = "$personal";

/// A piece of personal data and the subject it belongs to.
///
/// Inside an event it is stored sealed, never in the clear:
///
/// ```json
/// {"$personal": {"subject": "customer-42", "key": 1, "nonce": "<base64>", "ct": "<base64>"}}
/// ```
///
/// `ct` is the value's JSON, encrypted with XChaCha20-Poly1305 under the
/// subject's data key; the subject id and key version are the associated
/// data, so a ciphertext copied into another subject's field does not
/// open. Serializing needs an encryption scope ([`seal_event`](crate::seal_event),
/// [`Scope::seal`](crate::Scope::seal)) and fails without one, so plaintext
/// is never written by accident. Deserializing needs a decryption scope
/// ([`open_recorded`](crate::open_recorded), [`Scope::open`](crate::Scope::open))
/// and yields [`Personal::Known`], or [`Personal::Forgotten`] once the
/// subject's key is deleted: a value the code folds like any other, never
/// a decode error.
///
/// `Debug` never prints the value, so an event logged with `{:?}` does not
/// leak it. A forgotten field serializes as
/// `{"$personal": {"subject": "…", "forgotten": true}}` (no key needed), so
/// state holding one can be stored again.
///
/// ```
/// use eventcore_shred::{Personal, SubjectId};
/// let email = Personal::new(SubjectId::new("customer-42")?, "alice@example.com".to_owned());
/// assert_eq!(email.known().map(String::as_str), Some("alice@example.com"));
/// assert_eq!(email.subject().as_str(), "customer-42");
/// assert_eq!(format!("{email:?}"), r#"Personal::Known { subject: "customer-42", value: <redacted> }"#);
///
/// let gone: Personal<String> = Personal::Forgotten { subject: SubjectId::new("customer-42")? };
/// assert!(gone.is_forgotten());
/// assert_eq!(gone.known(), None);
/// # Ok::<(), eventcore_shred::InvalidSubjectId>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Personal<T> {
    /// The value, readable.
    Known {
        /// Whose data it is.
        subject: SubjectId,
        /// The data.
        value: T,
    },
    /// The subject was forgotten: the value can no longer be read.
    Forgotten {
        /// Whose data it was.
        subject: SubjectId,
    },
}

impl<T> Personal<T> {
    /// `value`, belonging to `subject`.
    pub fn new(subject: SubjectId, value: T) -> Self {
        Personal::Known { subject, value }
    }

    /// Whose data it is (or was).
    pub fn subject(&self) -> &SubjectId {
        match self {
            Personal::Known { subject, .. } | Personal::Forgotten { subject } => subject,
        }
    }

    /// The value, unless forgotten.
    pub fn known(&self) -> Option<&T> {
        match self {
            Personal::Known { value, .. } => Some(value),
            Personal::Forgotten { .. } => None,
        }
    }

    /// The value, unless forgotten, by value.
    ///
    /// ```
    /// use eventcore_shred::{Personal, SubjectId};
    /// let name = Personal::new(SubjectId::new("c-1")?, "Ann".to_owned());
    /// assert_eq!(name.into_known().as_deref(), Some("Ann"));
    /// # Ok::<(), eventcore_shred::InvalidSubjectId>(())
    /// ```
    pub fn into_known(self) -> Option<T> {
        match self {
            Personal::Known { value, .. } => Some(value),
            Personal::Forgotten { .. } => None,
        }
    }

    /// Whether the subject was forgotten.
    pub fn is_forgotten(&self) -> bool {
        matches!(self, Personal::Forgotten { .. })
    }
}

impl<T> fmt::Debug for Personal<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Personal::Known { subject, .. } => {
                write!(
                    f,
                    "Personal::Known {{ subject: {:?}, value: <redacted> }}",
                    subject.as_str()
                )
            }
            Personal::Forgotten { subject } => write!(f, "Personal::Forgotten {{ subject: {:?} }}", subject.as_str()),
        }
    }
}

/// The stored form, written.
#[derive(Serialize)]
struct EnvelopeOut<'a> {
    #[serde(rename = "$personal")]
    personal: SealedOut<'a>,
}

#[derive(Serialize)]
struct SealedOut<'a> {
    subject: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    forgotten: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pending: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ct: Option<String>,
}

/// The stored form, read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeIn {
    #[serde(rename = "$personal")]
    personal: SealedIn,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedIn {
    subject: String,
    #[serde(default)]
    forgotten: bool,
    #[serde(default)]
    pending: bool,
    #[serde(default)]
    key: Option<u32>,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    ct: Option<String>,
}

impl<T: Serialize> Serialize for Personal<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let subject = self.subject();
        if InsidePersonal::active() {
            let error = scope::record(PersonalError::Nested { inner: subject.clone() });
            return Err(S::Error::custom(error));
        }
        let value = match self {
            Personal::Forgotten { subject } => {
                // Nothing secret: written in any scope, or none.
                return EnvelopeOut {
                    personal: SealedOut {
                        subject: subject.as_str(),
                        forgotten: true,
                        pending: false,
                        key: None,
                        nonce: None,
                        ct: None,
                    },
                }
                .serialize(serializer);
            }
            Personal::Known { value, .. } => value,
        };
        let fail = |error: PersonalError| S::Error::custom(scope::record(error));
        let (key, nonce) = match scope::on_write(subject).map_err(fail)? {
            WriteAction::Refuse => {
                return Err(fail(PersonalError::NoEncryptionScope {
                    subject: subject.clone(),
                }))
            }
            WriteAction::Collected => return serializer.serialize_unit(),
            // No plaintext: the driver encodes again once it has the key.
            WriteAction::Pending => {
                return EnvelopeOut {
                    personal: SealedOut {
                        subject: subject.as_str(),
                        forgotten: false,
                        pending: true,
                        key: None,
                        nonce: None,
                        ct: None,
                    },
                }
                .serialize(serializer)
            }
            WriteAction::Seal(key, nonce) => (key, nonce),
        };
        let mut plaintext = {
            let _inside = InsidePersonal::enter();
            serde_json::to_vec(value)
        }
        .map_err(|e| {
            // A nested `Personal` recorded its own, more precise, error.
            fail(PersonalError::Plaintext {
                subject: subject.clone(),
                reason: e.to_string(),
            })
        })?;
        let sealed = encrypt(subject, &key, &nonce, &plaintext);
        plaintext.zeroize();
        let ct = sealed.map_err(fail)?;
        EnvelopeOut {
            personal: SealedOut {
                subject: subject.as_str(),
                forgotten: false,
                pending: false,
                key: Some(key.version()),
                nonce: Some(BASE64.encode(nonce)),
                ct: Some(BASE64.encode(ct)),
            },
        }
        .serialize(serializer)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Personal<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let sealed = EnvelopeIn::deserialize(deserializer)?.personal;
        open(sealed).map_err(|error| D::Error::custom(scope::record(error)))
    }
}

fn open<T: DeserializeOwned>(sealed: SealedIn) -> Result<Personal<T>, PersonalError> {
    let subject = SubjectId::new(&sealed.subject).map_err(|e| PersonalError::Malformed(e.to_string()))?;
    if sealed.pending {
        return Err(PersonalError::Pending { subject });
    }
    if sealed.forgotten {
        return Ok(Personal::Forgotten { subject });
    }
    let key = match scope::on_read(&subject)? {
        ReadAction::Refuse => return Err(PersonalError::NoDecryptionScope { subject }),
        ReadAction::Forgotten => return Ok(Personal::Forgotten { subject }),
        ReadAction::Key(key) => key,
    };
    let (Some(version), Some(nonce), Some(ct)) = (sealed.key, sealed.nonce, sealed.ct) else {
        return Err(PersonalError::Malformed(format!(
            "the field of subject {subject} lacks its key version, nonce or ciphertext"
        )));
    };
    if version != key.version() {
        return Err(PersonalError::KeyVersion {
            subject,
            sealed: version,
            held: key.version(),
        });
    }
    let nonce: [u8; NONCE_BYTES] = BASE64
        .decode(nonce)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| {
            PersonalError::Malformed(format!(
                "the nonce of subject {subject}'s field is not 24 bytes of base64"
            ))
        })?;
    let ct = BASE64
        .decode(ct)
        .map_err(|e| PersonalError::Malformed(format!("the ciphertext of subject {subject}'s field: {e}")))?;
    let mut plaintext = decrypt(&subject, &key, &nonce, &ct)?;
    let value = serde_json::from_slice(&plaintext);
    plaintext.zeroize();
    match value {
        Ok(value) => {
            scope::note_opened(&subject);
            Ok(Personal::Known { subject, value })
        }
        // Not serde's message: it quotes the offending value ("invalid
        // type: string \"alice@…\""), and errors end up in logs.
        Err(e) => Err(PersonalError::Plaintext {
            subject,
            reason: format!(
                "the decrypted value does not fit the field's type ({:?} error at column {}; the value is not shown)",
                e.classify(),
                e.column()
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DataKey, KeyRing, NonceSource, Scope};

    fn subject(id: &str) -> SubjectId {
        SubjectId::new(id).expect("valid subject")
    }

    fn ring() -> KeyRing {
        KeyRing::new()
            .with_key(subject("alice"), DataKey::from_bytes(1, [1; 32]))
            .with_forgotten(subject("bob"))
    }

    #[test]
    fn nested_personal_data_is_refused() {
        let nested = Personal::new(subject("alice"), Personal::new(subject("alice"), 1));
        let scope = Scope::seal(&ring(), &mut NonceSource::from_seed([0; 32]));
        assert!(serde_json::to_string(&nested).is_err());
        assert_eq!(
            scope.take_error(),
            Some(PersonalError::Nested {
                inner: subject("alice")
            })
        );
    }

    #[test]
    fn new_data_of_a_forgotten_subject_is_refused() {
        let scope = Scope::seal(&ring(), &mut NonceSource::from_seed([0; 32]));
        assert!(serde_json::to_string(&Personal::new(subject("bob"), 1)).is_err());
        assert_eq!(
            scope.take_error(),
            Some(PersonalError::SubjectForgotten {
                subject: subject("bob")
            })
        );
    }

    #[test]
    fn a_forgotten_field_round_trips_without_a_key() {
        let gone: Personal<String> = Personal::Forgotten {
            subject: subject("zed"),
        };
        let text = serde_json::to_string(&gone).expect("no scope needed");
        assert_eq!(text, r#"{"$personal":{"subject":"zed","forgotten":true}}"#);
        let back: Personal<String> = serde_json::from_str(&text).expect("no scope needed");
        assert_eq!(back, gone);
    }

    #[test]
    fn reading_outside_a_scope_is_refused() {
        let sealed = {
            let _scope = Scope::seal(&ring(), &mut NonceSource::from_seed([0; 32]));
            serde_json::to_string(&Personal::new(subject("alice"), 1)).expect("sealed")
        };
        let error = serde_json::from_str::<Personal<i32>>(&sealed).expect_err("no scope");
        assert!(error.to_string().contains("outside a decryption scope"), "{error}");
    }
}
