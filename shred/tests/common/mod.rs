//! What the shredding tests share: an event enum with personal fields, and
//! the two passes a driver makes around a key store.

#![allow(dead_code)] // each test file uses part of it

use eventcore::{Codec, EncodedEvent, Event};
use eventcore_shred::{
    open_event, ring_for_reading, ring_for_writing, seal_event, subjects_in_payload, subjects_of_event, KeyStore,
    NonceSource, OpenPayloadError, Personal, SubjectId,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Address {
    pub street: String,
    pub city: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CustomerEvent {
    Registered {
        customer: String,
        email: Personal<String>,
        name: Personal<String>,
        plan: String,
    },
    Moved {
        address: Personal<Address>,
    },
    Married {
        first: Personal<String>,
        second: Personal<String>,
    },
    Scored {
        score: Personal<i64>,
    },
}

impl Event for CustomerEvent {
    const NAMESPACE: &'static str = "customer";
}

pub fn subject(id: &str) -> SubjectId {
    SubjectId::new(id).expect("valid subject id")
}

pub fn registered(id: &str, email: &str, name: &str) -> CustomerEvent {
    CustomerEvent::Registered {
        customer: id.to_owned(),
        email: Personal::new(subject(id), email.to_owned()),
        name: Personal::new(subject(id), name.to_owned()),
        plan: "gold".to_owned(),
    }
}

/// The write pass: collect the subjects, get or create their keys, seal.
pub async fn seal<K: KeyStore>(
    keys: &K,
    event: &CustomerEvent,
    nonces: &mut NonceSource,
    codec: Codec,
) -> Result<EncodedEvent, Box<dyn std::error::Error>> {
    let ring = ring_for_writing(keys, &subjects_of_event(event)?).await?;
    Ok(seal_event(event, &ring, nonces, codec)?)
}

/// The read pass: scan the payload, fetch the keys, open.
pub async fn open<K: KeyStore>(keys: &K, encoded: &EncodedEvent) -> Result<CustomerEvent, OpenPayloadError> {
    let subjects = subjects_in_payload(&encoded.payload).map_err(OpenPayloadError::Personal)?;
    let ring = ring_for_reading(keys, &subjects).await.expect("key store answers");
    open_event(
        encoded.event_type.as_str(),
        encoded.schema_version,
        &encoded.payload,
        &ring,
    )
}
