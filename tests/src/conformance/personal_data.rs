//! Group 11 of the suite, personal data: crypto-shredding
//! (`eventcore-shred`) on every store. Two halves:
//!
//! - the **key store contract** ([`KeyStore`]), the same answers from every
//!   key store: one stable key per subject (across a new key-store value on
//!   the same backing store), `get` omitting what has no key, `forget`
//!   idempotent and saying whether it forgot, no key ever again for a
//!   forgotten subject, and a forget racing creates leaving no key behind;
//! - **through the executor** with [`PersonalData`]: a `Personal` field is
//!   committed sealed (no plaintext in the stored payload, in either codec,
//!   nor anywhere the stores keep), read back `Known`; after a forget,
//!   commands fold it `Forgotten` and still commit, other subjects and
//!   fields that are not personal unchanged; new personal data of the
//!   forgotten subject is refused with a typed
//!   [`PersonalError::SubjectForgotten`] and nothing appended; a forget
//!   changes no event; a `read_all` page and a subscription's batches,
//!   decoded by a [`BatchDecoder`], read `Known` before and `Forgotten`
//!   after.
//!
//! These cases need a key store beside the event store, so they take a
//! [`PersonalDataFactory`] and have their own macro,
//! [`crate::personal_data_suite!`]: [`MemoryKeys`] pairs any memory
//! [`StoreFactory`] with a [`MemoryKeyStore`], and
//! [`PostgresFactory`](crate::postgres::PostgresFactory) pairs each fresh
//! schema with a [`PgKeyStore`] in it.

use super::*;
use crate::postgres::{schema_as_text, PostgresFactory};
use eventcore_postgres::PostgresStore;
use eventcore_shred::{
    DataKey, KeyStore, KeyStoreError, MemoryKeyStore, NonceSource, Personal, PersonalData, PersonalError, PgKeyStore,
    SubjectId,
};
use eventcore_tokio::{BatchDecoder, Executor, MemoryCheckpointStore, Runner, Subscriber};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Mutex;

/// Makes the stores of the personal-data group: a fresh, isolated event
/// store with a key store of its own, and what the cases need to look
/// behind the key store's answers.
///
/// ```
/// use eventcore_tests::conformance::{MemoryKeys, PersonalDataFactory};
/// struct Memory;
/// impl eventcore_tests::StoreFactory for Memory {
///     type Store = eventcore_tokio::MemoryEventStore;
///     async fn fresh(&self) -> Self::Store {
///         eventcore_tokio::MemoryEventStore::new()
///     }
/// }
/// fn runs_the_group<F: PersonalDataFactory>(_: F) {}
/// runs_the_group(MemoryKeys(Memory));
/// ```
pub trait PersonalDataFactory: Send + Sync + 'static {
    /// The event store under test.
    type Store: EventStore + Clone;
    /// The key store under test.
    type Keys: KeyStore + Clone;

    /// A fresh, empty event store and a fresh, empty key store, isolated
    /// from every other pair (cases run in parallel).
    fn fresh_stores(&self) -> impl Future<Output = (Self::Store, Self::Keys)> + Send;

    /// Another key-store value on the backing store of `keys`, sharing
    /// nothing else with it: what a restarted process would build (for
    /// PostgreSQL, a new pool).
    fn reopen(&self, store: &Self::Store, keys: &Self::Keys) -> impl Future<Output = Self::Keys> + Send;

    /// The subjects among `subjects` whose key the backing store still
    /// holds, read behind the key store's own filters (a forgotten
    /// subject's key row left behind must show here).
    fn held_keys(
        &self,
        store: &Self::Store,
        keys: &Self::Keys,
        subjects: &BTreeSet<SubjectId>,
    ) -> impl Future<Output = BTreeSet<SubjectId>> + Send;

    /// Everything the event store keeps, as text: what a case searches for
    /// plaintext that must not be stored.
    fn stored_text(&self, store: &Self::Store) -> impl Future<Output = String> + Send;
}

/// The memory pairing: the event stores of `F` (any memory
/// [`StoreFactory`]) with a [`MemoryKeyStore`] each.
///
/// ```
/// use eventcore_tests::conformance::MemoryKeys;
/// struct Memory;
/// impl eventcore_tests::StoreFactory for Memory {
///     type Store = eventcore_tokio::MemoryEventStore;
///     async fn fresh(&self) -> Self::Store {
///         eventcore_tokio::MemoryEventStore::new()
///     }
/// }
/// # fn main() {
/// tokio::runtime::Runtime::new()
///     .expect("a runtime")
///     .block_on(eventcore_tests::conformance::forget_is_idempotent_and_says_whether_it_forgot(MemoryKeys(Memory)));
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct MemoryKeys<F>(pub F);

