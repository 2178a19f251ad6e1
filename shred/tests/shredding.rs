//! Crypto-shredding on the memory key store: sealed personal fields read
//! back as written, read as forgotten once the subject is forgotten, never
//! come back under a fresh key, and refuse tampering as a typed error.

mod common;

use common::{open, registered, seal, subject, Address, CustomerEvent};
use eventcore::{Codec, EncodedEvent, Payload};
use eventcore_shred::{
    open_event, subjects_of_event, DataKey, KeyRing, KeyStore, KeyStoreError, MemoryKeyStore, NonceSource,
    OpenPayloadError, Personal, PersonalError, SealEventError,
};
use proptest::prelude::*;

fn nonces() -> NonceSource {
    NonceSource::from_seed([42; 32])
}

#[tokio::test]
async fn a_sealed_event_reads_back_as_written_in_every_codec() {
    let keys = MemoryKeyStore::new();
    let event = registered("c-1", "alice@example.com", "Alice Liddell");
    for codec in Codec::ALL {
        let sealed = seal(&keys, &event, &mut nonces(), *codec).await.expect("sealed");
        assert_eq!(sealed.event_type.as_str(), "customer.Registered");
        let json = sealed.payload.as_json();
        assert!(
            !json.contains("alice@example.com") && !json.contains("Alice"),
            "{codec}: {json}"
        );
        assert!(
            json.contains(r#""plan":"gold""#),
            "fields that are not personal stay readable: {json}"
        );
        assert_eq!(open(&keys, &sealed).await.expect("opens"), event, "{codec}");
    }
}

#[tokio::test]
async fn two_fields_with_the_same_value_never_share_a_ciphertext() {
    let keys = MemoryKeyStore::new();
    let same = CustomerEvent::Married {
        first: Personal::new(subject("c-1"), "Smith".into()),
        second: Personal::new(subject("c-1"), "Smith".into()),
    };
    let sealed = seal(&keys, &same, &mut nonces(), Codec::Json).await.expect("sealed");
    let value = sealed.payload.to_value().expect("json");
    assert_ne!(value["first"]["$personal"]["ct"], value["second"]["$personal"]["ct"]);
    assert_ne!(
        value["first"]["$personal"]["nonce"],
        value["second"]["$personal"]["nonce"]
    );
}

#[tokio::test]
async fn after_forget_the_fields_read_as_forgotten_and_the_rest_still_decodes() {
    let keys = MemoryKeyStore::new();
    let alice = registered("c-1", "alice@example.com", "Alice");
    let bob = registered("c-2", "bob@example.com", "Bob");
    let sealed_alice = seal(&keys, &alice, &mut nonces(), Codec::Json).await.expect("sealed");
    let sealed_bob = seal(&keys, &bob, &mut nonces(), Codec::Json).await.expect("sealed");

    assert!(keys.forget(&subject("c-1")).await.expect("forgets"));
    assert!(
        !keys.forget(&subject("c-1")).await.expect("idempotent"),
        "already forgotten"
    );
    assert!(keys.is_forgotten(&subject("c-1")).await.expect("answers"));

    let CustomerEvent::Registered {
        customer,
        email,
        name,
        plan,
    } = open(&keys, &sealed_alice).await.expect("still decodes")
    else {
        panic!("another variant");
    };
    assert_eq!((customer.as_str(), plan.as_str()), ("c-1", "gold"));
    assert_eq!(
        email,
        Personal::Forgotten {
            subject: subject("c-1")
        }
    );
    assert_eq!(
        name,
        Personal::Forgotten {
            subject: subject("c-1")
        }
    );
    assert_eq!(
        open(&keys, &sealed_bob).await.expect("opens"),
        bob,
        "another subject is untouched"
    );
}

#[tokio::test]
async fn a_forgotten_subject_gets_no_new_key_and_no_new_personal_data() {
    let keys = MemoryKeyStore::new();
    let event = registered("c-1", "alice@example.com", "Alice");
    seal(&keys, &event, &mut nonces(), Codec::Json).await.expect("sealed");
    keys.forget(&subject("c-1")).await.expect("forgets");

    let refused = keys.get_or_create(&[subject("c-1"), subject("c-9")].into()).await;
    assert!(
        matches!(&refused, Err(KeyStoreError::SubjectForgotten { subject: s }) if s.as_str() == "c-1"),
        "{refused:?}"
    );
    assert!(
        keys.get(&[subject("c-9")].into()).await.expect("answers").is_empty(),
        "nothing created"
    );
    let error = seal(&keys, &event, &mut nonces(), Codec::Json)
        .await
        .expect_err("refused");
    assert!(error.to_string().contains("c-1 is forgotten"), "{error}");

    // A ring that marks the subject forgotten refuses to seal, too.
    let ring = KeyRing::new().with_forgotten(subject("c-1"));
    let refused = eventcore_shred::seal_event(&event, &ring, &mut nonces(), Codec::Json);
    assert!(matches!(
        refused,
        Err(SealEventError::Personal(PersonalError::SubjectForgotten { .. }))
    ));
}

#[test]
fn serializing_without_a_scope_fails_and_writes_no_plaintext() {
    let event = registered("c-1", "alice@example.com", "Alice");
    let error = serde_json::to_string(&event).expect_err("refused");
    assert!(error.to_string().contains("outside an encryption scope"), "{error}");
    use eventcore::Event as _;
    assert!(event.encode().is_err(), "the plain codec refuses too");
}

#[test]
fn subjects_of_event_names_every_subject_once() {
    let married = CustomerEvent::Married {
        first: Personal::new(subject("c-1"), "Ann".into()),
        second: Personal::new(subject("c-2"), "Bo".into()),
    };
    assert_eq!(
        subjects_of_event(&married).expect("collects"),
        [subject("c-1"), subject("c-2")].into()
    );
    let gone = CustomerEvent::Scored {
        score: Personal::Forgotten {
            subject: subject("c-3"),
        },
    };
    assert!(
        subjects_of_event(&gone).expect("collects").is_empty(),
        "a forgotten field needs no key"
    );
}

fn sealed_for(id: &str, ring: &KeyRing) -> EncodedEvent {
    let event = CustomerEvent::Moved {
        address: Personal::new(
            subject(id),
            Address {
                street: "1 Main St".into(),
                city: "Springfield".into(),
            },
        ),
    };
    eventcore_shred::seal_event(&event, ring, &mut nonces(), Codec::Json).expect("sealed")
}

fn ring() -> KeyRing {
    KeyRing::new()
        .with_key(subject("c-1"), DataKey::from_bytes(1, [1; 32]))
        .with_key(subject("c-2"), DataKey::from_bytes(1, [2; 32]))
}

fn edit(encoded: &EncodedEvent, change: impl FnOnce(&mut serde_json::Value)) -> Payload {
    let mut value = encoded.payload.to_value().expect("json");
    change(&mut value);
    Payload::from_value(&value).expect("json")
}

fn open_payload(payload: &Payload, ring: &KeyRing) -> Result<CustomerEvent, OpenPayloadError> {
    open_event("customer.Moved", 1, payload, ring)
}

#[test]
fn a_tampered_ciphertext_is_a_typed_error_not_forgotten() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let sealed = sealed_for("c-1", &ring());
    assert!(open_payload(&sealed.payload, &ring()).is_ok());
    let tampered = edit(&sealed, |v| {
        let ct = &mut v["address"]["$personal"]["ct"];
        let mut bytes = b64.decode(ct.as_str().expect("text")).expect("base64");
        bytes[0] ^= 1;
        *ct = b64.encode(bytes).into();
    });
    assert_eq!(
        open_payload(&tampered, &ring()),
        Err(OpenPayloadError::Personal(PersonalError::Tampered {
            subject: subject("c-1")
        }))
    );
}

