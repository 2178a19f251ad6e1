//! Crypto-shredding through the executor and the runners
//! (`Executor::with_codec_context(PersonalData)`), on the memory store:
//! commands write `Personal` fields with no sealing of their own, the store
//! holds them sealed, they read back `Known`; after `forget` commands,
//! projections, subscribers and snapshots read them `Forgotten` (a value,
//! never a decode error), and new data of the forgotten subject is refused
//! with nothing appended.

use eventcore::{
    AnyEvent, Batch, Command, CommandError, CommandErrorKind, Decision, Emit, Event, HandleError, ReadRequest,
    RecordedEvent, StreamId, View, ViewKind, Views,
};
use eventcore_shred::{DynKeyStore, KeyStore, MemoryKeyStore, NonceSource, Personal, PersonalData, SubjectId};
use eventcore_tokio::{
    BatchDecoder, Executor, MemoryCheckpointStore, MemoryEventStore, MemoryReadModel, MemorySnapshotStore,
    MemoryTransaction, Projection, ProjectionError, Runner, SnapshotStore, Subscriber,
};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

const EMAIL: &str = "alice.liddell@example.com";
const PLAN: &str = "gold-plan-7";

#[derive(Debug, Clone, Serialize, Deserialize)]
enum CustomerEvent {
    Registered { email: Personal<String>, plan: String },
    EmailChanged { email: Personal<String> },
    Noted { note: String },
}

impl Event for CustomerEvent {
    const NAMESPACE: &'static str = "customer";
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

fn customer() -> StreamId {
    StreamId::new("customer-1").expect("valid stream")
}

fn alice() -> SubjectId {
    SubjectId::new("subject-alice").expect("valid subject")
}

/// Appends `event` to the customer's stream; records the email the stream
/// folded to before deciding.
struct Write {
    event: CustomerEvent,
    seen: Arc<Mutex<Option<Personal<String>>>>,
}

impl Write {
    fn new(event: CustomerEvent) -> Self {
        Write {
            event,
            seen: Arc::default(),
        }
    }
}

impl Command for Write {
    type Event = CustomerEvent;
    type State = Option<Personal<String>>;
    type Error = Never;

    fn streams(&self) -> Vec<StreamId> {
        vec![customer()]
    }

    fn apply(&self, state: &mut Self::State, _: &StreamId, event: &CustomerEvent) {
        match event {
            CustomerEvent::Registered { email, .. } | CustomerEvent::EmailChanged { email } => {
                *state = Some(email.clone())
            }
            CustomerEvent::Noted { .. } => {}
        }
    }

    fn decide(&self, state: &Self::State, out: &mut Decision<CustomerEvent>) -> Result<(), Never> {
        *self.seen.lock().expect("not poisoned") = state.clone();
        out.emit(&customer(), self.event.clone());
        Ok(())
    }
}

/// Reads the customer's stream and decides nothing.
struct Look {
    seen: Arc<Mutex<Option<Personal<String>>>>,
}

impl Command for Look {
    type Event = CustomerEvent;
    type State = Option<Personal<String>>;
    type Error = Never;

    fn streams(&self) -> Vec<StreamId> {
        vec![customer()]
    }

    fn apply(&self, state: &mut Self::State, stream: &StreamId, event: &CustomerEvent) {
        Write::new(CustomerEvent::Noted { note: String::new() }).apply(state, stream, event);
    }

    fn decide(&self, state: &Self::State, _: &mut Decision<CustomerEvent>) -> Result<(), Never> {
        *self.seen.lock().expect("not poisoned") = state.clone();
        Ok(())
    }
}

fn registered(email: &str) -> CustomerEvent {
    CustomerEvent::Registered {
        email: Personal::new(alice(), email.to_owned()),
        plan: PLAN.to_owned(),
    }
}

struct World {
    store: MemoryEventStore,
    keys: MemoryKeyStore,
    context: Arc<PersonalData>,
}

impl World {
    fn new() -> Self {
        let keys = MemoryKeyStore::new();
        let shared: Arc<dyn DynKeyStore> = Arc::new(keys.clone());
        World {
            store: MemoryEventStore::new(),
            keys,
            context: Arc::new(PersonalData::new(shared, NonceSource::from_seed([7; 32]))),
        }
    }