impl<F: StoreFactory> PersonalDataFactory for MemoryKeys<F> {
    type Store = F::Store;
    type Keys = MemoryKeyStore;

    async fn fresh_stores(&self) -> (F::Store, MemoryKeyStore) {
        (self.0.fresh().await, MemoryKeyStore::new())
    }

    async fn reopen(&self, _: &F::Store, keys: &MemoryKeyStore) -> MemoryKeyStore {
        // The backing store of a MemoryKeyStore is the map its clones share.
        keys.clone()
    }

    async fn held_keys(
        &self,
        _: &F::Store,
        keys: &MemoryKeyStore,
        subjects: &BTreeSet<SubjectId>,
    ) -> BTreeSet<SubjectId> {
        // `get` reads the map itself: there is no filter to look behind.
        keys.get(subjects)
            .await
            .expect("a memory key store answers")
            .into_keys()
            .collect()
    }

    async fn stored_text(&self, store: &F::Store) -> String {
        global_log(store)
            .await
            .iter()
            .map(|event| stored_form(&event.payload))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// PostgreSQL: each pair is a fresh schema and a [`PgKeyStore`] in it,
/// migrated.
impl PersonalDataFactory for PostgresFactory {
    type Store = PostgresStore;
    type Keys = PgKeyStore;

    async fn fresh_stores(&self) -> (PostgresStore, PgKeyStore) {
        let store = StoreFactory::fresh(self).await;
        let keys = PgKeyStore::new(&store);
        keys.migrate().await.expect("the key tables are created");
        (store, keys)
    }

    async fn reopen(&self, store: &PostgresStore, _: &PgKeyStore) -> PgKeyStore {
        let restarted = PostgresStore::connect_with(store.options().clone())
            .await
            .expect("a second pool connects to the same schema");
        PgKeyStore::new(&restarted)
    }

    async fn held_keys(
        &self,
        store: &PostgresStore,
        _: &PgKeyStore,
        subjects: &BTreeSet<SubjectId>,
    ) -> BTreeSet<SubjectId> {
        let names: Vec<&str> = subjects.iter().map(SubjectId::as_str).collect();
        let rows: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT subject FROM \"{}\".shred_keys WHERE subject = ANY($1)",
            store.options().schema
        ))
        .bind(&names)
        .fetch_all(store.pool())
        .await
        .expect("the key rows are read");
        rows.iter().map(|name| subject(name)).collect()
    }

