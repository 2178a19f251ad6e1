//! The two passes a driver follows, as plain synchronous functions: name
//! the subjects, seal; scan the subjects, open.

use crate::error::{OpenEventError, OpenPayloadError, PersonalError, SealEventError};
use crate::key::{KeyRing, NonceSource};
use crate::personal::SEALED_TAG;
use crate::{Scope, SubjectId};
use eventcore::{Codec, DecodeError, EncodeError, EncodedEvent, Event, Payload, RecordedEvent};
use serde::Serialize;
use std::collections::BTreeSet;

/// The subjects whose keys sealing `event` needs: every subject a
/// [`Personal::Known`](crate::Personal::Known) field of it names
/// (serialized once in a collecting scope; nothing is encrypted).
/// Forgotten fields need no key and are not named.
///
/// ```
/// use eventcore_shred::{subjects_of_event, Personal, SubjectId};
/// #[derive(serde::Serialize)]
/// struct Married { a: Personal<String>, b: Personal<String>, city: String }
/// let (ann, bo) = (SubjectId::new("ann")?, SubjectId::new("bo")?);
/// let event = Married { a: Personal::new(ann.clone(), "Ann".into()), b: Personal::new(bo.clone(), "Bo".into()), city: "Oslo".into() };
/// assert_eq!(subjects_of_event(&event)?, [ann, bo].into());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn subjects_of_event<E: Serialize + ?Sized>(event: &E) -> Result<BTreeSet<SubjectId>, SealEventError> {
    let scope = Scope::collect();
    match serde_json::to_writer(std::io::sink(), event) {
        Ok(()) => Ok(scope.subjects()),
        Err(error) => Err(match scope.take_error() {
            Some(cause) => SealEventError::Personal(cause),
            None => SealEventError::Encode(EncodeError::from(error)),
        }),
    }
}

/// Encodes `event` as [`Event::encode_as`] does, its personal fields sealed
/// with `ring`'s keys and nonces from `nonces`. `ring` must hold a key for
/// every subject [`subjects_of_event`] names; a subject the ring knows as
/// forgotten is refused ([`PersonalError::SubjectForgotten`]).
///
/// ```
/// use eventcore::{Codec, Event};
/// use eventcore_shred::{seal_event, DataKey, KeyRing, NonceSource, Personal, PersonalError, SealEventError, SubjectId};
/// #[derive(serde::Serialize, serde::Deserialize)]
/// enum E { Renamed { name: Personal<String> } }
/// impl Event for E {}
/// let ann = SubjectId::new("ann")?;
/// let event = E::Renamed { name: Personal::new(ann.clone(), "Ann".into()) };
/// let mut nonces = NonceSource::from_seed([7; 32]);
///
/// let ring = KeyRing::new().with_key(ann.clone(), DataKey::from_bytes(1, [1; 32]));
/// let sealed = seal_event(&event, &ring, &mut nonces, Codec::Json)?;
/// assert_eq!(sealed.event_type.as_str(), "Renamed");
/// assert!(sealed.payload.as_json().starts_with(r#"{"name":{"$personal":{"subject":"ann","key":1,"nonce":"#));
///
/// let forgotten = KeyRing::new().with_forgotten(ann.clone());
/// assert!(matches!(
///     seal_event(&event, &forgotten, &mut nonces, Codec::Json),
///     Err(SealEventError::Personal(PersonalError::SubjectForgotten { .. }))
/// ));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn seal_event<E: Event>(
    event: &E,
    ring: &KeyRing,
    nonces: &mut NonceSource,
    codec: Codec,
) -> Result<EncodedEvent, SealEventError> {
    let scope = Scope::seal(ring, nonces);
    event.encode_as(codec).map_err(|error| match scope.take_error() {
        Some(cause) => SealEventError::Personal(cause),
        None => SealEventError::Encode(error),
    })
}

