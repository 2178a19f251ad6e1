//! [`PersonalData`]: crypto-shredding as the [`CodecContext`] a driver
//! (`eventcore_tokio::Executor::with_codec_context`, the subscription and
//! projection runners) installs around the command machine's calls, so that
//! commands, projections and snapshots use `Personal` fields with no
//! sealing or opening of their own.

use crate::codec::{placeholders_in_payload, subjects_in_payload};
use crate::error::KeyStoreError;
use crate::key::{KeyRing, NonceSource};
use crate::keystore::DynKeyStore;
use crate::{KeyStore, Scope, SubjectId};
use eventcore::{Operation, Payload, StoreError};
use eventcore_store::{BoxFuture, CodecContext, CodecSession};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

/// Crypto-shredding for a driver: every execution gets a session whose
/// [`Scope::execute`] opens the sealed fields it reads with their subjects'
/// keys (fetched beforehand; a forgotten subject's fields read as
/// [`Personal::Forgotten`](crate::Personal::Forgotten)) and seals the
/// `Personal` values it writes, creating keys for new subjects before the
/// append is sent. New personal data of a forgotten subject fails the
/// command ([`PersonalError::SubjectForgotten`](crate::PersonalError::SubjectForgotten),
/// under `CommandError::Encode`); nothing is appended.
///
/// ```
/// use eventcore::Payload;
/// use eventcore_shred::{DynKeyStore, MemoryKeyStore, NonceSource, PersonalData};
/// use eventcore_store::CodecContext;
/// use std::sync::Arc;
/// let keys: Arc<dyn DynKeyStore> = Arc::new(MemoryKeyStore::new());
/// let personal = PersonalData::new(keys, NonceSource::from_os()?);
/// let session = personal.session();
/// let draft = Payload::from_trusted_json(r#"{"email":{"$personal":{"subject":"c-1","pending":true}}}"#);
/// assert!(session.check_outgoing(&draft).is_err(), "a placeholder never reaches a store");
/// # Ok::<(), getrandom::Error>(())
/// ```
pub struct PersonalData {
    keys: Arc<dyn DynKeyStore>,
    nonces: Mutex<NonceSource>,
}

impl std::fmt::Debug for PersonalData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersonalData").finish_non_exhaustive()
    }
}

impl PersonalData {
    /// Keys from `keys`; the nonces of every session forked from `nonces`
    /// ([`NonceSource::from_os`] outside simulation).
    pub fn new(keys: Arc<dyn DynKeyStore>, nonces: NonceSource) -> Self {
        PersonalData {
            keys,
            nonces: Mutex::new(nonces),
        }
    }

    /// The key store (to [`forget`](crate::KeyStore::forget) a subject).
    ///
    /// ```
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use eventcore_shred::{KeyStore, MemoryKeyStore, NonceSource, PersonalData, SubjectId};
    /// use std::sync::Arc;
    /// let personal = PersonalData::new(Arc::new(MemoryKeyStore::new()), NonceSource::from_os()?);
    /// assert!(personal.keys().forget(&SubjectId::new("c-1")?).await?);
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(demo()).expect("demo");
    /// ```
    pub fn keys(&self) -> &Arc<dyn DynKeyStore> {
        &self.keys
    }
}

impl CodecContext for PersonalData {
    fn session(&self) -> Box<dyn CodecSession> {
        // The source is only ever advanced, never left half-updated.
        let nonces = self.nonces.lock().unwrap_or_else(PoisonError::into_inner).fork();
        Box::new(PersonalSession {
            keys: Arc::clone(&self.keys),
            ring: KeyRing::new(),
            nonces,
            wanted: BTreeSet::new(),
            missing: BTreeSet::new(),
            secrets: false,
            refusal: None,
        })
    }
}

/// One execution's keys: those fetched for what it read, and those created
/// for what it wrote.
struct PersonalSession {
    keys: Arc<dyn DynKeyStore>,
    ring: KeyRing,
    nonces: NonceSource,
    /// Subjects of sealed fields about to be read, not yet in the ring.
    wanted: BTreeSet<SubjectId>,
    /// Subjects an encode wrote placeholders for.
    missing: BTreeSet<SubjectId>,
    secrets: bool,
    /// The typed cause of the latest call's first personal-data error.
    refusal: Option<crate::PersonalError>,
}

impl PersonalSession {
    async fn fetch(&mut self) -> Result<(), KeyStoreError> {
        if !self.wanted.is_empty() {
            let wanted = std::mem::take(&mut self.wanted);
            let found = self.keys.get(&wanted).await?;
            let mut ring = self.ring.clone();
            for subject in wanted {
                ring = match found.get(&subject) {
                    Some(key) => ring.with_key(subject, key.clone()),
                    None => ring.with_forgotten(subject),
                };
            }
            self.ring = ring;
        }
        while !self.missing.is_empty() {
            match self.keys.get_or_create(&self.missing).await {
                Ok(keys) => {
                    let mut ring = self.ring.clone();
                    for (subject, key) in keys {
                        ring = ring.with_key(subject, key);
                    }
                    self.ring = ring;
                    self.missing.clear();
                }
                // The encode again then refuses the subject: the command
                // fails with `PersonalError::SubjectForgotten`, nothing sent.
                Err(KeyStoreError::SubjectForgotten { subject }) => {
                    self.missing.remove(&subject);
                    self.ring = self.ring.clone().with_forgotten(subject);
                }
                Err(other) => return Err(other),
            }
        }
        Ok(())
    }
}

