//! Personal data under the simulator: the model key store ([`KeyVault`],
//! keys made from the seed, never from the operating system) and the
//! checks of [`Invariant::Forgotten`](crate::check::Invariant::Forgotten)
//! on what the store holds and answers.
//!
//! The world installs an `eventcore_shred::Scope::execute` around every
//! synchronous call into a command machine, with the keys a driver would
//! have fetched (those of the subjects in the answers the execution read),
//! creates the keys of new subjects the encoder reports missing and encodes
//! the append again (`CommandMachine::reencode_append`) before sending it.
//! A "forget" deletes a subject's key at a scheduled time. The checks:
//!
//! - a stored payload holds no plaintext the workload wrote
//!   ([`PLAINTEXT_MARK`]) and no placeholder of a missing key;
//! - no event sealed after its subject was forgotten is stored;
//! - every event read back decodes (no error, no poison), the fields of a
//!   forgotten subject read as `Personal::Forgotten`, and everything else
//!   reads as it was written.

use crate::rng::{Purpose, SimRng};
use crate::workload::customers::{CustomerEvent, PLAINTEXT_MARK, PREFIX};
use eventcore::RecordedEvent;
use eventcore_shred::{
    open_recorded, placeholders_in_payload, subjects_in_payload, DataKey, KeyRing, NonceSource, Personal, SubjectId,
};
use std::collections::{BTreeMap, BTreeSet};

/// The simulator's key store: one key per subject, made from the seed's
/// [`Purpose::Lifecycle`] stream, and the subjects forgotten (key deleted)
/// with the moment of the forget (the simulator's step number: steps at
/// one simulated instant still happen one after the other).
///
/// ```
/// use eventcore_shred::{KeyLookup, SubjectId};
/// use eventcore_sim::personal::KeyVault;
/// let ann = SubjectId::new("ann")?;
/// let mut vault = KeyVault::new(7);
/// assert!(vault.create(&ann));
/// assert!(matches!(vault.ring_for([&ann]).lookup(&ann), KeyLookup::Key(_)));
/// assert!(vault.forget(&ann, 10));
/// assert!(matches!(vault.ring_for([&ann]).lookup(&ann), KeyLookup::Forgotten));
/// assert!(!vault.create(&ann), "a forgotten subject gets no new key");
/// # Ok::<(), eventcore_shred::InvalidSubjectId>(())
/// ```
pub struct KeyVault {
    keys: BTreeMap<SubjectId, DataKey>,
    forgotten: BTreeMap<SubjectId, u64>,
    rng: SimRng,
    nonces: NonceSource,
    /// Broken on purpose: a forget keeps the key.
    keeps_keys: bool,
}

impl std::fmt::Debug for KeyVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyVault")
            .field("keys", &self.keys.len())
            .field("forgotten", &self.forgotten)
            .finish_non_exhaustive()
    }
}

impl KeyVault {
    /// An empty vault whose keys and nonces derive from `seed`.
    pub fn new(seed: u64) -> Self {
        let mut rng = SimRng::new(seed, Purpose::Lifecycle);
        let nonces = NonceSource::from_seed(bytes(&mut rng));
        KeyVault {
            keys: BTreeMap::new(),
            forgotten: BTreeMap::new(),
            rng,
            nonces,
            keeps_keys: false,
        }
    }

    /// A vault broken on purpose: a forget is recorded but the key is kept
    /// and still served (the `keep-forgotten-keys` canary).
    ///
    /// ```
    /// use eventcore_shred::{KeyLookup, SubjectId};
    /// use eventcore_sim::personal::KeyVault;
    /// let ann = SubjectId::new("ann")?;
    /// let mut vault = KeyVault::keeping_forgotten_keys(7);
    /// vault.create(&ann);
    /// vault.forget(&ann, 1);
    /// assert!(matches!(vault.ring_for([&ann]).lookup(&ann), KeyLookup::Key(_)));
    /// # Ok::<(), eventcore_shred::InvalidSubjectId>(())
    /// ```
    pub fn keeping_forgotten_keys(seed: u64) -> Self {
        KeyVault {
            keeps_keys: true,
            ..KeyVault::new(seed)
        }
    }