/// The subjects whose keys opening `payload` needs: the subject of every
/// sealed field in it (forgotten markers need none). A scan of the stored
/// form, without the event's type.
///
/// ```
/// use eventcore::Payload;
/// use eventcore_shred::{subjects_in_payload, SubjectId};
/// let payload = Payload::from_trusted_json(
///     r#"{"plan":"gold","email":{"$personal":{"subject":"c-1","key":1,"nonce":"","ct":""}},
///        "old":{"$personal":{"subject":"c-0","forgotten":true}}}"#,
/// );
/// assert_eq!(subjects_in_payload(&payload)?, [SubjectId::new("c-1")?].into());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn subjects_in_payload(payload: &Payload) -> Result<BTreeSet<SubjectId>, PersonalError> {
    scan_payload(payload, Want::Keyed)
}

/// [`subjects_in_payload`] over several events (a page of a read): one key
/// fetch serves them all.
///
/// ```
/// use eventcore_shred::subjects_in_events;
/// assert!(subjects_in_events(&[])?.is_empty());
/// # Ok::<(), eventcore_shred::PersonalError>(())
/// ```
pub fn subjects_in_events<'a>(
    events: impl IntoIterator<Item = &'a RecordedEvent>,
) -> Result<BTreeSet<SubjectId>, PersonalError> {
    let mut subjects = BTreeSet::new();
    for event in events {
        subjects.append(&mut subjects_in_payload(&event.payload)?);
    }
    Ok(subjects)
}

/// Which sealed fields a scan names.
#[derive(Clone, Copy)]
enum Want {
    /// Those that need a key to open (sealed or placeholders).
    Keyed,
    /// Placeholders only.
    Placeholders,
}

fn scan(value: &serde_json::Value, want: Want, subjects: &mut BTreeSet<SubjectId>) -> Result<(), PersonalError> {
    match value {
        serde_json::Value::Object(map) => {
            if let (1, Some(sealed)) = (map.len(), map.get(SEALED_TAG)) {
                let subject = sealed
                    .get("subject")
                    .and_then(serde_json::Value::as_str)
                    .ok_or_else(|| PersonalError::Malformed("a sealed field without a subject".into()))?;
                let subject = SubjectId::new(subject).map_err(|e| PersonalError::Malformed(e.to_string()))?;
                let flag = |name: &str| sealed.get(name).and_then(serde_json::Value::as_bool) == Some(true);
                let named = match want {
                    Want::Keyed => !flag("forgotten"),
                    Want::Placeholders => flag("pending"),
                };
                if named {
                    subjects.insert(subject);
                }
                return Ok(());
            }
            map.values().try_for_each(|v| scan(v, want, subjects))
        }
        serde_json::Value::Array(items) => items.iter().try_for_each(|v| scan(v, want, subjects)),
        _ => Ok(()),
    }
}

/// The subjects of the placeholders in `payload`: the fields an execute
/// scope ([`Scope::execute`](crate::Scope::execute)) wrote while it lacked
/// their keys. A payload about to be stored must hold none; a driver
/// checks with this before it sends an append.
///
/// ```
/// use eventcore::Payload;
/// use eventcore_shred::{placeholders_in_payload, SubjectId};
/// let draft = Payload::from_trusted_json(r#"{"email":{"$personal":{"subject":"c-1","pending":true}},"plan":"gold"}"#);
/// assert_eq!(placeholders_in_payload(&draft)?, [SubjectId::new("c-1")?].into());
/// let sealed = Payload::from_trusted_json(r#"{"email":{"$personal":{"subject":"c-1","key":1,"nonce":"","ct":""}}}"#);
/// assert!(placeholders_in_payload(&sealed)?.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn placeholders_in_payload(payload: &Payload) -> Result<BTreeSet<SubjectId>, PersonalError> {
    scan_payload(payload, Want::Placeholders)
}

fn scan_payload(payload: &Payload, want: Want) -> Result<BTreeSet<SubjectId>, PersonalError> {
    // Most payloads hold no sealed field: a substring search of a JSON
    // payload's text spares them a parse (serde_json and PostgreSQL's jsonb
    // write the tag and the flag unescaped). Not for MessagePack, whose
    // JSON rendering would be computed and kept in the payload.
    if payload.codec() == Codec::Json {
        let marker = match want {
            Want::Keyed => "\"$personal\"",
            Want::Placeholders => "\"pending\"",
        };
        if !payload.as_json().contains(marker) {
            return Ok(BTreeSet::new());
        }
    }
    let value = payload
        .to_value()
        .map_err(|e| PersonalError::Malformed(format!("the payload does not parse: {e}")))?;
    let mut subjects = BTreeSet::new();
    scan(&value, want, &mut subjects)?;
    Ok(subjects)
}

