//! Data keys, the key ring a scope seals and opens with, the nonce source,
//! and the one place that encrypts and decrypts.

use crate::error::PersonalError;
use crate::SubjectId;
use chacha20poly1305::aead::{Aead, KeyInit, Payload as AeadPayload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use zeroize::Zeroize;

/// Length of a data key in bytes (XChaCha20-Poly1305: 256 bits).
pub const KEY_BYTES: usize = 32;

/// Length of a nonce in bytes (XChaCha20: 192 bits, long enough to draw at
/// random without counting).
pub const NONCE_BYTES: usize = 24;

/// One subject's data key: 32 secret bytes and the version it is known by
/// (written into every sealed field, so that rotation can be added without
/// changing the stored form). The bytes are wiped from memory when the key
/// is dropped, and `Debug` never prints them.
///
/// ```
/// use eventcore_shred::DataKey;
/// let key = DataKey::from_bytes(1, [7; 32]);
/// assert_eq!(key.version(), 1);
/// assert_eq!(format!("{key:?}"), "DataKey { version: 1, bytes: <redacted> }");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey {
    version: u32,
    bytes: [u8; KEY_BYTES],
}

impl DataKey {
    /// A key made of `bytes` (e.g. as a key store read them back).
    pub fn from_bytes(version: u32, bytes: [u8; KEY_BYTES]) -> Self {
        DataKey { version, bytes }
    }

    /// A fresh random key from the operating system's generator: what key
    /// stores call to create a subject's key. The only randomness the
    /// sealing path itself never draws.
    ///
    /// ```
    /// use eventcore_shred::DataKey;
    /// let (a, b) = (DataKey::generate(1)?, DataKey::generate(1)?);
    /// assert_ne!(a.bytes(), b.bytes());
    /// # Ok::<(), getrandom::Error>(())
    /// ```
    pub fn generate(version: u32) -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; KEY_BYTES];
        getrandom::fill(&mut bytes)?;
        Ok(DataKey { version, bytes })
    }

    /// The key's version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The secret bytes (for key stores that persist them).
    pub fn bytes(&self) -> &[u8; KEY_BYTES] {
        &self.bytes
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataKey {{ version: {}, bytes: <redacted> }}", self.version)
    }
}

/// Where the nonces of one sealing scope come from: ChaCha20 keyed by a
/// 32-byte seed the caller passes in (the sealing functions draw no
/// randomness of their own, as everything in EventCore's core).
///
/// The seed must be **secret, random and never used twice** with the same
/// keys: two fields sealed under one key with one nonce reveal the XOR of
/// their plaintexts and let an attacker forge ciphertexts. A driver takes
/// it from the operating system ([`NonceSource::from_os`]) once per
/// process or per command; a simulation may pass a seeded value, since its
/// keys are throwaway too.
///
/// ```
/// use eventcore_shred::NonceSource;
/// let mut a = NonceSource::from_seed([1; 32]);
/// let mut b = NonceSource::from_seed([1; 32]);
/// assert_eq!(a.next_nonce(), b.next_nonce(), "the same seed, the same nonces");
/// assert_ne!(a.next_nonce(), NonceSource::from_seed([2; 32]).next_nonce());
/// ```
pub struct NonceSource(ChaCha20Rng);

impl NonceSource {
    /// Nonces determined by `seed` (see the type's warning on reuse).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        NonceSource(ChaCha20Rng::from_seed(seed))
    }

    /// Nonces seeded from the operating system's generator: what a driver
    /// uses outside simulation.
    ///
    /// ```
    /// let mut nonces = eventcore_shred::NonceSource::from_os()?;
    /// assert_ne!(nonces.next_nonce(), nonces.next_nonce());
    /// # Ok::<(), getrandom::Error>(())
    /// ```
    pub fn from_os() -> Result<Self, getrandom::Error> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)?;
        let source = NonceSource::from_seed(seed);
        seed.zeroize();
        Ok(source)
    }

    /// The next nonce.
    pub fn next_nonce(&mut self) -> [u8; NONCE_BYTES] {
        let mut nonce = [0u8; NONCE_BYTES];
        self.0.fill_bytes(&mut nonce);
        nonce
    }

    /// An independent source for a nested scope, seeded from this one
    /// (which advances).
    pub(crate) fn fork(&mut self) -> NonceSource {
        let mut seed = [0u8; 32];
        self.0.fill_bytes(&mut seed);
        let child = NonceSource::from_seed(seed);
        seed.zeroize();
        child
    }
}