#[test]
fn a_ciphertext_moved_to_another_subject_does_not_open() {
    let sealed = sealed_for("c-1", &ring());
    let moved = edit(&sealed, |v| v["address"]["$personal"]["subject"] = "c-2".into());
    assert_eq!(
        open_payload(&moved, &ring()),
        Err(OpenPayloadError::Personal(PersonalError::Tampered {
            subject: subject("c-2")
        }))
    );
    // Relabelled with another key version: refused before decrypting.
    let relabelled = edit(&sealed, |v| v["address"]["$personal"]["key"] = 2.into());
    assert!(matches!(
        open_payload(&relabelled, &ring()),
        Err(OpenPayloadError::Personal(PersonalError::KeyVersion {
            sealed: 2,
            held: 1,
            ..
        }))
    ));
}

#[test]
fn a_subject_missing_from_the_ring_is_an_error_not_forgotten() {
    let sealed = sealed_for("c-1", &ring());
    let without = KeyRing::new().with_key(subject("c-2"), DataKey::from_bytes(1, [2; 32]));
    assert_eq!(
        open_payload(&sealed.payload, &without),
        Err(OpenPayloadError::Personal(PersonalError::KeyNotInRing {
            subject: subject("c-1")
        }))
    );
}

#[test]
fn a_malformed_sealed_field_is_a_typed_error() {
    let sealed = sealed_for("c-1", &ring());
    let short_nonce = edit(&sealed, |v| v["address"]["$personal"]["nonce"] = "AAAA".into());
    assert!(matches!(
        open_payload(&short_nonce, &ring()),
        Err(OpenPayloadError::Personal(PersonalError::Malformed(_)))
    ));
}