/// Decodes a stored event's type, version and payload into `E` as
/// [`Event::decode`] does, its sealed fields opened with `ring` (fields of
/// subjects the ring knows as forgotten read as
/// [`Personal::Forgotten`](crate::Personal::Forgotten)). A field that does
/// not open is [`OpenPayloadError::Personal`] with the typed cause.
///
/// ```
/// use eventcore::{Codec, Event};
/// use eventcore_shred::{open_event, seal_event, DataKey, KeyRing, NonceSource, Personal, SubjectId};
/// #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
/// enum E { Renamed { name: Personal<String> } }
/// impl Event for E {}
/// let ann = SubjectId::new("ann")?;
/// let event = E::Renamed { name: Personal::new(ann.clone(), "Ann".into()) };
/// let ring = KeyRing::new().with_key(ann.clone(), DataKey::from_bytes(1, [1; 32]));
/// let sealed = seal_event(&event, &ring, &mut NonceSource::from_seed([7; 32]), Codec::Json)?;
///
/// assert_eq!(open_event::<E>("Renamed", 1, &sealed.payload, &ring)?, event);
/// let after_forget = KeyRing::new().with_forgotten(ann.clone());
/// assert_eq!(
///     open_event::<E>("Renamed", 1, &sealed.payload, &after_forget)?,
///     E::Renamed { name: Personal::Forgotten { subject: ann } }
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn open_event<E: Event>(
    event_type: &str,
    schema_version: u32,
    payload: &Payload,
    ring: &KeyRing,
) -> Result<E, OpenPayloadError> {
    let scope = Scope::open(ring);
    E::decode(event_type, schema_version, payload).map_err(|kind| match scope.take_error() {
        Some(cause) => OpenPayloadError::Personal(cause),
        None => OpenPayloadError::Decode(kind),
    })
}

/// [`open_event`] for a recorded event, naming the event on failure (as
/// `eventcore::decode_recorded` does).
///
/// ```
/// # use eventcore::*;
/// # use std::sync::Arc;
/// use eventcore_shred::{open_recorded, KeyRing, OpenEventError, Personal, PersonalError};
/// #[derive(Debug, serde::Serialize, serde::Deserialize)]
/// enum E { Renamed { name: Personal<String> } }
/// impl Event for E {}
/// let recorded = RecordedEvent {
///     event_type: EventType::new("Renamed")?,
///     payload: Payload::from_trusted_json(r#"{"name":{"$personal":{"subject":"ann","key":1,"nonce":"","ct":""}}}"#),
/// #   event_id: EventId::v7(Time::ZERO, [1; 10]),
/// #   stream_id: StreamId::new("s")?,
/// #   version: StreamVersion::new(1),
/// #   position: GlobalPosition::new(1),
/// #   schema_version: 1,
/// #   metadata: Arc::new(EventMetadata::new(CommandId::v7(Time::ZERO, [0; 10]), Time::ZERO)),
///     // ...
/// };
/// // The ring was not given `ann`: an error, never "forgotten".
/// let error = open_recorded::<E>(&recorded, &KeyRing::new()).unwrap_err();
/// assert!(matches!(error, OpenEventError::Personal { cause: PersonalError::KeyNotInRing { .. }, .. }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn open_recorded<E: Event>(event: &RecordedEvent, ring: &KeyRing) -> Result<E, OpenEventError> {
    let scope = Scope::open(ring);
    let result = eventcore::decode_recorded::<E>(event);
    let cause = scope.take_error();
    drop(scope);
    result.map_err(|at: DecodeError| match cause {
        Some(cause) => OpenEventError::Personal {
            at: Box::new(at),
            cause,
        },
        None => OpenEventError::Decode(Box::new(at)),
    })
}