    /// Creates `subject`'s key unless it has one or was forgotten; answers
    /// whether it created one.
    pub fn create(&mut self, subject: &SubjectId) -> bool {
        if self.keys.contains_key(subject) || self.forgotten.contains_key(subject) {
            return false;
        }
        let key = DataKey::from_bytes(1, bytes(&mut self.rng));
        self.keys.insert(subject.clone(), key);
        true
    }

    /// Deletes `subject`'s key at step `step`; answers whether it had one.
    pub fn forget(&mut self, subject: &SubjectId, step: u64) -> bool {
        if !self.keys.contains_key(subject) || self.forgotten.contains_key(subject) {
            return false;
        }
        if !self.keeps_keys {
            self.keys.remove(subject);
        }
        self.forgotten.insert(subject.clone(), step);
        true
    }

    /// The step at which `subject` was forgotten, if it was.
    pub fn forgotten_at(&self, subject: &SubjectId) -> Option<u64> {
        self.forgotten.get(subject).copied()
    }

    /// The subjects forgotten so far.
    pub fn forgotten(&self) -> impl Iterator<Item = &SubjectId> {
        self.forgotten.keys()
    }

    /// The subjects with a key and not forgotten, in order.
    pub fn live_subjects(&self) -> Vec<SubjectId> {
        self.keys
            .keys()
            .filter(|s| !self.forgotten.contains_key(*s))
            .cloned()
            .collect()
    }

    /// The ring a driver fetches for `subjects`: their keys, and the
    /// forgotten ones marked so.
    pub fn ring_for<'a>(&self, subjects: impl IntoIterator<Item = &'a SubjectId>) -> KeyRing {
        let mut ring = KeyRing::new();
        for subject in subjects {
            if let Some(key) = self.keys.get(subject) {
                ring = ring.with_key(subject.clone(), key.clone());
            } else if self.forgotten.contains_key(subject) {
                ring = ring.with_forgotten(subject.clone());
            }
        }
        ring
    }

    /// Every key and every forgotten mark.
    pub fn full_ring(&self) -> KeyRing {
        self.ring_for(self.keys.keys().chain(self.forgotten.keys()))
    }

    /// The nonce source every seal of the run forks from.
    pub fn nonces(&mut self) -> &mut NonceSource {
        &mut self.nonces
    }
}

fn bytes(rng: &mut SimRng) -> [u8; 32] {
    let mut out = [0u8; 32];
    for chunk in out.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    out
}

/// Whether `event` belongs to the built-in customers (the events these
/// checks decode).
pub fn is_customer(event: &RecordedEvent) -> bool {
    event.stream_id.as_str().starts_with(PREFIX)
}

/// Judges an event as it is stored: no plaintext of the workload's names,
/// no placeholder, and no personal data sealed (`sealed_at`, the step at
/// which the append carrying it was first encoded) after its subject was
/// forgotten. One line per broken rule.
///
/// ```
/// use eventcore::{CommandId, EventId, EventMetadata, EventType, GlobalPosition, Payload, RecordedEvent, StreamId, StreamVersion, Time};
/// use eventcore_sim::personal::{check_stored, KeyVault};
/// let leaked = RecordedEvent {
///     event_id: EventId::v7(Time::ZERO, [1; 10]),
///     stream_id: StreamId::new("cust-1")?,
///     version: StreamVersion::new(1),
///     position: GlobalPosition::new(1),
///     event_type: EventType::new("Registered")?,
///     schema_version: 1,
///     payload: Payload::from_trusted_json(r#"{"name":"secret-holder-1-0"}"#),
///     metadata: std::sync::Arc::new(EventMetadata::new(CommandId::v7(Time::ZERO, [1; 10]), Time::ZERO)),
/// };
/// assert!(!check_stored(&leaked, &KeyVault::new(1), None).is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn check_stored(event: &RecordedEvent, vault: &KeyVault, sealed_at: Option<u64>) -> Vec<String> {
    let mut found = Vec::new();
    let at = format!("`{}`@{} (position {})", event.stream_id, event.version, event.position);
    if event.payload.as_json().contains(PLAINTEXT_MARK) {
        found.push(format!("the stored payload of {at} holds a plaintext name"));
    }
    match placeholders_in_payload(&event.payload) {
        Ok(pending) if !pending.is_empty() => found.push(format!(
            "the stored payload of {at} holds placeholders for {pending:?}: it was sent without their keys"
        )),
        Ok(_) => {}
        Err(error) => found.push(format!("the stored payload of {at} does not scan: {error}")),
    }
    for subject in subjects_in_payload(&event.payload).unwrap_or_default() {
        if let (Some(forgot), Some(sealed)) = (vault.forgotten_at(&subject), sealed_at) {
            if sealed > forgot {
                found.push(format!(
                    "{at} holds personal data of `{subject}` sealed at step {sealed}, after the subject was forgotten at step {forgot}"
                ));
            }
        }
    }
    found
}