fn arbitrary_event() -> impl Strategy<Value = CustomerEvent> {
    let id = "[a-z0-9-]{1,12}";
    prop_oneof![
        (id, any::<String>(), any::<String>()).prop_map(|(id, email, name)| CustomerEvent::Registered {
            customer: id.clone(),
            email: Personal::new(subject(&id), email),
            name: Personal::new(subject(&id), name),
            plan: "p".into(),
        }),
        (id, any::<String>(), any::<String>()).prop_map(|(id, street, city)| CustomerEvent::Moved {
            address: Personal::new(subject(&id), Address { street, city }),
        }),
        (id, id, any::<String>(), any::<String>()).prop_map(|(a, b, x, y)| CustomerEvent::Married {
            first: Personal::new(subject(&a), x),
            second: Personal::new(subject(&b), y),
        }),
        (id, any::<i64>()).prop_map(|(id, score)| CustomerEvent::Scored {
            score: Personal::new(subject(&id), score),
        }),
    ]
}

proptest! {
    #[test]
    fn seal_then_open_is_the_identity(event in arbitrary_event(), seed in any::<[u8; 32]>(), codec_index in 0..Codec::ALL.len()) {
        let codec = Codec::ALL[codec_index];
        let subjects = subjects_of_event(&event).expect("collects");
        let mut ring = KeyRing::new();
        for (n, s) in subjects.iter().enumerate() {
            ring = ring.with_key(s.clone(), DataKey::from_bytes(1, [n as u8 + 1; 32]));
        }
        let sealed = eventcore_shred::seal_event(&event, &ring, &mut NonceSource::from_seed(seed), codec).expect("sealed");
        prop_assert_eq!(eventcore_shred::subjects_in_payload(&sealed.payload).expect("scans"), subjects);
        let back: CustomerEvent = open_event(sealed.event_type.as_str(), sealed.schema_version, &sealed.payload, &ring).expect("opens");
        prop_assert_eq!(back, event);
    }
}

#[test]
fn neither_debug_output_nor_errors_show_the_plaintext() {
    let secret = "alice.secret@example.com";
    let event = registered("c-1", secret, "Alice Secret");
    let debug = format!("{event:?}");
    assert!(!debug.contains(secret) && !debug.contains("Alice Secret"), "{debug}");
    assert!(debug.contains("c-1"), "the subject is shown: {debug}");

    // A value read back as another type: serde's own message would quote it.
    let sealed = {
        let _scope = eventcore_shred::Scope::seal(&ring(), &mut nonces());
        serde_json::to_string(&Personal::new(subject("c-1"), secret.to_owned())).expect("sealed")
    };
    let scope = eventcore_shred::Scope::open(&ring());
    let error = serde_json::from_str::<Personal<i64>>(&sealed).expect_err("not a number");
    let cause = scope.take_error().expect("typed cause");
    assert!(matches!(cause, PersonalError::Plaintext { .. }), "{cause:?}");
    for text in [error.to_string(), cause.to_string(), format!("{cause:?}")] {
        assert!(!text.contains("secret"), "{text}");
    }
}
