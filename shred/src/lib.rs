//! # eventcore-shred
//!
//! Crypto-shredding for EventCore: forgetting a person in an append-only
//! log. Fields of personal data are [`Personal<T>`] values naming their
//! data subject; they are stored encrypted (XChaCha20-Poly1305) under that
//! subject's own data key, and [`KeyStore::forget`] deletes the key. The
//! events stay; their personal fields read back as
//! [`Personal::Forgotten`], a value, never a decode error.
//!
//! A service hands a [`PersonalData`] to the tokio executor
//! (`Executor::with_codec_context`), the projection runner and its
//! subscribers' `BatchDecoder`s: they run the passes below around every
//! decode and encode, so commands, views, snapshots and projections use
//! `Personal` fields with no sealing or opening of their own.
//!
//! serde passes no context, so the key ring travels in a thread-local
//! [`Scope`]. A driver works in two passes around the async key store:
//!
//! - writing: [`subjects_of_event`] names the subjects an event's fields
//!   belong to; [`ring_for_writing`] gets or creates their keys (refusing
//!   forgotten subjects); [`seal_event`] encodes with the ring installed;
//!   the sealed event is appended as any other.
//! - reading: [`subjects_in_events`] (or [`subjects_in_payload`]) scans
//!   stored payloads for sealed fields; [`ring_for_reading`] fetches those
//!   keys (a missing key means forgotten); [`open_recorded`] decodes with
//!   the ring installed.
//!
//! ```
//! use eventcore::{Codec, Event};
//! use eventcore_shred::{open_event, ring_for_reading, ring_for_writing, seal_event, subjects_in_payload,
//!     subjects_of_event, KeyStore, MemoryKeyStore, NonceSource, Personal, SubjectId};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! enum CustomerEvent { Registered { email: Personal<String>, plan: String } }
//! impl Event for CustomerEvent {}
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let keys = MemoryKeyStore::new();
//! let mut nonces = NonceSource::from_os()?;
//! let alice = SubjectId::new("customer-42")?;
//! let event = CustomerEvent::Registered {
//!     email: Personal::new(alice.clone(), "alice@example.com".into()),
//!     plan: "gold".into(),
//! };
//!
//! // Writing: collect the subjects, get their keys, seal.
//! let ring = ring_for_writing(&keys, &subjects_of_event(&event)?).await?;
//! let sealed = seal_event(&event, &ring, &mut nonces, Codec::Json)?;
//! assert!(!sealed.payload.as_json().contains("alice@example.com"));
//!
//! // Reading: scan, fetch, open.
//! let ring = ring_for_reading(&keys, &subjects_in_payload(&sealed.payload)?).await?;
//! let back: CustomerEvent = open_event(sealed.event_type.as_str(), 1, &sealed.payload, &ring)?;
//! assert_eq!(back, event);
//!
//! // Forgetting: the event still decodes; the email is gone.
//! keys.forget(&alice).await?;
//! let ring = ring_for_reading(&keys, &subjects_in_payload(&sealed.payload)?).await?;
//! let CustomerEvent::Registered { email, plan } = open_event(sealed.event_type.as_str(), 1, &sealed.payload, &ring)?;
//! assert!(email.is_forgotten());
//! assert_eq!(plan, "gold");
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(demo()).expect("demo");
//! ```
//!
//! What this guarantees and what it does not (backups, replicas, logs,
//! snapshots): `docs/data-lifecycle.md` in the repository.

mod codec;
mod context;
mod error;
mod key;
mod keystore;
mod personal;
#[cfg(feature = "postgres")]
mod postgres;
mod scope;
mod subject;

pub use codec::{
    open_event, open_recorded, placeholders_in_payload, seal_event, subjects_in_events, subjects_in_payload,
    subjects_of_event,
};
pub use context::PersonalData;
pub use error::{KeyStoreError, OpenEventError, OpenPayloadError, PersonalError, SealEventError};
pub use key::{DataKey, KeyLookup, KeyRing, NonceSource, KEY_BYTES, NONCE_BYTES};
pub use keystore::{ring_for_reading, ring_for_writing, DynKeyStore, KeyStore, MemoryKeyStore};
pub use personal::{Personal, SEALED_TAG};
#[cfg(feature = "postgres")]
pub use postgres::PgKeyStore;
pub use scope::Scope;
pub use subject::{InvalidSubjectId, SubjectId, MAX_SUBJECT_ID_BYTES};