/// What `written` reads as once the subjects in `forgotten` are forgotten.
pub fn masked(written: &CustomerEvent, forgotten: &BTreeSet<SubjectId>) -> CustomerEvent {
    let mask = |name: &Personal<String>| {
        if forgotten.contains(name.subject()) {
            Personal::Forgotten {
                subject: name.subject().clone(),
            }
        } else {
            name.clone()
        }
    };
    match written {
        CustomerEvent::Registered { name, tier } => CustomerEvent::Registered {
            name: mask(name),
            tier: *tier,
        },
        CustomerEvent::Renamed { name, previous } => CustomerEvent::Renamed {
            name: mask(name),
            previous: *previous,
        },
    }
}

/// Whether any field of `event` reads as forgotten.
pub fn reads_forgotten(event: &CustomerEvent) -> bool {
    match event {
        CustomerEvent::Registered { name, .. } | CustomerEvent::Renamed { name, .. } => name.is_forgotten(),
    }
}

/// Reads a stored customer event back with `ring` (what a reader holds:
/// every key not deleted, the forgotten subjects marked) and compares it
/// with what was `written`: it must decode, a forgotten subject's field
/// must read as `Forgotten`, every other field as written. Returns what it
/// read, or the broken rule.
///
/// ```
/// use eventcore::{Codec, CommandId, EventId, EventMetadata, GlobalPosition, RecordedEvent, StreamId, StreamVersion, Time};
/// use eventcore_shred::{seal_event, Personal};
/// use eventcore_sim::personal::{read_back, KeyVault};
/// use eventcore_sim::workload::customers::{subject, CustomerEvent};
/// let mut vault = KeyVault::new(3);
/// vault.create(&subject(1));
/// let written = CustomerEvent::Registered { name: Personal::new(subject(1), "secret-holder-1-0".into()), tier: 1 };
/// let sealed = seal_event(&written, &vault.full_ring(), &mut eventcore_shred::NonceSource::from_seed([1; 32]), Codec::Json)?;
/// let stored = RecordedEvent {
///     event_id: EventId::v7(Time::ZERO, [1; 10]), stream_id: StreamId::new("cust-1")?, version: StreamVersion::new(1),
///     position: GlobalPosition::new(1), event_type: sealed.event_type, schema_version: sealed.schema_version, payload: sealed.payload,
///     metadata: std::sync::Arc::new(EventMetadata::new(CommandId::v7(Time::ZERO, [1; 10]), Time::ZERO)),
/// };
/// assert_eq!(read_back(&stored, &written, &vault.full_ring(), &Default::default())?, written);
/// vault.forget(&subject(1), 1);
/// let forgotten = vault.forgotten().cloned().collect();
/// let read = read_back(&stored, &written, &vault.full_ring(), &forgotten)?;
/// assert!(matches!(read, CustomerEvent::Registered { name: Personal::Forgotten { .. }, tier: 1 }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_back(
    event: &RecordedEvent,
    written: &CustomerEvent,
    ring: &KeyRing,
    forgotten: &BTreeSet<SubjectId>,
) -> Result<CustomerEvent, String> {
    let at = format!("`{}`@{} (position {})", event.stream_id, event.version, event.position);
    let read = open_recorded::<CustomerEvent>(event, ring).map_err(|e| format!("{at} does not read back: {e}"))?;
    let expected = masked(written, forgotten);
    if read != expected {
        return Err(format!(
            "{at} reads as {read:?}, it was written as {written:?} and with {forgotten:?} forgotten must read as {expected:?}"
        ));
    }
    Ok(read)
}
