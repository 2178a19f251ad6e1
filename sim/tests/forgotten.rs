//! The forgotten-data checks on hand-made stored events: each way personal
//! data can go wrong is played once and must be reported; honest sealing
//! and an honest forget pass.

use eventcore::{
    Codec, CommandId, EventId, EventMetadata, EventType, GlobalPosition, Payload, RecordedEvent, StreamId,
    StreamVersion, Time,
};
use eventcore_shred::{seal_event, NonceSource, Personal, SubjectId};
use eventcore_sim::personal::{check_stored, read_back, KeyVault};
use eventcore_sim::workload::customers::{name, subject, CustomerEvent};
use std::collections::BTreeSet;
use std::sync::Arc;

fn stored(event_type: &str, payload: Payload) -> RecordedEvent {
    RecordedEvent {
        event_id: EventId::v7(Time::ZERO, [1; 10]),
        stream_id: StreamId::new("cust-1").expect("valid"),
        version: StreamVersion::new(1),
        position: GlobalPosition::new(1),
        event_type: EventType::new(event_type).expect("valid"),
        schema_version: 1,
        payload,
        metadata: Arc::new(EventMetadata::new(CommandId::v7(Time::ZERO, [1; 10]), Time::ZERO)),
    }
}

/// Customer 1 registered under its subject's key, sealed and stored.
fn registered(vault: &mut KeyVault) -> (CustomerEvent, RecordedEvent) {
    vault.create(&subject(1));
    let written = CustomerEvent::Registered {
        name: Personal::new(subject(1), name(1, 0)),
        tier: 1,
    };
    let sealed = seal_event(
        &written,
        &vault.full_ring(),
        &mut NonceSource::from_seed([9; 32]),
        Codec::Json,
    )
    .expect("seals");
    (written, stored(sealed.event_type.as_str(), sealed.payload))
}

fn forgotten(vault: &KeyVault) -> BTreeSet<SubjectId> {
    vault.forgotten().cloned().collect()
}

#[test]
fn an_honest_seal_and_forget_pass() {
    let mut vault = KeyVault::new(1);
    let (written, event) = registered(&mut vault);
    assert!(check_stored(&event, &vault, Some(1)).is_empty());
    assert_eq!(
        read_back(&event, &written, &vault.full_ring(), &forgotten(&vault)),
        Ok(written.clone())
    );
    assert!(vault.forget(&subject(1), 5));
    let read = read_back(&event, &written, &vault.full_ring(), &forgotten(&vault)).expect("reads");
    assert_eq!(
        read,
        CustomerEvent::Registered {
            name: Personal::Forgotten { subject: subject(1) },
            tier: 1
        }
    );
    assert!(
        check_stored(&event, &vault, Some(1)).is_empty(),
        "sealed before the forget"
    );
}

#[test]
fn a_plaintext_in_a_stored_payload_is_caught() {
    let vault = KeyVault::new(1);
    let leaked = stored(
        "Registered",
        Payload::from_trusted_json(format!(r#"{{"Registered":{{"name":"{}","tier":1}}}}"#, name(1, 0))),
    );
    assert!(!check_stored(&leaked, &vault, None).is_empty());
}

#[test]
fn a_stored_placeholder_is_caught() {
    let vault = KeyVault::new(1);
    let draft = stored(
        "Registered",
        Payload::from_trusted_json(
            r#"{"Registered":{"name":{"$personal":{"subject":"subject-1","pending":true}},"tier":1}}"#,
        ),
    );
    assert!(!check_stored(&draft, &vault, None).is_empty());
}

#[test]
fn personal_data_sealed_after_the_forget_is_caught() {
    let mut vault = KeyVault::new(1);
    let (_, event) = registered(&mut vault);
    vault.forget(&subject(1), 5);
    assert!(!check_stored(&event, &vault, Some(6)).is_empty());
}

#[test]
fn a_forgotten_field_that_still_reads_is_caught() {
    // The reader still holds the key (a key store that kept it).
    let mut vault = KeyVault::keeping_forgotten_keys(1);
    let (written, event) = registered(&mut vault);
    vault.forget(&subject(1), 5);
    assert!(read_back(&event, &written, &vault.full_ring(), &forgotten(&vault)).is_err());
}

#[test]
fn a_field_of_another_subject_that_reads_as_forgotten_is_caught() {
    let mut vault = KeyVault::new(1);
    let (written, event) = registered(&mut vault);
    vault.create(&subject(2));
    vault.forget(&subject(2), 5);
    // The reader lost subject 1's key although only subject 2 was forgotten.
    let wrong_ring = eventcore_shred::KeyRing::new().with_forgotten(subject(1));
    assert!(read_back(&event, &written, &wrong_ring, &forgotten(&vault)).is_err());
}

#[test]
fn a_change_to_the_rest_of_the_event_is_caught() {
    let mut vault = KeyVault::new(1);
    let (written, event) = registered(&mut vault);
    let other_tier = CustomerEvent::Registered {
        name: Personal::new(subject(1), name(1, 0)),
        tier: 2,
    };
    assert_ne!(written, other_tier);
    assert!(read_back(&event, &other_tier, &vault.full_ring(), &forgotten(&vault)).is_err());
}

#[test]
fn a_payload_that_no_longer_decodes_is_caught() {
    let mut vault = KeyVault::new(1);
    let (written, mut event) = registered(&mut vault);
    let corrupt = event.payload.as_json().replace("\"ct\":\"", "\"ct\":\"AAAA");
    event.payload = Payload::from_trusted_json(corrupt);
    assert!(read_back(&event, &written, &vault.full_ring(), &forgotten(&vault)).is_err());
}