fn store_error(error: KeyStoreError) -> StoreError {
    let retryable = matches!(error, KeyStoreError::Unavailable(_) | KeyStoreError::Randomness(_));
    let message = "the key store of personal data could not answer".to_owned();
    let source = Some(Arc::new(error) as eventcore::ErrorSource);
    if retryable {
        StoreError::Transient {
            operation: Operation::Other,
            message,
            source,
        }
    } else {
        StoreError::Permanent {
            operation: Operation::Other,
            message,
            source,
        }
    }
}

impl CodecSession for PersonalSession {
    fn want(&mut self, payload: &Payload) {
        // A payload that does not scan fails its decode with the typed
        // cause; nothing to fetch for it here.
        if let Ok(subjects) = subjects_in_payload(payload) {
            for subject in subjects {
                if matches!(self.ring.lookup(&subject), crate::KeyLookup::Absent) {
                    self.wanted.insert(subject);
                }
            }
        }
    }

    fn prepare(&mut self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { self.fetch().await.map_err(store_error) })
    }

    fn within(&mut self, f: &mut dyn FnMut()) {
        let scope = Scope::execute(&self.ring, &mut self.nonces);
        f();
        self.missing.extend(scope.missing_keys());
        self.secrets |= !scope.subjects_opened().is_empty() || !scope.subjects_sealed().is_empty();
        if let Some(error) = scope.take_error() {
            self.refusal = Some(error);
        }
    }

    fn take_refusal(&mut self) -> Option<Box<dyn std::error::Error + Send + Sync + 'static>> {
        self.refusal
            .take()
            .map(|error| Box::new(error) as Box<dyn std::error::Error + Send + Sync + 'static>)
    }

    fn needs_prepare(&self) -> bool {
        !self.missing.is_empty()
    }

    fn check_outgoing(&self, payload: &Payload) -> Result<(), String> {
        match placeholders_in_payload(payload) {
            Ok(subjects) if subjects.is_empty() => Ok(()),
            Ok(subjects) => Err(format!(
                "the payload holds placeholders for the personal data of {}: their keys were never fetched",
                subjects.iter().map(SubjectId::as_str).collect::<Vec<_>>().join(", ")
            )),
            // Not a payload a scope wrote (or not JSON-shaped at all).
            Err(_) => Ok(()),
        }
    }

    fn holds_secrets(&self) -> bool {
        self.secrets
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryKeyStore, Personal};

    fn subject(id: &str) -> SubjectId {
        SubjectId::new(id).expect("valid subject")
    }

    fn personal(keys: &MemoryKeyStore) -> PersonalData {
        PersonalData::new(Arc::new(keys.clone()), NonceSource::from_seed([9; 32]))
    }

    fn encode(session: &mut Box<dyn CodecSession>, value: &Personal<String>) -> String {
        let mut out = String::new();
        session.within(&mut || out = serde_json::to_string(value).expect("encodes"));
        out
    }

    #[tokio::test]
    async fn a_write_for_a_new_subject_drafts_then_seals_once_the_key_is_created() {
        let keys = MemoryKeyStore::new();
        let mut session = personal(&keys).session();
        let email = Personal::new(subject("c-1"), "ann@example.com".to_owned());
        let draft = encode(&mut session, &email);
        assert!(session.needs_prepare());
        assert!(session.check_outgoing(&Payload::from_trusted_json(draft)).is_err());
        session.prepare().await.expect("key created");
        assert!(!session.needs_prepare());
        let sealed = encode(&mut session, &email);
        assert!(!sealed.contains("ann@example.com"));
        assert!(session.check_outgoing(&Payload::from_trusted_json(sealed)).is_ok());
        assert!(session.holds_secrets(), "it sealed plaintext the command held");
    }

    #[tokio::test]
    async fn a_read_after_forget_opens_as_forgotten_and_holds_no_secret() {
        let keys = MemoryKeyStore::new();
        let context = personal(&keys);
        let mut writer = context.session();
        let email = Personal::new(subject("c-1"), "ann@example.com".to_owned());
        encode(&mut writer, &email);
        writer.prepare().await.expect("key created");
        let sealed = Payload::from_trusted_json(encode(&mut writer, &email));

        let mut reader = context.session();
        reader.want(&sealed);
        reader.prepare().await.expect("keys fetched");
        let mut read = None;
        reader.within(&mut || read = Some(serde_json::from_str::<Personal<String>>(sealed.as_json())));
        assert_eq!(read.expect("ran").expect("opens"), email);
        assert!(reader.holds_secrets());

        keys.forget(&subject("c-1")).await.expect("forgets");
        let mut after = context.session();
        after.want(&sealed);
        after.prepare().await.expect("keys fetched");
        let mut read = None;
        after.within(&mut || read = Some(serde_json::from_str::<Personal<String>>(sealed.as_json())));
        assert!(read.expect("ran").expect("a value").is_forgotten());
        assert!(!after.holds_secrets(), "nothing was decrypted");
    }

    #[tokio::test]
    async fn new_data_of_a_forgotten_subject_is_refused_after_prepare() {
        let keys = MemoryKeyStore::new();
        keys.forget(&subject("c-1")).await.expect("forgets");
        let mut session = personal(&keys).session();
        let email = Personal::new(subject("c-1"), "ann@example.com".to_owned());
        encode(&mut session, &email);
        session
            .prepare()
            .await
            .expect("a forgotten subject is not a key store failure");
        let mut result = None;
        session.within(&mut || result = Some(serde_json::to_string(&email)));
        let error = result.expect("ran").expect_err("refused");
        assert!(error.to_string().contains("subject c-1 is forgotten"), "{error}");
    }
}