    async fn stored_text(&self, store: &PostgresStore) -> String {
        let dump = schema_as_text(store).await;
        for table in ["events", "shred_keys", "shred_forgotten"] {
            assert!(
                dump.contains(&format!("-- {table}\n")),
                "the dump of schema {} has no table {table}",
                store.options().schema
            );
        }
        dump
    }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const ALICE_EMAIL: &str = "alice.plaintext@example.org";
const BOB_EMAIL: &str = "bob.plaintext@example.net";
const PLAN: &str = "gold-plan-shred-7";

/// A subject id the group knows to be valid.
fn subject(name: &str) -> SubjectId {
    SubjectId::new(name).expect("the group only uses valid subject ids")
}

fn alice() -> SubjectId {
    subject("subject-alice")
}

fn bob() -> SubjectId {
    subject("subject-bob")
}

fn set(subjects: &[&SubjectId]) -> BTreeSet<SubjectId> {
    subjects.iter().map(|s| (*s).clone()).collect()
}

/// A payload as stored, as text: JSON as it is; MessagePack's bytes read as
/// UTF-8 wherever they are (a string is stored as its UTF-8 bytes, so a
/// plaintext would show).
fn stored_form(payload: &Payload) -> String {
    match payload.as_msgpack() {
        Some(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        None => payload.as_json().to_owned(),
    }
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum CustomerEvent {
    Registered { email: Personal<String>, plan: String },
    EmailChanged { email: Personal<String> },
    Noted { note: String },
}

impl Event for CustomerEvent {
    const NAMESPACE: &'static str = "pd";
}

fn registered(who: SubjectId, email: &str) -> CustomerEvent {
    CustomerEvent::Registered {
        email: Personal::new(who, email.to_owned()),
        plan: PLAN.to_owned(),
    }
}

fn noted(note: &str) -> CustomerEvent {
    CustomerEvent::Noted { note: note.to_owned() }
}

/// What a command folded from one customer's stream.
#[derive(Clone, Debug, Default, PartialEq)]
struct Folded {
    email: Option<Personal<String>>,
    plan: Option<String>,
    notes: Vec<String>,
}

type Customers = BTreeMap<StreamId, Folded>;

#[derive(Debug, thiserror::Error)]
#[error("never raised")]
struct Never;

/// Folds `streams`, records what it folded, and emits `emit`.
struct Act {
    streams: Vec<StreamId>,
    emit: Vec<(StreamId, CustomerEvent)>,
    seen: Arc<Mutex<Option<Customers>>>,
}

impl Command for Act {
    type Event = CustomerEvent;
    type State = Customers;
    type Error = Never;

    fn streams(&self) -> Vec<StreamId> {
        self.streams.clone()
    }

    fn apply(&self, state: &mut Customers, stream: &StreamId, event: &CustomerEvent) {
        let folded = state.entry(stream.clone()).or_default();
        match event {
            CustomerEvent::Registered { email, plan } => {
                folded.email = Some(email.clone());
                folded.plan = Some(plan.clone());
            }
            CustomerEvent::EmailChanged { email } => folded.email = Some(email.clone()),
            CustomerEvent::Noted { note } => folded.notes.push(note.clone()),
        }
    }

    fn decide(&self, state: &Customers, out: &mut Decision<CustomerEvent>) -> Result<(), Never> {
        *self.seen.lock().expect("not poisoned") = Some(state.clone());
        for (stream, event) in &self.emit {
            out.emit(stream, event.clone());
        }
        Ok(())
    }
}

/// An event store, its key store and the codec context over them.
struct World<F: PersonalDataFactory> {
    store: F::Store,
    keys: F::Keys,
    personal: Arc<PersonalData>,
}

impl<F: PersonalDataFactory> World<F> {
    async fn new(factory: &F) -> Self {
        let (store, keys) = factory.fresh_stores().await;
        let personal = Arc::new(PersonalData::new(
            Arc::new(keys.clone()),
            NonceSource::from_os().expect("randomness for nonces"),
        ));
        World { store, keys, personal }
    }

    /// A new executor each time: nothing it decoded before is cached.
    fn executor(&self) -> Executor<F::Store> {
        Executor::new(self.store.clone()).with_codec_context(Arc::clone(&self.personal))
    }

    fn decoder(&self) -> BatchDecoder {
        BatchDecoder::shared(self.personal.clone())
    }

    /// Runs [`Act`]; on success, what it folded.
    async fn act(
        &self,
        streams: &[&StreamId],
        emit: Vec<(StreamId, CustomerEvent)>,
    ) -> Result<Customers, ExecutionError<Never>> {
        let seen = Arc::new(Mutex::new(None));
        self.executor()
            .execute(Act {
                streams: streams.iter().map(|s| (*s).clone()).collect(),
                emit,
                seen: seen.clone(),
            })
            .await?;
        let folded = seen.lock().expect("not poisoned").take();
        Ok(folded.expect("decide ran"))
    }

    /// What a command folds from `streams`, committing nothing.
    async fn fold(&self, streams: &[&StreamId]) -> Customers {
        self.act(streams, Vec::new())
            .await
            .expect("a command that only reads succeeds, forgotten or not")
    }

    async fn emit(&self, stream: &StreamId, event: CustomerEvent) {
        self.act(&[stream], vec![(stream.clone(), event)])
            .await
            .expect("the command commits");
    }

    async fn forget(&self, who: &SubjectId) {
        assert!(
            self.keys.forget(who).await.expect("the key store answers"),
            "{who} was not forgotten before"
        );
    }
}

/// The subject a [`PersonalError::SubjectForgotten`] in `error`'s source
/// chain names: the refusal is typed, not only text.
fn refused_subject(error: &(dyn std::error::Error + 'static)) -> Option<SubjectId> {
    let mut next = error.source();
    while let Some(cause) = next {
        if let Some(PersonalError::SubjectForgotten { subject }) = cause.downcast_ref::<PersonalError>() {
            return Some(subject.clone());
        }
        next = cause.source();
    }
    None
}

/// The e-mails decoded from `events` in order, by `decoder`, which must
/// decode them all.
async fn emails_decoded(decoder: &BatchDecoder, events: &[RecordedEvent]) -> Vec<Personal<String>> {
    emails_decoded_or_poison(decoder, events)
        .await
        .expect("every event decodes, forgotten or not")
}

/// A subscriber decoding its batches under the codec context.
struct Emails {
    decoder: BatchDecoder,
    seen: Arc<Mutex<Vec<Personal<String>>>>,
}

impl Subscriber for Emails {
    async fn handle(&mut self, batch: &Batch) -> Result<(), HandleError> {
        let emails = emails_decoded_or_poison(&self.decoder, &batch.events).await?;
        self.seen.lock().expect("not poisoned").extend(emails);
        Ok(())
    }
}

async fn emails_decoded_or_poison(
    decoder: &BatchDecoder,
    events: &[RecordedEvent],
) -> Result<Vec<Personal<String>>, HandleError> {
    Ok(decoder
        .decode::<CustomerEvent>(events.iter())
        .await?
        .into_iter()
        .filter_map(|(event, _)| match event {
            CustomerEvent::Registered { email, .. } | CustomerEvent::EmailChanged { email } => Some(email),
            CustomerEvent::Noted { .. } => None,
        })
        .collect())
}

/// The e-mails a subscription named `name` delivers from the start.
async fn subscribe<F: PersonalDataFactory>(world: &World<F>, name: &str) -> Vec<Personal<String>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let subscriber = Emails {
        decoder: world.decoder(),
        seen: seen.clone(),
    };
    let summary = Runner::subscription(name, world.store.clone(), MemoryCheckpointStore::new(), subscriber)
        .run_until_caught_up()
        .await
        .expect("the subscription catches up");
    assert_eq!(summary.stats.parked, 0, "{name}: nothing parked as poison");
    let seen = seen.lock().expect("not poisoned").clone();
    seen
}

// ---------------------------------------------------------------------------
// The key store contract
// ---------------------------------------------------------------------------

/// `get_or_create` gives one key per subject, the same every time, also to
/// a new key-store value on the same backing store; distinct subjects get
/// distinct keys.
pub async fn a_subject_keeps_one_key_across_calls_and_key_store_values<F: PersonalDataFactory>(factory: F) {
    let (store, keys) = factory.fresh_stores().await;
    let (ann, ben) = (subject("key-ann"), subject("key-ben"));
    let both = set(&[&ann, &ben]);
    let first = keys.get_or_create(&both).await.expect("keys created");
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        [&ann, &ben],
        "a key for each subject asked"
    );
    assert_ne!(first[&ann].bytes(), first[&ben].bytes(), "each subject its own key");
    assert_eq!(
        keys.get_or_create(&both).await.expect("keys fetched"),
        first,
        "the same keys again"
    );
    assert_eq!(
        keys.get_or_create(&set(&[&ann])).await.expect("key fetched")[&ann],
        first[&ann],
        "asked alone, the same key"
    );

    let reopened = factory.reopen(&store, &keys).await;
    assert_eq!(
        reopened.get_or_create(&both).await.expect("keys fetched"),
        first,
        "a new key-store value on the same backing store: the same keys"
    );
    assert_eq!(reopened.get(&both).await.expect("keys fetched"), first);
}

/// `get` returns the keys that exist and omits subjects without one: never
/// keyed, or forgotten. It creates nothing.
pub async fn get_omits_subjects_without_a_key<F: PersonalDataFactory>(factory: F) {
    let (store, keys) = factory.fresh_stores().await;
    let (kept, unknown, gone) = (subject("get-kept"), subject("get-unknown"), subject("get-gone"));
    let created = keys.get_or_create(&set(&[&kept, &gone])).await.expect("keys created");
    assert!(
        keys.get(&BTreeSet::new()).await.expect("answers").is_empty(),
        "nothing asked"
    );
    assert!(
        keys.get(&set(&[&unknown])).await.expect("answers").is_empty(),
        "a subject never keyed has no key"
    );
    assert!(
        factory.held_keys(&store, &keys, &set(&[&unknown])).await.is_empty(),
        "get created no key"
    );
    assert!(keys.forget(&gone).await.expect("forgets"));
    let found = keys.get(&set(&[&kept, &unknown, &gone])).await.expect("answers");
    assert_eq!(found.keys().collect::<Vec<_>>(), [&kept], "only the key that exists");
    assert_eq!(found[&kept], created[&kept]);
}

/// `forget` is idempotent and says whether this call forgot the subject;
/// `is_forgotten` says so from then on, also through a new key-store value,
/// and of no other subject.
pub async fn forget_is_idempotent_and_says_whether_it_forgot<F: PersonalDataFactory>(factory: F) {
    let (store, keys) = factory.fresh_stores().await;
    let (keyed, never, other) = (subject("fgt-keyed"), subject("fgt-never"), subject("fgt-other"));
    keys.get_or_create(&set(&[&keyed, &other])).await.expect("keys created");
    assert!(
        !keys.is_forgotten(&keyed).await.expect("answers"),
        "not before the forget"
    );

    assert!(keys.forget(&keyed).await.expect("forgets"), "the first forget forgets");
    assert!(
        !keys.forget(&keyed).await.expect("forgets"),
        "the second has nothing to do"
    );
    assert!(keys.is_forgotten(&keyed).await.expect("answers"));
    assert!(
        keys.forget(&never).await.expect("forgets"),
        "a subject with no key yet is forgotten too (no key is made for them later)"
    );
    assert!(keys.is_forgotten(&never).await.expect("answers"));
    assert!(
        !keys.is_forgotten(&other).await.expect("answers"),
        "another subject is not"
    );

    let reopened = factory.reopen(&store, &keys).await;
    assert!(reopened.is_forgotten(&keyed).await.expect("answers"), "remembered");
    assert!(!reopened.forget(&keyed).await.expect("forgets"), "still idempotent");
    assert!(!reopened.is_forgotten(&other).await.expect("answers"));
    assert!(
        factory
            .held_keys(&store, &keys, &set(&[&keyed, &never]))
            .await
            .is_empty(),
        "the forgotten subject's key is deleted"
    );
    assert_eq!(
        factory.held_keys(&store, &keys, &set(&[&other])).await,
        set(&[&other]),
        "another subject's key is kept"
    );
}

/// `get_or_create` of a forgotten subject is refused with
/// [`KeyStoreError::SubjectForgotten`] naming them, whole: no key is made
/// for them, nor for the other subjects of the same call.
pub async fn a_forgotten_subject_gets_no_new_key<F: PersonalDataFactory>(factory: F) {
    let (store, keys) = factory.fresh_stores().await;
    let (gone, fresh) = (subject("new-gone"), subject("new-fresh"));
    keys.get_or_create(&set(&[&gone])).await.expect("key created");
    assert!(keys.forget(&gone).await.expect("forgets"));

    let reopened = factory.reopen(&store, &keys).await;
    for (label, keys) in [("same value", &keys), ("new value", &reopened)] {
        for asked in [set(&[&gone]), set(&[&gone, &fresh])] {
            match keys.get_or_create(&asked).await {
                Err(KeyStoreError::SubjectForgotten { subject }) => {
                    assert_eq!(subject, gone, "{label}: the refusal names the forgotten subject")
                }
                other => panic!("{label}: {asked:?} must be refused as forgotten, got {other:?}"),
            }
        }
    }
    assert!(
        factory
            .held_keys(&store, &keys, &set(&[&gone, &fresh]))
            .await
            .is_empty(),
        "no key for the forgotten subject, nor for the one asked with them"
    );
    assert!(keys.get(&set(&[&gone])).await.expect("answers").is_empty());
}

/// Many tasks creating keys (alone and in pairs) race two forgets of each
/// subject: exactly one forget forgets, every key handed out for a subject
/// is the same, every refusal names a forgotten subject, and once all is
/// done no key is left behind.
pub async fn a_forget_racing_creates_never_leaves_a_key_behind<F: PersonalDataFactory>(factory: F) {
    const SUBJECTS: usize = 8;
    enum Outcome {
        Created(BTreeSet<SubjectId>, Result<BTreeMap<SubjectId, DataKey>, KeyStoreError>),
        Forgot(SubjectId, bool),
    }
    let (store, keys) = factory.fresh_stores().await;
    let subjects: Vec<SubjectId> = (0..SUBJECTS).map(|n| subject(&format!("race-{n}"))).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for (n, s) in subjects.iter().enumerate() {
        let pair = set(&[s, &subjects[(n + 1) % SUBJECTS]]);
        // Creates before, between and after the two forgets, so that the
        // forgets land among creates whatever the scheduling.
        for (asked, then_forget) in [
            (set(&[s]), false),
            (pair.clone(), true),
            (set(&[s]), false),
            (pair, true),
        ] {
            let creator = keys.clone();
            tasks.spawn(async move {
                let created = creator.get_or_create(&asked).await;
                Outcome::Created(asked, created)
            });
            if then_forget {
                let (keys, s) = (keys.clone(), s.clone());
                tasks.spawn(async move {
                    let forgot = keys.forget(&s).await.expect("a forget succeeds");
                    Outcome::Forgot(s, forgot)
                });
            }
        }
    }

    let mut forgets: BTreeMap<SubjectId, Vec<bool>> = BTreeMap::new();
    let mut handed_out: BTreeMap<SubjectId, DataKey> = BTreeMap::new();
    while let Some(outcome) = tasks.join_next().await {
        match outcome.expect("no task panicked") {
            Outcome::Forgot(s, forgot) => forgets.entry(s).or_default().push(forgot),
            Outcome::Created(asked, Ok(created)) => {
                assert_eq!(
                    created.keys().collect::<BTreeSet<_>>(),
                    asked.iter().collect(),
                    "a key each"
                );
                for (s, key) in created {
                    let first = handed_out.entry(s.clone()).or_insert_with(|| key.clone());
                    assert_eq!(*first, key, "{s}: two keys handed out");
                }
            }
            Outcome::Created(asked, Err(KeyStoreError::SubjectForgotten { subject })) => {
                assert!(asked.contains(&subject), "{subject} refused, but {asked:?} asked")
            }
            Outcome::Created(asked, Err(other)) => panic!("creating {asked:?}: {other}"),
        }
    }
    for s in &subjects {
        let answers = &forgets[s];
        assert_eq!(
            answers.iter().filter(|forgot| **forgot).count(),
            1,
            "{s}: exactly one of its forgets forgot ({answers:?})"
        );
        assert!(keys.is_forgotten(s).await.expect("answers"));
    }
    let all: BTreeSet<SubjectId> = subjects.iter().cloned().collect();
    assert_eq!(
        factory.held_keys(&store, &keys, &all).await,
        BTreeSet::new(),
        "every subject was forgotten, so no key may remain"
    );
    assert!(keys.get(&all).await.expect("answers").is_empty());
}

// ---------------------------------------------------------------------------
// Through the executor
// ---------------------------------------------------------------------------

/// A command writing a `Personal` field commits it sealed: the stored
/// payload, in the store's codec, holds the subject id and the fields that
/// are not personal but not the plaintext (nor does anything else the store
/// keeps); a later command, on a new executor, reads it `Known`.
pub async fn personal_data_is_committed_sealed_and_read_back_known<F: PersonalDataFactory>(factory: F) {
    let world = World::new(&factory).await;
    let customer = stream("pd-alice");
    world.emit(&customer, registered(alice(), ALICE_EMAIL)).await;

    let stored = read(&world.store, std::slice::from_ref(&customer))
        .await
        .remove(0)
        .events;
    let [event] = stored.as_slice() else {
        panic!("one event stored: {stored:?}")
    };
    let codec = world.store.codec();
    assert_eq!(event.payload.codec(), codec, "stored in the store's codec");
    let form = stored_form(&event.payload);
    assert!(
        form.contains(PLAN),
        "{codec}: a field that is not personal is in the clear: {form}"
    );
    assert!(
        form.contains("subject-alice"),
        "{codec}: the subject id is in the clear: {form}"
    );
    assert!(
        !form.contains(ALICE_EMAIL),
        "{codec}: the e-mail stored in the clear: {form}"
    );
    assert!(
        !form.contains("example.org"),
        "{codec}: part of the e-mail stored: {form}"
    );
    assert!(
        !form.contains("pending"),
        "{codec}: a placeholder reached the store: {form}"
    );

    let everything = factory.stored_text(&world.store).await;
    assert!(
        everything.contains(PLAN) || everything.contains(&hex(PLAN)),
        "{codec}: the stored text holds the event, so a leak would show"
    );
    assert!(
        !everything.contains(ALICE_EMAIL),
        "{codec}: the e-mail found where the store keeps data"
    );
    assert!(
        !everything.contains(&hex(ALICE_EMAIL)),
        "{codec}: the e-mail found hex-encoded"
    );

    let folded = world.fold(&[&customer]).await;
    assert_eq!(
        folded[&customer].email,
        Some(Personal::new(alice(), ALICE_EMAIL.to_owned()))
    );
    assert_eq!(folded[&customer].plan.as_deref(), Some(PLAN));
}

/// After a forget, commands fold the subject's fields `Forgotten` and
/// still commit; another subject's fields and the fields that are not
/// personal read as before, and the other subject still writes.
pub async fn after_a_forget_commands_fold_forgotten_and_still_commit<F: PersonalDataFactory>(factory: F) {
    let world = World::new(&factory).await;
    let (a, b) = (stream("pd-alice"), stream("pd-bob"));
    world.emit(&a, registered(alice(), ALICE_EMAIL)).await;
    world.emit(&b, registered(bob(), BOB_EMAIL)).await;
    world.forget(&alice()).await;

    let folded = world
        .act(&[&a, &b], vec![(a.clone(), noted("called after the forget"))])
        .await
        .expect("a command folding a forgotten subject commits");
    assert_eq!(folded[&a].email, Some(Personal::Forgotten { subject: alice() }));
    assert_eq!(
        folded[&a].plan.as_deref(),
        Some(PLAN),
        "a field that is not personal is kept"
    );
    assert_eq!(
        folded[&b].email,
        Some(Personal::new(bob(), BOB_EMAIL.to_owned())),
        "another subject"
    );

    let changed = "bob.changed@example.net";
    world
        .emit(
            &b,
            CustomerEvent::EmailChanged {
                email: Personal::new(bob(), changed.to_owned()),
            },
        )
        .await;
    let folded = world.fold(&[&a, &b]).await;
    assert_eq!(folded[&a].notes, ["called after the forget"], "the note was committed");
    assert_eq!(folded[&a].email, Some(Personal::Forgotten { subject: alice() }));
    assert_eq!(folded[&b].email, Some(Personal::new(bob(), changed.to_owned())));
    assert_eq!(head(&world.store, &a).await, StreamVersion::new(2));
}

/// New personal data of a forgotten subject is refused, whether the
/// subject had a key or never had one: `CommandErrorKind::Encode`, on the
/// stream of the refused event, its source chain holding
/// [`PersonalError::SubjectForgotten`] naming the subject; nothing is
/// appended (not even the command's other events) and no key is made.
pub async fn new_personal_data_of_a_forgotten_subject_is_refused_and_nothing_is_appended<F: PersonalDataFactory>(
    factory: F,
) {
    let world = World::new(&factory).await;
    let (a, b, c) = (stream("pd-alice"), stream("pd-bob"), stream("pd-carol"));
    let carol = subject("subject-carol");
    world.emit(&a, registered(alice(), ALICE_EMAIL)).await;
    world.emit(&b, registered(bob(), BOB_EMAIL)).await;
    world.forget(&alice()).await;
    world.forget(&carol).await;
    let before = global_log(&world.store).await;

    let refusals = [
        (
            "her e-mail changed",
            vec![&a],
            vec![(
                a.clone(),
                CustomerEvent::EmailChanged {
                    email: Personal::new(alice(), "alice.new@example.org".into()),
                },
            )],
            alice(),
            &a,
        ),
        (
            "with another stream's event first",
            vec![&b, &a],
            vec![
                (b.clone(), noted("written with the refused event")),
                (a.clone(), registered(alice(), "alice.again@example.org")),
            ],
            alice(),
            &a,
        ),
        (
            "a subject forgotten before any data of theirs",
            vec![&c],
            vec![(c.clone(), registered(carol.clone(), "carol@example.org"))],
            carol.clone(),
            &c,
        ),
    ];
    for (label, streams, emit, who, on) in refusals {
        let error = world.act(&streams, emit).await.expect_err(label).error;
        assert_eq!(error.kind(), CommandErrorKind::Encode, "{label}: {error}");
        assert!(
            matches!(&error, CommandError::Encode { stream, .. } if stream == on),
            "{label}: refused on {on}: {error:?}"
        );
        assert_eq!(
            refused_subject(&error),
            Some(who.clone()),
            "{label}: typed cause of {error:?}"
        );
        assert_eq!(global_log(&world.store).await, before, "{label}: nothing appended");
        assert!(
            factory
                .held_keys(&world.store, &world.keys, &set(&[&who]))
                .await
                .is_empty(),
            "{label}: no key made for {who}"
        );
    }
}

/// A forget changes no event: the log, read whole, is the same before and
/// after (same events, positions, versions, stored payloads), and so are
/// the streams' heads; the next commit is the one event it appends.
pub async fn a_forget_changes_no_event<F: PersonalDataFactory>(factory: F) {
    let world = World::new(&factory).await;
    let (a, b) = (stream("pd-alice"), stream("pd-bob"));
    world.emit(&a, registered(alice(), ALICE_EMAIL)).await;
    world
        .emit(
            &a,
            CustomerEvent::EmailChanged {
                email: Personal::new(alice(), "alice.two@example.org".into()),
            },
        )
        .await;
    world.emit(&b, registered(bob(), BOB_EMAIL)).await;
    let before = global_log(&world.store).await;
    assert_eq!(before.len(), 3);

    world.forget(&alice()).await;
    assert!(
        !world.keys.forget(&alice()).await.expect("forgets"),
        "again: nothing to do"
    );
    assert_eq!(global_log(&world.store).await, before, "the same events, untouched");
    assert_eq!(head(&world.store, &a).await, StreamVersion::new(2));
    assert_eq!(head(&world.store, &b).await, StreamVersion::new(1));

    world.emit(&a, noted("after")).await;
    let after = global_log(&world.store).await;
    assert_eq!(after.len(), before.len() + 1, "one command, one event");
    assert_eq!(after[..before.len()], before[..]);
}

/// A `read_all` page decoded by a [`BatchDecoder`] under the codec context,
/// and a subscription decoding its batches with one, read a subject's
/// fields `Known` before the forget and `Forgotten` after, another
/// subject's `Known` throughout; without the context a sealed event is
/// poison, never plaintext.
pub async fn read_all_pages_and_subscriptions_decode_known_then_forgotten<F: PersonalDataFactory>(factory: F) {
    let world = World::new(&factory).await;
    let (a, b) = (stream("pd-alice"), stream("pd-bob"));
    world.emit(&a, registered(alice(), ALICE_EMAIL)).await;
    world.emit(&b, registered(bob(), BOB_EMAIL)).await;
    let page = || async {
        world
            .store
            .read_all(&read_all_request(GlobalPosition::START, 100, EventFilter::all()))
            .await
            .expect("read_all")
            .events
    };

    let known = vec![
        Personal::new(alice(), ALICE_EMAIL.to_owned()),
        Personal::new(bob(), BOB_EMAIL.to_owned()),
    ];
    assert_eq!(
        emails_decoded(&world.decoder(), &page().await).await,
        known,
        "read_all, before"
    );
    assert_eq!(subscribe(&world, "before").await, known, "subscription, before");
    assert!(
        matches!(
            emails_decoded_or_poison(&BatchDecoder::plain(), &page().await).await,
            Err(HandleError::Poison(_))
        ),
        "without the context a sealed event does not decode"
    );

    world.forget(&alice()).await;

    let after = vec![
        Personal::Forgotten { subject: alice() },
        Personal::new(bob(), BOB_EMAIL.to_owned()),
    ];
    assert_eq!(
        emails_decoded(&world.decoder(), &page().await).await,
        after,
        "read_all, after"
    );
    assert_eq!(subscribe(&world, "after").await, after, "subscription, after");
}

/// Expands to one `#[tokio::test]` per personal-data case for `$factory`,
/// a [`PersonalDataFactory`].
#[macro_export]
macro_rules! personal_data_suite {
    ($factory:expr) => {
        $crate::conformance_suite!(@cases $factory;
            a_subject_keeps_one_key_across_calls_and_key_store_values,
            get_omits_subjects_without_a_key,
            forget_is_idempotent_and_says_whether_it_forgot,
            a_forgotten_subject_gets_no_new_key,
            a_forget_racing_creates_never_leaves_a_key_behind,
            personal_data_is_committed_sealed_and_read_back_known,
            after_a_forget_commands_fold_forgotten_and_still_commit,
            new_personal_data_of_a_forgotten_subject_is_refused_and_nothing_is_appended,
            a_forget_changes_no_event,
            read_all_pages_and_subscriptions_decode_known_then_forgotten,
        );
    };
}
