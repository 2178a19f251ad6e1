//! Crypto-shredding through the executor, a projection and snapshots on
//! PostgreSQL (`Executor::with_codec_context(PersonalData)` with a
//! `PgKeyStore`): after registering a customer, reading them, snapshotting
//! a view of them and forgetting them, the plaintext e-mail is nowhere in
//! the schema (events, snapshots, commands, keys) nor in the logs at TRACE
//! level, while a field that is not personal is found (so the search
//! could fail); and across a restart (new pool, new key store, new
//! executor) the subject stays forgotten.
//!
//! Needs PostgreSQL (`DATABASE_URL`); without one it passes after a loud
//! notice, and fails under `CI=true`.

use eventcore::{
    AnyEvent, Codec, Command, CommandErrorKind, Decision, Emit, Event, RecordedEvent, StreamId, View, ViewKind, Views,
};
use eventcore_postgres::{PgSnapshotStore, PostgresStore};
use eventcore_shred::{KeyStore, NonceSource, Personal, PersonalData, PgKeyStore, SubjectId};
use eventcore_tests::postgres::{fresh_store_with, options, schema_as_text};
use eventcore_tokio::{
    BatchDecoder, Executor, MemoryReadModel, MemoryTransaction, Projection, ProjectionError, Runner,
};
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::sync::{Arc, Mutex, OnceLock};

const EMAIL: &str = "zebediah.plaintext@example.org";
const PLAN: &str = "platinum-plan-31";

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
    StreamId::new("customer-9").expect("valid stream")
}

fn zeb() -> SubjectId {
    SubjectId::new("subject-zeb").expect("valid subject")
}

fn email_of(event: &CustomerEvent) -> Option<&Personal<String>> {
    match event {
        CustomerEvent::Registered { email, .. } | CustomerEvent::EmailChanged { email } => Some(email),
        CustomerEvent::Noted { .. } => None,
    }
}

/// Appends `event` to the customer's stream after folding it.
struct Write(CustomerEvent);

/// Folds the customer's stream and reports the e-mail; appends nothing.
struct Look(Arc<Mutex<Option<Personal<String>>>>);

impl Command for Write {
    type Event = CustomerEvent;
    type State = Option<Personal<String>>;
    type Error = Never;
    fn streams(&self) -> Vec<StreamId> {
        vec![customer()]
    }
    fn apply(&self, state: &mut Self::State, _: &StreamId, event: &CustomerEvent) {
        if let Some(email) = email_of(event) {
            *state = Some(email.clone());
        }
    }
    fn decide(&self, _: &Self::State, out: &mut Decision<CustomerEvent>) -> Result<(), Never> {
        out.emit(&customer(), self.0.clone());
        Ok(())
    }
}

impl Command for Look {
    type Event = CustomerEvent;
    type State = Option<Personal<String>>;
    type Error = Never;
    fn streams(&self) -> Vec<StreamId> {
        vec![customer()]
    }
    fn apply(&self, state: &mut Self::State, _: &StreamId, event: &CustomerEvent) {
        if let Some(email) = email_of(event) {
            *state = Some(email.clone());
        }
    }
    fn decide(&self, state: &Self::State, _: &mut Decision<CustomerEvent>) -> Result<(), Never> {
        *self.0.lock().expect("not poisoned") = state.clone();
        Ok(())
    }
}

/// The customer's contact as a view, snapshotted after every event.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Contact {
    email: Option<Personal<String>>,
}

impl View for Contact {
    type Event = CustomerEvent;
    const NAME: &'static str = "contact";
    const SNAPSHOT_EVERY: u64 = 1;
    fn apply(&mut self, event: &CustomerEvent) {
        if let Some(email) = email_of(event) {
            self.email = Some(email.clone());
        }
    }
}

/// Notes something on the customer, deciding on the `Contact` view.
struct Note(Arc<Mutex<Option<Contact>>>);

impl Command for Note {
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
        *self.0.lock().expect("not poisoned") = state.get::<Contact>(&customer()).cloned();
        Emit::new(out).emit(&customer(), CustomerEvent::Noted { note: "noted".into() });
        Ok(())
    }
}

/// The e-mails a projection saw (`None`: forgotten).
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
        if let Some(email) = email_of(&event) {
            tx.state_mut().push(email.known().cloned());
        }
        Ok(())
    }
}

/// What one process holds: a pool, the key store, the executor.
struct Process {
    store: PostgresStore,
    keys: PgKeyStore,
    personal: Arc<PersonalData>,
    executor: Executor<PostgresStore>,
}

impl Process {
    async fn start(store: PostgresStore) -> Self {
        let keys = PgKeyStore::new(&store);
        keys.migrate().await.expect("key tables");
        let personal = Arc::new(PersonalData::new(
            Arc::new(keys.clone()),
            NonceSource::from_os().expect("randomness"),
        ));
        let executor = Executor::new(store.clone())
            .with_codec_context(Arc::clone(&personal))
            .with_snapshots(PgSnapshotStore::new(&store));
        Process {
            store,
            keys,
            personal,
            executor,
        }
    }