    fn executor(&self) -> Executor<MemoryEventStore> {
        Executor::new(self.store.clone()).with_codec_context(Arc::clone(&self.context))
    }

    fn decoder(&self) -> BatchDecoder {
        BatchDecoder::shared(self.context.clone())
    }

    fn stored(&self) -> Vec<RecordedEvent> {
        let response = self
            .store
            .read_sync(&ReadRequest::new([customer()]))
            .expect("the store reads");
        response.streams.into_iter().flat_map(|slice| slice.events).collect()
    }

    async fn look(&self, executor: &Executor<MemoryEventStore>) -> Option<Personal<String>> {
        let seen = Arc::new(Mutex::new(None));
        executor
            .execute(Look { seen: seen.clone() })
            .await
            .expect("reading succeeds, forgotten or not");
        let seen = seen.lock().expect("not poisoned").clone();
        seen
    }
}

fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(" / ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[tokio::test]
async fn a_command_writes_personal_data_sealed_and_the_next_reads_it_known() {
    let world = World::new();
    let executor = world.executor();
    executor
        .execute(Write::new(registered(EMAIL)))
        .await
        .expect("registers");

    let stored = world.stored();
    assert_eq!(stored.len(), 1);
    let json = stored[0].payload.as_json();
    assert!(!json.contains(EMAIL), "plaintext in the events: {json}");
    assert!(
        json.contains(PLAN),
        "the field that is not personal stays readable: {json}"
    );
    assert!(
        json.contains(r#""$personal":{"subject":"subject-alice","key":1"#),
        "{json}"
    );
    assert!(!json.contains("pending"), "no placeholder reached the store: {json}");

    assert_eq!(
        world.look(&executor).await,
        Some(Personal::new(alice(), EMAIL.to_owned()))
    );
    assert_eq!(
        world.look(&world.executor()).await,
        Some(Personal::new(alice(), EMAIL.to_owned())),
        "a new executor (nothing cached) reads it too"
    );
}

#[tokio::test]
async fn without_the_context_personal_data_is_refused_and_nothing_is_appended() {
    let world = World::new();
    let error = Executor::new(world.store.clone())
        .execute(Write::new(registered(EMAIL)))
        .await
        .expect_err("no encryption scope: refused, never plaintext");
    assert_eq!(error.error.kind(), CommandErrorKind::Encode);
    assert!(world.stored().is_empty());
}

#[tokio::test]
async fn after_forget_commands_read_forgotten_and_new_data_of_the_subject_is_refused() {
    let world = World::new();
    // The stream cache keeps the events as stored (sealed): the forgotten
    // subject must read forgotten through it too.
    let executor = world.executor().with_stream_cache(1_000);
    executor
        .execute(Write::new(registered(EMAIL)))
        .await
        .expect("registers");
    assert!(world.look(&executor).await.is_some_and(|e| e.known().is_some()));

    assert!(world.keys.forget(&alice()).await.expect("forgets"));

    for (label, executor) in [("cached", &executor), ("fresh", &world.executor())] {
        assert_eq!(
            world.look(executor).await,
            Some(Personal::Forgotten { subject: alice() }),
            "{label} executor"
        );
    }

    // Writing something that is not personal still works, and the command
    // folds the forgotten email.
    let note = Write::new(CustomerEvent::Noted { note: "called".into() });
    let seen = note.seen.clone();
    executor.execute(note).await.expect("a note needs no key");
    assert_eq!(
        *seen.lock().expect("not poisoned"),
        Some(Personal::Forgotten { subject: alice() })
    );
    assert_eq!(world.stored().len(), 2);

    let error = executor
        .execute(Write::new(CustomerEvent::EmailChanged {
            email: Personal::new(alice(), "new@example.com".into()),
        }))
        .await
        .expect_err("new personal data of a forgotten subject");
    assert_eq!(error.error.kind(), CommandErrorKind::Encode);
    assert!(
        matches!(&error.error, CommandError::Encode { stream, .. } if *stream == customer()),
        "{:?}",
        error.error
    );
    let text = chain(&error.error);
    assert!(text.contains("subject subject-alice is forgotten"), "{text}");
    assert_eq!(refused_subject(&error.error), Some(alice()), "typed: {text}");
    assert_eq!(world.stored().len(), 2, "nothing appended");
}

/// The subject a `PersonalError::SubjectForgotten` in `error`'s source
/// chain names: the refusal is typed, not only text.
fn refused_subject(error: &(dyn std::error::Error + 'static)) -> Option<SubjectId> {
    let mut next = error.source();
    while let Some(cause) = next {
        if let Some(eventcore_shred::PersonalError::SubjectForgotten { subject }) =
            cause.downcast_ref::<eventcore_shred::PersonalError>()
        {
            return Some(subject.clone());
        }
        next = cause.source();
    }
    None
}

#[tokio::test]
async fn new_data_of_a_forgotten_subject_never_read_before_is_refused_too() {
    // The command does not read the subject first: the executor learns it
    // is forgotten only when it asks the key store for a key.
    let world = World::new();
    world.keys.forget(&alice()).await.expect("forgets");
    let error = world
        .executor()
        .execute(Write::new(registered(EMAIL)))
        .await
        .expect_err("refused");
    assert_eq!(error.error.kind(), CommandErrorKind::Encode);
    assert!(chain(&error.error).contains("subject subject-alice is forgotten"));
    assert_eq!(refused_subject(&error.error), Some(alice()), "typed");
    assert!(world.stored().is_empty(), "nothing appended");
}

// ---------------------------------------------------------------------------
// Projections and subscribers.
// ---------------------------------------------------------------------------

/// The emails a projection saw, in order (`None`: forgotten).
struct Emails;

impl Projection for Emails {
    type Event = CustomerEvent;
    type Store = MemoryReadModel<Vec<Option<String>>>;

    async fn apply(
        &mut self,
        tx: &mut MemoryTransaction<Vec<Option<String>>>,
        event: CustomerEvent,
        _: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        if let CustomerEvent::Registered { email, .. } | CustomerEvent::EmailChanged { email } = event {
            tx.state_mut().push(email.into_known());
        }
        Ok(())
    }
}

/// The same, as an at-least-once subscriber decoding its batches itself.
struct EmailSubscriber {
    decoder: BatchDecoder,
    seen: Arc<Mutex<Vec<Personal<String>>>>,
}

impl Subscriber for EmailSubscriber {
    async fn handle(&mut self, batch: &Batch) -> Result<(), HandleError> {
        for (event, _) in self.decoder.decode::<CustomerEvent>(batch.events.iter()).await? {
            if let CustomerEvent::Registered { email, .. } = event {
                self.seen.lock().expect("not poisoned").push(email);
            }
        }
        Ok(())
    }
}

async fn project(world: &World, name: &str) -> Vec<Option<String>> {
    let model = MemoryReadModel::new();
    Runner::projection(name, world.store.clone(), Emails, model.clone())
        .with_codec_context(world.decoder())
        .run_until_caught_up()
        .await
        .expect("the projection catches up without poison");
    model.read(Clone::clone)
}

async fn subscribe(world: &World, name: &str) -> Vec<Personal<String>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let subscriber = EmailSubscriber {
        decoder: world.decoder(),
        seen: seen.clone(),
    };
    let summary = Runner::subscription(name, world.store.clone(), MemoryCheckpointStore::new(), subscriber)
        .run_until_caught_up()
        .await
        .expect("the subscription catches up");
    assert_eq!(summary.stats.parked, 0, "nothing parked as poison");
    let seen = seen.lock().expect("not poisoned").clone();
    seen
}

#[tokio::test]
async fn projections_and_subscribers_read_known_before_forget_and_forgotten_after() {
    let world = World::new();
    world
        .executor()
        .execute(Write::new(registered(EMAIL)))
        .await
        .expect("registers");

    assert_eq!(project(&world, "before").await, vec![Some(EMAIL.to_owned())]);
    assert_eq!(
        subscribe(&world, "before").await,
        vec![Personal::new(alice(), EMAIL.to_owned())]
    );

    world.keys.forget(&alice()).await.expect("forgets");

    assert_eq!(project(&world, "after").await, vec![None]);
    assert_eq!(
        subscribe(&world, "after").await,
        vec![Personal::Forgotten { subject: alice() }]
    );
}

#[tokio::test]
async fn a_projection_without_the_context_parks_the_sealed_event_as_poison_never_reads_plaintext() {
    let world = World::new();
    world
        .executor()
        .execute(Write::new(registered(EMAIL)))
        .await
        .expect("registers");
    let model = MemoryReadModel::new();
    let outcome = Runner::projection("plain", world.store.clone(), Emails, model.clone())
        .run_until_caught_up()
        .await;
    assert!(
        model.read(Vec::is_empty),
        "the sealed event was not applied: {outcome:?}"
    );
}

// ---------------------------------------------------------------------------
// Views and snapshots.
// ---------------------------------------------------------------------------

/// The customer's contact details as a view, snapshotted after every event.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Contact {
    email: Option<Personal<String>>,
    events: u64,
}

impl View for Contact {
    type Event = CustomerEvent;
    const NAME: &'static str = "contact";
    const SNAPSHOT_EVERY: u64 = 1;

    fn apply(&mut self, event: &CustomerEvent) {
        self.events += 1;
        if let CustomerEvent::Registered { email, .. } | CustomerEvent::EmailChanged { email } = event {
            self.email = Some(email.clone());
        }
    }
}

/// Notes something on the customer, deciding on the `Contact` view;
/// records the view it saw.
struct NoteOnContact {
    seen: Arc<Mutex<Option<Contact>>>,
}

impl Command for NoteOnContact {
    type Event = AnyEvent;
    type State = Views;
    type Error = Never;

    fn streams(&self) -> Vec<StreamId> {
        vec![customer()]
    }

    fn view_of(&self, _: &StreamId) -> Option<ViewKind> {
        Some(ViewKind::of::<Contact>())
    }

    fn views_mut(state: &mut Views) -> Option<&mut Views> {
        Some(state)
    }

    fn apply(&self, _: &mut Views, _: &StreamId, _: &AnyEvent) {}

    fn decide(&self, state: &Views, out: &mut Decision<AnyEvent>) -> Result<(), Never> {
        *self.seen.lock().expect("not poisoned") = state.get::<Contact>(&customer()).cloned();
        Emit::new(out).emit(&customer(), CustomerEvent::Noted { note: "seen".into() });
        Ok(())
    }
}

async fn note_on_contact(executor: &Executor<MemoryEventStore>) -> Contact {
    let seen = Arc::new(Mutex::new(None));
    executor
        .execute(NoteOnContact { seen: seen.clone() })
        .await
        .expect("the view command succeeds");
    executor.flush_snapshots().await;
    let contact = seen.lock().expect("not poisoned").clone();
    contact.expect("the command saw the view")
}

async fn stored_snapshot(snapshots: &MemorySnapshotStore) -> String {
    snapshots
        .load(&customer(), Contact::NAME, Contact::VERSION)
        .await
        .expect("loads")
        .expect("a snapshot was written")
        .payload
}

#[tokio::test]
async fn a_snapshot_of_a_view_holding_personal_data_is_sealed_and_reads_forgotten_after_forget() {
    let world = World::new();
    let snapshots = MemorySnapshotStore::new();
    let executor = world.executor().with_snapshots(snapshots.clone());
    executor
        .execute(Write::new(registered(EMAIL)))
        .await
        .expect("registers");
    let contact = note_on_contact(&executor).await;
    assert_eq!(contact.email, Some(Personal::new(alice(), EMAIL.to_owned())));
    assert_eq!(
        executor.view_cache_stats().map(|(entries, _, _)| entries),
        Some(0),
        "a view holding decrypted data is not cached"
    );

    let payload = stored_snapshot(&snapshots).await;
    assert!(!payload.contains(EMAIL), "plaintext in the snapshot: {payload}");
    assert!(
        payload.contains(r#""$personal":{"subject":"subject-alice","key":1"#),
        "{payload}"
    );

    // A fresh executor starts from the snapshot and opens it.
    let fresh = world.executor().with_snapshots(snapshots.clone());
    let contact = note_on_contact(&fresh).await;
    assert_eq!(fresh.snapshot_stats().loaded, 1, "started from the snapshot");
    assert_eq!(contact.email, Some(Personal::new(alice(), EMAIL.to_owned())));
    assert_eq!(contact.events, 2);

    world.keys.forget(&alice()).await.expect("forgets");

    let after = world.executor().with_snapshots(snapshots.clone());
    let contact = note_on_contact(&after).await;
    assert_eq!(after.snapshot_stats().loaded, 1, "started from the snapshot");
    assert_eq!(contact.email, Some(Personal::Forgotten { subject: alice() }));
    assert_eq!(contact.events, 3);
    let payload = stored_snapshot(&snapshots).await;
    assert!(!payload.contains(EMAIL), "{payload}");
    assert!(
        payload.contains(r#"{"$personal":{"subject":"subject-alice","forgotten":true}}"#),
        "the newest snapshot holds the forgotten marker: {payload}"
    );
    // Once nothing decrypted is held, the view is cached again.
    assert_eq!(after.view_cache_stats().map(|(entries, _, _)| entries), Some(1));
}

#[tokio::test]
async fn the_key_store_holds_one_key_per_subject_written() {
    let world = World::new();
    let executor = world.executor();
    for email in ["a@example.com", "b@example.com"] {
        executor
            .execute(Write::new(CustomerEvent::EmailChanged {
                email: Personal::new(alice(), email.into()),
            }))
            .await
            .expect("writes");
    }
    let keys = world.keys.get(&[alice()].into()).await.expect("answers");
    assert_eq!(keys.len(), 1);
    let stored = world.stored();
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|e| !e.payload.as_json().contains("example.com")));
}

#[tokio::test]
async fn the_blocking_executor_seals_opens_and_refuses_like_the_async_one() {
    let world = World::new();
    let blocking = eventcore_tokio::BlockingExecutor::new(world.store.clone())
        .with_stream_cache(1_000)
        .with_codec_context(Arc::clone(&world.context));
    blocking.execute(Write::new(registered(EMAIL))).expect("registers");
    let json = world.stored()[0].payload.as_json().to_owned();
    assert!(!json.contains(EMAIL) && json.contains(r#""key":1"#), "{json}");

    let look = |executor: &eventcore_tokio::BlockingExecutor| {
        let seen = Arc::new(Mutex::new(None));
        executor.execute(Look { seen: seen.clone() }).expect("reads");
        let seen = seen.lock().expect("not poisoned").clone();
        seen
    };
    assert_eq!(look(&blocking), Some(Personal::new(alice(), EMAIL.to_owned())));
    assert_eq!(
        world.look(&world.executor()).await,
        Some(Personal::new(alice(), EMAIL.to_owned())),
        "the async executor opens what the blocking one sealed"
    );

    world.keys.forget(&alice()).await.expect("forgets");
    assert_eq!(look(&blocking), Some(Personal::Forgotten { subject: alice() }));
    let error = blocking.execute(Write::new(registered(EMAIL))).expect_err("refused");
    assert_eq!(error.error.kind(), CommandErrorKind::Encode);
    assert_eq!(world.stored().len(), 1, "nothing appended");
}

/// A key store that cannot be reached.
struct Unreachable;

impl KeyStore for Unreachable {
    async fn get_or_create(
        &self,
        _: &std::collections::BTreeSet<SubjectId>,
    ) -> Result<std::collections::BTreeMap<SubjectId, eventcore_shred::DataKey>, eventcore_shred::KeyStoreError> {
        Err(eventcore_shred::KeyStoreError::Unavailable("connection refused".into()))
    }
    async fn get(
        &self,
        _: &std::collections::BTreeSet<SubjectId>,
    ) -> Result<std::collections::BTreeMap<SubjectId, eventcore_shred::DataKey>, eventcore_shred::KeyStoreError> {
        Err(eventcore_shred::KeyStoreError::Unavailable("connection refused".into()))
    }
    async fn forget(&self, _: &SubjectId) -> Result<bool, eventcore_shred::KeyStoreError> {
        Err(eventcore_shred::KeyStoreError::Unavailable("connection refused".into()))
    }
    async fn is_forgotten(&self, _: &SubjectId) -> Result<bool, eventcore_shred::KeyStoreError> {
        Err(eventcore_shred::KeyStoreError::Unavailable("connection refused".into()))
    }
}

#[tokio::test]
async fn an_unreachable_key_store_fails_the_command_as_unavailable_never_as_a_decode_error_or_plaintext() {
    let world = World::new();
    world
        .executor()
        .execute(Write::new(registered(EMAIL)))
        .await
        .expect("registers");
    // Retried like any transient store error, then given up.
    let mut policy = eventcore::ExecutionPolicy::default();
    policy.retry.max_attempts = 3;
    policy.retry.initial_backoff = std::time::Duration::from_millis(1);
    policy.retry.max_backoff = std::time::Duration::from_millis(1);
    let cut_off = Executor::new(world.store.clone())
        .with_policy(policy)
        .with_codec_context(PersonalData::new(
            Arc::new(Unreachable),
            NonceSource::from_seed([3; 32]),
        ));

    let reading = cut_off
        .execute(Look { seen: Arc::default() })
        .await
        .expect_err("the keys of what it read cannot be fetched");
    assert_eq!(
        reading.error.kind(),
        CommandErrorKind::Unavailable,
        "{:?}",
        reading.error
    );
    assert!(chain(&reading.error).contains("key store"), "{}", chain(&reading.error));

    let fresh = StreamId::new("customer-2").expect("valid stream");
    let writing = cut_off
        .execute(WriteTo {
            stream: fresh.clone(),
            event: registered("bob@example.com"),
        })
        .await
        .expect_err("the key of what it writes cannot be created");
    assert_eq!(
        writing.error.kind(),
        CommandErrorKind::Unavailable,
        "{:?}",
        writing.error
    );
    let nothing = world.store.read_sync(&ReadRequest::new([fresh])).expect("reads");
    assert!(nothing.streams[0].events.is_empty(), "nothing appended");
}

/// Appends `event` to `stream`, reading nothing else.
struct WriteTo {
    stream: StreamId,
    event: CustomerEvent,
}

impl Command for WriteTo {
    type Event = CustomerEvent;
    type State = ();
    type Error = Never;

    fn streams(&self) -> Vec<StreamId> {
        vec![self.stream.clone()]
    }

    fn apply(&self, _: &mut (), _: &StreamId, _: &CustomerEvent) {}

    fn decide(&self, _: &(), out: &mut Decision<CustomerEvent>) -> Result<(), Never> {
        out.emit(&self.stream, self.event.clone());
        Ok(())
    }
}
