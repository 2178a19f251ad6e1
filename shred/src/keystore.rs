//! Where the data keys live: the [`KeyStore`] trait, its object-safe twin,
//! and [`MemoryKeyStore`].

use crate::error::KeyStoreError;
use crate::key::{DataKey, KeyRing};
use crate::SubjectId;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

/// The version of the keys this crate creates (one key per subject, no
/// rotation yet).
pub(crate) const FIRST_KEY_VERSION: u32 = 1;

/// The data keys of subjects, and the subjects forgotten.
///
/// Every implementation keeps these rules (the tests in `shred/tests`
/// check them on [`MemoryKeyStore`] and [`PgKeyStore`](crate::PgKeyStore)):
///
/// - [`KeyStore::get_or_create`] returns one key per subject, the same key
///   for a subject every time, and refuses a forgotten subject with
///   [`KeyStoreError::SubjectForgotten`] rather than creating a fresh key;
/// - [`KeyStore::get`] returns the keys that exist and omits the others;
/// - [`KeyStore::forget`] deletes the subject's key for good and remembers
///   the subject as forgotten (across restarts, for a persistent store); it
///   is idempotent;
/// - a `forget` racing a `get_or_create` of the same subject never leaves a
///   key behind.
///
/// A KMS can back an implementation (wrapping the data keys with a key it
/// holds); the trait returns `impl Future` like the stores of
/// `eventcore-store`, and [`DynKeyStore`] is its object-safe twin.
pub trait KeyStore: Send + Sync + 'static {
    /// The keys of `subjects`, created for those that have none.
    fn get_or_create(
        &self,
        subjects: &BTreeSet<SubjectId>,
    ) -> impl Future<Output = Result<BTreeMap<SubjectId, DataKey>, KeyStoreError>> + Send;

    /// The keys of `subjects` that exist (forgotten and never-keyed
    /// subjects are absent).
    fn get(
        &self,
        subjects: &BTreeSet<SubjectId>,
    ) -> impl Future<Output = Result<BTreeMap<SubjectId, DataKey>, KeyStoreError>> + Send;

    /// Deletes `subject`'s key and marks the subject forgotten. Returns
    /// whether this call forgot it (`false`: it already was).
    fn forget(&self, subject: &SubjectId) -> impl Future<Output = Result<bool, KeyStoreError>> + Send;

    /// Whether `subject` was forgotten.
    fn is_forgotten(&self, subject: &SubjectId) -> impl Future<Output = Result<bool, KeyStoreError>> + Send;
}

/// The future a [`DynKeyStore`] method returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`KeyStore`] as a trait object (boxed futures). Every `KeyStore` is one,
/// and `Arc<dyn DynKeyStore>` is a `KeyStore` again.
///
/// ```
/// use eventcore_shred::{DynKeyStore, KeyStore, MemoryKeyStore};
/// use std::sync::Arc;
/// fn takes_any(_keys: impl KeyStore) {}
/// let shared: Arc<dyn DynKeyStore> = Arc::new(MemoryKeyStore::new());
/// takes_any(shared);
/// ```
pub trait DynKeyStore: Send + Sync + 'static {
    /// [`KeyStore::get_or_create`], boxed.
    fn get_or_create_boxed<'a>(
        &'a self,
        subjects: &'a BTreeSet<SubjectId>,
    ) -> BoxFuture<'a, Result<BTreeMap<SubjectId, DataKey>, KeyStoreError>>;

    /// [`KeyStore::get`], boxed.
    fn get_boxed<'a>(
        &'a self,
        subjects: &'a BTreeSet<SubjectId>,
    ) -> BoxFuture<'a, Result<BTreeMap<SubjectId, DataKey>, KeyStoreError>>;

    /// [`KeyStore::forget`], boxed.
    fn forget_boxed<'a>(&'a self, subject: &'a SubjectId) -> BoxFuture<'a, Result<bool, KeyStoreError>>;

    /// [`KeyStore::is_forgotten`], boxed.
    fn is_forgotten_boxed<'a>(&'a self, subject: &'a SubjectId) -> BoxFuture<'a, Result<bool, KeyStoreError>>;
}

impl<K: KeyStore> DynKeyStore for K {
    fn get_or_create_boxed<'a>(
        &'a self,
        subjects: &'a BTreeSet<SubjectId>,
    ) -> BoxFuture<'a, Result<BTreeMap<SubjectId, DataKey>, KeyStoreError>> {
        Box::pin(self.get_or_create(subjects))
    }

    fn get_boxed<'a>(
        &'a self,
        subjects: &'a BTreeSet<SubjectId>,
    ) -> BoxFuture<'a, Result<BTreeMap<SubjectId, DataKey>, KeyStoreError>> {
        Box::pin(self.get(subjects))
    }

    fn forget_boxed<'a>(&'a self, subject: &'a SubjectId) -> BoxFuture<'a, Result<bool, KeyStoreError>> {
        Box::pin(self.forget(subject))
    }

    fn is_forgotten_boxed<'a>(&'a self, subject: &'a SubjectId) -> BoxFuture<'a, Result<bool, KeyStoreError>> {
        Box::pin(self.is_forgotten(subject))
    }
}

// `(**self)`: `self.…_boxed` would resolve to the blanket `DynKeyStore`
// impl of `Arc<dyn DynKeyStore>` itself (it is a `KeyStore`), which calls
// back here: an endless recursion.
impl KeyStore for Arc<dyn DynKeyStore> {
    async fn get_or_create(
        &self,
        subjects: &BTreeSet<SubjectId>,
    ) -> Result<BTreeMap<SubjectId, DataKey>, KeyStoreError> {
        (**self).get_or_create_boxed(subjects).await
    }