    async fn look(&self) -> Option<Personal<String>> {
        let seen = Arc::new(Mutex::new(None));
        self.executor
            .execute(Look(seen.clone()))
            .await
            .expect("reading succeeds, forgotten or not");
        let seen = seen.lock().expect("not poisoned").clone();
        seen
    }

    async fn note(&self) -> Option<Personal<String>> {
        let seen = Arc::new(Mutex::new(None));
        self.executor.execute(Note(seen.clone())).await.expect("notes");
        self.executor.flush_snapshots().await;
        let seen = seen.lock().expect("not poisoned").clone();
        seen.expect("the view was read").email
    }

    async fn project(&self, name: &str) -> Vec<Option<String>> {
        let model = MemoryReadModel::new();
        Runner::projection(name, self.store.clone(), Emails, model.clone())
            .with_codec_context(BatchDecoder::shared(self.personal.clone()))
            .run_until_caught_up()
            .await
            .expect("the projection catches up without poison");
        model.read(Clone::clone)
    }

    async fn change_email_is_refused(&self) {
        let error = self
            .executor
            .execute(Write(CustomerEvent::EmailChanged {
                email: Personal::new(zeb(), "another.plaintext@example.org".into()),
            }))
            .await
            .expect_err("new data of a forgotten subject");
        assert_eq!(error.error.kind(), CommandErrorKind::Encode);
        let mut text = error.error.to_string();
        let mut source = std::error::Error::source(&error.error);
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        assert!(text.contains("subject subject-zeb is forgotten"), "{text}");
    }
}

/// Every log line of the test binary, at TRACE level, from every thread.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = Buffer(buffer.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this binary");
        buffer
    })
}

#[derive(Clone)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every row of every table in the store's schema, as text; every table
/// personal data could reach must be among them, or the search proves
/// nothing.
async fn dump_schema(store: &PostgresStore) -> String {
    let dump = schema_as_text(store).await;
    for table in ["events", "snapshots", "commands", "shred_keys", "shred_forgotten"] {
        assert!(dump.contains(&format!("-- {table}\n")), "no table {table} in the dump");
    }
    dump
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn personal_data_is_sealed_everywhere_reads_forgotten_after_forget_and_stays_forgotten_after_a_restart() {
    let logs = logs();
    for codec in Codec::ALL {
        let Some(store) = fresh_store_with(options("shred_exec").codec(*codec)).await else {
            return;
        };
        let first = Process::start(store).await;
        first
            .executor
            .execute(Write(CustomerEvent::Registered {
                email: Personal::new(zeb(), EMAIL.into()),
                plan: PLAN.into(),
            }))
            .await
            .expect("registers");
        let known = Some(Personal::new(zeb(), EMAIL.to_owned()));
        assert_eq!(first.look().await, known, "{codec}");
        assert_eq!(first.note().await, known, "{codec}: the view folds it");
        assert_eq!(first.project("before").await, vec![Some(EMAIL.to_owned())], "{codec}");

        assert!(first.keys.forget(&zeb()).await.expect("forgets"));

        let forgotten = Some(Personal::Forgotten { subject: zeb() });
        assert_eq!(first.look().await, forgotten, "{codec}");
        assert_eq!(first.note().await, forgotten, "{codec}: the view too");
        assert_eq!(first.project("after").await, vec![None], "{codec}");
        first.change_email_is_refused().await;

        let dump = dump_schema(&first.store).await;
        assert!(
            dump.contains(PLAN) || dump.contains(&hex(PLAN)),
            "{codec}: a field that is not personal is found, so a leaked one would be"
        );
        assert!(dump.contains("subject-zeb"), "{codec}: the subject id, in the clear");
        assert!(!dump.contains(EMAIL), "{codec}: the e-mail found in the schema");
        assert!(!dump.contains(&hex(EMAIL)), "{codec}: the e-mail found hex-encoded");
        assert!(!dump.contains("example.org"), "{codec}: part of an e-mail found");

        // A restart: a new pool, a new key store, a new executor (nothing
        // cached); a snapshot holding the sealed e-mail is in the store.
        let options = first.store.options().clone();
        drop(first);
        let store = PostgresStore::connect_with(options).await.expect("reconnects");
        let second = Process::start(store).await;
        assert!(second.keys.is_forgotten(&zeb()).await.expect("answers"));
        assert_eq!(second.look().await, forgotten, "{codec}: after the restart");
        assert_eq!(second.note().await, forgotten, "{codec}: the snapshot too");
        assert!(
            second.executor.snapshot_stats().loaded >= 1,
            "{codec}: started from a snapshot"
        );
        assert_eq!(second.project("restarted").await, vec![None], "{codec}");
        second.change_email_is_refused().await;
        second.store.drop_schema().await.expect("dropped");
    }

    let logs = String::from_utf8_lossy(&logs.lock().expect("not poisoned")).into_owned();
    assert!(
        logs.contains("command") && logs.contains("customer-9"),
        "the logs were captured at TRACE level ({} bytes)",
        logs.len()
    );
    assert!(!logs.contains(EMAIL), "the e-mail found in the logs");
    assert!(!logs.contains("example.org"), "part of an e-mail found in the logs");
    let _ = writeln!(std::io::stderr(), "{} bytes of logs searched", logs.len());
}