impl fmt::Debug for NonceSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NonceSource(<secret>)")
    }
}

/// What a [`KeyRing`] knows of one subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyLookup<'a> {
    /// The subject's key.
    Key(&'a DataKey),
    /// The subject was forgotten (its key is gone): its fields read as
    /// [`Personal::Forgotten`](crate::Personal::Forgotten).
    Forgotten,
    /// The ring was not given this subject at all: a driver that skipped
    /// fetching it. An error, never read as forgotten.
    Absent,
}

/// The keys one encryption or decryption scope works with: for each
/// subject the driver asked the [`KeyStore`](crate::KeyStore) about, its
/// key or the fact that it is forgotten. Cloning is cheap (a reference
/// count).
///
/// ```
/// use eventcore_shred::{DataKey, KeyLookup, KeyRing, SubjectId};
/// let (alice, bob, carol) = (SubjectId::new("alice")?, SubjectId::new("bob")?, SubjectId::new("carol")?);
/// let ring = KeyRing::new()
///     .with_key(alice.clone(), DataKey::from_bytes(1, [1; 32]))
///     .with_forgotten(bob.clone());
/// assert!(matches!(ring.lookup(&alice), KeyLookup::Key(_)));
/// assert_eq!(ring.lookup(&bob), KeyLookup::Forgotten);
/// assert_eq!(ring.lookup(&carol), KeyLookup::Absent);
/// # Ok::<(), eventcore_shred::InvalidSubjectId>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct KeyRing {
    entries: Arc<BTreeMap<SubjectId, Option<DataKey>>>,
}

impl KeyRing {
    /// An empty ring.
    pub fn new() -> Self {
        KeyRing::default()
    }

    /// The ring with `subject`'s key.
    pub fn with_key(mut self, subject: SubjectId, key: DataKey) -> Self {
        Arc::make_mut(&mut self.entries).insert(subject, Some(key));
        self
    }

    /// The ring knowing that `subject` is forgotten.
    pub fn with_forgotten(mut self, subject: SubjectId) -> Self {
        Arc::make_mut(&mut self.entries).insert(subject, None);
        self
    }

    /// The ring for reading: every subject of `requested` whose key is not
    /// in `found` is forgotten (what [`KeyStore::get`](crate::KeyStore::get)
    /// answering without it means).
    ///
    /// ```
    /// use eventcore_shred::{DataKey, KeyLookup, KeyRing, SubjectId};
    /// use std::collections::{BTreeMap, BTreeSet};
    /// let (alice, bob) = (SubjectId::new("alice")?, SubjectId::new("bob")?);
    /// let requested = BTreeSet::from([alice.clone(), bob.clone()]);
    /// let found = BTreeMap::from([(alice.clone(), DataKey::from_bytes(1, [1; 32]))]);
    /// let ring = KeyRing::for_reading(&requested, found);
    /// assert_eq!(ring.lookup(&bob), KeyLookup::Forgotten);
    /// # Ok::<(), eventcore_shred::InvalidSubjectId>(())
    /// ```
    pub fn for_reading(requested: &BTreeSet<SubjectId>, found: BTreeMap<SubjectId, DataKey>) -> Self {
        let mut entries: BTreeMap<SubjectId, Option<DataKey>> =
            found.into_iter().map(|(subject, key)| (subject, Some(key))).collect();
        for subject in requested {
            entries.entry(subject.clone()).or_insert(None);
        }
        KeyRing {
            entries: Arc::new(entries),
        }
    }