    async fn get(&self, subjects: &BTreeSet<SubjectId>) -> Result<BTreeMap<SubjectId, DataKey>, KeyStoreError> {
        (**self).get_boxed(subjects).await
    }

    async fn forget(&self, subject: &SubjectId) -> Result<bool, KeyStoreError> {
        (**self).forget_boxed(subject).await
    }

    async fn is_forgotten(&self, subject: &SubjectId) -> Result<bool, KeyStoreError> {
        (**self).is_forgotten_boxed(subject).await
    }
}

/// The ring for sealing an event whose fields name `subjects`
/// ([`subjects_of_event`](crate::subjects_of_event)): their keys, created
/// where missing. Fails with [`KeyStoreError::SubjectForgotten`] for a
/// forgotten subject.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use eventcore_shred::{ring_for_writing, KeyLookup, KeyStore, KeyStoreError, MemoryKeyStore, SubjectId};
/// let keys = MemoryKeyStore::new();
/// let ann = SubjectId::new("ann")?;
/// let ring = ring_for_writing(&keys, &[ann.clone()].into()).await?;
/// assert!(matches!(ring.lookup(&ann), KeyLookup::Key(_)));
/// keys.forget(&ann).await?;
/// assert!(matches!(
///     ring_for_writing(&keys, &[ann].into()).await,
///     Err(KeyStoreError::SubjectForgotten { .. })
/// ));
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(demo()).expect("demo");
/// ```
pub async fn ring_for_writing<K: KeyStore + ?Sized>(
    keys: &K,
    subjects: &BTreeSet<SubjectId>,
) -> Result<KeyRing, KeyStoreError> {
    if subjects.is_empty() {
        return Ok(KeyRing::new());
    }
    Ok(KeyRing::from_keys(keys.get_or_create(subjects).await?))
}

/// The ring for opening payloads whose sealed fields name `subjects`
/// ([`subjects_in_payload`](crate::subjects_in_payload)): their keys, and
/// every subject without one marked forgotten.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use eventcore_shred::{ring_for_reading, KeyLookup, KeyStore, MemoryKeyStore, SubjectId};
/// let keys = MemoryKeyStore::new();
/// let ann = SubjectId::new("ann")?;
/// let ring = ring_for_reading(&keys, &[ann.clone()].into()).await?;
/// assert_eq!(ring.lookup(&ann), KeyLookup::Forgotten, "no key: unreadable");
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(demo()).expect("demo");
/// ```
pub async fn ring_for_reading<K: KeyStore + ?Sized>(
    keys: &K,
    subjects: &BTreeSet<SubjectId>,
) -> Result<KeyRing, KeyStoreError> {
    if subjects.is_empty() {
        return Ok(KeyRing::new());
    }
    Ok(KeyRing::for_reading(subjects, keys.get(subjects).await?))
}

#[derive(Debug, Default)]
struct Keys {
    keys: BTreeMap<SubjectId, DataKey>,
    forgotten: BTreeSet<SubjectId>,
}

/// Keys in memory, for tests and the simulator: everything is lost when
/// the process ends (so is every sealed value's readability, if the events
/// outlive it). Clones share the keys.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use eventcore_shred::{KeyStore, MemoryKeyStore, SubjectId};
/// let keys = MemoryKeyStore::new();
/// let ann = SubjectId::new("ann")?;
/// let first = keys.get_or_create(&[ann.clone()].into()).await?;
/// assert_eq!(keys.get(&[ann.clone()].into()).await?, first, "one key per subject");
/// assert!(keys.forget(&ann).await?);
/// assert!(!keys.forget(&ann).await?, "idempotent");
/// assert!(keys.is_forgotten(&ann).await?);
/// assert!(keys.get(&[ann].into()).await?.is_empty());
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(demo()).expect("demo");
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryKeyStore {
    inner: Arc<Mutex<Keys>>,
}

impl MemoryKeyStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryKeyStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Keys> {
        // The map is never left half-updated: each method's changes are
        // made after its last fallible step.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl KeyStore for MemoryKeyStore {
    async fn get_or_create(
        &self,
        subjects: &BTreeSet<SubjectId>,
    ) -> Result<BTreeMap<SubjectId, DataKey>, KeyStoreError> {
        let mut keys = self.lock();
        if let Some(subject) = subjects.iter().find(|s| keys.forgotten.contains(*s)) {
            return Err(KeyStoreError::SubjectForgotten {
                subject: subject.clone(),
            });
        }
        let mut fresh = Vec::new();
        for subject in subjects.iter().filter(|s| !keys.keys.contains_key(*s)) {
            fresh.push((
                subject.clone(),
                DataKey::generate(FIRST_KEY_VERSION).map_err(KeyStoreError::Randomness)?,
            ));
        }
        keys.keys.extend(fresh);
        Ok(subjects
            .iter()
            .filter_map(|s| keys.keys.get(s).map(|k| (s.clone(), k.clone())))
            .collect())
    }

    async fn get(&self, subjects: &BTreeSet<SubjectId>) -> Result<BTreeMap<SubjectId, DataKey>, KeyStoreError> {
        let keys = self.lock();
        Ok(subjects
            .iter()
            .filter_map(|s| keys.keys.get(s).map(|k| (s.clone(), k.clone())))
            .collect())
    }

    async fn forget(&self, subject: &SubjectId) -> Result<bool, KeyStoreError> {
        let mut keys = self.lock();
        keys.keys.remove(subject);
        Ok(keys.forgotten.insert(subject.clone()))
    }

    async fn is_forgotten(&self, subject: &SubjectId) -> Result<bool, KeyStoreError> {
        Ok(self.lock().forgotten.contains(subject))
    }
}