    /// The ring of `keys` (what
    /// [`KeyStore::get_or_create`](crate::KeyStore::get_or_create) answers).
    pub fn from_keys(keys: BTreeMap<SubjectId, DataKey>) -> Self {
        KeyRing::for_reading(&BTreeSet::new(), keys)
    }

    /// What the ring knows of `subject`.
    pub fn lookup(&self, subject: &SubjectId) -> KeyLookup<'_> {
        match self.entries.get(subject) {
            Some(Some(key)) => KeyLookup::Key(key),
            Some(None) => KeyLookup::Forgotten,
            None => KeyLookup::Absent,
        }
    }

    /// How many subjects the ring knows (keys and forgotten ones).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the ring knows no subject.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The associated data of a sealed field: the format, the subject and the
/// key version, so that a ciphertext copied into another subject's field
/// (or relabelled with another key version) fails authentication.
fn associated_data(subject: &SubjectId, version: u32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(32 + subject.as_str().len());
    aad.extend_from_slice(b"eventcore-shred/v1\0");
    aad.extend_from_slice(subject.as_str().as_bytes());
    aad.push(0);
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

pub(crate) fn encrypt(
    subject: &SubjectId,
    key: &DataKey,
    nonce: &[u8; NONCE_BYTES],
    plaintext: &[u8],
) -> Result<Vec<u8>, PersonalError> {
    let cipher = XChaCha20Poly1305::new(Key::from_slice(&key.bytes));
    let aad = associated_data(subject, key.version);
    cipher
        .encrypt(
            XNonce::from_slice(nonce),
            AeadPayload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| PersonalError::Encrypt {
            subject: subject.clone(),
        })
}

pub(crate) fn decrypt(
    subject: &SubjectId,
    key: &DataKey,
    nonce: &[u8; NONCE_BYTES],
    ciphertext: &[u8],
) -> Result<Vec<u8>, PersonalError> {
    let cipher = XChaCha20Poly1305::new(Key::from_slice(&key.bytes));
    let aad = associated_data(subject, key.version);
    cipher
        .decrypt(
            XNonce::from_slice(nonce),
            AeadPayload {
                msg: ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| PersonalError::Tampered {
            subject: subject.clone(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(id: &str) -> SubjectId {
        SubjectId::new(id).expect("valid subject")
    }

    #[test]
    fn a_ciphertext_opens_only_for_its_subject_and_key() {
        let key = DataKey::from_bytes(1, [9; 32]);
        let nonce = [3; NONCE_BYTES];
        let sealed = encrypt(&subject("alice"), &key, &nonce, b"Alice Liddell").expect("encrypts");
        assert!(
            !sealed.windows(5).any(|w| w == b"Alice"),
            "no plaintext in the ciphertext"
        );
        let opened = decrypt(&subject("alice"), &key, &nonce, &sealed).expect("opens");
        assert_eq!(opened, b"Alice Liddell");
        assert!(matches!(
            decrypt(&subject("bob"), &key, &nonce, &sealed),
            Err(PersonalError::Tampered { .. })
        ));
        let other_key = DataKey::from_bytes(1, [8; 32]);
        assert!(decrypt(&subject("alice"), &other_key, &nonce, &sealed).is_err());
        let relabelled = DataKey::from_bytes(2, [9; 32]);
        assert!(decrypt(&subject("alice"), &relabelled, &nonce, &sealed).is_err());
    }

    #[test]
    fn forks_draw_different_nonces() {
        let mut parent = NonceSource::from_seed([0; 32]);
        let mut a = parent.fork();
        let mut b = parent.fork();
        assert_ne!(a.next_nonce(), b.next_nonce());
    }
}
